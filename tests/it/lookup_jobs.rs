//! Address lookup as part of a job: options, keys, and the pipeline end to end.

use std::time::Duration;

use crate::harness::{convert, convert_env, samples, tempdir, upload, Serve};

fn lonlat_csv() -> std::path::PathBuf {
    samples().join("stores_wgs84.csv")
}

#[test]
fn a_lookup_without_its_key_is_refused_naming_the_variable() {
    let dir = tempdir();
    let out = dir.path().join("out.xlsx");
    let input = lonlat_csv();
    let args = [
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--lookup",
        "kakao",
    ];
    let run = convert(&dir, &args);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("KAKAO_REST_API_KEY"), "{}", run.stderr);
    assert!(!out.exists());

    let run = convert(
        &dir,
        &[
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--rate",
            "5",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("option rate: needs option lookup"),
        "{}",
        run.stderr
    );

    // A key file stands in for the variable.
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "\n").unwrap();
    let run = convert_env(
        &dir,
        &[("GEOBATCH_LOOKUP_KEY_FILE", key_file.to_str().unwrap())],
        &args,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("GEOBATCH_LOOKUP_KEY_FILE"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn the_upload_form_takes_lookup_fields() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[]);
    // The page builds its fields from `GET /options`, the same list as `--help`.
    let page = crate::harness::get_text(&serve, "/assets/app.js").await;
    assert!(
        page.contains("json('/options')"),
        "the page asks for the options"
    );
    let options: serde_json::Value =
        serde_json::from_str(&crate::harness::get_text(&serve, "/options").await).unwrap();
    let names: Vec<&str> = options["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    for field in ["lookup", "rate", "daily_quota", "cache_ttl"] {
        assert!(names.contains(&field), "{field} in {names:?}");
    }
    let providers = options["providers"].to_string();
    for p in ["kakao", "vworld", "nominatim"] {
        assert!(providers.contains(p), "{providers}");
    }
    let csv = std::fs::read(lonlat_csv()).unwrap();
    let (status, body) = upload(&serve, &[("a.csv", csv.clone())], &[("lookup", "vworld")]).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("VWORLD_API_KEY"), "{body}");
    let (status, body) = upload(&serve, &[("a.csv", csv.clone())], &[("lookup", "google")]).await;
    assert_eq!(status, 422, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("unknown provider \"google\""), "{body}");
    assert_eq!(body["field"], "lookup", "the error names its field");
    let (status, body) = upload(
        &serve,
        &[("a.csv", csv)],
        &[("lookup", "nominatim"), ("rate", "fast")],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("rate"), "{body}");
}

use calamine::Data;

use crate::fake_provider::{place, Behavior, FakeProvider, Script, KEY};
use crate::harness::{text, Book, TestDir};

