//! `cargo bench --bench workbook_input`: writes a 1,000,000-row × 10-column xlsx the way Excel
//! stores text (a shared-strings table; one column of unique addresses), then
//!
//! 1. reads it through intake (`geobatch::intake::open`, every record and its point) in a
//!    process of its own, and prints the time and that process's peak RSS;
//! 2. runs `ogr2ogr -f CSV` (GDAL) on the same xlsx, side by side;
//! 3. runs `geobatch convert` on it end to end.
//!
//! GEOBATCH_BENCH_ROWS sets the size (default 1,000,000).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};

/// In the child: the xlsx to read through intake.
const READ_ENV: &str = "GEOBATCH_BENCH_READ";
const COLUMNS: u64 = 10;

fn main() {
    if let Ok(path) = std::env::var(READ_ENV) {
        read_through_intake(Path::new(&path));
        return;
    }
    let rows: u64 = std::env::var("GEOBATCH_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-workbook-input");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("stores.xlsx");
    let started = Instant::now();
    generate(&input, rows);
    println!(
        "generated {rows} rows × {COLUMNS} columns ({:.1} MB xlsx) in {:.1}s",
        std::fs::metadata(&input).unwrap().len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let cells = (rows * COLUMNS) as f64 / 1e6;

    let mut intake = Command::new(std::env::current_exe().unwrap());
    intake.env(READ_ENV, &input);
    let (secs, kib) = run(&mut intake);
    println!(
        "intake: {rows} rows in {secs:.1}s = {:.0} rows/s; peak RSS {:.1} MiB ({:.1} MiB per million cells)",
        rows as f64 / secs,
        kib as f64 / 1024.0,
        kib as f64 / 1024.0 / cells
    );

    let csv = dir.join("ogr.csv");
    let mut ogr = Command::new("ogr2ogr");
    ogr.args(["-f", "CSV"]).arg(&csv).arg(&input);
    let (secs, kib) = run(&mut ogr);
    println!(
        "ogr2ogr xlsx -> csv: {rows} rows in {secs:.1}s = {:.0} rows/s; peak RSS {:.1} MiB",
        rows as f64 / secs,
        kib as f64 / 1024.0
    );

    let mut convert = Command::new(env!("CARGO_BIN_EXE_geobatch"));
    convert
        .args(["convert", "--no-progress", "-o"])
        .arg(dir.join("out.xlsx"))
        .arg(&input)
        .env("GEOBATCH_DATA_DIR", dir.join("data"))
        .env("GEOBATCH_LOG", "warn");
    let (secs, kib) = run(&mut convert);
    println!(
        "geobatch convert (end to end): {rows} rows in {secs:.1}s = {:.0} rows/s; peak RSS {:.1} MiB",
        rows as f64 / secs,
        kib as f64 / 1024.0
    );
}

/// Runs a command to its end; its wall time and its own peak RSS (KiB, from wait4).
// The child is reaped by wait4, which std's `wait` cannot do with the child's rusage.
#[allow(clippy::zombie_processes)]
fn run(cmd: &mut Command) -> (f64, i64) {
    let started = Instant::now();
    let child = cmd.spawn().expect("start the command");
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: waits for our own child; wait4 writes a whole rusage into the pointer.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr()) };
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as i32, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed: {status}"
    );
    // SAFETY: initialised by the successful call above.
    (secs, unsafe { usage.assume_init() }.ru_maxrss)
}

/// The child's work: every record of the workbook, and its point, as intake reads them.
fn read_through_intake(path: &Path) {
    let opts = geobatch::options::ReadOptions::default();
    let mut source = geobatch::intake::open(path, "stores.xlsx", &opts).expect("open");
    let layout = source.layout().clone();
    let (mut records, mut points) = (0u64, 0u64);
    while let Some(record) = source.next_record() {
        let record = record.expect("record");
        records += 1;
        if geobatch::intake::point_of(&record, &layout.tables[record.table as usize]).is_ok() {
            points += 1;
        }
    }
    assert_eq!(records, points);
    eprintln!("intake read {records} records");
}

/// Text as Excel keeps it (shared strings), streamed row by row (rust_xlsxwriter low memory).
fn generate(path: &Path, rows: u64) {
    let mut wb = Workbook::new();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let ws = wb
        .add_worksheet_with_low_memory()
        .unwrap()
        .set_name("점포")
        .unwrap();
    let headers = [
        "번호",
        "업소명",
        "업태",
        "우편번호",
        "주소",
        "전화",
        "개업일",
        "면적",
        "경도",
        "위도",
    ];
    for (c, h) in headers.iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    let kinds = ["한식", "중식", "일식", "카페", "분식"];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..rows {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let r = (i + 1) as u32;
        let lon = 126.0 + (state % 3_000_000) as f64 / 1_000_000.0;
        let lat = 34.0 + ((state >> 24) % 4_000_000) as f64 / 1_000_000.0;
        ws.write_string(r, 0, format!("{i:07}")).unwrap();
        ws.write_string(r, 1, format!("가게{}", i % 5000)).unwrap();
        ws.write_string(r, 2, kinds[(i % 5) as usize]).unwrap();
        ws.write_string(r, 3, format!("0{:04}", i % 10_000))
            .unwrap();
        ws.write_string(r, 4, format!("서울특별시 종로구 세종대로 {i}"))
            .unwrap();
        ws.write_string(r, 5, format!("02-123-{:04}", i % 10_000))
            .unwrap();
        let day = ExcelDateTime::from_ymd(2000 + (i % 25) as u16, 1 + (i % 12) as u8, 1).unwrap();
        ws.write_datetime_with_format(r, 6, day, &date).unwrap();
        ws.write_number(r, 7, (i % 300) as f64 + 0.5).unwrap();
        ws.write_number(r, 8, lon).unwrap();
        ws.write_number(r, 9, lat).unwrap();
    }
    wb.save(path).unwrap();
}
