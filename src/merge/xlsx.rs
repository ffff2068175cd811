//! The workbook: one worksheet per sheet (input cells exactly as read, then the new columns),
//! a Summary sheet and an Errors sheet, written in rust_xlsxwriter's constant-memory mode so
//! each row goes straight to disk.

use std::path::{Path, PathBuf};

use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::{MergeError, MergedRow, OutValue, OutputPlan, ResultWriter, SheetSpec, Summary};
use crate::job::{Cell, EXCEL_MAX_CELL_CHARS as MAX_CELL_CHARS, RESERVED_SHEETS};

/// The Errors sheet's columns and their widths.
const ERROR_COLUMNS: [(&str, f64); 5] = [
    ("sheet", 20.0),
    ("line", 8.0),
    ("column", 22.0),
    ("value", 24.0),
    ("reason", 70.0),
];
/// Rows looked at before a sheet's column widths are fixed (constant-memory mode writes the
/// widths before the first row).
const WIDTH_SAMPLE_ROWS: usize = 64;

pub(super) fn create(
    path: &Path,
    plan: &OutputPlan<'_>,
) -> Result<Box<dyn ResultWriter>, MergeError> {
    Ok(Box::new(XlsxWriter::new(path, plan.sheets, plan.max_rows)?))
}

/// A new column's value, owned, for rows held back until the widths are known.
#[derive(Clone, Debug)]
enum Owned {
    Empty,
    Number(f64),
    Text(String),
}

impl Owned {
    fn as_value(&self) -> OutValue<'_> {
        match self {
            Owned::Empty => OutValue::Empty,
            Owned::Number(n) => OutValue::Number(*n),
            Owned::Text(t) => OutValue::Text(t),
        }
    }
}

impl From<&OutValue<'_>> for Owned {
    fn from(v: &OutValue<'_>) -> Owned {
        match v {
            OutValue::Empty => Owned::Empty,
            OutValue::Number(n) => Owned::Number(*n),
            OutValue::Text(t) => Owned::Text(t.to_string()),
        }
    }
}

/// One data worksheet while it is written.
struct SheetOut {
    spec: SheetSpec,
    /// Rows held back until the column widths are known.
    pending: Vec<(Vec<Cell>, Vec<Owned>)>,
    started: bool,
    next_row: u32,
}

struct XlsxWriter {
    workbook: Workbook,
    output: PathBuf,
    bold: Format,
    sheets: Vec<SheetOut>,
    summary_index: usize,
    /// The Errors sheets (`Errors`, `Errors (2)`, …): worksheet index and rows written.
    errors: Vec<(usize, u32)>,
    /// Data rows per sheet.
    max_rows: u64,
}

impl XlsxWriter {
    fn new(output: &Path, specs: &[SheetSpec], max_rows: u64) -> Result<XlsxWriter, MergeError> {
        let mut workbook = Workbook::new();
        let bold = Format::new().set_bold();
        let mut sheets = Vec::new();
        for s in specs {
            workbook
                .add_worksheet_with_constant_memory()?
                .set_name(&s.name)?;
            sheets.push(SheetOut {
                spec: s.clone(),
                pending: Vec::new(),
                started: false,
                next_row: 1,
            });
        }
        let summary_index = sheets.len();
        workbook.add_worksheet().set_name(RESERVED_SHEETS[0])?;
        let mut writer = XlsxWriter {
            workbook,
            output: output.to_path_buf(),
            bold,
            sheets,
            summary_index,
            errors: Vec::new(),
            max_rows: max_rows.clamp(1, u64::from(u32::MAX) - 1),
        };
        writer.add_errors_sheet()?;
        Ok(writer)
    }

    /// Opens the next Errors sheet: `Errors`, then `Errors (2)`, … (skipping a name a data
    /// sheet has).
    fn add_errors_sheet(&mut self) -> Result<(), MergeError> {
        let taken = |name: &str| {
            self.sheets
                .iter()
                .any(|s| s.spec.name.eq_ignore_ascii_case(name))
        };
        let mut part = self.errors.len() + 1;
        let mut name = RESERVED_SHEETS[1].to_string();
        if part > 1 {
            name = format!("{} ({part})", RESERVED_SHEETS[1]);
            while taken(&name) {
                part += 1;
                name = format!("{} ({part})", RESERVED_SHEETS[1]);
            }
        }
        let index = self.sheets.len() + 1 + self.errors.len();
        let errors = self.workbook.add_worksheet_with_constant_memory()?;
        errors.set_name(&name)?;
        for (col, (title, width)) in ERROR_COLUMNS.into_iter().enumerate() {
            errors.set_column_width(col as u16, width)?;
            errors.write_string_with_format(0, col as u16, title, &self.bold)?;
        }
        errors.set_freeze_panes(1, 0)?;
        self.errors.push((index, 0));
        Ok(())
    }
}

