//! `geobatch`: convert, serve, worker, broker. The flow is in `geobatch::pipeline`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use geobatch::bus::{BusConfig, ClientProperties, EmbeddedBroker};
use geobatch::intake::ReadOptions;
use geobatch::lookup::{LookupEnv, Provider, Secret, TemplateConfig};
use geobatch::pipeline::{JobInput, JobOptions, Pipeline, Settings, EXCEL_MAX_DATA_ROWS};
use geobatch::store::JobState;
use geobatch::{http, watch};

#[derive(Parser)]
#[command(
    name = "geobatch",
    version,
    about = "CSV of x/y coordinates -> Excel workbook with converted coordinates, through Kafka"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Where uploads, the SQLite store and results live.
    #[arg(
        long,
        env = "GEOBATCH_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    data_dir: PathBuf,
    /// postgres://… : keep the result store in PostgreSQL; unset: SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// PostgreSQL with PostGIS for `--engine postgis`; unset: the store's database (DATABASE_URL).
    #[arg(
        long,
        env = "GEOBATCH_POSTGIS_URL",
        global = true,
        hide_env_values = true
    )]
    postgis_url: Option<String>,
    /// Kafka bootstrap servers; unset: an embedded broker in this process.
    #[arg(long, env = "GEOBATCH_KAFKA_BROKERS", global = true)]
    kafka_brokers: Option<String>,
    /// Extra librdkafka properties for every Kafka client, `key=value,key=value`
    /// (e.g. `security.protocol=SASL_SSL,sasl.mechanism=PLAIN`).
    #[arg(long, env = "GEOBATCH_KAFKA_CONFIG", default_value = "", global = true)]
    kafka_config: ClientProperties,
    /// Partitions of each sheet topic.
    #[arg(
        long,
        env = "GEOBATCH_TOPIC_PARTITIONS",
        default_value_t = 4,
        global = true
    )]
    topic_partitions: i32,
    /// Replication factor of each sheet topic (external Kafka only).
    #[arg(
        long,
        env = "GEOBATCH_TOPIC_REPLICATION",
        default_value_t = 1,
        global = true
    )]
    topic_replication: i32,
    /// Delete a job's row topics once its workbook is written. (Tansu 0.6 answers metadata for
    /// a deleted topic in a way that crashes librdkafka clients that knew it: set false there.)
    #[arg(long, env = "GEOBATCH_DELETE_TOPICS", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    delete_topics: bool,
    /// Consumer tasks (workers) in this process.
    #[arg(long, env = "GEOBATCH_WORKERS", default_value_t = 2, global = true)]
    workers: usize,
    /// Rows per Kafka message.
    #[arg(
        long,
        env = "GEOBATCH_BATCH_ROWS",
        default_value_t = 1000,
        global = true
    )]
    batch_rows: usize,
    /// Data rows per worksheet before it is split (Excel's limit; lower only to test).
    #[arg(long, env = "GEOBATCH_SHEET_MAX_ROWS", default_value_t = EXCEL_MAX_DATA_ROWS, global = true, hide = true)]
    sheet_max_rows: u64,
    /// Serve /metrics on its own address (workers; serve also has it on the HTTP port)
    #[arg(long, env = "GEOBATCH_METRICS_ADDR", global = true)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Kakao REST API key, for --lookup kakao (never stored with a job; each process has its own).
    #[arg(
        long,
        env = "KAKAO_REST_API_KEY",
        global = true,
        hide_env_values = true
    )]
    kakao_rest_api_key: Option<String>,
    /// VWorld API key, for --lookup vworld.
    #[arg(long, env = "VWORLD_API_KEY", global = true, hide_env_values = true)]
    vworld_api_key: Option<String>,
    /// A file whose first line is the API key (when the provider's own variable is unset).
    #[arg(long, env = "GEOBATCH_LOOKUP_KEY_FILE", global = true)]
    lookup_key_file: Option<PathBuf>,
    /// Kakao Local API base URL (unset: https://dapi.kakao.com).
    #[arg(long, env = "GEOBATCH_KAKAO_BASE_URL", global = true)]
    kakao_base_url: Option<String>,
    /// VWorld API base URL (unset: https://api.vworld.kr).
    #[arg(long, env = "GEOBATCH_VWORLD_BASE_URL", global = true)]
    vworld_base_url: Option<String>,
    /// Nominatim base URL (unset: https://nominatim.openstreetmap.org).
    #[arg(long, env = "GEOBATCH_NOMINATIM_BASE_URL", global = true)]
    nominatim_base_url: Option<String>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `geobatch=debug`.
    #[arg(long, env = "GEOBATCH_LOG", default_value = "info", global = true)]
    log: String,
}

