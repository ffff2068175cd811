//! The PostGIS engine: `ST_Transform` in a PostgreSQL database, one query per batch.
//!
//! Any SRID in the database's `spatial_ref_sys` can be used; both SRIDs of a job are checked
//! when the plan is made (at job acceptance), so an unknown one is an input error naming it.
//! When the builtin engine knows the source CRS, its area check runs first: a position outside
//! the CRS's area is an error row and never reaches PostGIS. For SRIDs only PostGIS knows, a
//! finite result is accepted as it comes.
//!
//! A point PostGIS refuses (`transform: …` errors) fails the whole statement; the batch is then
//! split until the refused points are found, which become error rows with PostGIS's reason.
//! Any other database error is returned, and the worker retries the batch.

use std::ops::Range;

use sqlx::PgPool;

use super::crs::{Crs, Transform, TransformError};
use super::{outcome, CrsInfo, EngineError};
use crate::job::{Outcome, RowPoint};

#[derive(Clone, Debug)]
pub struct PostgisTransform {
    pool: PgPool,
    from: i32,
    to: i32,
    /// The builtin engine's source CRS, to the target (EPSG:4326 when it does not know it),
    /// when it knows the source: only its area checks are used.
    check: Option<Transform>,
    /// PROJ's version as PostGIS reports it.
    proj_version: String,
}

