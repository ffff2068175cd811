//! The Kafka bus: one topic per sheet, row batches as messages, one consumer group of workers.
//!
//! With no broker configured an embedded Kafka-protocol broker (librdkafka's mock cluster) runs
//! in-process, so the very same producer and consumer code runs with nothing installed.

mod consumer;
mod embedded;
mod topic;
mod wire;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

pub use consumer::{offsets_to_commit, ConsumerLag, Delivery, RowConsumer, TopicPartition};
pub use embedded::EmbeddedBroker;
pub use topic::{SheetTopic, DLQ_TOPIC, ROW_TOPIC_PATTERN};
pub use wire::RowBatch;

use crate::backoff::Backoff;
use crate::settings::BusSettings;
use consumer::WorkerContext;

/// The workers' consumer group.
pub const WORKER_GROUP: &str = "geobatch-workers";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("embedded broker: {0}")]
    Embedded(String),
    #[error("row batch message: {0}")]
    Decode(String),
}

pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// The connection to the broker (embedded or external) that intake, workers and merger share.
pub struct Bus {
    bootstrap: String,
    // Fields drop in order: the clients before the embedded broker they talk to.
    admin: Option<AdminClient<DefaultClientContext>>,
    producer: FutureProducer,
    partitions: i32,
    replication: i32,
    /// Set once a broker left CreateTopics unanswered (librdkafka's mock cluster, e.g. one
    /// hosted by `geobatch broker`); from then on topics are left to auto-creation.
    no_admin: AtomicBool,
    props: Vec<(String, String)>,
    /// Topics this connection created (the embedded broker keeps every one until it stops).
    topics_created: AtomicU64,
    /// Cancelled when this connection is given up for a new one: its users let go of it.
    retired: CancellationToken,
    /// Cancelled when this connection is dropped: its clients are gone, nothing they had in
    /// flight (an offset commit, a message) can reach the broker any more.
    gone: CancellationToken,
    embedded: Option<EmbeddedBroker>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.gone.cancel();
    }
}

impl Bus {
    /// Starts the embedded broker, or connects to the configured one, waiting for it to answer.
    pub async fn start(settings: &BusSettings) -> Result<Bus> {
        let (bootstrap, embedded) = match settings.external_brokers() {
            Some(b) => (b.to_string(), None),
            None => {
                let broker = EmbeddedBroker::start()?;
                tracing::info!(
                    bootstrap = broker.bootstrap(),
                    "embedded Kafka broker started"
                );
                (broker.bootstrap().to_string(), Some(broker))
            }
        };
        let props = settings.client_properties.0.clone();
        let producer: FutureProducer = client_config(&bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            // One message per record batch. A consumer that resumes from a committed offset
            // inside a batch must be served the rest of it; Tansu 0.6 serves the next batch
            // instead, so the rest is never delivered (measured: 10 messages in one batch, a
            // group resuming at offset 3 got none). A row batch is kilobytes: nothing is lost.
            .set("batch.num.messages", "1")
            .set("compression.type", "lz4")
            .set_all(&props)
            .create()?;
        let admin = if embedded.is_none() {
            wait_for_broker(&producer, &bootstrap).await;
            Some(client_config(&bootstrap).set_all(&props).create()?)
        } else {
            None
        };
        Ok(Bus {
            bootstrap,
            embedded,
            admin,
            producer,
            partitions: settings.partitions.max(1),
            replication: settings.replication.max(1),
            no_admin: AtomicBool::new(false),
            props,
            topics_created: AtomicU64::new(0),
            retired: CancellationToken::new(),
            gone: CancellationToken::new(),
        })
    }

    /// Gives this connection up (and with it, once its last user lets go, the embedded
    /// broker and everything it holds).
    pub fn retire(&self) {
        self.retired.cancel();
    }

    /// Completes when the connection is given up.
    pub async fn retired(&self) {
        self.retired.cancelled().await
    }

    /// Cancelled once this connection is dropped (its last user let go of it).
    pub fn gone(&self) -> CancellationToken {
        self.gone.clone()
    }

    pub fn is_retired(&self) -> bool {
        self.retired.is_cancelled()
    }

    /// Topics created through this connection.
    pub fn topics_created(&self) -> u64 {
        self.topics_created.load(Ordering::Relaxed)
    }

    /// The partitions a topic gets: the configured number, or one for a sheet known to be
    /// small (every partition costs the broker and the consumers, busy or not).
    pub fn partitions_for(&self, small: bool) -> i32 {
        if small {
            1
        } else {
            self.partitions
        }
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Creates a sheet's topic with `partitions` (at most the configured number); an
    /// existing one is fine (a re-driven job finds its topics).
    pub async fn create_topic(&self, topic: &SheetTopic, partitions: i32) -> Result<()> {
        self.create_topic_with(&topic.name(), partitions.clamp(1, self.partitions))
            .await
    }

    /// Creates a topic by name with the configured partitions; an existing one is fine.
    pub async fn create_topic_named(&self, name: &str) -> Result<()> {
        self.create_topic_with(name, self.partitions).await
    }

    async fn create_topic_with(&self, name: &str, partitions: i32) -> Result<()> {
        self.topics_created.fetch_add(1, Ordering::Relaxed);
        if let Some(embedded) = &self.embedded {
            return embedded.create_topic(name, partitions).await;
        }
        if self.no_admin.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Some(admin) = &self.admin else {
            return Ok(());
        };
        let new = NewTopic::new(name, partitions, TopicReplication::Fixed(self.replication));
        let opts = AdminOptions::new()
            .request_timeout(Some(Duration::from_secs(10)))
            .operation_timeout(Some(Duration::from_secs(30)));
        let outcomes = match admin.create_topics([&new], &opts).await {
            Err(KafkaError::AdminOp(
                RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::RequestTimedOut,
            )) => {
                tracing::warn!(
                    "the broker at {} does not answer CreateTopics; relying on its topic auto-creation",
                    self.bootstrap
                );
                self.no_admin.store(true, Ordering::Relaxed);
                return Ok(());
            }
            other => other?,
        };
        for outcome in outcomes {
            match outcome {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    tracing::error!(topic = t, ?code, "cannot create topic");
                    return Err(BusError::Kafka(KafkaError::AdminOp(code)));
                }
            }
        }
        Ok(())
    }

    /// Sends a batch and waits until the broker has it (acks=all, idempotent).
    pub async fn publish(&self, topic: &SheetTopic, batch: &RowBatch) -> Result<()> {
        let key = batch.rows.first().map(|r| r.seq).unwrap_or(0).to_be_bytes();
        self.send(&topic.name(), &key, &batch.encode()).await
    }

    /// Sends one message and waits until the broker has it.
    pub async fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<()> {
        self.producer
            .send(
                FutureRecord::to(topic).payload(payload).key(key),
                Duration::from_secs(60),
            )
            .await
            .map_err(|(e, _)| BusError::Kafka(e))?;
        Ok(())
    }

    /// Deletes finished row topics. The embedded broker cannot delete topics (the mock cluster
    /// does not answer the Admin API); its memory goes back when the process ends.
    pub async fn delete_topics(&self, topics: &[SheetTopic]) -> Result<()> {
        let Some(admin) = &self.admin else {
            return Ok(());
        };
        let names: Vec<String> = topics.iter().map(SheetTopic::name).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for outcome in admin.delete_topics(&refs, &opts).await? {
            if let Err((t, code)) = outcome {
                if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                    tracing::warn!(topic = t, ?code, "cannot delete finished topic");
                }
            }
        }
        Ok(())
    }

