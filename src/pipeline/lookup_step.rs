//! The worker's address-lookup step of a lookup job: converted points → addresses, from the
//! cache when it has a fresh answer, else from the provider (then cached).
//!
//! Identical points (rounded to 1e-7 degrees) within a batch are looked up once. Rows are
//! looked up concurrently only as far as the budget lets requests out: the `Lookup` paces them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use tokio::sync::OnceCell;

use super::halt::{invalid_key_message, quota_message, unavailable, Halt};
use super::worker::until_ok;
use super::{counters, JobError, Pipeline};
use crate::bus::{Bus, DLQ_TOPIC};
use crate::convert::crs::{Crs, Transform};
use crate::job::{Epsg, JobId, JobState, Outcome, RowResult, RowStatus};
use crate::lookup::{self, Answer, Lookup, LookupEnv, LookupError, LookupStats, PointKey, Query};
use crate::options::JobOptions;
use crate::store::{now_ms, ResultStore};

/// Lookups in flight per batch (the budget gate decides when each is sent).
const CONCURRENCY: usize = 8;

/// The columns a job's lookup adds after the position.
pub(super) fn added_columns(options: &JobOptions) -> &'static [&'static str] {
    if options.lookup.is_some() {
        &lookup::REVERSE_FIELDS
    } else if options.is_geocode() {
        &lookup::GEOCODE_COLUMNS
    } else {
        &[]
    }
}

type AnswerResult = Result<Answer, LookupError>;
/// One lookup's answer and whether a request was sent for it, awaited by every task that
/// wants it.
type SharedAnswer = Shared<BoxFuture<'static, (AnswerResult, bool)>>;

/// What every worker task of this process shares: one `Lookup` per provider and budget (its
/// pacing and circuit are the process's), the lookups in flight, the dead-letter topic.
#[derive(Default)]
pub(super) struct Lookups {
    by_identity: Mutex<HashMap<String, Arc<Lookup>>>,
    in_flight: Arc<InFlight>,
    pub(super) addresses_in_flight: Arc<super::geocode_step::InFlightAddresses>,
    dlq_created: OnceCell<()>,
}

impl Lookups {
    /// The job's lookup with this process's keys; None for a job without one.
    pub(super) fn for_job(
        &self,
        options: &JobOptions,
        env: &LookupEnv,
        store: &ResultStore,
    ) -> Result<Option<JobLookup>, JobError> {
        let Some(cfg) = lookup::job_config(options, env)? else {
            return Ok(None);
        };
        let provider = cfg.provider;
        let daily_quota = cfg.daily_quota;
        let lookup = self.shared(cfg, store)?;
        let target = Crs::from_epsg(options.target()).map_err(crate::convert::EngineError::from)?;
        let wgs84 = Crs::from_epsg(Epsg::WGS84).map_err(crate::convert::EngineError::from)?;
        Ok(Some(JobLookup {
            in_flight: self.in_flight.clone(),
            lookup,
            may_cache: provider.may_cache(),
            daily_quota,
            ttl_ms: options
                .cache_ttl_secs()
                .saturating_mul(1000)
                .min(i64::MAX as u64) as i64,
            to_wgs84: (target.epsg() != wgs84.epsg()).then(|| Transform::new(target, wgs84)),
        }))
    }

    /// This process's `Lookup` for a provider and budget: its pacing and circuit are shared by
    /// every job and worker task using the same.
    pub(super) fn shared(
        &self,
        cfg: lookup::LookupConfig,
        store: &ResultStore,
    ) -> Result<Arc<Lookup>, lookup::ConfigError> {
        let identity = format!(
            "{}|{}|{:?}",
            cfg.identity(),
            cfg.rate_per_sec,
            cfg.daily_quota
        );
        let mut lookups = self.by_identity.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = lookups.get(&identity) {
            return Ok(l.clone());
        }
        let gate: Arc<dyn lookup::BudgetGate> = Arc::new(store.clone());
        let l = Arc::new(Lookup::new(cfg, gate)?);
        lookups.insert(identity, l.clone());
        Ok(l)
    }

    /// This process's lookup counters, summed per provider.
    pub(super) fn stats(&self) -> Vec<(&'static str, LookupStats)> {
        let lookups = self.by_identity.lock().unwrap_or_else(|e| e.into_inner());
        let mut per: HashMap<&'static str, LookupStats> = HashMap::new();
        for l in lookups.values() {
            let (s, sum) = (l.stats(), per.entry(l.provider().name()).or_default());
            sum.requests += s.requests;
            sum.retries += s.retries;
            sum.rate_limited += s.rate_limited;
            sum.server_errors += s.server_errors;
            sum.timeouts += s.timeouts;
            sum.connect_errors += s.connect_errors;
            sum.circuit_opens += s.circuit_opens;
        }
        let mut out: Vec<_> = per.into_iter().collect();
        out.sort_by_key(|(p, _)| *p);
        out
    }
}

