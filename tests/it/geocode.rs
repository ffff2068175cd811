//! Geocoding (addresses → coordinates) end to end: `geobatch convert --geocode` against the
//! fake geocoder speaking Kakao, VWorld and Nominatim, the workbook checked cell by cell.

use calamine::Data;

use crate::fake_geocoder::{
    grid_address, grid_point, Behavior, FakeProvider, Script, KAKAO_PATH, KEY, VWORLD_PATH,
};
use std::time::Duration;

use crate::harness::{
    convert_env, download_book, tempdir, text, upload, wait_done, wait_path, Book, Output, Serve,
    TestDir,
};

/// Road, parcel, messy, ambiguous, region-only, foreign, empty and repeated addresses.
const STORES: &str = "\
name,주소,전화
시청,서울특별시 중구 세종대로 110,02-120
문화회관,\"서울 종로구 세종대로 175, 3층\",02-399
행복상사,(주)행복상사 세종로 1-68,
광주,광주 중앙로 1,
양평,경기 양평군 서종면 수입리 산 12,
강서,서울특별시 강서구,
외국,\"1600 Amphitheatre Parkway, Mountain View, CA\",
빈칸,,
시청2,  서울특별시   중구 세종대로 110 [본관],
";

fn stores_csv(dir: &TestDir) -> std::path::PathBuf {
    let path = dir.path().join("stores.csv");
    std::fs::write(&path, STORES).unwrap();
    path
}