    /// A member of the workers' group, subscribed to every row topic. `worker` names it in logs.
    pub fn row_consumer(&self, worker: &str, lag: ConsumerLag) -> Result<RowConsumer> {
        let context = WorkerContext {
            worker: worker.to_string(),
            lag,
        };
        let embedded = self.embedded.is_some();
        let consumer: rdkafka::consumer::StreamConsumer<WorkerContext> =
            client_config(&self.bootstrap)
                .set("group.id", WORKER_GROUP)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                // Pattern subscriptions see new topics on a metadata refresh: a new job's rows
                // must start moving within seconds, not librdkafka's default five minutes.
                .set("topic.metadata.refresh.interval.ms", "1000")
                // A rebalance (every new job's topic causes one) waits on the session timeout
                // in the mock cluster; in-process members can afford a short one. Real brokers
                // refuse less than 6 s by default, and a network wants slack.
                .set(
                    "session.timeout.ms",
                    if embedded { "1500" } else { "10000" },
                )
                .set(
                    "heartbeat.interval.ms",
                    if embedded { "500" } else { "1000" },
                )
                .set("fetch.wait.max.ms", "100")
                // librdkafka reports per-partition consumer lag in its statistics.
                .set("statistics.interval.ms", "5000")
                .set_all(&self.props)
                .create_with_context(context)?;
        consumer.subscribe(&[ROW_TOPIC_PATTERN])?;
        Ok(RowConsumer::new(consumer))
    }

    /// The topics the broker holds now (a metadata request that creates nothing). An error
    /// means the broker did not answer within `timeout`.
    pub async fn existing_topics(&self, timeout: Duration) -> Result<HashSet<String>> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = producer.client().fetch_metadata(None, timeout)?;
            Ok(metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| t.name().to_string())
                .collect())
        })
        .await
        .map_err(|e| BusError::Embedded(e.to_string()))?
    }

    /// Waits until every message sent is acknowledged (or the timeout passes).
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        // librdkafka logs connection failures itself; we log our own clear line instead.
        .set("log_level", "3");
    c
}

/// The user's properties go last: they override our defaults.
trait SetAll {
    fn set_all(&mut self, props: &[(String, String)]) -> &mut Self;
}

impl SetAll for ClientConfig {
    fn set_all(&mut self, props: &[(String, String)]) -> &mut Self {
        for (k, v) in props {
            self.set(k, v);
        }
        self
    }
}

/// Waits, with capped exponential backoff, until the broker answers a metadata request.
async fn wait_for_broker(producer: &FutureProducer, bootstrap: &str) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        let attempt = backoff.attempts() + 1;
        let client = producer.clone();
        // fetch_metadata blocks: off the async threads.
        let probe = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|m| m.brokers().len())
        })
        .await;
        if let Ok(Ok(n)) = probe {
            if n > 0 {
                if attempt > 1 {
                    tracing::info!("Kafka at {bootstrap} is up after {attempt} attempts");
                }
                return;
            }
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            "waiting for Kafka at {bootstrap} (attempt {attempt}, next in {}s)",
            delay.as_secs()
        );
        tokio::time::sleep(delay).await;
    }
}
