//! Cell-level rules: coordinate parsing and Excel sheet names.

use std::collections::HashSet;

/// Longest raw value quoted back in a reason.
const SHOWN_CHARS: usize = 40;

/// Excel's limit on sheet names, in characters.
const SHEET_NAME_CHARS: usize = 31;

/// A value quoted for a message, cut short when long.
fn shown(value: &str) -> String {
    if value.chars().count() > SHOWN_CHARS {
        let cut: String = value.chars().take(SHOWN_CHARS).collect();
        format!("{:?}", format!("{cut}…"))
    } else {
        format!("{value:?}")
    }
}

/// Parse one coordinate cell. Surrounding whitespace is allowed; empty cells, placeholders
/// ("-", "N/A", …), text, commas (never guessed as thousands separators or decimal commas)
/// and non-finite values are refused with a short reason.
pub fn parse_coordinate(raw: &str) -> Result<f64, String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err("empty".to_string());
    }
    if value.contains(',') {
        return Err(format!("not a number (has a comma): {}", shown(value)));
    }
    let unsigned = value
        .strip_prefix(['+', '-'])
        .unwrap_or(value)
        .to_ascii_lowercase();
    if matches!(unsigned.as_str(), "nan" | "inf" | "infinity") {
        return Err(format!("not a finite number: {}", shown(value)));
    }
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("not a finite number: {}", shown(value))),
        Err(_) => Err(format!("not a number: {}", shown(value))),
    }
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// Without surrounding whitespace and apostrophes (Excel refuses a name that starts or ends
/// with an apostrophe).
fn tidy(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\'')
}

/// A valid, unique Excel sheet name for `raw`: at most 31 characters, none of `[]:*?/\`
/// (each becomes `_`), no leading or trailing apostrophe, not empty ("Sheet"), not "History",
/// and unique case-insensitively among `taken` (" (2)", " (3)", … appended within 31
/// characters). The caller inserts the result into `taken`.
pub fn sheet_name(raw: &str, taken: &HashSet<String>) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if "[]:*?/\\".contains(c) || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let base = match tidy(truncate(tidy(&cleaned), SHEET_NAME_CHARS)) {
        "" => "Sheet",
        name => name,
    };
    let taken: HashSet<String> = taken.iter().map(|t| t.to_lowercase()).collect();
    let free = |name: &str| {
        let lower = name.to_lowercase();
        lower != "history" && !taken.contains(&lower)
    };
    if free(base) {
        return base.to_string();
    }
    (2u64..)
        .map(|n| {
            let suffix = format!(" ({n})");
            let room = SHEET_NAME_CHARS.saturating_sub(suffix.chars().count());
            let stem = tidy(truncate(base, room));
            format!("{stem}{suffix}")
        })
        .find(|name| free(name))
        .expect("some suffix is free: `taken` is finite")
}