impl PostgisTransform {
    /// Checks that PostGIS is there and knows both SRIDs; returns the transform and both CRSs
    /// as the workbook names them.
    pub(crate) async fn prepare(
        pool: PgPool,
        from: u32,
        to: u32,
    ) -> Result<(PostgisTransform, CrsInfo, CrsInfo), EngineError> {
        let version: String = match sqlx::query_scalar("SELECT postgis_proj_version()")
            .fetch_one(&pool)
            .await
        {
            Ok(v) => v,
            // undefined_function: the extension is not installed in this database.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42883") => {
                return Err(EngineError::NoPostgis(e.message().to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        let srid = |code: u32| i32::try_from(code).map_err(|_| EngineError::UnknownSrid(code));
        let (from_srid, to_srid) = (srid(from)?, srid(to)?);
        let known: Vec<(i32, String, String)> = sqlx::query_as(
            "SELECT srid, COALESCE(srtext, ''), COALESCE(proj4text, '') \
             FROM spatial_ref_sys WHERE srid = ANY($1)",
        )
        .bind(vec![from_srid, to_srid])
        .fetch_all(&pool)
        .await?;
        let info = |code: u32| -> Result<CrsInfo, EngineError> {
            let (_, srtext, proj4) = known
                .iter()
                .find(|(s, _, _)| *s as u32 == code)
                .ok_or(EngineError::UnknownSrid(code))?;
            Ok(match Crs::from_code(&code.to_string()) {
                Ok(crs) => crs.into(),
                Err(_) => CrsInfo {
                    epsg: code,
                    name: wkt_name(srtext).unwrap_or_default().to_string(),
                    geographic: srtext.trim_start().starts_with("GEOGCS")
                        || proj4.contains("+proj=longlat"),
                },
            })
        };
        let (source, target) = (info(from)?, info(to)?);
        let check = Crs::from_code(&from.to_string()).ok().map(|src| {
            // The target's area of use is checked too when the builtin engine knows it.
            let to = Crs::from_code(&to.to_string());
            Transform::new(
                src,
                to.unwrap_or_else(|_| Crs::from_code("EPSG:4326").expect("builtin knows 4326")),
            )
        });
        let transform = PostgisTransform {
            pool,
            from: from_srid,
            to: to_srid,
            check,
            // Newer PostGIS appends settings ("9.4.0 NETWORK_ENABLED=OFF …"): keep the version.
            proj_version: version
                .split_whitespace()
                .next()
                .unwrap_or("unknown")
                .to_string(),
        };
        Ok((transform, source, target))
    }

    /// For the workbook's Summary sheet.
    pub fn description(&self) -> String {
        format!("PostGIS ST_Transform (PROJ {})", self.proj_version)
    }

    /// One outcome per row, in order.
    pub(crate) async fn convert(&self, rows: &[RowPoint]) -> Result<Vec<Outcome>, EngineError> {
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(rows.len());
        let (mut todo, mut xs, mut ys) = (Vec::new(), Vec::new(), Vec::new());
        for (i, r) in rows.iter().enumerate() {
            match self.refuse(r.x, r.y) {
                Some(reason) => outcomes.push(Some(outcome(Err(reason)))),
                None => {
                    outcomes.push(None);
                    todo.push(i);
                    xs.push(r.x);
                    ys.push(r.y);
                }
            }
        }
        let points = self.transform(&xs, &ys).await?;
        for (i, point) in todo.into_iter().zip(points) {
            outcomes[i] = Some(outcome(point));
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| EngineError::Inconsistent("a row has no outcome".into())))
            .collect()
    }

    /// Why a point must not reach PostGIS, if it must not.
    fn refuse(&self, x: f64, y: f64) -> Option<String> {
        match &self.check {
            Some(t) => t.convert(x, y).err().map(|e| e.to_string()),
            None if !x.is_finite() || !y.is_finite() => {
                Some(TransformError::NotFinite { x, y }.to_string())
            }
            None => None,
        }
    }

    /// Every point through `ST_Transform`, in order: the position, or why there is none.
    async fn transform(
        &self,
        xs: &[f64],
        ys: &[f64],
    ) -> Result<Vec<Result<(f64, f64), String>>, EngineError> {
        let mut out: Vec<Option<Result<(f64, f64), String>>> = vec![None; xs.len()];
        let mut pending: Vec<Range<usize>> = Vec::new();
        pending.push(0..xs.len());
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            match self.query(&xs[range.clone()], &ys[range.clone()]).await {
                Ok(points) => {
                    for (i, (x, y)) in range.zip(points) {
                        out[i] = Some(match (x, y) {
                            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => Ok((x, y)),
                            _ => Err(format!(
                                "PostGIS gives no finite position in EPSG:{} for x {}, y {}",
                                self.to, xs[i], ys[i]
                            )),
                        });
                    }
                }
                // One refused point fails the statement: halve until it is found.
                Err(e) => match refused_point(&e) {
                    Some(reason) if range.len() == 1 => {
                        out[range.start] = Some(Err(format!("PostGIS: {reason}")))
                    }
                    Some(_) => {
                        let mid = range.start + range.len() / 2;
                        pending.push(mid..range.end);
                        pending.push(range.start..mid);
                    }
                    None => return Err(e.into()),
                },
            }
        }
        out.into_iter()
            .map(|p| p.ok_or_else(|| EngineError::Inconsistent("a point has no result".into())))
            .collect()
    }

    /// One statement for the whole slice, results in input order (`WITH ORDINALITY`).
    async fn query(
        &self,
        xs: &[f64],
        ys: &[f64],
    ) -> Result<Vec<(Option<f64>, Option<f64>)>, sqlx::Error> {
        let rows: Vec<(Option<f64>, Option<f64>)> = sqlx::query_as(
            "SELECT ST_X(p), ST_Y(p) FROM ( \
                 SELECT u.n, ST_Transform(ST_SetSRID(ST_MakePoint(u.x, u.y), $3), $4) AS p \
                 FROM UNNEST($1::double precision[], $2::double precision[]) \
                      WITH ORDINALITY AS u(x, y, n) \
             ) t ORDER BY n",
        )
        .bind(xs)
        .bind(ys)
        .bind(self.from)
        .bind(self.to)
        .fetch_all(&self.pool)
        .await?;
        if rows.len() != xs.len() {
            return Err(sqlx::Error::Protocol(format!(
                "ST_Transform returned {} rows for {} points",
                rows.len(),
                xs.len()
            )));
        }
        Ok(rows)
    }
}

/// PostGIS's reason when the error is about a point it cannot transform (not the database).
fn refused_point(e: &sqlx::Error) -> Option<String> {
    match e {
        // lwerror() reports internal_error; its transform failures name themselves.
        sqlx::Error::Database(db)
            if db.code().as_deref() == Some("XX000") && db.message().contains("transform") =>
        {
            Some(db.message().to_string())
        }
        _ => None,
    }
}

/// The name in a WKT definition: `PROJCS["RGF93 / Lambert-93",…` → `RGF93 / Lambert-93`.
fn wkt_name(wkt: &str) -> Option<&str> {
    let start = wkt.find('"')? + 1;
    let len = wkt[start..].find('"')?;
    Some(&wkt[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wkt_names() {
        assert_eq!(
            wkt_name(r#"PROJCS["RGF93 / Lambert-93",GEOGCS["RGF93",DATUM["x"]]]"#),
            Some("RGF93 / Lambert-93")
        );
        assert_eq!(wkt_name(""), None);
    }
}
