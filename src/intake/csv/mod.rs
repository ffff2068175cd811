//! CSV: streaming reading with detection of encoding, delimiter and x/y columns.
//!
//! Only a bounded prefix of a file ([`PREFIX_BYTES`]) is read to detect its encoding and
//! delimiter; records are then streamed through a decoder, so memory stays bounded by the
//! longest record whatever the file's size. A CSV file is one table, named after the file.

mod detect;
mod scan;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::Path;

use encoding_rs::Encoding;
use encoding_rs_io::{DecodeReaderBytes, DecodeReaderBytesBuilder};

use scan::{Scan, SyntaxError};

use super::{
    columns, InputFormat, InputRecord, IntakeError, Layout, ReadOptions, RecordSource, TableLayout,
};
use crate::job::Cell;

/// Bytes read from the start of a file to detect its encoding and delimiter.
pub const PREFIX_BYTES: usize = 64 * 1024;

/// What was found (or given) for a CSV file.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CsvLayout {
    /// encoding_rs name, e.g. "UTF-8", "EUC-KR", "UTF-16LE".
    pub encoding: String,
    pub delimiter: u8,
    /// Header names, trimmed of surrounding whitespace (and of a BOM).
    pub headers: Vec<String>,
    /// Index into `headers` of the x column.
    pub x: usize,
    /// Index into `headers` of the y column.
    pub y: usize,
}

impl CsvLayout {
    pub fn x_name(&self) -> &str {
        self.headers.get(self.x).map_or("", String::as_str)
    }

    pub fn y_name(&self) -> &str {
        self.headers.get(self.y).map_or("", String::as_str)
    }

    /// The file's one table, named `name`.
    pub fn table(&self, name: &str) -> TableLayout {
        TableLayout {
            name: name.to_string(),
            headers: self.headers.clone(),
            header_line: 1,
            x: self.x,
            y: self.y,
            address: None,
        }
    }

    /// As stored with the job.
    pub fn layout(&self, label: &str) -> Layout {
        Layout {
            format: "csv".into(),
            reader: serde_json::json!({ "encoding": self.encoding, "delimiter": self.delimiter }),
            tables: vec![self.table(&stem(label))],
        }
    }

    /// Read back from the stored layout.
    pub fn from_layout(layout: &Layout) -> Option<CsvLayout> {
        let table = layout.tables.first()?;
        Some(CsvLayout {
            encoding: layout.reader.get("encoding")?.as_str()?.to_string(),
            delimiter: u8::try_from(layout.reader.get("delimiter")?.as_u64()?).ok()?,
            headers: table.headers.clone(),
            x: table.x,
            y: table.y,
        })
    }
}

/// A file's name without its extension: the name of its one table.
pub(crate) fn stem(label: &str) -> String {
    Path::new(label)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| label.to_string())
}

/// The CSV format: any text file not recognized by another format.
pub struct CsvFormat;
pub static CSV: CsvFormat = CsvFormat;

impl InputFormat for CsvFormat {
    fn name(&self) -> &'static str {
        "csv"
    }

    fn recognizes(&self, _head: &[u8], _label: &str) -> bool {
        true
    }

    fn open(
        &self,
        path: &Path,
        label: &str,
        opts: &ReadOptions,
    ) -> Result<Box<dyn RecordSource>, IntakeError> {
        Ok(Box::new(CsvSource::open(path, label, opts)?))
    }

    fn reopen(
        &self,
        path: &Path,
        label: &str,
        layout: &Layout,
    ) -> Result<Box<dyn RecordSource>, IntakeError> {
        let csv = CsvLayout::from_layout(layout).ok_or_else(|| IntakeError::Changed {
            file: label.to_string(),
            what: "its stored CSV layout is incomplete".into(),
        })?;
        let mut source = CsvSource::reopen(path, label, &csv)?;
        // Keep the table's name as stored (earlier versions stored none).
        source.layout = layout.clone();
        Ok(Box::new(source))
    }
}

