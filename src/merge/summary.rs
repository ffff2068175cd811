//! The job described in key/value lines: options, CRSs, the operation applied, counts and
//! times. The workbook's Summary sheet shows them; other outputs may carry them too.

use super::MergeCounts;
use crate::convert::CrsInfo;
use crate::job::Layout;
use crate::lookup::clean::CleanStep;
use crate::store::{now_ms, JobFile, JobRecord, SheetRecord};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub lines: Vec<(String, String)>,
}

impl Summary {
    pub fn of_job(
        job: &JobRecord,
        files: &[JobFile],
        layouts: &[Layout],
        sheets: &[SheetRecord],
        source: &CrsInfo,
        target: &CrsInfo,
        counts: &MergeCounts,
    ) -> Summary {
        let mut rows: Vec<(String, String)> = vec![
            ("geobatch".into(), env!("CARGO_PKG_VERSION").into()),
            ("job".into(), job.id.to_string()),
        ];
        for (f, layout) in files.iter().zip(layouts) {
            rows.push(("file".into(), describe_file(&f.label, layout)));
        }
        let options = &job.options;
        let opt = |v: Option<String>| v.unwrap_or_else(|| "(not given)".into());
        rows.push((
            "option from".into(),
            opt(options.from.map(|c| c.to_string())),
        ));
        rows.push(("option to".into(), opt(options.to.map(|c| c.to_string()))));
        rows.push(("option engine".into(), options.engine().to_string()));
        rows.push(("option sheet_by".into(), opt(options.sheet_by.clone())));
        rows.push(("source CRS".into(), format!("{source} {}", source.name)));
        rows.push(("target CRS".into(), format!("{target} {}", target.name)));
        rows.push((
            "operation".into(),
            job.operation.clone().unwrap_or_default(),
        ));
        rows.push(("rows".into(), counts.rows.to_string()));
        if let Some(provider) = &options.lookup {
            let rate = options
                .rate
                .or_else(|| {
                    crate::lookup::providers::find(provider).map(|p| p.default_rate_per_sec())
                })
                .map(|r| r.to_string())
                .unwrap_or_default();
            rows.push(("address lookup".into(), provider.clone()));
            rows.push((
                "lookup rate".into(),
                format!("{rate} requests/s (whole cluster)"),
            ));
            if let Some(q) = options.daily_quota {
                rows.push(("lookup daily quota".into(), format!("{q} requests")));
            }
            rows.push(("lookup requests".into(), job.lookup_requests.to_string()));
            rows.push((
                "lookup cache hits".into(),
                job.lookup_cache_hits.to_string(),
            ));
            rows.push(("rows ok".into(), counts.ok.to_string()));
            rows.push(("rows no_result".into(), counts.no_result.to_string()));
        } else if options.is_geocode() {
            let chain = options.geocoders();
            rows.push(("geocoding providers".into(), chain.join(" → ")));
            let columns = match options.read.geocode.as_deref() {
                Some([]) | None => "(detected)".to_string(),
                Some(given) => given.join(", "),
            };
            rows.push(("option geocode".into(), columns));
            if let Some(rate) = options.rate {
                rows.push((
                    "geocoding rate".into(),
                    format!("{rate} requests/s per provider (whole cluster)"),
                ));
            }
            rows.push(("geocoding requests".into(), job.lookup_requests.to_string()));
            rows.push((
                "geocoding cache hits".into(),
                job.lookup_cache_hits.to_string(),
            ));
            if chain.contains(&"vworld") {
                rows.push((
                    "VWorld terms".into(),
                    "VWorld answers are not cached (its terms forbid storing them)".into(),
                ));
            }
            for (step, n) in CleanStep::ALL.iter().zip(counts.cleaning) {
                rows.push((format!("cleaning: {step}"), n.to_string()));
            }
            rows.push(("rows ok".into(), counts.ok.to_string()));
            rows.push(("rows no_result".into(), counts.no_result.to_string()));
        } else {
            rows.push(("rows ok".into(), counts.ok.to_string()));
        }
        if counts.ambiguous > 0 {
            rows.push(("rows ambiguous".into(), counts.ambiguous.to_string()));
        }
        rows.push(("rows error".into(), counts.failed.to_string()));
        rows.extend(counts.warnings.summary_lines());
        for s in sheets {
            rows.push((
                format!("sheet {}", s.name),
                format!(
                    "{} rows, {} ok, {} error",
                    s.rows_total, s.rows_ok, s.rows_failed
                ),
            ));
        }
        rows.push(("accepted at (UTC)".into(), utc_text(job.created_ms)));
        let since = |ms: Option<i64>| {
            ms.map(|m| {
                format!(
                    "{:.1} s after acceptance",
                    (m - job.created_ms) as f64 / 1000.0
                )
            })
            .unwrap_or_default()
        };
        rows.push(("all rows published".into(), since(job.published_ms)));
        rows.push(("all rows resolved".into(), since(job.resolved_ms)));
        rows.push(("workbook written".into(), since(Some(now_ms()))));
        Summary { lines: rows }
    }
}

/// `stores.csv (encoding EUC-KR, delimiter ',', x column "x", y column "y")`.
fn describe_file(label: &str, layout: &Layout) -> String {
    let mut parts = Vec::new();
    if layout.format != "csv" {
        parts.push(layout.format.clone());
    }
    if let Some(e) = layout.reader.get("encoding").and_then(|v| v.as_str()) {
        parts.push(format!("encoding {e}"));
    }
    if let Some(d) = layout.reader.get("delimiter").and_then(|v| v.as_u64()) {
        parts.push(format!("delimiter {:?}", char::from(d as u8)));
    }
    for t in &layout.tables {
        let table = if layout.tables.len() > 1 {
            format!("{:?}: ", t.name)
        } else {
            String::new()
        };
        parts.push(match &t.address {
            Some(_) => format!("{table}address columns {}", t.position_names()),
            None => format!(
                "{table}x column {:?}, y column {:?}",
                t.x_name(),
                t.y_name()
            ),
        });
    }
    for skipped in crate::intake::skipped_sheets(layout) {
        parts.push(format!("sheet {skipped} skipped"));
    }
    format!("{label} ({})", parts.join(", "))
}

/// `2026-11-22 03:42:53` from Unix milliseconds, without a calendar crate.
pub fn utc_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_matches_known_instants() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00");
        assert_eq!(utc_text(1_795_318_973_000), "2026-11-22 03:42:53");
        assert_eq!(utc_text(951_782_400_000), "2000-02-29 00:00:00");
    }
}
