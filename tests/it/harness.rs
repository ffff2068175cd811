//! What the integration tests share: the real binary as a child process, a temporary data
//! directory, an xlsx reader (calamine), an HTTP client, and a PostgreSQL database per test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use calamine::{open_workbook_auto, Data, Reader};
use geobatch::convert::crs::{Crs, Transform};
use sqlx::{Connection, Executor, PgConnection};

pub const BIN: &str = env!("CARGO_BIN_EXE_geobatch");

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// Which broker the end-to-end tests run against: `GEOBATCH_TEST_BROKER=embedded` (default)
/// or `tansu` (a Tansu process per test).
pub fn broker_mode() -> String {
    std::env::var("GEOBATCH_TEST_BROKER").unwrap_or_else(|_| "embedded".into())
}

/// Which store the end-to-end tests run against: `GEOBATCH_TEST_DATABASE=sqlite` (default) or
/// `postgres` (a database of each test's own, see `PgDb`).
pub fn database_mode() -> String {
    std::env::var("GEOBATCH_TEST_DATABASE").unwrap_or_else(|_| "sqlite".into())
}

/// One test's world: a data directory, and the broker and store the suite runs against.
pub struct TestDir {
    // Declared first so it drops first: the processes that use the database are gone by then.
    pub tansu: Option<Tansu>,
    pub db: Option<PgDb>,
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The external broker's bootstrap address, if the suite runs against one.
    pub fn brokers(&self) -> Option<String> {
        self.tansu.as_ref().map(|t| t.bootstrap.clone())
    }

    /// `DATABASE_URL` of the suite's store, if it is not the SQLite file in the data dir.
    pub fn database_url(&self) -> Option<&str> {
        self.db.as_ref().map(|d| d.url.as_str())
    }
}

/// Like `tempdir`, but always with the SQLite store, for tests about that setup.
pub fn tempdir_sqlite() -> TestDir {
    let mut dir = tempdir();
    dir.db = None;
    dir
}

/// A fresh directory (and broker, in Tansu mode) for one test; all removed when dropped.
pub fn tempdir() -> TestDir {
    let dir = tempfile::Builder::new()
        .prefix("geobatch-test-")
        .tempdir()
        .expect("tempdir");
    let tansu = (broker_mode() == "tansu").then(Tansu::start);
    let db = (database_mode() == "postgres").then(PgDb::create_blocking);
    TestDir { dir, tansu, db }
}

