//! The worker's geocoding step: each row's address, cleaned, → a position, asked of the job's
//! providers in order until one gives a building-, road- or parcel-level match.
//!
//! Per distinct cleaned address of a batch, each provider of the chain is asked for each
//! address kind it takes (VWorld: road, then parcel), its cache first when its terms allow
//! keeping answers (VWorld's do not: its answers are never stored). A region-level answer
//! (a 시/구/동, a road without a number) never gives a row its position: the next provider is
//! asked, and if none does better the row is `no_result` with `match_type` `region`. A row
//! whose address gives nothing tries its parcel alternative (a table with both a road and a
//! parcel address column). More than one candidate at the provider that answered is
//! `ambiguous` (the first candidate's position is kept).
//!
//! A refused key, a spent quota or a provider that cannot answer now stops the batch (as
//! the reverse lookup does: the job fails, pauses, or the batch is retried); a provider that
//! refuses one address (HTTP 400, an unreadable answer) is passed over for that address, and
//! if no provider answers it the row is an `error` row with every provider's reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::{self, StreamExt};

use super::halt::{invalid_key_message, key_refusal, quota_message, unavailable, Halt};
use super::lookup_step::{DeadLetter, Looked, Lookups};
use super::{JobError, Pipeline};
use crate::convert::crs::{Crs, Transform};
use crate::job::{Epsg, JobId, Outcome, RowAddress, RowPoint, RowResult, RowStatus};
use crate::lookup::clean::clean;
use crate::lookup::providers::AddressKind;
use crate::lookup::{self, Answer, Found, Lookup, LookupEnv, LookupError, Query};
use crate::options::JobOptions;
use crate::store::{now_ms, ResultStore};

/// Addresses resolved at once per batch (the budget gate decides when each is sent).
const CONCURRENCY: usize = 8;

/// What pre-flight asks each provider: a well-known address.
const PREFLIGHT_ADDRESS: &str = "서울특별시 중구 세종대로 110";
/// Pre-flight waits this long for a provider, then leaves it to the workers.
const PREFLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Pipeline {
    /// Geocoding: before a job is accepted, one request per provider of its chain (not from
    /// the cache) checks the key. A refused key (Kakao's 403 for an app without the Kakao Map
    /// service above all) refuses the job saying what to do, instead of a job of error rows;
    /// anything else (an outage, a slow answer) is left to the workers.
    pub(super) async fn preflight(&self, options: &JobOptions) -> Result<(), JobError> {
        let Some(geocode) = self
            .lookups
            .for_geocode(options, &self.lookup_env, &self.store)?
        else {
            return Ok(());
        };
        for g in &geocode.chain {
            let provider = g.lookup.provider();
            let kind = provider.address_kinds()[0];
            let query = Query::Address {
                text: PREFLIGHT_ADDRESS,
                kind,
            };
            match tokio::time::timeout(PREFLIGHT_WAIT, g.lookup.ask(&query)).await {
                Ok(Err(e @ LookupError::InvalidKey { .. })) => {
                    let refusal = key_refusal(&g.lookup, &e);
                    return Err(lookup::ConfigError::KeyRefused(refusal).into());
                }
                Ok(Err(e)) => tracing::warn!(provider = provider.name(), "pre-flight: {e}"),
                Ok(Ok(_)) => {}
                Err(_) => tracing::warn!(provider = provider.name(), "pre-flight: no answer yet"),
            }
        }
        Ok(())
    }
}

/// One provider of a job's chain.
struct Geocoder {
    lookup: Arc<Lookup>,
    /// The provider's terms allow keeping its answers.
    may_cache: bool,
    daily_quota: Option<u64>,
}

/// A job's geocoding as one worker runs it.
pub(super) struct JobGeocode {
    chain: Vec<Geocoder>,
    in_flight: Arc<InFlightAddresses>,
    /// Cached answers fetched earlier than this many milliseconds ago are not used.
    ttl_ms: i64,
    /// From WGS84 to the job's target CRS; None when the target is WGS84.
    to_target: Option<Transform>,
}

