//! The message on a row topic.

use super::{BusError, Result};
use crate::job::{RowAddress, RowPoint};

/// A batch of one sheet's rows. Wire format v1 (little endian):
/// `u8 version=1 | u32 sheet | u64 first_seq | u32 count | count × (u32 seq-first_seq, f64 x, f64 y)`.
/// Version 2 (geocoding: rows with addresses) is v1's with `version=2`, followed by
/// `count × (u16 len, UTF-8 address, u16 len, UTF-8 alternative or len 0)`.
#[derive(Clone, Debug, PartialEq)]
pub struct RowBatch {
    pub sheet: u32,
    pub rows: Vec<RowPoint>,
    /// Geocoding: each row's address, in the order of `rows`; empty otherwise.
    pub addresses: Vec<RowAddress>,
}

const BATCH_VERSION: u8 = 1;
const ADDRESS_BATCH_VERSION: u8 = 2;

impl RowBatch {
    pub fn encode(&self) -> Vec<u8> {
        let first = self.rows.first().map(|r| r.seq).unwrap_or(0);
        let mut out = Vec::with_capacity(17 + self.rows.len() * 20);
        let with_addresses = !self.addresses.is_empty();
        out.push(if with_addresses {
            ADDRESS_BATCH_VERSION
        } else {
            BATCH_VERSION
        });
        out.extend_from_slice(&self.sheet.to_le_bytes());
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        for r in &self.rows {
            out.extend_from_slice(&((r.seq - first) as u32).to_le_bytes());
            out.extend_from_slice(&r.x.to_le_bytes());
            out.extend_from_slice(&r.y.to_le_bytes());
        }
        if with_addresses {
            debug_assert_eq!(self.addresses.len(), self.rows.len());
            for a in &self.addresses {
                for text in [a.text.as_str(), a.alternative.as_deref().unwrap_or("")] {
                    // Intake bounds addresses far below 64 KiB; cut on a char boundary anyway.
                    let mut end = text.len().min(u16::MAX as usize);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    out.extend_from_slice(&(end as u16).to_le_bytes());
                    out.extend_from_slice(&text.as_bytes()[..end]);
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<RowBatch> {
        let bad = |why: &str| BusError::Decode(why.to_string());
        let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        if version != BATCH_VERSION && version != ADDRESS_BATCH_VERSION {
            return Err(BusError::Decode(format!(
                "version {version} is not understood by this geobatch (it reads versions {BATCH_VERSION} and {ADDRESS_BATCH_VERSION})"
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
        let points_len = count
            .checked_mul(20)
            .ok_or_else(|| bad("row count too large"))?;
        let (body, mut tail) = match version {
            BATCH_VERSION if body.len() == points_len => (body, &[][..]),
            ADDRESS_BATCH_VERSION if body.len() >= points_len => body.split_at(points_len),
            _ => return Err(bad("length does not match the row count")),
        };
        let mut addresses = Vec::new();
        if version == ADDRESS_BATCH_VERSION {
            let mut text = || -> Result<String> {
                if tail.len() < 2 {
                    return Err(bad("truncated address"));
                }
                let len = usize::from(u16::from_le_bytes([tail[0], tail[1]]));
                let bytes = tail
                    .get(2..2 + len)
                    .ok_or_else(|| bad("truncated address"))?;
                tail = &tail[2 + len..];
                String::from_utf8(bytes.to_vec()).map_err(|_| bad("address is not UTF-8"))
            };
            for _ in 0..count {
                let main = text()?;
                let alternative = Some(text()?).filter(|a| !a.is_empty());
                addresses.push(RowAddress {
                    text: main,
                    alternative,
                });
            }
            if !tail.is_empty() {
                return Err(bad("bytes after the last address"));
            }
        }
        let rows = body
            .chunks_exact(20)
            .map(|c| RowPoint {
                seq: first + u64::from(u32_at(c, 0)),
                x: f64_at(c, 4),
                y: f64_at(c, 12),
            })
            .collect();
        Ok(RowBatch {
            sheet,
            rows,
            addresses,
        })
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
            addresses: vec![],
        };
        assert_eq!(RowBatch::decode(&batch.encode()).unwrap(), batch);
        assert_eq!(batch.encode()[0], 1, "coordinate batches stay version 1");
    }

    #[test]
    fn address_batch_round_trips() {
        let point = |seq| RowPoint {
            seq,
            x: 0.0,
            y: 0.0,
        };
        let batch = RowBatch {
            sheet: 1,
            rows: vec![point(7), point(9)],
            addresses: vec![
                RowAddress {
                    text: "서울 종로구 세종대로 175, 3층".into(),
                    alternative: Some("서울 종로구 세종로 1-68".into()),
                },
                RowAddress {
                    text: String::new(),
                    alternative: Some("태평로1가 31".into()),
                },
            ],
        };
        let bytes = batch.encode();
        assert_eq!(bytes[0], 2);
        assert_eq!(RowBatch::decode(&bytes).unwrap(), batch);
        for cut in [bytes.len() - 1, 17 + 40 + 1] {
            assert!(RowBatch::decode(&bytes[..cut]).is_err(), "{cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(RowBatch::decode(&extra).is_err());
    }

    #[test]
    fn batch_of_another_version_is_refused() {
        let mut bytes = RowBatch {
            sheet: 0,
            rows: vec![],
            addresses: vec![],
        }
        .encode();
        bytes[0] = 3;
        let err = RowBatch::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("version 3"), "{err}");
        assert!(RowBatch::decode(&bytes[..5]).is_err());
        // A count that overflows the length check is refused, not a panic.
        let mut huge = vec![1u8, 0, 0, 0, 0];
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(RowBatch::decode(&huge).is_err());
    }
}