#[derive(Subcommand)]
enum Command {
    /// Convert CSV files to one workbook, start to finish, in this process.
    Convert(Box<ConvertArgs>),
    /// HTTP API and page, watched folder, intake, workers and merger.
    Serve(ServeArgs),
    /// Workers only: consume row topics and store results (needs GEOBATCH_KAFKA_BROKERS).
    Worker,
    /// Host an embedded Kafka-protocol broker for other local processes.
    Broker,
    /// Re-drive a finished job's error rows (e.g. after a provider outage or a key fix) in this
    /// process, and write its workbook again.
    Retry(RetryArgs),
}

#[derive(Args)]
struct RetryArgs {
    /// The job's id.
    job: String,
    /// No progress bar even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct ConvertArgs {
    /// Input CSV files: one worksheet each (or per --sheet-by value).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The workbook to write.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    job: JobArgs,
    /// No progress bar even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct JobArgs {
    /// Source CRS, e.g. EPSG:5174. Unset: only plainly lon/lat values default to EPSG:4326.
    #[arg(long)]
    from: Option<String>,
    /// Target CRS.
    #[arg(long, default_value = "EPSG:4326")]
    to: String,
    /// The x (easting/longitude) column; unset: detected from the header.
    #[arg(long)]
    x: Option<String>,
    /// The y (northing/latitude) column; unset: detected from the header.
    #[arg(long)]
    y: Option<String>,
    /// One worksheet per distinct value of this column.
    #[arg(long)]
    sheet_by: Option<String>,
    /// Input encoding (utf-8, cp949, euc-kr, utf-16le, utf-16be); unset: detected.
    #[arg(long)]
    encoding: Option<String>,
    /// Field delimiter: , ; | or tab; unset: detected.
    #[arg(long, value_parser = parse_delimiter)]
    delimiter: Option<u8>,
    /// Transform engine: builtin, or postgis (PostGIS ST_Transform; needs DATABASE_URL or
    /// GEOBATCH_POSTGIS_URL).
    #[arg(long, default_value = "builtin")]
    engine: String,
    /// Look up the address of every converted point: kakao, vworld, nominatim or template.
    #[arg(long)]
    lookup: Option<Provider>,
    /// The provider's budget for the whole cluster, requests/s (default: the provider's;
    /// 10, Nominatim 1).
    #[arg(long)]
    rate: Option<f64>,
    /// Requests per UTC day for the whole cluster; when spent, the job pauses until midnight UTC.
    #[arg(long)]
    daily_quota: Option<u64>,
    /// Seconds a cached address stays fresh (default 30 days).
    #[arg(long)]
    cache_ttl: Option<u64>,
    /// The provider description (JSON) for --lookup template.
    #[arg(long)]
    lookup_template: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// HTTP listen address.
    #[arg(long, env = "GEOBATCH_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Watched folder (inbox/, outbox/, done/, failed/ inside); unset: off.
    #[arg(long, env = "GEOBATCH_WATCH_DIR")]
    watch_dir: Option<PathBuf>,
    /// Largest accepted upload, in MiB.
    #[arg(long, env = "GEOBATCH_MAX_UPLOAD_MB", default_value_t = 512)]
    max_upload_mb: u64,
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    geobatch::pipeline::parse_delimiter(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.common.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("geobatch: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn settings(common: &Common) -> Settings {
    Settings {
        data_dir: common.data_dir.clone(),
        database_url: common.database_url.clone(),
        postgis_url: common.postgis_url.clone(),
        bus: BusConfig {
            brokers: common
                .kafka_brokers
                .clone()
                .filter(|b| !b.trim().is_empty()),
            partitions: common.topic_partitions,
            replication: common.topic_replication,
            client_properties: common.kafka_config.clone(),
        },
        workers: common.workers,
        delete_topics: common.delete_topics,
        batch_rows: common.batch_rows,
        sheet_max_rows: common.sheet_max_rows,
        lookup_env: LookupEnv {
            kakao_key: common.kakao_rest_api_key.as_deref().map(Secret::new),
            vworld_key: common.vworld_api_key.as_deref().map(Secret::new),
            key_file: common.lookup_key_file.clone(),
            kakao_base_url: common.kakao_base_url.clone(),
            vworld_base_url: common.vworld_base_url.clone(),
            nominatim_base_url: common.nominatim_base_url.clone(),
        },
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Convert(args) => convert(&cli.common, *args).await,
        Command::Serve(args) => {
            let pipeline = Pipeline::open(settings(&cli.common)).await?;
            spawn_metrics(&cli.common, &pipeline).await?;
            pipeline.start_all();
            if let Some(dir) = &args.watch_dir {
                watch::spawn(pipeline.clone(), dir.clone())
                    .with_context(|| format!("watched folder {}", dir.display()))?;
            }
            let listener = tokio::net::TcpListener::bind(args.http_addr)
                .await
                .with_context(|| format!("cannot listen on {}", args.http_addr))?;
            tracing::info!("listening on http://{}/", listener.local_addr()?);
            let app = http::router(pipeline, args.max_upload_mb * 1024 * 1024);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker => {
            anyhow::ensure!(
                cli.common.kafka_brokers.is_some(),
                "geobatch worker needs GEOBATCH_KAFKA_BROKERS: workers in other processes share a broker"
            );
            let pipeline = Pipeline::open(settings(&cli.common)).await?;
            spawn_metrics(&cli.common, &pipeline).await?;
            pipeline.start_workers();
            shutdown_signal().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Retry(args) => {
            let started = Instant::now();
            let pipeline = Pipeline::open(settings(&cli.common)).await?;
            pipeline.start_workers();
            pipeline.start_merger();
            let rows = pipeline.retry(&args.job).await?;
            eprintln!("geobatch: retrying {rows} error row(s) of job {}", args.job);
            report_when_finished(&pipeline, &args.job, started, !args.no_progress).await
        }
        Command::Broker => {
            let broker = EmbeddedBroker::start()?;
            println!("{}", broker.bootstrap());
            tracing::info!(
                "embedded Kafka broker at {}; point other processes at it with GEOBATCH_KAFKA_BROKERS={}",
                broker.bootstrap(),
                broker.bootstrap()
            );
            shutdown_signal().await;
            drop(broker);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `/metrics` on `GEOBATCH_METRICS_ADDR` when it is set; the bind is checked before we go on.
async fn spawn_metrics(common: &Common, pipeline: &Arc<Pipeline>) -> anyhow::Result<()> {
    let Some(addr) = common.metrics_addr else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    let pipeline = pipeline.clone();
    tokio::spawn(async move {
        if let Err(e) = geobatch::metrics::serve(listener, pipeline).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok(())
}

async fn convert(common: &Common, args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let pipeline = Pipeline::open(settings(common)).await?;
    pipeline.start_workers();
    pipeline.start_merger();
    let inputs: Vec<JobInput> = args
        .inputs
        .iter()
        .map(|p| JobInput {
            label: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            path: p.clone(),
            owned: false,
        })
        .collect();
    let output = std::path::absolute(&args.output)?;
    let options = match args.job.into_options(Some(output.clone())) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("geobatch: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let id = match pipeline.submit(None, inputs, options).await {
        Ok(id) => id,
        Err(e) if e.is_input_error() => {
            eprintln!("geobatch: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    report_when_finished(&pipeline, &id, started, !args.no_progress).await
}

/// Waits for the job, then says where its workbook is (exit 0) or why it failed (exit 1).
async fn report_when_finished(
    pipeline: &Arc<Pipeline>,
    id: &str,
    started: Instant,
    progress: bool,
) -> anyhow::Result<ExitCode> {
    let bar = progress.then(|| progress_bar(pipeline.clone(), id.to_string()));
    let job = pipeline.wait_finished(id).await?;
    if let Some(bar) = bar {
        bar.abort();
    }
    if job.state != JobState::Done {
        eprintln!(
            "geobatch: job failed: {}",
            job.message.unwrap_or_else(|| "no reason recorded".into())
        );
        return Ok(ExitCode::from(1));
    }
    let sheets = pipeline.store().sheets(id).await?;
    let ok: u64 = sheets.iter().map(|s| s.rows_ok).sum();
    let failed: u64 = sheets.iter().map(|s| s.rows_failed).sum();
    println!(
        "{}: {} rows ({} ok, {} error) in {} sheet(s), {:.1}s",
        job.output_path.unwrap_or_default(),
        ok + failed,
        ok,
        failed,
        sheets.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

impl JobArgs {
    /// The job's options; the template file is read here (its content goes with the job).
    fn into_options(self, output: Option<PathBuf>) -> Result<JobOptions, String> {
        let lookup_template = self
            .lookup_template
            .as_deref()
            .map(TemplateConfig::from_file)
            .transpose()?;
        Ok(JobOptions {
            from: self.from,
            to: Some(self.to),
            read: ReadOptions {
                encoding: self.encoding,
                delimiter: self.delimiter,
                x_column: self.x,
                y_column: self.y,
            },
            sheet_by: self.sheet_by,
            engine: Some(self.engine),
            output,
            lookup: self.lookup,
            rate: self.rate,
            daily_quota: self.daily_quota,
            cache_ttl: self.cache_ttl,
            lookup_template,
        })
    }
}

/// A progress bar on a terminal (indicatif draws nothing when stderr is not one).
fn progress_bar(pipeline: Arc<Pipeline>, id: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        let mut progress = pipeline.progress();
        loop {
            if let (Ok(Some(job)), Ok(sheets)) = (
                pipeline.store().job(&id).await,
                pipeline.store().sheets(&id).await,
            ) {
                let done: u64 = sheets.iter().map(|s| s.rows_ok + s.rows_failed).sum();
                bar.set_length(job.total_rows.unwrap_or(done.max(1)));
                bar.set_position(done);
                bar.set_message(job.state.as_str());
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), progress.changed()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
