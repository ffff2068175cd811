//! The address lookup through its library API, against the fake provider.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use geobatch::lookup::{
    Address, BudgetGate, LocalBudget, Lookup, LookupConfig, LookupError, LookupOutcome,
    RetryPolicy, Secret,
};

use crate::fake_provider::{place, Behavior, FakeProvider, Script, KEY};

/// Inside a grid cell with a road address and a building (coordinates at cell centres, so no
/// rounding moves them to a neighbour).
const CITY_HALL: (f64, f64) = (126.9785, 37.5665);
/// A cell with a parcel address only.
const FIELD: (f64, f64) = (126.9785, 37.5695);
/// Outside the country: no address.
const SEA: (f64, f64) = (125.0, 32.0);

fn config(provider: &str, fake: &FakeProvider) -> LookupConfig {
    let mut c = LookupConfig::for_provider(provider).expect("a known provider");
    c.base_url = Some(fake.base_url.clone());
    c.key = Some(Secret::new(KEY));
    c.rate_per_sec = 500.0;
    c.timeout = Duration::from_millis(500);
    c.retry = RetryPolicy {
        max_retries: 5,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
        circuit_threshold: 3,
        circuit_cooldown: Duration::from_millis(300),
        circuit_cooldown_max: Duration::from_secs(2),
    };
    c
}

fn lookup(c: LookupConfig) -> Lookup {
    Lookup::new(c, Arc::new(LocalBudget::new())).expect("lookup config")
}

fn expected(p: (f64, f64)) -> Address {
    let place = place(p.0, p.1).expect("a point with an address");
    Address {
        address: Some(place.parcel),
        road_address: place.road,
        building_name: place.building,
    }
}

fn found(r: Result<LookupOutcome, LookupError>) -> Address {
    match r {
        Ok(LookupOutcome::Found(a)) => a,
        other => panic!("expected an address, got {other:?}"),
    }
}

#[tokio::test]
async fn kakao_answers_and_no_result() {
    let fake = FakeProvider::start(Script::ok()).await;
    let l = lookup(config("kakao", &fake));
    let a = found(l.lookup(CITY_HALL.0, CITY_HALL.1).await);
    assert_eq!(a, expected(CITY_HALL));
    assert!(a.road_address.is_some() && a.building_name.is_some());
    // `road_address: null` and `building_name: ""` read as none.
    let a = found(l.lookup(FIELD.0, FIELD.1).await);
    assert_eq!(a, expected(FIELD));
    assert_eq!((a.road_address, a.building_name), (None, None));
    assert_eq!(l.lookup(SEA.0, SEA.1).await, Ok(LookupOutcome::NoResult));

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    let r = &reqs[0];
    assert_eq!(r.path, "/v2/local/geo/coord2address.json");
    assert_eq!(r.param("x"), Some("126.9785"));
    assert_eq!(r.param("y"), Some("37.5665"));
    assert_eq!(
        r.header("authorization"),
        Some(format!("KakaoAK {KEY}").as_str())
    );
    assert!(!r.query.contains(KEY), "the key goes in the header only");
}

#[tokio::test]
async fn vworld_answers_and_no_result() {
    let fake = FakeProvider::start(Script::ok()).await;
    let l = lookup(config("vworld", &fake));
    assert_eq!(
        found(l.lookup(CITY_HALL.0, CITY_HALL.1).await),
        expected(CITY_HALL)
    );
    assert_eq!(found(l.lookup(FIELD.0, FIELD.1).await), expected(FIELD));
    assert_eq!(l.lookup(SEA.0, SEA.1).await, Ok(LookupOutcome::NoResult));
    fake.set_script(Script::steps([Behavior::Empty]));
    assert_eq!(
        l.lookup(CITY_HALL.0, CITY_HALL.1).await,
        Ok(LookupOutcome::NoResult)
    );

    let r = &fake.requests()[0];
    assert_eq!(r.path, "/req/address");
    for (k, v) in [
        ("service", "address"),
        ("request", "getAddress"),
        ("version", "2.0"),
        ("crs", "epsg:4326"),
        ("point", "126.9785,37.5665"),
        ("format", "json"),
        ("type", "both"),
        ("key", KEY),
    ] {
        assert_eq!(r.param(k), Some(v), "{k}");
    }
}