/// Lookups in flight in this process: a point another worker task is already asking about is
/// not asked again, its answer is shared (batches of one job often hold the same buildings).
#[derive(Default)]
pub(super) struct InFlight {
    lookups: Mutex<HashMap<(String, PointKey), SharedAnswer>>,
}

impl InFlight {
    /// The answer for `key`, and whether this call sent a request for it. A new lookup looks
    /// in the cache once more (another task may have finished the same point since the batch
    /// looked) and caches what it gets before it is no longer in flight, so two tasks of this
    /// process never both ask for one point.
    async fn lookup(
        &self,
        lookup: &Arc<Lookup>,
        store: &ResultStore,
        cache: Option<i64>,
        key: PointKey,
    ) -> (AnswerResult, bool) {
        let identity = lookup.identity().to_string();
        let (answer, mine) = {
            let mut map = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&(identity.clone(), key)) {
                Some(f) => (f.clone(), false),
                None => {
                    let (lookup, store, id) = (lookup.clone(), store.clone(), identity.clone());
                    let f = async move {
                        if let Some(fresh_since) = cache {
                            if let Some(answer) = cached(&store, &id, &[key], fresh_since)
                                .await
                                .ok()
                                .and_then(|mut hit| hit.remove(&key))
                            {
                                return (Ok(answer), false);
                            }
                        }
                        let (lon, lat) = key.degrees();
                        let answer = lookup.ask(&Query::Point { lon, lat }).await;
                        if let (Ok(a), Some(_)) = (&answer, cache) {
                            if let Err(e) = store_answers(&store, &id, &[(key, a.clone())]).await {
                                tracing::warn!("cannot cache an address answer: {e}");
                            }
                        }
                        (answer, true)
                    }
                    .boxed()
                    .shared();
                    map.insert((identity.clone(), key), f.clone());
                    (f, true)
                }
            }
        };
        let (result, sent) = answer.clone().await;
        // Whoever sees it finish removes it (the task that started it may be gone).
        let mut map = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&(identity.clone(), key))
            .is_some_and(|f| f.ptr_eq(&answer))
        {
            map.remove(&(identity, key));
        }
        (result, mine && sent)
    }
}

async fn cached(
    store: &ResultStore,
    identity: &str,
    keys: &[PointKey],
    fresh_since_ms: i64,
) -> Result<HashMap<PointKey, Answer>, crate::store::StoreError> {
    let by_query: HashMap<String, PointKey> = keys.iter().map(|k| (k.query(), *k)).collect();
    let queries: Vec<String> = by_query.keys().cloned().collect();
    let found = store
        .cached_answers(identity, &queries, fresh_since_ms)
        .await?;
    Ok(found
        .into_iter()
        .filter_map(|(q, json)| {
            // An answer this version cannot read is as good as none: it is asked again.
            let answer: Answer = serde_json::from_str(&json).ok()?;
            Some((*by_query.get(&q)?, answer))
        })
        .collect())
}

async fn store_answers(
    store: &ResultStore,
    identity: &str,
    answers: &[(PointKey, Answer)],
) -> Result<(), crate::store::StoreError> {
    let rows: Vec<(String, String)> = answers
        .iter()
        .map(|(k, a)| {
            (
                k.query(),
                serde_json::to_string(a).expect("answers serialize"),
            )
        })
        .collect();
    store.cache_answers(identity, &rows).await
}

/// A job's lookup as one worker runs it.
pub(super) struct JobLookup {
    in_flight: Arc<InFlight>,
    pub(super) lookup: Arc<Lookup>,
    /// The provider's terms allow keeping its answers.
    may_cache: bool,
    daily_quota: Option<u64>,
    /// Cached answers fetched earlier than this many milliseconds ago are not used.
    ttl_ms: i64,
    /// From the job's target CRS to WGS84; None when the target is WGS84.
    to_wgs84: Option<Transform>,
}

/// A batch's results with addresses, and what to tell about it.
pub(super) struct Looked {
    pub results: Vec<RowResult>,
    pub dead_letters: Vec<DeadLetter>,
    /// Lookups sent to the provider by this batch (one per distinct point neither cached nor
    /// being asked about by another worker; retries not counted).
    pub requests: u64,
    /// Rows answered by the cache, by an identical point of the same batch, or by another
    /// worker's lookup in flight.
    pub cache_hits: u64,
}