impl ResultWriter for XlsxWriter {
    fn row(&mut self, row: &MergedRow<'_>) -> Result<(), MergeError> {
        if let Some((column, raw, reason)) = row.error {
            if self
                .errors
                .last()
                .is_some_and(|e| u64::from(e.1) >= self.max_rows)
            {
                self.add_errors_sheet()?;
            }
            let name = self.sheets[row.sheet].spec.name.clone();
            let Some((index, rows)) = self.errors.last_mut() else {
                return Err(MergeError::Inconsistent("no Errors sheet".into()));
            };
            *rows += 1;
            let r = *rows;
            let errors = self.workbook.worksheet_from_index(*index)?;
            errors.write_string(r, 0, &name)?;
            errors.write_number(r, 1, row.line as f64)?;
            errors.write_string(r, 2, clip(column))?;
            errors.write_string(r, 3, clip(raw))?;
            errors.write_string(r, 4, clip(reason))?;
        }
        let out = &mut self.sheets[row.sheet];
        let ws = self.workbook.worksheet_from_index(row.sheet)?;
        if out.started {
            write_data_row(ws, out, row.cells, row.values)?;
        } else {
            out.pending.push((
                row.cells.to_vec(),
                row.values.iter().map(Owned::from).collect(),
            ));
            if out.pending.len() >= WIDTH_SAMPLE_ROWS {
                start_sheet(ws, out, &self.bold)?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, summary: &Summary) -> Result<(), MergeError> {
        for (index, out) in self.sheets.iter_mut().enumerate() {
            let ws = self.workbook.worksheet_from_index(index)?;
            if !out.started {
                start_sheet(ws, out, &self.bold)?;
            }
            let columns = (out.spec.headers.len() + out.spec.new_columns.len()) as u16;
            if columns > 0 {
                ws.autofilter(0, 0, out.next_row.saturating_sub(1), columns - 1)?;
            }
        }
        for &(index, rows) in &self.errors {
            if rows > 0 {
                self.workbook
                    .worksheet_from_index(index)?
                    .autofilter(0, 0, rows, 4)?;
            }
        }
        write_summary(
            self.workbook.worksheet_from_index(self.summary_index)?,
            summary,
            &self.bold,
        )?;
        let io = |path: &Path, source: std::io::Error| MergeError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = self.output.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        // Write beside the target and rename, so a reader never sees half a workbook.
        let partial = self.output.with_extension("xlsx.partial");
        if let Err(source) = self.workbook.save(&partial) {
            let _ = std::fs::remove_file(&partial);
            return Err(MergeError::Save {
                path: partial.display().to_string(),
                source,
            });
        }
        std::fs::rename(&partial, &self.output).map_err(|e| io(&self.output, e))?;
        Ok(())
    }
}

fn start_sheet(ws: &mut Worksheet, out: &mut SheetOut, bold: &Format) -> Result<(), MergeError> {
    let headers = &out.spec.headers;
    let extra = &out.spec.new_columns;
    let mut widths: Vec<usize> = headers
        .iter()
        .chain(extra.iter())
        .map(|h| display_width(h))
        .collect();
    for (cells, _) in &out.pending {
        for (w, c) in widths.iter_mut().zip(cells.iter()) {
            *w = (*w).max(display_width(&c.as_text()));
        }
    }
    let n = headers.len();
    widths[n] = widths[n].max(12);
    widths[n + 1] = widths[n + 1].max(12);
    // The added columns (addresses) are wide text, and so is the error column.
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
    out.started = true;
    for (cells, values) in std::mem::take(&mut out.pending) {
        let values: Vec<OutValue<'_>> = values.iter().map(Owned::as_value).collect();
        write_data_row(ws, out, &cells, &values)?;
    }
    Ok(())
}

fn write_data_row(
    ws: &mut Worksheet,
    out: &mut SheetOut,
    cells: &[Cell],
    values: &[OutValue<'_>],
) -> Result<(), MergeError> {
    let row = out.next_row;
    // Every original text cell is written as text exactly as read: `03171` keeps its zero,
    // `=SUM(A1)` is no formula.
    for (col, cell) in cells.iter().enumerate() {
        let col = col as u16;
        match cell {
            Cell::Empty => {}
            Cell::Text(s) | Cell::Date(s) if s.is_empty() => {}
            Cell::Text(s) | Cell::Date(s) => {
                ws.write_string(row, col, clip(s))?;
            }
            Cell::Number(n) => {
                ws.write_number(row, col, *n)?;
            }
            Cell::Bool(b) => {
                ws.write_boolean(row, col, *b)?;
            }
        }
    }
    // New columns sit after the header's columns even when a ragged row is shorter or longer.
    let base = out.spec.headers.len() as u16;
    for (i, v) in values.iter().enumerate() {
        let col = base + i as u16;
        match *v {
            OutValue::Empty => {}
            OutValue::Number(n) => {
                ws.write_number(row, col, n)?;
            }
            OutValue::Text("") => {}
            OutValue::Text(t) => {
                ws.write_string(row, col, clip(t))?;
            }
        }
    }
    out.next_row += 1;
    Ok(())
}

fn write_summary(ws: &mut Worksheet, summary: &Summary, bold: &Format) -> Result<(), XlsxError> {
    ws.set_column_width(0, 24)?;
    ws.set_column_width(1, 80)?;
    for (r, (k, v)) in summary.lines.iter().enumerate() {
        ws.write_string_with_format(r as u32, 0, clip(k), bold)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_at_excels_cell_limit() {
        let long = "가".repeat(MAX_CELL_CHARS + 5);
        assert_eq!(clip(&long).chars().count(), MAX_CELL_CHARS);
        assert_eq!(clip("short"), "short");
    }
}
