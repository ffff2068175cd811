//! Intake: reading input files as streams of records, with what they are detected.
//!
//! An input format is one [`InputFormat`] (in its own module) and one line in [`formats`]. It
//! opens a file into a [`RecordSource`]: the file's [`Layout`] (its tables, their headers and
//! position columns, and whatever the format needs to read it again the same way) and its
//! records, one after another. The layout is kept with the job so the file can be read again
//! ([`reopen`]) with the same records in the same order: after a crash, and to merge.
//!
//! Before a job is accepted, [`inspect`] opens every file and checks the options against it;
//! while it runs, [`SheetSplitter`] decides which worksheet each row goes to.

mod cells;
mod columns;
mod csv;
mod inspect;
mod splitter;
mod workbook;

use std::io::{self, Read};
use std::path::Path;

pub use cells::{parse_coordinate, sheet_name};
pub use columns::{find_columns, find_given, find_positions, ColumnProblem};
pub use csv::{CsvLayout, CsvSource};
pub use inspect::{inspect, InspectError, Inspection, LIKELY_KOREAN_CRS};
pub use splitter::SheetSplitter;
pub use workbook::skipped_sheets;

use crate::job::quote_short;
pub use crate::job::{Cell, Layout, RowAddress, TableLayout};
pub use crate::options::ReadOptions;

/// Headers listed in an error message before "… and N more".
const LISTED_HEADERS: usize = 40;
/// Characters of header names an error lists at most (about).
const LISTED_CHARS: usize = 300;

/// Bytes of a file's start shown to [`InputFormat::recognizes`].
pub const HEAD_BYTES: usize = 8 * 1024;

/// A file being read, record by record, tables one after another in file order.
pub trait RecordSource: Send {
    fn layout(&self) -> &Layout;
    fn next_record(&mut self) -> Option<Result<InputRecord, IntakeError>>;
}

/// One input format.
pub trait InputFormat: Send + Sync {
    /// The name kept in the layout: "csv", "xlsx", …
    fn name(&self) -> &'static str;
    /// Whether this format reads a file whose first bytes are `head` and whose name is
    /// `label`. Content decides over the extension.
    fn recognizes(&self, head: &[u8], label: &str) -> bool;
    /// First opening: detects what `opts` leaves open.
    fn open(
        &self,
        path: &Path,
        label: &str,
        opts: &ReadOptions,
    ) -> Result<Box<dyn RecordSource>, IntakeError>;
    /// Re-opening with the layout found earlier: the same records in the same order.
    fn reopen(
        &self,
        path: &Path,
        label: &str,
        layout: &Layout,
    ) -> Result<Box<dyn RecordSource>, IntakeError>;
}

/// Every input format, asked in this order; CSV, which reads any text, last.
pub fn formats() -> &'static [&'static dyn InputFormat] {
    static FORMATS: &[&dyn InputFormat] =
        &[&workbook::XLSX, &workbook::XLS, &workbook::ODS, &csv::CSV];
    FORMATS
}

/// Opens a file with the format that recognizes its content.
pub fn open(
    path: &Path,
    label: &str,
    opts: &ReadOptions,
) -> Result<Box<dyn RecordSource>, IntakeError> {
    let head = read_head(path).map_err(|source| IntakeError::Io {
        file: label.to_string(),
        source,
    })?;
    let format = formats()
        .iter()
        .find(|f| f.recognizes(&head, label))
        .ok_or_else(|| IntakeError::UnknownFormat {
            file: label.to_string(),
        })?;
    format.open(path, label, opts)
}

/// Opens a file again with the layout found when its job was accepted.
pub fn reopen(
    path: &Path,
    label: &str,
    layout: &Layout,
) -> Result<Box<dyn RecordSource>, IntakeError> {
    let format = formats()
        .iter()
        .find(|f| f.name() == layout.format)
        .ok_or_else(|| IntakeError::Changed {
            file: label.to_string(),
            what: format!(
                "it was read as {:?}, which this geobatch cannot read",
                layout.format
            ),
        })?;
    format.reopen(path, label, layout)
}

