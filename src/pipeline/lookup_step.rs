//! The worker's address-lookup step of a lookup job: converted points → addresses, from the
//! cache when it has a fresh answer, else from the provider (then cached).
//!
//! Identical points (rounded to 1e-7 degrees) within a batch are looked up once. Rows are
//! looked up concurrently only as far as the budget lets requests out: the `Lookup` paces them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::convert::crs::Transform;
use crate::lookup::{Lookup, LookupError, LookupOutcome, Provider, KEY_FILE_ENV};
use crate::store::{CacheKey, Outcome, ResultStore, RowResult};

/// Where rows whose lookup failed for good are reported.
pub const DLQ_TOPIC: &str = "geobatch.dlq";

/// Lookups in flight per batch (the budget gate decides when each is sent).
const CONCURRENCY: usize = 8;

type Answer = Result<LookupOutcome, LookupError>;
/// One lookup's answer and whether a request was sent for it, awaited by every task that
/// wants it.
type SharedAnswer = Shared<BoxFuture<'static, (Answer, bool)>>;

/// Lookups in flight in this process: a point another worker task is already asking about is
/// not asked again, its answer is shared (batches of one job often hold the same buildings).
#[derive(Default)]
pub(super) struct InFlight {
    lookups: Mutex<HashMap<(Provider, CacheKey), SharedAnswer>>,
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
        fresh_since_ms: i64,
        key: CacheKey,
    ) -> (Answer, bool) {
        let provider = lookup.provider();
        let (answer, mine) = {
            let mut map = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&(provider, key)) {
                Some(f) => (f.clone(), false),
                None => {
                    let (lookup, store) = (lookup.clone(), store.clone());
                    let f = async move {
                        let name = provider.as_str();
                        if let Ok(mut hit) =
                            store.cached_lookups(name, &[key], fresh_since_ms).await
                        {
                            if let Some(outcome) = hit.remove(&key) {
                                return (Ok(outcome), false);
                            }
                        }
                        let (lon, lat) = key.degrees();
                        let answer = lookup.lookup(lon, lat).await;
                        if let Ok(outcome) = &answer {
                            if let Err(e) =
                                store.cache_lookups(name, &[(key, outcome.clone())]).await
                            {
                                tracing::warn!("cannot cache an address answer: {e}");
                            }
                        }
                        (answer, true)
                    }
                    .boxed()
                    .shared();
                    map.insert((provider, key), f.clone());
                    (f, true)
                }
            }
        };
        let (result, sent) = answer.clone().await;
        // Whoever sees it finish removes it (the task that started it may be gone).
        let mut map = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&(provider, key)).is_some_and(|f| f.ptr_eq(&answer)) {
            map.remove(&(provider, key));
        }
        (result, mine && sent)
    }
}

/// A job's lookup as one worker runs it.
pub(super) struct JobLookup {
    /// Shared by every worker task of the process.
    pub in_flight: Arc<InFlight>,
    /// Shared by every worker task of the process for the same provider and budget.
    pub lookup: Arc<Lookup>,
    pub provider: Provider,
    pub daily_quota: Option<u64>,
    /// Cached answers fetched earlier than this many milliseconds ago are not used.
    pub ttl_ms: i64,
    /// From the job's target CRS to WGS84; None when the target is WGS84.
    pub to_wgs84: Option<Transform>,
}

/// Why a batch's results cannot be stored yet (or ever).
pub(super) enum Halt {
    /// The provider refused the key: the job fails with this text.
    InvalidKey(String),
    /// The daily quota is spent; nothing is sent before this.
    Quota { resets_at_ms: i64 },
    /// The provider (or the store) cannot answer now: the batch is retried later.
    Unavailable(String),
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
    pub job: String,
    pub sheet: u32,
    pub seq: u64,
    pub lon: f64,
    pub lat: f64,
    pub reason: String,
}

