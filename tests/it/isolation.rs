//! One job's trouble never holds up another: a lookup job whose provider is down waits alone,
//! `paused` with its reason and its next try, while a plain job submitted after it finishes;
//! the first finishes once the provider is back, every row of both exactly once.

use std::time::Duration;

use crate::fake_provider::{Behavior, FakeProvider, Script, KEY};
use crate::harness::*;

/// 40 points in the fake's country, each its own address.
fn lookup_rows() -> Vec<u8> {
    let mut csv = String::from("name,lon,lat\n");
    for i in 0..40 {
        let lon = 126.9005 + (i % 10) as f64 * 0.001;
        let lat = 37.5005 + (i / 10) as f64 * 0.001;
        csv.push_str(&format!("store {i},{lon:.4},{lat:.4}\n"));
    }
    csv.into_bytes()
}

#[tokio::test]
async fn a_job_whose_provider_is_down_waits_alone() {
    let dir = tempdir();
    let fake = FakeProvider::start(Script::always(Behavior::Status(503))).await;
    let serve = Serve::start(
        &dir,
        &[
            ("GEOBATCH_KAKAO_BASE_URL", fake.base_url.as_str()),
            ("KAKAO_REST_API_KEY", KEY),
            ("GEOBATCH_BATCH_ROWS", "10"),
        ],
    );
    let (status, reply) = upload(
        &serve,
        &[("stores.csv", lookup_rows())],
        &[("lookup", "kakao"), ("rate", "200")],
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let waiting = reply["id"].as_str().unwrap().to_string();
    // The provider's outage shows: paused, why, and when it tries again.
    let paused = wait_job(&serve, &waiting, Duration::from_secs(120), |j| {
        j["state"] == "paused"
    })
    .await;
    let reason = paused["message"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Kakao unavailable") && reason.contains("next try at"),
        "{paused}"
    );

    // A plain job submitted after it goes through while the first still waits.
    let rows = 20_000u64;
    let plain = upload_tm_rows(&serve, "many", rows).await;
    let done = wait_done(&serve, &plain).await;
    assert_eq!(done["rows_done"], rows);
    let first = job_status(&serve, &waiting).await;
    assert_ne!(
        first["state"], "done",
        "the waiting job is not done: {first}"
    );
    assert_eq!(first["rows_done"], 0, "no row of it was given up: {first}");
    let book = download_book(&serve, &plain, &dir).await;
    assert_rows_once_in_order(&book, "many", rows);

    // The provider is back: the first job finishes, every row once.
    fake.set_script(Script::ok());
    let done = wait_done(&serve, &waiting).await;
    assert_eq!(done["rows_done"], 40);
    assert_eq!(done["rows_failed"], 0, "{done}");
    let book = download_book(&serve, &waiting, &dir).await;
    let sheet = book.sheet("stores");
    assert_eq!(sheet.len(), 41);
    for (i, row) in sheet[1..].iter().enumerate() {
        assert_eq!(
            text(&row[0]),
            format!("store {i}"),
            "every row once, in order"
        );
        assert!(!text(&row[3]).is_empty(), "an address: {row:?}");
    }
}
