//! The merger: input rows and their stored results, joined in input order, into one workbook.
//!
//! The input is read again from the stored upload (with the layout found at intake) while the
//! results stream from the store by sequence number: nothing holds a whole file in memory, and
//! rust_xlsxwriter's constant-memory mode writes each row straight to disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};

use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use crate::convert::{CrsInfo, JobPlan};
use crate::intake::{CsvSource, IntakeError, Layout};
use crate::pipeline::JobOptions;
use crate::store::{JobRecord, Outcome, ResultStore, SheetRecord, StoreError, StoredResult};

/// Sheet names the merger uses for itself; data sheets never take them.
pub const RESERVED_SHEETS: [&str; 2] = ["Summary", "Errors"];
/// Excel's limit for one cell's text.
const MAX_CELL_CHARS: usize = 32_767;
/// Rows looked at before a sheet's column widths are fixed (constant-memory mode writes the
/// widths before the first row).
const WIDTH_SAMPLE_ROWS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("writing the workbook: {0}")]
    Xlsx(#[from] XlsxError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("merging: {0}")]
    Inconsistent(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MergeSummary {
    pub rows: u64,
    /// `ok` and `no_result` rows.
    pub ok: u64,
    /// Of `ok`: the provider knows no address there.
    pub no_result: u64,
    pub failed: u64,
}

/// Writes the workbook of a job whose every row has a result.
pub async fn merge_job(
    store: &ResultStore,
    job: &JobRecord,
    options: &JobOptions,
    job_plan: &JobPlan,
    output: &Path,
) -> Result<MergeSummary, MergeError> {
    let files = store.files(&job.id).await?;
    let mut inputs = Vec::new();
    for f in files {
        let layout: Layout = serde_json::from_str(f.layout.as_deref().unwrap_or("null"))
            .map_err(|e| MergeError::Inconsistent(format!("{}: layout: {e}", f.label)))?;
        inputs.push(MergeFile {
            label: f.label,
            path: PathBuf::from(f.path),
            layout,
        });
    }
    let sheets = store.sheets(&job.id).await?;

    // Results page from the store on this task while the writer thread consumes them.
    let (tx, rx) = sync_channel::<Result<Vec<StoredResult>, StoreError>>(4);
    let plan = WorkbookPlan {
        job: job.clone(),
        options: options.clone(),
        inputs,
        sheets,
        source: job_plan.source().clone(),
        target: job_plan.target().clone(),
        output: output.to_path_buf(),
    };
    let writer = tokio::task::spawn_blocking(move || write_workbook(plan, rx));
    let mut after = None;
    loop {
        let page = store.results_page(&job.id, after, 10_000).await;
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

struct MergeFile {
    label: String,
    path: PathBuf,
    layout: Layout,
}

struct WorkbookPlan {
    job: JobRecord,
    options: JobOptions,
    inputs: Vec<MergeFile>,
    sheets: Vec<SheetRecord>,
    source: CrsInfo,
    target: CrsInfo,
    output: PathBuf,
}

/// One data worksheet while it is written.
struct SheetOut {
    name: String,
    /// The file whose rows fill it (a sheet never mixes files).
    file: Option<usize>,
    /// Rows held back until the column widths are known.
    pending: Vec<(Vec<String>, Outcome)>,
    started: bool,
    next_row: u32,
    columns: u16,
    /// How many of `columns` are ours (after the input's).
    extra: u16,
}

fn write_workbook(
    plan: WorkbookPlan,
    results: Receiver<Result<Vec<StoredResult>, StoreError>>,
) -> Result<MergeSummary, MergeError> {
    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold();
    let mut outs: Vec<SheetOut> = Vec::new();
    let mut index_of: HashMap<u32, usize> = HashMap::new();
    for s in &plan.sheets {
        workbook
            .add_worksheet_with_constant_memory()?
            .set_name(&s.name)?;
        index_of.insert(s.sheet_no, outs.len());
        outs.push(SheetOut {
            name: s.name.clone(),
            file: None,
            pending: Vec::new(),
            started: false,
            next_row: 1,
            columns: 0,
            extra: 0,
        });
    }
    let summary_index = outs.len();
    workbook.add_worksheet().set_name(RESERVED_SHEETS[0])?;
    let errors_index = summary_index + 1;
    {
        let errors = workbook.add_worksheet_with_constant_memory()?;
        errors.set_name(RESERVED_SHEETS[1])?;
        for (col, (title, width)) in [
            ("sheet", 20.0),
            ("line", 8.0),
            ("column", 22.0),
            ("value", 24.0),
            ("reason", 70.0),
        ]
        .into_iter()
        .enumerate()
        {
            errors.set_column_width(col as u16, width)?;
            errors.write_string_with_format(0, col as u16, title, &bold)?;
        }
        errors.set_freeze_panes(1, 0)?;
    }
    let mut error_row: u32 = 1;

    let lookup = plan.options.lookup.is_some();
    let new_columns: Vec<Vec<String>> = plan
        .inputs
        .iter()
        .map(|f| new_column_names(&f.layout.headers, &plan.target, lookup))
        .collect();

    let mut summary = MergeSummary::default();
    let mut seq: u64 = 0;
    let mut results = results.iter().flat_map(|page| match page {
        Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => vec![Err(e)],
    });
    for (file_index, input) in plan.inputs.iter().enumerate() {
        let source = CsvSource::reopen(&input.path, &input.label, &input.layout)?;
        for record in source {
            let record = record?;
            let result = results.next().ok_or_else(|| {
                MergeError::Inconsistent(format!(
                    "{}: line {}: no stored result for row {seq}",
                    input.label, record.line
                ))
            })??;
            if result.seq != seq {
                return Err(MergeError::Inconsistent(format!(
                    "{}: line {}: expected the result of row {seq}, found row {}",
                    input.label, record.line, result.seq
                )));
            }
            seq += 1;
            summary.rows += 1;
            let out_index = *index_of.get(&result.sheet_no).ok_or_else(|| {
                MergeError::Inconsistent(format!(
                    "row {} names unknown sheet {}",
                    result.seq, result.sheet_no
                ))
            })?;
            if let Outcome::Failed {
                column,
                raw,
                reason,
            } = &result.outcome
            {
                summary.failed += 1;
                let layout = &input.layout;
                let column = column
                    .clone()
                    .unwrap_or_else(|| format!("{}, {}", layout.x_name(), layout.y_name()));
                let raw = raw.clone().unwrap_or_else(|| {
                    let cell = |i: usize| record.fields.get(i).map(String::as_str).unwrap_or("");
                    format!("{}, {}", cell(layout.x), cell(layout.y))
                });
                let errors = workbook.worksheet_from_index(errors_index)?;
                errors.write_string(error_row, 0, &outs[out_index].name)?;
                errors.write_number(error_row, 1, record.line as f64)?;
                errors.write_string(error_row, 2, clip(&column))?;
                errors.write_string(error_row, 3, clip(&raw))?;
                errors.write_string(error_row, 4, clip(reason))?;
                error_row += 1;
            } else {
                summary.ok += 1;
                if matches!(result.outcome, Outcome::Located { address: None, .. }) {
                    summary.no_result += 1;
                }
            }
            let out = &mut outs[out_index];
            out.file.get_or_insert(file_index);
            if out.started {
                let ws = workbook.worksheet_from_index(out_index)?;
                write_data_row(ws, out, &record.fields, &result.outcome)?;
            } else {
                out.pending.push((record.fields, result.outcome));
                if out.pending.len() >= WIDTH_SAMPLE_ROWS {
                    let ws = workbook.worksheet_from_index(out_index)?;
                    start_sheet(ws, out, &plan.inputs, &new_columns, &bold)?;
                }
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
    for (index, out) in outs.iter_mut().enumerate() {
        let ws = workbook.worksheet_from_index(index)?;
        if !out.started {
            start_sheet(ws, out, &plan.inputs, &new_columns, &bold)?;
        }
        if out.columns > 0 {
            ws.autofilter(0, 0, out.next_row.saturating_sub(1), out.columns - 1)?;
        }
    }
    if error_row > 1 {
        workbook
            .worksheet_from_index(errors_index)?
            .autofilter(0, 0, error_row - 1, 4)?;
    }
    write_summary(
        workbook.worksheet_from_index(summary_index)?,
        &plan,
        &summary,
        &bold,
    )?;
    if let Some(dir) = plan.output.parent() {
        std::fs::create_dir_all(dir).map_err(XlsxError::IoError)?;
    }
    // Write beside the target and rename, so a reader never sees half a workbook.
    let partial = plan.output.with_extension("xlsx.partial");
    workbook.save(&partial)?;
    std::fs::rename(&partial, &plan.output).map_err(XlsxError::IoError)?;
    Ok(summary)
}

/// The address columns of a lookup job, between the position and `status`.
const ADDRESS_COLUMNS: [&str; 3] = ["address", "road_address", "building_name"];

/// `lon`/`lat` (or `x_<EPSG>`/`y_<EPSG>`), for a lookup job `address`, `road_address`,
/// `building_name`, then `status`, `error`; `_geobatch` on a clash.
fn new_column_names(headers: &[String], target: &CrsInfo, lookup: bool) -> Vec<String> {
    let (x, y) = if target.geographic {
        ("lon".to_string(), "lat".to_string())
    } else {
        (format!("x_{}", target.epsg), format!("y_{}", target.epsg))
    };
    let mut names = vec![x, y];
    if lookup {
        names.extend(ADDRESS_COLUMNS.map(String::from));
    }
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

fn start_sheet(
    ws: &mut Worksheet,
    out: &mut SheetOut,
    inputs: &[MergeFile],
    new_columns: &[Vec<String>],
    bold: &Format,
) -> Result<(), MergeError> {
    let file = out.file.unwrap_or(0);
    let headers = &inputs[file].layout.headers;
    let extra = &new_columns[file];
    let mut widths: Vec<usize> = headers
        .iter()
        .chain(extra.iter())
        .map(|h| display_width(h))
        .collect();
    for (fields, _) in &out.pending {
        for (w, f) in widths.iter_mut().zip(fields.iter()) {
            *w = (*w).max(display_width(f));
        }
    }
    let n = headers.len();
    widths[n] = widths[n].max(12);
    widths[n + 1] = widths[n + 1].max(12);
    // The error column and any address columns are wide text.
    for w in &mut widths[n + 2..n + extra.len() - 2] {
        *w = (*w).max(30);
    }
    let last = widths.len() - 1;
    widths[last] = widths[last].max(30);
    for (col, w) in widths.iter().enumerate() {
        ws.set_column_width(col as u16, (*w as f64 + 2.0).clamp(6.0, 60.0))?;
    }
    for (col, h) in headers.iter().chain(extra.iter()).enumerate() {
        ws.write_string_with_format(0, col as u16, clip(h), bold)?;
    }
    ws.set_freeze_panes(1, 0)?;
    out.columns = (headers.len() + extra.len()) as u16;
    out.extra = extra.len() as u16;
    out.started = true;
    for (fields, outcome) in std::mem::take(&mut out.pending) {
        write_data_row(ws, out, &fields, &outcome)?;
    }
    Ok(())
}

fn write_data_row(
    ws: &mut Worksheet,
    out: &mut SheetOut,
    fields: &[String],
    outcome: &Outcome,
) -> Result<(), MergeError> {
    let row = out.next_row;
    // Every original cell is text exactly as read: `03171` keeps its zero, `=SUM(A1)` is no formula.
    for (col, value) in fields.iter().enumerate() {
        if !value.is_empty() {
            ws.write_string(row, col as u16, clip(value))?;
        }
    }
    // New columns sit after the header's columns even when a ragged row is shorter or longer.
    let base = out.columns - out.extra;
    let status = out.columns - 2;
    match outcome {
        Outcome::Point { x, y } => {
            ws.write_number(row, base, *x)?;
            ws.write_number(row, base + 1, *y)?;
            ws.write_string(row, status, "ok")?;
        }
        Outcome::Located { x, y, address } => {
            ws.write_number(row, base, *x)?;
            ws.write_number(row, base + 1, *y)?;
            let a = address.clone().unwrap_or_default();
            for (i, value) in [a.address, a.road_address, a.building_name]
                .iter()
                .enumerate()
            {
                if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                    ws.write_string(row, base + 2 + i as u16, clip(v))?;
                }
            }
            let text = if address.is_some() { "ok" } else { "no_result" };
            ws.write_string(row, status, text)?;
        }
        Outcome::Failed { reason, .. } => {
            ws.write_string(row, status, "error")?;
            ws.write_string(row, status + 1, clip(reason))?;
        }
    }
    out.next_row += 1;
    Ok(())
}

fn write_summary(
    ws: &mut Worksheet,
    plan: &WorkbookPlan,
    counts: &MergeSummary,
    bold: &Format,
) -> Result<(), MergeError> {
    ws.set_column_width(0, 24)?;
    ws.set_column_width(1, 80)?;
    let job = &plan.job;
    let mut rows: Vec<(String, String)> = vec![
        ("geobatch".into(), env!("CARGO_PKG_VERSION").into()),
        ("job".into(), job.id.clone()),
    ];
    for f in &plan.inputs {
        let l = &f.layout;
        rows.push((
            "file".into(),
            format!(
                "{} (encoding {}, delimiter {:?}, x column {:?}, y column {:?})",
                f.label,
                l.encoding,
                l.delimiter as char,
                l.x_name(),
                l.y_name()
            ),
        ));
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not given)".into());
    rows.push(("option from".into(), opt(&plan.options.from)));
    rows.push(("option to".into(), opt(&plan.options.to)));
    rows.push((
        "option engine".into(),
        plan.options
            .engine
            .clone()
            .unwrap_or_else(|| "builtin".into()),
    ));
    rows.push(("option sheet_by".into(), opt(&plan.options.sheet_by)));
    rows.push((
        "source CRS".into(),
        format!("{} {}", plan.source, plan.source.name),
    ));
    rows.push((
        "target CRS".into(),
        format!("{} {}", plan.target, plan.target.name),
    ));
    rows.push((
        "operation".into(),
        job.operation.clone().unwrap_or_default(),
    ));
    rows.push(("rows".into(), counts.rows.to_string()));
    if let Some(provider) = plan.options.lookup {
        let rate = plan
            .options
            .rate
            .unwrap_or_else(|| provider.default_rate_per_sec());
        rows.push(("address lookup".into(), provider.to_string()));
        rows.push((
            "lookup rate".into(),
            format!("{rate} requests/s (whole cluster)"),
        ));
        if let Some(q) = plan.options.daily_quota {
            rows.push(("lookup daily quota".into(), format!("{q} requests")));
        }
        rows.push(("lookup requests".into(), job.lookup_requests.to_string()));
        rows.push((
            "lookup cache hits".into(),
            job.lookup_cache_hits.to_string(),
        ));
        rows.push(("rows ok".into(), (counts.ok - counts.no_result).to_string()));
        rows.push(("rows no_result".into(), counts.no_result.to_string()));
    } else {
        rows.push(("rows ok".into(), counts.ok.to_string()));
    }
    rows.push(("rows error".into(), counts.failed.to_string()));
    for s in &plan.sheets {
        rows.push((
            format!("sheet {}", s.name),
            format!(
                "{} rows, {} ok, {} error",
                s.rows_total, s.rows_ok, s.rows_failed
            ),
        ));
    }
    rows.push(("accepted at (UTC)".into(), utc_text(job.created_ms)));
    let since = |ms: Option<i64>| {
        ms.map(|m| {
            format!(
                "{:.1} s after acceptance",
                (m - job.created_ms) as f64 / 1000.0
            )
        })
        .unwrap_or_default()
    };
    rows.push(("all rows published".into(), since(job.published_ms)));
    rows.push(("all rows resolved".into(), since(job.resolved_ms)));
    rows.push((
        "workbook written".into(),
        since(Some(crate::store::now_ms())),
    ));
    for (r, (k, v)) in rows.iter().enumerate() {
        ws.write_string_with_format(r as u32, 0, k, bold)?;
        ws.write_string(r as u32, 1, clip(v))?;
    }
    Ok(())
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(MAX_CELL_CHARS) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Width in Excel character units: wide (CJK) characters count twice.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| if (c as u32) >= 0x1100 { 2 } else { 1 })
        .sum()
}

/// `2026-11-22 03:42:53` from Unix milliseconds, without a calendar crate.
fn utc_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_matches_known_instants() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00");
        assert_eq!(utc_text(1_795_318_973_000), "2026-11-22 03:42:53");
        assert_eq!(utc_text(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn new_columns_avoid_clashes() {
        let crs = |code| CrsInfo::from(crate::convert::crs::Crs::from_code(code).unwrap());
        let headers = vec!["name".to_string(), "LON".to_string(), "status".to_string()];
        assert_eq!(
            new_column_names(&headers, &crs("EPSG:4326"), false),
            ["lon_geobatch", "lat", "status_geobatch", "error"].map(String::from)
        );
        assert_eq!(
            new_column_names(&headers, &crs("EPSG:5186"), false)[0],
            "x_5186"
        );
        let headers = vec!["Address".to_string(), "lat".to_string()];
        assert_eq!(
            new_column_names(&headers, &crs("EPSG:4326"), true),
            [
                "lon",
                "lat_geobatch",
                "address_geobatch",
                "road_address",
                "building_name",
                "status",
                "error"
            ]
            .map(String::from)
        );
    }

    #[test]
    fn clip_cuts_at_excels_cell_limit() {
        let long = "가".repeat(MAX_CELL_CHARS + 5);
        assert_eq!(clip(&long).chars().count(), MAX_CELL_CHARS);
        assert_eq!(clip("short"), "short");
    }
}