impl JobLookup {
    /// Looks up every converted point of `results`.
    pub(super) async fn apply(
        &self,
        store: &ResultStore,
        job: &str,
        sheet: u32,
        results: &[RowResult],
    ) -> Result<Looked, Halt> {
        // Each row's WGS84 point, or the reason it has none.
        let points: Vec<Option<Result<(f64, f64), String>>> = results
            .iter()
            .map(|r| match r.outcome {
                Outcome::Point { x, y } => Some(match &self.to_wgs84 {
                    None => Ok((x, y)),
                    Some(t) => t
                        .convert(x, y)
                        .map_err(|e| format!("cannot transform to WGS84 for the lookup: {e}")),
                }),
                _ => None,
            })
            .collect();
        let keys: Vec<CacheKey> = points
            .iter()
            .flatten()
            .flatten()
            .map(|&(lon, lat)| CacheKey::of(lon, lat))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let fresh_since = crate::store::now_ms() - self.ttl_ms;
        let mut answers: HashMap<CacheKey, Result<LookupOutcome, LookupError>> = store
            .cached_lookups(self.provider.as_str(), &keys, fresh_since)
            .await
            .map_err(|e| Halt::Unavailable(e.to_string()))?
            .into_iter()
            .map(|(k, v)| (k, Ok(v)))
            .collect();
        let misses: Vec<CacheKey> = keys
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
                    let (answer, mine) = in_flight.lookup(lookup, store, fresh_since, k).await;
                    (k, answer, mine)
                })
                .buffer_unordered(CONCURRENCY);
            while let Some((key, answer, mine)) = answering.next().await {
                sent += u64::from(mine);
                match answer {
                    Ok(outcome) => {
                        answers.insert(key, Ok(outcome));
                    }
                    Err(e @ LookupError::InvalidKey { .. }) => {
                        halt = Some(Halt::InvalidKey(self.invalid_key_message(&e)));
                        break;
                    }
                    Err(LookupError::QuotaExhausted { resets_at_ms, .. }) => {
                        halt = Some(Halt::Quota { resets_at_ms });
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
            return Err(Halt::Unavailable(reason));
        }
        let mut dead_letters = Vec::new();
        let mut located = 0u64;
        let results = results
            .iter()
            .zip(points)
            .map(|(r, point)| {
                let outcome = match (point, &r.outcome) {
                    (Some(Ok((lon, lat))), &Outcome::Point { x, y }) => {
                        located += 1;
                        match &answers[&CacheKey::of(lon, lat)] {
                            Ok(LookupOutcome::Found(a)) => Outcome::Located {
                                x,
                                y,
                                address: Some(a.clone()),
                            },
                            Ok(LookupOutcome::NoResult) => Outcome::Located {
                                x,
                                y,
                                address: None,
                            },
                            Err(e) => {
                                dead_letters.push(DeadLetter {
                                    job: job.to_string(),
                                    sheet,
                                    seq: r.seq,
                                    lon,
                                    lat,
                                    reason: e.to_string(),
                                });
                                failed(e.to_string())
                            }
                        }
                    }
                    (Some(Err(reason)), _) => failed(reason),
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

    /// "KAKAO_REST_API_KEY was refused by Kakao (HTTP 401, -401) …".
    fn invalid_key_message(&self, e: &LookupError) -> String {
        let var = self.provider.key_env().unwrap_or(KEY_FILE_ENV);
        let detail = match e {
            LookupError::InvalidKey { status, code, .. } => format!(
                "HTTP {status}{}",
                code.as_deref()
                    .map(|c| format!(", {c}"))
                    .unwrap_or_default()
            ),
            other => other.to_string(),
        };
        format!(
            "{var} was refused by {} ({detail}): set a valid key for every geobatch worker and \
             retry the job; no more addresses are requested for it",
            self.provider.title()
        )
    }

    /// The text a paused job shows.
    pub(super) fn quota_message(&self, resets_at_ms: i64) -> String {
        let quota = self
            .daily_quota
            .map(|q| format!("daily quota of {q} requests"))
            .unwrap_or_else(|| "daily quota".into());
        format!(
            "{quota} for {} is spent; resumes at {}",
            self.provider,
            crate::lookup::fmt_unix_ms(resets_at_ms)
        )
    }
}

fn failed(reason: String) -> Outcome {
    Outcome::Failed {
        column: None,
        raw: None,
        reason,
    }
}
