//! Detection of encoding, delimiter and x/y columns.

use encoding_rs::{Encoding, EUC_KR, UTF_8};

use super::scan::field_counts;

/// Delimiters tried, in order of preference when they score the same.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Records (header included) looked at to pick a delimiter.
const SAMPLE_RECORDS: usize = 20;

/// Header names of x/y columns, compared lowercased and without whitespace, best first.
const PAIRS: [(&str, &str); 15] = [
    ("x", "y"),
    ("lon", "lat"),
    ("lng", "lat"),
    ("long", "lat"),
    ("longitude", "latitude"),
    ("경도", "위도"),
    ("좌표정보(x)", "좌표정보(y)"),
    ("좌표정보x", "좌표정보y"),
    ("x좌표", "y좌표"),
    ("좌표x", "좌표y"),
    ("point_x", "point_y"),
    ("pointx", "pointy"),
    ("xcoord", "ycoord"),
    ("x_coord", "y_coord"),
    ("coord_x", "coord_y"),
];

/// The encoding of a label the user gave, if it is one we can decode.
pub(super) fn encoding_for_label(label: &str) -> Option<&'static Encoding> {
    // encoding_rs's EUC_KR is windows-949 (UHC), so CP949-only syllables decode too. It knows
    // "euc-kr", "windows-949", "ks_c_5601-1987" …; the names Korean users type are added.
    let label = label.trim();
    match label.to_ascii_lowercase().as_str() {
        "cp949" | "ms949" | "uhc" | "x-windows-949" | "cp-949" | "ms-949" => Some(EUC_KR),
        _ => Encoding::for_label_no_replacement(label.as_bytes()),
    }
}

/// The encoding of a file from the first bytes: a BOM decides; else valid UTF-8 (a multibyte
/// character cut off by the end of the prefix is allowed when the file goes on) is UTF-8;
/// anything else is taken as CP949.
pub(super) fn sniff_encoding(prefix: &[u8], complete: bool) -> &'static Encoding {
    if let Some((encoding, _)) = Encoding::for_bom(prefix) {
        return encoding;
    }
    match std::str::from_utf8(prefix) {
        Ok(_) => UTF_8,
        Err(e) if e.error_len().is_none() && !complete => UTF_8,
        Err(_) => EUC_KR,
    }
}

/// The text of a prefix in `encoding`, without any BOM. A character cut off at the end becomes
/// U+FFFD, which only touches the last (incomplete, so unused) line.
pub(super) fn decode_prefix(encoding: &'static Encoding, prefix: &[u8]) -> String {
    let body = match Encoding::for_bom(prefix) {
        Some((_, len)) => &prefix[len..],
        None => prefix,
    };
    encoding.decode_without_bom_handling(body).0.into_owned()
}

/// The delimiter of a file from its decoded start: among `,` `;` tab `|`, the one found in the
/// header (outside quotes) whose per-record count matches the header's in the most sample
/// records. `,` when none is in the header.
pub(super) fn sniff_delimiter(text: &str, complete: bool) -> u8 {
    let mut best: Option<(usize, u8)> = None;
    for delimiter in DELIMITERS {
        let counts = field_counts(text, delimiter, complete, SAMPLE_RECORDS);
        let Some((&header, rest)) = counts.split_first() else {
            continue;
        };
        if header < 2 {
            continue;
        }
        let consistent = rest.iter().filter(|&&c| c == header).count();
        if best.is_none_or(|(score, _)| consistent > score) {
            best = Some((consistent, delimiter));
        }
    }
    best.map_or(b',', |(_, d)| d)
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// A column the user named: exact match first, then case-insensitive after trimming.
pub(super) fn find_given(headers: &[String], name: &str) -> Option<usize> {
    headers.iter().position(|h| h == name).or_else(|| {
        let wanted = name.trim().to_lowercase();
        headers
            .iter()
            .position(|h| h.trim().to_lowercase() == wanted)
    })
}

/// Why the x/y columns could not be settled.
#[derive(Debug, PartialEq)]
pub(super) enum ColumnProblem {
    /// Neither given nor found.
    NoneFound,
    /// One was given, the other ("x" or "y") not found.
    OtherNotFound(&'static str),
    /// A given name ("x" or "y", name) is not a header.
    GivenMissing(&'static str, String),
}

/// The x and y column indexes.
pub(super) fn find_columns(
    headers: &[String],
    x_given: Option<&str>,
    y_given: Option<&str>,
) -> Result<(usize, usize), ColumnProblem> {
    let given = |axis: &'static str, name: Option<&str>| match name {
        Some(name) => find_given(headers, name)
            .map(Some)
            .ok_or_else(|| ColumnProblem::GivenMissing(axis, name.to_string())),
        None => Ok(None),
    };
    let x = given("x", x_given)?;
    let y = given("y", y_given)?;
    let names: Vec<String> = headers.iter().map(|h| normalize(h)).collect();
    let find = |wanted: &str, not: Option<usize>| {
        names
            .iter()
            .enumerate()
            .find(|&(i, n)| n == wanted && Some(i) != not)
            .map(|(i, _)| i)
    };
    match (x, y) {
        (Some(x), Some(y)) => Ok((x, y)),
        (Some(x), None) => PAIRS
            .iter()
            .find_map(|(_, yname)| find(yname, Some(x)))
            .map(|y| (x, y))
            .ok_or(ColumnProblem::OtherNotFound("y")),
        (None, Some(y)) => PAIRS
            .iter()
            .find_map(|(xname, _)| find(xname, Some(y)))
            .map(|x| (x, y))
            .ok_or(ColumnProblem::OtherNotFound("x")),
        (None, None) => PAIRS
            .iter()
            .find_map(
                |(xname, yname)| match (find(xname, None), find(yname, None)) {
                    (Some(x), Some(y)) if x != y => Some((x, y)),
                    _ => None,
                },
            )
            .ok_or(ColumnProblem::NoneFound),
    }
}
