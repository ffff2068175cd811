//! The merger: input rows and their stored results, joined in input order, written to each
//! output the job asks for.
//!
//! The input is read again from the stored upload (with the layout found at intake) while the
//! results stream from the store by sequence number: nothing holds a whole file in memory.
//! Each row goes to every [`ResultWriter`]; an output format is one writer (in its own module)
//! and one line in [`formats`].

mod csv;
mod geojson;
mod gpkg;
mod summary;
mod warnings;
mod xlsx;

use crate::lookup::clean::{clean, CleanStep};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};

use crate::convert::CrsInfo;
use crate::intake::{self, IntakeError};
use crate::job::{Cell, Layout, Outcome, RowStatus, EXCEL_MAX_COLUMNS};
use crate::store::{JobFile, JobRecord, ResultStore, SheetRecord, StoreError, StoredResult};

pub use summary::{utc_text, Summary};
pub use warnings::{Tally, Warnings, CUT_KEY, UNDECODABLE_KEY};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("writing the workbook: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error("writing {path}: {source}")]
    Save {
        path: String,
        #[source]
        source: rust_xlsxwriter::XlsxError,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the GeoPackage: {0}")]
    Sqlite(#[from] sqlx::Error),
    #[error("writing the zip of CSV files: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("merging: {0}")]
    Inconsistent(String),
}

impl MergeError {
    fn io(path: &Path, source: std::io::Error) -> MergeError {
        MergeError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Where a writer puts its file until it is complete: beside it, `.partial` added.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Names made unique without regard to case (SQLite's columns, JSON keys people read): a blank
/// name is `<blank>_<position>`, a repeated one gets `_2`, `_3`…; `taken` are reserved.
fn unique_names(
    names: impl Iterator<Item = String>,
    blank: &str,
    mut taken: Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, name) in names.enumerate() {
        let name = name.trim();
        let base = match name.is_empty() {
            true => format!("{blank}_{}", i + 1),
            false => name.to_string(),
        };
        let mut candidate = base.clone();
        let mut n = 2;
        while taken.iter().any(|t| t.eq_ignore_ascii_case(&candidate)) {
            candidate = format!("{base}_{n}");
            n += 1;
        }
        taken.push(candidate.clone());
        out.push(candidate);
    }
    out
}

/// An output sheet (or layer) and its columns.
#[derive(Clone, Debug, PartialEq)]
pub struct SheetSpec {
    /// A valid, unique Excel sheet name.
    pub name: String,
    /// The input table's headers, then `extra_1`, … for the cells of rows longer than the
    /// header (ragged rows; a row may also have fewer cells).
    pub headers: Vec<String>,
    /// The columns geobatch adds after the input's, in order: the position, the job's added
    /// columns, `status`, `error`.
    pub new_columns: Vec<String>,
}

/// What every writer is told before the first row.
pub struct OutputPlan<'a> {
    pub sheets: &'a [SheetSpec],
    pub target: &'a CrsInfo,
    /// Data rows per sheet (Excel's limit unless lowered to test): the Errors sheet continues
    /// in `Errors (2)`, … past it.
    pub max_rows: u64,
}

/// A new column's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutValue<'a> {
    Empty,
    Number(f64),
    Text(&'a str),
}

/// One row as the writers get it.
pub struct MergedRow<'a> {
    /// Index into the plan's sheets.
    pub sheet: usize,
    /// Input line (CSV) or row (workbook), 1-based.
    pub line: u64,
    pub cells: &'a [Cell],
    pub status: RowStatus,
    /// The position in the target CRS.
    pub position: Option<(f64, f64)>,
    /// Values of the sheet's new columns, same order and length.
    pub values: &'a [OutValue<'a>],
    /// For error rows: the column, the value as read and the reason.
    pub error: Option<(&'a str, &'a str, &'a str)>,
}

/// One output format.
pub trait ResultWriter: Send {
    /// Rows come interleaved across sheets, in input order within each sheet.
    fn row(&mut self, row: &MergedRow<'_>) -> Result<(), MergeError>;
    /// Completes the file: written beside the target and renamed, so a reader never sees
    /// half a file.
    fn finish(self: Box<Self>, summary: &Summary) -> Result<(), MergeError>;
}

/// Starts a file of one format at a path.
pub type CreateWriter = fn(&Path, &OutputPlan<'_>) -> Result<Box<dyn ResultWriter>, MergeError>;

/// An output format: its file extension and how to start a file of it.
pub struct OutputFormat {
    pub extension: &'static str,
    /// The HTTP content type of its file.
    pub content_type: &'static str,
    pub create: CreateWriter,
}

/// Every output format (the names `options::OUTPUT_FORMATS` accepts).
pub fn formats() -> &'static [OutputFormat] {
    &[
        OutputFormat {
            extension: "xlsx",
            content_type: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            create: xlsx::create,
        },
        OutputFormat {
            extension: "gpkg",
            content_type: "application/geopackage+sqlite3",
            create: gpkg::create,
        },
        OutputFormat {
            extension: "geojson",
            content_type: "application/geo+json",
            create: geojson::create,
        },
        OutputFormat {
            extension: "csv",
            content_type: "text/csv; charset=utf-8",
            create: csv::create,
        },
    ]
}

/// The file extension of a format's output: a job of several sheets gets its CSV files in a
/// zip.
pub fn file_extension(format: &str, sheets: usize) -> &str {
    match format {
        "csv" if sheets > 1 => "zip",
        other => other,
    }
}

/// Where a format's file goes, from the path of the job's output (`-o`, the watched folder's
/// outbox, or `<data dir>/results/<job>.xlsx`): that path itself for the only format when its
/// extension names no other format (`-o out.gpkg`, `-o result.dat`), else that path with the
/// format's extension (`out.xlsx` + `out.gpkg`).
pub fn result_path(output: &Path, formats: &[&str], format: &str, sheets: usize) -> PathBuf {
    let ext = file_extension(format, sheets);
    let names_other = output.extension().is_some_and(|e| {
        let e = e.to_string_lossy();
        !e.eq_ignore_ascii_case(format)
            && crate::options::OUTPUT_FORMATS
                .iter()
                .any(|f| e.eq_ignore_ascii_case(f))
    });
    if formats.len() == 1 && !names_other && output.extension().is_none_or(|e| e != format) {
        output.to_path_buf()
    } else {
        output.with_extension(ext)
    }
}

/// The format of this extension.
pub fn format(extension: &str) -> Option<&'static OutputFormat> {
    formats()
        .iter()
        .find(|f| f.extension.eq_ignore_ascii_case(extension))
}

/// Counts of a merge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MergeCounts {
    pub rows: u64,
    /// `ok` rows.
    pub ok: u64,
    pub ambiguous: u64,
    pub no_result: u64,
    pub failed: u64,
    /// Cells cut or with undecodable bytes.
    pub warnings: Warnings,
    /// Geocoding: rows each cleaning step changed, in the order of `CleanStep::ALL`.
    pub cleaning: [u64; CleanStep::ALL.len()],
}

/// Everything the merge of one job needs.
pub struct MergeJob<'a> {
    pub job: &'a JobRecord,
    pub source: &'a CrsInfo,
    pub target: &'a CrsInfo,
    /// The columns the job's steps add after the position (an address lookup's), in order.
    pub added_columns: &'a [&'a str],
    /// Where each output goes, with its format.
    pub outputs: Vec<(PathBuf, &'static OutputFormat)>,
    /// Data rows per sheet ([`crate::job::EXCEL_MAX_DATA_ROWS`] unless lowered to test).
    pub sheet_max_rows: u64,
}