/// `geobatch` with the environment a user on a fresh machine has (nothing of ours set), plus
/// the suite's broker.
pub fn geobatch(dir: &TestDir) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("GEOBATCH_")
            || ["DATABASE_URL", "KAKAO_REST_API_KEY", "VWORLD_API_KEY"].contains(&k.as_str())
        {
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
    if let Some(url) = dir.database_url() {
        cmd.env("DATABASE_URL", url);
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
        Serve::start_args(dir, &[command], env)
    }

    /// `geobatch ARGS…` (the first is the command) running, its log captured.
    pub fn start_args(dir: &TestDir, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let command = args[0];
        let mut cmd = geobatch(dir);
        cmd.args(args)
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
        self.wait_for_log_again(needle, timeout)
    }

    /// Waits for a new log line containing `needle` (lines seen before do not count).
    pub fn wait_for_log_again(&mut self, needle: &str, timeout: Duration) -> String {
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
                Err(_) => panic!("no new log line with {needle:?} within {timeout:?}"),
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

    /// Sends a signal (`libc::SIGTERM`, …) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; a child that already ended is no harm.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the process to end; its exit code (None when a signal ended it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                // Whatever it logged up to the end.
                self.logs();
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the process did not end within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
    upload_to(serve, "/jobs", files, fields).await
}

/// A multipart POST of files (name, bytes) and form fields to `path`: status and JSON body.
pub async fn upload_to(
    serve: &Serve,
    path: &str,
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
        .post(serve.url(path))
        .multipart(form)
        .send()
        .await
        .expect("POST");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

/// The body of `GET path` as text.
pub async fn get_text(serve: &Serve, path: &str) -> String {
    client()
        .get(serve.url(path))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
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

    /// One value of the Summary sheet.
    pub fn summary_value(&self, key: &str) -> String {
        self.summary()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {key} in summary"))
    }
}

/// Checks the workbook made from `samples/localdata_5174.csv` (`--from EPSG:5174`, to lon/lat)
/// cell by cell: every input row once, in order, its cells unchanged and text; positions within
/// `tolerance` degrees of the builtin transform; unreadable or out-of-area rows as errors with a
/// reason and no position; the Errors and Summary sheets. Returns the workbook.
pub fn check_localdata_workbook(out: &Path, tolerance: f64) -> Book {
    let sample = samples().join("localdata_5174.csv");
    let csv = read_csv(&std::fs::read(&sample).unwrap(), encoding_rs::EUC_KR, b',');
    let (header, rows) = csv.split_first().unwrap();
    let book = Book::open(out);
    assert_eq!(book.names, vec!["localdata_5174", "Summary", "Errors"]);
    let sheet = book.sheet("localdata_5174");
    assert_eq!(sheet.len(), rows.len() + 1, "header + every row");

    let mut expected_header = header.clone();
    expected_header.extend(["lon", "lat", "status", "error"].map(String::from));
    let got_header: Vec<String> = sheet[0].iter().map(text).collect();
    assert_eq!(got_header, expected_header);

    let xi = header.iter().position(|h| h == "좌표정보(x)").unwrap();
    let yi = header.iter().position(|h| h == "좌표정보(y)").unwrap();
    let n = header.len();
    let transform = Transform::new(
        Crs::from_code("EPSG:5174").unwrap(),
        Crs::from_code("EPSG:4326").unwrap(),
    );
    let mut errors = 0;
    for (i, (row, cells)) in rows.iter().zip(&sheet[1..]).enumerate() {
        for (c, value) in row.iter().enumerate() {
            assert_eq!(&text(&cells[c]), value, "row {i} column {c}");
            if !value.is_empty() {
                assert!(
                    matches!(cells[c], Data::String(_)),
                    "row {i} col {c} is text: {:?}",
                    cells[c]
                );
            }
        }
        let status = text(&cells[n + 2]);
        let point = (row.len() == n)
            .then(|| {
                let x = row[xi]
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())?;
                let y = row[yi]
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())?;
                transform.convert(x, y).ok()
            })
            .flatten();
        match point {
            Some((lon, lat)) => {
                assert_eq!(status, "ok", "row {i}: {row:?}");
                assert!((num(&cells[n]) - lon).abs() < tolerance, "row {i} lon");
                assert!((num(&cells[n + 1]) - lat).abs() < tolerance, "row {i} lat");
                assert!((124.0..132.0).contains(&lon) && (33.0..39.0).contains(&lat));
            }
            None => {
                errors += 1;
                assert_eq!(status, "error", "row {i}: {row:?}");
                assert_eq!(
                    cells[n],
                    Data::Empty,
                    "an unreadable coordinate is never a position"
                );
                assert!(!text(&cells[n + 3]).is_empty(), "row {i} has a reason");
            }
        }
    }
    assert!(errors >= 7, "the sample has bad rows: {errors}");

    // Leading zeros and formula-looking text survive as text.
    let all: Vec<String> = sheet.iter().flatten().map(text).collect();
    assert!(all.iter().any(|c| c == "03171"));
    assert!(all.iter().any(|c| c == "=SUM(A1)"));
    assert!(
        book.formulas("localdata_5174").is_empty(),
        "no cell became a formula"
    );

    let errs = book.sheet("Errors");
    assert_eq!(errs.len(), errors + 1);
    assert_eq!(
        errs[0].iter().map(text).collect::<Vec<_>>(),
        ["sheet", "line", "column", "value", "reason"]
    );
    assert!(book.summary_value("source CRS").contains("EPSG:5174"));
    assert_eq!(book.summary_value("rows"), rows.len().to_string());
    assert_eq!(book.summary_value("rows error"), errors.to_string());
    book
}

