//! The result store failing for a moment: a PostgreSQL connection terminated by the operator
//! while the workbook is written delays the job, it does not fail it.

use std::time::{Duration, Instant};

use sqlx::Executor;

use crate::harness::*;

#[tokio::test]
async fn merge_survives_pg_terminate_backend() {
    let db = PgDb::create().await;
    let dir = tempdir();
    let mut serve = Serve::start(&dir, &[("DATABASE_URL", &db.url)]);
    let rows = 200_000;
    let id = upload_tm_rows(&serve, "big", rows).await;
    wait_job(&serve, &id, Duration::from_secs(120), |j| {
        j["state"] == "merging"
    })
    .await;

    // Every connection of geobatch's, as an operator would, until the merger has met it.
    let mut admin = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .await
            .unwrap();
        if serve
            .logs()
            .iter()
            .any(|l| l.contains("cannot write the workbook yet"))
        {
            break;
        }
        let job = job_status(&serve, &id).await;
        assert_ne!(job["state"], "failed", "{job}");
        assert!(
            job["state"] != "done" && Instant::now() < deadline,
            "the merge ended before a connection was cut: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let job = wait_done(&serve, &id).await;
    assert_eq!(job["state"], "done", "{job}");
    let book = download_book(&serve, &id, &dir).await;
    assert_rows_once_in_order(&book, "big", rows);
}
