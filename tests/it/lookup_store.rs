//! The store's part of address lookup, on SQLite and PostgreSQL: results with addresses, the
//! lookup cache, and the budget gate every process on one store shares.

use std::sync::Arc;

use geobatch::job::{Fields, JobId, Outcome, RowResult, RowStatus};
use geobatch::lookup::{Address, Answer, BudgetError, BudgetGate, PointKey};
use geobatch::options::JobOptions;
use geobatch::store::{JobFile, NewJob, NewSheet, ResultStore, Stored};

use crate::harness::*;

fn address(n: u32) -> Address {
    Address {
        address: Some(format!("서울 중구 태평로1가 {n}")),
        road_address: n
            .is_multiple_of(2)
            .then(|| format!("서울 중구 세종대로 {n}")),
        building_name: None,
    }
}

/// The columns a reverse lookup stores.
fn fields(a: &Address) -> Fields {
    [
        ("address", &a.address),
        ("road_address", &a.road_address),
        ("building_name", &a.building_name),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
    .collect()
}

async fn exercise(store: &ResultStore) {
    // Results of a lookup job: ok with an address, no_result, error; counters move once.
    let files = [JobFile {
        file_no: 0,
        label: "a.csv".into(),
        path: "/nowhere/a.csv".into(),
        owned: false,
        layout: None,
        rows: None,
    }];
    let id = JobId::random();
    store
        .create_job(&NewJob {
            id: &id,
            label: "a.csv",
            options: &JobOptions::default(),
            files: &files,
        })
        .await
        .unwrap();
    store
        .add_sheet(
            &id,
            &NewSheet {
                sheet_no: 0,
                name: "a",
                topic: "t",
                file_no: 0,
                table_no: 0,
            },
        )
        .await
        .unwrap();
    let rows = vec![
        RowResult {
            seq: 0,
            outcome: Outcome::Resolved {
                status: RowStatus::Ok,
                point: Some((126.9, 37.5)),
                fields: fields(&address(2)),
            },
        },
        RowResult {
            seq: 1,
            outcome: Outcome::Resolved {
                status: RowStatus::NoResult,
                point: Some((125.0, 32.0)),
                fields: vec![],
            },
        },
        RowResult {
            seq: 2,
            outcome: Outcome::failed("address provider rejected the request (HTTP 400): bad"),
        },
    ];
    let stored = store.store_results(&id, 0, &rows).await.unwrap();
    assert_eq!(stored, Stored { ok: 2, failed: 1 });
    assert_eq!(
        store.store_results(&id, 0, &rows).await.unwrap(),
        Stored::default()
    );
    let back = store.results_page(&id, None, 10).await.unwrap();
    let outcomes: Vec<Outcome> = back.into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        rows.iter().map(|r| r.outcome.clone()).collect::<Vec<_>>()
    );
    store.add_lookup_counts(&id, 5, 7).await.unwrap();
    store.add_lookup_counts(&id, 1, 0).await.unwrap();
    let job = store.job(&id).await.unwrap().unwrap();
    assert_eq!((job.lookup_requests, job.lookup_cache_hits), (6, 7));

    // The cache: by provider and rounded point, fresh within the TTL, newest answer wins.
    let here = PointKey::of(126.978_500_04, 37.566_5);
    assert_eq!(here, PointKey::of(126.978_5, 37.566_500_01));
    let sea = PointKey::of(125.0, 32.0);
    let answer = |a: &Address| {
        serde_json::to_string(&Answer::reverse(
            a.address.clone(),
            a.road_address.clone(),
            a.building_name.clone(),
        ))
        .unwrap()
    };
    let no_result = serde_json::to_string(&Answer::NoResult).unwrap();
    let before = geobatch::store::now_ms();
    store
        .cache_answers(
            "kakao",
            &[
                (here.query(), answer(&address(1))),
                (sea.query(), no_result.clone()),
            ],
        )
        .await
        .unwrap();
    let queries = [here.query(), sea.query(), PointKey::of(1.0, 1.0).query()];
    let got = store
        .cached_answers("kakao", &queries, before)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[&here.query()], answer(&address(1)));
    assert_eq!(got[&sea.query()], no_result);
    let other = store
        .cached_answers("vworld", &queries, before)
        .await
        .unwrap();
    assert!(other.is_empty());
    let stale = store
        .cached_answers("kakao", &[here.query()], geobatch::store::now_ms() + 1000)
        .await
        .unwrap();
    assert!(stale.is_empty(), "older than the TTL allows: not fresh");
    store
        .cache_answers("kakao", &[(here.query(), answer(&address(3)))])
        .await
        .unwrap();
    let got = store
        .cached_answers("kakao", &[here.query()], 0)
        .await
        .unwrap();
    assert_eq!(got[&here.query()], answer(&address(3)));
    assert_eq!(store.cached_answer_count("kakao").await.unwrap(), 2);
    let many: Vec<String> = (0..2500)
        .map(|i| PointKey::of(i as f64, 0.0).query())
        .collect();
    let answers: Vec<_> = many
        .iter()
        .map(|k| (k.clone(), no_result.clone()))
        .collect();
    store.cache_answers("p", &answers).await.unwrap();
    assert_eq!(
        store.cached_answers("p", &many, 0).await.unwrap().len(),
        2500
    );

    // The budget: slots an interval apart whoever asks (two handles on one store stand for
    // two processes), and the daily quota.
    let gate: Arc<dyn BudgetGate> = Arc::new(store.clone());
    let mut slots = Vec::new();
    for _ in 0..10 {
        slots.push(gate.reserve("kakao", 50.0, None).await.unwrap());
    }
    for pair in slots.windows(2) {
        let gap = pair[1].at_ms - pair[0].at_ms;
        assert!((gap - 50.0).abs() < 1e-6, "{gap}");
    }
    // The wait is measured on the gate's clock: slot minus wait is when it answered, which is
    // no earlier than the first slot (granted at once).
    let answered = |s: &geobatch::lookup::Slot| s.at_ms - s.wait.as_secs_f64() * 1000.0;
    assert!(answered(&slots[9]) >= slots[0].at_ms - 1.0, "{slots:?}");
    for _ in 0..3 {
        gate.reserve("vworld", 0.0, Some(3)).await.unwrap();
    }
    match gate.reserve("vworld", 0.0, Some(3)).await {
        Err(BudgetError::QuotaExhausted { resets_at_ms }) => {
            let now = geobatch::store::now_ms();
            assert!(resets_at_ms > now && resets_at_ms <= now + 86_400_000);
            assert_eq!(resets_at_ms % 86_400_000, 0);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn lookup_state_behaves_the_same_on_sqlite_and_postgres() {
    let dir = tempdir();
    let sqlite = ResultStore::open(dir.path(), None).await.unwrap();
    exercise(&sqlite).await;
    let db = PgDb::create().await;
    let pg = ResultStore::open(dir.path(), Some(&db.url)).await.unwrap();
    exercise(&pg).await;
}

/// Two stores opened on one SQLite file (two processes) reserving at once: the slots they
/// get, together, keep the interval; the second waits for the first's.
#[tokio::test]
async fn the_budget_is_shared_by_every_handle_on_one_store() {
    let dir = tempdir_sqlite();
    let a = ResultStore::open(dir.path(), None).await.unwrap();
    let b = ResultStore::open(dir.path(), None).await.unwrap();
    let reserve = |s: ResultStore| {
        tokio::spawn(async move {
            let mut at = Vec::new();
            for _ in 0..20 {
                at.push(s.reserve("nominatim", 20.0, None).await.unwrap().at_ms);
            }
            at
        })
    };
    let (x, y) = (reserve(a), reserve(b));
    let mut all = x.await.unwrap();
    all.extend(y.await.unwrap());
    all.sort_by(f64::total_cmp);
    for pair in all.windows(2) {
        assert!(pair[1] - pair[0] >= 20.0 - 1e-6, "{all:?}");
    }
}
