use std::path::{Path, PathBuf};

use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};

use crate::intake::{open, reopen, IntakeError, ReadOptions};
use crate::job::Cell;

fn records(
    path: &Path,
    label: &str,
    opts: &ReadOptions,
) -> (crate::job::Layout, Vec<(u32, u64, Vec<Cell>)>) {
    let mut source = open(path, label, opts).unwrap();
    let layout = source.layout().clone();
    let mut out = Vec::new();
    while let Some(r) = source.next_record() {
        let r = r.unwrap();
        out.push((r.table, r.line, r.fields));
    }
    (layout, out)
}

fn t(s: &str) -> Cell {
    Cell::Text(s.into())
}

/// Sheets: "점포" (a one-cell merged title, a blank row, then the header), "Hidden" (hidden),
/// "Empty", "Other" (no x/y columns), "부산" (plain).
fn workbook(dir: &Path) -> PathBuf {
    let mut wb = Workbook::new();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let ws = wb.add_worksheet().set_name("점포").unwrap();
    ws.merge_range(0, 0, 0, 4, "2024 점포 목록", &Format::new())
        .unwrap();
    for (c, h) in ["우편번호", "x", "y", "개업일", "합계"].iter().enumerate() {
        ws.write_string(2, c as u16, *h).unwrap();
    }
    ws.write_string(3, 0, "03171").unwrap();
    ws.write_number(3, 1, 126.97689123456789).unwrap();
    ws.write_number(3, 2, 37.57005432109876).unwrap();
    ws.write_datetime_with_format(3, 3, ExcelDateTime::from_ymd(2024, 3, 1).unwrap(), &date)
        .unwrap();
    ws.write_formula(
        3,
        4,
        Formula::new("=B4+C4").set_result("164.54694555566665"),
    )
    .unwrap();
    ws.write_string(5, 0, "04524").unwrap();
    ws.write_string(5, 1, "127.0").unwrap();
    ws.write_number(5, 2, 37.5).unwrap();
    let hidden = wb.add_worksheet().set_name("Hidden").unwrap();
    hidden.write_string(0, 0, "x").unwrap();
    hidden.write_string(0, 1, "y").unwrap();
    hidden.set_hidden(true);
    wb.add_worksheet().set_name("Empty").unwrap();
    let other = wb.add_worksheet().set_name("Other").unwrap();
    other.write_string(0, 0, "note").unwrap();
    other.write_string(0, 1, "text").unwrap();
    let busan = wb.add_worksheet().set_name("부산").unwrap();
    for (c, h) in ["lon", "lat"].iter().enumerate() {
        busan.write_string(0, c as u16, *h).unwrap();
    }
    busan.write_number(1, 0, 129.0).unwrap();
    busan.write_number(1, 1, 35.1).unwrap();
    let path = dir.join("stores.xlsx");
    wb.save(&path).unwrap();
    path
}

#[test]
fn every_visible_sheet_with_coordinates_is_a_table_with_cells_as_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = workbook(dir.path());
    let (layout, rows) = records(&path, "stores.xlsx", &ReadOptions::default());
    assert_eq!(layout.format, "xlsx");
    let names: Vec<&str> = layout.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["점포", "부산"]);
    assert_eq!(
        layout.tables[0].headers,
        ["우편번호", "x", "y", "개업일", "합계"]
    );
    assert_eq!(layout.tables[0].header_line, 3);
    assert_eq!((layout.tables[0].x, layout.tables[0].y), (1, 2));
    assert_eq!(
        crate::intake::skipped_sheets(&layout),
        [
            "\"Hidden\" (hidden)",
            "\"Empty\" (empty)",
            "\"Other\" (no x/y columns)"
        ]
    );
    assert_eq!(
        rows,
        vec![
            (
                0,
                4,
                vec![
                    t("03171"),
                    Cell::Number(126.97689123456789),
                    Cell::Number(37.57005432109876),
                    Cell::Date("2024-03-01".into()),
                    Cell::Number(164.54694555566665),
                ]
            ),
            (
                0,
                6,
                vec![
                    t("04524"),
                    t("127.0"),
                    Cell::Number(37.5),
                    Cell::Empty,
                    Cell::Empty
                ]
            ),
            (1, 2, vec![Cell::Number(129.0), Cell::Number(35.1)]),
        ]
    );
    // Read again from the stored layout: the same records.
    let mut again = reopen(&path, "stores.xlsx", &layout).unwrap();
    let mut n = 0;
    while let Some(r) = again.next_record() {
        let r = r.unwrap();
        assert_eq!(
            (r.table, r.line, &r.fields),
            (rows[n].0, rows[n].1, &rows[n].2)
        );
        n += 1;
    }
    assert_eq!(n, rows.len());
}

