//! Which worksheet a row goes to: one per input table (a CSV file, a workbook's worksheet), or
//! per value of the `sheet_by` column, split at the row limit. Deterministic, so a re-driven
//! intake finds the same sheets.

use std::collections::{HashMap, HashSet};

use super::{columns, sheet_name, TableLayout};
use crate::job::RESERVED_SHEETS;

/// (file, table, value): what decides a sheet before the row limit splits it.
type SheetKey = (u32, u32, String);

pub struct SheetSplitter {
    sheet_by: Option<String>,
    /// More than one table in the job: `sheet_by` sheets are named "<table> <value>".
    prefix: bool,
    max_rows: u64,
    /// The sheet currently filling for each key, and how many rows it has.
    current: HashMap<SheetKey, (u32, u64)>,
    /// Parts already opened for each key, for " (2)" style continuation names.
    parts: HashMap<SheetKey, u32>,
    rows: Vec<u64>,
    taken: HashSet<String>,
}

impl SheetSplitter {
    pub fn new(sheet_by: Option<String>, prefix: bool, max_rows: u64) -> Self {
        SheetSplitter {
            sheet_by,
            prefix,
            max_rows: max_rows.max(1),
            current: HashMap::new(),
            parts: HashMap::new(),
            rows: Vec::new(),
            taken: RESERVED_SHEETS.iter().map(|s| s.to_lowercase()).collect(),
        }
    }

    /// The `sheet_by` column of a table.
    pub fn column_index(&self, table: &TableLayout) -> Option<usize> {
        self.sheet_by
            .as_deref()
            .and_then(|c| columns::find_given(&table.headers, c))
    }

    /// The sheet of the next row of table `table_no` (called `table_name`) of file `file_no`,
    /// and its name if this row opens it.
    pub fn sheet_for(
        &mut self,
        file_no: u32,
        table_no: u32,
        table_name: &str,
        value: Option<&str>,
    ) -> (u32, Option<String>) {
        let value = if self.sheet_by.is_some() {
            value.unwrap_or("").trim().to_string()
        } else {
            String::new()
        };
        let key = (file_no, table_no, value);
        if let Some((sheet, rows)) = self.current.get_mut(&key) {
            if *rows < self.max_rows {
                *rows += 1;
                self.rows[*sheet as usize] += 1;
                return (*sheet, None);
            }
        }
        let part = {
            let p = self.parts.entry(key.clone()).or_insert(0);
            *p += 1;
            *p
        };
        let mut base = match (&self.sheet_by, self.prefix) {
            (None, _) => table_name.to_string(),
            (Some(_), false) if key.2.is_empty() => "(blank)".to_string(),
            (Some(_), false) => key.2.clone(),
            (Some(_), true) => format!("{table_name} {}", key.2),
        };
        if part > 1 {
            base = format!("{base} ({part})");
        }
        let name = sheet_name(&base, &self.taken);
        self.taken.insert(name.to_lowercase());
        let sheet = self.rows.len() as u32;
        self.rows.push(1);
        self.current.insert(key, (sheet, 1));
        (sheet, Some(name))
    }

    /// Rows of every sheet so far.
    pub fn totals(&self) -> Vec<(u32, u64)> {
        self.rows
            .iter()
            .enumerate()
            .map(|(n, r)| (n as u32, *r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_row_limit_with_unique_names() {
        let mut s = SheetSplitter::new(None, false, 2);
        let got: Vec<_> = (0..5).map(|_| s.sheet_for(0, 0, "stores", None)).collect();
        assert_eq!(
            got,
            vec![
                (0, Some("stores".into())),
                (0, None),
                (1, Some("stores (2)".into())),
                (1, None),
                (2, Some("stores (3)".into())),
            ]
        );
        assert_eq!(s.totals(), vec![(0, 2), (1, 2), (2, 1)]);
    }

    #[test]
    fn by_value_keeps_first_seen_order() {
        let mut s = SheetSplitter::new(Some("시도".into()), false, 100);
        assert_eq!(
            s.sheet_for(0, 0, "a", Some("서울")),
            (0, Some("서울".into()))
        );
        assert_eq!(
            s.sheet_for(0, 0, "a", Some("부산")),
            (1, Some("부산".into()))
        );
        assert_eq!(s.sheet_for(0, 0, "a", Some("서울")), (0, None));
        assert_eq!(
            s.sheet_for(0, 0, "a", Some("")),
            (2, Some("(blank)".into()))
        );
        assert_eq!(s.totals(), vec![(0, 2), (1, 1), (2, 1)]);
    }

    #[test]
    fn tables_get_their_own_sheets_and_never_a_reserved_name() {
        let mut s = SheetSplitter::new(None, true, 100);
        assert_eq!(
            s.sheet_for(0, 0, "Summary", None),
            (0, Some("Summary (2)".into()))
        );
        assert_eq!(s.sheet_for(0, 1, "점포", None), (1, Some("점포".into())));
        assert_eq!(
            s.sheet_for(1, 0, "점포", None),
            (2, Some("점포 (2)".into()))
        );
        assert_eq!(s.sheet_for(0, 1, "점포", None), (1, None));
        let mut s = SheetSplitter::new(Some("v".into()), true, 100);
        assert_eq!(s.sheet_for(0, 0, "a", Some("x")), (0, Some("a x".into())));
        assert_eq!(s.sheet_for(1, 0, "b", Some("x")), (1, Some("b x".into())));
    }
}
