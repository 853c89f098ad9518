//! Spellings of a JSON key that Go's encoding/json reads as that key: the corpus of the silence
//! tests. Shared by the unit tests (`silence/tests.rs`) and the end-to-end test against a real
//! Alertmanager (`tests/silences.rs`, which includes this file by path).

/// Spellings of `name` that Go's encoding/json reads as `name`: case variants, and each `s`,
/// `k` or `i` replaced by the non-ASCII characters that fold to it.
pub fn variants(name: &str) -> Vec<String> {
    let mut out = vec![
        name.to_uppercase(),
        name.to_lowercase(),
        name.chars()
            .map(|c| {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect(),
    ];
    let mut first_upper = name.chars();
    if let Some(c) = first_upper.next() {
        out.push(c.to_uppercase().chain(first_upper).collect());
    }
    for (i, c) in name.char_indices() {
        let folds: &[char] = match c.to_ascii_lowercase() {
            's' => &['\u{17F}'],
            'k' => &['\u{212A}'],
            'i' => &['\u{130}', '\u{131}'],
            _ => &[],
        };
        for f in folds {
            out.push(format!("{}{f}{}", &name[..i], &name[i + 1..]));
        }
    }
    out.retain(|v| v != name);
    out.sort();
    out.dedup();
    out
}
