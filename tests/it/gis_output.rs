//! GeoPackage, GeoJSON and CSV results, read back by an independent reader (GDAL's `ogrinfo`
//! and `ogr2ogr` from Debian's gdal-bin; the zip and CSV crates for the CSV files) and compared
//! with the input cell by cell.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;

use geobatch::convert::crs::{Crs, Transform};
use serde_json::Value;

use crate::harness::*;

const HEADERS: [&str; 5] = ["코드", "name", "시도", "x", "y"];
const SHEETS: [&str; 3] = ["서울", "부산", "대구"];

/// Input rows in EPSG:5174 over three 시도 (sheets): zero-padded codes kept as text, Korean
/// and quoted text, an empty cell, and two rows without a usable position.
fn input_rows() -> Vec<[String; 5]> {
    (0..30)
        .map(|i| {
            let x = match i {
                7 => "abc".to_string(),
                19 => String::new(),
                _ => format!("{:.3}", 190_000.0 + i as f64 * 1234.567),
            };
            [
                format!("{i:05}"),
                match i % 4 {
                    0 => format!("가게 {i}"),
                    1 => format!("quote \" and, comma {i}"),
                    2 => String::new(),
                    _ => format!("=SUM(A{i})"),
                },
                SHEETS[i % 3].to_string(),
                x,
                format!("{:.3}", 440_000.0 + i as f64 * 987.654),
            ]
        })
        .collect()
}

fn write_input(dir: &TestDir) -> std::path::PathBuf {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(HEADERS).unwrap();
    for r in input_rows() {
        w.write_record(&r).unwrap();
    }
    let path = dir.path().join("점포.csv");
    fs::write(&path, w.into_inner().unwrap()).unwrap();
    path
}

fn transform(to: u32) -> Transform {
    Transform::new(
        Crs::from_code("5174").unwrap(),
        Crs::from_code(&to.to_string()).unwrap(),
    )
}