#[tokio::test]
async fn nominatim_answers_and_no_result() {
    let fake = FakeProvider::start(Script::ok()).await;
    let mut c = config("nominatim", &fake);
    c.key = None;
    let l = lookup(c);
    let a = found(l.lookup(CITY_HALL.0, CITY_HALL.1).await);
    let p = place(CITY_HALL.0, CITY_HALL.1).unwrap();
    let display = a.address.clone().unwrap();
    assert!(
        display.starts_with(p.building.as_deref().unwrap()) && display.ends_with("대한민국"),
        "{display}"
    );
    assert_eq!(
        a.road_address,
        Some(format!("{} {}", p.road_name, p.number))
    );
    assert_eq!(a.building_name, p.building);
    assert_eq!(l.lookup(SEA.0, SEA.1).await, Ok(LookupOutcome::NoResult));

    let r = &fake.requests()[0];
    assert_eq!(r.path, "/reverse");
    assert_eq!(r.param("format"), Some("jsonv2"));
    assert_eq!(r.param("lat"), Some("37.5665"));
    assert_eq!(r.param("lon"), Some("126.9785"));
    assert!(r.header("user-agent").unwrap().starts_with("geobatch/"));
}

#[tokio::test]
async fn template_reads_the_configured_pointers() {
    let fake = FakeProvider::start(Script::ok()).await;
    let mut c = config("template", &fake);
    c.config = Some(
        serde_json::from_str(
            r#"{
                "url": "/custom/reverse?lng={lon}&lat={lat}",
                "headers": {"X-Api-Key": "{key}", "Accept": "application/json"},
                "address": "/data/jibun",
                "road_address": "/data/road",
                "building_name": "/data/bldg"
            }"#,
        )
        .unwrap(),
    );
    let l = lookup(c.clone());
    assert_eq!(
        found(l.lookup(CITY_HALL.0, CITY_HALL.1).await),
        expected(CITY_HALL)
    );
    assert_eq!(found(l.lookup(FIELD.0, FIELD.1).await), expected(FIELD));
    // `"data": null`: every pointer misses.
    assert_eq!(l.lookup(SEA.0, SEA.1).await, Ok(LookupOutcome::NoResult));
    let r = &fake.requests()[0];
    assert_eq!(r.header("x-api-key"), Some(KEY));
    assert_eq!(r.param("lng"), Some("126.9785"));

    // An absolute URL works without a base URL.
    let mut t = c.config.clone().unwrap();
    t["url"] = format!("{}/custom/reverse?lng={{lon}}&lat={{lat}}", fake.base_url).into();
    c.config = Some(t);
    c.base_url = None;
    assert_eq!(
        found(lookup(c).lookup(CITY_HALL.0, CITY_HALL.1).await),
        expected(CITY_HALL)
    );
}

#[tokio::test]
async fn transient_failures_are_retried_until_found() {
    let fake = FakeProvider::start(Script::steps([
        Behavior::Status(500),
        Behavior::Reset,
        Behavior::Slow(Duration::from_secs(2)),
        Behavior::TooMany { retry_after: None },
        Behavior::Status(503),
    ]))
    .await;
    let l = lookup(config("kakao", &fake));
    assert_eq!(
        found(l.lookup(CITY_HALL.0, CITY_HALL.1).await),
        expected(CITY_HALL)
    );
    assert_eq!(fake.request_count(), 6);
    let s = l.stats();
    assert_eq!(
        (
            s.requests,
            s.retries,
            s.server_errors,
            s.timeouts,
            s.rate_limited
        ),
        (6, 5, 2, 1, 1),
        "{s:?}"
    );
    assert!(!l.circuit_open());
}