impl Lookups {
    /// The job's geocoding chain with this process's keys; None for a job without one.
    pub(super) fn for_geocode(
        &self,
        options: &JobOptions,
        env: &LookupEnv,
        store: &ResultStore,
    ) -> Result<Option<JobGeocode>, JobError> {
        let configs = lookup::geocode_configs(options, env)?;
        if configs.is_empty() {
            return Ok(None);
        }
        let chain = configs
            .into_iter()
            .map(|cfg| {
                let (may_cache, daily_quota) = (cfg.provider.may_cache(), cfg.daily_quota);
                Ok(Geocoder {
                    lookup: self.shared(cfg, store)?,
                    may_cache,
                    daily_quota,
                })
            })
            .collect::<Result<Vec<_>, lookup::ConfigError>>()?;
        let to_target = match options.target() {
            Epsg::WGS84 => None,
            target => {
                let crs = |e| Crs::from_epsg(e).map_err(crate::convert::EngineError::from);
                Some(Transform::new(crs(Epsg::WGS84)?, crs(target)?))
            }
        };
        Ok(Some(JobGeocode {
            chain,
            in_flight: self.addresses_in_flight.clone(),
            ttl_ms: options
                .cache_ttl_secs()
                .saturating_mul(1000)
                .min(i64::MAX as u64) as i64,
            to_target,
        }))
    }
}

type AskResult = (Result<Answer, LookupError>, Asked);
type SharedAsk = Shared<BoxFuture<'static, AskResult>>;

/// How an answer was had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    Cache,
    Request,
}

/// Addresses being asked about in this process: a worker task wanting the same provider's
/// answer for the same address waits for it instead of asking again (batches of one job, and
/// of jobs over the same file, hold the same addresses).
#[derive(Default)]
pub(super) struct InFlightAddresses {
    asks: Mutex<HashMap<(String, String), SharedAsk>>,
}

