//! Workbooks: xlsx and xlsm (streamed), xls and ods (calamine). Each worksheet read is a table
//! of its own; hidden, empty and non-worksheet sheets, and sheets without x/y columns, are
//! skipped, and the layout says which and why (`reader.skipped`).
//!
//! What a file is follows its content (a zip, an OLE container, text); its name only serves to
//! tell people what went wrong: an `.xls` that is a web page, a workbook named `.csv`.

mod book;
mod header;
mod sniff;
mod source;
mod values;

use std::path::Path;

use book::Book;
use header::Header;
pub(super) use sniff::Content;

use super::{columns, IntakeError, Layout, ReadOptions, RecordSource, TableLayout};
use crate::job::Cell;

/// The kinds of workbook read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Xlsx,
    Xls,
    Ods,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Xlsx => "xlsx",
            Kind::Xls => "xls",
            Kind::Ods => "ods",
        }
    }
}

/// What went wrong opening or reading a workbook, before it is told with the file's name.
#[derive(Debug)]
pub(super) enum WorkbookProblem {
    Io(std::io::Error),
    Encrypted,
    Damaged(String),
    Unreadable(String),
}

impl WorkbookProblem {
    fn into_error(self, label: &str) -> IntakeError {
        let file = label.to_string();
        match self {
            WorkbookProblem::Io(source) => IntakeError::Io { file, source },
            WorkbookProblem::Encrypted => IntakeError::Encrypted { file },
            WorkbookProblem::Damaged(reason) => IntakeError::Damaged {
                file,
                reason: sniff::printable(&format!("not a complete zip archive: {reason}")),
            },
            WorkbookProblem::Unreadable(reason) => IntakeError::Damaged {
                file,
                reason: sniff::printable(&reason),
            },
        }
    }
}

/// One workbook format of the registry; every one reads any workbook content (the kind is
/// the content's), so a workbook saved under the wrong workbook extension reads too.
pub struct WorkbookFormat {
    kind: Kind,
}

pub static XLSX: WorkbookFormat = WorkbookFormat { kind: Kind::Xlsx };
pub static XLS: WorkbookFormat = WorkbookFormat { kind: Kind::Xls };
pub static ODS: WorkbookFormat = WorkbookFormat { kind: Kind::Ods };

impl super::InputFormat for WorkbookFormat {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn recognizes(&self, head: &[u8], label: &str) -> bool {
        let content = Content::of(head);
        let kind = match content.kind() {
            Some(kind) => kind,
            // Not a workbook's content: the extension's format explains what it is instead.
            None => match sniff::extension_kind(label) {
                Some(kind) => kind,
                None => return false,
            },
        };
        kind == self.kind
    }

    fn open(
        &self,
        path: &Path,
        label: &str,
        opts: &ReadOptions,
    ) -> Result<Box<dyn RecordSource>, IntakeError> {
        let kind = sniff::check(path, label)?;
        let layout = detect(path, label, kind, opts)?;
        Ok(Box::new(source::WorkbookSource::start(
            path, label, kind, layout,
        )))
    }

    fn reopen(
        &self,
        path: &Path,
        label: &str,
        layout: &Layout,
    ) -> Result<Box<dyn RecordSource>, IntakeError> {
        Ok(Box::new(source::WorkbookSource::start(
            path,
            label,
            self.kind,
            layout.clone(),
        )))
    }
}

/// A sheet not read, and why.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Skipped {
    sheet: String,
    why: String,
}

/// The sheets a workbook's layout says were skipped, as "“Notes” (hidden)" texts.
pub fn skipped_sheets(layout: &Layout) -> Vec<String> {
    let skipped: Vec<Skipped> = layout
        .reader
        .get("skipped")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    skipped
        .into_iter()
        .map(|s| format!("{} ({})", crate::job::quote_short(&s.sheet), s.why))
        .collect()
}

/// A sheet's wanted name as the workbook spells it: exact, else ignoring case and spaces.
fn pick<'a>(names: &'a [String], wanted: &str) -> Option<&'a String> {
    names.iter().find(|n| *n == wanted).or_else(|| {
        let w = wanted.trim().to_lowercase();
        names.iter().find(|n| n.trim().to_lowercase() == w)
    })
}

