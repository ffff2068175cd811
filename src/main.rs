//! `geobatch`: convert, serve, worker, broker, retry. The flow is in `geobatch::pipeline`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use geobatch::bus::EmbeddedBroker;
use geobatch::job::{JobId, JobState};
use geobatch::options::{JobOptions, JobSpec, Origin};
use geobatch::pipeline::{LookupEstimate, Pipeline};
use geobatch::settings::{HttpSettings, Settings};
use geobatch::{http, lookup, watch};
use tokio_util::sync::CancellationToken;

/// How long stopping may take: stages finish or abandon their batch, consumers leave the
/// group, the producer flushes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

#[derive(Parser)]
#[command(
    name = "geobatch",
    version,
    about = "CSV of x/y coordinates -> Excel workbook with converted coordinates, through Kafka"
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
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
    /// Geocoding jobs: ask their `no_result` rows too, of these providers (comma-separated),
    /// which the job keeps from now on.
    #[arg(long, value_name = "P,P")]
    providers: Option<String>,
}

#[derive(Args)]
struct ConvertArgs {
    /// Input CSV files: one worksheet each (or per --sheet-by value).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The result file to write; its extension (.xlsx, .gpkg, .geojson, .csv) is the format
    /// unless --format says (several formats: each file gets its format's extension).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    job: JobSpec,
    /// No progress bar even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    http: HttpSettings,
    /// Watched folder (inbox/, outbox/, done/, failed/ inside); unset: off.
    #[arg(long, env = "GEOBATCH_WATCH_DIR")]
    watch_dir: Option<PathBuf>,
    /// Job options for every file of the watched folder, as form fields joined with `&`
    /// (the names of POST /jobs), e.g. `geocode=auto&providers=kakao,vworld`.
    #[arg(long, env = "GEOBATCH_WATCH_OPTIONS")]
    watch_options: Option<String>,
}

