//! `cargo bench --bench longrun`: a long-running `serve` on the embedded broker. Submits many
//! small jobs of several sheets each (`sheet_by`), waits for all of them, then measures the
//! idle process's CPU and how long a new small job takes, with the embedded broker recycled
//! when idle (the default) and without (GEOBATCH_RECYCLE_AFTER_TOPICS=0, as before).
//!
//! GEOBATCH_BENCH_JOBS (default 1000) and GEOBATCH_BENCH_SHEETS (default 5) set the size.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let jobs: usize = env_or("GEOBATCH_BENCH_JOBS", 1000);
    let sheets: usize = env_or("GEOBATCH_BENCH_SHEETS", 5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for (what, recycle) in [
        ("recycled when idle (default)", None),
        ("never recycled", Some("0")),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut serve = Serve::start(dir.path(), recycle);
        let figures = runtime.block_on(run(&serve.base, serve.pid(), jobs, sheets));
        println!(
            "{what}: {jobs} jobs x {sheets} sheets in {:.1}s ({:.1} jobs/s); idle CPU {:.2}% of \
             one core over 10 s; a new 2-row job done {:.2}s after upload; peak RSS {:.1} MiB",
            figures.all_jobs.as_secs_f64(),
            jobs as f64 / figures.all_jobs.as_secs_f64(),
            figures.idle_cpu_percent,
            figures.small_job.as_secs_f64(),
            figures.peak_rss_kib as f64 / 1024.0
        );
        serve.stop();
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    all_jobs: Duration,
    idle_cpu_percent: f64,
    small_job: Duration,
    peak_rss_kib: u64,
}

async fn run(base: &str, pid: u32, jobs: usize, sheets: usize) -> Figures {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut ids = Vec::new();
    let mut pending = Vec::new();
    for j in 0..jobs {
        let csv = job_csv(j, sheets);
        pending.push(upload(&client, base, csv, true));
        if pending.len() == 8 || j + 1 == jobs {
            for id in futures::future::join_all(pending.drain(..)).await {
                ids.push(id);
            }
        }
    }
    for id in &ids {
        wait_done(&client, base, id).await;
    }
    let all_jobs = started.elapsed();
    // Let the recycler see the idle broker (it looks every 5 s).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let before = cpu_ticks(pid);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ticks = cpu_ticks(pid) - before;
    let idle_cpu_percent =
        ticks as f64 / ticks_per_second() as f64 / window.elapsed().as_secs_f64() * 100.0;
    let started = Instant::now();
    let id = upload(
        &client,
        base,
        b"name,lon,lat\na,127.0,37.5\nb,127.1,37.6\n".to_vec(),
        false,
    )
    .await;
    wait_done(&client, base, &id).await;
    Figures {
        all_jobs,
        idle_cpu_percent,
        small_job: started.elapsed(),
        peak_rss_kib: peak_rss_kib(pid),
    }
}

/// Ten rows of lon/lat, spread over `sheets` values of the `zone` column.
fn job_csv(job: usize, sheets: usize) -> Vec<u8> {
    let mut csv = String::from("id,zone,lon,lat\n");
    for i in 0..10 {
        csv.push_str(&format!(
            "{job}-{i},z{},{:.4},{:.4}\n",
            i % sheets,
            126.9 + i as f64 * 0.001,
            37.5 + (job % 100) as f64 * 0.001
        ));
    }
    csv.into_bytes()
}

async fn upload(client: &reqwest::Client, base: &str, csv: Vec<u8>, by_zone: bool) -> String {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(csv).file_name("zones.csv"),
    );
    if by_zone {
        form = form.text("sheet_by", "zone");
    }
    let res = client
        .post(format!("{base}/jobs"))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), 202);
    let body: serde_json::Value = res.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

async fn wait_done(client: &reqwest::Client, base: &str, id: &str) {
    loop {
        let job: serde_json::Value = client
            .get(format!("{base}/jobs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match job["state"].as_str() {
            Some("done") => return,
            Some("failed") => panic!("job failed: {job}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) are space-separated.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> i64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(dir: &std::path::Path, recycle: Option<&str>) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geobatch"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GEOBATCH_DATA_DIR", dir)
            .env("GEOBATCH_HTTP_ADDR", "127.0.0.1:0")
            .env("GEOBATCH_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        if let Some(r) = recycle {
            cmd.env("GEOBATCH_RECYCLE_AFTER_TOPICS", r);
        }
        let mut child = cmd.spawn().expect("start serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("serve ended").unwrap();
            if let Some(addr) = line.split("listening on http://").nth(1) {
                break format!("http://{}", addr.trim().trim_end_matches('/'));
            }
        };
        // Keep draining the log so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Serve { child, base }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