/// A row whose lookup failed for good, as published to `geobatch.dlq` (JSON).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeadLetter {
    pub job: JobId,
    pub sheet: u32,
    pub seq: u64,
    /// Reverse lookups: the point asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// Geocoding: the cleaned address asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub reason: String,
}

impl JobLookup {
    /// Looks up every converted point of `results`.
    pub(super) async fn apply(
        &self,
        store: &ResultStore,
        job: &JobId,
        sheet: u32,
        results: &[RowResult],
    ) -> Result<Looked, Halt> {
        // Each row's WGS84 point, or the reason it has none.
        let points: Vec<Option<Result<(f64, f64), String>>> = results
            .iter()
            .map(|r| {
                r.outcome.position().map(|(x, y)| match &self.to_wgs84 {
                    None => Ok((x, y)),
                    Some(t) => t
                        .convert(x, y)
                        .map_err(|e| format!("cannot transform to WGS84 for the lookup: {e}")),
                })
            })
            .collect();
        let keys: Vec<PointKey> = points
            .iter()
            .flatten()
            .flatten()
            .map(|&(lon, lat)| PointKey::of(lon, lat))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let identity = self.lookup.identity();
        let cache = self.may_cache.then(|| crate::store::now_ms() - self.ttl_ms);
        let mut answers: HashMap<PointKey, AnswerResult> = match cache {
            Some(fresh_since) => cached(store, identity, &keys, fresh_since)
                .await
                .map_err(|e| self.unavailable(&e.to_string()))?
                .into_iter()
                .map(|(k, v)| (k, Ok(v)))
                .collect(),
            None => HashMap::new(),
        };
        let misses: Vec<PointKey> = keys
            .iter()
            .filter(|k| !answers.contains_key(k))
            .copied()
            .collect();
        let mut sent = 0u64;
        let mut halt = None;
        let mut unavailable = None;
        {
            let (lookup, in_flight) = (&self.lookup, &self.in_flight);
            let mut answering = stream::iter(misses)
                .map(|k| async move {
                    let (answer, mine) = in_flight.lookup(lookup, store, cache, k).await;
                    (k, answer, mine)
                })
                .buffer_unordered(CONCURRENCY);
            while let Some((key, answer, mine)) = answering.next().await {
                sent += u64::from(mine);
                match answer {
                    Ok(a) => {
                        answers.insert(key, Ok(a));
                    }
                    Err(e @ LookupError::InvalidKey { .. }) => {
                        halt = Some(Halt::InvalidKey(self.invalid_key_message(&e)));
                        break;
                    }
                    Err(LookupError::QuotaExhausted { resets_at_ms, .. }) => {
                        halt = Some(Halt::Quota {
                            resets_at_ms,
                            message: self.quota_message(resets_at_ms),
                        });
                        break;
                    }
                    Err(e @ LookupError::Unavailable { .. }) => {
                        unavailable.get_or_insert(e.to_string());
                        answers.insert(key, Err(e));
                    }
                    Err(e) => {
                        answers.insert(key, Err(e));
                    }
                }
            }
        }
        let requests = sent;
        if let Some(halt) = halt {
            return Err(halt);
        }
        if let Some(reason) = unavailable {
            return Err(self.unavailable(&reason));
        }
        let mut dead_letters = Vec::new();
        let mut located = 0u64;
        let results = results
            .iter()
            .zip(points)
            .map(|(r, point)| {
                let outcome = match (point, r.outcome.position()) {
                    (Some(Ok((lon, lat))), Some(position)) => {
                        located += 1;
                        match &answers[&PointKey::of(lon, lat)] {
                            Ok(Answer::Found(found)) => Outcome::Resolved {
                                status: RowStatus::Ok,
                                point: Some(position),
                                fields: found
                                    .fields
                                    .iter()
                                    .map(|(k, v)| (k.clone(), v.clone()))
                                    .collect(),
                            },
                            Ok(Answer::NoResult) => Outcome::Resolved {
                                status: RowStatus::NoResult,
                                point: Some(position),
                                fields: Vec::new(),
                            },
                            Err(e) => {
                                dead_letters.push(DeadLetter {
                                    job: job.clone(),
                                    sheet,
                                    seq: r.seq,
                                    lon: Some(lon),
                                    lat: Some(lat),
                                    address: None,
                                    reason: e.to_string(),
                                });
                                Outcome::failed(e.to_string())
                            }
                        }
                    }
                    (Some(Err(reason)), _) => Outcome::failed(reason),
                    _ => r.outcome.clone(),
                };
                RowResult {
                    seq: r.seq,
                    outcome,
                }
            })
            .collect();
        Ok(Looked {
            results,
            dead_letters,
            requests,
            cache_hits: located.saturating_sub(requests),
        })
    }