fn read_head(path: &Path) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD_BYTES);
    std::fs::File::open(path)?
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// One data record as read.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRecord {
    /// Index into the layout's tables.
    pub table: u32,
    /// 1-based line (CSV: the physical line where the record starts) or row (workbook).
    pub line: u64,
    pub fields: Vec<Cell>,
}

impl InputRecord {
    /// Cell `i` as text ("" past the row's end).
    pub fn text(&self, i: usize) -> String {
        self.fields
            .get(i)
            .map(|c| c.as_text().into_owned())
            .unwrap_or_default()
    }
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
    #[error("{file}: not a file geobatch can read (CSV, or a workbook)")]
    UnknownFormat { file: String },
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
        "{file}: no x/y columns found; headers are: {}; name them with options x and y",
        list(.headers)
    )]
    NoColumns { file: String, headers: Vec<String> },
    #[error(
        "{file}: no {axis} column found; headers are: {}; name it with option {axis}",
        list(.headers)
    )]
    NoColumn {
        file: String,
        axis: &'static str,
        headers: Vec<String>,
    },
    #[error(
        "{file}: no address column found; headers are: {}; name the address column(s) with \
         option geocode (several are joined with spaces)",
        list(.headers)
    )]
    NoAddressColumn { file: String, headers: Vec<String> },
    #[error("{file}: no column {name:?} (given with option {axis}); headers are: {}", list(.headers))]
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
    #[error("{file}: the file changed since it was first read ({what}); submit it again")]
    Changed { file: String, what: String },
    #[error(
        "{file}: the workbook is password-protected; remove the password in Excel (File > \
         Info > Protect Workbook), save it and submit it again"
    )]
    Encrypted { file: String },
    #[error(
        "{file}: cannot read the workbook ({reason}); open it in Excel and save it again, or \
         save it as CSV"
    )]
    Damaged { file: String, reason: String },
    #[error("{file}: {message}")]
    NotWorkbook { file: String, message: String },
    #[error(
        "{file}: no sheet {} (option sheets); the sheets are: {}",
        quote_short(.name),
        list(.sheets)
    )]
    NoSheet {
        file: String,
        name: String,
        sheets: Vec<String>,
    },
    #[error("{file}: no sheet to read: {why}")]
    NoSheetLeft { file: String, why: String },
}

impl IntakeError {
    /// Which job option the error is about, if one is.
    pub fn option(&self) -> Option<&'static str> {
        match self {
            IntakeError::UnknownEncoding { .. } => Some("encoding"),
            IntakeError::BadDelimiter { .. } => Some("delimiter"),
            IntakeError::NoSheet { .. } => Some("sheets"),
            IntakeError::NoColumns { .. } => Some("x"),
            IntakeError::NoAddressColumn { .. } => Some("geocode"),
            IntakeError::NoColumn { axis, .. } | IntakeError::MissingColumn { axis, .. } => {
                Some(axis)
            }
            _ => None,
        }
    }

    /// The error for the columns of one table of `file`.
    pub fn columns(file: &str, headers: &[String], problem: ColumnProblem) -> IntakeError {
        let (file, headers) = (file.to_string(), headers.to_vec());
        match problem {
            ColumnProblem::NoneFound => IntakeError::NoColumns { file, headers },
            ColumnProblem::NoAddress => IntakeError::NoAddressColumn { file, headers },
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
    }
}

/// `"a", "b", …` for a message, cut short when there are many.
pub(crate) fn list(headers: &[String]) -> String {
    // At most LISTED_HEADERS names and about LISTED_CHARS characters of them: an error never
    // quotes a whole hostile header line.
    let mut out = String::new();
    let mut listed = 0;
    for h in headers.iter().take(LISTED_HEADERS) {
        if listed > 0 && out.chars().count() > LISTED_CHARS {
            break;
        }
        if listed > 0 {
            out.push_str(", ");
        }
        let room = LISTED_CHARS.saturating_sub(out.chars().count()).max(20);
        let short: String = h.chars().take(room).collect();
        out.push_str(&crate::job::quote_short(&short));
        if short.len() < h.len() {
            out.push('…');
        }
        listed += 1;
    }
    if headers.len() > listed {
        out.push_str(&format!(" … and {} more", headers.len() - listed));
    }
    if out.is_empty() {
        out.push_str("(none)");
    }
    out
}