impl InFlightAddresses {
    /// One provider's answer for one address and kind: from the cache when its terms allow
    /// (looked at again here: another task may just have stored it), else asked, then cached.
    /// The second value says whether this call got it from the cache or sent a request; a
    /// call that waited for another's answer counts as a cache hit.
    async fn ask(
        &self,
        g: &Geocoder,
        store: &ResultStore,
        fresh_since: i64,
        text: &str,
        kind: AddressKind,
    ) -> AskResult {
        let key = (g.lookup.identity().to_string(), cache_query(text, kind));
        let (answer, mine) = {
            let mut asks = self.asks.lock().unwrap_or_else(|e| e.into_inner());
            match asks.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    let (lookup, store, may_cache) = (g.lookup.clone(), store.clone(), g.may_cache);
                    let (identity, query, text) = (key.0.clone(), key.1.clone(), text.to_string());
                    let f = async move {
                        if may_cache {
                            if let Some(a) = store
                                .cached_answers(
                                    &identity,
                                    std::slice::from_ref(&query),
                                    fresh_since,
                                )
                                .await
                                .ok()
                                .and_then(|mut hit| hit.remove(&query))
                                .and_then(|json| serde_json::from_str::<Answer>(&json).ok())
                            {
                                return (Ok(a), Asked::Cache);
                            }
                        }
                        let answer = lookup.ask(&Query::Address { text: &text, kind }).await;
                        if let (Ok(a), true) = (&answer, may_cache) {
                            let json = serde_json::to_string(a).expect("answers serialize");
                            if let Err(e) = store.cache_answers(&identity, &[(query, json)]).await {
                                tracing::warn!("cannot cache a geocoding answer: {e}");
                            }
                        }
                        (answer, Asked::Request)
                    }
                    .boxed()
                    .shared();
                    asks.insert(key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        let (result, asked) = answer.clone().await;
        // Whoever sees it finish removes it (the task that started it may be gone).
        let mut asks = self.asks.lock().unwrap_or_else(|e| e.into_inner());
        if asks.get(&key).is_some_and(|f| f.ptr_eq(&answer)) {
            asks.remove(&key);
        }
        (result, if mine { asked } else { Asked::Cache })
    }
}

/// What the chain made of one cleaned address.
#[derive(Clone, Debug, Default)]
struct Resolution {
    /// The first match precise enough to give a position, and the provider that gave it.
    found: Option<(Found, &'static str)>,
    /// Else the first region-level answer.
    region: Option<(Found, &'static str)>,
    /// Why providers that could not answer this address did not.
    errors: Vec<String>,
    requests: u64,
    cache_hits: u64,
}

/// The cache's query text for an address: its kind and the cleaned text (a point's query is
/// `lon,lat` in 1e-7 degrees: the two never meet).
fn cache_query(text: &str, kind: AddressKind) -> String {
    let kind = match kind {
        AddressKind::Any => "any",
        AddressKind::Road => "road",
        AddressKind::Parcel => "parcel",
    };
    format!("address:{kind}:{text}")
}

impl JobGeocode {
    /// Whether the job still asks this chain (a retry may give it another).
    pub(super) async fn is_current(
        &self,
        store: &ResultStore,
        job: &JobId,
    ) -> Result<bool, JobError> {
        let Some(record) = store.job(job).await? else {
            return Ok(true);
        };
        let chain = self.chain.iter().map(|g| g.lookup.provider().name());
        Ok(chain.eq(record.options.geocoders()))
    }

    /// Asks the chain about one cleaned address.
    async fn resolve(
        &self,
        store: &ResultStore,
        text: &str,
        hint: AddressKind,
    ) -> Result<Resolution, Halt> {
        let mut res = Resolution::default();
        let fresh_since = now_ms() - self.ttl_ms;
        for g in &self.chain {
            let provider = g.lookup.provider();
            let mut kinds = provider.address_kinds().to_vec();
            if hint == AddressKind::Parcel {
                // A parcel address is asked as one first.
                kinds.sort_by_key(|k| *k != AddressKind::Parcel);
            }
            for kind in kinds {
                let (answer, asked) = self.in_flight.ask(g, store, fresh_since, text, kind).await;
                match asked {
                    Asked::Cache => res.cache_hits += 1,
                    Asked::Request => res.requests += 1,
                }
                let answer = match answer {
                    Ok(a) => a,
                    Err(e) => match self.halt(g, e) {
                        Ok(reason) => {
                            res.errors.push(format!("{}: {reason}", provider.name()));
                            break;
                        }
                        Err(halt) => return Err(halt),
                    },
                };
                match answer {
                    Answer::Found(f)
                        if f.point.is_some() && f.match_type.is_some_and(|m| m.locates()) =>
                    {
                        res.found = Some((f, provider.name()));
                        return Ok(res);
                    }
                    Answer::Found(f) => {
                        res.region.get_or_insert((f, provider.name()));
                    }
                    Answer::NoResult => {}
                }
            }
        }
        Ok(res)
    }

    /// A failure that stops the batch (a refused key, a spent quota, a provider that cannot
    /// answer now), or the reason this provider cannot answer this address.
    fn halt(&self, g: &Geocoder, e: LookupError) -> Result<String, Halt> {
        match e {
            LookupError::InvalidKey { .. } => {
                Err(Halt::InvalidKey(invalid_key_message(&g.lookup, &e)))
            }
            LookupError::QuotaExhausted { resets_at_ms, .. } => Err(Halt::Quota {
                resets_at_ms,
                message: quota_message(&g.lookup, g.daily_quota, resets_at_ms),
            }),
            LookupError::Unavailable { .. } => Err(unavailable(&g.lookup, &e.to_string())),
            other => Ok(other.to_string()),
        }
    }

    /// Geocodes a batch's rows (`rows[i]`'s address is `addresses[i]`).
    pub(super) async fn apply(
        &self,
        store: &ResultStore,
        job: &JobId,
        sheet: u32,
        rows: &[RowPoint],
        addresses: &[RowAddress],
    ) -> Result<Looked, Halt> {
        if addresses.len() != rows.len() {
            let results = rows
                .iter()
                .map(|r| RowResult {
                    seq: r.seq,
                    outcome: Outcome::failed("the row came without its address"),
                })
                .collect();
            return Ok(Looked {
                results,
                dead_letters: Vec::new(),
                requests: 0,
                cache_hits: 0,
            });
        }
        // Each row's cleaned queries in order (its address, then its parcel alternative), or
        // why it has none.
        let queries: Vec<Result<Vec<(String, AddressKind)>, String>> = addresses
            .iter()
            .map(|a| {
                let main = clean(&a.text);
                let alt = a.alternative.as_deref().map(clean);
                let mut q: Vec<(String, AddressKind)> = Vec::new();
                if let Ok(c) = &main {
                    q.push((c.text.clone(), c.kind));
                }
                if let Some(Ok(c)) = &alt {
                    if !q.iter().any(|(t, _)| *t == c.text) {
                        q.push((c.text.clone(), AddressKind::Parcel));
                    }
                }
                match (q.is_empty(), main) {
                    (false, _) => Ok(q),
                    (true, Err(e)) => Err(e.to_string()),
                    (true, Ok(_)) => Err("no address".into()),
                }
            })
            .collect();
        let mut distinct: Vec<(String, AddressKind)> =
            queries.iter().flatten().flatten().cloned().collect();
        distinct.sort_by(|a, b| a.0.cmp(&b.0).then((a.1 as u8).cmp(&(b.1 as u8))));
        distinct.dedup();
        let asked = distinct.len() as u64;
        let mut resolved: HashMap<(String, AddressKind), Resolution> = HashMap::new();
        let mut answering = stream::iter(distinct)
            .map(|(text, kind)| async move {
                let r = self.resolve(store, &text, kind).await;
                ((text, kind), r)
            })
            .buffer_unordered(CONCURRENCY);
        let (mut requests, mut cache_hits) = (0u64, 0u64);
        while let Some((key, r)) = answering.next().await {
            let r = r?;
            requests += r.requests;
            cache_hits += r.cache_hits;
            resolved.insert(key, r);
        }
        drop(answering);
        let mut dead_letters = Vec::new();
        let mut row_queries = 0u64;
        let results = rows
            .iter()
            .zip(queries)
            .map(|(r, q)| {
                let outcome = match q {
                    Err(reason) => Outcome::failed(reason),
                    Ok(q) => {
                        row_queries += 1;
                        let of: Vec<&Resolution> =
                            q.iter().filter_map(|k| resolved.get(k)).collect();
                        let outcome = self.outcome(&of);
                        if let Outcome::Failed(e) = &outcome {
                            dead_letters.push(DeadLetter {
                                job: job.clone(),
                                sheet,
                                seq: r.seq,
                                lon: None,
                                lat: None,
                                address: q.first().map(|(t, _)| t.clone()),
                                reason: e.reason.clone(),
                            });
                        }
                        outcome
                    }
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
            // Rows answered by the cache, or by an identical address of the same batch.
            cache_hits: cache_hits + row_queries.saturating_sub(asked),
        })
    }

    /// A row's outcome from what the chain made of its queries, in order.
    fn outcome(&self, of: &[&Resolution]) -> Outcome {
        let fields = |f: &Found, provider: &str| {
            let mut out: Vec<(String, String)> = Vec::new();
            if let Some(m) = f.fields.get("matched_address") {
                out.push(("matched_address".into(), m.clone()));
            }
            if let Some(t) = f.match_type {
                out.push(("match_type".into(), t.as_str().into()));
            }
            out.push(("provider".into(), provider.to_string()));
            out.push(("candidates".into(), f.candidates.to_string()));
            out
        };
        if let Some((f, provider)) = of.iter().find_map(|r| r.found.as_ref()) {
            let Some((lon, lat)) = f.point else {
                return Outcome::failed("the match has no position");
            };
            let point = match &self.to_target {
                None => (lon, lat),
                Some(t) => match t.convert(lon, lat) {
                    Ok(p) => p,
                    Err(e) => return Outcome::failed(format!("cannot transform the match: {e}")),
                },
            };
            return Outcome::Resolved {
                status: if f.candidates > 1 {
                    RowStatus::Ambiguous
                } else {
                    RowStatus::Ok
                },
                point: Some(point),
                fields: fields(f, provider),
            };
        }
        if let Some((f, provider)) = of.iter().find_map(|r| r.region.as_ref()) {
            return Outcome::Resolved {
                status: RowStatus::NoResult,
                point: None,
                fields: fields(f, provider),
            };
        }
        let errors: Vec<&str> = of
            .iter()
            .flat_map(|r| r.errors.iter().map(String::as_str))
            .collect();
        if errors.is_empty() {
            Outcome::Resolved {
                status: RowStatus::NoResult,
                point: None,
                fields: Vec::new(),
            }
        } else {
            Outcome::failed(errors.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_queries_never_meet_point_queries() {
        let q = cache_query("서울 중구 세종대로 110", AddressKind::Road);
        assert_eq!(q, "address:road:서울 중구 세종대로 110");
        assert_ne!(
            q,
            cache_query("서울 중구 세종대로 110", AddressKind::Parcel)
        );
        assert!(!lookup::PointKey::of(127.0, 37.5)
            .query()
            .starts_with("address:"));
    }
}
