//! Reading the options' texts.

use std::io::Read;
use std::path::Path;

use super::{
    err, OptionError, Origin, MAX_GEOCODE_COLUMNS, MAX_TEMPLATE_BYTES, OUTPUT_FORMATS, RATE_RANGE,
};
use crate::job::quote_short;

/// `xlsx`, `gpkg,geojson`: known formats, each once, in the order given.
pub fn parse_formats(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',').map(|p| p.trim().trim_start_matches('.')) {
        let f = OUTPUT_FORMATS
            .iter()
            .find(|f| f.eq_ignore_ascii_case(part))
            .ok_or_else(|| {
                format!(
                    "{} is not an output format; one or more of {}, comma-separated",
                    quote_short(part),
                    OUTPUT_FORMATS.join(", ")
                )
            })?;
        if !out.iter().any(|o| o == f) {
            out.push(f.to_string());
        }
    }
    Ok(out)
}

/// `,` `;` `|` `tab` (or a literal tab) as the byte the CSV reader wants.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "," | "comma" => Ok(b','),
        ";" | "semicolon" => Ok(b';'),
        "|" | "pipe" => Ok(b'|'),
        "\t" | "\\t" | "tab" | "TAB" => Ok(b'\t'),
        other => Err(format!(
            "delimiter {} is not one of , ; | tab",
            quote_short(other)
        )),
    }
}

/// `Stores, 2024`: the names between commas, trimmed, empty ones dropped.
pub(super) fn parse_sheets(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

/// `10`, `10/s`, `0.5 /s`: requests per second within [`RATE_RANGE`].
pub(super) fn parse_rate(s: &str) -> Result<f64, String> {
    let number = s
        .strip_suffix("/s")
        .or_else(|| s.strip_suffix("/sec"))
        .unwrap_or(s)
        .trim();
    let (lo, hi) = RATE_RANGE;
    match number.parse::<f64>() {
        Ok(r) if r.is_finite() && (lo..=hi).contains(&r) => Ok(r),
        _ => Err(format!(
            "{} is not a rate; give requests per second from {lo} to {hi}, e.g. 10 or 10/s",
            quote_short(s)
        )),
    }
}

pub(super) fn parse_in_range(
    option: &'static str,
    s: &str,
    (lo, hi): (u64, u64),
    unit: &str,
) -> Result<u64, OptionError> {
    match s.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(err(
            option,
            format!(
                "{} is not a whole number of {unit} from {lo} to {hi}",
                quote_short(s)
            ),
        )),
    }
}

/// A template given as JSON (or, on the command line, as a file holding it).
pub(super) fn read_template(given: &str, origin: Origin) -> Result<serde_json::Value, OptionError> {
    let text = if given.starts_with('{') {
        given.to_string()
    } else if origin == Origin::CommandLine {
        let path = Path::new(given);
        let fail = |e: std::io::Error| err("lookup_template", format!("{}: {e}", path.display()));
        // Read at most one byte past the limit: a device or a growing file cannot hold us.
        let (mut text, limit) = (String::new(), MAX_TEMPLATE_BYTES);
        let mut file = std::fs::File::open(path)
            .map_err(fail)?
            .take(limit as u64 + 1);
        file.read_to_string(&mut text).map_err(fail)?;
        if text.len() > limit {
            let shown = path.display();
            return Err(err(
                "lookup_template",
                format!("{shown}: over {limit} bytes"),
            ));
        }
        text
    } else {
        return Err(err("lookup_template", "give the template's JSON itself"));
    };
    serde_json::from_str(&text).map_err(|e| err("lookup_template", format!("not JSON: {e}")))
}

/// `주소` or `시도, 시군구, 도로명`: column names, trimmed, each once, at most
/// [`MAX_GEOCODE_COLUMNS`].
pub(super) fn parse_columns(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    match out.len() {
        0 => Err("give the address column(s), comma-separated, or auto".into()),
        n if n > MAX_GEOCODE_COLUMNS => Err(format!(
            "{n} columns; at most {MAX_GEOCODE_COLUMNS} are joined into one address"
        )),
        _ => Ok(out),
    }
}

/// `kakao,vworld`: known providers, each once, in the order given.
pub(super) fn parse_providers(s: &str, known: &[&'static str]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let name = part.to_ascii_lowercase();
        if !known.contains(&name.as_str()) {
            return Err(format!(
                "unknown provider {}; one or more of {}, comma-separated",
                quote_short(part),
                known.join(", ")
            ));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    match out.len() {
        0 => Err("give one or more providers, comma-separated".into()),
        n if n > MAX_GEOCODE_COLUMNS => {
            Err(format!("{n} providers; at most {MAX_GEOCODE_COLUMNS}"))
        }
        _ => Ok(out),
    }
}
