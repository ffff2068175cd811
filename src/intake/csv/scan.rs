//! A byte-level model of how the `csv` crate splits records (default quoting: `"` quotes,
//! doubled `""` escapes, `\r`, `\n` and `\r\n` end records, blank lines are skipped).
//!
//! It serves two purposes:
//! * delimiter detection counts fields per record in a decoded prefix with it;
//! * [`Scan`] sits between the decoder and the csv reader and records the physical line on
//!   which every record starts (the csv crate's own positions are off after blank lines and
//!   with `\r\n` endings), and stops a stray opening quote from swallowing the rest of a file
//!   into one field: such a field either reaches the end of the file (an error naming the line
//!   of the quote) or grows past [`MAX_RECORD_BYTES`].

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};

/// The longest record accepted, in decoded UTF-8 bytes. Excel keeps at most 32,767 characters
/// in a cell, so anything near this is a broken file, not data.
pub(super) const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    StartRecord,
    StartField,
    InField,
    InQuoted,
    /// A `"` inside a quoted field: either the first of a doubled quote or the closing one.
    QuoteInQuoted,
}

/// What one byte did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The first byte of a new record.
    RecordStart,
    /// A byte inside a record (content, quotes).
    Inside,
    /// A delimiter outside quotes: one field ended, another starts.
    FieldEnd,
    /// A line ending outside quotes: the record ended.
    RecordEnd,
    /// A line ending between records (blank line or the `\n` of `\r\n`).
    Skipped,
}

/// The record-splitting state machine.
#[derive(Clone, Debug)]
pub(super) struct Splitter {
    delimiter: u8,
    state: State,
}

impl Splitter {
    pub(super) fn new(delimiter: u8) -> Splitter {
        Splitter {
            delimiter,
            state: State::StartRecord,
        }
    }

    pub(super) fn in_quotes(&self) -> bool {
        self.state == State::InQuoted
    }

    pub(super) fn step(&mut self, b: u8) -> Step {
        let term = b == b'\n' || b == b'\r';
        let (next, step) = match self.state {
            State::StartRecord if term => (State::StartRecord, Step::Skipped),
            State::StartRecord | State::StartField => {
                let start = self.state == State::StartRecord;
                let (next, step) = if b == b'"' {
                    (State::InQuoted, Step::Inside)
                } else if b == self.delimiter {
                    (State::StartField, Step::FieldEnd)
                } else if term {
                    (State::StartRecord, Step::RecordEnd)
                } else {
                    (State::InField, Step::Inside)
                };
                (next, if start { Step::RecordStart } else { step })
            }
            State::InField => {
                if b == self.delimiter {
                    (State::StartField, Step::FieldEnd)
                } else if term {
                    (State::StartRecord, Step::RecordEnd)
                } else {
                    (State::InField, Step::Inside)
                }
            }
            State::InQuoted => {
                if b == b'"' {
                    (State::QuoteInQuoted, Step::Inside)
                } else {
                    (State::InQuoted, Step::Inside)
                }
            }
            State::QuoteInQuoted => {
                if b == b'"' {
                    (State::InQuoted, Step::Inside)
                } else if b == self.delimiter {
                    (State::StartField, Step::FieldEnd)
                } else if term {
                    (State::StartRecord, Step::RecordEnd)
                } else {
                    (State::InField, Step::Inside)
                }
            }
        };
        self.state = next;
        step
    }
}

/// Counts fields per record in `text` for `delimiter`, for at most `max` records. The last
/// record counts only when it is terminated or `complete` (the text is the whole file).
pub(super) fn field_counts(text: &str, delimiter: u8, complete: bool, max: usize) -> Vec<usize> {
    let mut splitter = Splitter::new(delimiter);
    let mut counts = Vec::new();
    let mut fields = 0usize;
    let mut open = false;
    for &b in text.as_bytes() {
        if counts.len() >= max {
            return counts;
        }
        match splitter.step(b) {
            Step::RecordStart => {
                open = true;
                // A record can start with a delimiter (an empty first field).
                fields = if b == delimiter { 2 } else { 1 };
            }
            Step::FieldEnd => fields += 1,
            Step::RecordEnd => {
                counts.push(fields);
                open = false;
            }
            Step::Inside | Step::Skipped => {}
        }
    }
    if open && complete && counts.len() < max {
        counts.push(fields);
    }
    counts
}

