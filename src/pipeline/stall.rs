//! Jobs whose rows the broker lost. A broker that restarts without its data (the embedded one
//! hosted by `geobatch broker`, Tansu on memory storage, a cluster rebuilt) leaves running jobs
//! waiting for rows nobody will deliver. The store knows which rows have no result and keeps
//! each job's input, so such a job is re-driven: its rows without a result are published again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{JobError, Pipeline};
use crate::job::JobState;
use crate::store::JobRecord;

/// What the last look at the broker saw (for `/healthz`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerHealth {
    /// Not connected yet, or not looked at yet.
    Waiting,
    Up,
    /// The last metadata request went unanswered.
    Down,
}

impl BrokerHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerHealth::Waiting => "waiting",
            BrokerHealth::Up => "up",
            BrokerHealth::Down => "down",
        }
    }

    fn from_u8(v: u8) -> BrokerHealth {
        match v {
            1 => BrokerHealth::Up,
            2 => BrokerHealth::Down,
            _ => BrokerHealth::Waiting,
        }
    }
}

impl Pipeline {
    pub fn broker_health(&self) -> BrokerHealth {
        if !self.bus_ready() {
            return BrokerHealth::Waiting;
        }
        BrokerHealth::from_u8(self.broker_health.load(Ordering::Relaxed))
    }

    /// Every `stall_check_secs`: asks the broker which topics it holds, and re-drives the
    /// running jobs whose unresolved rows sit in a topic it no longer has.
    pub(super) async fn run_stall_watch(self: Arc<Self>) {
        let every = self.settings.stall_check_secs;
        if every == 0 {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(every)) => {}
                _ = self.shutdown.cancelled() => return,
            }
            if let Err(e) = self.check_stranded(None).await {
                tracing::warn!("cannot check running jobs against the broker: {e}");
            }
        }
    }

    /// Re-drives the job (or every running job) whose rows the broker lost. Returns whether
    /// `only` was re-driven.
    pub(super) async fn check_stranded(
        self: &Arc<Self>,
        only: Option<&JobRecord>,
    ) -> Result<bool, JobError> {
        let Some(bus) = self.bus.borrow().clone() else {
            return Ok(false);
        };
        let topics = match bus.existing_topics(Duration::from_secs(5)).await {
            Ok(t) => {
                self.broker_health.store(1, Ordering::Relaxed);
                t
            }
            Err(e) => {
                if self.broker_health.swap(2, Ordering::Relaxed) != 2 {
                    tracing::warn!("the Kafka broker does not answer: {e}");
                }
                return Ok(false);
            }
        };
        let jobs = match only {
            Some(job) => vec![job.clone()],
            None => self.store.unfinished_jobs().await?,
        };
        let mut stranded = Vec::new();
        for job in jobs {
            // Publishing jobs have an intake at work; others have no rows in the broker.
            if !matches!(job.state, JobState::Running | JobState::Paused) {
                continue;
            }
            let sheets = self.store.sheets(&job.id).await?;
            let lost = sheets
                .iter()
                .find(|s| s.rows_ok + s.rows_failed < s.rows_total && !topics.contains(&s.topic));
            if let Some(sheet) = lost {
                tracing::warn!(
                    job = %job.id,
                    topic = %sheet.topic,
                    "the broker no longer holds this job's rows: publishing the rows without a result again"
                );
                // Publishing from now on: the next check leaves it to its intake.
                self.store
                    .set_state(
                        &job.id,
                        JobState::Publishing,
                        Some("the broker lost this job's rows; publishing them again"),
                    )
                    .await?;
                stranded.push(job.id);
            }
        }
        if stranded.is_empty() {
            return Ok(false);
        }
        // A broker that lost its data lost the producer's identity and the group's state too:
        // the clients start over (as when the embedded broker is recycled) before the rows go.
        // The rows go out only once the old clients are gone: an offset commit they still had
        // in flight for the lost topic would otherwise land on the new one and skip its rows.
        let gone = bus.gone();
        self.bus.send_replace(None);
        bus.retire();
        drop(bus);
        let me = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = gone.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(60)) => {
                    tracing::warn!("the old Kafka clients are still not closed after 60 s; publishing anyway");
                }
                _ = me.shutdown.cancelled() => return,
            }
            for id in stranded {
                me.spawn_intake(id);
            }
        });
        Ok(true)
    }
}
