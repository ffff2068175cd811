//! Conversion of row batches into results: the coordinate transform of each point.
//!
//! The engine sees only points (sequence number and source x/y); cells it cannot use were
//! already recorded as error rows by intake, so everything here is a well-formed number.
//!
//! Two engines behind one plan: the builtin transform (`crs`, pure Rust) and PostGIS's
//! `ST_Transform` (`postgis`), chosen per job with the `engine` option.

pub mod crs;
pub mod postgis;

use std::fmt;

use sqlx::PgPool;

use crate::bus::RowPoint;
use crate::store::{Outcome, RowResult};
use crs::{Crs, CrsError, Transform};
use postgis::PostgisTransform;

/// Something a transform engine cannot do, or a database it needs that failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown engine {0:?}; the engines are \"builtin\" and \"postgis\"")]
    Unknown(String),
    #[error(
        "the postgis engine needs a PostgreSQL database with PostGIS: set DATABASE_URL \
         (the result store's database) or GEOBATCH_POSTGIS_URL"
    )]
    NoDatabase,
    #[error("EPSG:{0} is not in PostGIS's spatial_ref_sys, so the postgis engine cannot use it")]
    UnknownSrid(u32),
    #[error("the postgis engine's database has no PostGIS ({0}); CREATE EXTENSION postgis there")]
    NoPostgis(String),
    /// The database failed (connection, server): the batch is retried, never turned into
    /// error rows.
    #[error("PostGIS: {0}")]
    Database(#[from] sqlx::Error),
    #[error("PostGIS: {0}")]
    Inconsistent(String),
}

impl EngineError {
    /// True when the job's options are at fault (the user can fix them), not the service.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            EngineError::Unknown(_)
                | EngineError::NoDatabase
                | EngineError::UnknownSrid(_)
                | EngineError::NoPostgis(_)
        )
    }
}

/// The `engine` job option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Builtin,
    Postgis,
}

impl EngineKind {
    /// Unset or empty means builtin.
    pub fn parse(name: Option<&str>) -> Result<EngineKind, EngineError> {
        match name.map(str::trim).unwrap_or("") {
            "" => Ok(EngineKind::Builtin),
            n if n.eq_ignore_ascii_case("builtin") => Ok(EngineKind::Builtin),
            n if n.eq_ignore_ascii_case("postgis") => Ok(EngineKind::Postgis),
            other => Err(EngineError::Unknown(other.to_string())),
        }
    }
}

/// The EPSG number of a code as users write it ("EPSG:5174", "5174"), known to the builtin
/// engine or not.
pub fn epsg_of(code: &str) -> Result<u32, CrsError> {
    match Crs::from_code(code) {
        Ok(crs) => Ok(crs.epsg()),
        Err(CrsError::Unknown { code: digits }) => digits.parse().map_err(|_| CrsError::Unknown {
            code: code.trim().to_string(),
        }),
        Err(e) => Err(e),
    }
}

/// A CRS as the workbook names it.
#[derive(Clone, Debug, PartialEq)]
pub struct CrsInfo {
    pub epsg: u32,
    pub name: String,
    /// Longitude/latitude in degrees (`lon`/`lat` columns) rather than projected x/y.
    pub geographic: bool,
}

impl From<Crs> for CrsInfo {
    fn from(crs: Crs) -> CrsInfo {
        CrsInfo {
            epsg: crs.epsg(),
            name: crs.name().to_string(),
            geographic: crs.is_geographic(),
        }
    }
}

impl fmt::Display for CrsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EPSG:{}", self.epsg)
    }
}

#[derive(Clone, Debug)]
enum Engine {
    Builtin(Transform),
    Postgis(PostgisTransform),
}

/// How points of one job are converted: the engine, both CRSs, and the operation's
/// description for the Summary sheet.
#[derive(Clone, Debug)]
pub struct JobPlan {
    engine: Engine,
    source: CrsInfo,
    target: CrsInfo,
    operation: String,
}

