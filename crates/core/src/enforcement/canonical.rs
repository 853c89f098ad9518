//! Verifying a printed rewrite without a second promql-parser parse.
//!
//! Verification reads the printed query back and proves it is the enforced tree
//! ([`super::promql`]). promql-parser's table-driven parser is most of a rewrite's cost, and
//! read-back text is always the printer's own form, so it is read here first, by a small
//! recursive-descent parser for that form, and compared with the enforced tree node by node.
//!
//! The reader gives up (and promql-parser's parse decides, as before) on anything outside the
//! part of PromQL it reads: unary operators, `@`, regex matchers, strings with escapes, quoted
//! names, keywords used as names or written in other cases, numbers other than plain decimals,
//! `fill` modifiers, comments, offsets before a range. What it does read, it reads the way the
//! PromQL grammar does: binary operators with Prometheus' precedence (`^` right-associative,
//! the others left), ranges, subqueries and `offset` binding tighter than any operator,
//! keywords matched case-insensitively, an identifier followed by `(` read as a call. And it
//! accepts only when the tree it read equals the enforced tree in every field that
//! promql-parser's own equality compares, with the tenant matcher on every selector and the
//! same number of selectors. Builds with debug assertions (tests, fuzzing) check every
//! acceptance against promql-parser's parse as well.

use std::fmt::{self, Write as _};
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{
    AggregateExpr, BinModifier, BinaryExpr, Call, Expr, FunctionArgs, LabelModifier,
    MatrixSelector, NumberLiteral, Offset, ParenExpr, StringLiteral, SubqueryExpr,
    VectorMatchCardinality, VectorSelector,
};

use super::error::MAX_DEPTH;