/// The rows of one sheet, in input order.
fn sheet_rows(sheet: &str) -> Vec<[String; 5]> {
    input_rows().into_iter().filter(|r| r[2] == sheet).collect()
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

/// One feature against its input row: every input column as text, the position (in `crs`)
/// as geometry and as the added columns (`x_col`/`y_col`, when given), status and error.
fn check_feature(f: &Value, row: &[String; 5], crs: u32, cols: Option<(&str, &str)>) {
    let p = &f["properties"];
    for (h, cell) in HEADERS.iter().zip(row) {
        // GDAL reads an empty text as "" from GeoPackage and GeoJSON alike.
        assert_eq!(p[h].as_str(), Some(cell.as_str()), "{h} of {row:?}: {f}");
    }
    let expected = row[3]
        .parse::<f64>()
        .ok()
        .map(|x| transform(crs).convert(x, row[4].parse().unwrap()).unwrap());
    match expected {
        Some((x, y)) => {
            assert_eq!(p["status"], "ok", "{f}");
            let c = &f["geometry"]["coordinates"];
            let tol = if crs == 4326 { 1e-9 } else { 1e-6 };
            assert!(
                close(c[0].as_f64().unwrap(), x, tol) && close(c[1].as_f64().unwrap(), y, tol),
                "{row:?}: {c} vs {x}, {y}"
            );
            if let Some((xc, yc)) = cols {
                assert!(close(p[xc].as_f64().unwrap(), x, 1e-6), "{f}");
                assert!(close(p[yc].as_f64().unwrap(), y, 1e-6), "{f}");
            }
        }
        None => {
            assert!(f["geometry"].is_null(), "{f}");
            assert_eq!(p["status"], "error", "{f}");
            assert!(!p["error"].as_str().unwrap_or("").is_empty(), "{f}");
        }
    }
}

/// `convert --format gpkg,geojson,csv`: a GeoPackage GDAL opens as 1.3 without a warning, one
/// layer per sheet with its R-tree and the target CRS, every row once, in order, cell by cell;
/// GeoJSON in WGS 84 whatever the target; the CSV files zipped, each with a BOM.
#[test]
fn gis_outputs_read_back_by_gdal_cell_by_cell() {
    let dir = tempdir();
    let input = write_input(&dir);
    let out = dir.path().join("out.gpkg");
    let r = convert(
        &dir,
        &[
            input.to_str().unwrap(),
            "--from",
            "EPSG:5174",
            "--to",
            "EPSG:5186",
            "--sheet-by",
            "시도",
            "--format",
            "gpkg,geojson,csv",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(
        !dir.path().join("out.xlsx").exists(),
        "xlsx was not asked for"
    );

    // GeoPackage.
    let gpkg = out.to_str().unwrap();
    let (info, debug) = gdal(
        "ogrinfo",
        &["-ro", "-so", "--config", "CPL_DEBUG", "ON", gpkg],
    );
    assert!(debug.contains("GeoPackage v1.3.0"), "{debug}");
    assert!(
        !debug.contains("Warning") && !debug.contains("ERROR"),
        "{debug}"
    );
    for sheet in SHEETS {
        assert!(info.contains(&format!(": {sheet} (Point)")), "{info}");
        let (layer, _) = gdal("ogrinfo", &["-ro", "-so", gpkg, sheet]);
        assert!(layer.contains("ID[\"EPSG\",5186]"), "{layer}");
        let sql = format!("SELECT HasSpatialIndex('{sheet}', 'geom')");
        let (idx, _) = gdal("ogrinfo", &["-ro", "-sql", &sql, gpkg]);
        assert!(idx.contains("HasSpatialIndex (Integer) = 1"), "{idx}");
        let features = gdal_features(&out, Some(sheet));
        let rows = sheet_rows(sheet);
        assert_eq!(features.len(), rows.len(), "{sheet}");
        for (f, row) in features.iter().zip(&rows) {
            check_feature(f, row, 5186, Some(("x_5186", "y_5186")));
        }
    }
    assert!(info.matches("(Point)").count() == 3, "{info}");
    // A spatial filter (through the R-tree) finds the layer's points, none of its error rows.
    let spat = |box_: [&str; 4]| {
        let mut args = vec!["-ro", "-so", "-spat"];
        args.extend(box_);
        args.extend([gpkg, SHEETS[1]]);
        gdal("ogrinfo", &args).0
    };
    let hits = spat(["0", "0", "1e7", "1e7"]);
    assert!(hits.contains("Feature Count: 8"), "{hits}");
    let hits = spat(["0", "0", "1", "1"]);
    assert!(hits.contains("Feature Count: 0"), "{hits}");

    // GeoJSON: every row, in input order, WGS 84.
    let features = gdal_features(&dir.path().join("out.geojson"), None);
    let rows = input_rows();
    assert_eq!(features.len(), rows.len());
    for (f, row) in features.iter().zip(&rows) {
        assert_eq!(f["properties"]["sheet"], row[2].as_str());
        check_feature(f, row, 4326, None);
    }

    // CSV: a zip of one file per sheet, UTF-8 with a BOM.
    let mut zip =
        zip::ZipArchive::new(fs::File::open(dir.path().join("out.zip")).unwrap()).expect("a zip");
    assert_eq!(zip.len(), 3);
    for sheet in SHEETS {
        let mut bytes = Vec::new();
        zip.by_name(&format!("{sheet}.csv"))
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "{sheet}: no BOM");
        let records = read_csv(&bytes[3..], encoding_rs::UTF_8, b',');
        assert_eq!(
            records[0],
            ["코드", "name", "시도", "x", "y", "x_5186", "y_5186", "status", "error"]
        );
        let rows = sheet_rows(sheet);
        assert_eq!(records.len() - 1, rows.len());
        for (rec, row) in records[1..].iter().zip(&rows) {
            assert_eq!(rec[..5], row[..], "{sheet}");
            let x: Option<f64> = row[3].parse().ok();
            assert_eq!(rec[7], if x.is_some() { "ok" } else { "error" });
            if let Some(x) = x {
                let (ex, ey) = transform(5186).convert(x, row[4].parse().unwrap()).unwrap();
                // Full precision: the text reads back as the very number.
                assert_eq!(rec[5].parse::<f64>().unwrap(), ex);
                assert_eq!(rec[6].parse::<f64>().unwrap(), ey);
            }
        }
    }
}

/// `-o` picks the format by its extension; one sheet's CSV is a plain CSV file.
#[test]
fn output_extension_picks_the_format() {
    let dir = tempdir();
    let input = dir.path().join("one.csv");
    fs::write(&input, "id,lon,lat\n03171,127.0,37.5\n00002,129.1,35.2\n").unwrap();
    for name in ["one.csv", "one.geojson"] {
        let out = dir.path().join("out").join(name);
        let r = convert(
            &dir,
            &[input.to_str().unwrap(), "-o", out.to_str().unwrap()],
        );
        assert_eq!(r.code, 0, "stderr: {}", r.stderr);
        assert!(!out.with_extension("xlsx").exists());
        let bytes = fs::read(&out).unwrap();
        if name.ends_with(".csv") {
            assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
            let records = read_csv(&bytes[3..], encoding_rs::UTF_8, b',');
            assert_eq!(records[1][..3], ["03171", "127.0", "37.5"]);
            assert_eq!(records[1][3..6], ["127", "37.5", "ok"]);
        } else {
            let f = gdal_features(&out, None);
            assert_eq!(f[1]["properties"]["id"], "00002");
            assert_eq!(
                f[1]["geometry"]["coordinates"],
                serde_json::json!([129.1, 35.2])
            );
        }
    }
}

/// `GET /jobs/{id}/result.<format>`: each format the job asked for with its content type and
/// a download name from the input's; 404 (JSON) for one it did not; several sheets' CSV is a
/// zip.
#[tokio::test(flavor = "multi_thread")]
async fn http_serves_each_requested_format() {
    let dir = tempdir();
    let input = fs::read(write_input(&dir)).unwrap();
    let serve = Serve::start(&dir, &[]);
    let (status, body) = upload(
        &serve,
        &[("점포.csv", input)],
        &[
            ("from", "EPSG:5174"),
            ("to", "EPSG:5186"),
            ("sheet_by", "시도"),
            ("format", "gpkg,csv"),
        ],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let job = wait_done(&serve, &id).await;
    assert_eq!(job["result_url"], format!("/jobs/{id}/result.gpkg"));

    let get = |ext: &'static str| {
        let url = serve.url(&format!("/jobs/{id}/result.{ext}"));
        async move { client().get(url).send().await.unwrap() }
    };
    let mut headers = BTreeMap::new();
    for (ext, content_type, file) in [
        ("gpkg", "application/geopackage+sqlite3", "gpkg"),
        ("csv", "application/zip", "zip"),
    ] {
        let res = get(ext).await;
        assert_eq!(res.status(), 200, "{ext}");
        let h = |name: &str| res.headers()[name].to_str().unwrap().to_string();
        assert_eq!(h("content-type"), content_type);
        let disposition = h("content-disposition");
        assert!(
            disposition.contains(&format!("filename*=UTF-8''%EC%A0%90%ED%8F%AC.{file}")),
            "{disposition}"
        );
        let bytes = res.bytes().await.unwrap();
        let path = dir.path().join(format!("download.{file}"));
        fs::write(&path, &bytes).unwrap();
        headers.insert(ext, path);
    }
    let gpkg = headers["gpkg"].clone();
    for sheet in SHEETS {
        assert_eq!(
            gdal_features(&gpkg, Some(sheet)).len(),
            sheet_rows(sheet).len()
        );
    }
    let zip = zip::ZipArchive::new(fs::File::open(&headers["csv"]).unwrap()).unwrap();
    assert_eq!(zip.len(), 3);
    for ext in ["geojson", "xlsx"] {
        let res = get(ext).await;
        assert_eq!(res.status(), 404, "{ext}");
        let body: Value = res.json().await.unwrap();
        let e = body["error"].as_str().unwrap();
        assert!(e.contains("gpkg, csv") && e.contains(ext), "{e}");
    }

    // Deleting the job deletes every file it wrote.
    let results = dir.path().join("results");
    let files = || fs::read_dir(&results).unwrap().count();
    assert_eq!(files(), 2, "the GeoPackage and the zip");
    assert_eq!(delete_job(&serve, &id).await, 204);
    assert_eq!(files(), 0);
}
