//! Which row of a sheet names the columns, the way a person reads a sheet: the first row with
//! values, after any one-cell title rows above it; a group header over merged cells with a row
//! of sub-headers below ("좌표" over "X" and "Y") gives "좌표 X" and "좌표 Y".

use crate::job::Cell;

/// Rows with values looked at to find a sheet's header.
pub(super) const SCAN_ROWS: usize = 20;

/// A sheet's header: its rows and the names they give.
#[derive(Debug, PartialEq)]
pub(super) struct Header {
    /// 0-based index of the first header row.
    pub first: u32,
    /// Header rows: 1, or 2 for a group header over sub-headers.
    pub rows: u32,
    pub names: Vec<String>,
    /// The names the sub-header row alone gives (empty for a one-row header), tried for the
    /// x/y columns when the combined names say nothing.
    pub alternative: Vec<String>,
}

fn filled(cells: &[Cell]) -> usize {
    cells.iter().filter(|c| !c.is_empty()).count()
}

fn name(cells: &[Cell], i: usize) -> String {
    cells
        .get(i)
        .map(|c| c.as_text().trim().to_string())
        .unwrap_or_default()
}

/// The header among a sheet's first rows with values (`(0-based index, cells)`, in order).
/// `given`: the 1-based row the user named; None when that row has no value.
pub(super) fn find(rows: &[(u32, Vec<Cell>)], given: Option<u32>) -> Option<Header> {
    if let Some(n) = given {
        let (index, cells) = rows.iter().find(|(i, _)| i + 1 == n)?;
        return Some(one_row(*index, cells));
    }
    let mut at = 0;
    // One-cell title rows above a wider row are titles, not the header.
    while at + 1 < rows.len()
        && filled(&rows[at].1) <= 1
        && rows[at + 1..].iter().any(|(_, r)| filled(r) > 1)
    {
        at += 1;
    }
    let (index, top) = rows.get(at)?;
    match rows.get(at + 1) {
        Some((next, sub)) if *next == index + 1 && is_sub_header(top, sub) => {
            Some(two_rows(*index, top, sub))
        }
        _ => Some(one_row(*index, top)),
    }
}

fn one_row(index: u32, cells: &[Cell]) -> Header {
    Header {
        first: index,
        rows: 1,
        names: (0..cells.len()).map(|i| name(cells, i)).collect(),
        alternative: Vec::new(),
    }
}

/// A row of text under a header with a gap (the rest of a merged cell) above a value of it.
fn is_sub_header(top: &[Cell], sub: &[Cell]) -> bool {
    if sub
        .iter()
        .any(|c| !c.is_empty() && !matches!(c, Cell::Text(_)))
    {
        return false;
    }
    (1..sub.len()).any(|c| {
        !sub[c].is_empty()
            && top.get(c).is_none_or(Cell::is_empty)
            && top[..c.min(top.len())].iter().any(|t| !t.is_empty())
    })
}

/// Names of a group header row over sub-headers: a group's name fills the gap its merged cell
/// left, joined to each sub-header below it.
fn two_rows(index: u32, top: &[Cell], sub: &[Cell]) -> Header {
    let width = top.len().max(sub.len());
    let mut names = Vec::with_capacity(width);
    let mut alternative = Vec::with_capacity(width);
    let mut group = String::new();
    for i in 0..width {
        let (above, below) = (name(top, i), name(sub, i));
        if !above.is_empty() {
            group = above.clone();
        } else if below.is_empty() {
            group.clear();
        }
        let above = if above.is_empty() && !below.is_empty() {
            group.clone()
        } else {
            above
        };
        alternative.push(if below.is_empty() {
            above.clone()
        } else {
            below.clone()
        });
        names.push(match (above.is_empty(), below.is_empty()) {
            (_, true) => above,
            (true, false) => below,
            (false, false) => format!("{above} {below}"),
        });
    }
    Header {
        first: index,
        rows: 2,
        names,
        alternative,
    }
}

/// The names of the header rows as read again (`rows`: the header's rows, in order).
pub(super) fn names_of(rows: &[Vec<Cell>]) -> Vec<String> {
    match rows {
        [top, sub] => two_rows(0, top, sub).names,
        [one] => one_row(0, one).names,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<Cell> {
        cells
            .iter()
            .map(|c| {
                if c.is_empty() {
                    Cell::Empty
                } else if let Ok(n) = c.parse::<f64>() {
                    Cell::Number(n)
                } else {
                    Cell::Text(c.to_string())
                }
            })
            .collect()
    }

    #[test]
    fn title_rows_above_the_header_are_skipped() {
        let rows = vec![
            (0, row(&["2024 점포 목록"])),
            (1, row(&["", "기준일 2024-01-01"])),
            (3, row(&["id", "x", "y"])),
            (4, row(&["1", "127", "37"])),
        ];
        let h = find(&rows, None).unwrap();
        assert_eq!((h.first, h.rows), (3, 1));
        assert_eq!(h.names, ["id", "x", "y"]);
        let h = find(&rows, Some(2)).unwrap();
        assert_eq!(h.names, ["", "기준일 2024-01-01"]);
        assert!(find(&rows, Some(3)).is_none());
    }

    #[test]
    fn a_merged_group_header_joins_its_sub_headers() {
        let rows = vec![
            (0, row(&["번호", "상호", "좌표", "", "비고"])),
            (1, row(&["", "", "X", "Y"])),
            (2, row(&["1", "가게", "127.1", "37.5", "a"])),
        ];
        let h = find(&rows, None).unwrap();
        assert_eq!((h.first, h.rows), (0, 2));
        assert_eq!(h.names, ["번호", "상호", "좌표 X", "좌표 Y", "비고"]);
        assert_eq!(h.alternative, ["번호", "상호", "X", "Y", "비고"]);
        assert_eq!(names_of(&[rows[0].1.clone(), rows[1].1.clone()]), h.names);
        // A data row under a plain header is data.
        let rows = vec![
            (0, row(&["id", "name", "x", "y"])),
            (1, row(&["a", "b", "c", "d"])),
        ];
        assert_eq!(find(&rows, None).unwrap().rows, 1);
    }
}
