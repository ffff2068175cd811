//! A Kafka-protocol broker as a separate process (Tansu): several worker processes share the
//! consumer group, one is killed mid-job, and a broker that starts late is waited for.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::*;

/// The partitions named in a worker's last "partitions assigned" line before `upto` lines.
fn last_assignment(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .rev()
        .find_map(|l| l.split("partitions assigned: ").nth(1))
        .map(|rest| {
            rest.split_whitespace()
                .filter(|p| p.starts_with("geobatch.rows."))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn workers_take_over_the_partitions_of_a_killed_worker() {
    let dir = tempdir();
    let (_broker, brokers) = embedded_broker_process(&dir);
    let (serve, mut workers) = cluster(&dir, &brokers, "6", "50", 3);

    let rows = 300_000u64;
    let id = start_spread_job(&serve, &mut workers, rows).await;

    let mut victim = workers.remove(0);
    let held = last_assignment(&victim.logs());
    assert!(!held.is_empty(), "the victim held partitions");
    let seen_before: Vec<usize> = workers.iter_mut().map(|w| w.logs().len()).collect();
    victim.kill();
    let at_kill = job_status(&serve, &id).await;
    eprintln!(
        "killed a worker holding {held:?}; job at kill: {}",
        at_kill["rows_done"]
    );

    let job = wait_done(&serve, &id).await;
    assert_eq!(job["rows_done"], rows);

    let mut taken_over = BTreeSet::new();
    for (w, before) in workers.iter_mut().zip(seen_before) {
        let after = w.logs()[before..].to_vec();
        for line in after.iter().filter(|l| l.contains("partitions assigned")) {
            eprintln!("after the kill: {line}");
        }
        taken_over.extend(last_assignment(&after).intersection(&held).cloned());
    }
    assert_eq!(
        taken_over, held,
        "every partition of the killed worker was assigned to a surviving one"
    );

    let book = download_book(&serve, &id, &dir).await;
    assert_rows_once_in_order(&book, "many", rows);
}

#[tokio::test]
async fn a_broker_that_starts_late_is_waited_for() {
    let dir = tempdir();
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let mut serve = Serve::start(&dir, &[("GEOBATCH_KAFKA_BROKERS", &brokers)]);
    serve.wait_for_log(
        &format!("waiting for Kafka at {brokers}"),
        Duration::from_secs(30),
    );

    let id = upload_tm_rows(&serve, "late", 500).await;
    assert_eq!(job_status(&serve, &id).await["state"], "accepted");

    let _tansu = Tansu::start_on(port);
    serve.wait_for_log(
        &format!("Kafka at {brokers} is up"),
        Duration::from_secs(60),
    );
    let job = wait_done(&serve, &id).await;
    assert_eq!(job["rows_done"], 500);
    let book = download_book(&serve, &id, &dir).await;
    assert_eq!(book.sheet("late").len(), 501);
}
