//! The pipeline: a job goes intake → bus → workers → store → merger.
//!
//! `Pipeline` owns the store and the bus and runs the three stages as tasks. `convert`,
//! `serve`, `worker` and the watched folder all drive this one mechanism.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::watch;

use crate::bus::{
    Bus, BusConfig, BusError, ConsumerLag, RowBatch, RowPoint, SheetTopic, ROW_TOPIC_PATTERN,
};
use crate::convert::crs::{Crs, CrsError};
use crate::convert::{epsg_of, EngineError, EngineKind, JobPlan};
use crate::intake::{self, CsvSource, IntakeError, Layout, ReadOptions};
use crate::lookup::{
    ConfigError, LocalBudget, Lookup, LookupConfig, LookupEnv, Provider, TemplateConfig,
};
use crate::merge::{self, MergeError};
mod lookup_step;

pub use lookup_step::{DeadLetter, DLQ_TOPIC};
use lookup_step::{Halt, JobLookup, Looked};

use crate::store::{
    JobFile, JobRecord, JobState, NewJob, Outcome, ResultStore, RowResult, StoreError,
};

/// Excel's last row is 1,048,576; one is the header.
pub const EXCEL_MAX_DATA_ROWS: u64 = 1_048_575;
const WORKER_GROUP: &str = "geobatch-workers";
const LIKELY_KOREAN_CRS: &str = "EPSG:5174 (Korean 1985 Modified Central Belt, LOCALDATA), \
     EPSG:2097 (Korean 1985 Central Belt), EPSG:5181 (KGD2002 Central Belt), \
     EPSG:5186 (KGD2002 Central Belt 2010), EPSG:5179 (KGD2002 Unified CS, UTM-K)";

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("{0}")]
    Crs(#[from] CrsError),
    #[error("{file}: no column {column:?} for --sheet-by; headers are: {headers}")]
    SheetByMissing {
        file: String,
        column: String,
        headers: String,
    },
    #[error(
        "{file}: line {line}: coordinates x={x}, y={y} are not longitude/latitude; \
         give the source CRS with --from, likely one of {LIKELY_KOREAN_CRS}"
    )]
    SourceCrsNeeded {
        file: String,
        line: u64,
        x: String,
        y: String,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no input file")]
    NoInput,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("job {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Lookup(#[from] ConfigError),
    #[error("job {id} is {state}: only a finished job (done or failed) can be retried")]
    NotFinished { id: String, state: &'static str },
}

impl JobError {
    /// True when the input or options are at fault (the user can fix it), not the service.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            JobError::Intake(_)
                | JobError::Crs(_)
                | JobError::SheetByMissing { .. }
                | JobError::SourceCrsNeeded { .. }
                | JobError::NoInput
        ) || matches!(self, JobError::Engine(e) if e.is_input_error())
            || matches!(self, JobError::Lookup(e) if !matches!(e, ConfigError::Client(_)))
    }
}

/// What a user asks of a job: the CLI flags and the upload form fields.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct JobOptions {
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(flatten)]
    pub read: ReadOptions,
    pub sheet_by: Option<String>,
    pub engine: Option<String>,
    /// Where the workbook goes; None: `<data dir>/results/<job>.xlsx`.
    pub output: Option<PathBuf>,
    /// Address lookup of every converted point at this provider.
    pub lookup: Option<Provider>,
    /// The provider's budget for the whole cluster, requests/s (None: the provider's default).
    pub rate: Option<f64>,
    /// Requests per UTC day for the whole cluster.
    pub daily_quota: Option<u64>,
    /// Seconds a cached address stays fresh (None: `DEFAULT_CACHE_TTL_SECS`).
    pub cache_ttl: Option<u64>,
    /// The provider description of `--lookup template` (read from `--lookup-template`).
    pub lookup_template: Option<TemplateConfig>,
}

/// A cached address is fresh for 30 days unless `--cache-ttl` says otherwise.
pub const DEFAULT_CACHE_TTL_SECS: u64 = 30 * 86_400;

impl JobOptions {
    /// The target CRS as given (EPSG:4326 when not).
    pub fn target_code(&self) -> &str {
        self.to.as_deref().unwrap_or("EPSG:4326")
    }

    /// The target CRS in the builtin engine.
    pub fn target(&self) -> Result<Crs, CrsError> {
        Crs::from_code(self.target_code())
    }

    pub fn cache_ttl_secs(&self) -> u64 {
        self.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL_SECS)
    }

    /// The lookup this job asks for, configured with this process's keys and base URLs;
    /// None for a job without `--lookup`. Every inconsistency is an error here.
    pub fn lookup_config(&self, env: &LookupEnv) -> Result<Option<LookupConfig>, ConfigError> {
        let Some(provider) = self.lookup else {
            let stray = [
                ("--rate", self.rate.is_some()),
                ("--daily-quota", self.daily_quota.is_some()),
                ("--cache-ttl", self.cache_ttl.is_some()),
                ("--lookup-template", self.lookup_template.is_some()),
            ];
            return match stray.into_iter().find(|(_, set)| *set) {
                Some((flag, _)) => Err(ConfigError::NeedsLookup(flag)),
                None => Ok(None),
            };
        };
        let mut cfg = LookupConfig::new(provider);
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ConfigError::BadRate(rate));
            }
            cfg.rate_per_sec = rate;
        }
        cfg.daily_quota = self.daily_quota;
        cfg.base_url = env.base_url(provider);
        cfg.key = if provider.needs_key() {
            Some(env.required_key(provider)?)
        } else {
            env.key(provider)?
        };
        match (provider, &self.lookup_template) {
            (Provider::Template, Some(t)) => {
                if t.uses_key() && cfg.key.is_none() {
                    env.required_key(provider)?;
                }
                cfg.template = Some(t.clone());
            }
            (Provider::Template, None) => return Err(ConfigError::MissingTemplate),
            (_, Some(_)) => return Err(ConfigError::TemplateNotUsed),
            (_, None) => {}
        }
        Ok(Some(cfg))
    }
}