/// Where the tests find PostgreSQL (CI installs and starts it): an administrative connection
/// URL, `GEOBATCH_TEST_PG` or this.
const PG_ADMIN_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A PostgreSQL database of one test's own, with PostGIS, so tests run in parallel. Dropped
/// (best effort) with the value. A PostgreSQL that is not reachable fails the test.
pub struct PgDb {
    /// The URL to give geobatch (`DATABASE_URL`, `GEOBATCH_POSTGIS_URL`).
    pub url: String,
    name: String,
    admin: String,
}

impl PgDb {
    pub async fn create() -> PgDb {
        let admin = std::env::var("GEOBATCH_TEST_PG").unwrap_or_else(|_| PG_ADMIN_DEFAULT.into());
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL for the tests is not reachable at {admin} ({e}); start it \
                 (pg_ctlcluster 15 main start) or point GEOBATCH_TEST_PG at one"
            )
        });
        let name = format!("geobatch_{}", geobatch::job::JobId::random());
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        let base = admin.split('?').next().unwrap();
        let url = format!("{}/{name}", &base[..base.rfind('/').expect("a URL")]);
        let db = PgDb { url, name, admin };
        let mut conn = db.connect().await;
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            .await
            .expect("PostGIS is installed (Debian: postgresql-15-postgis-3)");
        let _ = conn.close().await;
        db
    }

    /// `create` from sync code (or a test's runtime): on a thread with a runtime of its own.
    pub fn create_blocking() -> PgDb {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(PgDb::create())
        })
        .join()
        .expect("create the test database")
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
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

/// A cluster against a (fake) Kakao at `kakao_url`: serve without workers and two `geobatch
/// worker` processes with two workers each, on one store and an embedded broker process,
/// every worker subscribed; small batches over four partitions so both processes get work.
pub struct KakaoCluster {
    pub serve: Serve,
    pub workers: Vec<Serve>,
    _broker: KillOnDrop,
}

pub fn kakao_cluster(dir: &TestDir, kakao_url: &str, key: &str) -> KakaoCluster {
    let (broker, brokers) = embedded_broker_process(dir);
    let common = [
        ("GEOBATCH_KAFKA_BROKERS", brokers.as_str()),
        ("GEOBATCH_TOPIC_PARTITIONS", "4"),
        ("GEOBATCH_BATCH_ROWS", "5"),
        ("GEOBATCH_KAKAO_BASE_URL", kakao_url),
        ("KAKAO_REST_API_KEY", key),
    ];
    let serve = Serve::start(dir, &[&common[..], &[("GEOBATCH_WORKERS", "0")]].concat());
    let worker_env = [&common[..], &[("GEOBATCH_WORKERS", "2")]].concat();
    let mut workers: Vec<Serve> = (0..2)
        .map(|_| Serve::start_cmd(dir, "worker", &worker_env))
        .collect();
    for w in &mut workers {
        w.wait_for_log("worker subscribed", Duration::from_secs(60));
    }
    KakaoCluster {
        serve,
        workers,
        _broker: broker,
    }
}

/// `geobatch broker`: the embedded broker as a process of its own, outliving the workers.
pub fn embedded_broker_process(dir: &TestDir) -> (KillOnDrop, String) {
    use std::io::BufRead;
    let mut child = geobatch(dir)
        .arg("broker")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (KillOnDrop(child), line.trim().to_string())
}

pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `id,x,y` rows in EPSG:5174 (a grid over central Korea), ids zero-padded so input order can
/// be checked in the workbook.
pub fn tm_rows_csv(rows: u64) -> Vec<u8> {
    let mut body = String::with_capacity(rows as usize * 32);
    body.push_str("id,x,y\n");
    for i in 0..rows {
        body.push_str(&format!(
            "{i:07},{:.2},{:.2}\n",
            190_000.0 + (i % 1000) as f64 * 7.0,
            440_000.0 + (i / 1000) as f64 * 3.0
        ));
    }
    body.into_bytes()
}

