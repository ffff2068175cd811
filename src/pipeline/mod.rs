//! The pipeline: a job goes intake → bus → workers → store → merger.
//!
//! `Pipeline` owns the store, the bus and the engines, and runs the stages as tasks of one
//! [`TaskTracker`] under one [`CancellationToken`]: `convert`, `serve`, `worker` and the watched
//! folder all drive this one mechanism, and all stop the same way ([`Pipeline::shutdown`]).
//!
//! - `intake_task`: reads a job's files and publishes the rows that have no result yet;
//! - `worker`: consumes row batches, converts (and looks up) them, stores the results, and only
//!   then commits the offsets;
//! - `merger`: writes the outputs of jobs whose every row is resolved, and re-drives the
//!   unfinished jobs of an earlier run.

mod cleanup;
mod cli_jobs;
mod counters;
mod estimate;
mod geocode_step;
mod halt;
mod intake_task;
mod lookup_step;
mod merger;
mod stall;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use counters::{Counters, Histogram, BUCKETS};
pub use estimate::LookupEstimate;
pub use lookup_step::DeadLetter;
pub use stall::BrokerHealth;

use crate::bus::{Bus, BusError, ConsumerLag};
use crate::convert::{EngineError, Engines};
use crate::intake::{self, InspectError};
use crate::job::{Epsg, JobId, JobState};
use crate::lookup::{self, ConfigError, LookupEnv, LookupStats};
use crate::merge::MergeError;
use crate::options::{JobOptions, OptionContext, OptionError, Origin};
use crate::settings::Settings;
use crate::store::{JobFile, JobRecord, NewJob, ResultStore, StoreError};
pub use cleanup::remove_partials;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Option(#[from] OptionError),
    #[error(transparent)]
    Input(#[from] InspectError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Lookup(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot read {path}: {source}")]
    InputFile {
        path: String,
        source: std::io::Error,
    },
    #[error("job {0} not found")]
    NotFound(JobId),
    #[error("job {id} is {state}: only a finished job (done or failed) can be retried")]
    NotFinished { id: JobId, state: JobState },
    #[error("geobatch is shutting down")]
    ShuttingDown,
    #[error(
        "more than {max} worksheets: a job has at most {max} (GEOBATCH_MAX_SHEETS); choose a \
         sheet_by column with fewer distinct values"
    )]
    TooManySheets { max: u32 },
}

impl JobError {
    /// True when the input or options are at fault (the user can fix it), not the service.
    pub fn is_input_error(&self) -> bool {
        match self {
            JobError::Option(_)
            | JobError::Input(_)
            | JobError::InputFile { .. }
            | JobError::TooManySheets { .. } => true,
            JobError::Engine(e) => e.is_input_error(),
            JobError::Lookup(e) => e.is_input_error(),
            _ => false,
        }
    }

    /// A failure of the service that passes by itself (the database restarting, a connection
    /// cut, a full disk): worth doing the same again later; the job is not at fault.
    pub fn is_transient(&self) -> bool {
        match self {
            JobError::Store(e) | JobError::Merge(MergeError::Store(e)) => e.is_transient(),
            _ => false,
        }
    }