fn main() -> ExitCode {
    // Each lookup provider brings its own key and base-URL flags.
    let matches = Cli::command().args(lookup::cli_args()).get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.settings.providers = lookup::provider_env(&matches);
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.settings.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("geobatch: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("geobatch: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.settings;
    match cli.command {
        Command::Convert(args) => convert(settings, *args).await,
        Command::Serve(args) => serve(settings, args).await,
        Command::Worker => {
            anyhow::ensure!(
                settings.bus.external_brokers().is_some(),
                "geobatch worker needs GEOBATCH_KAFKA_BROKERS: workers in other processes share a broker"
            );
            let metrics_addr = settings.metrics_addr;
            let pipeline = Pipeline::open(settings).await?;
            on_signals(pipeline.shutdown_token());
            spawn_metrics(metrics_addr, &pipeline).await?;
            pipeline.start_workers();
            pipeline.shutdown_token().cancelled().await;
            pipeline.shutdown(SHUTDOWN_GRACE).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Retry(args) => {
            let started = Instant::now();
            let id = match JobId::parse(&args.job) {
                Ok(id) => id,
                Err(e) => {
                    eprintln!("geobatch: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let pipeline = Pipeline::open(settings).await?;
            on_signals(pipeline.shutdown_token());
            pipeline.start_workers();
            pipeline.start_merger();
            let rows = match pipeline.retry_with(&id, args.providers.as_deref()).await {
                Ok(rows) => rows,
                Err(e) if e.is_input_error() => {
                    eprintln!("geobatch: {e}");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            };
            eprintln!("geobatch: retrying {rows} row(s) of job {id}");
            report_when_finished(&pipeline, &id, started, !args.no_progress).await
        }
        Command::Broker => {
            let broker = EmbeddedBroker::start()?;
            println!("{}", broker.bootstrap());
            tracing::info!(
                "embedded Kafka broker at {}; point other processes at it with GEOBATCH_KAFKA_BROKERS={}",
                broker.bootstrap(),
                broker.bootstrap()
            );
            let token = CancellationToken::new();
            on_signals(token.clone());
            token.cancelled().await;
            drop(broker);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The watched folder's job options: `name=value&name=value`, read as the upload form's.
fn watch_options(
    text: &str,
    templates: &Arc<std::collections::BTreeMap<String, serde_json::Value>>,
) -> anyhow::Result<JobOptions> {
    let fields = text
        .split('&')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .ok_or_else(|| anyhow::anyhow!("{p:?} is not name=value"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut ctx = Pipeline::option_context(Origin::Form);
    ctx.templates = templates.clone();
    Ok(JobSpec::from_fields(fields)?.validate(&ctx)?)
}

/// The operator's named templates (GEOBATCH_LOOKUP_TEMPLATES), checked; none when unset.
fn load_templates(
    settings: &Settings,
) -> anyhow::Result<Arc<std::collections::BTreeMap<String, serde_json::Value>>> {
    let Some(path) = &settings.lookup_templates else {
        return Ok(Arc::default());
    };
    let base = settings
        .providers
        .base_urls
        .get("template")
        .map(String::as_str);
    let templates = lookup::providers::template::load_templates(path, base)
        .with_context(|| format!("GEOBATCH_LOOKUP_TEMPLATES {}", path.display()))?;
    tracing::info!(
        "{} lookup template(s) from {}",
        templates.len(),
        path.display()
    );
    Ok(Arc::new(templates))
}

/// Who may use the HTTP front door; a usage error (exit 2) when it would be open to anyone
/// who reaches a non-loopback address.
fn http_access(args: &HttpSettings) -> Result<http::Tokens, String> {
    let tokens = http::Tokens {
        api: args.api_token()?,
        metrics: args.metrics_token()?,
    };
    if tokens.api.is_none() && !args.http_addr.ip().is_loopback() && !args.allow_anonymous {
        return Err(format!(
            "refusing to listen on {} without an API token: anyone who reaches it could use it. \
             Set GEOBATCH_API_TOKEN (or GEOBATCH_API_TOKEN_FILE), listen on 127.0.0.1, or give \
             --allow-anonymous (GEOBATCH_ALLOW_ANONYMOUS=true)",
            args.http_addr
        ));
    }
    if tokens.api.is_none() && !args.http_addr.ip().is_loopback() {
        tracing::warn!(
            "listening on {} without an API token (--allow-anonymous)",
            args.http_addr
        );
    }
    Ok(tokens)
}

async fn serve(settings: Settings, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let tokens = match http_access(&args.http) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("geobatch: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let templates = load_templates(&settings)?;
    let metrics_addr = settings.metrics_addr;
    let pipeline = Pipeline::open(settings).await?;
    let token = pipeline.shutdown_token();
    on_signals(token.clone());
    spawn_metrics(metrics_addr, &pipeline).await?;
    pipeline.start_all();
    if let Some(dir) = &args.watch_dir {
        let defaults = watch_options(args.watch_options.as_deref().unwrap_or(""), &templates)
            .context("GEOBATCH_WATCH_OPTIONS (--watch-options)")?;
        watch::spawn(pipeline.clone(), dir.clone(), defaults)
            .with_context(|| format!("watched folder {}", dir.display()))?;
    }
    let listener = tokio::net::TcpListener::bind(args.http.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.http.http_addr))?;
    tracing::info!("listening on http://{}/", listener.local_addr()?);
    let app = http::router(
        pipeline.clone(),
        http::HttpConfig {
            max_upload_bytes: args.http.max_upload_mb.saturating_mul(1024 * 1024),
            tokens,
            templates,
        },
    );
    http::serve(
        listener,
        app,
        http::Timeouts::from_settings(&args.http),
        token.clone(),
    )
    .await?;
    pipeline.shutdown(SHUTDOWN_GRACE).await;
    Ok(ExitCode::SUCCESS)
}

/// The first SIGTERM or Ctrl-C stops gracefully (`token`); a second one stops at once.
fn on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot listen for signals: {e}");
                return;
            }
        };
        signals.next().await;
        tracing::info!("stopping: finishing the work in hand (a second signal stops at once)");
        token.cancel();
        signals.next().await;
        eprintln!("geobatch: stopped at once");
        std::process::exit(130);
    });
}

struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `/metrics` on `GEOBATCH_METRICS_ADDR` when it is set; the bind is checked before we go on.
async fn spawn_metrics(addr: Option<SocketAddr>, pipeline: &Arc<Pipeline>) -> anyhow::Result<()> {
    let Some(addr) = addr else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    let (p, token) = (pipeline.clone(), pipeline.shutdown_token());
    pipeline.spawn_task(async move {
        if let Err(e) = geobatch::metrics::serve(listener, p, token).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok(())
}

async fn convert(settings: Settings, args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut ctx = Pipeline::option_context(Origin::CommandLine);
    ctx.templates = load_templates(&settings)?;
    let mut options = match args.job.validate(&ctx) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("geobatch: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    // `-o out.gpkg` without --format: the extension says which.
    if options.formats.is_empty() {
        if let Some(ext) = args.output.extension().and_then(|e| e.to_str()) {
            options.formats = geobatch::options::parse_formats(ext).unwrap_or_default();
        }
    }
    options.output = Some(std::path::absolute(&args.output)?);
    let pipeline = Pipeline::open(settings).await?;
    on_signals(pipeline.shutdown_token());
    pipeline.start_workers();
    pipeline.start_merger();
    let id = match pipeline.submit_owned(&args.inputs, options).await {
        Ok((id, resumed)) => {
            if resumed {
                eprintln!(
                    "geobatch: resuming job {id}, left unfinished by an earlier run on this input"
                );
            }
            id
        }
        Err(e) if e.is_input_error() => {
            eprintln!("geobatch: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    report_when_finished(&pipeline, &id, started, !args.no_progress).await
}

/// Waits for the job, then says where its workbook is (exit 0) or why it failed (exit 1);
/// a signal stops it (exit 130).
async fn report_when_finished(
    pipeline: &Arc<Pipeline>,
    id: &JobId,
    started: Instant,
    progress: bool,
) -> anyhow::Result<ExitCode> {
    let bar = progress.then(|| progress_bar(pipeline.clone(), id.clone()));
    let token = pipeline.shutdown_token();
    let finished = tokio::select! {
        job = pipeline.wait_finished(id) => Some(job),
        _ = token.cancelled() => None,
    };
    if let Some(bar) = bar {
        bar.abort();
    }
    let Some(job) = finished else {
        pipeline.shutdown(SHUTDOWN_GRACE).await;
        eprintln!("geobatch: stopped before job {id} finished");
        return Ok(ExitCode::from(130));
    };
    let job = job?;
    pipeline.shutdown(SHUTDOWN_GRACE).await;
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

/// A progress bar on a terminal (indicatif draws nothing when stderr is not one).
fn progress_bar(pipeline: Arc<Pipeline>, id: JobId) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let mut progress = pipeline.progress();
        loop {
            if let (Ok(Some(job)), Ok(sheets)) = (
                pipeline.store().job(&id).await,
                pipeline.store().sheets(&id).await,
            ) {
                let done: u64 = sheets.iter().map(|s| s.rows_ok + s.rows_failed).sum();
                bar.set_length(job.total_rows.unwrap_or(done.max(1)));
                bar.set_position(done);
                let message =
                    match LookupEstimate::of(&job, done) {
                        Some(e) => format!(
                        "{} · {} requests, {} cache hits, ~{} requests (~{} s at the budget) left",
                        job.state, e.requests, e.cache_hits, e.requests_left_estimate,
                        e.seconds_left_estimate
                    ),
                        None => job.state.to_string(),
                    };
                bar.set_message(message);
            }
            // Redraw on progress, at most five times a second.
            let _ = tokio::time::timeout(Duration::from_millis(200), progress.changed()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