/// `serve` converting nothing itself, and `workers` worker processes of one consumer task each,
/// all on `brokers`; returns once every worker has subscribed.
pub fn cluster(
    dir: &TestDir,
    brokers: &str,
    partitions: &str,
    batch_rows: &str,
    workers: usize,
) -> (Serve, Vec<Serve>) {
    let common = [
        ("GEOBATCH_KAFKA_BROKERS", brokers),
        ("GEOBATCH_TOPIC_PARTITIONS", partitions),
        ("GEOBATCH_BATCH_ROWS", batch_rows),
    ];
    let mut serve_env = common.to_vec();
    serve_env.push(("GEOBATCH_WORKERS", "0"));
    let serve = Serve::start(dir, &serve_env);
    let mut worker_env = common.to_vec();
    worker_env.push(("GEOBATCH_WORKERS", "1"));
    let mut started: Vec<Serve> = (0..workers)
        .map(|_| Serve::start_cmd(dir, "worker", &worker_env))
        .collect();
    for w in &mut started {
        w.wait_for_log("worker subscribed", Duration::from_secs(60));
    }
    (serve, started)
}

/// No second, from any request on, holds more than `budget` of these receipt times.
pub fn assert_within_budget(mut times: Vec<Instant>, budget: usize) {
    times.sort();
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= budget,
            "{in_window} requests in the second from request {i}"
        );
    }
}

/// A finished job's workbook, downloaded and read.
pub async fn download_book(serve: &Serve, id: &str, dir: &TestDir) -> Book {
    let res = client()
        .get(serve.url(&format!("/jobs/{id}/result.xlsx")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let path = dir.path().join(format!("{id}.xlsx"));
    std::fs::write(&path, res.bytes().await.unwrap()).unwrap();
    Book::open(&path)
}

/// Every data row of `sheet` once, in input order (`tm_rows_csv` ids), each `ok`.
pub fn assert_rows_once_in_order(book: &Book, sheet: &str, rows: u64) {
    let sheet = book.sheet(sheet);
    assert_eq!(sheet.len() as u64, rows + 1);
    for (i, row) in sheet[1..].iter().enumerate() {
        assert_eq!(
            text(&row[0]),
            format!("{i:07}"),
            "every row exactly once, in order"
        );
        assert_eq!(text(&row[5]), "ok");
    }
}

/// Uploads `tm_rows_csv(rows)` as `<name>.csv` from EPSG:5174; returns the job's id.
pub async fn upload_tm_rows(serve: &Serve, name: &str, rows: u64) -> String {
    let (status, reply) = upload(
        serve,
        &[(&format!("{name}.csv"), tm_rows_csv(rows))],
        &[("from", "EPSG:5174")],
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    reply["id"].as_str().unwrap().to_string()
}

/// Uploads a `tm_rows_csv(rows)` job to `serve` and returns its id once every worker holds
/// partitions of its topic and rows are being stored.
pub async fn start_spread_job(serve: &Serve, workers: &mut [Serve], rows: u64) -> String {
    let id = upload_tm_rows(serve, "many", rows).await;
    let topic = format!("geobatch.rows.{id}.0");
    for w in workers.iter_mut() {
        w.wait_for_log(&format!("{topic}["), Duration::from_secs(60));
    }
    wait_job(serve, &id, Duration::from_secs(120), |j| {
        j["rows_done"].as_u64().unwrap_or(0) > 0
    })
    .await;
    id
}

/// Runs a GDAL command-line tool (`ogrinfo`, `ogr2ogr`: the independent reader of the GIS
/// outputs); stdout and stderr. Fails with what to install when it is missing.
pub fn gdal(tool: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): install gdal-bin"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{tool} {args:?} failed: {stderr}");
    (stdout, stderr)
}

/// A layer (or a whole GeoJSON file) as GDAL reads it, re-written as GeoJSON features.
pub fn gdal_features(path: &Path, layer: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec!["-f", "GeoJSON", "/vsistdout/", path.to_str().unwrap()];
    args.extend(layer);
    let (json, stderr) = gdal("ogr2ogr", &args);
    assert!(
        !stderr.contains("ERROR") && !stderr.contains("Warning"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("ogr2ogr GeoJSON");
    v["features"].as_array().expect("features").clone()
}

/// `DELETE /jobs/{id}`: the status.
pub async fn delete_job(serve: &Serve, id: &str) -> u16 {
    client()
        .delete(serve.url(&format!("/jobs/{id}")))
        .send()
        .await
        .expect("DELETE job")
        .status()
        .as_u16()
}
