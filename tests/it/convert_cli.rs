//! `geobatch convert` as a user runs it, the workbook read back cell by cell.

use std::fs;

use calamine::Data;
use geobatch::convert::crs::{Crs, Transform};

use crate::harness::*;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// The LOCALDATA sample: CP949, EPSG:5174, a leading-zero postal code, a formula-looking cell,
/// and bad rows. Every input row comes back once, in order, cells unchanged.
#[test]
fn localdata_sample_converts_every_row_in_order() {
    let dir = tempdir();
    let out = dir.path().join("out.xlsx");
    let sample = samples().join("localdata_5174.csv");
    let r = convert(&dir, &[s(&sample), "--from", "EPSG:5174", "-o", s(&out)]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(
        r.stdout.contains("rows ("),
        "one-line summary: {}",
        r.stdout
    );

    let book = check_localdata_workbook(&out, 1e-9);
    let operation = book.summary_value("operation");
    assert!(operation.contains("Molodensky-Badekas"), "{operation}");
}

/// Each kind of unusable coordinate ends as an error row with its reason, never a position.
#[test]
fn bad_cells_become_error_rows_with_reasons() {
    let dir = tempdir();
    let input = dir.path().join("bad.csv");
    fs::write(
        &input,
        "name,x,y\n\
         ok1,127.0,37.5\n\
         empty,,37.5\n\
         dash,-,37.5\n\
         na,N/A,37.5\n\
         text,abc,37.5\n\
         multi,\"1,234.5.6\",37.5\n\
         nan,NaN,37.5\n\
         inf,127.0,inf\n\
         far,200.0,37.5\n\
         ragged,127.1\n\
         ok2,127.25,37.75\n",
    )
    .unwrap();
    let out = dir.path().join("bad.xlsx");
    let r = convert(&dir, &[s(&input), "-o", s(&out)]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let book = Book::open(&out);
    let sheet = book.sheet("bad");
    let status: Vec<String> = sheet[1..].iter().map(|r| text(&r[5])).collect();
    assert_eq!(
        status,
        [
            "ok", "error", "error", "error", "error", "error", "error", "error", "error", "error",
            "ok"
        ]
    );
    // 4326 in, 4326 out: the numbers come back unchanged.
    assert_eq!((num(&sheet[1][3]), num(&sheet[1][4])), (127.0, 37.5));
    assert_eq!((num(&sheet[11][3]), num(&sheet[11][4])), (127.25, 37.75));
    for row in &sheet[2..11] {
        assert_eq!(row[3], Data::Empty);
        assert_eq!(row[4], Data::Empty);
    }
    let errs = book.sheet("Errors");
    let lines: Vec<f64> = errs[1..].iter().map(|r| num(&r[1])).collect();
    assert_eq!(lines, [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
    let reason = |line: usize| text(&errs[line - 2][4]).to_lowercase();
    assert!(reason(3).contains("empty"), "{}", reason(3));
    assert!(reason(4).contains("not a number"), "{}", reason(4));
    assert!(reason(7).contains("not a number"), "{}", reason(7));
    assert!(reason(8).contains("finite"), "{}", reason(8));
    assert!(reason(10).contains("outside"), "{}", reason(10));
    assert!(
        reason(11).contains("expected 3 fields, found 2"),
        "{}",
        reason(11)
    );
    assert_eq!(text(&errs[1][2]), "x", "the column is named");
    assert_eq!(text(&errs[1][0]), "bad", "the sheet is named");
}

/// Encodings, delimiters and quoting are detected per file; several files give several sheets.
#[test]
fn encodings_and_delimiters_are_detected() {
    let dir = tempdir();
    let body = "이름{d}경도{d}위도\n\"서울, 시청\"{d}126.978{d}37.5665\n\"줄\n바꿈\"{d}129.075{d}35.1796\n부산{d}129.04{d}35.10\n";
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("utf8_bom.csv", {
            let mut b = vec![0xEF, 0xBB, 0xBF];
            b.extend(body.replace("{d}", ",").as_bytes());
            b
        }),
        (
            "cp949.csv",
            encoding_rs::EUC_KR
                .encode(&body.replace("{d}", ";"))
                .0
                .into_owned(),
        ),
        ("utf16le.csv", {
            let mut b = vec![0xFF, 0xFE];
            for u in body.replace("{d}", "\t").encode_utf16() {
                b.extend(u.to_le_bytes());
            }
            b
        }),
        ("utf16be.csv", {
            let mut b = vec![0xFE, 0xFF];
            for u in body.replace("{d}", "|").encode_utf16() {
                b.extend(u.to_be_bytes());
            }
            b
        }),
    ];
    let mut args = Vec::new();
    for (name, bytes) in &files {
        let p = dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        args.push(p.to_str().unwrap().to_string());
    }
    let out = dir.path().join("enc.xlsx");
    args.extend(["-o".to_string(), s(&out).to_string()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = convert(&dir, &argv);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let book = Book::open(&out);
    assert_eq!(
        book.names,
        ["utf8_bom", "cp949", "utf16le", "utf16be", "Summary", "Errors"]
    );
    for name in ["utf8_bom", "cp949", "utf16le", "utf16be"] {
        let sheet = book.sheet(name);
        let cells: Vec<Vec<String>> = sheet.iter().map(|r| r.iter().map(text).collect()).collect();
        assert_eq!(cells[0][..3], ["이름", "경도", "위도"], "{name}");
        assert_eq!(cells[1][0], "서울, 시청", "{name}");
        assert_eq!(cells[2][0], "줄\n바꿈", "{name}");
        assert_eq!(cells[3][0], "부산", "{name}");
        assert_eq!(sheet.len(), 4, "{name}");
        assert_eq!(num(&sheet[1][3]), 126.978, "{name}");
        assert!(cells[1..].iter().all(|r| r[5] == "ok"), "{name}: {cells:?}");
    }
}

#[test]
fn projected_values_without_from_are_refused_with_likely_codes() {
    let dir = tempdir();
    let input = dir.path().join("tm.csv");
    fs::write(&input, "id,x,y\n1,,\n2,198765.12,451234.56\n").unwrap();
    let r = convert(&dir, &[s(&input), "-o", s(&dir.path().join("o.xlsx"))]);
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    for code in [
        "5174",
        "2097",
        "5181",
        "5186",
        "5179",
        "option from",
        "tm.csv",
        "line 3",
    ] {
        assert!(r.stderr.contains(code), "{code} missing from: {}", r.stderr);
    }
}

#[test]
fn unusable_input_is_a_clear_error() {
    let dir = tempdir();
    let input = dir.path().join("cols.csv");
    fs::write(&input, "name,easting,northing\na,1,2\n").unwrap();
    let out = dir.path().join("o.xlsx");
    let r = convert(&dir, &[s(&input), "-o", s(&out)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cols.csv"), "{}", r.stderr);
    assert!(
        r.stderr.contains("\"easting\""),
        "headers listed: {}",
        r.stderr
    );
    assert!(r.stderr.contains("options x and y"), "{}", r.stderr);

    let r = convert(
        &dir,
        &[
            s(&input),
            "--x",
            "easting",
            "--y",
            "northing",
            "--from",
            "EPSG:9999",
            "-o",
            s(&out),
        ],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("EPSG:9999"), "{}", r.stderr);

    let r = convert(
        &dir,
        &[
            s(&input),
            "--x",
            "easting",
            "--y",
            "nope",
            "--from",
            "EPSG:5186",
            "-o",
            s(&out),
        ],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);

    let r = convert(&dir, &[s(&dir.path().join("missing.csv")), "-o", s(&out)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("missing.csv"), "{}", r.stderr);
    assert!(!out.exists());
}

/// Given columns, a projected target, header clashes and the row-limit split.
#[test]
fn columns_target_and_sheet_split() {
    let dir = tempdir();
    let input = dir.path().join("clash.csv");
    let mut body = String::from("lon,status,E,N\n");
    for i in 0..10 {
        body.push_str(&format!(
            "{i},s{i},{},{}\n",
            200_000 + i * 100,
            550_000 + i * 100
        ));
    }
    fs::write(&input, body).unwrap();
    let out = dir.path().join("clash.xlsx");
    let r = convert_env(
        &dir,
        &[("GEOBATCH_SHEET_MAX_ROWS", "4")],
        &[
            s(&input),
            "--x",
            "E",
            "--y",
            "N",
            "--from",
            "EPSG:5186",
            "--to",
            "EPSG:5179",
            "-o",
            s(&out),
        ],
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let book = Book::open(&out);
    assert_eq!(
        book.names,
        ["clash", "clash (2)", "clash (3)", "Summary", "Errors"]
    );
    let header: Vec<String> = book.sheet("clash")[0].iter().map(text).collect();
    assert_eq!(
        header,
        [
            "lon",
            "status",
            "E",
            "N",
            "x_5179",
            "y_5179",
            "status_geobatch",
            "error"
        ]
    );
    let t = Transform::new(
        Crs::from_code("EPSG:5186").unwrap(),
        Crs::from_code("EPSG:5179").unwrap(),
    );
    let mut seen = Vec::new();
    for (name, len) in [("clash", 4), ("clash (2)", 4), ("clash (3)", 2)] {
        let sheet = book.sheet(name);
        assert_eq!(sheet.len(), len + 1, "{name}");
        for row in &sheet[1..] {
            seen.push(text(&row[0]));
            let (x, y) = t
                .convert(
                    text(&row[2]).parse().unwrap(),
                    text(&row[3]).parse().unwrap(),
                )
                .unwrap();
            assert!((num(&row[4]) - x).abs() < 1e-6 && (num(&row[5]) - y).abs() < 1e-6);
        }
    }
    assert_eq!(
        seen,
        (0..10).map(|i| i.to_string()).collect::<Vec<_>>(),
        "input order"
    );
}

#[test]
fn sheet_by_column_splits_the_multi_sheet_sample() {
    let dir = tempdir();
    let sample = samples().join("multi_sheet.csv");
    let out = dir.path().join("regions.xlsx");
    let r = convert(
        &dir,
        &[
            s(&sample),
            "--from",
            "EPSG:5186",
            "--sheet-by",
            "시도",
            "-o",
            s(&out),
        ],
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let csv = read_csv(&fs::read(&sample).unwrap(), encoding_rs::UTF_8, b',');
    let (header, rows) = csv.split_first().unwrap();
    let col = header.iter().position(|h| h == "시도").unwrap();
    let mut values: Vec<String> = Vec::new();
    for r in rows {
        if !values.contains(&r[col]) {
            values.push(r[col].clone());
        }
    }
    assert!(values.len() >= 3);
    let book = Book::open(&out);
    assert_eq!(book.names.len(), values.len() + 2);
    for v in &values {
        let expected: Vec<&Vec<String>> = rows.iter().filter(|r| &r[col] == v).collect();
        let sheet = book.sheet(v);
        assert_eq!(sheet.len(), expected.len() + 1, "{v}");
        for (want, got) in expected.iter().zip(&sheet[1..]) {
            assert_eq!(text(&got[0]), want[0], "{v}: input order within the sheet");
        }
    }
}

/// `geobatch broker` hosts the embedded broker for other processes; convert uses it.
#[test]
fn broker_command_serves_other_processes() {
    use std::io::BufRead;
    let dir = tempdir();
    let mut broker = geobatch(&dir)
        .arg("broker")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(broker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let bootstrap = line.trim().to_string();
    assert!(
        bootstrap.contains(':'),
        "bootstrap address printed: {line:?}"
    );
    let out = dir.path().join("o.xlsx");
    let r = convert_env(
        &dir,
        &[("GEOBATCH_KAFKA_BROKERS", &bootstrap)],
        &[s(&samples().join("stores_wgs84.csv")), "-o", s(&out)],
    );
    let _ = broker.kill();
    let _ = broker.wait();
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(Book::open(&out).sheet("stores_wgs84").len() > 1);
}
