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
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::job::{EngineKind, Epsg, Outcome, RowPoint, RowResult};
use crs::{Crs, CrsError, Transform};
use postgis::PostgisTransform;

/// Something a transform engine cannot do, or a database it needs that failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Crs(#[from] CrsError),
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
            EngineError::Crs(_)
                | EngineError::NoDatabase
                | EngineError::UnknownSrid(_)
                | EngineError::NoPostgis(_)
        )
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

/// The engines this process can use: the builtin one always, PostGIS when a database is
/// configured (connected on first use: a PostGIS that is down does not stop the service).
#[derive(Clone, Debug)]
pub struct Engines {
    postgis: Option<PgPool>,
}

impl Engines {
    /// `postgis_url` when given, else the store's PostgreSQL pool when it has one.
    pub fn new(
        postgis_url: Option<&str>,
        store_pool: Option<&PgPool>,
    ) -> Result<Engines, EngineError> {
        let postgis = match postgis_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Some(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_lazy(url)?,
            ),
            None => store_pool.cloned(),
        };
        Ok(Engines { postgis })
    }

    /// The job's engine with its CRSs: the builtin transform (which must know both CRSs), or
    /// PostGIS (which checks that both SRIDs are in its spatial_ref_sys).
    pub async fn plan(
        &self,
        engine: EngineKind,
        from: Epsg,
        to: Epsg,
    ) -> Result<JobPlan, EngineError> {
        match engine {
            EngineKind::Builtin => Ok(JobPlan::builtin(Crs::from_epsg(from)?, Crs::from_epsg(to)?)),
            EngineKind::Postgis => {
                let pool = self.postgis.clone().ok_or(EngineError::NoDatabase)?;
                JobPlan::postgis(pool, from.code(), to.code()).await
            }
        }
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
    pub fn builtin(from: Crs, to: Crs) -> JobPlan {
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
        Ok((x, y)) => Outcome::point(x, y),
        Err(reason) => Outcome::failed(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_builtin_engine_knows_its_crs_at_planning() {
        let engines = Engines::new(None, None).unwrap();
        let e = engines
            .plan(EngineKind::Builtin, Epsg::new(9999), Epsg::WGS84)
            .await
            .unwrap_err();
        assert!(
            e.is_input_error() && e.to_string().contains("EPSG:9999"),
            "{e}"
        );
        let e = engines
            .plan(EngineKind::Postgis, Epsg::new(5174), Epsg::WGS84)
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::NoDatabase));
    }

    #[tokio::test]
    async fn builtin_plan_turns_refused_points_into_error_rows() {
        let plan = JobPlan::builtin(
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
        assert!(out[0].outcome.position().is_some());
        assert_eq!(out[1].seq, 8);
        assert!(out[1].outcome.is_error());
    }
}