type Decoded = DecodeReaderBytes<File, Vec<u8>>;

/// A CSV file being read record by record (the header is read at opening).
pub struct CsvSource {
    reader: csv::Reader<Scan<Decoded>>,
    record: csv::StringRecord,
    csv: CsvLayout,
    /// The generic view of `csv`, as the job stores it.
    layout: Layout,
    label: String,
    done: bool,
}

impl std::fmt::Debug for CsvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvSource")
            .field("label", &self.label)
            .field("layout", &self.csv)
            .finish_non_exhaustive()
    }
}

impl CsvSource {
    /// Opens `path` and detects what `opts` leaves open. `label` is the file name shown to
    /// people in errors (e.g. "stores.csv").
    pub fn open(path: &Path, label: &str, opts: &ReadOptions) -> Result<CsvSource, IntakeError> {
        let io_err = |source| IntakeError::Io {
            file: label.to_string(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let (prefix, complete) = read_prefix(&mut file).map_err(io_err)?;

        let encoding = match &opts.encoding {
            Some(given) => {
                let encoding = detect::encoding_for_label(given).ok_or_else(|| {
                    IntakeError::UnknownEncoding {
                        file: label.to_string(),
                        label: given.clone(),
                    }
                })?;
                if let Some((bom, _)) = Encoding::for_bom(&prefix) {
                    if bom != encoding {
                        tracing::warn!(
                            "{label}: starts with a {} byte order mark but is read as {} as asked",
                            bom.name(),
                            encoding.name()
                        );
                    }
                }
                encoding
            }
            None => detect::sniff_encoding(&prefix, complete),
        };
        let delimiter = match opts.delimiter {
            Some(d) => check_delimiter(d, label)?,
            None => detect::sniff_delimiter(&detect::decode_prefix(encoding, &prefix), complete),
        };
        drop(prefix);
        file.rewind().map_err(io_err)?;

        let mut source = CsvSource::start(file, label, encoding, delimiter)?;
        let headers = &source.csv.headers;
        let (x, y, address) = columns::find_positions(headers, opts)
            .map_err(|problem| IntakeError::columns(label, headers, problem))?;
        source.csv.x = x;
        source.csv.y = y;
        source.layout = source.csv.layout(label);
        source.layout.tables[0].address = address;
        tracing::debug!(
            file = label,
            encoding = encoding.name(),
            delimiter = %char::from(delimiter).escape_default(),
            x = source.csv.x_name(),
            y = source.csv.y_name(),
            "layout found"
        );
        Ok(source)
    }

    /// Re-opens with a layout found earlier (no detection): same records in the same order.
    pub fn reopen(path: &Path, label: &str, layout: &CsvLayout) -> Result<CsvSource, IntakeError> {
        let encoding = detect::encoding_for_label(&layout.encoding).ok_or_else(|| {
            IntakeError::UnknownEncoding {
                file: label.to_string(),
                label: layout.encoding.clone(),
            }
        })?;
        let delimiter = check_delimiter(layout.delimiter, label)?;
        let file = File::open(path).map_err(|source| IntakeError::Io {
            file: label.to_string(),
            source,
        })?;
        let mut source = CsvSource::start(file, label, encoding, delimiter)?;
        if source.csv.headers != layout.headers
            || layout.x >= layout.headers.len()
            || layout.y >= layout.headers.len()
        {
            return Err(IntakeError::Changed {
                file: label.to_string(),
                what: format!(
                    "the columns were: {}; now: {}",
                    super::list(&layout.headers),
                    super::list(&source.csv.headers)
                ),
            });
        }
        source.csv = layout.clone();
        source.layout = source.csv.layout(label);
        Ok(source)
    }

    /// The reader positioned after the header; the layout's x/y are still 0.
    fn start(
        file: File,
        label: &str,
        encoding: &'static Encoding,
        delimiter: u8,
    ) -> Result<CsvSource, IntakeError> {
        let decoded = DecodeReaderBytesBuilder::new()
            .encoding(Some(encoding))
            .strip_bom(true)
            .build(file);
        let reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(Scan::new(decoded, delimiter));
        let csv = CsvLayout {
            encoding: encoding.name().to_string(),
            delimiter,
            headers: Vec::new(),
            x: 0,
            y: 0,
        };
        let mut source = CsvSource {
            reader,
            record: csv::StringRecord::new(),
            layout: csv.layout(label),
            csv,
            label: label.to_string(),
            done: false,
        };
        let header = match source.next() {
            None => {
                return Err(IntakeError::Empty {
                    file: label.to_string(),
                })
            }
            Some(header) => header?,
        };
        let headers: Vec<String> = header
            .fields
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let h = h.as_text();
                let h = if i == 0 {
                    h.trim_start_matches('\u{feff}')
                } else {
                    &h
                };
                h.trim().to_string()
            })
            .collect();
        if headers.iter().all(String::is_empty) {
            return Err(IntakeError::NoHeader {
                file: label.to_string(),
                line: header.line,
            });
        }
        source.csv.headers = headers;
        Ok(source)
    }

