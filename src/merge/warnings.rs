//! What a workbook cannot keep exactly as read, said rather than done silently: text cut at
//! Excel's cell limit, and undecodable bytes read as U+FFFD. Each row says it in its `error`
//! column; the Summary counts each kind with where it first happened.

use crate::job::{Cell, EXCEL_MAX_CELL_CHARS};

/// A kind of warning: how many cells, and the first one (sheet, line, column).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub cells: u64,
    pub first: Option<(String, u64, String)>,
}

impl Tally {
    fn add(&mut self, sheet: &str, line: u64, column: &str) {
        self.cells += 1;
        if self.first.is_none() {
            self.first = Some((sheet.to_string(), line, column.to_string()));
        }
    }

    /// `2 cells (first: sheet "a", line 4, column "note")`.
    pub fn describe(&self) -> String {
        let cells = if self.cells == 1 { "cell" } else { "cells" };
        match &self.first {
            Some((sheet, line, column)) => format!(
                "{} {cells} (first: sheet {}, line {line}, column {})",
                self.cells,
                crate::job::quote_short(sheet),
                crate::job::quote_short(column)
            ),
            None => format!("{} {cells}", self.cells),
        }
    }
}

/// The warnings of a merge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Warnings {
    /// Cells longer than Excel's limit, cut.
    pub cut: Tally,
    /// Cells with undecodable bytes, read as U+FFFD.
    pub undecodable: Tally,
}

/// The Summary's key for cut cells.
pub const CUT_KEY: &str = "warnings: cells cut at 32767 characters";
/// The Summary's key for undecodable bytes.
pub const UNDECODABLE_KEY: &str = "warnings: undecodable bytes (U+FFFD)";

impl Warnings {
    /// Looks at one row's cells (`headers` names them); returns what its `error` column says
    /// of them, empty when nothing.
    pub fn check_row(
        &mut self,
        sheet: &str,
        line: u64,
        headers: &[String],
        cells: &[Cell],
    ) -> String {
        let mut said = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            let (Cell::Text(s) | Cell::Date(s)) = cell else {
                continue;
            };
            let column = headers.get(i).map_or("", String::as_str);
            if s.len() > EXCEL_MAX_CELL_CHARS {
                let chars = s.chars().count();
                if chars > EXCEL_MAX_CELL_CHARS {
                    self.cut.add(sheet, line, column);
                    said.push(format!(
                        "warning: {} cut at {EXCEL_MAX_CELL_CHARS} characters (Excel's limit; it \
                         has {chars})",
                        crate::job::quote_short(column)
                    ));
                }
            }
            if s.contains('\u{FFFD}') {
                self.undecodable.add(sheet, line, column);
                said.push(format!(
                    "warning: {} has undecodable bytes, shown as U+FFFD (check option encoding)",
                    crate::job::quote_short(column)
                ));
            }
        }
        said.join("; ")
    }

    /// The Summary's lines: one per kind that happened.
    pub fn summary_lines(&self) -> Vec<(String, String)> {
        [(CUT_KEY, &self.cut), (UNDECODABLE_KEY, &self.undecodable)]
            .into_iter()
            .filter(|(_, t)| t.cells > 0)
            .map(|(k, t)| (k.to_string(), t.describe()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_and_undecodable_cells_are_said_and_counted() {
        let mut w = Warnings::default();
        let headers = vec!["a".to_string(), "b".to_string()];
        let long = "가".repeat(EXCEL_MAX_CELL_CHARS);
        assert_eq!(
            w.check_row("s", 2, &headers, &[Cell::Text(long), Cell::Empty]),
            "",
            "exactly the limit is kept whole"
        );
        let said = w.check_row(
            "s",
            3,
            &headers,
            &[
                Cell::Text("x\u{FFFD}".into()),
                Cell::Text("y".repeat(40_000)),
            ],
        );
        assert!(
            said.contains("\"b\" cut") && said.contains("\"a\" has undecodable"),
            "{said}"
        );
        w.check_row("s", 4, &headers, &[Cell::Text("\u{FFFD}".into())]);
        assert_eq!(w.cut.cells, 1);
        assert_eq!(w.undecodable.cells, 2);
        let lines = w.summary_lines();
        assert_eq!(lines[1].0, UNDECODABLE_KEY);
        assert!(
            lines[1].1.starts_with("2 cells") && lines[1].1.contains("line 3"),
            "{lines:?}"
        );
    }
}