async fn geocode(
    dir: &TestDir,
    fake: &FakeProvider,
    out: &std::path::Path,
    args: &[&str],
) -> Output {
    let input = stores_csv(dir);
    let env = [
        ("GEOBATCH_KAKAO_BASE_URL", fake.base_url.as_str()),
        ("GEOBATCH_VWORLD_BASE_URL", fake.base_url.as_str()),
        ("GEOBATCH_NOMINATIM_BASE_URL", fake.base_url.as_str()),
        ("KAKAO_REST_API_KEY", KEY),
        ("VWORLD_API_KEY", KEY),
    ];
    let mut all = vec![input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    all.extend_from_slice(args);
    tokio::task::block_in_place(|| convert_env(dir, &env, &all))
}

/// The `stores` sheet's rows as text, and its header.
fn rows(book: &Book) -> (Vec<String>, Vec<Vec<String>>) {
    rows_of(book, "stores")
}

/// A sheet's rows as text, and its header.
fn rows_of(book: &Book, name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let sheet = book.sheet(name);
    let header: Vec<String> = sheet[0].iter().map(text).collect();
    let body = sheet[1..]
        .iter()
        .map(|r| {
            (0..header.len())
                .map(|i| r.get(i).map(text).unwrap_or_default())
                .collect()
        })
        .collect();
    (header, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_geocoding_job_falls_back_caches_and_never_stores_vworld_answers() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::ok()).await;
    let out = dir.path().join("out.xlsx");
    let run = geocode(
        &dir,
        &fake,
        &out,
        &[
            "--providers",
            "kakao,vworld",
            "--rate",
            "200",
            "--format",
            "xlsx,geojson",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains(KEY), "the key is in the log");

    let book = Book::open(&out);
    let (header, body) = rows(&book);
    assert_eq!(
        header,
        [
            "name",
            "주소",
            "전화",
            "lon",
            "lat",
            "matched_address",
            "match_type",
            "provider",
            "candidates",
            "status",
            "error"
        ]
    );
    assert_eq!(body.len(), 9, "every row once");
    // name → (lon, lat, matched_address, match_type, provider, candidates, status)
    #[rustfmt::skip]
    let want: [[&str; 8]; 9] = [
        ["시청", "126.9779692", "37.5662952", "서울특별시 중구 세종대로 110", "road", "kakao", "1", "ok"],
        ["문화회관", "126.9769", "37.5725", "서울 종로구 세종대로 175", "road", "kakao", "1", "ok"],
        ["행복상사", "126.9765", "37.5729", "서울 종로구 세종로 1-68", "parcel", "kakao", "1", "ok"],
        ["광주", "127.2553", "37.4095", "경기 광주시 중앙로 1", "road", "kakao", "2", "ambiguous"],
        ["양평", "127.3651", "37.6098", "경기도 양평군 서종면 수입리 산12", "parcel", "vworld", "1", "ok"],
        ["강서", "", "", "서울특별시 강서구", "region", "kakao", "1", "no_result"],
        ["외국", "", "", "", "", "", "", "no_result"],
        ["빈칸", "", "", "", "", "", "", "error"],
        ["시청2", "126.9779692", "37.5662952", "서울특별시 중구 세종대로 110", "road", "kakao", "1", "ok"],
    ];
    for (row, w) in body.iter().zip(want) {
        let got: Vec<&str> = row[3..10].iter().map(String::as_str).collect();
        assert_eq!(got, w[1..], "row {}", w[0]);
        assert_eq!(row[0], w[0]);
    }
    // The input's cells as they came, and the empty address named in its error.
    assert_eq!(body[1][1], "서울 종로구 세종대로 175, 3층");
    assert_eq!(body[0][2], "02-120");
    assert_eq!(body[7][10], "no address");
    assert!(body.iter().take(7).all(|r| r[10].is_empty()), "{body:?}");
    let errors = book.sheet("Errors");
    assert_eq!(errors.len(), 2, "one error row: {errors:?}");
    assert!(
        errors[1]
            .iter()
            .any(|c| matches!(c, Data::String(s) if s == "주소")),
        "the error names the address column: {:?}",
        errors[1]
    );
    assert_eq!(book.summary_value("geocoding providers"), "kakao → vworld");
    assert_eq!(book.summary_value("rows ambiguous"), "1");
    assert_eq!(book.summary_value("rows no_result"), "2");
    // What the cleaner did, counted per row.
    for (step, rows) in [
        ("floor or unit removed", "1"),
        ("company name in front removed", "1"),
        ("bracketed note removed", "1"),
        ("spaces collapsed", "1"),
        ("full-width characters made half-width", "0"),
    ] {
        assert_eq!(
            book.summary_value(&format!("cleaning: {step}")),
            rows,
            "{step}"
        );
    }
    // The GIS output has the same rows: positions where there are, none elsewhere.
    let geojson: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.geojson")).unwrap())
            .unwrap();
    let features = geojson["features"].as_array().unwrap();
    assert_eq!(features.len(), 9);
    assert_eq!(features[4]["properties"]["provider"], "vworld");
    assert_eq!(features[4]["properties"]["match_type"], "parcel");
    let at = &features[4]["geometry"]["coordinates"];
    assert_eq!(
        (at[0].as_f64(), at[1].as_f64()),
        (Some(127.3651), Some(37.6098))
    );
    for i in [5, 6, 7] {
        assert!(features[i]["geometry"].is_null(), "{}", features[i]);
    }

    // Pre-flight asked each provider about 서울특별시 중구 세종대로 110 (its key). Then Kakao was
    // asked each distinct cleaned address once (7); VWorld only what Kakao did not place:
    // 양평 (parcel first: found), 강서 (road, parcel: region only), 외국 (road, parcel).
    let requests = fake.requests();
    let kakao: Vec<&str> = requests
        .iter()
        .filter(|r| r.path == KAKAO_PATH)
        .map(|r| r.param("query").unwrap())
        .collect();
    assert_eq!(kakao.len(), 1 + 7, "{kakao:?}");
    assert_eq!(kakao[0], "서울특별시 중구 세종대로 110", "pre-flight first");
    assert!(kakao.contains(&"세종로 1-68") && kakao.contains(&"서울 종로구 세종대로 175"));
    let vworld: Vec<(usize, &str, &str)> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.path == VWORLD_PATH)
        .map(|(i, r)| (i, r.param("address").unwrap(), r.param("type").unwrap()))
        .collect();
    let mut asked: Vec<(&str, &str)> = vworld.iter().map(|(_, a, t)| (*a, *t)).collect();
    asked.sort();
    assert_eq!(
        asked,
        [
            ("1600 Amphitheatre Parkway, Mountain View, CA", "PARCEL"),
            ("1600 Amphitheatre Parkway, Mountain View, CA", "ROAD"),
            ("경기 양평군 서종면 수입리 산 12", "PARCEL"),
            ("서울특별시 강서구", "PARCEL"),
            ("서울특별시 강서구", "ROAD"),
            ("서울특별시 중구 세종대로 110", "ROAD"),
        ]
    );
    // Fallback order: Kakao first, for each address VWorld was asked.
    for (i, address, _) in &vworld {
        let first_kakao = requests
            .iter()
            .position(|r| r.path == KAKAO_PATH && r.param("query") == Some(address))
            .unwrap();
        assert!(first_kakao < *i, "{address}: VWorld before Kakao");
    }

    // Kakao's answers are cached, VWorld's never (its terms).
    let store = geobatch::store::ResultStore::open(dir.path(), dir.database_url())
        .await
        .unwrap();
    assert_eq!(store.cached_answer_count("kakao").await.unwrap(), 7);
    assert_eq!(store.cached_answer_count("vworld").await.unwrap(), 0);
    drop(store);

    // The same file again: Kakao from the cache, VWorld asked again; the same workbook.
    fake.clear_requests();
    let out2 = dir.path().join("out2.xlsx");
    let run = geocode(
        &dir,
        &fake,
        &out2,
        &["--providers", "kakao,vworld", "--rate", "200"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        fake.count(KAKAO_PATH),
        1,
        "pre-flight only: {:?}",
        fake.requests()
    );
    assert_eq!(fake.count(VWORLD_PATH), 1 + 5);
    assert_eq!(rows(&Book::open(&out2)).1, body);
    let store = geobatch::store::ResultStore::open(dir.path(), dir.database_url())
        .await
        .unwrap();
    assert_eq!(store.cached_answer_count("vworld").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_errors_and_resets_are_retried_and_a_disabled_kakao_map_is_refused() {
    let dir = tempdir();
    // A 429 with Retry-After, a 500 and a reset connection on the way: every row still ends
    // as without them.
    let fake = FakeProvider::start(Script::steps([
        Behavior::TooMany {
            retry_after: Some("1".into()),
        },
        Behavior::Status(500),
        Behavior::Reset,
    ]))
    .await;
    let out = dir.path().join("out.xlsx");
    let run = geocode(&dir, &fake, &out, &["--geocode", "주소", "--rate", "200"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (_, body) = rows(&Book::open(&out));
    let status: Vec<&str> = body.iter().map(|r| r[9].as_str()).collect();
    assert_eq!(status, KAKAO_ONLY);
    // Pre-flight (whose three failed attempts, a reset connection the last, were retried),
    // then 7 distinct addresses.
    assert_eq!(fake.count(KAKAO_PATH), 4 + 7, "{:?}", fake.requests());

    // Kakao's 403 for an app without the Kakao Map service: pre-flight refuses the job at
    // acceptance (exit 2; HTTP 422), saying what to switch on; nothing else is asked.
    let dir = tempdir();
    let fake = FakeProvider::start(Script::always(Behavior::Status(403))).await;
    let out = dir.path().join("out.xlsx");
    let run = geocode(&dir, &fake, &out, &["--geocode", "--rate", "200"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("KAKAO_REST_API_KEY was refused by Kakao (HTTP 403"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("카카오맵"), "{}", run.stderr);
    assert!(run.stderr.contains("not accepted"), "{}", run.stderr);
    assert!(!run.stderr.contains(KEY));
    assert_eq!(fake.count(KAKAO_PATH), 1, "pre-flight only");
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn geocoding_options_are_checked_before_the_job_starts() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::ok()).await;
    let out = dir.path().join("out.xlsx");
    // No address column: the headers are listed.
    let input = dir.path().join("plain.csv");
    std::fs::write(&input, "상호,전화\n가게,02-1\n").unwrap();
    let env = [("KAKAO_REST_API_KEY", KEY)];
    let args = [
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--geocode",
    ];
    let run = tokio::task::block_in_place(|| convert_env(&dir, &env, &args));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no address column found"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("\"상호\", \"전화\""), "{}", run.stderr);
    // A provider that does not geocode, and coordinates options with addresses.
    for (extra, says) in [
        (&["--providers", "template"][..], "does not geocode"),
        (
            &["--geocode", "주소", "--from", "EPSG:5174"][..],
            "option from",
        ),
        (&["--providers", "vworld"][..], "VWORLD_API_KEY"),
    ] {
        let run = tokio::task::block_in_place(|| {
            let input = stores_csv(&dir);
            let mut all = vec![input.to_str().unwrap(), "-o", out.to_str().unwrap()];
            all.extend_from_slice(extra);
            convert_env(&dir, &[("GEOBATCH_KAKAO_BASE_URL", &fake.base_url)], &all)
        });
        assert_eq!(run.code, 2, "{extra:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{extra:?}: {}", run.stderr);
    }
    assert!(fake.requests().is_empty());
}

/// The statuses of `stores.csv`'s rows with the default chain (Kakao only).
const KAKAO_ONLY: [&str; 9] = [
    "ok",
    "ok",
    "ok",
    "ambiguous",
    "no_result",
    "no_result",
    "no_result",
    "error",
    "ok",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_upload_form_and_the_watched_folder_take_geocoding_options() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::ok()).await;
    let watch = dir.path().join("watch");
    let env = [
        ("GEOBATCH_KAKAO_BASE_URL", fake.base_url.as_str()),
        ("KAKAO_REST_API_KEY", KEY),
        ("GEOBATCH_WATCH_DIR", watch.to_str().unwrap()),
        (
            "GEOBATCH_WATCH_OPTIONS",
            "geocode=주소&providers=kakao&rate=200",
        ),
        ("GEOBATCH_WATCH_QUIET_MS", "200"),
    ];
    let serve = Serve::start(&dir, &env);
    let csv = || vec![("stores.csv", STORES.as_bytes().to_vec())];
    let fields = [("geocode", "auto"), ("providers", "kakao"), ("rate", "200")];
    let (status, body) = upload(&serve, &csv(), &fields).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let job = wait_done(&serve, &id).await;
    // 7 distinct addresses asked (pre-flight is not the job's), the repeated one from the batch.
    assert_eq!(job["lookups"]["requests"], 7, "{job}");
    assert_eq!(job["lookups"]["cache_hits"], 1, "{job}");
    assert_eq!(job["lookups"]["requests_left_estimate"], 0, "{job}");
    let (_, got) = rows(&download_book(&serve, &id, &dir).await);
    let statuses: Vec<&str> = got.iter().map(|r| r[9].as_str()).collect();
    assert_eq!(statuses, KAKAO_ONLY);

    // The watched folder's files are geocoded with GEOBATCH_WATCH_OPTIONS.
    let part = watch.join("inbox").join("stores.csv.part");
    std::fs::write(&part, STORES).unwrap();
    std::fs::rename(&part, watch.join("inbox").join("stores.csv")).unwrap();
    let out = watch.join("outbox").join("stores.xlsx");
    wait_path(&out, Duration::from_secs(60));
    wait_path(
        &watch.join("done").join("stores.csv"),
        Duration::from_secs(60),
    );
    let (_, from_folder) = rows(&Book::open(&out));
    assert_eq!(from_folder, got);

    // A key whose app lacks the Kakao Map service: 422 on the providers field, no job.
    fake.set_script(Script::always(Behavior::Status(403)));
    let (status, body) = upload(&serve, &csv(), &fields).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "providers", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("카카오맵"),
        "{body}"
    );
}

/// A row whose address every provider refused is an error row; retrying the job asks again
/// for those rows only.
#[tokio::test(flavor = "multi_thread")]
async fn retry_geocodes_the_error_rows_again() {
    let dir = tempdir();
    // Pre-flight is answered; the first address asked is refused (HTTP 400).
    let fake = FakeProvider::start(Script::steps([Behavior::Answer, Behavior::Status(400)])).await;
    let env = [
        ("GEOBATCH_KAKAO_BASE_URL", fake.base_url.as_str()),
        ("KAKAO_REST_API_KEY", KEY),
    ];
    let serve = Serve::start(&dir, &env);
    let csv = vec![("stores.csv", STORES.as_bytes().to_vec())];
    let (status, body) = upload(&serve, &csv, &[("geocode", "주소"), ("rate", "200")]).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let job = wait_done(&serve, &id).await;
    let (_, first) = rows(&download_book(&serve, &id, &dir).await);
    let refused: Vec<&Vec<String>> = first
        .iter()
        .filter(|r| r[9] == "error" && r[10].contains("HTTP 400"))
        .collect();
    assert!(!refused.is_empty(), "{first:?}");
    assert!(
        refused.iter().all(|r| r[10].starts_with("kakao: ")),
        "{refused:?}"
    );
    assert_eq!(job["rows_failed"].as_u64(), Some(refused.len() as u64 + 1));
    assert_eq!(fake.count(KAKAO_PATH), 1 + 7);

    let res = crate::harness::client()
        .post(serve.url(&format!("/jobs/{id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    wait_done(&serve, &id).await;
    let (_, again) = rows(&download_book(&serve, &id, &dir).await);
    let statuses: Vec<&str> = again.iter().map(|r| r[9].as_str()).collect();
    assert_eq!(statuses, KAKAO_ONLY);
    // One more request: the refused address; the empty one is an error without asking.
    assert_eq!(fake.count(KAKAO_PATH), 1 + 7 + 1);
}

/// serve killed (SIGKILL) in the middle of a geocoding job and started again: the job
/// completes, and no address whose row was stored before the kill is asked again.
#[tokio::test(flavor = "multi_thread")]
async fn stored_rows_are_not_geocoded_again_after_a_kill() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::ok()).await;
    let env = [
        ("GEOBATCH_KAKAO_BASE_URL", fake.base_url.as_str()),
        ("KAKAO_REST_API_KEY", KEY),
        ("GEOBATCH_BATCH_ROWS", "5"),
    ];
    let mut serve = Serve::start(&dir, &env);
    let rows = 150u64;
    let mut csv = String::from("id,address\n");
    for n in 0..rows {
        csv.push_str(&format!("{n},{}\n", grid_address(n)));
    }
    let files = vec![("grid.csv", csv.into_bytes())];
    let (status, body) = upload(&serve, &files, &[("geocode", "auto"), ("rate", "25")]).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    crate::harness::wait_job(&serve, &id, Duration::from_secs(60), |j| {
        j["rows_done"].as_u64().unwrap_or(0) >= 30
    })
    .await;
    serve.kill();
    let before = fake.requests().len();
    let store = geobatch::store::ResultStore::open(dir.path(), dir.database_url())
        .await
        .unwrap();
    let job = geobatch::job::JobId::parse(&id).unwrap();
    let stored: std::collections::HashSet<u64> = store
        .results_page(&job, None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            assert_eq!(
                r.outcome.position(),
                Some(grid_point(r.seq)),
                "row {}",
                r.seq
            );
            r.seq
        })
        .collect();
    assert!(
        stored.len() >= 30 && (stored.len() as u64) < rows,
        "{}",
        stored.len()
    );
    drop(store);

    let serve = Serve::start(&dir, &env);
    let job = wait_done(&serve, &id).await;
    assert_eq!(job["rows_done"].as_u64(), Some(rows));
    assert_eq!(job["rows_failed"].as_u64(), Some(0), "{job}");
    let again: Vec<String> = fake.requests()[before..]
        .iter()
        .filter_map(|r| r.param("query").map(str::to_string))
        .filter(|q| stored.iter().any(|&n| *q == grid_address(n)))
        .collect();
    assert!(again.is_empty(), "stored rows asked again: {again:?}");
    let (_, got) = rows_of(&download_book(&serve, &id, &dir).await, "grid");
    assert_eq!(got.len() as u64, rows);
    let ok = got.iter().filter(|r| r[8] == "ok").count() as u64;
    assert_eq!(ok, rows, "every row placed once");
}

/// Two `geobatch worker` processes with two workers each, serve without workers, on one store
/// and an external broker: Kakao never sees more than the budget in any second.
#[tokio::test(flavor = "multi_thread")]
async fn the_geocoding_budget_holds_for_the_whole_cluster() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::ok()).await;
    // Bound whole: the broker and the workers live as long as the cluster.
    let cluster = crate::harness::kakao_cluster(&dir, &fake.base_url, KEY);
    let serve = &cluster.serve;
    let rows = 60u64;
    let csv: String = (0..rows).fold(String::from("주소\n"), |mut csv, n| {
        csv.push_str(&grid_address(n));
        csv.push('\n');
        csv
    });
    let files = vec![("grid.csv", csv.into_bytes())];
    let (status, body) = upload(serve, &files, &[("geocode", "auto"), ("rate", "10")]).await;
    assert_eq!(status, 202, "{body}");
    let job = wait_done(serve, body["id"].as_str().unwrap()).await;
    assert_eq!(job["rows_failed"].as_u64(), Some(0), "{job}");
    let times: Vec<_> = fake.requests().iter().map(|r| r.at).collect();
    assert_eq!(
        times.len() as u64,
        1 + rows,
        "pre-flight, then each address once"
    );
    crate::harness::assert_within_budget(times, 10);
}

/// Nominatim alone: building-level matches by place rank, a region never a position, and the
/// requests it wants (jsonv2, Korea only, a User-Agent that names geobatch).
#[tokio::test(flavor = "multi_thread")]
async fn nominatim_geocodes_by_place_rank() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::ok()).await;
    let out = dir.path().join("out.xlsx");
    let run = geocode(
        &dir,
        &fake,
        &out,
        &["--providers", "nominatim", "--rate", "200"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (_, body) = rows(&Book::open(&out));
    let got: Vec<[&str; 4]> = body
        .iter()
        .map(|r| [r[6].as_str(), r[7].as_str(), r[8].as_str(), r[9].as_str()])
        .collect();
    let found = ["building", "nominatim", "1", "ok"];
    let nothing = ["", "", "", "no_result"];
    assert_eq!(
        got,
        [
            found,
            found,
            nothing,
            nothing,
            nothing,
            ["region", "nominatim", "1", "no_result"],
            nothing,
            ["", "", "", "error"],
            found,
        ]
    );
    assert_eq!(body[0][3..5], ["126.9779692", "37.5662952"]);
    assert_eq!(body[0][5], "서울특별시청, 서울특별시 중구 세종대로 110");
    assert!(
        body[5][3].is_empty() && body[5][4].is_empty(),
        "a region has no position"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 1 + 7, "pre-flight, then each address once");
    for r in &requests {
        assert_eq!(r.path, crate::fake_geocoder::NOMINATIM_PATH);
        assert_eq!(
            (r.param("format"), r.param("countrycodes")),
            (Some("jsonv2"), Some("kr"))
        );
        assert!(
            r.header("user-agent")
                .is_some_and(|ua| ua.contains("geobatch")),
            "{r:?}"
        );
    }
}

/// A finished geocoding job retried with another provider chain: its `no_result` rows (and
/// `error` rows) are asked of the new chain, the others are kept and not asked again.
#[tokio::test(flavor = "multi_thread")]
async fn retry_with_other_providers_asks_the_rows_not_found() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::ok()).await;
    let env = [
        ("GEOBATCH_KAKAO_BASE_URL", fake.base_url.as_str()),
        ("GEOBATCH_VWORLD_BASE_URL", fake.base_url.as_str()),
        ("KAKAO_REST_API_KEY", KEY),
        ("VWORLD_API_KEY", KEY),
    ];
    let serve = Serve::start(&dir, &env);
    let csv = vec![("stores.csv", STORES.as_bytes().to_vec())];
    let (status, body) = upload(&serve, &csv, &[("geocode", "주소"), ("rate", "200")]).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    wait_done(&serve, &id).await;
    let (_, first) = rows(&download_book(&serve, &id, &dir).await);
    assert_eq!(first[4][9], "no_result", "양평 is unknown to Kakao");
    fake.clear_requests();

    let retry = |query: &'static str| {
        let url = serve.url(&format!("/jobs/{id}/retry{query}"));
        async move { crate::harness::client().post(url).send().await.unwrap() }
    };
    let res = retry("?providers=vworld,google").await;
    assert_eq!(res.status().as_u16(), 422);
    let res = retry("?providers=vworld").await;
    assert_eq!(res.status().as_u16(), 202);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        body["retried_rows"], 4,
        "3 no_result rows and the empty one: {body}"
    );
    wait_done(&serve, &id).await;
    let (_, again) = rows(&download_book(&serve, &id, &dir).await);
    let got: Vec<[&str; 3]> = again
        .iter()
        .map(|r| [r[7].as_str(), r[6].as_str(), r[9].as_str()])
        .collect();
    let kakao_road = ["kakao", "road", "ok"];
    assert_eq!(
        got,
        [
            kakao_road,
            kakao_road,
            ["kakao", "parcel", "ok"],
            ["kakao", "road", "ambiguous"],
            ["vworld", "parcel", "ok"],
            ["vworld", "region", "no_result"],
            ["", "", "no_result"],
            ["", "", "error"],
            kakao_road,
        ]
    );
    // Kakao not asked again; VWorld: pre-flight, then 양평, 강서 (road, parcel), 외국 (road,
    // parcel).
    assert_eq!(fake.count(KAKAO_PATH), 0, "{:?}", fake.requests());
    assert_eq!(fake.count(VWORLD_PATH), 1 + 1 + 2 + 2);
}
