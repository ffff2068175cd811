//! One open workbook of any kind, read row by row: an xlsx/xlsm sheet is streamed cell by
//! cell from its zip entry (memory stays bounded by the shared strings and one row); an xls or
//! ods sheet is loaded whole by calamine, as those formats allow no better.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use calamine::{Ods, Reader, SheetType, SheetVisible, Xls, Xlsx};

use super::values;
use super::{Kind, WorkbookProblem};
use crate::job::Cell;

/// Widest row read: Excel's last column is XFD (16,384).
const MAX_COLUMNS: u32 = 16_384;

type Input = BufReader<File>;

pub(super) enum Book {
    Xlsx(Box<Xlsx<Input>>),
    Xls(Box<Xls<Input>>),
    Ods(Box<Ods<Input>>),
}

/// A sheet as the workbook lists it.
pub(super) struct SheetInfo {
    pub name: String,
    pub worksheet: bool,
    pub visible: bool,
}

impl Book {
    pub(super) fn open(path: &Path, kind: Kind) -> Result<Book, WorkbookProblem> {
        let input = BufReader::new(File::open(path).map_err(WorkbookProblem::Io)?);
        Ok(match kind {
            Kind::Xlsx => Book::Xlsx(Box::new(Xlsx::new(input).map_err(from_xlsx)?)),
            Kind::Xls => Book::Xls(Box::new(Xls::new(input).map_err(from_xls)?)),
            Kind::Ods => Book::Ods(Box::new(Ods::new(input).map_err(from_ods)?)),
        })
    }

    pub(super) fn sheets(&self) -> Vec<SheetInfo> {
        let meta = match self {
            Book::Xlsx(b) => b.sheets_metadata(),
            Book::Xls(b) => b.sheets_metadata(),
            Book::Ods(b) => b.sheets_metadata(),
        };
        meta.iter()
            .map(|s| SheetInfo {
                name: s.name.clone(),
                worksheet: s.typ == SheetType::WorkSheet,
                visible: s.visible == SheetVisible::Visible,
            })
            .collect()
    }

    /// Calls `row` with every row of `sheet` that has a value (0-based row index, cells from
    /// column A, without trailing empty cells), in order, until it returns false.
    pub(super) fn rows(
        &mut self,
        sheet: &str,
        row: &mut dyn FnMut(u32, Vec<Cell>) -> bool,
    ) -> Result<(), WorkbookProblem> {
        match self {
            Book::Xlsx(b) => stream_xlsx(b, sheet, row),
            Book::Xls(b) => {
                let range = b.worksheet_range(sheet).map_err(from_xls)?;
                whole(&range, row);
                Ok(())
            }
            Book::Ods(b) => {
                let range = b.worksheet_range(sheet).map_err(from_ods)?;
                whole(&range, row);
                Ok(())
            }
        }
    }
}

fn stream_xlsx(
    book: &mut Xlsx<Input>,
    sheet: &str,
    row: &mut dyn FnMut(u32, Vec<Cell>) -> bool,
) -> Result<(), WorkbookProblem> {
    let mut reader = book.worksheet_cells_reader(sheet).map_err(from_xlsx)?;
    let mut current: Option<u32> = None;
    let mut cells: Vec<Cell> = Vec::new();
    while let Some(cell) = reader.next_cell().map_err(from_xlsx)? {
        let (r, c) = cell.get_position();
        let value = values::from_ref(cell.get_value().clone());
        if current != Some(r) {
            if let Some(prev) = current {
                if !cells.is_empty() && !row(prev, std::mem::take(&mut cells)) {
                    return Ok(());
                }
            }
            current = Some(r);
        }
        if value.is_empty() || c >= MAX_COLUMNS {
            continue;
        }
        let c = c as usize;
        if cells.len() < c {
            cells.resize(c, Cell::Empty);
        }
        if cells.len() == c {
            cells.push(value);
        } else {
            cells[c] = value;
        }
    }
    if let Some(r) = current {
        if !cells.is_empty() {
            row(r, cells);
        }
    }
    Ok(())
}

fn whole(range: &calamine::Range<calamine::Data>, row: &mut dyn FnMut(u32, Vec<Cell>) -> bool) {
    let Some((first_row, first_col)) = range.start() else {
        return;
    };
    for (i, data) in range.rows().enumerate() {
        let mut cells: Vec<Cell> = std::iter::repeat_n(Cell::Empty, first_col as usize)
            .chain(data.iter().map(values::from_data))
            .collect();
        while cells.last().is_some_and(Cell::is_empty) {
            cells.pop();
        }
        if cells.is_empty() {
            continue;
        }
        if !row(first_row + i as u32, cells) {
            return;
        }
    }
}

fn from_xlsx(e: calamine::XlsxError) -> WorkbookProblem {
    match e {
        calamine::XlsxError::Zip(z) => WorkbookProblem::Damaged(z.to_string()),
        calamine::XlsxError::Io(e) => WorkbookProblem::Io(e),
        other => WorkbookProblem::Unreadable(other.to_string()),
    }
}

fn from_xls(e: calamine::XlsError) -> WorkbookProblem {
    match e {
        calamine::XlsError::Password => WorkbookProblem::Encrypted,
        calamine::XlsError::Io(e) => WorkbookProblem::Io(e),
        other => WorkbookProblem::Unreadable(other.to_string()),
    }
}

fn from_ods(e: calamine::OdsError) -> WorkbookProblem {
    match e {
        calamine::OdsError::Zip(z) => WorkbookProblem::Damaged(z.to_string()),
        calamine::OdsError::Io(e) => WorkbookProblem::Io(e),
        calamine::OdsError::InvalidMime(_) => {
            WorkbookProblem::Unreadable("not an OpenDocument spreadsheet".into())
        }
        other => WorkbookProblem::Unreadable(other.to_string()),
    }
}
