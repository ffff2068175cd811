//! Conversion of row batches into results: the coordinate transform of each point.
//!
//! The engine sees only points (sequence number and source x/y); cells it cannot use were
//! already recorded as error rows by intake, so everything here is a well-formed number.

pub mod crs;

use crate::bus::RowPoint;
use crate::store::{Outcome, RowResult};
use crs::{Crs, Transform};

/// How points of one job are converted.
#[derive(Clone, Debug)]
pub struct JobPlan {
    transform: Transform,
}

impl JobPlan {
    pub fn new(from: Crs, to: Crs) -> JobPlan {
        JobPlan {
            transform: Transform::new(from, to),
        }
    }

    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    /// Converts every point; a point the transform refuses (outside the source CRS's area,
    /// non-finite result) becomes an error row with the reason, never a position.
    pub fn convert(&self, rows: &[RowPoint]) -> Vec<RowResult> {
        rows.iter()
            .map(|r| RowResult {
                seq: r.seq,
                outcome: match self.transform.convert(r.x, r.y) {
                    Ok((x, y)) => Outcome::Point { x, y },
                    Err(e) => Outcome::Failed {
                        column: None,
                        raw: None,
                        reason: e.to_string(),
                    },
                },
            })
            .collect()
    }
}
