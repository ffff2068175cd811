//! A Kafka-protocol broker as a separate process (Tansu): several worker processes share the
//! consumer group, one is killed mid-job, and a broker that starts late is waited for.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::*;

fn rows_csv(rows: u64) -> Vec<u8> {
    let mut body = String::with_capacity(rows as usize * 32);
    body.push_str("id,x,y\n");
    for i in 0..rows {
        body.push_str(&format!(
            "{i:07},{:.2},{:.2}\n",
            190_000.0 + (i % 1000) as f64 * 7.0,
            440_000.0 + (i / 1000) as f64 * 3.0
        ));
    }
    body.into_bytes()
}

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

async fn download(serve: &Serve, id: &str, dir: &TestDir) -> Book {
    let res = client()
        .get(serve.url(&format!("/jobs/{id}/result.xlsx")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let path = dir.path().join(format!("{id}.xlsx"));
    std::fs::write(&path, res.bytes().await.unwrap()).unwrap();
    Book::open(&path)
}

#[tokio::test]
async fn workers_take_over_the_partitions_of_a_killed_worker() {
    let dir = tempdir();
    let (_broker, brokers) = embedded_broker_process(&dir);
    let common = [
        ("GEOBATCH_KAFKA_BROKERS", brokers.as_str()),
        ("GEOBATCH_TOPIC_PARTITIONS", "6"),
        ("GEOBATCH_BATCH_ROWS", "50"),
    ];
    let mut serve_env = common.to_vec();
    serve_env.push(("GEOBATCH_WORKERS", "0"));
    let serve = Serve::start(&dir, &serve_env);
    let mut worker_env = common.to_vec();
    worker_env.push(("GEOBATCH_WORKERS", "1"));
    let mut workers: Vec<Serve> = (0..3)
        .map(|_| Serve::start_cmd(&dir, "worker", &worker_env))
        .collect();
    for w in &mut workers {
        w.wait_for_log("worker subscribed", Duration::from_secs(60));
    }

    let rows = 300_000u64;
    let (status, reply) = upload(
        &serve,
        &[("many.csv", rows_csv(rows))],
        &[("from", "EPSG:5174")],
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_str().unwrap().to_string();

    // Wait until every worker holds partitions of the job's topic and work is flowing.
    let topic = format!("geobatch.rows.{id}.0");
    for w in &mut workers {
        w.wait_for_log(&format!("{topic}["), Duration::from_secs(60));
    }
    wait_job(&serve, &id, Duration::from_secs(120), |j| {
        j["rows_done"].as_u64().unwrap_or(0) > 0
    })
    .await;

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

    let book = download(&serve, &id, &dir).await;
    let sheet = book.sheet("many");
    assert_eq!(sheet.len() as u64, rows + 1);
    for (i, row) in sheet[1..].iter().enumerate() {
        assert_eq!(
            text(&row[0]),
            format!("{i:07}"),
            "every row exactly once, in order"
        );
        assert_eq!(text(&row[5]), "ok");
    }
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

    let (status, reply) = upload(
        &serve,
        &[("late.csv", rows_csv(500))],
        &[("from", "EPSG:5174")],
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_str().unwrap().to_string();
    assert_eq!(job_status(&serve, &id).await["state"], "accepted");

    let _tansu = Tansu::start_on(port);
    serve.wait_for_log(
        &format!("Kafka at {brokers} is up"),
        Duration::from_secs(60),
    );
    let job = wait_done(&serve, &id).await;
    assert_eq!(job["rows_done"], 500);
    let book = download(&serve, &id, &dir).await;
    assert_eq!(book.sheet("late").len(), 501);
}
