//! The merger task: writes the outputs of every job whose rows are all resolved, then deletes
//! the job's row topics; and, at start, re-drives the unfinished jobs of an earlier run.

use std::sync::Arc;
use std::time::Duration;

use super::lookup_step::added_columns;
use super::{counters, JobError, Pipeline};
use crate::backoff::Backoff;
use crate::bus::SheetTopic;
use crate::convert::EngineError;
use crate::job::{Epsg, JobId, JobState};
use crate::merge::{self, MergeJob};

impl Pipeline {
    /// Writes the outputs of every job whose rows are all resolved.
    pub fn start_merger(self: &Arc<Self>) {
        let me = self.clone();
        self.tasks.spawn(async move {
            let mut progress = me.progress.subscribe();
            loop {
                match me.store.resolved_jobs().await {
                    Ok(ids) => {
                        for id in ids {
                            if me.shutdown.is_cancelled() {
                                return;
                            }
                            let outcome = me.merge_job(&id).await;
                            if let Err(e) = &outcome {
                                if e.is_transient() {
                                    me.merge_later(&id, e).await;
                                    continue;
                                }
                            }
                            if let Err(e) = outcome {
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
                // Results from workers in other processes do not bump our counter: look again
                // after a while too.
                tokio::select! {
                    _ = tokio::time::timeout(Duration::from_secs(1), progress.changed()) => {}
                    _ = me.shutdown.cancelled() => return,
                }
            }
        });
    }

    /// A merge that met a passing database failure (a connection cut, the database restarting,
    /// a full disk): the job goes back to the merger's queue once the store answers again,
    /// like the workers' writes, instead of failing.
    async fn merge_later(&self, id: &JobId, e: &JobError) {
        tracing::warn!(job = %id, "cannot write the workbook yet ({e}); trying again");
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = self.shutdown.cancelled() => return,
            }
            match self.store.set_state(id, JobState::Running, None).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(job = %id, "the store does not answer yet: {e}"),
            }
        }
    }

    async fn merge_job(&self, id: &JobId) -> Result<(), JobError> {
        self.store.set_state(id, JobState::Merging, None).await?;
        self.bump();
        let job = self.job(id).await?;
        let output = job.options.output.clone().unwrap_or_else(|| {
            self.settings
                .data_dir
                .join("results")
                .join(format!("{id}.xlsx"))
        });
        let source = job.source_crs.unwrap_or(Epsg::WGS84);
        let plan = match self
            .engines
            .plan(job.options.engine(), source, job.options.target())
            .await
        {
            Ok(plan) => plan,
            // PostGIS (which names the CRSs) is away: not the job's fault, try again later.
            Err(e @ EngineError::Database(_)) => {
                tracing::warn!(job = %id, "cannot prepare the workbook ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.store.set_state(id, JobState::Running, None).await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let formats = job.options.formats();
        let sheets = self.store.sheets(id).await?.len();
        let outputs = formats
            .iter()
            .map(|f| {
                let format = merge::format(f).ok_or_else(|| {
                    JobError::from(merge::MergeError::Inconsistent(format!(
                        "no writer for the output format {f:?}"
                    )))
                })?;
                Ok((merge::result_path(&output, &formats, f, sheets), format))
            })
            .collect::<Result<Vec<_>, JobError>>()?;
        // The first format's file is the job's output; the others sit beside it.
        let output = outputs[0].0.clone();
        let counts = merge::merge_job(
            &self.store,
            MergeJob {
                job: &job,
                source: plan.source(),
                target: plan.target(),
                added_columns: added_columns(&job.options),
                outputs,
                sheet_max_rows: self.settings.sheet_max_rows,
            },
        )
        .await?;
        self.store.set_output(id, &output.to_string_lossy()).await?;
        self.store.set_state(id, JobState::Done, None).await?;
        counters::add(&self.counters.jobs_merged, 1);
        tracing::info!(
            job = %id,
            rows = counts.rows,
            ok = counts.ok + counts.no_result + counts.ambiguous,
            failed = counts.failed,
            output = %output.display(),
            formats = %formats.join(","),
            "results written"
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
        if let Some(bus) = self.bus().await {
            if let Err(e) = bus.delete_topics(&topics).await {
                tracing::warn!(job = %id, "cannot delete the job's topics: {e}");
            }
        }
        Ok(())
    }

    /// Re-drives every unfinished job after a restart: rows without a result are published
    /// again (the embedded broker kept nothing), rows with one are never converted again.
    pub(super) async fn recover(self: &Arc<Self>) -> Result<(), JobError> {
        let Some(bus) = self.bus().await else {
            return Ok(());
        };
        let embedded = bus.is_embedded();
        let earlier = self.store.unfinished_jobs().await?;
        for job in earlier
            .into_iter()
            .filter(|j| j.created_ms < self.opened_ms)
        {
            if job.options.input_digest.is_some() {
                tracing::info!(job = %job.id, "not resuming the unfinished job of a convert: the next convert of the same input does");
                continue;
            }
            // Rows without a result are published again unless the broker still holds them.
            let republish = match job.state {
                // Every row has its result: the merger only has to run again.
                JobState::Merging => {
                    self.store
                        .set_state(&job.id, JobState::Running, None)
                        .await?;
                    false
                }
                // A persistent broker still holds the published rows.
                JobState::Running | JobState::Paused => embedded,
                _ => true,
            };
            tracing::info!(
                job = %job.id,
                state = job.state.as_str(),
                republish,
                "resuming unfinished job"
            );
            if republish {
                self.spawn_intake(job.id.clone());
            }
        }
        self.bump();
        Ok(())
    }
}