/// True when `out` provably reads back as `enforced`, every one of its `selectors` selectors
/// carrying `tenant`. False means "not proven here", not "wrong".
pub(super) fn proves(out: &str, enforced: &Expr, selectors: usize, tenant: &Matcher) -> bool {
    // A regex tenant matcher cannot occur in a reading, which has no regex matchers: then only
    // a query without selectors can be proven.
    let tenant = match tenant.op {
        MatchOp::Equal => Some((tenant.name.as_str(), false, tenant.value.as_str())),
        MatchOp::NotEqual => Some((tenant.name.as_str(), true, tenant.value.as_str())),
        MatchOp::Re(_) | MatchOp::NotRe(_) => None,
    };
    let Some(read) = read(out) else {
        return false;
    };
    let mut seen = 0;
    same(&read, enforced, tenant, &mut seen) && seen == selectors
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tok<'a> {
    Ident(&'a str),
    Number(f64),
    /// Milliseconds, never zero.
    Duration(u64),
    /// The text between double quotes; never contains a backslash or a control character.
    Str(&'a str),
    Punct(u8),
    Op(&'static str),
    End,
}

/// A label matcher as read: name, negated (`!=`), value.
type Read<'a> = (&'a str, bool, &'a str);

#[derive(Debug)]
struct Selector<'a> {
    name: Option<&'a str>,
    /// Sorted by (name, operator, value), as enforcement sorts them.
    matchers: Vec<Read<'a>>,
    offset: Option<u64>,
}

#[derive(Debug, Default)]
struct Modifier<'a> {
    return_bool: bool,
    /// `on` (true) or `ignoring` (false), with its labels.
    matching: Option<(bool, Vec<&'a str>)>,
    /// `group_left` (true) or `group_right` (false), with its labels.
    group: Option<(bool, Vec<&'a str>)>,
}

#[derive(Debug)]
enum Node<'a> {
    Number(f64),
    Str(&'a str),
    Paren(Box<Node<'a>>),
    Vector(Selector<'a>),
    Matrix(Selector<'a>, u64),
    Subquery {
        expr: Box<Node<'a>>,
        range: u64,
        step: Option<u64>,
        offset: Option<u64>,
    },
    Call {
        name: &'a str,
        args: Vec<Node<'a>>,
    },
    Aggregate {
        op: &'a str,
        /// `by` (true) or `without` (false), with its labels.
        grouping: Option<(bool, Vec<&'a str>)>,
        args: Vec<Node<'a>>,
    },
    Binary {
        op: &'static str,
        lhs: Box<Node<'a>>,
        rhs: Box<Node<'a>>,
        modifier: Modifier<'a>,
    },
}

const AGGREGATORS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The PromQL keywords besides [`AGGREGATORS`] (promql-parser's and Prometheus' lexers match
/// both case-insensitively).
const OTHER_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "atan2",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "smoothed",
    "anchored",
    "fill",
    "fill_left",
    "fill_right",
    "start",
    "end",
    "step",
    "inf",
    "nan",
];

fn is_keyword(s: &str) -> bool {
    AGGREGATORS
        .iter()
        .chain(OTHER_KEYWORDS)
        .any(|k| k.eq_ignore_ascii_case(s))
}

/// A label name the printer writes unquoted, and that is no keyword.
fn is_label_name(s: &str) -> bool {
    super::matchers::is_legacy_label_name(s) && !is_keyword(s)
}

fn is_ident_byte(b: u8) -> bool {
    b == b'_' || b == b':' || b.is_ascii_alphanumeric()
}

/// Splits `s` into tokens; `None` on anything outside the subset (see the module doc).
fn lex(s: &str) -> Option<Vec<Tok<'_>>> {
    let b = s.as_bytes();
    let mut toks = Vec::with_capacity(s.len() / 4 + 1);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        i += 1;
        let tok = match c {
            b' ' => continue,
            b'(' | b')' | b'{' | b'}' | b'[' | b']' | b',' | b':' => Tok::Punct(c),
            b'"' => {
                let len = b[i..].iter().position(|&x| x == b'"')?;
                let inner = &b[i..i + len];
                if inner.iter().any(|&x| x == b'\\' || x < 0x20 || x == 0x7f) {
                    return None;
                }
                i += len + 1;
                Tok::Str(&s[start + 1..i - 1])
            }
            b'0'..=b'9' => {
                let (tok, end) = number_or_duration(s, start)?;
                i = end;
                tok
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while i < b.len() && is_ident_byte(b[i]) {
                    i += 1;
                }
                Tok::Ident(&s[start..i])
            }
            b'=' | b'!' | b'<' | b'>' => {
                let two = b.get(i) == Some(&b'=');
                if two {
                    i += 1;
                }
                Tok::Op(match (c, two) {
                    (b'=', true) => "==",
                    (b'=', false) if b.get(i) != Some(&b'~') => "=",
                    (b'!', true) => "!=",
                    (b'<', true) => "<=",
                    (b'<', false) => "<",
                    (b'>', true) => ">=",
                    (b'>', false) => ">",
                    _ => return None,
                })
            }
            b'+' => Tok::Op("+"),
            b'-' => Tok::Op("-"),
            b'*' => Tok::Op("*"),
            b'/' => Tok::Op("/"),
            b'%' => Tok::Op("%"),
            b'^' => Tok::Op("^"),
            _ => return None,
        };
        toks.push(tok);
    }
    toks.push(Tok::End);
    Some(toks)
}

/// A plain decimal number (`12`, `0.25`) or a duration (`5m`, `1h30m`, `250ms`) at `start`.
fn number_or_duration(s: &str, start: usize) -> Option<(Tok<'static>, usize)> {
    let b = s.as_bytes();
    let digits_end =
        |from: usize| from + b[from..].iter().take_while(|x| x.is_ascii_digit()).count();
    let mut i = digits_end(start);
    // Prometheus reads integer literals with base prefixes (`010` is octal).
    if b[start] == b'0' && i - start > 1 {
        return None;
    }
    let tok = match b.get(i) {
        Some(b'.') => {
            let frac = digits_end(i + 1);
            if frac == i + 1 {
                return None;
            }
            i = frac;
            Tok::Number(s[start..i].parse().ok()?)
        }
        Some(b'y' | b'w' | b'd' | b'h' | b'm' | b's') => {
            // Units in descending order, each at most once, as the printer writes them.
            const UNITS: [(&[u8], u64); 7] = [
                (b"y", 365 * 86_400_000),
                (b"w", 7 * 86_400_000),
                (b"d", 86_400_000),
                (b"h", 3_600_000),
                (b"ms", 1),
                (b"m", 60_000),
                (b"s", 1_000),
            ];
            const ORDER: [usize; 7] = [0, 1, 2, 3, 6, 4, 5];
            let mut total: u64 = 0;
            let mut last_rank = None;
            let mut from = start;
            loop {
                let end = digits_end(from);
                if end == from {
                    break;
                }
                let value: u64 = s[from..end].parse().ok()?;
                let unit = UNITS.iter().position(|(u, _)| b[end..].starts_with(u))?;
                let rank = ORDER[unit];
                if last_rank.is_some_and(|r| r >= rank) {
                    return None;
                }
                last_rank = Some(rank);
                total = total.checked_add(value.checked_mul(UNITS[unit].1)?)?;
                from = end + UNITS[unit].0.len();
            }
            i = from;
            if total == 0 {
                return None;
            }
            Tok::Duration(total)
        }
        _ => Tok::Number(s[start..i].parse().ok()?),
    };
    // `1e3`, `0x1f`, `1.5m`, `5m.`: forms this reader leaves to promql-parser.
    if b.get(i)
        .is_some_and(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.')
    {
        return None;
    }
    Some((tok, i))
}

/// Precedence and right-associativity of a binary operator token.
fn binary_op(tok: Tok<'_>) -> Option<(&'static str, u8, bool)> {
    Some(match tok {
        Tok::Ident("or") => ("or", 1, false),
        Tok::Ident("and") => ("and", 2, false),
        Tok::Ident("unless") => ("unless", 2, false),
        Tok::Op(op @ ("==" | "!=" | "<=" | "<" | ">=" | ">")) => (op, 3, false),
        Tok::Op(op @ ("+" | "-")) => (op, 4, false),
        Tok::Op(op @ ("*" | "/" | "%")) => (op, 5, false),
        Tok::Ident("atan2") => ("atan2", 5, false),
        Tok::Op("^") => ("^", 6, true),
        _ => return None,
    })
}

fn read(text: &str) -> Option<Node<'_>> {
    let mut r = Reader {
        toks: lex(text)?,
        pos: 0,
    };
    let node = r.expr(0, 0)?;
    (r.next() == Tok::End).then_some(node)
}

struct Reader<'a> {
    toks: Vec<Tok<'a>>,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Tok<'a> {
        self.toks.get(self.pos).copied().unwrap_or(Tok::End)
    }

    fn next(&mut self) -> Tok<'a> {
        let t = self.peek();
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: Tok<'a>) -> Option<()> {
        (self.next() == t).then_some(())
    }

    /// `depth` bounds the recursion here and the depth of the tree built (which `same` and
    /// `Drop` recurse over): each operator of a left-associative chain deepens the tree.
    fn expr(&mut self, min_prec: u8, mut depth: usize) -> Option<Node<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let mut lhs = self.postfix(depth)?;
        while let Some((op, prec, right)) = binary_op(self.peek()) {
            if prec < min_prec {
                break;
            }
            depth += 1;
            if depth > MAX_DEPTH {
                return None;
            }
            self.pos += 1;
            let modifier = self.bin_modifier()?;
            let rhs = self.expr(if right { prec } else { prec + 1 }, depth + 1)?;
            lhs = Node::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                modifier,
            };
        }
        Some(lhs)
    }

    fn bin_modifier(&mut self) -> Option<Modifier<'a>> {
        let mut m = Modifier::default();
        if self.peek() == Tok::Ident("bool") {
            self.pos += 1;
            m.return_bool = true;
        }
        if let Tok::Ident(on @ ("on" | "ignoring")) = self.peek() {
            self.pos += 1;
            m.matching = Some((on == "on", self.labels()?));
            if let Tok::Ident(side @ ("group_left" | "group_right")) = self.peek() {
                self.pos += 1;
                m.group = Some((side == "group_left", self.labels()?));
            }
        }
        Some(m)
    }

    /// `(a, b)`: the printer writes every label list in parentheses, empty ones too.
    fn labels(&mut self) -> Option<Vec<&'a str>> {
        self.expect(Tok::Punct(b'('))?;
        let mut labels = Vec::new();
        if self.peek() == Tok::Punct(b')') {
            self.pos += 1;
            return Some(labels);
        }
        loop {
            match self.next() {
                Tok::Ident(l) if is_label_name(l) => labels.push(l),
                _ => return None,
            }
            match self.next() {
                Tok::Punct(b',') => {}
                Tok::Punct(b')') => return Some(labels),
                _ => return None,
            }
        }
    }

    /// An operand with its range or subquery brackets and its offset.
    fn postfix(&mut self, depth: usize) -> Option<Node<'a>> {
        let mut node = self.primary(depth)?;
        if self.peek() == Tok::Punct(b'[') {
            self.pos += 1;
            let Tok::Duration(range) = self.next() else {
                return None;
            };
            node = match self.next() {
                Tok::Punct(b':') => {
                    let step = match self.peek() {
                        Tok::Duration(d) => {
                            self.pos += 1;
                            Some(d)
                        }
                        _ => None,
                    };
                    self.expect(Tok::Punct(b']'))?;
                    Node::Subquery {
                        expr: Box::new(node),
                        range,
                        step,
                        offset: None,
                    }
                }
                Tok::Punct(b']') => match node {
                    Node::Vector(sel) if sel.offset.is_none() => Node::Matrix(sel, range),
                    _ => return None,
                },
                _ => return None,
            };
        }
        if self.peek() == Tok::Ident("offset") {
            self.pos += 1;
            let Tok::Duration(d) = self.next() else {
                return None;
            };
            let slot = match &mut node {
                Node::Vector(sel) | Node::Matrix(sel, _) => &mut sel.offset,
                Node::Subquery { offset, .. } => offset,
                _ => return None,
            };
            if slot.replace(d).is_some() {
                return None;
            }
        }
        if self.peek() == Tok::Punct(b'[') {
            return None;
        }
        Some(node)
    }

    fn primary(&mut self, depth: usize) -> Option<Node<'a>> {
        match self.next() {
            Tok::Punct(b'(') => {
                let inner = self.expr(0, depth + 1)?;
                self.expect(Tok::Punct(b')'))?;
                Some(Node::Paren(Box::new(inner)))
            }
            Tok::Number(v) => Some(Node::Number(v)),
            Tok::Str(s) => Some(Node::Str(s)),
            Tok::Punct(b'{') => Some(Node::Vector(Selector {
                name: None,
                matchers: self.matchers()?,
                offset: None,
            })),
            Tok::Ident(op) if AGGREGATORS.contains(&op) => {
                let grouping = match self.peek() {
                    Tok::Ident(g @ ("by" | "without")) => {
                        self.pos += 1;
                        Some((g == "by", self.labels()?))
                    }
                    _ => None,
                };
                self.expect(Tok::Punct(b'('))?;
                let args = self.args(depth)?;
                Some(Node::Aggregate { op, grouping, args })
            }
            Tok::Ident(name) if is_keyword(name) => None,
            Tok::Ident(name) if self.peek() == Tok::Punct(b'(') => {
                self.pos += 1;
                let args = self.args(depth)?;
                Some(Node::Call { name, args })
            }
            Tok::Ident(name) => {
                let matchers = if self.peek() == Tok::Punct(b'{') {
                    self.pos += 1;
                    self.matchers()?
                } else {
                    Vec::new()
                };
                Some(Node::Vector(Selector {
                    name: Some(name),
                    matchers,
                    offset: None,
                }))
            }
            _ => None,
        }
    }

    /// Call arguments after the `(`, through the `)`.
    fn args(&mut self, depth: usize) -> Option<Vec<Node<'a>>> {
        let mut args = Vec::new();
        if self.peek() == Tok::Punct(b')') {
            self.pos += 1;
            return Some(args);
        }
        loop {
            args.push(self.expr(0, depth + 1)?);
            match self.next() {
                Tok::Punct(b',') => {}
                Tok::Punct(b')') => return Some(args),
                _ => return None,
            }
        }
    }

    /// Label matchers after the `{`, through the `}`; at least one.
    fn matchers(&mut self) -> Option<Vec<Read<'a>>> {
        let mut matchers = Vec::new();
        loop {
            let Tok::Ident(name) = self.next() else {
                return None;
            };
            if !is_label_name(name) {
                return None;
            }
            let negated = match self.next() {
                Tok::Op("=") => false,
                Tok::Op("!=") => true,
                _ => return None,
            };
            let Tok::Str(value) = self.next() else {
                return None;
            };
            matchers.push((name, negated, value));
            match self.next() {
                Tok::Punct(b',') => {}
                Tok::Punct(b'}') => break,
                _ => return None,
            }
        }
        matchers.sort_unstable();
        Some(matchers)
    }
}

