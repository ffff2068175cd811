//! The workers: members of one consumer group over every row topic. Each message is converted
//! (and looked up), its results stored, and only then is its offset committed, so a crash
//! redelivers at most what was not stored, and a stored row is never converted again.
//!
//! A member hands each partition's messages to a task of that partition, which handles them in
//! order; partitions (so jobs) go on side by side. A job that must wait (its provider down,
//! its quota spent, its provider slow) holds only its own partitions' tasks: when one has
//! [`QUEUE_HIGH`] messages waiting, its partition is paused at the broker until it catches up,
//! and every other job keeps its full speed.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::geocode_step::JobGeocode;
use super::lookup_step::JobLookup;
use super::{counters, JobError, Pipeline};
use crate::backoff::Backoff;
use crate::bus::{Bus, Delivery, RowConsumer, TopicPartition};
use crate::convert::JobPlan;
use crate::job::{JobId, JobState, RowAddress, RowPoint};

/// Messages waiting for a partition's task before the partition is paused at the broker, and
/// the level at which it is resumed.
const QUEUE_HIGH: usize = 64;
const QUEUE_LOW: usize = 32;
/// A partition's task ends after this long without a message (partitions of finished jobs).
const IDLE: Duration = Duration::from_secs(30);

/// What a worker keeps about a job it is working on.
pub(super) struct WorkerJob {
    plan: JobPlan,
    lookup: Option<JobLookup>,
    geocode: Option<JobGeocode>,
}

/// The jobs a member has seen: None for one that is gone or finished.
type JobCache = Arc<Mutex<HashMap<JobId, Option<Arc<WorkerJob>>>>>;

/// What a partition's task tells the member.
enum Report {
    /// The message is handled: its results are stored (or it needed none).
    Done {
        tp: TopicPartition,
        offset: i64,
        task: u64,
    },
    /// The task ended after being idle, having handled everything it was given.
    Ended { tp: TopicPartition, task: u64 },
    /// The store or the bus failed: the member starts again.
    Failed(JobError),
}

/// A partition's task as the member sees it.
struct PartitionTask {
    id: u64,
    tx: mpsc::UnboundedSender<Delivery>,
    queued: usize,
    paused: bool,
}

impl Pipeline {
    /// The configured number of consumer tasks in this process.
    pub fn start_workers(self: &Arc<Self>) {
        for n in 0..self.settings.workers {
            let me = self.clone();
            self.tasks.spawn(async move { me.run_worker(n).await });
        }
    }