/// Writes the outputs of a job whose every row has a result.
pub async fn merge_job(store: &ResultStore, m: MergeJob<'_>) -> Result<MergeCounts, MergeError> {
    let files = store.files(&m.job.id).await?;
    let sheets = store.sheets(&m.job.id).await?;
    let (tx, rx) = sync_channel::<Result<Vec<StoredResult>, StoreError>>(4);
    let work = Work {
        job: m.job.clone(),
        files,
        sheets,
        source: m.source.clone(),
        target: m.target.clone(),
        added: m.added_columns.iter().map(|c| c.to_string()).collect(),
        outputs: m.outputs,
        max_rows: m.sheet_max_rows,
    };
    // The writers run on a thread of their own while this task pages results to them.
    let writer = tokio::task::spawn_blocking(move || work.run(rx));
    let mut after = None;
    loop {
        let page = store.results_page(&m.job.id, after, 10_000).await;
        let last = match &page {
            Ok(p) if p.is_empty() => break,
            Ok(p) => p.last().map(|r| r.seq),
            Err(_) => None,
        };
        let failed = page.is_err();
        // A closed channel means the writer stopped early; its error is the one to report.
        if tx.send(page).is_err() || failed {
            break;
        }
        after = last;
    }
    drop(tx);
    writer
        .await
        .map_err(|e| MergeError::Inconsistent(format!("writer stopped: {e}")))?
}