/// 20 distinct points in the fake's country (at grid-cell centres), each three times, and 2
/// rows in the sea (no address), twice each: 64 rows, 21 distinct points.
fn lookup_csv(dir: &TestDir) -> std::path::PathBuf {
    let mut csv = String::from("name,lon,lat\n");
    for round in 0..3 {
        for i in 0..20 {
            let lon = 126.9005 + i as f64 * 0.001;
            let lat = 37.5005 + (i % 4) as f64 * 0.001;
            csv.push_str(&format!("store {round}-{i},{lon:.4},{lat:.4}\n"));
        }
    }
    for n in 0..4 {
        csv.push_str(&format!("ship {n},125.0,32.0\n"));
    }
    let path = dir.path().join("stores.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// `geobatch convert --lookup kakao` of `lookup_csv` against the fake, with the key.
async fn convert_lookup(
    dir: &TestDir,
    fake: &FakeProvider,
    out: &std::path::Path,
    more_env: &[(&str, &str)],
    more_args: &[&str],
) -> Output {
    let input = lookup_csv(dir);
    let mut env = vec![
        ("GEOBATCH_KAKAO_BASE_URL", fake.base_url.as_str()),
        ("KAKAO_REST_API_KEY", KEY),
    ];
    env.extend_from_slice(more_env);
    let mut args = vec![
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--lookup",
        "kakao",
    ];
    args.extend_from_slice(more_args);
    tokio::task::block_in_place(|| convert_env(dir, &env, &args))
}

/// The new columns of a lookup job's sheet, by header.
fn column(book: &Book, sheet: &str, name: &str) -> Vec<String> {
    let rows = book.sheet(sheet);
    let col = rows[0]
        .iter()
        .position(|h| text(h) == name)
        .unwrap_or_else(|| panic!("no column {name}: {:?}", rows[0]));
    rows[1..]
        .iter()
        .map(|r| r.get(col).map(text).unwrap_or_default())
        .collect()
}

use crate::harness::Output;

#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_job_ends_every_row_ok_no_result_or_error_and_caches_its_answers() {
    let dir = tempdir();
    // The first request is refused (HTTP 400): that point's rows are errors with the reason.
    let fake = FakeProvider::start(Script::steps([Behavior::Status(400)])).await;
    let out = dir.path().join("out.xlsx");
    let run = convert_lookup(&dir, &fake, &out, &[], &["--rate", "200"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains(KEY), "the key is in the log");

    let book = Book::open(&out);
    let (lons, lats) = (
        column(&book, "stores", "lon"),
        column(&book, "stores", "lat"),
    );
    let status = column(&book, "stores", "status");
    let error = column(&book, "stores", "error");
    let address = column(&book, "stores", "address");
    let road = column(&book, "stores", "road_address");
    let building = column(&book, "stores", "building_name");
    assert_eq!(status.len(), 64, "nothing is missing");
    let mut refused = std::collections::HashSet::new();
    for i in 0..64 {
        let (lon, lat): (f64, f64) = (lons[i].parse().unwrap(), lats[i].parse().unwrap());
        match (status[i].as_str(), place(lon, lat)) {
            ("ok", Some(p)) => {
                assert_eq!(address[i], p.parcel, "row {i}");
                // Kakao names a building only with a road address.
                let expected_building = p.road.as_ref().and(p.building.clone());
                assert_eq!(road[i], p.road.unwrap_or_default(), "row {i}");
                assert_eq!(
                    building[i],
                    expected_building.unwrap_or_default(),
                    "row {i}"
                );
                assert_eq!(error[i], "");
            }
            ("no_result", None) => assert_eq!(address[i], ""),
            ("error", _) => {
                assert!(error[i].contains("HTTP 400"), "row {i}: {}", error[i]);
                refused.insert(lons[i].clone() + "," + &lats[i]);
            }
            other => panic!("row {i}: {other:?}"),
        }
    }
    assert_eq!(refused.len(), 1, "one point was refused: {refused:?}");
    let errors = book.sheet("Errors");
    let refused_rows = status.iter().filter(|s| *s == "error").count();
    assert_eq!(
        errors.len() - 1,
        refused_rows,
        "no_result rows are not errors"
    );
    // Each distinct point once: 21, nothing retried.
    assert_eq!(fake.request_count(), 21);
    assert_eq!(book.summary_value("lookup requests"), "21");
    assert_eq!(book.summary_value("lookup cache hits"), "43");
    assert_eq!(book.summary_value("address lookup"), "kakao");
    for name in ["stores", "Summary", "Errors"] {
        for row in book.sheet(name) {
            assert!(
                row.iter()
                    .all(|c| !matches!(c, Data::String(s) if s.contains(KEY))),
                "the key is in the workbook"
            );
        }
    }

    // The same file again: every answer comes from the cache (the refused point is asked again).
    fake.clear_requests();
    let out2 = dir.path().join("out2.xlsx");
    let run = convert_lookup(&dir, &fake, &out2, &[], &["--rate", "200"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fake.request_count(), 1, "{:?}", fake.requests());
    let again = Book::open(&out2);
    assert!(column(&again, "stores", "status")
        .iter()
        .all(|s| s != "error"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_fails_the_job_with_a_clear_message() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::always(Behavior::InvalidKey)).await;
    let out = dir.path().join("out.xlsx");
    let run = convert_lookup(&dir, &fake, &out, &[], &["--rate", "200"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("KAKAO_REST_API_KEY was refused by Kakao (HTTP 401"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(KEY));
    assert!(!out.exists());
    // Nothing more is asked once the key is refused: at most the lookups in flight then.
    assert!(fake.request_count() <= 16, "{}", fake.request_count());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_daily_quota_pauses_the_job_visibly() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::ok()).await;
    let serve = Serve::start(
        &dir,
        &[
            ("GEOBATCH_KAKAO_BASE_URL", fake.base_url.as_str()),
            ("KAKAO_REST_API_KEY", KEY),
        ],
    );
    let csv = std::fs::read(lookup_csv(&dir)).unwrap();
    let id = submit(
        &serve,
        "stores.csv",
        csv,
        &[("lookup", "kakao"), ("rate", "100"), ("daily_quota", "5")],
    )
    .await;
    let job = crate::harness::wait_job(&serve, &id, Duration::from_secs(60), |j| {
        j["state"] == "paused"
    })
    .await;
    let message = job["message"].as_str().unwrap();
    assert!(
        message.starts_with("daily quota of 5 requests for kakao is spent; resumes at ")
            && message.ends_with(" 00:00:00 GMT"),
        "{message}"
    );
    assert!(!job.to_string().contains(KEY));
    // The job pauses when the sixth request is refused by the budget; the fifth may still be
    // on its way to the provider then. It arrives, and no sixth follows.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let counted = "geobatch_lookup_requests_total{provider=\"kakao\"} 5";
    loop {
        let metrics = crate::harness::get_text(&serve, "/metrics").await;
        assert!(fake.request_count() <= 5, "more requests than the quota");
        if fake.request_count() == 5 && metrics.contains(counted) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Error rows of a finished job are looked up again on demand, through the API and the CLI.
#[tokio::test(flavor = "multi_thread")]
async fn retry_redrives_only_the_error_rows() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::steps([Behavior::Status(400)])).await;
    let env = [
        ("GEOBATCH_KAKAO_BASE_URL", fake.base_url.as_str()),
        ("KAKAO_REST_API_KEY", KEY),
    ];
    let mut serve = Serve::start(&dir, &env);
    let csv = std::fs::read(lookup_csv(&dir)).unwrap();
    let id = submit(
        &serve,
        "stores.csv",
        csv,
        &[("lookup", "kakao"), ("rate", "200")],
    )
    .await;
    let job = crate::harness::wait_done(&serve, &id).await;
    let failed = job["rows_failed"].as_u64().unwrap();
    assert!(failed > 0, "{job}");
    assert_eq!(fake.request_count(), 21);

    // Refused again: the same rows end as errors; one request, for the one point.
    fake.set_script(Script::steps([Behavior::Status(400)]));
    let res = crate::harness::client()
        .post(serve.url(&format!("/jobs/{id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["retried_rows"].as_u64(), Some(failed));
    let job = crate::harness::wait_done(&serve, &id).await;
    assert_eq!(job["rows_failed"].as_u64(), Some(failed), "{job}");
    assert_eq!(job["rows_done"].as_u64(), Some(64), "{job}");
    assert_eq!(fake.request_count(), 22);
    let res = crate::harness::client()
        .post(serve.url("/jobs/nosuchjob/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    serve.kill();

    // The CLI, with the provider answering now: every row ends with an address or no_result.
    fake.set_script(Script::ok());
    let out = tokio::task::block_in_place(|| {
        let mut cmd = crate::harness::geobatch(&dir);
        cmd.envs(env).args(["retry", "--no-progress", &id]);
        cmd.output().unwrap()
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(fake.request_count(), 23);
    let path = dir.path().join("results").join(format!("{id}.xlsx"));
    let book = Book::open(&path);
    let status = column(&book, "stores", "status");
    assert_eq!(status.len(), 64);
    assert!(
        status.iter().all(|s| s == "ok" || s == "no_result"),
        "{status:?}"
    );
    assert_eq!(book.sheet("Errors").len(), 1, "only the header");
}

/// Uploads one file with these form fields; the job's id.
async fn submit(serve: &Serve, name: &str, csv: Vec<u8>, fields: &[(&str, &str)]) -> String {
    let (status, body) = upload(serve, &[(name, csv)], fields).await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// `n` rows at `n` distinct points (cell centres of the fake's grid).
fn distinct_csv(n: usize) -> Vec<u8> {
    let mut csv = String::from("name,lon,lat\n");
    for i in 0..n {
        let lon = 126.5005 + (i % 50) as f64 * 0.001;
        let lat = 37.0005 + (i / 50) as f64 * 0.001;
        csv.push_str(&format!("p{i},{lon:.4},{lat:.4}\n"));
    }
    csv.into_bytes()
}

/// The point a recorded Kakao request asked for.
fn requested_point(r: &crate::fake_provider::Recorded) -> geobatch::lookup::PointKey {
    let coord = |name| r.param(name).unwrap().parse::<f64>().unwrap();
    geobatch::lookup::PointKey::of(coord("x"), coord("y"))
}

/// Two `geobatch worker` processes with two workers each, and serve without workers, on one
/// store and an external broker: the provider never sees more than the budget in any second.
#[tokio::test(flavor = "multi_thread")]
async fn the_budget_holds_for_the_whole_cluster() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::ok()).await;
    // Bound whole: the broker and the workers live as long as the cluster.
    let mut cluster = crate::harness::kakao_cluster(&dir, &fake.base_url, KEY);
    let serve = &cluster.serve;
    let rows = 60;
    let id = submit(
        serve,
        "many.csv",
        distinct_csv(rows),
        &[("lookup", "kakao"), ("rate", "10")],
    )
    .await;
    let job = crate::harness::wait_done(serve, &id).await;
    assert_eq!(job["rows_failed"].as_u64(), Some(0), "{job}");
    let times: Vec<_> = fake.requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), rows);
    crate::harness::assert_within_budget(times, 10);
    // Both worker processes held partitions of the job's topic.
    let topic = format!("geobatch.rows.{id}.0[");
    let busy = cluster
        .workers
        .iter_mut()
        .map(|w| w.logs())
        .filter(|logs| {
            logs.iter()
                .any(|l| l.contains("partitions assigned") && l.contains(&topic))
        })
        .count();
    assert_eq!(busy, 2);
}

/// serve killed (SIGKILL) in the middle of a lookup job and started again: rows whose result
/// was stored before the kill are not requested again.
#[tokio::test(flavor = "multi_thread")]
async fn stored_rows_are_not_requested_again_after_a_kill() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::ok()).await;
    let env = [
        ("GEOBATCH_KAKAO_BASE_URL", fake.base_url.as_str()),
        ("KAKAO_REST_API_KEY", KEY),
        ("GEOBATCH_BATCH_ROWS", "5"),
    ];
    let mut serve = Serve::start(&dir, &env);
    let rows = 150;
    let id = submit(
        &serve,
        "many.csv",
        distinct_csv(rows),
        &[("lookup", "kakao"), ("rate", "25")],
    )
    .await;
    crate::harness::wait_job(&serve, &id, Duration::from_secs(60), |j| {
        j["rows_done"].as_u64().unwrap_or(0) >= 30
    })
    .await;
    serve.kill();
    let before = fake.request_count();
    let store = geobatch::store::ResultStore::open(dir.path(), dir.database_url())
        .await
        .unwrap();
    let stored: std::collections::HashSet<_> = store
        .results_page(&geobatch::job::JobId::parse(&id).unwrap(), None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| match r.outcome.position() {
            Some((x, y)) if !r.outcome.is_error() => geobatch::lookup::PointKey::of(x, y),
            _ => panic!("{:?}", r.outcome),
        })
        .collect();
    assert!(
        stored.len() >= 30 && stored.len() < rows,
        "{}",
        stored.len()
    );
    drop(store);

    let serve = Serve::start(&dir, &env);
    let job = crate::harness::wait_done(&serve, &id).await;
    assert_eq!(job["rows_done"].as_u64(), Some(rows as u64));
    let again: Vec<_> = fake.requests()[before..]
        .iter()
        .map(requested_point)
        .filter(|p| stored.contains(p))
        .collect();
    assert!(again.is_empty(), "stored rows requested again: {again:?}");
    assert!(fake.request_count() <= rows + 8, "{}", fake.request_count());
}

/// Rows whose lookup failed for good are published to `geobatch.dlq`, one JSON message each,
/// with the reason and without the key.
#[tokio::test(flavor = "multi_thread")]
async fn permanent_failures_go_to_the_dead_letter_topic() {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::Message;

    let dir = tempdir();
    let (_broker, brokers) = crate::harness::embedded_broker_process(&dir);
    let fake = FakeProvider::start(Script::steps([Behavior::Status(400)])).await;
    let out = dir.path().join("out.xlsx");
    let broker_env = [("GEOBATCH_KAFKA_BROKERS", brokers.as_str())];
    let run = convert_lookup(&dir, &fake, &out, &broker_env, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let book = Book::open(&out);
    let status = column(&book, "stores", "status");
    let errors: Vec<usize> = (0..status.len())
        .filter(|&i| status[i] == "error")
        .collect();
    // One point refused: its rows (three in the country, four at sea) are the errors.
    let (lons, lats) = (
        column(&book, "stores", "lon"),
        column(&book, "stores", "lat"),
    );
    let refused: std::collections::HashSet<_> =
        errors.iter().map(|&i| (&lons[i], &lats[i])).collect();
    assert_eq!(refused.len(), 1, "{status:?}");
    assert!(errors.len() >= 3, "{status:?}");

    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "dlq-test")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[geobatch::bus::DLQ_TOPIC]).unwrap();
    let mut seqs = Vec::new();
    while seqs.len() < errors.len() {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a dead letter within 30 s")
            .unwrap();
        let text = std::str::from_utf8(m.payload().unwrap()).unwrap();
        assert!(!text.contains(KEY), "{text}");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["sheet"], 0, "{v}");
        assert!(v["reason"].as_str().unwrap().contains("HTTP 400"), "{v}");
        assert!(v["job"].as_str().is_some_and(|j| !j.is_empty()), "{v}");
        let seq = v["seq"].as_u64().unwrap() as usize;
        assert!(
            v["lon"].as_f64().is_some() && v["lat"].as_f64().is_some(),
            "{v}"
        );
        seqs.push(seq);
    }
    seqs.sort();
    assert_eq!(seqs, errors, "the error rows, each once");
}

/// A provider answering only 500s: no row becomes an error and nothing is stored; once it
/// answers again, the held batches go through and every row ends with its address.
#[tokio::test(flavor = "multi_thread")]
async fn an_outage_holds_the_rows_instead_of_failing_them() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::always(Behavior::Status(500))).await;
    let env = [
        ("GEOBATCH_KAKAO_BASE_URL", fake.base_url.as_str()),
        ("KAKAO_REST_API_KEY", KEY),
    ];
    let serve = Serve::start(&dir, &env);
    let csv = std::fs::read(lookup_csv(&dir)).unwrap();
    let id = submit(
        &serve,
        "stores.csv",
        csv,
        &[("lookup", "kakao"), ("rate", "100")],
    )
    .await;
    // Every lookup of the first round has used up its retries.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fake.request_count() < 48 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            fake.request_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = crate::harness::job_status(&serve, &id).await;
    assert_eq!(job["rows_done"].as_u64(), Some(0), "{job}");
    assert_ne!(job["state"], "failed", "{job}");

    fake.set_script(Script::ok());
    let job = crate::harness::wait_done(&serve, &id).await;
    assert_eq!(job["rows_failed"].as_u64(), Some(0), "{job}");
    assert_eq!(job["rows_done"].as_u64(), Some(64), "{job}");
}

/// Small batches on four workers hold the same points at the same time: each point is still
/// requested once (a lookup in flight is shared, not repeated).
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_batches_share_lookups_in_flight() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::ok()).await;
    let out = dir.path().join("out.xlsx");
    let env = [("GEOBATCH_BATCH_ROWS", "4"), ("GEOBATCH_WORKERS", "4")];
    let run = convert_lookup(&dir, &fake, &out, &env, &["--rate", "20"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fake.request_count(), 21, "one request per distinct point");
    let book = Book::open(&out);
    assert_eq!(book.summary_value("lookup requests"), "21");
    assert_eq!(book.summary_value("lookup cache hits"), "43");
}
