//! Data that must not be lost or faked: every input cell reaches the workbook, what Excel forces
//! is said, placeholders and positions outside a CRS's area are error rows, and input that
//! cannot be written or plainly belongs to another CRS is refused at acceptance.

use std::fs;

use crate::harness::*;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn header_of(sheet: &[Vec<calamine::Data>]) -> Vec<String> {
    sheet[0].iter().map(text).collect()
}

fn column(sheet: &[Vec<calamine::Data>], name: &str) -> usize {
    header_of(sheet)
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name:?} in {:?}", header_of(sheet)))
}

/// Under a 3-column header, a row of 7 fields keeps fields 4–7 in their own columns after the
/// input's, is an error row with the reason, and nothing lands under `lon`/`lat`.
#[test]
fn ragged_rows_keep_every_cell() {
    let dir = tempdir();
    let input = dir.path().join("ragged.csv");
    fs::write(
        &input,
        "name,lon,lat\nA,127.1,37.2\nB,127.2,37.3,f4,f5,f6,f7\nC,127.3,37.4\n",
    )
    .unwrap();
    let out = dir.path().join("ragged.xlsx");
    let r = convert(&dir, &[s(&input), "-o", s(&out)]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let book = Book::open(&out);
    let sheet = book.sheet("ragged");
    assert_eq!(
        header_of(sheet)[..9],
        [
            "name",
            "lon",
            "lat",
            "extra_1",
            "extra_2",
            "extra_3",
            "extra_4",
            "lon_geobatch",
            "lat_geobatch"
        ]
        .map(String::from)
    );
    let row = &sheet[2];
    let cells: Vec<String> = row[..7].iter().map(text).collect();
    assert_eq!(cells, ["B", "127.2", "37.3", "f4", "f5", "f6", "f7"]);
    assert_eq!(text(&row[7]), "", "nothing under the new lon");
    assert_eq!(text(&row[8]), "", "nothing under the new lat");
    assert_eq!(text(&row[column(sheet, "status")]), "error");
    let reason = text(&row[column(sheet, "error")]);
    assert!(reason.contains("expected 3 fields, found 7"), "{reason}");
    // The regular rows are untouched and converted.
    assert_eq!(text(&sheet[1][column(sheet, "status")]), "ok");
    assert_eq!(text(&sheet[1][3]), "");
}

/// More error rows than a sheet holds continue in `Errors (2)`, `Errors (3)`.
#[test]
fn errors_sheet_continues_past_the_row_limit() {
    let dir = tempdir();
    let input = dir.path().join("bad.csv");
    let mut csv = String::from("name,lon,lat\n");
    for i in 0..7 {
        csv.push_str(&format!("r{i},N/A,37.5\n"));
    }
    csv.push_str("good,127.0,37.5\n");
    fs::write(&input, csv).unwrap();
    let out = dir.path().join("bad.xlsx");
    let r = convert_env(
        &dir,
        &[("GEOBATCH_SHEET_MAX_ROWS", "3")],
        &[s(&input), "-o", s(&out)],
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let book = Book::open(&out);
    let lines: Vec<String> = ["Errors", "Errors (2)", "Errors (3)"]
        .iter()
        .flat_map(|name| {
            let sheet = book.sheet(name);
            assert_eq!(text(&sheet[0][0]), "sheet", "{name} has its header");
            assert!(sheet.len() <= 4, "{name}: {} rows", sheet.len());
            sheet[1..].iter().map(|r| text(&r[1])).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(lines, ["2", "3", "4", "5", "6", "7", "8"]);
}

/// A file wider than a worksheet is refused before the job starts, naming the file.
#[test]
fn more_columns_than_excel_holds_are_refused() {
    let dir = tempdir();
    let input = dir.path().join("wide.csv");
    let mut header: Vec<String> = (0..16_382).map(|i| format!("c{i}")).collect();
    header.extend(["lon".into(), "lat".into()]);
    let row: Vec<&str> = (0..16_382).map(|_| "").chain(["127.0", "37.5"]).collect();
    fs::write(&input, format!("{}\n{}\n", header.join(","), row.join(","))).unwrap();
    let out = dir.path().join("wide.xlsx");
    let r = convert(&dir, &[s(&input), "-o", s(&out)]);
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("wide.csv") && r.stderr.contains("16384"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
}

/// A cell cut at Excel's 32,767 characters and undecodable bytes are said: in the row's
/// `error` column and counted in the Summary with the first line and column.
#[test]
fn cut_cells_and_undecodable_bytes_are_reported() {
    let dir = tempdir();
    let input = dir.path().join("warn.csv");
    let mut bytes = b"name,note,lon,lat\nA,ok,127.0,37.5\n".to_vec();
    bytes.extend(format!("B,{},127.1,37.5\n", "x".repeat(40_000)).as_bytes());
    bytes.extend(b"C,bad \xff\xfe bytes,127.2,37.5\n");
    bytes.extend(b"D,bad \xff again,N/A,37.5\n");
    fs::write(&input, bytes).unwrap();
    let out = dir.path().join("warn.xlsx");
    let r = convert(&dir, &[s(&input), "--encoding", "utf-8", "-o", s(&out)]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let book = Book::open(&out);
    let sheet = book.sheet("warn");
    let (status, error) = (column(sheet, "status"), column(sheet, "error"));
    assert_eq!(text(&sheet[1][error]), "");
    assert_eq!(text(&sheet[2][status]), "ok");
    let w = text(&sheet[2][error]);
    assert!(
        w.contains("warning") && w.contains("32767") && w.contains("note"),
        "{w}"
    );
    assert_eq!(text(&sheet[3][status]), "ok");
    let w = text(&sheet[3][error]);
    assert!(w.contains("warning") && w.contains("U+FFFD"), "{w}");
    let w = text(&sheet[4][error]);
    assert!(w.contains("empty") || w.contains("not a number") || !w.is_empty());
    assert!(w.contains("U+FFFD"), "{w}");
    let cut = book.summary_value("warnings: cells cut at 32767 characters");
    assert!(
        cut.starts_with("1 ") && cut.contains("line 3") && cut.contains("note"),
        "{cut}"
    );
    let bad = book.summary_value("warnings: undecodable bytes (U+FFFD)");
    assert!(
        bad.starts_with("2 ") && bad.contains("line 4") && bad.contains("note"),
        "{bad}"
    );
}

/// 0,0 (or -0,-0) is the commonest missing-value placeholder: an error row, never a position.
/// A position outside the target CRS's area of use is an error row naming the CRS.
#[test]
fn placeholders_and_positions_outside_the_target_area_are_error_rows() {
    let dir = tempdir();
    let input = dir.path().join("tm.csv");
    fs::write(
        &input,
        "name,x,y\nreal,198000,451000\nzero,0,0\nminus,-0,-0.0\n",
    )
    .unwrap();
    let out = dir.path().join("tm.xlsx");
    let r = convert(&dir, &[s(&input), "--from", "EPSG:5174", "-o", s(&out)]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let book = Book::open(&out);
    let sheet = book.sheet("tm");
    let status: Vec<String> = sheet[1..].iter().map(|r| text(&r[5])).collect();
    assert_eq!(status, ["ok", "error", "error"]);
    for row in &sheet[2..] {
        assert_eq!(text(&row[4]), "", "no lat for a placeholder");
        assert!(
            text(&row[6]).contains("0,0 is a missing-value placeholder"),
            "{row:?}"
        );
    }

    let input = dir.path().join("ll.csv");
    fs::write(
        &input,
        "name,lon,lat\nseoul,127.0,37.5\nnull,0,0\nafrica,10,10\n",
    )
    .unwrap();
    let out = dir.path().join("ll.xlsx");
    let r = convert(&dir, &[s(&input), "--to", "EPSG:5179", "-o", s(&out)]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let book = Book::open(&out);
    let sheet = book.sheet("ll");
    let status: Vec<String> = sheet[1..].iter().map(|r| text(&r[5])).collect();
    assert_eq!(status, ["ok", "error", "error"]);
    let reason = text(&sheet[3][6]);
    assert!(
        reason.contains("EPSG:5179") && reason.contains("area"),
        "{reason}"
    );
    assert_eq!(text(&sheet[3][3]), "");
}

/// In a multi-file job every file's sample is checked against the CRS it will use.
#[test]
fn every_file_is_checked_against_its_crs() {
    let dir = tempdir();
    let tm = dir.path().join("tm.csv");
    fs::write(&tm, "id,x,y\n1,198000,451000\n").unwrap();
    let ll = dir.path().join("ll.csv");
    fs::write(&ll, "id,x,y\n1,0,0\n2,127.02,37.51\n3,127.03,37.52\n").unwrap();
    let out = dir.path().join("o.xlsx");
    let r = convert(
        &dir,
        &[s(&tm), s(&ll), "--from", "EPSG:5174", "-o", s(&out)],
    );
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("ll.csv") && r.stderr.contains("EPSG:5174"),
        "{}",
        r.stderr
    );
    // Without `from`: the first file's lon/lat does not decide for a projected second file.
    let r = convert(&dir, &[s(&ll), s(&tm), "-o", s(&out)]);
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("tm.csv"), "{}", r.stderr);
    assert!(!out.exists());
}

/// Left behind by a killed process: an upload whose job was never recorded and `*.partial`
/// workbooks are removed at start-up once nothing has touched them for a minute; a fresh one
/// (another process may be writing it) and a job's upload stay.
#[test]
fn leftovers_are_removed_at_start_up() {
    let dir = tempdir();
    let data = dir.path();
    let orphan = data
        .join("uploads")
        .join(geobatch::job::JobId::random().as_str());
    let fresh = data
        .join("uploads")
        .join(geobatch::job::JobId::random().as_str());
    let watch = data.join("watch");
    for d in [
        &orphan,
        &fresh,
        &data.join("results"),
        &watch.join("outbox"),
    ] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(orphan.join("0-half.csv"), "name,lon,lat\nA,127").unwrap();
    fs::write(fresh.join("0-half.csv"), "name,lon,lat\nA,127").unwrap();
    let partial = data.join("results").join("abc.xlsx.partial");
    fs::write(&partial, "PK").unwrap();
    let outbox_partial = watch.join("outbox").join("a.xlsx.partial");
    fs::write(&outbox_partial, "PK").unwrap();
    let old = [
        &orphan.join("0-half.csv"),
        &orphan,
        &partial,
        &outbox_partial,
    ];
    let status = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .args(old.map(|p| p.to_str().unwrap()))
        .status()
        .unwrap();
    assert!(status.success());
    let mut serve = Serve::start(&dir, &[("GEOBATCH_WATCH_DIR", watch.to_str().unwrap())]);
    serve.wait_for_log("watching for CSV files", std::time::Duration::from_secs(30));
    assert!(
        !orphan.exists(),
        "the stale upload without a job is removed"
    );
    assert!(!partial.exists() && !outbox_partial.exists());
    assert!(fresh.exists(), "a fresh upload may still be written");
}

/// The same checks at the HTTP door: a multi-file upload whose second file plainly belongs to
/// another CRS is a 422 naming that file, and so is a file wider than a worksheet.
#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_checked_file_by_file() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[]);
    let tm = b"id,x,y\n1,198000,451000\n".to_vec();
    let ll = b"id,x,y\n1,127.02,37.51\n".to_vec();
    let (status, body) = upload(
        &serve,
        &[("tm.csv", tm), ("ll.csv", ll)],
        &[("from", "EPSG:5174")],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("ll.csv") && text.contains("EPSG:5174"),
        "{text}"
    );

    let mut wide: Vec<String> = (0..16_381).map(|i| format!("c{i}")).collect();
    wide.extend(["lon".into(), "lat".into()]);
    let csv = format!("{}\n", wide.join(",")).into_bytes();
    let (status, body) = upload(&serve, &[("wide.csv", csv)], &[]).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("wide.csv"), "{body}");
}
