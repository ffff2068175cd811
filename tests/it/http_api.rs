//! `geobatch serve` over real HTTP: upload, status, download, errors.

use std::time::Duration;

use crate::harness::*;

#[tokio::test]
async fn upload_then_download_cell_by_cell() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[]);
    let page = client()
        .get(serve.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The page's modules are served from the binary; its option fields come from `GET /options`.
    assert!(
        page.contains("<form") && page.contains("/assets/app.js"),
        "upload page"
    );
    let app = get_text(&serve, "/assets/app.js").await;
    assert!(app.contains("json('/options')"), "app.js");

    let sample = std::fs::read(samples().join("stores_wgs84.csv")).unwrap();
    let extra = "name,lon,lat\n\"a, b\",127.5,37.25\nc,-,37.0\n"
        .as_bytes()
        .to_vec();
    let (status, body) = upload(
        &serve,
        &[("stores_wgs84.csv", sample.clone()), ("extra.csv", extra)],
        &[("to", "EPSG:4326")],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();

    let job = wait_done(&serve, &id).await;
    let csv = read_csv(&sample, encoding_rs::UTF_8, b',');
    let total = csv.len() - 1 + 2;
    assert_eq!(job["total_rows"], total as u64);
    assert_eq!(job["rows_done"], total as u64);
    assert_eq!(job["rows_failed"], 1);
    assert_eq!(job["sheets"].as_array().unwrap().len(), 2);
    // What the page shows of a job: every format's result, the options in short.
    assert_eq!(
        job["results"],
        serde_json::json!([{ "format": "xlsx", "url": format!("/jobs/{id}/result.xlsx") }])
    );
    assert_eq!(job["options"], "to EPSG:4326 · xlsx");
    assert!(job["created_ms"].as_i64().unwrap() > 0);
    assert_eq!(
        job["status_counts"],
        serde_json::json!({ "ok": total - 1, "error": 1 })
    );

    let book = download_book(&serve, &id, &dir).await;
    assert_eq!(book.names, ["stores_wgs84", "extra", "Summary", "Errors"]);
    let sheet = book.sheet("stores_wgs84");
    let (header, rows) = csv.split_first().unwrap();
    let lon = header.iter().position(|h| h == "lon").unwrap();
    let lat = header.iter().position(|h| h == "lat").unwrap();
    assert_eq!(sheet.len(), rows.len() + 1);
    let n = header.len();
    for (want, got) in rows.iter().zip(&sheet[1..]) {
        for (c, v) in want.iter().enumerate() {
            assert_eq!(&text(&got[c]), v);
        }
        // The input's own lon/lat columns clash with ours: ours get the suffix.
        assert_eq!(num(&got[n]), want[lon].trim().parse::<f64>().unwrap());
        assert_eq!(num(&got[n + 1]), want[lat].trim().parse::<f64>().unwrap());
        assert_eq!(text(&got[n + 2]), "ok");
    }
    assert_eq!(text(&sheet[0][n]), "lon_geobatch");
    let extra = book.sheet("extra");
    assert_eq!(text(&extra[1][0]), "a, b");
    assert_eq!(text(&extra[2][5]), "error");

    let list: serde_json::Value = client()
        .get(serve.url("/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["id"] == id.as_str()));

    let metrics = client()
        .get(serve.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let converted: u64 = metric(&metrics, "geobatch_rows_converted_total");
    assert_eq!(
        converted,
        total as u64 - 1,
        "the '-' row never reached a worker"
    );

    assert_eq!(delete_job(&serve, &id).await, 204);
    let res = client()
        .get(serve.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(
        !dir.path().join("uploads").join(&id).exists(),
        "the upload went with the job"
    );

    // A second job on the same server: its new topic joins the running consumer group.
    let (status, body) = upload(&serve, &[("again.csv", sample)], &[]).await;
    assert_eq!(status, 202, "{body}");
    let job = wait_done(&serve, body["id"].as_str().unwrap()).await;
    assert_eq!(job["rows_done"], csv.len() as u64 - 1);
}

pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn bad_uploads_get_json_errors_a_person_can_act_on() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[("GEOBATCH_MAX_UPLOAD_MB", "1")]);

    let (status, body) = upload(&serve, &[("a.csv", b"name,e,n\nx,1,2\n".to_vec())], &[]).await;
    assert_eq!(status, 422, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("a.csv") && msg.contains("\"e\"") && msg.contains("options x and y"),
        "{msg}"
    );

    let (status, body) = upload(&serve, &[("tm.csv", b"x,y\n200000,500000\n".to_vec())], &[]).await;
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("5174"), "{body}");

    let big = vec![b'a'; 1024 * 1024 + 10];
    let (status, body) = upload(&serve, &[("big.csv", big)], &[]).await;
    assert_eq!(status, 413);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("GEOBATCH_MAX_UPLOAD_MB"),
        "{body}"
    );

    let (status, body) = upload(
        &serve,
        &[("a.csv", b"x,y\n1,2\n".to_vec())],
        &[("color", "red")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("color"), "{body}");

    let (status, body) = upload(&serve, &[], &[("from", "EPSG:5174")]).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("file"), "{body}");

    let res = client().get(serve.url("/jobs/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = client()
        .get(serve.url("/jobs/nope/result.xlsx"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // Nothing of the refused uploads stays behind.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("uploads"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A configured broker that is not up: uploads are still accepted and stored, the job waits,
/// the download says 409 and why, and the log says what it is waiting for.
#[tokio::test]
async fn uploads_are_accepted_while_the_broker_is_down() {
    let dir = tempdir();
    // A port with nothing listening: bind, note, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let mut serve = Serve::start(&dir, &[("GEOBATCH_KAFKA_BROKERS", &brokers)]);
    serve.wait_for_log(
        &format!("waiting for Kafka at {brokers} (attempt 1"),
        Duration::from_secs(30),
    );
    let health: serde_json::Value = client()
        .get(serve.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["broker"], "waiting");

    let (status, body) = upload(&serve, &[("s.csv", b"x,y\n127,37\n".to_vec())], &[]).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap();
    let job = job_status(&serve, id).await;
    assert_eq!(job["state"], "accepted");
    let res = client()
        .get(serve.url(&format!("/jobs/{id}/result.xlsx")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("not ready"),
        "{body}"
    );
    let stored: Vec<_> = std::fs::read_dir(dir.path().join("uploads").join(id))
        .unwrap()
        .collect();
    assert_eq!(stored.len(), 1, "the upload is on disk");
}