/// Finds the sheets to read, their headers and x/y columns.
fn detect(path: &Path, label: &str, kind: Kind, opts: &ReadOptions) -> Result<Layout, IntakeError> {
    let mut book = Book::open(path, kind).map_err(|p| p.into_error(label))?;
    let sheets = book.sheets();
    let names: Vec<String> = sheets.iter().map(|s| s.name.clone()).collect();
    let wanted: Option<Vec<&String>> = match &opts.sheets {
        Some(list) => Some(
            list.iter()
                .map(|w| {
                    pick(&names, w).ok_or_else(|| IntakeError::NoSheet {
                        file: label.to_string(),
                        name: w.clone(),
                        sheets: names.clone(),
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        None => None,
    };
    let mut tables = Vec::new();
    let mut header_rows = Vec::new();
    let mut skipped = Vec::new();
    let mut first_problem = None;
    for sheet in &sheets {
        let chosen = match &wanted {
            Some(w) if !w.contains(&&sheet.name) => continue,
            Some(_) => true,
            None => false,
        };
        let skip = |why: &str| Skipped {
            sheet: sheet.name.clone(),
            why: why.to_string(),
        };
        if !sheet.worksheet {
            skipped.push(skip("not a worksheet"));
            continue;
        }
        if !sheet.visible && !chosen {
            skipped.push(skip("hidden"));
            continue;
        }
        let rows =
            first_rows(&mut book, &sheet.name, opts.header_row).map_err(|p| p.into_error(label))?;
        if rows.is_empty() {
            skipped.push(skip("empty"));
            continue;
        }
        let Some(header) = header::find(&rows, opts.header_row) else {
            let n = opts.header_row.unwrap_or(1);
            skipped.push(skip(&format!("row {n} (option header_row) is empty")));
            continue;
        };
        match columns_of(&header, opts) {
            Ok((x, y, address)) => {
                header_rows.push(header.rows);
                tables.push(TableLayout {
                    name: sheet.name.clone(),
                    headers: header.names,
                    header_line: u64::from(header.first + header.rows),
                    x,
                    y,
                    address,
                });
            }
            Err(problem) => {
                let file = format!("{label}, sheet {}", crate::job::quote_short(&sheet.name));
                let error = IntakeError::columns(&file, &header.names, problem);
                if chosen {
                    // A sheet the user named is read or refused, never skipped.
                    return Err(error);
                }
                skipped.push(skip("no x/y columns"));
                first_problem.get_or_insert(error);
            }
        }
    }
    if tables.is_empty() {
        return Err(first_problem.unwrap_or_else(|| IntakeError::NoSheetLeft {
            file: label.to_string(),
            why: if skipped.is_empty() {
                "the workbook has no sheets".into()
            } else {
                skipped_sheets(&Layout {
                    format: String::new(),
                    reader: serde_json::json!({ "skipped": skipped }),
                    tables: Vec::new(),
                })
                .join(", ")
            },
        }));
    }
    for s in &skipped {
        tracing::info!(file = label, sheet = %s.sheet, why = %s.why, "sheet skipped");
    }
    Ok(Layout {
        format: kind.name().into(),
        reader: serde_json::json!({ "header_rows": header_rows, "skipped": skipped }),
        tables,
    })
}

/// The position columns by the header's names, else by its sub-header names alone.
fn columns_of(header: &Header, opts: &ReadOptions) -> Result<Positions, columns::ColumnProblem> {
    columns::find_positions(&header.names, opts).or_else(|problem| {
        if header.alternative.is_empty() {
            Err(problem)
        } else {
            columns::find_positions(&header.alternative, opts).map_err(|_| problem)
        }
    })
}

type Positions = (usize, usize, Option<crate::job::AddressColumns>);

/// A sheet's first rows with values: enough to find its header.
fn first_rows(
    book: &mut Book,
    sheet: &str,
    header_row: Option<u32>,
) -> Result<Vec<(u32, Vec<Cell>)>, WorkbookProblem> {
    let from = header_row.map_or(0, |n| n.saturating_sub(1));
    let mut rows = Vec::new();
    book.rows(sheet, &mut |index, cells| {
        if index >= from {
            rows.push((index, cells));
        }
        rows.len() < header::SCAN_ROWS
    })?;
    Ok(rows)
}

#[cfg(test)]
mod tests;