/// The tree read equals `expr`; counts the selectors into `seen`.
fn same(node: &Node<'_>, expr: &Expr, tenant: Option<Read<'_>>, seen: &mut usize) -> bool {
    match (node, expr) {
        (Node::Number(a), Expr::NumberLiteral(NumberLiteral { val })) => a == val,
        (Node::Str(a), Expr::StringLiteral(StringLiteral { val })) => *a == val.as_str(),
        (Node::Paren(a), Expr::Paren(ParenExpr { expr })) => same(a, expr, tenant, seen),
        (Node::Vector(sel), Expr::VectorSelector(vs)) => same_selector(sel, vs, tenant, seen),
        (Node::Matrix(sel, range), Expr::MatrixSelector(MatrixSelector { vs, range: r })) => {
            millis(*range) == *r && same_selector(sel, vs, tenant, seen)
        }
        (
            Node::Subquery {
                expr: inner,
                range,
                step,
                offset,
            },
            Expr::Subquery(SubqueryExpr {
                expr: e,
                offset: eo,
                at,
                range: er,
                step: es,
            }),
        ) => {
            at.is_none()
                && millis(*range) == *er
                && step.map(millis) == *es
                && same_offset(*offset, eo)
                && same(inner, e, tenant, seen)
        }
        (
            Node::Call { name, args },
            Expr::Call(Call {
                func,
                args: FunctionArgs { args: eargs },
            }),
        ) => {
            func.name == *name
                && args.len() == eargs.len()
                && args
                    .iter()
                    .zip(eargs)
                    .all(|(n, e)| same(n, e, tenant, seen))
        }
        (
            Node::Aggregate { op, grouping, args },
            Expr::Aggregate(AggregateExpr {
                op: eop,
                expr: e,
                param,
                modifier,
            }),
        ) => {
            displays_as(eop, op)
                && eop.is_aggregator_with_param() == param.is_some()
                && same_grouping(grouping, modifier)
                && args.len() == 1 + usize::from(param.is_some())
                && args
                    .iter()
                    .zip(param.iter().chain(std::iter::once(e)))
                    .all(|(n, e)| same(n, e, tenant, seen))
        }
        (
            Node::Binary {
                op,
                lhs,
                rhs,
                modifier,
            },
            Expr::Binary(BinaryExpr {
                op: eop,
                lhs: el,
                rhs: er,
                modifier: em,
            }),
        ) => {
            displays_as(eop, op)
                && parsed_modifier(op, modifier) == *em
                && same(lhs, el, tenant, seen)
                && same(rhs, er, tenant, seen)
        }
        _ => false,
    }
}