#[test]
fn sheets_and_header_row_options_choose() {
    let dir = tempfile::tempdir().unwrap();
    let path = workbook(dir.path());
    let opts = ReadOptions {
        sheets: Some(vec!["부산".into(), "hidden".into()]),
        ..ReadOptions::default()
    };
    let (layout, rows) = records(&path, "stores.xlsx", &opts);
    let names: Vec<&str> = layout.tables.iter().map(|t| t.name.as_str()).collect();
    // A hidden sheet named in the option is read.
    assert_eq!(names, ["Hidden", "부산"]);
    assert_eq!(rows.len(), 1);
    let opts = ReadOptions {
        sheets: Some(vec!["Nope".into()]),
        ..ReadOptions::default()
    };
    let e = open(&path, "stores.xlsx", &opts).err().unwrap();
    assert_eq!(e.option(), Some("sheets"));
    assert!(
        e.to_string().contains("\"Nope\"") && e.to_string().contains("\"부산\""),
        "{e}"
    );
    let opts = ReadOptions {
        sheets: Some(vec!["점포".into()]),
        header_row: Some(3),
        ..ReadOptions::default()
    };
    let (layout, rows) = records(&path, "stores.xlsx", &opts);
    assert_eq!(layout.tables[0].header_line, 3);
    assert_eq!(rows.len(), 2);
    let opts = ReadOptions {
        sheets: Some(vec!["부산".into(), "Other".into()]),
        ..ReadOptions::default()
    };
    let e = open(&path, "stores.xlsx", &opts).err().unwrap().to_string();
    assert!(
        e.contains("sheet \"Other\"") && e.contains("no x/y columns"),
        "{e}"
    );
}

#[test]
fn a_changed_workbook_is_refused_on_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = workbook(dir.path());
    let (mut layout, _) = records(&path, "stores.xlsx", &ReadOptions::default());
    layout.tables[1].headers[0] = "long".into();
    let mut source = reopen(&path, "stores.xlsx", &layout).unwrap();
    let e = std::iter::from_fn(|| source.next_record())
        .find_map(Result::err)
        .unwrap();
    assert!(matches!(e, IntakeError::Changed { .. }), "{e}");
}

/// Every message names the file, says what to do, and shows no binary.
fn refused(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let e = open(&path, name, &ReadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with(&format!("{name}: ")), "{e}");
    assert!(
        e.len() < 600 && !e.chars().any(|c| c.is_control() || c == '\u{fffd}'),
        "{e}"
    );
    e
}

#[test]
fn bad_workbooks_are_refused_with_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(workbook(dir.path())).unwrap();
    let e = refused(dir.path(), "cut.xlsx", &good[..good.len() / 2]);
    assert!(e.contains("cannot read the workbook"), "{e}");
    let e = refused(dir.path(), "renamed.csv", &good);
    assert!(
        e.contains("this is an Excel workbook (xlsx)") && e.contains(".xlsx"),
        "{e}"
    );
    let e = refused(dir.path(), "data.xlsx", b"id,x,y\n1,127,37\n");
    assert!(e.contains("is text (a CSV?)") && e.contains(".csv"), "{e}");
    let html = "<html><head><meta charset=euc-kr></head><body><table><tr><td>x</td></tr>\
                </table></body></html>";
    let e = refused(dir.path(), "portal.xls", html.as_bytes());
    assert!(
        e.contains("web page (HTML)") && e.contains(".xlsx or .csv"),
        "{e}"
    );
    let mut encrypted = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1".to_vec();
    encrypted.extend(vec![0u8; 1000]);
    encrypted.extend("EncryptedPackage".encode_utf16().flat_map(u16::to_le_bytes));
    encrypted.extend(vec![0xFFu8; 1000]);
    let e = refused(dir.path(), "secret.xlsx", &encrypted);
    assert!(e.contains("password-protected"), "{e}");
    let e = refused(
        dir.path(),
        "noise.xlsx",
        &[0u8, 1, 2, 3, 0xFF, 0x80, 0x00, 0x10],
    );
    assert!(e.contains("neither a zip archive"), "{e}");
    let mut cfb = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1".to_vec();
    cfb.extend((0..4000u32).map(|i| (i * 7 % 251) as u8));
    let e = refused(dir.path(), "broken.xls", &cfb);
    assert!(e.contains("cannot read the workbook"), "{e}");
}
