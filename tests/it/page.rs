//! The page in a real browser: Debian's Chromium, driven by playwright-core from
//! `tests/browser/` (node), against a real `geobatch serve`; and the preview it shows, over
//! plain HTTP. Screenshots go to `target/browser/` (and, with GEOBATCH_DOCS_SCREENSHOTS=docs,
//! to the README's `docs/`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::harness::*;

/// The API token of the second serve (the page asks for it once).
const TOKEN: &str = "page-test-token-5b1e";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> String {
    std::env::var("GEOBATCH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// `npm ci` once, when `node_modules` is missing (the versions are locked in package-lock.json).
fn npm_ci(dir: &Path) {
    if dir.join("node_modules/playwright-core").exists()
        && dir.join("node_modules/axe-core").exists()
    {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .current_dir(dir)
        .output()
        .expect("npm (scripts/test installs nodejs and npm)");
    assert!(
        out.status.success(),
        "npm ci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn page_in_chromium() {
    let dir = browser_dir();
    assert!(
        Path::new(&chromium()).exists(),
        "no Chromium at {} (scripts/test installs Debian's chromium)",
        chromium()
    );
    npm_ci(&dir);
    // The Leaflet compiled in is the one package.json pins.
    for file in ["leaflet.js", "leaflet.css"] {
        let vendored = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/http/assets")
                .join(file),
        );
        let pinned = std::fs::read(dir.join("node_modules/leaflet/dist").join(file));
        assert_eq!(
            vendored.unwrap(),
            pinned.unwrap(),
            "src/http/assets/{file}: copy it from node_modules/leaflet/dist"
        );
    }
    let data = tempdir();
    let serve = Serve::start(&data, &[]);
    let guarded_data = tempdir();
    let guarded = Serve::start(&guarded_data, &[("GEOBATCH_API_TOKEN", TOKEN)]);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    let started = Instant::now();
    let mut node = Command::new("node");
    if let Ok(docs) = std::env::var("GEOBATCH_DOCS_SCREENSHOTS") {
        node.env(
            "GEOBATCH_DOCS_SCREENSHOTS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join(docs),
        );
    }
    let out = node
        .arg("page.test.mjs")
        .current_dir(&dir)
        .env("GEOBATCH_URL", &serve.base)
        .env("GEOBATCH_TOKEN_URL", &guarded.base)
        .env("GEOBATCH_TOKEN", TOKEN)
        .env("GEOBATCH_SAMPLES", samples())
        .env("GEOBATCH_SCREENSHOTS", &shots)
        .env("GEOBATCH_CHROMIUM", chromium())
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{stdout}{}\nbrowser checks took {:?}",
        String::from_utf8_lossy(&out.stderr),
        started.elapsed()
    );
    assert!(out.status.success(), "browser checks failed:\n{stdout}");
    assert!(
        stdout.contains("checks passed; 0 page errors"),
        "no summary:\n{stdout}"
    );
    for shot in ["upload-preview", "job-map", "phone-390-ko"] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
}

#[tokio::test]
async fn preview_detects_and_converts_the_first_rows() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[]);
    let file = std::fs::read(samples().join("localdata_5174.csv")).unwrap();
    let files = [("localdata_5174.csv", file)];

    // No CRS given: the values are projected, so the likely Korean CRSs are offered.
    let (status, body) = upload_to(&serve, "/jobs/preview", &files, &[]).await;
    assert_eq!(status, 200, "{body}");
    let f = &body["files"][0];
    assert_eq!(f["format"], "csv");
    assert_eq!(f["encoding"], "EUC-KR");
    assert_eq!(f["delimiter"], ",");
    assert_eq!(f["tables"][0]["x"], "좌표정보(x)");
    assert_eq!(f["tables"][0]["y"], "좌표정보(y)");
    assert!(f["tables"][0]["headers"].as_array().unwrap().len() > 10);
    let rows = f["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10, "the first rows only");
    assert!(rows.iter().all(|r| r["lon"].is_null()), "{body}");
    assert!(body["crs"]["used"].is_null());
    let likely: Vec<&str> = body["crs"]["likely"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert!(likely.contains(&"EPSG:5174"), "{likely:?}");

    // With the CRS: the rows as longitude/latitude, in Seoul.
    let (status, body) = upload_to(&serve, "/jobs/preview", &files, &[("from", "EPSG:5174")]).await;
    assert_eq!(status, 200, "{body}");
    let row = &body["files"][0]["rows"][0];
    let (lon, lat) = (row["lon"].as_f64().unwrap(), row["lat"].as_f64().unwrap());
    assert!(
        (126.7..127.3).contains(&lon) && (37.4..37.7).contains(&lat),
        "{row}"
    );
    assert_eq!(body["crs"]["used"], "EPSG:5174");
    assert!(
        body["crs"]["likely"].as_array().unwrap().len() > 1,
        "the others stay offered: {body}"
    );

    // Another column given: the preview reads it as the job would.
    let (status, body) = upload_to(&serve, "/jobs/preview", &files, &[("x", "번호")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["files"][0]["tables"][0]["x"], "번호");
    // Geocoding: the address columns and each row's address, no x/y and no coordinate errors.
    let addresses = b"name,addr\nA,\"  Seoul  Jongno-gu Sejong-daero 175 \"\nB,\n".to_vec();
    let (status, body) = upload_to(
        &serve,
        "/jobs/preview",
        &[("stores.csv", addresses)],
        &[("geocode", "addr")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let f = &body["files"][0];
    assert_eq!(
        f["tables"][0]["address"],
        serde_json::json!(["addr"]),
        "{body}"
    );
    assert_eq!(f["tables"][0]["x"], "", "{body}");
    assert_eq!(
        f["rows"][0]["address"], "Seoul  Jongno-gu Sejong-daero 175",
        "{body}"
    );
    assert!(f["rows"][0]["error"].is_null(), "{body}");
    assert!(
        f["rows"][1]["error"].as_str().unwrap().contains("addr"),
        "{body}"
    );
    assert!(
        body["crs"]["likely"].as_array().unwrap().is_empty(),
        "{body}"
    );

    // An option that cannot be used names its field, as the upload does.
    let (status, body) = upload_to(&serve, "/jobs/preview", &files, &[("from", "5174x")]).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "from");

    // Nothing was kept: no job, no upload left behind.
    let jobs: serde_json::Value = serde_json::from_str(&get_text(&serve, "/jobs").await).unwrap();
    assert_eq!(jobs, serde_json::json!([]));
    let uploads = dir.path().join("uploads");
    let left = std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "uploads left in {}", uploads.display());
}

#[tokio::test]
async fn preview_of_a_workbook_lists_its_sheets() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[]);
    let book = crate::workbook_input::three_sheet_xlsx();
    let (status, body) = upload_to(&serve, "/jobs/preview", &[("shops.xlsx", book)], &[]).await;
    assert_eq!(status, 200, "{body}");
    let f = &body["files"][0];
    assert_eq!(f["format"], "xlsx");
    assert!(f["encoding"].is_null() && f["delimiter"].is_null(), "{f}");
    let names: Vec<&str> = f["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["서울", "부산", "대구"],
        "hidden and empty sheets are skipped"
    );
    assert_eq!(f["tables"][2]["x"], "좌표 X", "two header rows read as one");
    assert_eq!(body["crs"]["used"], "EPSG:4326", "{body}");
    let rows = f["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "every row of the three sheets");
    let bad: Vec<&serde_json::Value> = rows.iter().filter(|r| r["lon"].is_null()).collect();
    assert_eq!(bad.len(), 1, "the row with \"-\": {rows:?}");
    assert!(
        bad[0]["error"].as_str().unwrap().contains('-'),
        "{}",
        bad[0]
    );
    assert_eq!(rows[0]["lon"], 126.97689123456789);
}
