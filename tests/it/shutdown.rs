//! Stopping politely: SIGTERM makes a worker stop taking batches, give up (uncommitted) the
//! batch in hand, leave its consumer group and exit 0, while the job goes on elsewhere.

use std::time::Duration;

use crate::harness::*;

/// On the embedded broker (`geobatch broker`, a process of its own, since workers in several
/// processes share it) and on Tansu (`GEOBATCH_TEST_BROKER=tansu`).
#[tokio::test]
async fn a_terminated_worker_exits_0_and_the_job_completes_on_the_others() {
    let dir = tempdir();
    let (_broker, brokers) = match dir.brokers() {
        Some(b) => (None, b),
        None => {
            let (p, b) = embedded_broker_process(&dir);
            (Some(p), b)
        }
    };
    let (serve, mut workers) = cluster(&dir, &brokers, "4", "100", 2);

    let rows = 200_000u64;
    let id = start_spread_job(&serve, &mut workers, rows).await;

    let mut victim = workers.remove(0);
    victim.signal(libc::SIGTERM);
    let code = victim.wait_exit(Duration::from_secs(20));
    let at_exit = job_status(&serve, &id).await;
    assert_eq!(code, Some(0), "a terminated worker exits 0");
    let logs = victim.logs();
    assert!(
        logs.iter().any(|l| l.contains("worker stopped")),
        "the worker says it stopped: {logs:?}"
    );
    assert!(
        at_exit["rows_done"].as_u64().unwrap_or(0) < rows,
        "the job was still running when the worker left: {at_exit}"
    );

    let job = wait_done(&serve, &id).await;
    assert_eq!(job["rows_done"], rows);
    let book = download_book(&serve, &id, &dir).await;
    assert_rows_once_in_order(&book, "many", rows);
}
