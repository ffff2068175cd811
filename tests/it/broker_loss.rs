//! A broker that loses its data under a running job (Tansu on memory storage, killed and
//! started again on the same port): `/healthz` says the broker is down while it is, and the job
//! notices its rows are gone, publishes the rows without a result again and completes, every row
//! once, in order.

use std::time::Duration;

use crate::harness::*;

const ROWS: u64 = 200_000;

/// serve on its own Tansu broker (whatever the suite's broker mode: this broker is the one
/// killed), with a slow job running; returns the broker, serve and the job.
async fn job_on_a_broker(dir: &TestDir, stall_check: &str) -> (u16, Tansu, Serve, String) {
    let port = free_port();
    let tansu = Tansu::start_on(port);
    let env = [
        ("GEOBATCH_KAFKA_BROKERS", tansu.bootstrap.as_str()),
        ("GEOBATCH_DELETE_TOPICS", "false"),
        ("GEOBATCH_STALL_CHECK_SECS", stall_check),
        ("GEOBATCH_BATCH_ROWS", "50"),
        ("GEOBATCH_WORKERS", "1"),
    ];
    let serve = Serve::start(dir, &env);
    let id = upload_tm_rows(&serve, "big", ROWS).await;
    wait_job(&serve, &id, Duration::from_secs(120), |j| {
        j["state"] == "running" && j["rows_done"].as_u64().unwrap_or(0) > 0
    })
    .await;
    (port, tansu, serve, id)
}

async fn healthz(serve: &Serve) -> (u16, serde_json::Value) {
    let res = client().get(serve.url("/healthz")).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn a_job_whose_broker_lost_its_rows_publishes_them_again() {
    let dir = tempdir();
    let (port, tansu, mut serve, id) = job_on_a_broker(&dir, "1").await;
    assert_eq!(healthz(&serve).await.0, 200);

    drop(tansu);
    // /healthz tells the truth while the broker is away.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = healthz(&serve).await;
        if status == 503 {
            assert_eq!(body["broker"], "down", "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "healthz: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let _tansu = Tansu::start_on(port);
    serve.wait_for_log(
        "the broker no longer holds this job's rows",
        Duration::from_secs(60),
    );
    let job = wait_done(&serve, &id).await;
    assert_eq!(job["rows_done"], ROWS, "{job}");
    assert_eq!(healthz(&serve).await.0, 200);
    let book = download_book(&serve, &id, &dir).await;
    assert_rows_once_in_order(&book, "big", ROWS);
}

#[tokio::test]
async fn retry_re_drives_a_job_stranded_by_its_broker() {
    let dir = tempdir();
    // No periodic check: only the user's retry can notice.
    let (port, tansu, serve, id) = job_on_a_broker(&dir, "0").await;
    drop(tansu);
    let _tansu = Tansu::start_on(port);

    let retry = || async {
        client()
            .post(serve.url(&format!("/jobs/{id}/retry")))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // The broker answers again within moments; until then the job is not known to be stranded.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match retry().await {
            202 | 200 => break,
            409 => {
                let job = job_status(&serve, &id).await;
                if job["state"] == "done" {
                    panic!("the job finished without its lost rows: {job}");
                }
            }
            other => panic!("retry answered {other}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retry kept answering 409"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let job = wait_done(&serve, &id).await;
    assert_eq!(job["rows_done"], ROWS, "{job}");
    let book = download_book(&serve, &id, &dir).await;
    assert_rows_once_in_order(&book, "big", ROWS);
}