/// A malformed file, found while reading it.
#[derive(Debug)]
pub(super) struct SyntaxError {
    pub(super) line: u64,
    pub(super) message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// A reader of decoded UTF-8 that watches the records going by (see the module docs).
pub(super) struct Scan<R> {
    inner: R,
    splitter: Splitter,
    /// Physical line of the next byte (1-based).
    line: u64,
    last_was_cr: bool,
    /// Start lines of records seen but not yet taken by the csv reader.
    starts: VecDeque<u64>,
    /// Bytes of the current record so far.
    record_bytes: u64,
    record_line: u64,
    /// Line of the `"` that opened the current quoted field.
    quote_line: u64,
    max_record: u64,
    failed: Option<(u64, String)>,
}

impl<R: Read> Scan<R> {
    pub(super) fn new(inner: R, delimiter: u8) -> Scan<R> {
        Scan::with_limit(inner, delimiter, MAX_RECORD_BYTES)
    }

    pub(super) fn with_limit(inner: R, delimiter: u8, max_record: u64) -> Scan<R> {
        Scan {
            inner,
            splitter: Splitter::new(delimiter),
            line: 1,
            last_was_cr: false,
            starts: VecDeque::new(),
            record_bytes: 0,
            record_line: 1,
            quote_line: 1,
            max_record,
            failed: None,
        }
    }

    /// The start line of the oldest record not yet taken.
    pub(super) fn take_start(&mut self) -> Option<u64> {
        self.starts.pop_front()
    }

    fn fail(&mut self, line: u64, message: String) -> io::Error {
        self.failed = Some((line, message.clone()));
        io::Error::new(io::ErrorKind::InvalidData, SyntaxError { line, message })
    }

    fn watch(&mut self, bytes: &[u8]) -> io::Result<()> {
        for &b in bytes {
            let was_quoted = self.splitter.in_quotes();
            match self.splitter.step(b) {
                Step::RecordStart => {
                    self.starts.push_back(self.line);
                    self.record_line = self.line;
                    self.record_bytes = 0;
                }
                Step::RecordEnd => self.record_bytes = 0,
                Step::Inside | Step::FieldEnd | Step::Skipped => {}
            }
            if !was_quoted && self.splitter.in_quotes() {
                self.quote_line = self.line;
            }
            match b {
                b'\r' => self.line += 1,
                b'\n' if !self.last_was_cr => self.line += 1,
                _ => {}
            }
            self.last_was_cr = b == b'\r';
            self.record_bytes += 1;
            if self.record_bytes > self.max_record {
                let mib = self.max_record / (1024 * 1024);
                let size = if mib > 0 {
                    format!("{mib} MiB")
                } else {
                    format!("{} bytes", self.max_record)
                };
                let (line, message) = if self.splitter.in_quotes() {
                    (
                        self.quote_line,
                        format!(
                            "a quoted field starting here runs on for more than {size}; \
                             check this line for a \" that is never closed"
                        ),
                    )
                } else {
                    (
                        self.record_line,
                        format!("a row starting here is longer than {size}"),
                    )
                };
                return Err(self.fail(line, message));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Scan<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((line, message)) = &self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                SyntaxError {
                    line: *line,
                    message: message.clone(),
                },
            ));
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            if self.splitter.in_quotes() && !buf.is_empty() {
                let line = self.quote_line;
                return Err(self.fail(
                    line,
                    "a quoted field starting here never ends; \
                     check this line for a \" that is never closed"
                        .to_string(),
                ));
            }
            return Ok(0);
        }
        self.watch(&buf[..n])?;
        Ok(n)
    }
}