    async fn run_worker(self: Arc<Self>, n: usize) {
        loop {
            // A new connection after the embedded broker was recycled.
            let Some(bus) = self.bus().await else {
                return;
            };
            match self.consume(&bus, n).await {
                Ok(()) if self.shutdown.is_cancelled() => return,
                Ok(()) => continue,
                Err(e) => {
                    tracing::error!(worker = n, "worker stopped: {e}; restarting in 1s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// One member of the group until shutdown (Ok) or a failure of the bus or store (Err).
    async fn consume(self: &Arc<Self>, bus: &Arc<Bus>, n: usize) -> Result<(), JobError> {
        let name = format!("{}-{n}", std::process::id());
        let consumer = bus.row_consumer(&name, self.lag.clone())?;
        tracing::info!(worker = n, "worker subscribed to the row topics");
        let stop = self.shutdown.child_token();
        let mut member = Member {
            pipeline: self.clone(),
            bus: bus.clone(),
            consumer: &consumer,
            stop: stop.clone(),
            partitions: HashMap::new(),
            tasks: JoinSet::new(),
            next_task: 0,
            jobs: JobCache::default(),
            reports: mpsc::unbounded_channel(),
        };
        let result = member.run().await;
        // The tasks give up the messages in hand (uncommitted: they go to another member).
        stop.cancel();
        member.finish()?;
        // Leave the group: our partitions go to the other members at once.
        consumer.close().await;
        if result.is_ok() {
            tracing::info!(worker = n, "worker stopped");
        }
        result
    }

    /// Handles one message: converts its rows that have no result yet, looks them up when the
    /// job asks for it, stores the results.
    async fn handle(
        &self,
        bus: &Bus,
        delivery: &Delivery,
        jobs: &JobCache,
    ) -> Result<(), JobError> {
        let Some(topic) = delivery.sheet_topic() else {
            tracing::warn!(
                topic = delivery.topic,
                "message on a topic that is not a row topic; skipped"
            );
            return Ok(());
        };
        let batch = match delivery.batch() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(topic = delivery.topic, "unreadable row batch skipped: {e}");
                return Ok(());
            }
        };
        let job = &topic.job;
        let known = jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(job)
            .cloned();
        // A geocoding job retried with another provider chain: what was kept is stale.
        let stale = match known.as_ref().and_then(|w| w.as_ref()?.geocode.as_ref()) {
            Some(g) => !g.is_current(&self.store, job).await?,
            None => false,
        };
        let work = match known.filter(|_| !stale) {
            Some(work) => work,
            None => {
                let work = self.worker_job(job).await?.map(Arc::new);
                jobs.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(job.clone(), work.clone());
                work
            }
        };
        let Some(work) = work else {
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
        let todo_addresses: Vec<RowAddress> = batch
            .rows
            .iter()
            .zip(&batch.addresses)
            .filter(|(r, _)| !done.contains(&r.seq))
            .map(|(_, a)| a.clone())
            .collect();
        counters::add(
            &self.counters.rows_skipped,
            (batch.rows.len() - todo.len()) as u64,
        );
        if todo.is_empty() {
            return Ok(());
        }
        // A database that fails (PostGIS, the store) never turns rows into error rows: the
        // batch is retried until it goes through, its offset uncommitted meanwhile.
        let results = if let Some(geocode) = &work.geocode {
            let sheet = batch.sheet;
            let geocoded = self.drive_lookups(bus, job, || {
                geocode.apply(&self.store, job, sheet, &todo, &todo_addresses)
            });
            match geocoded.await? {
                Some(results) => results,
                // The job failed meanwhile: nothing to store, nothing to redeliver.
                None => return Ok(()),
            }
        } else {
            let started = Instant::now();
            let results = until_ok(job, "convert the batch", || work.plan.convert(&todo)).await;
            self.counters.transform_seconds.observe(started.elapsed());
            match &work.lookup {
                None => results,
                Some(lookup) => match self.look_up(bus, job, batch.sheet, lookup, results).await? {
                    Some(results) => results,
                    // The job failed meanwhile: nothing to store, nothing to redeliver.
                    None => return Ok(()),
                },
            }
        };
        let failed = results.iter().filter(|r| r.outcome.is_error()).count() as u64;
        until_ok(job, "store results", || {
            self.store.store_results(job, batch.sheet, &results)
        })
        .await;
        counters::add(&self.counters.rows_converted, todo.len() as u64);
        counters::add(&self.counters.rows_failed, failed);
        counters::add(&self.counters.batches, 1);
        Ok(())
    }

    /// What this worker needs for a job; None for a job that is gone or finished.
    async fn worker_job(&self, id: &JobId) -> Result<Option<WorkerJob>, JobError> {
        let Some(job) = self.store.job(id).await? else {
            return Ok(None);
        };
        if job.state.is_finished() {
            return Ok(None);
        }
        let source = job.source_crs.unwrap_or(crate::job::Epsg::WGS84);
        let plan = self
            .engines
            .plan(job.options.engine(), source, job.options.target())
            .await?;
        let steps = self
            .lookups
            .for_job(&job.options, &self.lookup_env, &self.store)
            .and_then(|lookup| {
                let geocode =
                    self.lookups
                        .for_geocode(&job.options, &self.lookup_env, &self.store)?;
                Ok((lookup, geocode))
            });
        let (lookup, geocode) = match steps {
            Ok(steps) => steps,
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
        Ok(Some(WorkerJob {
            plan,
            lookup,
            geocode,
        }))
    }
}

/// One member of the consumer group and its partitions' tasks.
struct Member<'a> {
    pipeline: Arc<Pipeline>,
    bus: Arc<Bus>,
    consumer: &'a RowConsumer,
    stop: CancellationToken,
    partitions: HashMap<TopicPartition, PartitionTask>,
    tasks: JoinSet<()>,
    next_task: u64,
    jobs: JobCache,
    reports: (
        mpsc::UnboundedSender<Report>,
        mpsc::UnboundedReceiver<Report>,
    ),
}

impl Member<'_> {
    async fn run(&mut self) -> Result<(), JobError> {
        loop {
            let mut handled = Vec::new();
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Ok(()),
                _ = self.bus.retired() => return Ok(()),
                Some(report) = self.reports.1.recv() => self.report(report, &mut handled)?,
                delivery = self.consumer.next() => self.dispatch(delivery)?,
            }
            while let Ok(report) = self.reports.1.try_recv() {
                self.report(report, &mut handled)?;
            }
            if !handled.is_empty() {
                self.consumer.commit(&handled)?;
                self.pipeline.bump();
            }
        }
    }

    /// Commits what the tasks finished before they stopped.
    fn finish(&mut self) -> Result<(), JobError> {
        self.partitions.clear();
        self.tasks.abort_all();
        let mut handled = Vec::new();
        while let Ok(report) = self.reports.1.try_recv() {
            if let Report::Done { tp, offset, .. } = report {
                handled.push((tp.0, tp.1, offset));
            }
        }
        self.consumer.commit(&handled)?;
        Ok(())
    }

    fn report(
        &mut self,
        report: Report,
        handled: &mut Vec<(String, i32, i64)>,
    ) -> Result<(), JobError> {
        match report {
            Report::Done { tp, offset, task } => {
                if let Some(p) = self.partitions.get_mut(&tp).filter(|p| p.id == task) {
                    p.queued = p.queued.saturating_sub(1);
                    if p.paused && p.queued <= QUEUE_LOW {
                        self.consumer.resume(std::slice::from_ref(&tp))?;
                        p.paused = false;
                    }
                }
                handled.push((tp.0, tp.1, offset));
            }
            Report::Ended { tp, task } => {
                if self.partitions.get(&tp).is_some_and(|p| p.id == task) {
                    self.partitions.remove(&tp);
                }
            }
            Report::Failed(e) => return Err(e),
        }
        Ok(())
    }

    /// Gives a message to its partition's task (started when there is none), pausing the
    /// partition when its task falls behind.
    fn dispatch(&mut self, delivery: Delivery) -> Result<(), JobError> {
        let tp: TopicPartition = (delivery.topic.clone(), delivery.partition);
        let mut delivery = delivery;
        loop {
            if !self.partitions.contains_key(&tp) {
                let task = self.spawn_task(tp.clone());
                self.partitions.insert(tp.clone(), task);
            }
            let p = self.partitions.get_mut(&tp).expect("inserted above");
            match p.tx.send(delivery) {
                Ok(()) => {
                    p.queued += 1;
                    if !p.paused && p.queued >= QUEUE_HIGH {
                        self.consumer.pause(std::slice::from_ref(&tp))?;
                        p.paused = true;
                    }
                    return Ok(());
                }
                // The task just ended, idle: a new one takes the message.
                Err(mpsc::error::SendError(back)) => {
                    delivery = back;
                    self.partitions.remove(&tp);
                }
            }
        }
    }

    fn spawn_task(&mut self, tp: TopicPartition) -> PartitionTask {
        let (tx, rx) = mpsc::unbounded_channel();
        self.next_task += 1;
        let task = PartitionTask {
            id: self.next_task,
            tx,
            queued: 0,
            paused: false,
        };
        let run = PartitionRun {
            pipeline: self.pipeline.clone(),
            bus: self.bus.clone(),
            tp,
            id: task.id,
            reports: self.reports.0.clone(),
            jobs: self.jobs.clone(),
            stop: self.stop.clone(),
        };
        self.tasks.spawn(run.run(rx));
        task
    }
}

/// The task of one partition: its messages in order.
struct PartitionRun {
    pipeline: Arc<Pipeline>,
    bus: Arc<Bus>,
    tp: TopicPartition,
    id: u64,
    reports: mpsc::UnboundedSender<Report>,
    jobs: JobCache,
    stop: CancellationToken,
}

impl PartitionRun {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Delivery>) {
        let mut closing = false;
        loop {
            // Once closing, the channel holds only what was sent before it closed.
            let idle = if closing { Duration::MAX } else { IDLE };
            let next = tokio::select! {
                _ = self.stop.cancelled() => return,
                next = tokio::time::timeout(idle, rx.recv()) => next,
            };
            let delivery = match next {
                Ok(Some(d)) => d,
                Ok(None) => {
                    let _ = self.reports.send(Report::Ended {
                        tp: self.tp.clone(),
                        task: self.id,
                    });
                    return;
                }
                // Idle: take no more, but handle whatever was sent meanwhile.
                Err(_) => {
                    rx.close();
                    closing = true;
                    continue;
                }
            };
            let handled = tokio::select! {
                // Abandoned: the message is not committed and goes to another member.
                _ = self.stop.cancelled() => return,
                r = self.pipeline.handle(&self.bus, &delivery, &self.jobs) => r,
            };
            let report = match handled {
                Ok(()) => Report::Done {
                    tp: self.tp.clone(),
                    offset: delivery.offset,
                    task: self.id,
                },
                Err(e) => Report::Failed(e),
            };
            let failed = matches!(report, Report::Failed(_));
            if self.reports.send(report).is_err() || failed {
                return;
            }
        }
    }
}

/// Runs `op` until it succeeds, backing off between tries (100 ms doubling to 10 s). For the
/// worker's database writes and PostGIS queries: not committing the message's offset is what
/// keeps its rows meanwhile. Shutdown drops the future.
pub(super) async fn until_ok<T, E, F>(job: &JobId, what: &str, mut op: impl FnMut() -> F) -> T
where
    E: Display,
    F: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(job = %job, "cannot {what} ({e}); retrying");
                backoff.wait().await;
            }
        }
    }
}
