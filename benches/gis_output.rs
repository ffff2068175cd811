//! `cargo bench --bench gis_output`: a UTF-8 CSV of points in EPSG:5174 (a zero-padded code, a
//! Korean name, every 997th row without a position) converted to EPSG:5186 by
//! `geobatch convert` into each output format, and the same CSV to GeoPackage by GDAL's
//! `ogr2ogr` side by side. Prints wall time and peak RSS of each run.
//!
//! GEOBATCH_BENCH_ROWS sets the size (default 1,000,000). Needs `ogr2ogr` (Debian gdal-bin).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

mod support;

fn main() {
    let rows = support::rows(1_000_000);
    let dir = support::fresh_dir("bench-gis-output");
    let input = dir.join("points.csv");
    generate(&input, rows);
    println!(
        "input: {rows} rows, {:.1} MB",
        std::fs::metadata(&input).unwrap().len() as f64 / 1e6
    );

    for format in ["xlsx", "gpkg", "geojson", "csv"] {
        let output = dir.join(format!("points.{format}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geobatch"));
        cmd.args(["convert", "--no-progress", "--from", "EPSG:5174"])
            .args(["--to", "EPSG:5186", "-o"])
            .arg(&output)
            .arg(&input)
            .env("GEOBATCH_DATA_DIR", dir.join(format!("data-{format}")))
            .env("GEOBATCH_LOG", "warn");
        let (secs, rss) = run(cmd, "geobatch convert");
        report(
            &format!("geobatch convert -o points.{format}"),
            rows,
            secs,
            rss,
            &output,
        );
    }

    let output = dir.join("ogr2ogr.gpkg");
    let mut cmd = Command::new("ogr2ogr");
    cmd.args(["-f", "GPKG"])
        .arg(&output)
        .arg(&input)
        .args(["-oo", "X_POSSIBLE_NAMES=x", "-oo", "Y_POSSIBLE_NAMES=y"])
        .args(["-oo", "KEEP_GEOM_COLUMNS=YES"])
        .args([
            "-s_srs",
            "EPSG:5174",
            "-t_srs",
            "EPSG:5186",
            "-nln",
            "points",
        ])
        // One warning per row without a position ("-" read as 0).
        .stderr(Stdio::null());
    let (secs, rss) = run(cmd, "ogr2ogr (install gdal-bin)");
    report(
        "ogr2ogr -f GPKG (same CSV, same CRSs)",
        rows,
        secs,
        rss,
        &output,
    );
}

/// Runs a command to its end: wall seconds and its own peak RSS in KiB.
// wait4 below reaps the child (std's wait would not give its own rusage).
#[allow(clippy::zombie_processes)]
fn run(mut cmd: Command, what: &str) -> (f64, i64) {
    let started = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: wait4 reaps the child we spawned and writes a whole rusage into the pointer.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr()) };
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as i32, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{what} failed"
    );
    // SAFETY: initialised by the successful call above.
    (secs, unsafe { usage.assume_init() }.ru_maxrss)
}

fn report(what: &str, rows: u64, secs: f64, rss_kib: i64, output: &Path) {
    let size = std::fs::metadata(output)
        .or_else(|_| std::fs::metadata(output.with_extension("zip")))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{what}: {secs:.1}s = {:.0} rows/s; peak RSS {:.1} MiB; file {:.1} MB",
        rows as f64 / secs,
        rss_kib as f64 / 1024.0,
        size as f64 / 1e6
    );
}

fn generate(path: &Path, rows: u64) {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    out.write_all(b"id,code,name,x,y\n").unwrap();
    for (i, (x, y)) in (0..rows).zip(support::Walk::default()) {
        if i % 997 == 0 {
            writeln!(out, "{i},{:05},가게 {i},-,", i % 100_000).unwrap();
        } else {
            writeln!(out, "{i},{:05},가게 {i},{x:.3},{y:.3}", i % 100_000).unwrap();
        }
    }
    out.flush().unwrap();
}
