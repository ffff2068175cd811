//! What the benches share: the size from GEOBATCH_BENCH_ROWS, a fresh directory, and the
//! deterministic walk over Korea in EPSG:5174 metres their inputs follow.

#![allow(dead_code)]

use std::path::PathBuf;

/// GEOBATCH_BENCH_ROWS, or `default`.
pub fn rows(default: u64) -> u64 {
    std::env::var("GEOBATCH_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An empty directory of this name under the target's tmp dir.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The next point of the walk (xorshift): x, y in EPSG:5174 metres.
pub struct Walk(u64);

impl Default for Walk {
    fn default() -> Walk {
        Walk(0x9E37_79B9_7F4A_7C15)
    }
}

impl Iterator for Walk {
    type Item = (f64, f64);
    fn next(&mut self) -> Option<(f64, f64)> {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        self.0 = s;
        let x = 150_000.0 + (s % 250_000) as f64 + (s % 1000) as f64 / 1000.0;
        let y = 200_000.0 + ((s >> 20) % 400_000) as f64 + ((s >> 8) % 1000) as f64 / 1000.0;
        Some((x, y))
    }
}
