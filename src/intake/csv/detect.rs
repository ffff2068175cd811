//! Detection of a CSV file's encoding and delimiter.

use encoding_rs::{Encoding, EUC_KR, UTF_8};

use super::scan::field_counts;

/// Delimiters tried, in order of preference when they score the same.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Records (header included) looked at to pick a delimiter.
const SAMPLE_RECORDS: usize = 20;

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
