//! What the integration tests share: the real binary as a child process, a temporary data
//! directory, an xlsx reader (calamine) and an HTTP client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use calamine::{open_workbook_auto, Data, Reader};

pub const BIN: &str = env!("CARGO_BIN_EXE_geobatch");

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// Which broker the end-to-end tests run against: `GEOBATCH_TEST_BROKER=embedded` (default)
/// or `tansu` (a Tansu process per test).
pub fn broker_mode() -> String {
    std::env::var("GEOBATCH_TEST_BROKER").unwrap_or_else(|_| "embedded".into())
}

/// One test's world: a data directory, and the broker the suite runs against.
pub struct TestDir {
    dir: tempfile::TempDir,
    pub tansu: Option<Tansu>,
}

impl TestDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The external broker's bootstrap address, if the suite runs against one.
    pub fn brokers(&self) -> Option<String> {
        self.tansu.as_ref().map(|t| t.bootstrap.clone())
    }
}

/// A fresh directory (and broker, in Tansu mode) for one test; all removed when dropped.
pub fn tempdir() -> TestDir {
    let dir = tempfile::Builder::new()
        .prefix("geobatch-test-")
        .tempdir()
        .expect("tempdir");
    let tansu = (broker_mode() == "tansu").then(Tansu::start);
    TestDir { dir, tansu }
}

/// `geobatch` with the environment a user on a fresh machine has (nothing of ours set), plus
/// the suite's broker.
pub fn geobatch(dir: &TestDir) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("GEOBATCH_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.env("GEOBATCH_DATA_DIR", dir.path())
        .env("GEOBATCH_LOG", "info")
        .stdin(Stdio::null());
    if let Some(b) = dir.brokers() {
        // Tansu 0.6's metadata for a deleted topic crashes librdkafka clients (README).
        cmd.env("GEOBATCH_KAFKA_BROKERS", b)
            .env("GEOBATCH_DELETE_TOPICS", "false");
    }
    cmd
}

/// A free TCP port on loopback (bound, noted, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Tansu broker (in-memory storage) as a separate process, killed when dropped.
pub struct Tansu {
    child: Child,
    pub bootstrap: String,
    pub port: u16,
}

impl Tansu {
    pub fn start() -> Tansu {
        Tansu::start_on(free_port())
    }