    fn invalid_key_message(&self, e: &LookupError) -> String {
        invalid_key_message(&self.lookup, e)
    }

    /// The text a paused job shows.
    fn quota_message(&self, resets_at_ms: i64) -> String {
        quota_message(&self.lookup, self.daily_quota, resets_at_ms)
    }

    fn unavailable(&self, reason: &str) -> Halt {
        unavailable(&self.lookup, reason)
    }
}

impl Pipeline {
    /// Looks up the batch's points until that can be done: waits out an open circuit or a spent
    /// daily quota (the job shows `paused`), fails the job on a refused key (None). Rows whose
    /// lookup failed for good go to the dead-letter topic.
    pub(super) async fn look_up(
        &self,
        bus: &Bus,
        job: &JobId,
        sheet: u32,
        lookup: &JobLookup,
        results: Vec<RowResult>,
    ) -> Result<Option<Vec<RowResult>>, JobError> {
        self.drive_lookups(bus, job, || lookup.apply(&self.store, job, sheet, &results))
            .await
    }

    /// Runs a batch's lookups (`apply`) until they can be done: waits out an open circuit or a
    /// spent daily quota (the job shows `paused`), fails the job on a refused key (None). Rows
    /// whose lookup failed for good go to the dead-letter topic.
    pub(super) async fn drive_lookups<F, Fut>(
        &self,
        bus: &Bus,
        job: &JobId,
        mut apply: F,
    ) -> Result<Option<Vec<RowResult>>, JobError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Looked, Halt>>,
    {
        let mut unavailable =
            crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            // Another worker may have failed the job (a refused key): send nothing more for it.
            let state = self.store.job(job).await?.map(|j| j.state);
            if state.is_none_or(|s| s.is_finished()) {
                return Ok(None);
            }
            match apply().await {
                Ok(Looked {
                    results,
                    dead_letters,
                    requests,
                    cache_hits,
                }) => {
                    until_ok(job, "count lookups", || {
                        self.store.add_lookup_counts(job, requests, cache_hits)
                    })
                    .await;
                    counters::add(&self.counters.lookup_cache_hits, cache_hits);
                    for letter in &dead_letters {
                        self.dead_letter(bus, letter).await;
                    }
                    return Ok(Some(results));
                }
                Err(Halt::InvalidKey(msg)) => {
                    tracing::error!(job = %job, "{msg}");
                    self.store
                        .set_state(job, JobState::Failed, Some(&msg))
                        .await?;
                    self.bump();
                    return Ok(None);
                }
                Err(Halt::Quota {
                    resets_at_ms,
                    message,
                }) => {
                    let wait = Duration::from_millis((resets_at_ms - now_ms()).max(0) as u64);
                    self.wait_paused(job, &message, wait).await?;
                }
                Err(Halt::Unavailable { message, wait }) => {
                    // Only this job's partitions wait: the other jobs' go on.
                    let wait = unavailable.next_delay().max(wait);
                    let next = now_ms() + wait.as_millis() as i64;
                    let msg = format!("{message}; next try at {}", crate::merge::utc_text(next));
                    self.wait_paused(job, &msg, wait).await?;
                }
            }
        }
    }

    /// Shows the job `paused` with `msg` (why, and when it tries again) for `wait`, then
    /// `running` again.
    async fn wait_paused(&self, job: &JobId, msg: &str, wait: Duration) -> Result<(), JobError> {
        tracing::warn!(job = %job, "{msg}");
        self.store.pause(job, msg).await?;
        self.bump();
        tokio::time::sleep(wait).await;
        self.store.unpause(job).await?;
        self.bump();
        Ok(())
    }

    /// Publishes a row whose lookup failed for good to `geobatch.dlq` (no key in it: the
    /// reasons are scrubbed by the lookup).
    async fn dead_letter(&self, bus: &Bus, letter: &DeadLetter) {
        let payload = serde_json::to_vec(letter).expect("dead letter serializes");
        until_ok(&letter.job, "publish to the dead-letter topic", || async {
            self.lookups
                .dlq_created
                .get_or_try_init(|| bus.create_topic_named(DLQ_TOPIC))
                .await?;
            bus.send(DLQ_TOPIC, letter.job.as_str().as_bytes(), &payload)
                .await
        })
        .await;
    }
}
