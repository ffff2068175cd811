//! Intake: streaming CSV reading with detection of encoding, delimiter and x/y columns.
//!
//! Only a bounded prefix of a file ([`PREFIX_BYTES`]) is read to detect its encoding and
//! delimiter; records are then streamed through a decoder, so memory stays bounded by the
//! longest record whatever the file's size. The [`Layout`] found is kept with the job so the
//! file can be read again ([`CsvSource::reopen`]) with the same rows in the same order.

mod cells;
mod detect;
mod scan;
#[cfg(test)]
mod tests;

pub use cells::{parse_coordinate, sheet_name};

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::Path;

use encoding_rs::Encoding;
use encoding_rs_io::{DecodeReaderBytes, DecodeReaderBytesBuilder};

use detect::ColumnProblem;
use scan::{Scan, SyntaxError};

/// Bytes read from the start of a file to detect its encoding and delimiter.
pub const PREFIX_BYTES: usize = 64 * 1024;

/// Headers listed in an error message before "… and N more".
const LISTED_HEADERS: usize = 40;

/// What the user told us; None = detect.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ReadOptions {
    /// An encoding label: "utf-8", "cp949", "euc-kr", "utf-16le", "utf-16be" (encoding_rs labels).
    pub encoding: Option<String>,
    pub delimiter: Option<u8>,
    pub x_column: Option<String>,
    pub y_column: Option<String>,
}

/// What was found (or given) for one file; stored with the job so a re-read gives the same rows.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Layout {
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

impl Layout {
    pub fn x_name(&self) -> &str {
        self.headers.get(self.x).map_or("", String::as_str)
    }

    pub fn y_name(&self) -> &str {
        self.headers.get(self.y).map_or("", String::as_str)
    }
}

/// One data record as read: cells decoded to UTF-8 exactly as they were (no trimming).
#[derive(Clone, Debug, PartialEq)]
pub struct InputRecord {
    /// 1-based physical line where the record starts.
    pub line: u64,
    pub fields: Vec<String>,
}

/// Why one cell/row cannot become a point.
#[derive(Clone, Debug, PartialEq)]
pub struct BadCell {
    pub column: String,
    pub raw: String,
    pub reason: String,
}

/// Why a file cannot be read. Every message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{file}: unknown encoding {label:?}; use one of: utf-8, cp949 (same as euc-kr), \
         utf-16le, utf-16be"
    )]
    UnknownEncoding { file: String, label: String },
    #[error("{file}: cannot split columns on {shown}; use one of , ; | or tab")]
    BadDelimiter { file: String, shown: String },
    #[error("{file}: the file is empty; its first line must name the columns")]
    Empty { file: String },
    #[error(
        "{file}: the first line (line {line}) has no column names; the first line must name \
         the columns"
    )]
    NoHeader { file: String, line: u64 },
    #[error(
        "{file}: no x/y columns found; headers are: {}; name them with --x and --y",
        list(.headers)
    )]
    NoColumns { file: String, headers: Vec<String> },
    #[error(
        "{file}: no {axis} column found; headers are: {}; name it with --{axis}",
        list(.headers)
    )]
    NoColumn {
        file: String,
        axis: &'static str,
        headers: Vec<String>,
    },
    #[error("{file}: no column {name:?} (given with --{axis}); headers are: {}", list(.headers))]
    MissingColumn {
        file: String,
        axis: &'static str,
        name: String,
        headers: Vec<String>,
    },
    #[error("{file}: line {line}: {message}")]
    Syntax {
        file: String,
        line: u64,
        message: String,
    },
    #[error(
        "{file}: the columns changed since the file was first read (was: {}; now: {}); \
         submit the file again",
        list(.expected),
        list(.found)
    )]
    Changed {
        file: String,
        expected: Vec<String>,
        found: Vec<String>,
    },
}

