//! `serve` killed with SIGKILL mid-job and started again: the job completes, and no row whose
//! result was stored is converted again.

use std::time::Duration;

use geobatch::store::ResultStore;

use crate::harness::*;
use crate::http_api::metric;

#[tokio::test]
async fn killed_serve_resumes_without_reconverting_stored_rows() {
    let dir = tempdir();
    let rows = 200_000u64;
    let mut body = String::with_capacity(rows as usize * 40);
    body.push_str("id,x,y\n");
    for i in 0..rows {
        body.push_str(&format!(
            "{i:06},{:.3},{:.3}\n",
            190_000.0 + (i % 1000) as f64 * 10.0,
            440_000.0 + (i / 1000) as f64 * 10.0
        ));
    }
    // Small batches and one worker: the job takes long enough to be caught in the middle.
    let slow = [("GEOBATCH_BATCH_ROWS", "50"), ("GEOBATCH_WORKERS", "1")];
    let mut serve = Serve::start(&dir, &slow);
    let (status, reply) = upload(
        &serve,
        &[("big.csv", body.into_bytes())],
        &[("from", "EPSG:5174")],
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_str().unwrap().to_string();
    wait_job(&serve, &id, Duration::from_secs(120), |j| {
        j["rows_done"].as_u64().unwrap_or(0) > 0
    })
    .await;
    serve.kill();

    let stored_before = {
        let store = ResultStore::open(dir.path(), dir.database_url())
            .await
            .unwrap();
        let sheets = store.sheets(&id).await.unwrap();
        sheets
            .iter()
            .map(|s| s.rows_ok + s.rows_failed)
            .sum::<u64>()
    };
    assert!(
        stored_before > 0 && stored_before < rows,
        "killed mid-job: {stored_before} of {rows}"
    );

    let mut serve = Serve::start(&dir, &[]);
    serve.wait_for_log("resuming unfinished job", Duration::from_secs(30));
    let job = wait_done(&serve, &id).await;
    assert_eq!(job["rows_done"], rows);
    let metrics = client()
        .get(serve.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let converted = metric(&metrics, "geobatch_rows_converted_total");
    assert_eq!(
        converted,
        rows - stored_before,
        "after the restart only the rows without a stored result are converted"
    );

    let res = client()
        .get(serve.url(&format!("/jobs/{id}/result.xlsx")))
        .send()
        .await
        .unwrap();
    let path = dir.path().join("r.xlsx");
    std::fs::write(&path, res.bytes().await.unwrap()).unwrap();
    let book = Book::open(&path);
    let sheet = book.sheet("big");
    assert_eq!(sheet.len() as u64, rows + 1);
    for (i, row) in sheet[1..].iter().enumerate() {
        assert_eq!(text(&row[0]), format!("{i:06}"), "every row once, in order");
        assert_eq!(text(&row[5]), "ok");
    }
}