#[tokio::test]
async fn retries_give_up_as_unavailable() {
    let fake = FakeProvider::start(Script::always(Behavior::Status(502))).await;
    let mut c = config("vworld", &fake);
    c.retry.max_retries = 2;
    let l = lookup(c);
    let err = l.lookup(CITY_HALL.0, CITY_HALL.1).await.unwrap_err();
    assert!(
        matches!(&err, LookupError::Unavailable { reason } if reason.contains("HTTP 502")),
        "{err:?}"
    );
    assert!(!err.is_permanent() && !err.stops_job());
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn retry_after_is_obeyed() {
    let fake = FakeProvider::start(Script::steps([Behavior::TooMany {
        retry_after: Some("1".into()),
    }]))
    .await;
    let l = lookup(config("kakao", &fake));
    assert_eq!(
        found(l.lookup(CITY_HALL.0, CITY_HALL.1).await),
        expected(CITY_HALL)
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert_eq!(l.stats().rate_limited, 1);
}

#[tokio::test]
async fn a_retry_after_longer_than_allowed_pauses_the_circuit() {
    let fake = FakeProvider::start(Script::steps([Behavior::TooMany {
        retry_after: Some("120".into()),
    }]))
    .await;
    let l = lookup(config("kakao", &fake));
    let err = l.lookup(CITY_HALL.0, CITY_HALL.1).await.unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { .. }), "{err:?}");
    assert!(l.circuit_open());
    assert!(matches!(
        l.lookup(CITY_HALL.0, CITY_HALL.1).await,
        Err(LookupError::Unavailable { .. })
    ));
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn retries_take_budget_slots() {
    let fake = FakeProvider::start(Script::steps([Behavior::Status(500)])).await;
    let mut c = config("kakao", &fake);
    c.rate_per_sec = 5.0;
    let l = lookup(c);
    found(l.lookup(CITY_HALL.0, CITY_HALL.1).await);
    let reqs = fake.requests();
    let gap = reqs[1].at - reqs[0].at;
    // 5/s less the margin: slots about 206 ms apart, whatever the backoff says.
    assert!(gap >= Duration::from_millis(190), "retried after {gap:?}");
}

#[tokio::test]
async fn a_refused_key_stops_at_once() {
    let fake = FakeProvider::start(Script::ok()).await;
    let wrong = |p: &str| {
        let mut c = config(p, &fake);
        c.key = Some(Secret::new("not-the-key"));
        lookup(c)
    };

    let err = wrong("kakao")
        .lookup(CITY_HALL.0, CITY_HALL.1)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        LookupError::InvalidKey {
            provider: "kakao",
            status: 401,
            code: Some("AccessDeniedError".into()),
            hint: None
        }
    );
    assert!(err.stops_job());
    assert_eq!(fake.request_count(), 1);

    let err = wrong("vworld")
        .lookup(CITY_HALL.0, CITY_HALL.1)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        LookupError::InvalidKey {
            provider: "vworld",
            status: 200,
            code: Some("INVALID_KEY".into()),
            hint: None
        }
    );
    assert_eq!(fake.request_count(), 2);

    fake.set_script(Script::always(Behavior::InvalidKey));
    let mut c = config("nominatim", &fake);
    c.key = None;
    let err = lookup(c)
        .lookup(CITY_HALL.0, CITY_HALL.1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LookupError::InvalidKey { status: 403, .. }),
        "{err:?}"
    );
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn rejections_and_unreadable_answers_are_not_retried() {
    let fake = FakeProvider::start(Script::steps([Behavior::Status(400), Behavior::BadJson])).await;
    let l = lookup(config("kakao", &fake));
    let err = l.lookup(CITY_HALL.0, CITY_HALL.1).await.unwrap_err();
    assert!(
        matches!(&err, LookupError::Rejected { status: 400, reason } if reason.contains("InvalidArgument")),
        "{err:?}"
    );
    assert!(err.is_permanent());
    let err = l.lookup(CITY_HALL.0, CITY_HALL.1).await.unwrap_err();
    assert!(matches!(err, LookupError::Unparseable { .. }), "{err:?}");
    assert!(err.is_permanent());
    assert_eq!(fake.request_count(), 2);
    assert_eq!(l.stats().retries, 0);
}

#[tokio::test]
async fn the_circuit_opens_in_an_outage_and_closes_after_it() {
    let fake = FakeProvider::start(Script::always(Behavior::Status(503))).await;
    let mut c = config("kakao", &fake);
    c.retry.max_retries = 1;
    let l = lookup(c);
    let unavailable = |r: Result<LookupOutcome, LookupError>| {
        assert!(matches!(r, Err(LookupError::Unavailable { .. })), "{r:?}");
    };

    // Three lookups fail after their retry: the circuit opens.
    for _ in 0..3 {
        assert!(!l.circuit_open());
        unavailable(l.lookup(CITY_HALL.0, CITY_HALL.1).await);
    }
    assert_eq!(fake.request_count(), 6);
    assert!(l.circuit_open());
    // Open: lookups fail at once and nothing is sent.
    for _ in 0..5 {
        unavailable(l.lookup(CITY_HALL.0, CITY_HALL.1).await);
    }
    assert_eq!(fake.request_count(), 6);
    assert_eq!(l.stats().fast_failures, 5);

    // After the cool-down one probe goes out; it fails, so the circuit opens for longer.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(!l.circuit_open());
    unavailable(l.lookup(CITY_HALL.0, CITY_HALL.1).await);
    assert_eq!(fake.request_count(), 7);
    assert!(l.circuit_open());

    // The provider recovers; the next probe (after 600 ms) closes the circuit.
    fake.set_script(Script::ok());
    unavailable(l.lookup(CITY_HALL.0, CITY_HALL.1).await);
    assert_eq!(fake.request_count(), 7);
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert_eq!(
        found(l.lookup(CITY_HALL.0, CITY_HALL.1).await),
        expected(CITY_HALL)
    );
    assert!(!l.circuit_open());
    assert_eq!(found(l.lookup(FIELD.0, FIELD.1).await), expected(FIELD));
    assert_eq!(fake.request_count(), 9);
    assert_eq!(l.stats().circuit_opens, 2);
}