fn same_selector(
    sel: &Selector<'_>,
    vs: &VectorSelector,
    tenant: Option<Read<'_>>,
    seen: &mut usize,
) -> bool {
    let VectorSelector {
        name,
        matchers,
        offset,
        at,
    } = vs;
    *seen += 1;
    at.is_none()
        && matchers.or_matchers.is_empty()
        && name.as_deref() == sel.name
        && same_offset(sel.offset, offset)
        && tenant.is_some_and(|t| sel.matchers.contains(&t))
        && sel.matchers.len() == matchers.matchers.len()
        && sel
            .matchers
            .iter()
            .zip(&matchers.matchers)
            .all(|(&(n, negated, v), m)| {
                let op = match m.op {
                    MatchOp::Equal => false,
                    MatchOp::NotEqual => true,
                    MatchOp::Re(_) | MatchOp::NotRe(_) => return false,
                };
                n == m.name && negated == op && v == m.value
            })
}

fn same_offset(read: Option<u64>, expected: &Option<Offset>) -> bool {
    match (read, expected) {
        (None, None) => true,
        (Some(ms), Some(Offset::Pos(d))) => millis(ms) == *d,
        _ => false,
    }
}

fn same_grouping(read: &Option<(bool, Vec<&str>)>, expected: &Option<LabelModifier>) -> bool {
    match (read, expected) {
        (None, None) => true,
        (Some((true, ls)), Some(LabelModifier::Include(e)))
        | (Some((false, ls)), Some(LabelModifier::Exclude(e))) => *ls == e.labels,
        _ => false,
    }
}