struct Work {
    job: JobRecord,
    files: Vec<JobFile>,
    sheets: Vec<SheetRecord>,
    source: CrsInfo,
    target: CrsInfo,
    added: Vec<String>,
    outputs: Vec<(PathBuf, &'static OutputFormat)>,
    max_rows: u64,
}

impl Work {
    fn run(
        self,
        results: Receiver<Result<Vec<StoredResult>, StoreError>>,
    ) -> Result<MergeCounts, MergeError> {
        let layouts = self
            .files
            .iter()
            .map(|f| {
                f.layout.clone().ok_or_else(|| {
                    MergeError::Inconsistent(format!("{}: no layout stored", f.label))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let widths = widest_records(&self.files, &layouts)?;
        let index_of: HashMap<u32, usize> = self
            .sheets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.sheet_no, i))
            .collect();
        let specs: Vec<SheetSpec> = self
            .sheets
            .iter()
            .map(|rec| {
                let table = layouts
                    .get(rec.file_no as usize)
                    .and_then(|l| l.tables.get(rec.table_no as usize))
                    .ok_or_else(|| {
                        MergeError::Inconsistent(format!(
                            "sheet {:?} names file {} table {}, which the job does not have",
                            rec.name, rec.file_no, rec.table_no
                        ))
                    })?;
                let width = widths
                    .get(rec.file_no as usize)
                    .and_then(|w| w.get(rec.table_no as usize))
                    .copied()
                    .unwrap_or(0);
                let headers = with_extra_columns(&table.headers, width, 4 + self.added.len());
                Ok(SheetSpec {
                    new_columns: new_column_names(&headers, &self.target, &self.added),
                    name: rec.name.clone(),
                    headers,
                })
            })
            .collect::<Result<_, MergeError>>()?;
        let plan = OutputPlan {
            sheets: &specs,
            target: &self.target,
            max_rows: self.max_rows,
        };
        let mut writers: Vec<Box<dyn ResultWriter>> = self
            .outputs
            .iter()
            .map(|(path, format)| (format.create)(path, &plan))
            .collect::<Result<_, _>>()?;

        let mut counts = MergeCounts::default();
        let mut seq: u64 = 0;
        let mut results = results.iter().flat_map(|page| match page {
            Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        });
        for (file, layout) in self.files.iter().zip(&layouts) {
            let mut source = intake::reopen(Path::new(&file.path), &file.label, layout)?;
            while let Some(record) = source.next_record() {
                let record = record?;
                let result = results.next().ok_or_else(|| {
                    MergeError::Inconsistent(format!(
                        "{}: line {}: no stored result for row {seq}",
                        file.label, record.line
                    ))
                })??;
                if result.seq != seq {
                    return Err(MergeError::Inconsistent(format!(
                        "{}: line {}: expected the result of row {seq}, found row {}",
                        file.label, record.line, result.seq
                    )));
                }
                seq += 1;
                let sheet = *index_of.get(&result.sheet_no).ok_or_else(|| {
                    MergeError::Inconsistent(format!(
                        "row {} names unknown sheet {}",
                        result.seq, result.sheet_no
                    ))
                })?;
                let table = layout.tables.get(record.table as usize).ok_or_else(|| {
                    MergeError::Inconsistent(format!("{}: no table {}", file.label, record.table))
                })?;
                counts.rows += 1;
                if table.address.is_some() {
                    // The cleaner is pure: what the workers asked is cleaned again here.
                    let cleaned = crate::intake::address_of(&record, table)
                        .ok()
                        .and_then(|a| clean(&a.text).ok());
                    for step in cleaned.map(|c| c.steps).unwrap_or_default() {
                        counts.cleaning[step as usize] += 1;
                    }
                }
                match result.outcome.status() {
                    RowStatus::Ok => counts.ok += 1,
                    RowStatus::Ambiguous => counts.ambiguous += 1,
                    RowStatus::NoResult => counts.no_result += 1,
                    RowStatus::Error => counts.failed += 1,
                }
                let spec = &specs[sheet];
                let (error_column, error_raw);
                let error = match &result.outcome {
                    Outcome::Failed(e) => {
                        error_column = e.column.clone().unwrap_or_else(|| table.position_names());
                        error_raw = e.raw.clone().unwrap_or_else(|| {
                            let cells: Vec<String> = table
                                .position_columns()
                                .into_iter()
                                .map(|i| record.text(i))
                                .collect();
                            cells.join(", ")
                        });
                        Some((error_column.as_str(), error_raw.as_str(), e.reason.as_str()))
                    }
                    Outcome::Resolved { .. } => None,
                };
                let cells = fit_cells(&record.fields, spec.headers.len());
                let warning =
                    counts
                        .warnings
                        .check_row(&spec.name, record.line, &spec.headers, &cells);
                let said = match (&error, warning.is_empty()) {
                    (_, true) => String::new(),
                    (Some((_, _, reason)), false) => format!("{reason}; {warning}"),
                    (None, false) => warning,
                };
                let mut values = values_of(&result.outcome, &spec.new_columns, &self.added);
                if let (false, Some(last)) = (said.is_empty(), values.last_mut()) {
                    *last = OutValue::Text(&said);
                }
                let row = MergedRow {
                    sheet,
                    line: record.line,
                    cells: &cells,
                    status: result.outcome.status(),
                    position: result.outcome.position(),
                    values: &values,
                    error,
                };
                for w in &mut writers {
                    w.row(&row)?;
                }
            }
        }
        if let Some(extra) = results.next() {
            let extra = extra?;
            return Err(MergeError::Inconsistent(format!(
                "a result for row {} has no input row (the input has {seq} rows)",
                extra.seq
            )));
        }
        let summary = Summary::of_job(
            &self.job,
            &self.files,
            &layouts,
            &self.sheets,
            &self.source,
            &self.target,
            &counts,
        );
        for w in writers {
            w.finish(&summary)?;
        }
        Ok(counts)
    }
}

/// The widest record of each table of each file, by reading the files once more: the extra
/// cells of ragged rows get columns of their own, which a streamed worksheet must name before
/// its first row.
fn widest_records(files: &[JobFile], layouts: &[Layout]) -> Result<Vec<Vec<usize>>, MergeError> {
    files
        .iter()
        .zip(layouts)
        .map(|(file, layout)| {
            let mut widths: Vec<usize> = layout.tables.iter().map(|t| t.headers.len()).collect();
            let mut source = intake::reopen(Path::new(&file.path), &file.label, layout)?;
            while let Some(record) = source.next_record() {
                let record = record?;
                if let Some(w) = widths.get_mut(record.table as usize) {
                    *w = (*w).max(record.fields.len());
                }
            }
            Ok(widths)
        })
        .collect()
}

/// The table's headers, then `extra_1`, … up to `width` columns, as many as Excel holds
/// beside the `added` new columns.
fn with_extra_columns(headers: &[String], width: usize, added: usize) -> Vec<String> {
    let room = EXCEL_MAX_COLUMNS.saturating_sub(added).max(headers.len());
    let width = width.min(room).max(headers.len());
    let mut out = headers.to_vec();
    out.extend((1..=width - headers.len()).map(|n| format!("extra_{n}")));
    out
}

/// A row's cells as written: a row wider than its sheet (only past Excel's column limit) has
/// its last cells joined into the sheet's last column, so none is lost.
fn fit_cells(cells: &[Cell], width: usize) -> Cow<'_, [Cell]> {
    if cells.len() <= width || width == 0 {
        return Cow::Borrowed(cells);
    }
    let mut fitted = cells[..width - 1].to_vec();
    let rest: Vec<String> = cells[width - 1..]
        .iter()
        .map(|c| c.as_text().into_owned())
        .collect();
    fitted.push(Cell::Text(rest.join(",")));
    Cow::Owned(fitted)
}

/// `lon`/`lat` (or `x_<EPSG>`/`y_<EPSG>`), the added columns, then `status`, `error`;
/// `_geobatch` on a clash with an input header.
pub fn new_column_names(headers: &[String], target: &CrsInfo, added: &[String]) -> Vec<String> {
    let (x, y) = if target.geographic {
        ("lon".to_string(), "lat".to_string())
    } else {
        (format!("x_{}", target.epsg), format!("y_{}", target.epsg))
    };
    let mut names = vec![x, y];
    names.extend(added.iter().cloned());
    names.extend(["status".to_string(), "error".to_string()]);
    names
        .into_iter()
        .map(|name| {
            if headers.iter().any(|h| h.trim().eq_ignore_ascii_case(&name)) {
                format!("{name}_geobatch")
            } else {
                name
            }
        })
        .collect()
}

/// The new columns' values of one row, in the order of `new_columns` (position, added, status,
/// error).
fn values_of<'a>(
    outcome: &'a Outcome,
    new_columns: &[String],
    added: &[String],
) -> Vec<OutValue<'a>> {
    let mut v = Vec::with_capacity(new_columns.len());
    match outcome.position() {
        Some((x, y)) => {
            v.push(OutValue::Number(x));
            v.push(OutValue::Number(y));
        }
        None => v.extend([OutValue::Empty, OutValue::Empty]),
    }
    for name in added {
        v.push(outcome.field(name).map_or(OutValue::Empty, OutValue::Text));
    }
    v.push(OutValue::Text(outcome.status().as_str()));
    v.push(match outcome {
        Outcome::Failed(e) => OutValue::Text(&e.reason),
        Outcome::Resolved { .. } => OutValue::Empty,
    });
    v
}

#[cfg(test)]
mod tests;