/// One input file of a job.
#[derive(Clone, Debug)]
pub struct JobInput {
    pub label: String,
    pub path: PathBuf,
    /// The job owns the file (an upload) and may delete it with the job.
    pub owned: bool,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// `postgres://…`: the result store in PostgreSQL; None: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// PostgreSQL with PostGIS for `--engine postgis`; None: the store's database, if PostgreSQL.
    pub postgis_url: Option<String>,
    pub bus: BusConfig,
    /// Consumer tasks in this process (0: none, e.g. `serve` beside separate workers).
    pub workers: usize,
    /// Delete a job's row topics once its workbook is written.
    pub delete_topics: bool,
    /// Rows per Kafka message.
    pub batch_rows: usize,
    /// Data rows per worksheet before a sheet is split (Excel's limit unless testing).
    pub sheet_max_rows: u64,
    /// Address-lookup keys and base URLs of this process.
    pub lookup_env: LookupEnv,
}

impl Settings {
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Settings {
        Settings {
            data_dir: data_dir.into(),
            database_url: None,
            postgis_url: None,
            bus: BusConfig {
                brokers: None,
                partitions: 4,
                replication: 1,
                client_properties: Default::default(),
            },
            workers: 2,
            delete_topics: true,
            batch_rows: 1000,
            sheet_max_rows: EXCEL_MAX_DATA_ROWS,
            lookup_env: LookupEnv::default(),
        }
    }
}

/// Counters this process keeps; `/metrics` shows them.
#[derive(Debug, Default)]
pub struct Counters {
    pub rows_read: AtomicU64,
    pub rows_published: AtomicU64,
    pub rows_converted: AtomicU64,
    pub rows_failed: AtomicU64,
    /// Rows a worker received but found already stored (redelivery after a crash).
    pub rows_skipped: AtomicU64,
    pub batches: AtomicU64,
    pub jobs_merged: AtomicU64,
    /// Rows whose address came from the lookup cache (or an identical point in the batch).
    pub lookup_cache_hits: AtomicU64,
    pub transform_seconds: crate::metrics::Histogram,
}

pub struct Pipeline {
    settings: Settings,
    store: ResultStore,
    /// The database of the PostGIS engine, when there is one.
    postgis: Option<PgPool>,
    bus: watch::Receiver<Option<Arc<Bus>>>,
    /// Bumped after every change a waiter may care about (results stored, job state).
    progress: watch::Sender<u64>,
    counters: Counters,
    /// Jobs created before this instant belong to an earlier run: `recover` re-drives those,
    /// and only those (newer ones already have their own intake).
    opened_ms: i64,
    lag: ConsumerLag,
    /// One lookup per provider and budget, shared by every worker task of this process.
    lookups: std::sync::Mutex<HashMap<String, Arc<Lookup>>>,
    /// Lookups in flight in this process, shared by every worker task.
    in_flight: Arc<lookup_step::InFlight>,
    /// The dead-letter topic exists (created once per process).
    dlq_created: tokio::sync::OnceCell<()>,
}

/// What a worker keeps about a job it is working on.
struct WorkerJob {
    plan: JobPlan,
    lookup: Option<JobLookup>,
}

impl Pipeline {
    /// Opens the store and starts connecting to the bus in the background: jobs are accepted
    /// and stored while a configured broker is not up yet.
    pub async fn open(settings: Settings) -> Result<Arc<Pipeline>, JobError> {
        for sub in ["uploads", "results"] {
            std::fs::create_dir_all(settings.data_dir.join(sub))?;
        }
        let store = ResultStore::open(&settings.data_dir, settings.database_url.as_deref()).await?;
        tracing::info!("result store: {}", store.backend_name());
        let postgis = match settings.postgis_url.as_deref().map(str::trim) {
            // Connected on first use: a PostGIS that is down does not stop the service.
            Some(url) if !url.is_empty() => Some(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_lazy(url)
                    .map_err(EngineError::from)?,
            ),
            _ => store.postgres_pool().cloned(),
        };
        let (bus_tx, bus_rx) = watch::channel(None);
        let (progress, _) = watch::channel(0);
        let pipeline = Arc::new(Pipeline {
            settings,
            store,
            postgis,
            bus: bus_rx,
            progress,
            counters: Counters::default(),
            opened_ms: crate::store::now_ms(),
            lag: ConsumerLag::default(),
            lookups: Default::default(),
            in_flight: Default::default(),
            dlq_created: Default::default(),
        });
        let config = pipeline.settings.bus.clone();
        tokio::spawn(async move {
            match Bus::start(&config).await {
                Ok(bus) => {
                    let _ = bus_tx.send(Some(Arc::new(bus)));
                }
                Err(e) => tracing::error!("cannot start the Kafka bus: {e}"),
            }
            // Keep the sender (and so the bus) alive as long as the process.
            std::future::pending::<()>().await;
        });
        Ok(pipeline)
    }

