//! Byte-level scanning of PromQL text as promql-parser's lexer reads it: where strings and
//! comments end, and an upper bound of a query's depth before it is parsed.

use super::error::MAX_DEPTH;

/// An upper bound of the AST depth of `input`, from a linear scan of the text that follows
/// promql-parser's lexer (strings with backslash escapes in all three quote styles, `#`
/// comments, label matchers in braces). Input the lexer rejects is never parsed, so the scan
/// only has to be exact for lexable input.
///
/// Per bracket level, every AST node on a root-to-leaf path is either a binary or unary operator
/// or a subquery `[` at that level, or the Paren/Call/Aggregate node of the level itself; so
/// `bound(level) = 1 + ops(level) + max(1, bound(children))`. Over-counting (a `-` in `1e-3`,
/// `==` counted twice, keywords used as names) only makes the bound safer.
pub(crate) fn depth_bound(input: &str) -> usize {
    struct Level {
        ops: usize,
        deepest_child: usize,
    }
    let bytes = input.as_bytes();
    let mut levels = vec![Level {
        ops: 0,
        deepest_child: 0,
    }];
    let mut in_braces = false;
    let mut i = 0;
    let close = |levels: &mut Vec<Level>| {
        if levels.len() > 1 {
            if let Some(l) = levels.pop() {
                let bound = 1 + l.ops + l.deepest_child.max(1);
                if let Some(parent) = levels.last_mut() {
                    parent.deepest_child = parent.deepest_child.max(bound);
                }
            }
        }
    };
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => i = string_end(bytes, i),
            b'#' => i = comment_end(bytes, i),
            b'}' if in_braces => in_braces = false,
            _ if in_braces => {}
            b'{' => in_braces = true,
            b'(' | b'[' => {
                if c == b'[' {
                    // A subquery adds a node at the current level.
                    if let Some(l) = levels.last_mut() {
                        l.ops += 1;
                    }
                }
                levels.push(Level {
                    ops: 0,
                    deepest_child: 0,
                });
                if levels.len() > MAX_DEPTH + 1 {
                    return levels.len();
                }
            }
            b')' | b']' => close(&mut levels),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' => {
                if let Some(l) = levels.last_mut() {
                    l.ops += 1;
                }
            }
            _ if c == b'_' || c == b':' || c.is_ascii_alphanumeric() => {
                let start = i;
                while i + 1 < bytes.len()
                    && (bytes[i + 1] == b'_'
                        || bytes[i + 1] == b':'
                        || bytes[i + 1].is_ascii_alphanumeric())
                {
                    i += 1;
                }
                let word = &bytes[start..=i];
                let is_op = ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k.as_bytes()));
                if is_op {
                    if let Some(l) = levels.last_mut() {
                        l.ops += 1;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    while levels.len() > 1 {
        close(&mut levels);
    }
    levels
        .first()
        .map_or(0, |root| root.ops + root.deepest_child.max(1))
}

/// Where the string that opens at `start` closes, as promql-parser's lexer reads it (a
/// backslash escapes the next byte in all three quote styles); `bytes.len()` when unterminated.
pub(super) fn string_end(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() && bytes[i] != quote {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    i.min(bytes.len())
}

/// Where the `#` comment that opens at `start` ends: its line break, or `bytes.len()`.
pub(super) fn comment_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map_or(bytes.len(), |n| start + n)
}