/// Four workers (four `Lookup`s, as four worker tasks or processes would have) share one
/// gate: the provider never sees more than the budget in any one-second window, and the
/// budget is used (the gate hands out at least 95 % of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_holds_across_four_workers() {
    const RATE: f64 = 10.0;
    let fake = FakeProvider::start(Script::ok()).await;
    let gate: Arc<dyn BudgetGate> = Arc::new(LocalBudget::new());
    let start = Instant::now();
    let run_for = Duration::from_millis(4000);
    let mut workers = Vec::new();
    for w in 0..4u32 {
        let mut c = config("kakao", &fake);
        c.rate_per_sec = RATE;
        let l = Lookup::new(c, gate.clone()).unwrap();
        workers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while start.elapsed() < run_for {
                let lon = 126.0005 + f64::from(w * 200 + n) * 0.001;
                found(l.lookup(lon, 37.5005).await);
                n += 1;
            }
            l.stats()
        }));
    }
    let mut forfeited = 0;
    for w in workers {
        forfeited += w.await.unwrap().slots_forfeited;
    }

    let mut times: Vec<Instant> = fake.requests().iter().map(|r| r.at).collect();
    times.sort();
    let n = times.len();
    assert!(n >= 30, "only {n} requests");
    let second = Duration::from_secs(1);
    let busiest = (0..n)
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < second)
                .count()
        })
        .max()
        .unwrap();
    let span = (times[n - 1] - times[0]).as_secs_f64();
    let sent = (n - 1) as f64 / span;
    // A slot is forfeited when this (busy, shared) test process did not get the CPU in time to
    // use it: the gate handed it out, and sending it late could have broken the first promise.
    let granted = (n - 1 + forfeited as usize) as f64 / span;
    let report = format!(
        "{n} requests, busiest second {busiest}, sent {sent:.2}/s, \
         granted {granted:.2}/s, {forfeited} slots forfeited"
    );
    eprintln!("budget: {report}");
    assert!(busiest <= RATE as usize, "{report}");
    assert!(granted >= 0.95 * RATE, "{report}");
    assert!(forfeited as usize <= n / 4, "{report}");
}

#[tokio::test]
async fn the_daily_quota_stops_lookups() {
    let fake = FakeProvider::start(Script::ok()).await;
    let mut c = config("kakao", &fake);
    c.daily_quota = Some(3);
    let l = lookup(c);
    for _ in 0..3 {
        found(l.lookup(CITY_HALL.0, CITY_HALL.1).await);
    }
    let err = l.lookup(CITY_HALL.0, CITY_HALL.1).await.unwrap_err();
    let day = 86_400_000i64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    match err {
        LookupError::QuotaExhausted {
            provider,
            resets_at_ms,
        } => {
            assert_eq!(provider, "kakao");
            assert_eq!(resets_at_ms, (now / day + 1) * day);
        }
        other => panic!("{other:?}"),
    }
    assert!(err_stops(&l).await);
    assert_eq!(fake.request_count(), 3);
}

async fn err_stops(l: &Lookup) -> bool {
    l.lookup(CITY_HALL.0, CITY_HALL.1)
        .await
        .is_err_and(|e| e.stops_job())
}

/// A log sink for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_key_shows_in_no_error_debug_or_log() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let texts = tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // VWorld carries the key in the query, which errors and logs could leak.
            let fake = FakeProvider::start(Script::steps([
                Behavior::Status(400), // its body echoes the request, key included
                Behavior::Reset,
                Behavior::Slow(Duration::from_secs(2)),
                Behavior::InvalidKey,
                Behavior::Status(500),
            ]))
            .await;
            let mut c = config("vworld", &fake);
            c.retry.max_retries = 0;
            c.retry.circuit_threshold = 100;
            let mut texts = vec![format!("{c:?}")];
            let l = lookup(c);
            texts.push(format!("{l:?}"));
            for _ in 0..5 {
                let err = l.lookup(CITY_HALL.0, CITY_HALL.1).await.unwrap_err();
                texts.push(err.to_string());
                texts.push(format!("{err:?}"));
            }
            // The leak, had scrubbing not happened, is real: the fake echoes the key.
            assert!(texts[2].contains("key=***"), "{}", texts[2]);
            assert_eq!(fake.request_count(), 5);
            texts
        })
    });
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("key=***"),
        "the request log line is there:\n{logs}"
    );
    for t in texts.iter().chain([&logs]) {
        assert!(!t.contains(KEY), "the key leaked: {t}");
    }
}