    /// The job option the error is about, if one is (a form shows the error at that field).
    pub fn option(&self) -> Option<&'static str> {
        match self {
            JobError::Option(e) => Some(e.option),
            JobError::Input(e) => e.option(),
            JobError::TooManySheets { .. } => Some("sheet_by"),
            JobError::Engine(EngineError::Crs(_)) => Some("from"),
            JobError::Engine(e) if e.is_input_error() => Some("engine"),
            JobError::Lookup(ConfigError::Template(_) | ConfigError::MissingConfig(_)) => {
                Some("lookup_template")
            }
            JobError::Lookup(ConfigError::BadRate(_)) => Some("rate"),
            JobError::Lookup(ConfigError::NotAGeocoder(..) | ConfigError::KeyRefused(_)) => {
                Some("providers")
            }
            JobError::Lookup(e) if e.is_input_error() => Some("lookup"),
            _ => None,
        }
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

pub struct Pipeline {
    settings: Settings,
    store: ResultStore,
    engines: Engines,
    lookup_env: LookupEnv,
    bus: watch::Sender<Option<Arc<Bus>>>,
    /// Held (read) by every intake while it publishes, (write) while the embedded broker is
    /// recycled: rows are never published into a broker that is going away.
    bus_lease: tokio::sync::RwLock<()>,
    /// Bumped after every change a waiter may care about (results stored, job state).
    progress: watch::Sender<u64>,
    counters: Counters,
    /// Jobs created before this instant belong to an earlier run: `recover` re-drives those,
    /// and only those (newer ones already have their own intake).
    opened_ms: i64,
    lag: ConsumerLag,
    lookups: lookup_step::Lookups,
    /// What the last look at the broker saw ([`stall::BrokerHealth`] as a number).
    broker_health: std::sync::atomic::AtomicU8,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Pipeline {
    /// Opens the store and starts connecting to the bus in the background: jobs are accepted
    /// and stored while a configured broker is not up yet.
    pub async fn open(settings: Settings) -> Result<Arc<Pipeline>, JobError> {
        for sub in ["uploads", "results"] {
            let dir = settings.data_dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let store = ResultStore::open(&settings.data_dir, settings.database_url()).await?;
        tracing::info!("result store: {}", store.backend_name());
        cleanup::remove_leftovers(&settings.data_dir, &store).await;
        let engines = Engines::new(settings.postgis_url.as_deref(), store.postgres_pool())?;
        let (bus_tx, _) = watch::channel(None);
        let (progress, _) = watch::channel(0);
        let pipeline = Arc::new(Pipeline {
            lookup_env: LookupEnv::from_settings(&settings),
            settings,
            store,
            engines,
            bus: bus_tx,
            bus_lease: Default::default(),
            progress,
            counters: Counters::default(),
            opened_ms: crate::store::now_ms(),
            lag: ConsumerLag::default(),
            lookups: Default::default(),
            broker_health: Default::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let me = pipeline.clone();
        pipeline.tasks.spawn(async move { me.run_bus().await });
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

    /// What option validation needs to know of this build.
    pub fn option_context(origin: Origin) -> OptionContext {
        OptionContext {
            origin,
            providers: lookup::providers::names(),
            templates: Default::default(),
        }
    }

    /// This process's lookup counters, summed per provider.
    pub fn lookup_stats(&self) -> Vec<(&'static str, LookupStats)> {
        self.lookups.stats()
    }

    /// Connects to the broker (or starts the embedded one), and again whenever the connection
    /// is retired (the embedded broker recycled), until shutdown.
    async fn run_bus(&self) {
        loop {
            let bus = tokio::select! {
                bus = Bus::start(&self.settings.bus) => bus,
                _ = self.shutdown.cancelled() => return,
            };
            let bus = match bus {
                Ok(bus) => Arc::new(bus),
                Err(e) => {
                    tracing::error!("cannot start the Kafka bus: {e}");
                    return;
                }
            };
            self.bus.send_replace(Some(bus.clone()));
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    // Whatever intake sent is acknowledged before the process goes.
                    bus.flush(Duration::from_secs(5)).await;
                    return;
                }
                _ = bus.retired() => {}
            }
        }
    }

    /// Recycles the embedded broker when it holds many topics and no job is in flight: it
    /// cannot delete topics, and every topic it keeps costs the consumers CPU for good. A new
    /// broker starts empty; the store, not the broker, is what makes jobs durable.
    pub(super) async fn recycle_idle_broker(&self, after_topics: u64) -> Result<bool, JobError> {
        let current = self.bus.borrow().clone();
        let Some(bus) = current else {
            return Ok(false);
        };
        if !bus.is_embedded() || bus.topics_created() < after_topics {
            return Ok(false);
        }
        let _lease = self.bus_lease.write().await;
        if !self.store.unfinished_jobs().await?.is_empty() {
            return Ok(false);
        }
        tracing::info!(
            topics = bus.topics_created(),
            "no job in flight: recycling the embedded broker"
        );
        self.bus.send_replace(None);
        bus.retire();
        Ok(true)
    }

    /// The bus, once it is up; None when the pipeline shuts down first.
    pub async fn bus(&self) -> Option<Arc<Bus>> {
        let mut rx = self.bus.subscribe();
        let guard = tokio::select! {
            g = rx.wait_for(|b| b.is_some()) => g.ok()?,
            _ = self.shutdown.cancelled() => return None,
        };
        guard.clone()
    }

    /// Whether the broker has answered yet.
    pub fn bus_ready(&self) -> bool {
        self.bus.borrow().is_some()
    }

    /// How many times the bus was (re)connected (for tests and metrics): the embedded
    /// broker's topics so far.
    pub fn bus_topics(&self) -> u64 {
        self.bus.borrow().as_ref().map_or(0, |b| b.topics_created())
    }

    fn bump(&self) {
        self.progress.send_modify(|n| *n += 1);
    }

    /// A receiver that changes whenever results are stored or a job changes state.
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Cancelled when the process is asked to stop.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs a task of a front door (the watched folder, the metrics server) with the stages:
    /// [`Pipeline::shutdown`] waits for it too, so it must end when the token is cancelled.
    pub fn spawn_task<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Stops every stage: no new batch is taken, a batch in hand is finished or abandoned
    /// uncommitted, committed offsets stay, consumers leave their group. Waits up to `grace`
    /// for the tasks; returns whether they all ended in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tasks.close();
        let ended = tokio::time::timeout(grace, self.tasks.wait()).await.is_ok();
        if !ended {
            tracing::warn!(
                "stopping without waiting longer for {} task(s)",
                self.tasks.len()
            );
        }
        ended
    }

    /// Workers, merger, and the unfinished jobs of an earlier run re-driven: all `serve` does.
    pub fn start_all(self: &Arc<Self>) {
        self.start_workers();
        self.start_merger();
        let me = self.clone();
        self.tasks.spawn(async move { me.run_recycler().await });
        self.tasks.spawn(self.clone().run_stall_watch());
        let me = self.clone();
        self.tasks.spawn(async move {
            if let Err(e) = me.recover().await {
                tracing::error!("cannot resume unfinished jobs: {e}");
            }
        });
    }

    /// Looks every so often whether the embedded broker should be recycled.
    async fn run_recycler(&self) {
        let after = self.settings.recycle_after_topics;
        if after == 0 {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = self.shutdown.cancelled() => return,
            }
            if let Err(e) = self.recycle_idle_broker(after).await {
                tracing::warn!("cannot check whether to recycle the embedded broker: {e}");
            }
        }
    }

    /// Checks the input and options, records the job, and starts its intake. Returns the id
    /// once the job is stored: from here on it survives a crash.
    pub async fn submit(
        self: &Arc<Self>,
        id: Option<JobId>,
        inputs: Vec<JobInput>,
        options: JobOptions,
    ) -> Result<JobId, JobError> {
        if self.shutdown.is_cancelled() {
            return Err(JobError::ShuttingDown);
        }
        let id = id.unwrap_or_else(JobId::random);
        lookup::check_job(&options, &self.lookup_env)?;
        let inspection = {
            let files: Vec<(String, PathBuf)> = inputs
                .iter()
                .map(|i| (i.label.clone(), i.path.clone()))
                .collect();
            let options = options.clone();
            tokio::task::spawn_blocking(move || {
                let files: Vec<(String, &std::path::Path)> = files
                    .iter()
                    .map(|(l, p)| (l.clone(), p.as_path()))
                    .collect();
                intake::inspect(&files, &options)
            })
            .await
            .map_err(|e| JobError::Io(std::io::Error::other(e)))??
        };
        self.preflight(&options).await?;
        // No readable point anywhere: every row will be an error row, whatever the CRS.
        let source = options.from.or(inspection.detected).unwrap_or(Epsg::WGS84);
        // The engine checks its CRSs (PostGIS: in spatial_ref_sys) before the job is accepted.
        let plan = self
            .engines
            .plan(options.engine(), source, options.target())
            .await?;
        let files: Vec<JobFile> = inputs
            .iter()
            .zip(inspection.layouts)
            .enumerate()
            .map(|(n, (i, layout))| JobFile {
                file_no: n as u32,
                label: i.label.clone(),
                path: i.path.to_string_lossy().into_owned(),
                owned: i.owned,
                layout: Some(layout),
                rows: None,
            })
            .collect();
        let label = if inputs.len() == 1 {
            inputs[0].label.clone()
        } else {
            format!("{} (+{} more)", inputs[0].label, inputs.len() - 1)
        };
        self.store
            .create_job(&NewJob {
                id: &id,
                label: &label,
                options: &options,
                files: &files,
            })
            .await?;
        self.store.set_plan(&id, source, plan.description()).await?;
        tracing::info!(job = %id, %label, from = %source, "job accepted");
        self.bump();
        self.spawn_intake(id.clone());
        Ok(id)
    }

    /// Re-drives a finished job: its `error` rows lose their results and the job runs again
    /// (intake publishes every row without a result, so rows a failed job never reached go
    /// too). Returns how many error rows are retried.
    pub async fn retry(self: &Arc<Self>, id: &JobId) -> Result<u64, JobError> {
        self.retry_with(id, None).await
    }

    /// Like [`Pipeline::retry`]; with `providers` (a geocoding job only), its `no_result` rows
    /// too are asked again, of this provider chain, which the job keeps from now on (checked
    /// and pre-flighted as at acceptance).
    pub async fn retry_with(
        self: &Arc<Self>,
        id: &JobId,
        providers: Option<&str>,
    ) -> Result<u64, JobError> {
        let job = self.job(id).await?;
        let options = match providers {
            None => None,
            Some(_) if !job.options.is_geocode() => {
                return Err(OptionError {
                    option: "providers",
                    message: "only a geocoding job is retried with other providers".into(),
                }
                .into())
            }
            Some(p) => {
                let ctx = Pipeline::option_context(crate::options::Origin::Form);
                let chain = crate::options::parse_provider_chain(p, &ctx.providers)?;
                let options = JobOptions {
                    providers: chain,
                    ..job.options.clone()
                };
                lookup::check_job(&options, &self.lookup_env)?;
                Some(options)
            }
        };
        if !job.state.is_finished() {
            // A job whose rows the broker lost is retried by publishing them again.
            if self.check_stranded(Some(&job)).await? {
                return Ok(0);
            }
            return Err(JobError::NotFinished {
                id: id.clone(),
                state: job.state,
            });
        }
        if let Some(options) = &options {
            self.preflight(options).await?;
        }
        let rows = self
            .store
            .reset_rows(id, options.is_some(), options.as_ref())
            .await?;
        tracing::info!(job = %id, rows, "retrying the job's error rows");
        self.bump();
        self.spawn_intake(id.clone());
        Ok(rows)
    }

    async fn job(&self, id: &JobId) -> Result<JobRecord, JobError> {
        self.store
            .job(id)
            .await?
            .ok_or_else(|| JobError::NotFound(id.clone()))
    }

    /// Waits until the job is done or failed.
    pub async fn wait_finished(&self, id: &JobId) -> Result<JobRecord, JobError> {
        let mut progress = self.progress.subscribe();
        loop {
            let job = self.job(id).await?;
            if job.state.is_finished() {
                return Ok(job);
            }
            // Results from workers in other processes do not bump our counter: look again
            // after a while too.
            let _ = tokio::time::timeout(Duration::from_secs(1), progress.changed()).await;
        }
    }

    /// Deletes a job, its results and the files it owns.
    pub async fn delete_job(&self, id: &JobId) -> Result<bool, JobError> {
        let files = self.store.files(id).await?;
        let job = self.store.job(id).await?;
        let sheets = self.store.sheets(id).await?.len();
        let gone = self.store.delete_job(id).await?;
        for f in files.iter().filter(|f| f.owned) {
            let _ = std::fs::remove_file(&f.path);
        }
        let _ = std::fs::remove_dir(self.upload_dir(id));
        if let Some(job) = job {
            let formats = job.options.formats();
            for out in job.output_path.iter().map(PathBuf::from) {
                if out.starts_with(&self.settings.data_dir) {
                    // Every format's file: the first is the stored path, the others beside it.
                    for f in &formats {
                        let _ = std::fs::remove_file(crate::merge::result_path(
                            &out, &formats, f, sheets,
                        ));
                    }
                }
            }
        }
        self.bump();
        Ok(gone)
    }

    /// Where an upload's files are kept until the job is deleted.
    pub fn upload_dir(&self, id: &JobId) -> PathBuf {
        self.settings.data_dir.join("uploads").join(id.as_str())
    }
}