/// The point of a record, or why not. Ragged rows (field count != header count) are bad too
/// (column "", raw e.g. "9 fields", reason "expected 12 fields, found 9").
pub fn point_of(record: &InputRecord, table: &TableLayout) -> Result<(f64, f64), BadCell> {
    same_width(record, table)?;
    let found = record.fields.len();
    let cell = |i: usize| match record.fields.get(i) {
        Some(cell) => coordinate_of(cell).map_err(|reason| BadCell {
            column: table.headers.get(i).cloned().unwrap_or_default(),
            raw: cell.as_text().into_owned(),
            reason,
        }),
        None => Err(BadCell {
            column: String::new(),
            raw: String::new(),
            reason: format!("no column {} in a row of {}", i + 1, fields(found)),
        }),
    };
    let (x, y) = (cell(table.x)?, cell(table.y)?);
    if x == 0.0 && y == 0.0 {
        // Also -0: the commonest missing-value placeholder of exports, never a position.
        return Err(BadCell {
            column: format!("{}, {}", table.x_name(), table.y_name()),
            raw: format!("{}, {}", record.text(table.x), record.text(table.y)),
            reason: PLACEHOLDER_REASON.to_string(),
        });
    }
    Ok((x, y))
}

/// The address of a record of a geocoding table: its address columns' cells joined with
/// spaces, and the alternative column's; or why it has none (a ragged row, no text at all,
/// text longer than [`crate::lookup::clean::MAX_ADDRESS_CHARS`]).
pub fn address_of(record: &InputRecord, table: &TableLayout) -> Result<RowAddress, BadCell> {
    same_width(record, table)?;
    let Some(address) = &table.address else {
        return Err(BadCell {
            column: String::new(),
            raw: String::new(),
            reason: "no address column in the stored layout".into(),
        });
    };
    let name = |i: usize| table.headers.get(i).cloned().unwrap_or_default();
    let columns: Vec<String> = address.columns.iter().map(|&i| name(i)).collect();
    let joined = |idx: &[usize]| {
        idx.iter()
            .map(|&i| record.text(i).trim().to_string())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let text = joined(&address.columns);
    let alternative = address
        .alternative
        .map(|i| joined(&[i]))
        .filter(|t| !t.is_empty());
    let max = crate::lookup::clean::MAX_ADDRESS_CHARS;
    for (t, column) in [(&text, columns.join(", "))].into_iter().chain(
        alternative
            .as_ref()
            .map(|a| (a, name(address.alternative.unwrap_or(0)))),
    ) {
        let chars = t.chars().count();
        if chars > max {
            return Err(BadCell {
                column,
                raw: t.chars().take(50).chain("…".chars()).collect(),
                reason: format!("address of {chars} characters; at most {max} are read"),
            });
        }
    }
    if text.is_empty() && alternative.is_none() {
        return Err(BadCell {
            column: columns.join(", "),
            raw: String::new(),
            reason: "no address".into(),
        });
    }
    Ok(RowAddress { text, alternative })
}

/// A record with as many fields as the header has names, or why not (a ragged row).
fn same_width(record: &InputRecord, table: &TableLayout) -> Result<(), BadCell> {
    let expected = table.headers.len();
    let found = record.fields.len();
    if found != expected {
        return Err(BadCell {
            column: String::new(),
            raw: fields(found),
            reason: format!("expected {}, found {found}", fields(expected)),
        });
    }
    Ok(())
}

/// Why x,y = 0,0 is an error row.
pub const PLACEHOLDER_REASON: &str = "0,0 is a missing-value placeholder, not a position";

/// A coordinate cell: a number cell as it is, a text cell parsed as text.
fn coordinate_of(cell: &Cell) -> Result<f64, String> {
    match cell {
        Cell::Number(n) if n.is_finite() => Ok(*n),
        Cell::Number(n) => Err(format!("not a finite number: {n}")),
        Cell::Text(s) => parse_coordinate(s),
        Cell::Empty => Err("empty".to_string()),
        Cell::Bool(_) | Cell::Date(_) => Err(format!("not a number: {:?}", cell.as_text())),
    }
}

fn fields(n: usize) -> String {
    if n == 1 {
        "1 field".to_string()
    } else {
        format!("{n} fields")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(headers: &[&str], x: usize, y: usize) -> TableLayout {
        TableLayout {
            name: "t".into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            header_line: 1,
            x,
            y,
            address: None,
        }
    }

    fn record(fields: Vec<Cell>) -> InputRecord {
        InputRecord {
            table: 0,
            line: 2,
            fields,
        }
    }

    #[test]
    fn number_cells_are_read_as_numbers_and_text_cells_as_text() {
        let t = table(&["name", "lon", "lat"], 1, 2);
        let r = record(vec![
            Cell::Text("a".into()),
            Cell::Number(127.25),
            Cell::Text(" 37.5 ".into()),
        ]);
        assert_eq!(point_of(&r, &t), Ok((127.25, 37.5)));
        let r = record(vec![Cell::Empty, Cell::Number(f64::NAN), Cell::Number(1.0)]);
        assert_eq!(point_of(&r, &t).unwrap_err().column, "lon");
        let r = record(vec![Cell::Empty, Cell::Bool(true), Cell::Number(1.0)]);
        assert!(point_of(&r, &t)
            .unwrap_err()
            .reason
            .contains("not a number"));
        let r = record(vec![
            Cell::Empty,
            Cell::Date("2024-01-01".into()),
            Cell::Number(1.0),
        ]);
        assert!(point_of(&r, &t).is_err());
        let r = record(vec![Cell::Empty, Cell::Empty, Cell::Number(1.0)]);
        assert_eq!(point_of(&r, &t).unwrap_err().reason, "empty");
    }

    #[test]
    fn zero_zero_is_a_placeholder() {
        let t = table(&["x", "y"], 0, 1);
        for (x, y) in [("0", "0"), ("-0", "-0.0"), ("0.000", "0")] {
            let r = record(vec![Cell::Text(x.into()), Cell::Text(y.into())]);
            let bad = point_of(&r, &t).unwrap_err();
            assert_eq!(bad.reason, PLACEHOLDER_REASON);
            assert_eq!(bad.column, "x, y");
        }
        let r = record(vec![Cell::Number(0.0), Cell::Number(1.0)]);
        assert_eq!(point_of(&r, &t), Ok((0.0, 1.0)));
    }

    #[test]
    fn a_bad_layout_is_an_error_row_not_a_panic() {
        let t = table(&["x"], 0, 5);
        let r = record(vec![Cell::Text("1".into())]);
        assert!(point_of(&r, &t).is_err());
        assert_eq!(t.y_name(), "");
    }

    #[test]
    fn addresses_are_joined_bounded_and_never_empty() {
        let mut t = table(&["시도", "도로명", "지번"], 0, 0);
        t.address = Some(crate::job::AddressColumns {
            columns: vec![0, 1],
            alternative: Some(2),
        });
        let text = |s: &str| Cell::Text(s.into());
        let r = record(vec![text(" 서울 "), text("세종대로 110"), Cell::Empty]);
        assert_eq!(
            address_of(&r, &t),
            Ok(RowAddress {
                text: "서울 세종대로 110".into(),
                alternative: None
            })
        );
        let r = record(vec![Cell::Empty, text(""), text("태평로1가 31")]);
        assert_eq!(
            address_of(&r, &t).unwrap().alternative.as_deref(),
            Some("태평로1가 31")
        );
        let r = record(vec![Cell::Empty, text("  "), Cell::Empty]);
        let bad = address_of(&r, &t).unwrap_err();
        assert_eq!(
            (bad.column.as_str(), bad.reason.as_str()),
            ("시도, 도로명", "no address")
        );
        let r = record(vec![text(&"가".repeat(400)), Cell::Empty, Cell::Empty]);
        let bad = address_of(&r, &t).unwrap_err();
        assert!(bad.reason.contains("400 characters"), "{}", bad.reason);
        assert!(bad.raw.chars().count() <= 51);
        let r = record(vec![text("서울")]);
        assert!(address_of(&r, &t)
            .unwrap_err()
            .reason
            .contains("expected 3 fields"));
    }
}
