//! Workbooks in: every worksheet its own sheet and topic, cells as the user sees them, by
//! upload and by `convert`, checked cell by cell in the result workbook (and, for the upload,
//! in the GeoPackage as GDAL reads it).
//!
//! `tests/data/two_sheets.ods` was made once with GDAL (`gdal-bin`) from two CSVs with `.csvt`
//! type files (`"String","String","Real","Real"` and `"String","Real","Real"`):
//! `ogr2ogr -f ODS two_sheets.ods 서울.csv && ogr2ogr -update two_sheets.ods 부산.csv`, then
//! repacked with the whitespace between the tags of `content.xml` removed (GDAL indents it;
//! LibreOffice does not, and calamine 0.38 refuses the indentation inside a row).

use std::path::Path;

use calamine::Data;
use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};

use crate::harness::*;

/// One input cell and how it must come back.
#[derive(Clone, Copy, Debug)]
enum V {
    /// A text cell (back as the same text).
    T(&'static str),
    /// A number cell (back as the same number).
    N(f64),
    /// A date cell (back as ISO-8601 text).
    D(u16, u8, u8, &'static str),
    /// A formula with its cached number.
    F(&'static str, f64),
    E,
}

struct Sheet {
    name: &'static str,
    /// Rows above the data: the header rows as written, row by row (one-cell titles too).
    head: Vec<Vec<&'static str>>,
    /// Column names the result must have.
    headers: Vec<&'static str>,
    rows: Vec<Vec<V>>,
    /// Rows whose position cannot be read.
    errors: Vec<usize>,
}

fn sheets() -> Vec<Sheet> {
    use V::*;
    vec![
        Sheet {
            name: "서울",
            head: vec![
                vec!["서울 점포 목록 (2024)"],
                vec![],
                vec!["id", "우편번호", "x", "y", "개업일", "합계"],
            ],
            headers: vec!["id", "우편번호", "x", "y", "개업일", "합계"],
            rows: vec![
                vec![
                    T("0000000"),
                    T("03171"),
                    N(126.97689123456789),
                    N(37.57005432109876),
                    D(2024, 3, 1, "2024-03-01"),
                    F("=C4+D4", 164.54694555566665),
                ],
                vec![T("0000001"), T("04524"), T("127.0"), N(37.5), E, E],
                vec![T("0000002"), T("06236"), T("-"), N(37.49), E, E],
                vec![
                    T("0000003"),
                    T("00501"),
                    N(127.0000000000001),
                    N(0.1 + 0.2 + 37.0),
                    D(1999, 12, 31, "1999-12-31"),
                    E,
                ],
            ],
            errors: vec![2],
        },
        Sheet {
            name: "부산",
            head: vec![vec!["id", "lon", "lat", "메모"]],
            headers: vec!["id", "lon", "lat", "메모"],
            rows: vec![
                vec![T("0000000"), N(129.0), N(35.1), T("=SUM(A1)")],
                vec![T("0000001"), N(129.07563), N(35.17982), E],
            ],
            errors: vec![],
        },
        Sheet {
            name: "대구",
            head: vec![vec!["번호", "좌표", ""], vec!["", "X", "Y"]],
            headers: vec!["번호", "좌표 X", "좌표 Y"],
            rows: vec![
                vec![T("0000000"), N(128.6014), N(35.8714)],
                vec![T("0000001"), N(128.5931), N(35.8563)],
            ],
            errors: vec![],
        },
    ]
}

/// The three sheets, plus a hidden one and an empty one, which are skipped.
pub(crate) fn three_sheet_xlsx() -> Vec<u8> {
    let mut wb = Workbook::new();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    for sheet in sheets() {
        let ws = wb.add_worksheet().set_name(sheet.name).unwrap();
        for (r, cells) in sheet.head.iter().enumerate() {
            for (c, h) in cells.iter().enumerate() {
                if !h.is_empty() {
                    ws.write_string(r as u32, c as u16, *h).unwrap();
                }
            }
        }
        if sheet.name == "서울" {
            ws.merge_range(0, 0, 0, 5, "서울 점포 목록 (2024)", &Format::new())
                .unwrap();
        }
        if sheet.name == "대구" {
            ws.merge_range(0, 1, 0, 2, "좌표", &Format::new()).unwrap();
            ws.merge_range(0, 0, 1, 0, "번호", &Format::new()).unwrap();
        }
        let first = sheet.head.len() as u32;
        for (r, cells) in sheet.rows.iter().enumerate() {
            let r = first + r as u32;
            for (c, v) in cells.iter().enumerate() {
                let c = c as u16;
                match *v {
                    V::T(s) => ws.write_string(r, c, s).map(|_| ()),
                    V::N(n) => ws.write_number(r, c, n).map(|_| ()),
                    V::D(y, m, d, _) => {
                        let when = ExcelDateTime::from_ymd(y, m, d).unwrap();
                        ws.write_datetime_with_format(r, c, when, &date).map(|_| ())
                    }
                    V::F(f, cached) => ws
                        .write_formula(r, c, Formula::new(f).set_result(cached.to_string()))
                        .map(|_| ()),
                    V::E => Ok(()),
                }
                .unwrap();
            }
        }
    }
    let hidden = wb.add_worksheet().set_name("숨김").unwrap();
    hidden.write_string(0, 0, "x").unwrap();
    hidden.write_string(0, 1, "y").unwrap();
    hidden.write_number(1, 0, 127.0).unwrap();
    hidden.write_number(1, 1, 37.0).unwrap();
    hidden.set_hidden(true);
    wb.add_worksheet().set_name("빈 시트").unwrap();
    wb.save_to_buffer().unwrap()
}

/// Every sheet of the result holds its input's rows once, in order, cell by cell.
fn check_result(book: &Book, sheets: &[Sheet]) {
    let names: Vec<&str> = sheets.iter().map(|s| s.name).collect();
    assert_eq!(book.names[..names.len()], names, "{:?}", book.names);
    assert!(!book.names.iter().any(|n| n == "숨김" || n == "빈 시트"));
    for sheet in sheets {
        let got = book.sheet(sheet.name);
        let header: Vec<String> = got[0].iter().map(text).collect();
        assert_eq!(header[..sheet.headers.len()], sheet.headers);
        let status = header.iter().position(|h| h == "status").unwrap();
        assert_eq!(got.len(), sheet.rows.len() + 1, "{}", sheet.name);
        for (i, (want, row)) in sheet.rows.iter().zip(&got[1..]).enumerate() {
            let at = format!("{} row {i}", sheet.name);
            for (c, v) in want.iter().enumerate() {
                let cell = row.get(c).unwrap_or(&Data::Empty);
                match *v {
                    V::T(s) => assert_eq!(cell, &Data::String(s.into()), "{at}"),
                    V::N(n) | V::F(_, n) => assert_eq!(num(cell), n, "{at}"),
                    V::D(.., iso) => assert_eq!(text(cell), iso, "{at}"),
                    V::E => assert_eq!(cell, &Data::Empty, "{at}"),
                }
            }
            let expected = if sheet.errors.contains(&i) {
                "error"
            } else {
                "ok"
            };
            assert_eq!(text(&row[status]), expected, "{at}");
        }
    }
}

#[tokio::test]
async fn a_three_sheet_upload_gives_three_sheets_and_topics_every_row_once_in_order() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[]);
    let (status, body) = upload(
        &serve,
        &[("stores.xlsx", three_sheet_xlsx())],
        &[("format", "xlsx,gpkg")],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let job = wait_done(&serve, &id).await;
    let sheets_seen: Vec<&str> = job["sheets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // A sheet each, and so a topic each (geobatch.rows.<job>.<sheet>).
    assert_eq!(sheets_seen, ["서울", "부산", "대구"]);
    let message = job["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("\"숨김\" (hidden)") && message.contains("\"빈 시트\" (empty)"),
        "{job}"
    );
    assert_eq!(job["total_rows"], 8);
    assert_eq!(job["rows_failed"], 1);
    let book = download_book(&serve, &id, &dir).await;
    check_result(&book, &sheets());
    check_geopackage(&serve, &id, &dir).await;
}

/// The job's GeoPackage, read by GDAL: a layer per sheet, in input order, every cell as its
/// text, a point for each ok row and none for an error row.
async fn check_geopackage(serve: &Serve, id: &str, dir: &TestDir) {
    let res = client()
        .get(serve.url(&format!("/jobs/{id}/result.gpkg")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let path = dir.path().join(format!("{id}.gpkg"));
    std::fs::write(&path, res.bytes().await.unwrap()).unwrap();
    for sheet in sheets() {
        let features = gdal_features(&path, Some(sheet.name));
        assert_eq!(features.len(), sheet.rows.len(), "{}", sheet.name);
        for (i, (want, f)) in sheet.rows.iter().zip(&features).enumerate() {
            let at = format!("{} row {i}", sheet.name);
            let props = &f["properties"];
            for (name, v) in sheet.headers.iter().zip(want) {
                let got = &props[*name];
                match *v {
                    V::T(s) => assert_eq!(got.as_str(), Some(s), "{at} {name}: {props}"),
                    V::N(n) | V::F(_, n) => {
                        let text = got
                            .as_str()
                            .unwrap_or_else(|| panic!("{at} {name}: {props}"));
                        assert_eq!(text.parse::<f64>().ok(), Some(n), "{at} {name}: {props}");
                    }
                    V::D(.., iso) => assert_eq!(got.as_str(), Some(iso), "{at} {name}"),
                    V::E => assert!(
                        got.is_null() || got.as_str() == Some(""),
                        "{at} {name}: {props}"
                    ),
                }
            }
            let error = sheet.errors.contains(&i);
            assert_eq!(props["status"], if error { "error" } else { "ok" }, "{at}");
            assert_eq!(f["geometry"].is_null(), error, "{at}: {f}");
        }
    }
}

#[test]
fn convert_reads_a_workbook_and_the_sheets_option_picks() {
    let dir = tempdir();
    let input = dir.path().join("stores.xlsx");
    std::fs::write(&input, three_sheet_xlsx()).unwrap();
    let out = dir.path().join("out.xlsx");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let r = convert(&dir, &[i, "-o", o]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let book = Book::open(&out);
    check_result(&book, &sheets());
    let file = book.summary_value("file");
    assert!(
        file.contains("sheet \"숨김\" (hidden) skipped")
            && file.contains("sheet \"빈 시트\" (empty) skipped"),
        "{file}"
    );

    let picked = dir.path().join("picked.xlsx");
    let r = convert(
        &dir,
        &[i, "--sheets", "대구, 부산", "-o", picked.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let book = Book::open(&picked);
    let wanted: Vec<Sheet> = sheets().into_iter().skip(1).collect();
    check_result(&book, &wanted);
    assert!(!book.names.iter().any(|n| n == "서울"));

    let r = convert(&dir, &[i, "--sheets", "대전", "-o", o]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("stores.xlsx: no sheet \"대전\"") && r.stderr.contains("\"부산\""),
        "{}",
        r.stderr
    );
}

#[test]
fn an_ods_workbook_converts_sheet_by_sheet() {
    let dir = tempdir();
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/two_sheets.ods");
    let out = dir.path().join("out.xlsx");
    let r = convert(
        &dir,
        &[input.to_str().unwrap(), "-o", out.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    use V::*;
    let ods = vec![
        Sheet {
            name: "서울",
            head: vec![],
            headers: vec!["id", "우편번호", "x", "y"],
            rows: vec![
                vec![
                    T("0000000"),
                    T("03171"),
                    N(126.97689123456789),
                    N(37.57005432109876),
                ],
                vec![T("0000001"), T("04524"), N(127.0), N(37.5)],
            ],
            errors: vec![],
        },
        Sheet {
            name: "부산",
            head: vec![],
            headers: vec!["id", "lon", "lat"],
            rows: vec![
                vec![T("0000000"), N(129.0), N(35.1)],
                vec![T("0000001"), N(129.07), N(35.18)],
            ],
            errors: vec![],
        },
    ];
    check_result(&Book::open(&out), &ods);
}

#[test]
fn misnamed_and_broken_workbooks_are_refused_naming_the_file() {
    let dir = tempdir();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "stores.csv",
            three_sheet_xlsx(),
            "this is an Excel workbook (xlsx)",
        ),
        (
            "stores.xlsx",
            b"id,x,y\n1,127,37\n".to_vec(),
            "rename it to .csv",
        ),
        (
            "portal.xls",
            "<html><body><table><tr><td>경도</td></tr></table></body></html>"
                .as_bytes()
                .to_vec(),
            "web page (HTML)",
        ),
    ];
    for (name, bytes, says) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, bytes).unwrap();
        let out = dir.path().join("out.xlsx");
        let r = convert(
            &dir,
            &[input.to_str().unwrap(), "-o", out.to_str().unwrap()],
        );
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("{name}: ")) && r.stderr.contains(says),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("PK\u{3}\u{4}"), "{}", r.stderr);
    }
}

#[test]
fn a_workbook_dropped_into_the_watched_folder_is_taken_but_not_office_lock_files() {
    let dir = tempdir();
    let watch = dir.path().join("watch");
    let _serve = Serve::start(&dir, &[("GEOBATCH_WATCH_DIR", watch.to_str().unwrap())]);
    let inbox = watch.join("inbox");
    std::fs::write(inbox.join("~$stores.xlsx"), b"lock").unwrap();
    std::fs::write(inbox.join("stores.xlsx"), three_sheet_xlsx()).unwrap();
    wait_path(
        &watch.join("done").join("stores.xlsx"),
        std::time::Duration::from_secs(60),
    );
    check_result(
        &Book::open(&watch.join("outbox").join("stores.xlsx")),
        &sheets(),
    );
    assert!(inbox.join("~$stores.xlsx").exists());
}