    pub fn store(&self) -> &ResultStore {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn consumer_lag(&self) -> &ConsumerLag {
        &self.lag
    }

    /// This process's lookup counters, summed per provider.
    pub fn lookup_stats(&self) -> Vec<(Provider, crate::lookup::LookupStats)> {
        let lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        let mut per: HashMap<Provider, crate::lookup::LookupStats> = HashMap::new();
        for l in lookups.values() {
            let (s, sum) = (l.stats(), per.entry(l.provider()).or_default());
            sum.requests += s.requests;
            sum.retries += s.retries;
            sum.rate_limited += s.rate_limited;
            sum.server_errors += s.server_errors;
            sum.timeouts += s.timeouts;
            sum.connect_errors += s.connect_errors;
            sum.circuit_opens += s.circuit_opens;
        }
        let mut out: Vec<_> = per.into_iter().collect();
        out.sort_by_key(|(p, _)| p.as_str());
        out
    }

    /// The bus, once it is up.
    pub async fn bus(&self) -> Arc<Bus> {
        let mut rx = self.bus.clone();
        let guard = rx
            .wait_for(|b| b.is_some())
            .await
            .expect("the bus task lives as long as the pipeline");
        guard.clone().expect("checked above")
    }

    /// Whether the broker has answered yet.
    pub fn bus_ready(&self) -> bool {
        self.bus.borrow().is_some()
    }

    fn bump(&self) {
        self.progress.send_modify(|n| *n += 1);
    }

    /// Workers, merger, and the unfinished jobs of an earlier run re-driven: all `serve` does.
    pub fn start_all(self: &Arc<Self>) {
        self.start_workers();
        self.start_merger();
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.recover().await {
                tracing::error!("cannot resume unfinished jobs: {e}");
            }
        });
    }

    /// Checks the input and options, records the job, and starts its intake. Returns the id
    /// once the job is stored: from here on it survives a crash.
    pub async fn submit(
        self: &Arc<Self>,
        id: Option<String>,
        inputs: Vec<JobInput>,
        options: JobOptions,
    ) -> Result<String, JobError> {
        let id = id.unwrap_or_else(new_job_id);
        let prepared = {
            let (inputs, options) = (inputs.clone(), options.clone());
            let env = self.settings.lookup_env.clone();
            tokio::task::spawn_blocking(move || prepare(&inputs, &options, &env))
                .await
                .map_err(|e| JobError::Io(std::io::Error::other(e)))??
        };
        // The engine checks its CRSs (PostGIS: in spatial_ref_sys) before the job is accepted.
        let plan = self.make_plan(&options, &prepared.source).await?;
        let files: Vec<JobFile> = inputs
            .iter()
            .enumerate()
            .map(|(n, i)| JobFile {
                file_no: n as u32,
                label: i.label.clone(),
                path: i.path.to_string_lossy().into_owned(),
                owned: i.owned,
                layout: None,
                rows: None,
            })
            .collect();
        let label = if inputs.len() == 1 {
            inputs[0].label.clone()
        } else {
            format!("{} (+{} more)", inputs[0].label, inputs.len() - 1)
        };
        let options_json = serde_json::to_string(&options).expect("options serialize");
        self.store
            .create_job(&NewJob {
                id: &id,
                label: &label,
                options: &options_json,
                files: &files,
            })
            .await?;
        for (n, layout) in prepared.layouts.iter().enumerate() {
            let json = serde_json::to_string(layout).expect("layout serializes");
            self.store.set_file_layout(&id, n as u32, &json).await?;
        }
        self.store
            .set_plan(&id, &prepared.source, plan.description())
            .await?;
        tracing::info!(job = %id, %label, from = %prepared.source, "job accepted");
        self.bump();
        self.spawn_intake(id.clone());
        Ok(id)
    }

    fn spawn_intake(self: &Arc<Self>, id: String) {
        let me = self.clone();
        tokio::spawn(async move {
            let bus = me.bus().await;
            let rt = tokio::runtime::Handle::current();
            let me2 = me.clone();
            let id2 = id.clone();
            let outcome =
                tokio::task::spawn_blocking(move || me2.run_intake(&rt, &bus, &id2)).await;
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(format!("intake stopped: {e}")),
            };
            if let Some(msg) = failure {
                tracing::error!(job = %id, "{msg}");
                let _ = me.store.set_state(&id, JobState::Failed, Some(&msg)).await;
            }
            me.bump();
        });
    }

    /// Reads every input row once more and publishes those that have no result yet; the first
    /// run of a job and a re-driven one after a restart are the same code.
    fn run_intake(
        &self,
        rt: &tokio::runtime::Handle,
        bus: &Arc<Bus>,
        id: &str,
    ) -> Result<(), JobError> {
        let job = rt
            .block_on(self.store.job(id))?
            .ok_or_else(|| JobError::NotFound(id.to_string()))?;
        let options: JobOptions = serde_json::from_str(&job.options)
            .map_err(|e| JobError::Io(std::io::Error::other(e)))?;
        let files = rt.block_on(self.store.files(id))?;
        rt.block_on(self.store.set_state(id, JobState::Publishing, None))?;
        let mut resolved = ResolvedSeqs::new(&self.store, id);
        let mut splitter = SheetSplitter::new(
            options.sheet_by.clone(),
            files.len() > 1,
            self.settings.sheet_max_rows,
        );
        let mut batches: HashMap<u32, Vec<RowPoint>> = HashMap::new();
        let mut errors: HashMap<u32, Vec<RowResult>> = HashMap::new();
        let mut in_flight: VecDeque<tokio::task::JoinHandle<Result<(), BusError>>> =
            VecDeque::new();
        let mut file_rows = Vec::new();
        let mut seq = 0u64;
        let batch_rows = self.settings.batch_rows.max(1);

        let publish = |sheet: u32,
                       rows: Vec<RowPoint>,
                       in_flight: &mut VecDeque<tokio::task::JoinHandle<Result<(), BusError>>>|
         -> Result<(), JobError> {
            let n = rows.len() as u64;
            let bus = bus.clone();
            let topic = SheetTopic::new(id, sheet);
            in_flight.push_back(
                rt.spawn(async move { bus.publish(&topic, &RowBatch { sheet, rows }).await }),
            );
            self.counters.rows_published.fetch_add(n, Ordering::Relaxed);
            // Bounded: intake never runs more than a few batches ahead of the broker.
            while in_flight.len() > 16 {
                let handle = in_flight.pop_front().expect("non-empty");
                rt.block_on(handle)
                    .map_err(|e| JobError::Io(std::io::Error::other(e)))??;
            }
            Ok(())
        };

        for file in &files {
            let layout: Layout = serde_json::from_str(file.layout.as_deref().unwrap_or("null"))
                .map_err(|e| {
                    JobError::Io(std::io::Error::other(format!(
                        "{}: stored layout unreadable: {e}",
                        file.label
                    )))
                })?;
            let sheet_by = splitter.column_index(&layout);
            let source = CsvSource::reopen(Path::new(&file.path), &file.label, &layout)?;
            let mut rows = 0u64;
            for record in source {
                let record = record?;
                let this = seq;
                seq += 1;
                rows += 1;
                self.counters.rows_read.fetch_add(1, Ordering::Relaxed);
                let value = sheet_by
                    .and_then(|i| record.fields.get(i))
                    .map(String::as_str);
                let (sheet, new_sheet) = splitter.sheet_for(file, value);
                if let Some(name) = new_sheet {
                    let topic = SheetTopic::new(id, sheet);
                    rt.block_on(self.store.add_sheet(id, sheet, &name, &topic.name()))?;
                    rt.block_on(bus.create_topic(&topic))?;
                }
                if rt.block_on(resolved.contains(this))? {
                    continue;
                }
                match intake::point_of(&record, &layout) {
                    Ok((x, y)) => {
                        let batch = batches.entry(sheet).or_default();
                        batch.push(RowPoint { seq: this, x, y });
                        if batch.len() >= batch_rows {
                            let rows = std::mem::take(batch);
                            publish(sheet, rows, &mut in_flight)?;
                        }
                    }
                    Err(bad) => {
                        let list = errors.entry(sheet).or_default();
                        list.push(RowResult {
                            seq: this,
                            outcome: Outcome::Failed {
                                column: Some(bad.column),
                                raw: Some(bad.raw),
                                reason: bad.reason,
                            },
                        });
                        if list.len() >= batch_rows {
                            let rows = std::mem::take(list);
                            rt.block_on(self.store.store_results(id, sheet, &rows))?;
                        }
                    }
                }
            }
            file_rows.push((file.file_no, rows));
        }
        for (sheet, rows) in batches.into_iter().filter(|(_, r)| !r.is_empty()) {
            publish(sheet, rows, &mut in_flight)?;
        }
        for (sheet, rows) in errors.into_iter().filter(|(_, r)| !r.is_empty()) {
            rt.block_on(self.store.store_results(id, sheet, &rows))?;
        }
        for handle in in_flight {
            rt.block_on(handle)
                .map_err(|e| JobError::Io(std::io::Error::other(e)))??;
        }
        let sheet_rows = splitter.totals();
        rt.block_on(self.store.finish_intake(id, &file_rows, &sheet_rows))?;
        tracing::info!(job = %id, rows = seq, sheets = sheet_rows.len(), "intake done");
        Ok(())
    }

    /// The configured number of consumer tasks in this process.
    pub fn start_workers(self: &Arc<Self>) {
        for n in 0..self.settings.workers {
            self.spawn_worker(n);
        }
    }

    fn spawn_worker(self: &Arc<Self>, n: usize) {
        let me = self.clone();
        tokio::spawn(async move {
            let bus = me.bus().await;
            loop {
                match me.run_worker(&bus, n).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(worker = n, "worker stopped: {e}; restarting in 1s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    /// One consumer of the workers' group: converts batches, stores the results, and only then
    /// commits the offsets, so a crash redelivers at most what was not stored.
    async fn run_worker(&self, bus: &Bus, n: usize) -> Result<(), JobError> {
        let name = format!("{}-{n}", std::process::id());
        let consumer = bus.consumer(WORKER_GROUP, &name, self.lag.clone())?;
        consumer
            .subscribe(&[ROW_TOPIC_PATTERN])
            .map_err(BusError::from)?;
        tracing::info!(worker = n, "worker subscribed to {ROW_TOPIC_PATTERN}");
        let mut plans: HashMap<String, Option<Arc<WorkerJob>>> = HashMap::new();
        loop {
            let first = match consumer.recv().await {
                Ok(m) => m.detach(),
                // No row topic exists yet (a fresh broker): not an error for a worker.
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    continue
                }
                Err(e) => {
                    // librdkafka retries by itself; the consumer stays usable.
                    tracing::warn!(worker = n, "consuming: {e}");
                    continue;
                }
            };
            let mut messages = vec![first];
            while messages.len() < 16 {
                match tokio::time::timeout(Duration::from_millis(2), consumer.recv()).await {
                    Ok(Ok(m)) => messages.push(m.detach()),
                    Ok(Err(_)) | Err(_) => break,
                }
            }
            let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
            for m in &messages {
                self.handle_message(bus, m.topic(), m.payload(), &mut plans)
                    .await?;
                let slot = offsets
                    .entry((m.topic().to_string(), m.partition()))
                    .or_insert(m.offset());
                *slot = (*slot).max(m.offset());
            }
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), offset) in offsets {
                tpl.add_partition_offset(&topic, partition, Offset::Offset(offset + 1))
                    .map_err(BusError::from)?;
            }
            consumer
                .commit(&tpl, CommitMode::Async)
                .map_err(BusError::from)?;
            self.bump();
        }
    }

    async fn handle_message(
        &self,
        bus: &Bus,
        topic: &str,
        payload: Option<&[u8]>,
        plans: &mut HashMap<String, Option<Arc<WorkerJob>>>,
    ) -> Result<(), JobError> {
        let Some(sheet_topic) = SheetTopic::parse(topic) else {
            tracing::warn!(topic, "message on a topic that is not a row topic; skipped");
            return Ok(());
        };
        let batch = match RowBatch::decode(payload.unwrap_or_default()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(topic, "unreadable row batch skipped: {e}");
                return Ok(());
            }
        };
        let job = &sheet_topic.job;
        if !plans.contains_key(job) {
            let plan = self.plan_for(job).await?;
            plans.insert(job.clone(), plan.map(Arc::new));
        }
        let Some(work) = plans.get(job).cloned().flatten() else {
            // A deleted or finished job: nothing to do, and nothing to redeliver.
            return Ok(());
        };
        let (Some(first), Some(last)) = (batch.rows.first(), batch.rows.last()) else {
            return Ok(());
        };
        let done: HashSet<u64> = self
            .store
            .resolved_seqs(job, first.seq, last.seq)
            .await?
            .into_iter()
            .collect();
        let todo: Vec<RowPoint> = batch
            .rows
            .iter()
            .filter(|r| !done.contains(&r.seq))
            .copied()
            .collect();
        self.counters
            .rows_skipped
            .fetch_add((batch.rows.len() - todo.len()) as u64, Ordering::Relaxed);
        if todo.is_empty() {
            return Ok(());
        }
        // A database that fails (PostGIS, the store) never turns rows into error rows: the
        // batch is retried until it goes through, its offsets uncommitted meanwhile.
        let started = std::time::Instant::now();
        let results = until_ok(job, "convert the batch", || work.plan.convert(&todo)).await;
        self.counters.transform_seconds.observe(started.elapsed());
        let results = match &work.lookup {
            None => results,
            Some(lookup) => match self.look_up(bus, job, batch.sheet, lookup, results).await? {
                Some(results) => results,
                // The job failed meanwhile: nothing to store, nothing to redeliver.
                None => return Ok(()),
            },
        };
        let failed = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
            .count() as u64;
        until_ok(job, "store results", || {
            self.store.store_results(job, batch.sheet, &results)
        })
        .await;
        self.counters
            .rows_converted
            .fetch_add(todo.len() as u64, Ordering::Relaxed);
        self.counters
            .rows_failed
            .fetch_add(failed, Ordering::Relaxed);
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn plan_for(&self, id: &str) -> Result<Option<WorkerJob>, JobError> {
        let Some(job) = self.store.job(id).await? else {
            return Ok(None);
        };
        if job.state.is_finished() {
            return Ok(None);
        }
        let options: JobOptions = serde_json::from_str(&job.options)
            .map_err(|e| JobError::Io(std::io::Error::other(e)))?;
        let plan = self.job_plan(&job, &options).await?;
        let lookup = match self.job_lookup(&options) {
            Ok(lookup) => lookup,
            // This worker cannot look addresses up (its environment lacks the key): the job
            // cannot finish as asked.
            Err(e) => {
                let msg = format!("worker process {}: {e}", std::process::id());
                tracing::error!(job = %id, "{msg}");
                self.store
                    .set_state(id, JobState::Failed, Some(&msg))
                    .await?;
                self.bump();
                return Ok(None);
            }
        };
        Ok(Some(WorkerJob { plan, lookup }))
    }

    /// The job's lookup with this process's keys; the `Lookup` itself is shared by every job
    /// with the same provider and budget (its pacing and circuit are the process's).
    fn job_lookup(&self, options: &JobOptions) -> Result<Option<JobLookup>, JobError> {
        let Some(cfg) = options.lookup_config(&self.settings.lookup_env)? else {
            return Ok(None);
        };
        let provider = cfg.provider;
        let daily_quota = cfg.daily_quota;
        let identity =
            serde_json::to_string(&(provider, cfg.rate_per_sec, cfg.daily_quota, &cfg.template))
                .expect("lookup identity serializes");
        let lookup = {
            let mut lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
            match lookups.get(&identity) {
                Some(l) => l.clone(),
                None => {
                    let gate: Arc<dyn crate::lookup::BudgetGate> = Arc::new(self.store.clone());
                    let l = Arc::new(Lookup::new(cfg, gate)?);
                    lookups.insert(identity, l.clone());
                    l
                }
            }
        };
        let target = options.target()?;
        let wgs84 = Crs::from_code("EPSG:4326")?;
        Ok(Some(JobLookup {
            in_flight: self.in_flight.clone(),
            lookup,
            provider,
            daily_quota,
            ttl_ms: options
                .cache_ttl_secs()
                .saturating_mul(1000)
                .min(i64::MAX as u64) as i64,
            to_wgs84: (target.epsg() != wgs84.epsg())
                .then(|| crate::convert::crs::Transform::new(target, wgs84)),
        }))
    }

    /// Looks up the batch's points until that can be done: waits out an open circuit or a spent
    /// daily quota (the job shows `paused`), fails the job on a refused key (None). Rows whose
    /// lookup failed for good go to the dead-letter topic.
    async fn look_up(
        &self,
        bus: &Bus,
        job: &str,
        sheet: u32,
        lookup: &JobLookup,
        results: Vec<RowResult>,
    ) -> Result<Option<Vec<RowResult>>, JobError> {
        let mut unavailable_delay = Duration::from_millis(200);
        loop {
            // Another worker may have failed the job (a refused key): send nothing more for it.
            let state = self.store.job(job).await?.map(|j| j.state);
            if state.is_none_or(|s| s.is_finished()) {
                return Ok(None);
            }
            match lookup.apply(&self.store, job, sheet, &results).await {
                Ok(Looked {
                    results,
                    dead_letters,
                    requests,
                    cache_hits,
                }) => {
                    until_ok(job, "count lookups", || {
                        self.store.add_lookup_counts(job, requests, cache_hits)
                    })
                    .await;
                    self.counters
                        .lookup_cache_hits
                        .fetch_add(cache_hits, Ordering::Relaxed);
                    for letter in &dead_letters {
                        self.dead_letter(bus, letter).await;
                    }
                    return Ok(Some(results));
                }
                Err(Halt::InvalidKey(msg)) => {
                    tracing::error!(job, "{msg}");
                    self.store
                        .set_state(job, JobState::Failed, Some(&msg))
                        .await?;
                    self.bump();
                    return Ok(None);
                }
                Err(Halt::Quota { resets_at_ms }) => {
                    let msg = lookup.quota_message(resets_at_ms);
                    tracing::warn!(job, "{msg}");
                    self.store.pause(job, &msg).await?;
                    self.bump();
                    let wait = (resets_at_ms - crate::store::now_ms()).max(0) as u64;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    self.store.unpause(job).await?;
                    self.bump();
                }
                Err(Halt::Unavailable(reason)) => {
                    tracing::warn!(job, "address lookups wait: {reason}");
                    while lookup.lookup.circuit_open() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    tokio::time::sleep(unavailable_delay).await;
                    unavailable_delay = (unavailable_delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Publishes a row whose lookup failed for good to `geobatch.dlq` (no key in it: the
    /// reasons are scrubbed by the lookup).
    async fn dead_letter(&self, bus: &Bus, letter: &DeadLetter) {
        let payload = serde_json::to_vec(letter).expect("dead letter serializes");
        until_ok(&letter.job, "publish to the dead-letter topic", || async {
            self.dlq_created
                .get_or_try_init(|| bus.create_topic_named(DLQ_TOPIC))
                .await?;
            bus.send(DLQ_TOPIC, letter.job.as_bytes(), &payload).await
        })
        .await;
    }

    async fn job_plan(&self, job: &JobRecord, options: &JobOptions) -> Result<JobPlan, JobError> {
        self.make_plan(options, job.source_crs.as_deref().unwrap_or("EPSG:4326"))
            .await
    }

    /// The job's engine with its CRSs: the builtin transform, or PostGIS (which checks that
    /// both SRIDs are in its spatial_ref_sys).
    async fn make_plan(&self, options: &JobOptions, source: &str) -> Result<JobPlan, JobError> {
        match EngineKind::parse(options.engine.as_deref())? {
            EngineKind::Builtin => Ok(JobPlan::new(Crs::from_code(source)?, options.target()?)),
            EngineKind::Postgis => {
                let pool = self.postgis.clone().ok_or(EngineError::NoDatabase)?;
                let (from, to) = (epsg_of(source)?, epsg_of(options.target_code())?);
                Ok(JobPlan::postgis(pool, from, to).await?)
            }
        }
    }

    /// Writes the workbook of every job whose rows are all resolved.
    pub fn start_merger(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut progress = me.progress.subscribe();
            loop {
                match me.store.resolved_jobs().await {
                    Ok(ids) => {
                        for id in ids {
                            if let Err(e) = me.merge_job(&id).await {
                                tracing::error!(job = %id, "cannot write the workbook: {e}");
                                let _ = me
                                    .store
                                    .set_state(&id, JobState::Failed, Some(&e.to_string()))
                                    .await;
                                me.bump();
                            }
                        }
                    }
                    Err(e) => tracing::error!("merger cannot read the store: {e}"),
                }
                // Results from workers in other processes do not bump our counter: poll too.
                let _ = tokio::time::timeout(Duration::from_secs(1), progress.changed()).await;
            }
        });
    }

    async fn merge_job(&self, id: &str) -> Result<(), JobError> {
        self.store.set_state(id, JobState::Merging, None).await?;
        self.bump();
        let job = self
            .store
            .job(id)
            .await?
            .ok_or_else(|| JobError::NotFound(id.to_string()))?;
        let options: JobOptions = serde_json::from_str(&job.options)
            .map_err(|e| JobError::Io(std::io::Error::other(e)))?;
        let output = options.output.clone().unwrap_or_else(|| {
            self.settings
                .data_dir
                .join("results")
                .join(format!("{id}.xlsx"))
        });
        let plan = match self.job_plan(&job, &options).await {
            Ok(plan) => plan,
            // PostGIS (which names the CRSs) is away: not the job's fault, try again later.
            Err(JobError::Engine(e)) if !e.is_input_error() => {
                tracing::warn!(job = %id, "cannot prepare the workbook ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.store.set_state(id, JobState::Running, None).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let summary = merge::merge_job(&self.store, &job, &options, &plan, &output).await?;
        self.store.set_output(id, &output.to_string_lossy()).await?;
        self.store.set_state(id, JobState::Done, None).await?;
        self.counters.jobs_merged.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            job = %id,
            rows = summary.rows,
            ok = summary.ok,
            failed = summary.failed,
            output = %output.display(),
            "workbook written"
        );
        self.bump();
        if !self.settings.delete_topics {
            return Ok(());
        }
        let sheets = self.store.sheets(id).await?;
        let topics: Vec<SheetTopic> = sheets
            .iter()
            .map(|s| SheetTopic::new(id, s.sheet_no))
            .collect();
        if let Err(e) = self.bus().await.delete_topics(&topics).await {
            tracing::warn!(job = %id, "cannot delete the job's topics: {e}");
        }
        Ok(())
    }

    /// Re-drives every unfinished job after a restart: rows without a result are published
    /// again (the embedded broker kept nothing), rows with one are never converted again.
    async fn recover(self: &Arc<Self>) -> Result<(), JobError> {
        let embedded = self.bus().await.is_embedded();
        let earlier = self.store.unfinished_jobs().await?;
        for job in earlier
            .into_iter()
            .filter(|j| j.created_ms < self.opened_ms)
        {
            match job.state {
                // Every row has its result: the merger only has to run again.
                JobState::Merging => {
                    self.store
                        .set_state(&job.id, JobState::Running, None)
                        .await?;
                    continue;
                }
                // A persistent broker still holds the published rows.
                JobState::Running | JobState::Paused if !embedded => continue,
                _ => {}
            }
            tracing::info!(job = %job.id, state = job.state.as_str(), "resuming unfinished job");
            self.spawn_intake(job.id.clone());
        }
        self.bump();
        Ok(())
    }

    /// Re-drives a finished job: its `error` rows lose their results and the job runs again
    /// (intake publishes every row without a result, so rows a failed job never reached go
    /// too). Returns how many error rows are retried.
    pub async fn retry(self: &Arc<Self>, id: &str) -> Result<u64, JobError> {
        let job = self
            .store
            .job(id)
            .await?
            .ok_or_else(|| JobError::NotFound(id.to_string()))?;
        if !job.state.is_finished() {
            return Err(JobError::NotFinished {
                id: id.to_string(),
                state: job.state.as_str(),
            });
        }
        let rows = self.store.reset_failed_rows(id).await?;
        tracing::info!(job = %id, rows, "retrying the job's error rows");
        self.bump();
        self.spawn_intake(id.to_string());
        Ok(rows)
    }

    /// Waits until the job is done or failed.
    pub async fn wait_finished(&self, id: &str) -> Result<JobRecord, JobError> {
        let mut progress = self.progress.subscribe();
        loop {
            let job = self
                .store
                .job(id)
                .await?
                .ok_or_else(|| JobError::NotFound(id.to_string()))?;
            if job.state.is_finished() {
                return Ok(job);
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), progress.changed()).await;
        }
    }

    /// A receiver that changes whenever results are stored or a job changes state.
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Deletes a job, its results and the files it owns.
    pub async fn delete_job(&self, id: &str) -> Result<bool, JobError> {
        let files = self.store.files(id).await?;
        let job = self.store.job(id).await?;
        let gone = self.store.delete_job(id).await?;
        for f in files.iter().filter(|f| f.owned) {
            let _ = std::fs::remove_file(&f.path);
        }
        let _ = std::fs::remove_dir(self.upload_dir(id));
        if let Some(out) = job.and_then(|j| j.output_path) {
            if out.starts_with(&*self.settings.data_dir.to_string_lossy()) {
                let _ = std::fs::remove_file(out);
            }
        }
        self.bump();
        Ok(gone)
    }

    /// Where an upload's files are kept until the job is deleted.
    pub fn upload_dir(&self, id: &str) -> PathBuf {
        self.settings.data_dir.join("uploads").join(id)
    }
}

/// Runs `op` until it succeeds, backing off between tries (100 ms doubling to 10 s). For the
/// worker's database writes and PostGIS queries: not committing the batch's offsets is what
/// keeps its rows meanwhile.
async fn until_ok<T, E, F>(job: &str, what: &str, mut op: impl FnMut() -> F) -> T
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(job = %job, "cannot {what} ({e}); retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// `,` `;` `|` `tab` (or a literal tab) as the byte the CSV reader wants.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "," | "comma" => Ok(b','),
        ";" | "semicolon" => Ok(b';'),
        "|" | "pipe" => Ok(b'|'),
        "\t" | "\\t" | "tab" | "TAB" => Ok(b'\t'),
        other => Err(format!("delimiter {other:?} is not one of , ; | tab")),
    }
}

pub fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}

struct Prepared {
    layouts: Vec<Layout>,
    /// "EPSG:<n>".
    source: String,
}

/// Everything that can be wrong with the input or options, found before the job is accepted.
fn prepare(
    inputs: &[JobInput],
    options: &JobOptions,
    env: &LookupEnv,
) -> Result<Prepared, JobError> {
    if inputs.is_empty() {
        return Err(JobError::NoInput);
    }
    // The whole lookup configuration (key present, template valid, base URL usable) is
    // checked by building one; the workers build theirs from their own environment.
    if let Some(cfg) = options.lookup_config(env)? {
        Lookup::new(cfg, Arc::new(LocalBudget::new()))?;
    }
    // The builtin engine knows its CRSs here; PostGIS's are checked when the plan is made.
    let engine = EngineKind::parse(options.engine.as_deref())?;
    let code = |code: &str| -> Result<String, CrsError> {
        match engine {
            EngineKind::Builtin => Crs::from_code(code).map(|c| c.to_string()),
            EngineKind::Postgis => epsg_of(code).map(|n| format!("EPSG:{n}")),
        }
    };
    code(options.target_code())?;
    let given = options.from.as_deref().map(code).transpose()?;
    let mut layouts = Vec::new();
    let mut source = given;
    for input in inputs {
        let mut csv = CsvSource::open(&input.path, &input.label, &options.read)?;
        let layout = csv.layout().clone();
        if let Some(col) = &options.sheet_by {
            if find_column(&layout.headers, col).is_none() {
                return Err(JobError::SheetByMissing {
                    file: input.label.clone(),
                    column: col.clone(),
                    headers: quote_list(&layout.headers),
                });
            }
        }
        if source.is_none() {
            source = detect_geographic(&mut csv, &layout, &input.label)?.map(|c| c.to_string());
        }
        layouts.push(layout);
    }
    Ok(Prepared {
        layouts,
        // No readable point anywhere: every row will be an error row, whatever the CRS.
        source: source.unwrap_or_else(|| "EPSG:4326".to_string()),
    })
}

/// With no `--from`, only plainly geographic values may default to EPSG:4326: Korean TM
/// variants sit hundreds of metres apart, so we never guess between them.
fn detect_geographic(
    csv: &mut CsvSource,
    layout: &Layout,
    label: &str,
) -> Result<Option<Crs>, JobError> {
    for record in csv.by_ref().take(10_000) {
        let record = record?;
        if let Ok((x, y)) = intake::point_of(&record, layout) {
            if x.abs() <= 180.0 && y.abs() <= 90.0 {
                tracing::info!(
                    "{label}: coordinates look like longitude/latitude; using EPSG:4326"
                );
                return Ok(Some(Crs::from_code("EPSG:4326")?));
            }
            return Err(JobError::SourceCrsNeeded {
                file: label.to_string(),
                line: record.line,
                x: record.fields[layout.x].clone(),
                y: record.fields[layout.y].clone(),
            });
        }
    }
    Ok(None)
}

fn find_column(headers: &[String], name: &str) -> Option<usize> {
    headers.iter().position(|h| h == name).or_else(|| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name.trim()))
    })
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|h| format!("{h:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Pages through a job's resolved sequence numbers in order, alongside intake's reading.
struct ResolvedSeqs<'a> {
    store: &'a ResultStore,
    job: &'a str,
    page: VecDeque<u64>,
    exhausted: bool,
}

impl<'a> ResolvedSeqs<'a> {
    const PAGE: u32 = 100_000;

    fn new(store: &'a ResultStore, job: &'a str) -> Self {
        ResolvedSeqs {
            store,
            job,
            page: VecDeque::new(),
            exhausted: false,
        }
    }

    /// `seq` must not decrease between calls.
    async fn contains(&mut self, seq: u64) -> Result<bool, StoreError> {
        loop {
            while self.page.front().is_some_and(|&s| s < seq) {
                self.page.pop_front();
            }
            if let Some(&s) = self.page.front() {
                return Ok(s == seq);
            }
            if self.exhausted {
                return Ok(false);
            }
            let page = self
                .store
                .resolved_seqs_from(self.job, seq, Self::PAGE)
                .await?;
            self.exhausted = page.len() < Self::PAGE as usize;
            self.page.extend(page);
        }
    }
}

/// Which worksheet a row goes to: one per file (or per value of `--sheet-by`), split at the
/// row limit. Deterministic, so a re-driven intake finds the same sheets.
struct SheetSplitter {
    sheet_by: Option<String>,
    prefix_file: bool,
    max_rows: u64,
    /// (file, value) → the sheet currently filling and how many rows it has.
    current: HashMap<(u32, String), (u32, u64)>,
    /// Parts already opened for each key, for " (2)" style continuation names.
    parts: HashMap<(u32, String), u32>,
    rows: Vec<u64>,
    taken: HashSet<String>,
}

impl SheetSplitter {
    fn new(sheet_by: Option<String>, prefix_file: bool, max_rows: u64) -> Self {
        SheetSplitter {
            sheet_by,
            prefix_file,
            max_rows: max_rows.max(1),
            current: HashMap::new(),
            parts: HashMap::new(),
            rows: Vec::new(),
            taken: merge::RESERVED_SHEETS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    fn column_index(&self, layout: &Layout) -> Option<usize> {
        self.sheet_by
            .as_deref()
            .and_then(|c| find_column(&layout.headers, c))
    }

    /// The sheet of the next row, and its name if this row opens it.
    fn sheet_for(&mut self, file: &JobFile, value: Option<&str>) -> (u32, Option<String>) {
        let value = if self.sheet_by.is_some() {
            value.unwrap_or("").trim().to_string()
        } else {
            String::new()
        };
        let key = (file.file_no, value);
        if let Some((sheet, rows)) = self.current.get_mut(&key) {
            if *rows < self.max_rows {
                *rows += 1;
                self.rows[*sheet as usize] += 1;
                return (*sheet, None);
            }
        }
        let part = {
            let p = self.parts.entry(key.clone()).or_insert(0);
            *p += 1;
            *p
        };
        let stem = Path::new(&file.label)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.label.clone());
        let mut base = match (&self.sheet_by, self.prefix_file) {
            (None, _) => stem,
            (Some(_), false) if key.1.is_empty() => "(blank)".to_string(),
            (Some(_), false) => key.1.clone(),
            (Some(_), true) => format!("{stem} {}", key.1),
        };
        if part > 1 {
            base = format!("{base} ({part})");
        }
        let name = intake::sheet_name(&base, &self.taken);
        self.taken.insert(name.to_lowercase());
        self.taken.insert(name.clone());
        let sheet = self.rows.len() as u32;
        self.rows.push(1);
        self.current.insert(key, (sheet, 1));
        (sheet, Some(name))
    }

    fn totals(&self) -> Vec<(u32, u64)> {
        self.rows
            .iter()
            .enumerate()
            .map(|(n, r)| (n as u32, *r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(no: u32, label: &str) -> JobFile {
        JobFile {
            file_no: no,
            label: label.into(),
            path: String::new(),
            owned: false,
            layout: None,
            rows: None,
        }
    }

    #[test]
    fn lookup_options_are_checked_against_this_process() {
        let env = LookupEnv::default();
        let opts = |f: &dyn Fn(&mut JobOptions)| {
            let mut o = JobOptions::default();
            f(&mut o);
            o
        };
        assert!(opts(&|_| {}).lookup_config(&env).unwrap().is_none());
        let err = opts(&|o| o.rate = Some(5.0))
            .lookup_config(&env)
            .unwrap_err();
        assert_eq!(err.to_string(), "--rate needs --lookup");
        let kakao = opts(&|o| {
            o.lookup = Some(Provider::Kakao);
            o.rate = Some(4.0);
            o.daily_quota = Some(100);
        });
        let err = kakao.lookup_config(&env).unwrap_err().to_string();
        assert!(err.contains("KAKAO_REST_API_KEY"), "{err}");
        let env = LookupEnv {
            kakao_key: Some(crate::lookup::Secret::new("K")),
            kakao_base_url: Some("http://127.0.0.1:9".into()),
            ..LookupEnv::default()
        };
        let cfg = kakao.lookup_config(&env).unwrap().unwrap();
        assert_eq!(cfg.rate_per_sec, 4.0);
        assert_eq!(cfg.daily_quota, Some(100));
        assert_eq!(cfg.base_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(cfg.key.as_ref().map(|k| k.expose()), Some("K"));
        // The key never goes with the job.
        let json = serde_json::to_string(&kakao).unwrap();
        assert!(!json.contains("\"K\""), "{json}");
        assert_eq!(serde_json::from_str::<JobOptions>(&json).unwrap(), kakao);
        let err = opts(&|o| o.lookup = Some(Provider::Template))
            .lookup_config(&env)
            .unwrap_err();
        assert!(matches!(err, ConfigError::MissingTemplate));
        let err = opts(&|o| o.rate = Some(0.0))
            .lookup_config(&env)
            .unwrap_err();
        assert!(matches!(err, ConfigError::NeedsLookup("--rate")));
        let err = opts(&|o| {
            o.lookup = Some(Provider::Nominatim);
            o.rate = Some(-1.0);
        })
        .lookup_config(&env)
        .unwrap_err();
        assert!(matches!(err, ConfigError::BadRate(_)));
        // Options stored before lookups existed still read.
        let old: JobOptions = serde_json::from_str(
            r#"{"from":"EPSG:5174","to":null,"sheet_by":null,"engine":null,"output":null}"#,
        )
        .unwrap();
        assert!(old.lookup.is_none());
    }

    #[test]
    fn splitter_splits_at_the_row_limit_with_unique_names() {
        let mut s = SheetSplitter::new(None, false, 2);
        let f = file(0, "stores.csv");
        let got: Vec<_> = (0..5).map(|_| s.sheet_for(&f, None)).collect();
        assert_eq!(
            got,
            vec![
                (0, Some("stores".into())),
                (0, None),
                (1, Some("stores (2)".into())),
                (1, None),
                (2, Some("stores (3)".into())),
            ]
        );
        assert_eq!(s.totals(), vec![(0, 2), (1, 2), (2, 1)]);
    }

    #[test]
    fn splitter_by_value_keeps_first_seen_order() {
        let mut s = SheetSplitter::new(Some("시도".into()), false, 100);
        let f = file(0, "a.csv");
        assert_eq!(s.sheet_for(&f, Some("서울")), (0, Some("서울".into())));
        assert_eq!(s.sheet_for(&f, Some("부산")), (1, Some("부산".into())));
        assert_eq!(s.sheet_for(&f, Some("서울")), (0, None));
        assert_eq!(s.sheet_for(&f, Some("")), (2, Some("(blank)".into())));
        assert_eq!(s.totals(), vec![(0, 2), (1, 1), (2, 1)]);
    }
}
