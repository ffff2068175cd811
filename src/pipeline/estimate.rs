//! What a lookup or geocoding job has asked so far, and an estimate of what is left.

use serde::Serialize;

use crate::store::JobRecord;

/// A lookup or geocoding job's requests so far and what is left, at its pace so far.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LookupEstimate {
    /// Requests sent to the providers for this job so far.
    pub requests: u64,
    /// Rows answered by the cache (or by an identical address or point of the same batch).
    pub cache_hits: u64,
    /// The requests the rows left will need at this job's rate of requests per row so far
    /// (one per row left while none is done): distinct addresses left, as far as seen.
    pub requests_left_estimate: u64,
    /// Those requests at the budget (the first provider's), in seconds.
    pub seconds_left_estimate: u64,
    /// With a daily quota: UTC days those requests span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left_estimate: Option<u64>,
}

impl LookupEstimate {
    /// For a job with `done` rows resolved; None for a job without lookups.
    pub fn of(job: &JobRecord, done: u64) -> Option<LookupEstimate> {
        let options = &job.options;
        let provider = match (&options.lookup, options.geocoders().first()) {
            (Some(p), _) => p.as_str(),
            (None, Some(p)) if options.is_geocode() => p,
            _ => return None,
        };
        let rate = options
            .rate
            .or_else(|| crate::lookup::providers::find(provider).map(|p| p.default_rate_per_sec()))
            .unwrap_or(1.0);
        let left = job.total_rows.unwrap_or(done).saturating_sub(done);
        let asked = job.lookup_requests + job.lookup_cache_hits;
        let requests_left = if asked == 0 {
            left
        } else {
            (left as f64 * job.lookup_requests as f64 / asked as f64).ceil() as u64
        };
        Some(LookupEstimate {
            requests: job.lookup_requests,
            cache_hits: job.lookup_cache_hits,
            requests_left_estimate: requests_left,
            seconds_left_estimate: (requests_left as f64 / rate).ceil() as u64,
            days_left_estimate: options
                .daily_quota
                .map(|q| requests_left.div_ceil(q.max(1))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, JobState};
    use crate::options::{JobOptions, ReadOptions};

    fn job(options: JobOptions, requests: u64, cache_hits: u64) -> JobRecord {
        JobRecord {
            id: JobId::random(),
            label: "a.csv".into(),
            state: JobState::Running,
            options,
            source_crs: None,
            operation: None,
            total_rows: Some(30_000),
            message: None,
            output_path: None,
            created_ms: 0,
            published_ms: None,
            resolved_ms: None,
            finished_ms: None,
            lookup_requests: requests,
            lookup_cache_hits: cache_hits,
        }
    }

    #[test]
    fn what_is_left_goes_at_the_pace_so_far() {
        let geocode = JobOptions {
            read: ReadOptions {
                geocode: Some(vec![]),
                ..ReadOptions::default()
            },
            daily_quota: Some(1_000),
            ..JobOptions::default()
        };
        // Nothing done: every row left may need a request; Kakao's 10/s; 3 days of quota.
        let e = LookupEstimate::of(&job(geocode.clone(), 0, 0), 0).unwrap();
        assert_eq!(e.requests_left_estimate, 30_000);
        assert_eq!(e.seconds_left_estimate, 3_000);
        assert_eq!(e.days_left_estimate, Some(30));
        // A tenth done, one request in ten rows: 2,700 more requests.
        let e = LookupEstimate::of(&job(geocode, 300, 2_700), 3_000).unwrap();
        assert_eq!((e.requests, e.cache_hits), (300, 2_700));
        assert_eq!(e.requests_left_estimate, 2_700);
        assert_eq!(e.seconds_left_estimate, 270);
        assert_eq!(e.days_left_estimate, Some(3));
        // No lookup, no estimate.
        assert_eq!(
            LookupEstimate::of(&job(JobOptions::default(), 0, 0), 0),
            None
        );
    }
}