/// `"a", "b", …` for a message, cut short when there are many.
fn list(headers: &[String]) -> String {
    let mut out = headers
        .iter()
        .take(LISTED_HEADERS)
        .map(|h| format!("{h:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if headers.len() > LISTED_HEADERS {
        out.push_str(&format!(" … and {} more", headers.len() - LISTED_HEADERS));
    }
    if out.is_empty() {
        out.push_str("(none)");
    }
    out
}

type Decoded = DecodeReaderBytes<File, Vec<u8>>;

/// A CSV file being read record by record (the header is read at opening).
pub struct CsvSource {
    reader: csv::Reader<Scan<Decoded>>,
    record: csv::StringRecord,
    layout: Layout,
    label: String,
    done: bool,
}

impl std::fmt::Debug for CsvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvSource")
            .field("label", &self.label)
            .field("layout", &self.layout)
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
        let headers = &source.layout.headers;
        let (x, y) =
            detect::find_columns(headers, opts.x_column.as_deref(), opts.y_column.as_deref())
                .map_err(|problem| {
                    let file = label.to_string();
                    let headers = headers.clone();
                    match problem {
                        ColumnProblem::NoneFound => IntakeError::NoColumns { file, headers },
                        ColumnProblem::OtherNotFound(axis) => IntakeError::NoColumn {
                            file,
                            axis,
                            headers,
                        },
                        ColumnProblem::GivenMissing(axis, name) => IntakeError::MissingColumn {
                            file,
                            axis,
                            name,
                            headers,
                        },
                    }
                })?;
        source.layout.x = x;
        source.layout.y = y;
        tracing::debug!(
            file = label,
            encoding = encoding.name(),
            delimiter = %char::from(delimiter).escape_default(),
            x = source.layout.x_name(),
            y = source.layout.y_name(),
            "layout found"
        );
        Ok(source)
    }

    /// Re-opens with a layout found earlier (no detection): same records in the same order.
    pub fn reopen(path: &Path, label: &str, layout: &Layout) -> Result<CsvSource, IntakeError> {
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
        if source.layout.headers != layout.headers
            || layout.x >= layout.headers.len()
            || layout.y >= layout.headers.len()
        {
            return Err(IntakeError::Changed {
                file: label.to_string(),
                expected: layout.headers.clone(),
                found: source.layout.headers,
            });
        }
        source.layout = layout.clone();
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
        let mut source = CsvSource {
            reader,
            record: csv::StringRecord::new(),
            layout: Layout {
                encoding: encoding.name().to_string(),
                delimiter,
                headers: Vec::new(),
                x: 0,
                y: 0,
            },
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
                let h = if i == 0 {
                    h.trim_start_matches('\u{feff}')
                } else {
                    h
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
        source.layout.headers = headers;
        Ok(source)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
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
                    line,
                    fields: self.record.iter().map(str::to_string).collect(),
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

/// The point of a record, or why not. Ragged rows (field count != header count) are bad too
/// (column "", raw e.g. "9 fields", reason "expected 12 fields, found 9").
pub fn point_of(record: &InputRecord, layout: &Layout) -> Result<(f64, f64), BadCell> {
    let expected = layout.headers.len();
    let found = record.fields.len();
    if found != expected {
        return Err(BadCell {
            column: String::new(),
            raw: fields(found),
            reason: format!("expected {}, found {found}", fields(expected)),
        });
    }
    let cell = |i: usize| match record.fields.get(i) {
        Some(raw) => parse_coordinate(raw).map_err(|reason| BadCell {
            column: layout.headers[i].clone(),
            raw: raw.clone(),
            reason,
        }),
        None => Err(BadCell {
            column: String::new(),
            raw: String::new(),
            reason: format!("no column {} in a row of {}", i + 1, fields(found)),
        }),
    };
    Ok((cell(layout.x)?, cell(layout.y)?))
}

fn fields(n: usize) -> String {
    if n == 1 {
        "1 field".to_string()
    } else {
        format!("{n} fields")
    }
}