    /// Starts Tansu on `port` and waits until it accepts connections.
    pub fn start_on(port: u16) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_bin())
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu (cargo install tansu --locked --features dynostore)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Tansu {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            port,
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tansu_bin() -> PathBuf {
    let in_cargo = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|c| c.join("bin").join("tansu"));
    match in_cargo {
        Some(p) if p.exists() => p,
        _ => PathBuf::from("tansu"),
    }
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `geobatch convert ARGS…` to the end.
pub fn convert(dir: &TestDir, args: &[&str]) -> Output {
    convert_env(dir, &[], args)
}

/// Like `convert`, with extra environment variables.
pub fn convert_env(dir: &TestDir, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = geobatch(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .arg("convert")
        .arg("--no-progress")
        .args(args)
        .output()
        .expect("run geobatch");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running `geobatch serve`, killed (SIGKILL) when dropped.
pub struct Serve {
    child: Child,
    pub base: String,
    pub log: mpsc::Receiver<String>,
    log_lines: Vec<String>,
}

impl Serve {
    /// Starts serve on a free port and waits for its "listening on" log line.
    pub fn start(dir: &TestDir, env: &[(&str, &str)]) -> Serve {
        Serve::start_cmd(dir, "serve", env)
    }

    /// `geobatch worker` (or any long-running command) with its log captured; `base` stays
    /// empty unless it logs a "listening on" line.
    pub fn start_cmd(dir: &TestDir, command: &str, env: &[(&str, &str)]) -> Serve {
        let mut cmd = geobatch(dir);
        cmd.arg(command)
            .env("GEOBATCH_HTTP_ADDR", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn geobatch serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let tag = format!("{command} {}", child.id());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child,
            base: String::new(),
            log: rx,
            log_lines: Vec::new(),
        };
        if command != "serve" {
            return serve;
        }
        let line = serve.wait_for_log("listening on http://", Duration::from_secs(60));
        let addr = line
            .split("listening on http://")
            .nth(1)
            .expect("address")
            .trim()
            .trim_end_matches('/');
        serve.base = format!("http://{addr}");
        serve
    }

    /// Waits for a log line containing `needle` (the process tells us; no guessing with sleeps).
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.log_lines.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.log_lines.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {needle:?} within {timeout:?}"),
            }
        }
    }

    /// Every log line seen so far (drains what arrived).
    pub fn logs(&mut self) -> Vec<String> {
        while let Ok(line) = self.log.try_recv() {
            self.log_lines.push(line);
        }
        self.log_lines.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Uploads files (name, bytes) with form fields; returns status and JSON body.
pub async fn upload(
    serve: &Serve,
    files: &[(&str, Vec<u8>)],
    fields: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in files {
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.to_string()),
        );
    }
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let res = client()
        .post(serve.url("/jobs"))
        .multipart(form)
        .send()
        .await
        .expect("POST /jobs");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

pub async fn job_status(serve: &Serve, id: &str) -> serde_json::Value {
    client()
        .get(serve.url(&format!("/jobs/{id}")))
        .send()
        .await
        .expect("GET job")
        .json()
        .await
        .expect("job JSON")
}

/// Polls the job's status until `pred` holds (a state we observe, not a time we guess).
pub async fn wait_job(
    serve: &Serve,
    id: &str,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let job = job_status(serve, id).await;
        if pred(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not reach the expected state in {timeout:?}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn wait_done(serve: &Serve, id: &str) -> serde_json::Value {
    let job = wait_job(serve, id, Duration::from_secs(120), |j| {
        j["state"] == "done" || j["state"] == "failed"
    })
    .await;
    assert_eq!(job["state"], "done", "job failed: {job}");
    job
}

/// Polls a filesystem condition (for the watched folder).
pub fn wait_path(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A workbook read back with calamine: sheet name → rows of cells.
pub struct Book {
    pub names: Vec<String>,
    pub sheets: Vec<Vec<Vec<Data>>>,
    path: PathBuf,
}

impl Book {
    pub fn open(path: &Path) -> Book {
        let mut wb = open_workbook_auto(path).expect("open xlsx");
        let names = wb.sheet_names().to_vec();
        let sheets = names
            .iter()
            .map(|n| {
                let range = wb.worksheet_range(n).expect("sheet");
                range.rows().map(|r| r.to_vec()).collect()
            })
            .collect();
        Book {
            names,
            sheets,
            path: path.to_path_buf(),
        }
    }

    pub fn sheet(&self, name: &str) -> &Vec<Vec<Data>> {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no sheet {name:?} in {:?}", self.names));
        &self.sheets[i]
    }

    /// The formulas of a sheet: empty when every cell is a value.
    pub fn formulas(&self, name: &str) -> Vec<String> {
        let mut wb = open_workbook_auto(&self.path).expect("open xlsx");
        let range = wb.worksheet_formula(name).expect("formulas");
        range
            .used_cells()
            .map(|(_, _, f)| f.clone())
            .filter(|f| !f.is_empty())
            .collect()
    }

    /// Summary sheet as key → value.
    pub fn summary(&self) -> Vec<(String, String)> {
        self.sheet("Summary")
            .iter()
            .map(|r| (text(&r[0]), text(r.get(1).unwrap_or(&Data::Empty))))
            .collect()
    }
}

pub fn text(d: &Data) -> String {
    match d {
        Data::String(s) => s.clone(),
        Data::Empty => String::new(),
        other => other.to_string(),
    }
}

pub fn num(d: &Data) -> f64 {
    match d {
        Data::Float(f) => *f,
        Data::Int(i) => *i as f64,
        other => panic!("expected a number, found {other:?}"),
    }
}

/// Reads a CSV the way a person would check it: decoded, as records of strings.
pub fn read_csv(
    bytes: &[u8],
    encoding: &'static encoding_rs::Encoding,
    delimiter: u8,
) -> Vec<Vec<String>> {
    let (text, _, _) = encoding.decode(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    rdr.records()
        .map(|r| r.expect("csv").iter().map(String::from).collect())
        .collect()
}