    /// What was found for this file.
    pub fn csv_layout(&self) -> &CsvLayout {
        &self.csv
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    fn error(&self, err: csv::Error) -> IntakeError {
        let file = self.label.clone();
        let line = err.position().map_or(0, csv::Position::line);
        match err.into_kind() {
            csv::ErrorKind::Io(source) => {
                match source
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<SyntaxError>())
                {
                    Some(syntax) => IntakeError::Syntax {
                        file,
                        line: syntax.line,
                        message: syntax.message.clone(),
                    },
                    None => IntakeError::Io { file, source },
                }
            }
            csv::ErrorKind::Utf8 { err, .. } => IntakeError::Syntax {
                file,
                line,
                message: format!("invalid text: {err}"),
            },
            other => IntakeError::Syntax {
                file,
                line,
                message: format!("{other:?}"),
            },
        }
    }
}

impl Iterator for CsvSource {
    type Item = Result<InputRecord, IntakeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.reader.read_record(&mut self.record) {
            Ok(true) => {
                let line = self.reader.get_mut().take_start().unwrap_or_else(|| {
                    // The scanner models the csv crate's splitting; should they ever disagree,
                    // the csv crate's own (approximate) position is better than nothing.
                    self.record.position().map_or(0, csv::Position::line)
                });
                Some(Ok(InputRecord {
                    table: 0,
                    line,
                    fields: self
                        .record
                        .iter()
                        .map(|f| Cell::Text(f.to_string()))
                        .collect(),
                }))
            }
            Ok(false) => {
                self.done = true;
                None
            }
            Err(err) => {
                self.done = true;
                Some(Err(self.error(err)))
            }
        }
    }
}

impl RecordSource for CsvSource {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn next_record(&mut self) -> Option<Result<InputRecord, IntakeError>> {
        self.next()
    }
}

/// The first [`PREFIX_BYTES`] of a file, and whether that is the whole file.
fn read_prefix(file: &mut File) -> io::Result<(Vec<u8>, bool)> {
    let mut prefix = Vec::with_capacity(PREFIX_BYTES);
    file.by_ref()
        .take(PREFIX_BYTES as u64 + 1)
        .read_to_end(&mut prefix)?;
    let complete = prefix.len() <= PREFIX_BYTES;
    prefix.truncate(PREFIX_BYTES);
    Ok((prefix, complete))
}

fn check_delimiter(delimiter: u8, label: &str) -> Result<u8, IntakeError> {
    if delimiter.is_ascii() && !matches!(delimiter, b'"' | b'\n' | b'\r') {
        return Ok(delimiter);
    }
    let shown = match delimiter {
        b'"' => "the quote character '\"'".to_string(),
        b'\n' | b'\r' => "a line break".to_string(),
        other => format!("byte {other:#04x}"),
    };
    Err(IntakeError::BadDelimiter {
        file: label.to_string(),
        shown,
    })
}