impl JobPlan {
    /// The builtin engine.
    pub fn new(from: Crs, to: Crs) -> JobPlan {
        let transform = Transform::new(from, to);
        JobPlan {
            operation: transform.description(),
            engine: Engine::Builtin(transform),
            source: from.into(),
            target: to.into(),
        }
    }

    /// PostGIS's `ST_Transform` in the database behind `pool`. Both SRIDs must be in its
    /// `spatial_ref_sys` (an input error naming the SRID otherwise).
    pub async fn postgis(pool: PgPool, from: u32, to: u32) -> Result<JobPlan, EngineError> {
        let (transform, source, target) = PostgisTransform::prepare(pool, from, to).await?;
        Ok(JobPlan {
            operation: transform.description(),
            engine: Engine::Postgis(transform),
            source,
            target,
        })
    }

    pub fn source(&self) -> &CrsInfo {
        &self.source
    }

    pub fn target(&self) -> &CrsInfo {
        &self.target
    }

    /// Which operation is applied, for the workbook's Summary sheet.
    pub fn description(&self) -> &str {
        &self.operation
    }

    /// Converts every point, in order; a point the engine refuses (outside the source CRS's
    /// area, non-finite result) becomes an error row with the reason, never a position. An
    /// error means the engine's database failed: nothing was converted, retry the batch.
    pub async fn convert(&self, rows: &[RowPoint]) -> Result<Vec<RowResult>, EngineError> {
        let outcomes = match &self.engine {
            Engine::Builtin(t) => rows
                .iter()
                .map(|r| outcome(t.convert(r.x, r.y).map_err(|e| e.to_string())))
                .collect(),
            Engine::Postgis(t) => t.convert(rows).await?,
        };
        Ok(rows
            .iter()
            .zip(outcomes)
            .map(|(r, outcome)| RowResult {
                seq: r.seq,
                outcome,
            })
            .collect())
    }
}

/// A converted position, or the reason there is none.
fn outcome(point: Result<(f64, f64), String>) -> Outcome {
    match point {
        Ok((x, y)) => Outcome::Point { x, y },
        Err(reason) => Outcome::Failed {
            column: None,
            raw: None,
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names() {
        assert_eq!(EngineKind::parse(None).unwrap(), EngineKind::Builtin);
        assert_eq!(EngineKind::parse(Some(" ")).unwrap(), EngineKind::Builtin);
        assert_eq!(
            EngineKind::parse(Some("PostGIS")).unwrap(),
            EngineKind::Postgis
        );
        let e = EngineKind::parse(Some("proj")).unwrap_err();
        assert!(
            e.is_input_error() && e.to_string().contains("\"proj\""),
            "{e}"
        );
    }

    #[test]
    fn epsg_of_accepts_codes_the_builtin_engine_does_not_know() {
        assert_eq!(epsg_of("EPSG:5174").unwrap(), 5174);
        assert_eq!(epsg_of("epsg:2154").unwrap(), 2154);
        assert_eq!(epsg_of(" 32633 ").unwrap(), 32633);
        assert!(matches!(
            epsg_of("EPSG:abc"),
            Err(CrsError::Unparseable { .. })
        ));
        assert!(epsg_of("EPSG:99999999999").is_err());
    }

    #[tokio::test]
    async fn builtin_plan_turns_refused_points_into_error_rows() {
        let plan = JobPlan::new(
            Crs::from_code("EPSG:5174").unwrap(),
            Crs::from_code("EPSG:4326").unwrap(),
        );
        assert!(plan.description().contains("Molodensky-Badekas"));
        assert!(plan.target().geographic && !plan.source().geographic);
        let rows = [
            RowPoint {
                seq: 7,
                x: 198_000.0,
                y: 451_000.0,
            },
            RowPoint {
                seq: 8,
                x: 9.0e7,
                y: 451_000.0,
            },
        ];
        let out = plan.convert(&rows).await.unwrap();
        assert_eq!(out[0].seq, 7);
        assert!(matches!(out[0].outcome, Outcome::Point { .. }));
        assert_eq!(out[1].seq, 8);
        assert!(matches!(out[1].outcome, Outcome::Failed { .. }));
    }
}
