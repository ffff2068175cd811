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
    // Small batches and one worker: the job takes long enough to be caught in the middle.
    let slow = [("GEOBATCH_BATCH_ROWS", "50"), ("GEOBATCH_WORKERS", "1")];
    let mut serve = Serve::start(&dir, &slow);
    let id = upload_tm_rows(&serve, "big", rows).await;
    wait_job(&serve, &id, Duration::from_secs(120), |j| {
        j["rows_done"].as_u64().unwrap_or(0) > 0
    })
    .await;
    serve.kill();

    let stored_before = {
        let store = ResultStore::open(dir.path(), dir.database_url())
            .await
            .unwrap();
        let sheets = store
            .sheets(&geobatch::job::JobId::parse(&id).unwrap())
            .await
            .unwrap();
        sheets
            .iter()
            .map(|s| s.rows_ok + s.rows_failed)
            .sum::<u64>()
    };
    assert!(
        stored_before > 0 && stored_before < rows,
        "killed mid-job: {stored_before} of {rows}"
    );

    // Started again as it ran: a republished row keeps its batch, so its message key and
    // partition, and meets its first copy in the same partition's task (which sees it stored).
    // With other batch sizes the two copies could be converted side by side in two partitions:
    // stored once all the same, but counted twice here.
    let mut serve = Serve::start(&dir, &slow);
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

    let book = download_book(&serve, &id, &dir).await;
    assert_rows_once_in_order(&book, "big", rows);
}
