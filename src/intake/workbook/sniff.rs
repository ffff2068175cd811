//! What a file's first bytes say it is, and the message for a file whose name says otherwise.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::Kind;
use crate::intake::{IntakeError, HEAD_BYTES};

/// Longest reason from a workbook library shown in an error.
const REASON_CHARS: usize = 200;

/// The OLE stream an encrypted xlsx keeps its content in, as its directory names it (UTF-16LE).
const ENCRYPTED_PACKAGE: &str = "EncryptedPackage";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::intake) enum Content {
    Empty,
    /// A zip archive; `ods` when it is an OpenDocument spreadsheet.
    Zip {
        ods: bool,
    },
    /// An OLE compound file: an xls, or an encrypted xlsx.
    Cfb,
    Html,
    /// Excel's "XML Spreadsheet 2003".
    Xml2003,
    Text,
    Binary,
}

impl Content {
    pub(in crate::intake) fn of(head: &[u8]) -> Content {
        const ZIP: &[u8] = b"PK\x03\x04";
        const CFB: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";
        if head.is_empty() {
            return Content::Empty;
        }
        if head.starts_with(ZIP) {
            let ods = find(head, b"application/vnd.oasis.opendocument.spreadsheet");
            return Content::Zip { ods };
        }
        if head.starts_with(CFB) {
            return Content::Cfb;
        }
        let bom = [&b"\xEF\xBB\xBF"[..], b"\xFF\xFE", b"\xFE\xFF"]
            .iter()
            .any(|b| head.starts_with(b));
        if !bom && head.contains(&0) {
            return Content::Binary;
        }
        let lower: Vec<u8> = head
            .iter()
            .take(2048)
            .filter(|b| **b != 0)
            .map(u8::to_ascii_lowercase)
            .collect();
        if find(&lower, b"urn:schemas-microsoft-com:office:spreadsheet") {
            return Content::Xml2003;
        }
        let start = lower
            .iter()
            .position(|b| {
                !b.is_ascii_whitespace() && !matches!(b, 0xEF | 0xBB | 0xBF | 0xFF | 0xFE)
            })
            .map_or(&lower[..0], |at| &lower[at..]);
        let html = [
            &b"<html"[..],
            b"<!doctype html",
            b"<table",
            b"<meta",
            b"<head",
            b"<body",
        ]
        .iter()
        .any(|t| start.starts_with(t))
            || (start.starts_with(b"<") && find(&lower, b"<table"));
        if html {
            Content::Html
        } else {
            Content::Text
        }
    }

    /// The kind of workbook this content is, if it is one.
    pub(in crate::intake) fn kind(self) -> Option<Kind> {
        match self {
            Content::Zip { ods: true } => Some(Kind::Ods),
            Content::Zip { ods: false } => Some(Kind::Xlsx),
            Content::Cfb => Some(Kind::Xls),
            _ => None,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn extension(label: &str) -> String {
    Path::new(label)
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

/// The workbook kind a file's name says, if it names one.
pub(super) fn extension_kind(label: &str) -> Option<Kind> {
    match extension(label).as_str() {
        "xlsx" | "xlsm" => Some(Kind::Xlsx),
        "xls" => Some(Kind::Xls),
        "ods" => Some(Kind::Ods),
        _ => None,
    }
}

/// The kind of workbook `path` is, or the error that tells what it is instead.
pub(super) fn check(path: &Path, label: &str) -> Result<Kind, IntakeError> {
    let io = |source| IntakeError::Io {
        file: label.to_string(),
        source,
    };
    let mut head = Vec::with_capacity(HEAD_BYTES);
    File::open(path)
        .and_then(|f| f.take(HEAD_BYTES as u64).read_to_end(&mut head))
        .map_err(io)?;
    let content = Content::of(&head);
    let wrong = |message: String| IntakeError::NotWorkbook {
        file: label.to_string(),
        message,
    };
    let kind = match content {
        Content::Empty => {
            return Err(IntakeError::Empty {
                file: label.to_string(),
            })
        }
        Content::Html => {
            return Err(wrong(
                "this is a web page (HTML), not an Excel workbook, as some portals export \
                 under an .xls name; open it in Excel and save it as .xlsx or .csv, then \
                 submit that"
                    .into(),
            ))
        }
        Content::Xml2003 => {
            return Err(wrong(
                "this is an \"XML Spreadsheet 2003\" file, not an xlsx or xls workbook; open \
                 it in Excel and save it as .xlsx"
                    .into(),
            ))
        }
        Content::Text => {
            return Err(wrong(
                "this is not an Excel workbook: its content is text (a CSV?); rename it to \
                 .csv"
                    .into(),
            ))
        }
        Content::Binary => {
            return Err(IntakeError::Damaged {
                file: label.to_string(),
                reason: "neither a zip archive (xlsx, ods) nor an Excel 97-2003 file (xls)".into(),
            })
        }
        Content::Cfb if holds_encrypted_package(path).map_err(io)? => {
            return Err(IntakeError::Encrypted {
                file: label.to_string(),
            })
        }
        other => other.kind().unwrap_or(Kind::Xlsx),
    };
    if matches!(extension(label).as_str(), "csv" | "txt" | "tsv") {
        let what = match kind {
            Kind::Xlsx => "an Excel workbook (xlsx)",
            Kind::Xls => "an Excel 97-2003 workbook (xls)",
            Kind::Ods => "an OpenDocument spreadsheet (ods)",
        };
        return Err(wrong(format!(
            "this is {what}, not a CSV file; rename it to .{} (or save it as CSV)",
            kind.name()
        )));
    }
    Ok(kind)
}

/// Whether an OLE compound file holds an `EncryptedPackage` stream (a password-protected
/// xlsx): its directory entry's name is looked for, in UTF-16LE, through the whole file.
fn holds_encrypted_package(path: &Path) -> std::io::Result<bool> {
    let needle: Vec<u8> = ENCRYPTED_PACKAGE
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        carry.extend_from_slice(&buf[..n]);
        if find(&carry, &needle) {
            return Ok(true);
        }
        let keep = needle.len() - 1;
        carry.drain(..carry.len().saturating_sub(keep));
    }
}

/// A library's message made safe to show: control characters out, at most
/// [`REASON_CHARS`] characters.
pub(super) fn printable(reason: &str) -> String {
    let clean: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match clean.char_indices().nth(REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &clean[..cut]),
        None => clean,
    }
}
