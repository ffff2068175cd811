//! The store's part of address lookup, on SQLite and PostgreSQL: results with addresses, the
//! lookup cache, and the budget gate every process on one store shares.

use std::sync::Arc;

use geobatch::lookup::{Address, BudgetError, BudgetGate, LookupOutcome};
use geobatch::store::{CacheKey, JobFile, NewJob, Outcome, ResultStore, RowResult, Stored};

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
    store
        .create_job(&NewJob {
            id: "j",
            label: "a.csv",
            options: "{}",
            files: &files,
        })
        .await
        .unwrap();
    store.add_sheet("j", 0, "a", "t").await.unwrap();
    let rows = vec![
        RowResult {
            seq: 0,
            outcome: Outcome::Located {
                x: 126.9,
                y: 37.5,
                address: Some(address(2)),
            },
        },
        RowResult {
            seq: 1,
            outcome: Outcome::Located {
                x: 125.0,
                y: 32.0,
                address: None,
            },
        },
        RowResult {
            seq: 2,
            outcome: Outcome::Failed {
                column: None,
                raw: None,
                reason: "address provider rejected the request (HTTP 400): bad".into(),
            },
        },
    ];
    let stored = store.store_results("j", 0, &rows).await.unwrap();
    assert_eq!(stored, Stored { ok: 2, failed: 1 });
    assert_eq!(
        store.store_results("j", 0, &rows).await.unwrap(),
        Stored::default()
    );
    let back = store.results_page("j", None, 10).await.unwrap();
    let outcomes: Vec<Outcome> = back.into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        rows.iter().map(|r| r.outcome.clone()).collect::<Vec<_>>()
    );
    store.add_lookup_counts("j", 5, 7).await.unwrap();
    store.add_lookup_counts("j", 1, 0).await.unwrap();
    let job = store.job("j").await.unwrap().unwrap();
    assert_eq!((job.lookup_requests, job.lookup_cache_hits), (6, 7));

    // The cache: by provider and rounded point, fresh within the TTL, newest answer wins.
    let here = CacheKey::of(126.978_500_04, 37.566_5);
    assert_eq!(here, CacheKey::of(126.978_5, 37.566_500_01));
    let sea = CacheKey::of(125.0, 32.0);
    let before = geobatch::store::now_ms();
    store
        .cache_lookups(
            "kakao",
            &[
                (here, LookupOutcome::Found(address(1))),
                (sea, LookupOutcome::NoResult),
            ],
        )
        .await
        .unwrap();
    let got = store
        .cached_lookups("kakao", &[here, sea, CacheKey::of(1.0, 1.0)], before)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[&here], LookupOutcome::Found(address(1)));
    assert_eq!(got[&sea], LookupOutcome::NoResult);
    let other = store
        .cached_lookups("vworld", &[here, sea], before)
        .await
        .unwrap();
    assert!(other.is_empty());
    let stale = store
        .cached_lookups("kakao", &[here], geobatch::store::now_ms() + 1000)
        .await
        .unwrap();
    assert!(stale.is_empty(), "older than the TTL allows: not fresh");
    store
        .cache_lookups("kakao", &[(here, LookupOutcome::Found(address(3)))])
        .await
        .unwrap();
    let got = store.cached_lookups("kakao", &[here], 0).await.unwrap();
    assert_eq!(got[&here], LookupOutcome::Found(address(3)));
    let many: Vec<CacheKey> = (0..2500).map(|i| CacheKey::of(i as f64, 0.0)).collect();
    let answers: Vec<_> = many.iter().map(|k| (*k, LookupOutcome::NoResult)).collect();
    store.cache_lookups("p", &answers).await.unwrap();
    assert_eq!(
        store.cached_lookups("p", &many, 0).await.unwrap().len(),
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