/// The modifier promql-parser builds for `op` written with `m`: none without a clause, and
/// set operators (`and`, `or`, `unless`) always many-to-many.
fn parsed_modifier(op: &str, m: &Modifier<'_>) -> Option<BinModifier> {
    let set_op = matches!(op, "and" | "or" | "unless");
    if !m.return_bool && m.matching.is_none() && m.group.is_none() && !set_op {
        return None;
    }
    let labels = |ls: &[&str]| promql_parser::label::Labels::new(ls.to_vec());
    let matching = m.matching.as_ref().map(|(on, ls)| {
        if *on {
            LabelModifier::Include(labels(ls))
        } else {
            LabelModifier::Exclude(labels(ls))
        }
    });
    let card = match &m.group {
        Some((true, ls)) => VectorMatchCardinality::ManyToOne(labels(ls)),
        Some((false, ls)) => VectorMatchCardinality::OneToMany(labels(ls)),
        None if set_op => VectorMatchCardinality::ManyToMany,
        None => VectorMatchCardinality::OneToOne,
    };
    Some(
        BinModifier::default()
            .with_return_bool(m.return_bool)
            .with_matching(matching)
            .with_card(card),
    )
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// `value` prints exactly as `text`, without building the printed string.
fn displays_as(value: &impl fmt::Display, text: &str) -> bool {
    struct Rest<'t>(&'t str);
    impl fmt::Write for Rest<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 = self.0.strip_prefix(s).ok_or(fmt::Error)?;
            Ok(())
        }
    }
    let mut rest = Rest(text);
    write!(rest, "{value}").is_ok() && rest.0.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::parser;

    fn tenant() -> Matcher {
        Matcher::new(MatchOp::Equal, "tenant_id", "team-a")
    }

    /// `text` as promql-parser reads it, with each selector's matchers sorted.
    fn parsed(text: &str) -> (Expr, usize) {
        let mut e = parser::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"));
        let n = super::super::walk::visit_selectors(&mut e, 0, &mut |vs| {
            super::super::matchers::sort_matchers(&mut vs.matchers.matchers);
            Ok(())
        })
        .expect("visit");
        (e, n)
    }

    #[track_caller]
    fn accepted(text: &str) {
        let (e, n) = parsed(text);
        assert!(proves(text, &e, n, &tenant()), "not proven: {text}");
    }

    #[track_caller]
    fn declined(text: &str) {
        let (e, n) = parsed(text);
        assert!(!proves(text, &e, n, &tenant()), "proven: {text}");
    }

    #[test]
    fn reads_the_printers_forms() {
        for text in [
            r#"up{tenant_id="team-a"}"#,
            r#"{__name__="up",tenant_id="team-a"}"#,
            r#"sum by (instance) (rate(node_cpu_seconds_total{job="node",mode!="idle",tenant_id="team-a"}[5m]))"#,
            r#"sum without (cpu, mode) (x{tenant_id="team-a"})"#,
            r#"topk(10, x{tenant_id="team-a"})"#,
            r#"count_values("v", x{tenant_id="team-a"})"#,
            r#"histogram_quantile(0.99, sum by (le) (rate(x{tenant_id="team-a"}[1h30m])))"#,
            r#"a{tenant_id="team-a"} / on (x) group_left (y) b{tenant_id="team-a"}"#,
            r#"a{tenant_id="team-a"} + ignoring (code) group_right () b{tenant_id="team-a"}"#,
            r#"a{tenant_id="team-a"} > bool 4 * 60 ^ 2 ^ 3"#,
            r#"a{tenant_id="team-a"} and b{tenant_id="team-a"} or c{tenant_id="team-a"} unless d{tenant_id="team-a"}"#,
            r#"a{tenant_id="team-a"} atan2 b{tenant_id="team-a"}"#,
            r#"a{tenant_id="team-a"} - a{tenant_id="team-a"} offset 10m >= 1"#,
            r#"avg_over_time(up{tenant_id="team-a"}[1h:1m])"#,
            r#"max_over_time(rate(x{tenant_id="team-a"}[5m])[1d:] offset 1w)"#,
            r#"rate(x{tenant_id="team-a"}[250ms] offset 2y)"#,
            r#"label_replace(x{tenant_id="team-a"}, "dst", "$1", "src", "(.*)")"#,
            r#"time() - 0.25"#,
            r#"1 + 1"#,
            r#"(((1)))"#,
            r#"vector(1) * 100000000000000000000"#,
            r#"x{tenant_id="team-a",unicode="wert ✓ ü"}"#,
            r#"namespace:cpu:sum{tenant_id="team-a"}"#,
        ] {
            accepted(text);
        }
    }

    #[test]
    fn leaves_other_forms_to_promql_parser() {
        for text in [
            // Operators and modifiers it does not read.
            r#"-x{tenant_id="team-a"}"#,
            r#"x{tenant_id="team-a"} @ 100"#,
            r#"x{tenant_id="team-a"} * on (a) group_left y{tenant_id="team-a"}"#,
            r#"x{tenant_id="team-a"} + fill (0) y{tenant_id="team-a"}"#,
            r#"x{tenant_id="team-a"} AND y{tenant_id="team-a"}"#,
            r#"SUM(x{tenant_id="team-a"})"#,
            r#"sum(x{tenant_id="team-a"}) by (a)"#,
            // Matchers, strings and names.
            r#"x{tenant_id="team-a",a=~"b.*"}"#,
            r#"x{tenant_id="team-a",a="b\"c"}"#,
            r#"x{tenant_id="team-a",a='b'}"#,
            r#"x{tenant_id="team-a","a.b"="c"}"#,
            r#"x{tenant_id="team-a",on="c"}"#,
            r#"x{tenant_id="team-a",}"#,
            // Numbers and durations.
            r#"x{tenant_id="team-a"} * 1e3"#,
            r#"x{tenant_id="team-a"} * 0x10"#,
            r#"x{tenant_id="team-a"} * 010"#,
            r#"x{tenant_id="team-a"} * Inf"#,
            r#"rate(x{tenant_id="team-a"}[90])"#,
            // Comments and whitespace other than spaces.
            "x{tenant_id=\"team-a\"} # c",
            "x{tenant_id=\"team-a\"}\n+ 1",
        ] {
            declined(text);
        }
    }

    #[test]
    fn reads_durations_only_as_the_printer_writes_them() {
        for (text, ms) in [
            ("1h30m", 5_400_000),
            ("2y", 2 * 365 * 86_400_000),
            ("1w2d", 9 * 86_400_000),
            ("1m5s250ms", 65_250),
        ] {
            assert_eq!(lex(text), Some(vec![Tok::Duration(ms), Tok::End]), "{text}");
        }
        // Out of order, repeated, zero, fractional or overflowing.
        for text in [
            "5m1h",
            "1m1m",
            "0s",
            "1.5m",
            "99999999999999999999y",
            "5mx",
            "1ms5s",
        ] {
            assert!(
                !matches!(lex(text).as_deref(), Some([Tok::Duration(_), Tok::End])),
                "{text}"
            );
        }
    }

    #[test]
    fn declines_a_tree_the_text_does_not_spell() {
        let t = tenant();
        let cases = [
            // Precedence: the tree a * (b + c) printed without its parentheses.
            (
                r#"a{tenant_id="team-a"} * (b{tenant_id="team-a"} + 1)"#,
                r#"a{tenant_id="team-a"} * b{tenant_id="team-a"} + 1"#,
            ),
            // Associativity of ^ and of -.
            (r#"(2 ^ 3) ^ 2"#, r#"2 ^ 3 ^ 2"#),
            (r#"5 - (3 - 1)"#, r#"5 - 3 - 1"#),
            // A dropped modifier, label, matcher or offset.
            (
                r#"a{tenant_id="team-a"} / on (x) b{tenant_id="team-a"}"#,
                r#"a{tenant_id="team-a"} / b{tenant_id="team-a"}"#,
            ),
            (
                r#"sum by (a, b) (x{tenant_id="team-a"})"#,
                r#"sum by (a) (x{tenant_id="team-a"})"#,
            ),
            (r#"x{a="1",tenant_id="team-a"}"#, r#"x{tenant_id="team-a"}"#),
            (
                r#"x{tenant_id="team-a"} offset 5m"#,
                r#"x{tenant_id="team-a"}"#,
            ),
            (
                r#"x{tenant_id="team-a"} > bool 1"#,
                r#"x{tenant_id="team-a"} > 1"#,
            ),
            // A different duration, number or string.
            (
                r#"rate(x{tenant_id="team-a"}[5m])"#,
                r#"rate(x{tenant_id="team-a"}[5s])"#,
            ),
            (
                r#"x{tenant_id="team-a"} * 0.5"#,
                r#"x{tenant_id="team-a"} * 0.25"#,
            ),
            (
                r#"label_join(x{tenant_id="team-a"}, "a", ",", "b")"#,
                r#"label_join(x{tenant_id="team-a"}, "a", ";", "b")"#,
            ),
            // Another function or aggregation.
            (
                r#"irate(x{tenant_id="team-a"}[5m])"#,
                r#"rate(x{tenant_id="team-a"}[5m])"#,
            ),
            (
                r#"max(x{tenant_id="team-a"})"#,
                r#"min(x{tenant_id="team-a"})"#,
            ),
        ];
        for (tree, text) in cases {
            let (e, n) = parsed(tree);
            assert!(!proves(text, &e, n, &t), "{text} proven as {tree}");
        }
    }

    #[test]
    fn bounds_its_depth() {
        let chain = vec!["1"; MAX_DEPTH + 2].join(" + ");
        assert!(read(&chain).is_none());
        let nested = format!(
            "{}1{}",
            "(".repeat(MAX_DEPTH + 2),
            ")".repeat(MAX_DEPTH + 2)
        );
        assert!(read(&nested).is_none());
        let fine = vec!["1"; MAX_DEPTH / 2].join(" + ");
        assert!(read(&fine).is_some());
    }

    #[test]
    fn requires_the_tenant_matcher_on_every_selector() {
        let text = r#"a{tenant_id="team-a"} + b{job="x"}"#;
        let (e, n) = parsed(text);
        assert!(!proves(text, &e, n, &tenant()));
        let other = Matcher::new(MatchOp::Equal, "tenant_id", "team-b");
        let text = r#"a{tenant_id="team-a"}"#;
        let (e, n) = parsed(text);
        assert!(!proves(text, &e, n, &other));
        // The selector count has to agree as well.
        assert!(!proves(text, &e, n + 1, &tenant()));
    }
}
