//! The message on a row topic.

use super::{BusError, Result};
use crate::job::RowPoint;

/// A batch of one sheet's rows. Wire format v1 (little endian):
/// `u8 version=1 | u32 sheet | u64 first_seq | u32 count | count × (u32 seq-first_seq, f64 x, f64 y)`.
#[derive(Clone, Debug, PartialEq)]
pub struct RowBatch {
    pub sheet: u32,
    pub rows: Vec<RowPoint>,
}

const BATCH_VERSION: u8 = 1;

impl RowBatch {
    pub fn encode(&self) -> Vec<u8> {
        let first = self.rows.first().map(|r| r.seq).unwrap_or(0);
        let mut out = Vec::with_capacity(17 + self.rows.len() * 20);
        out.push(BATCH_VERSION);
        out.extend_from_slice(&self.sheet.to_le_bytes());
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        for r in &self.rows {
            out.extend_from_slice(&((r.seq - first) as u32).to_le_bytes());
            out.extend_from_slice(&r.x.to_le_bytes());
            out.extend_from_slice(&r.y.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<RowBatch> {
        let bad = |why: &str| BusError::Decode(why.to_string());
        let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        if version != BATCH_VERSION {
            return Err(BusError::Decode(format!(
                "version {version} is not understood by this geobatch (it reads version {BATCH_VERSION})"
            )));
        }
        if rest.len() < 16 {
            return Err(bad("truncated header"));
        }
        let u32_at =
            |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let f64_at = |b: &[u8], at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            f64::from_le_bytes(a)
        };
        let sheet = u32_at(rest, 0);
        let mut first_bytes = [0u8; 8];
        first_bytes.copy_from_slice(&rest[4..12]);
        let first = u64::from_le_bytes(first_bytes);
        let count = u32_at(rest, 12) as usize;
        let body = &rest[16..];
        if Some(body.len()) != count.checked_mul(20) {
            return Err(bad("length does not match the row count"));
        }
        let rows = body
            .chunks_exact(20)
            .map(|c| RowPoint {
                seq: first + u64::from(u32_at(c, 0)),
                x: f64_at(c, 4),
                y: f64_at(c, 12),
            })
            .collect();
        Ok(RowBatch { sheet, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips() {
        let batch = RowBatch {
            sheet: 3,
            rows: vec![
                RowPoint {
                    seq: 10_000_000_000,
                    x: 198_765.123_456_789,
                    y: -1.5,
                },
                RowPoint {
                    seq: 10_000_000_007,
                    x: f64::MIN_POSITIVE,
                    y: 451_234.5,
                },
            ],
        };
        assert_eq!(RowBatch::decode(&batch.encode()).unwrap(), batch);
    }

    #[test]
    fn batch_of_another_version_is_refused() {
        let mut bytes = RowBatch {
            sheet: 0,
            rows: vec![],
        }
        .encode();
        bytes[0] = 2;
        let err = RowBatch::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("version 2"), "{err}");
        assert!(RowBatch::decode(&bytes[..5]).is_err());
        // A count that overflows the length check is refused, not a panic.
        let mut huge = vec![1u8, 0, 0, 0, 0];
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(RowBatch::decode(&huge).is_err());
    }
}
