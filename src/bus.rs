//! The Kafka bus: one topic per sheet, row batches as messages, one consumer group of workers.
//!
//! With no broker configured an embedded Kafka-protocol broker (librdkafka's mock cluster) runs
//! in-process, so the very same producer and consumer code runs with nothing installed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Every row topic matches this; workers subscribe to the pattern.
pub const ROW_TOPIC_PATTERN: &str = "^geobatch\\.rows\\..+";
const ROW_TOPIC_PREFIX: &str = "geobatch.rows.";

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

/// The topic that carries one sheet's rows: `geobatch.rows.<job>.<sheet>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SheetTopic {
    pub job: String,
    pub sheet: u32,
}

impl SheetTopic {
    pub fn new(job: &str, sheet: u32) -> SheetTopic {
        SheetTopic {
            job: job.to_string(),
            sheet,
        }
    }

    pub fn name(&self) -> String {
        format!("{ROW_TOPIC_PREFIX}{}.{}", self.job, self.sheet)
    }

    pub fn parse(name: &str) -> Option<SheetTopic> {
        let rest = name.strip_prefix(ROW_TOPIC_PREFIX)?;
        let (job, sheet) = rest.rsplit_once('.')?;
        Some(SheetTopic {
            job: job.to_string(),
            sheet: sheet.parse().ok()?,
        })
    }
}

/// One point to convert: its place in the job's input and its source coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowPoint {
    pub seq: u64,
    pub x: f64,
    pub y: f64,
}

/// The message on a row topic. Wire format v1 (little endian):
/// `u8 version=1 | u32 sheet | u64 first_seq | u32 count | count × (u32 seq-first_seq, f64 x, f64 y)`.
#[derive(Clone, Debug, PartialEq)]
pub struct RowBatch {
    pub sheet: u32,
    pub rows: Vec<RowPoint>,
}

const BATCH_VERSION: u8 = 1;

impl RowBatch {
    pub fn encode(&self) -> Vec<u8> {
        let first = self.rows.first().map(|r| r.seq).unwrap_or(0);
        let mut out = Vec::with_capacity(17 + self.rows.len() * 20);
        out.push(BATCH_VERSION);
        out.extend_from_slice(&self.sheet.to_le_bytes());
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        for r in &self.rows {
            out.extend_from_slice(&((r.seq - first) as u32).to_le_bytes());
            out.extend_from_slice(&r.x.to_le_bytes());
            out.extend_from_slice(&r.y.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<RowBatch> {
        let bad = |why: &str| BusError::Decode(why.to_string());
        let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        if version != BATCH_VERSION {
            return Err(BusError::Decode(format!(
                "version {version} is not understood by this geobatch (it reads version {BATCH_VERSION})"
            )));
        }
        if rest.len() < 16 {
            return Err(bad("truncated header"));
        }
        let sheet = u32::from_le_bytes(rest[0..4].try_into().unwrap());
        let first = u64::from_le_bytes(rest[4..12].try_into().unwrap());
        let count = u32::from_le_bytes(rest[12..16].try_into().unwrap()) as usize;
        let body = &rest[16..];
        if body.len() != count * 20 {
            return Err(bad("length does not match the row count"));
        }
        let rows = body
            .chunks_exact(20)
            .map(|c| RowPoint {
                seq: first + u32::from_le_bytes(c[0..4].try_into().unwrap()) as u64,
                x: f64::from_le_bytes(c[4..12].try_into().unwrap()),
                y: f64::from_le_bytes(c[12..20].try_into().unwrap()),
            })
            .collect();
        Ok(RowBatch { sheet, rows })
    }
}

#[derive(Clone, Debug)]
pub struct BusConfig {
    /// None: start the embedded broker.
    pub brokers: Option<String>,
    pub partitions: i32,
    pub replication: i32,
    /// Extra librdkafka properties for every client (`security.protocol`, `sasl.*`, …).
    pub client_properties: ClientProperties,
}

/// librdkafka properties given as `key=value,key=value`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientProperties(pub Vec<(String, String)>);

impl std::str::FromStr for ClientProperties {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| format!("{kv:?} is not key=value"))
            })
            .collect::<std::result::Result<_, _>>()
            .map(ClientProperties)
    }
}

enum EmbeddedCmd {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// librdkafka's mock cluster on a thread of its own (its handle is neither Send nor Sync).
/// Dropping this stops the broker.
pub struct EmbeddedBroker {
    bootstrap: String,
    commands: std_mpsc::Sender<EmbeddedCmd>,
}

impl EmbeddedBroker {
    pub fn start() -> Result<EmbeddedBroker> {
        let (cmd_tx, cmd_rx) = std_mpsc::channel::<EmbeddedCmd>();
        let (ready_tx, ready_rx) = std_mpsc::channel::<Result<String>>();
        std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match MockBroker::new() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap()));
                // Runs until every sender is gone, i.e. the EmbeddedBroker is dropped.
                while let Ok(cmd) = cmd_rx.recv() {
                    match cmd {
                        EmbeddedCmd::CreateTopic {
                            name,
                            partitions,
                            reply,
                        } => {
                            let _ = reply.send(cluster.create_topic(&name, partitions));
                        }
                    }
                }
            })
            .map_err(|e| BusError::Embedded(e.to_string()))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| BusError::Embedded("the broker thread died at start".into()))??;
        Ok(EmbeddedBroker {
            bootstrap,
            commands: cmd_tx,
        })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(EmbeddedCmd::CreateTopic {
                name: name.to_string(),
                partitions,
                reply,
            })
            .map_err(|_| BusError::Embedded("the broker has stopped".into()))?;
        answer
            .await
            .map_err(|_| BusError::Embedded("the broker has stopped".into()))?
    }
}

/// librdkafka's mock cluster through its C API: `rdkafka::mocking` does not expose the group
/// initial-rebalance delay, whose 3 s default would hold every new job's rows back.
struct MockBroker {
    cluster: *mut rdkafka_sys::rd_kafka_mock_cluster_t,
    // The client handle the cluster belongs to; it must outlive the cluster.
    _handle: BaseProducer,
}

impl MockBroker {
    fn new() -> Result<MockBroker> {
        let handle: BaseProducer = ClientConfig::new().set("log_level", "3").create()?;
        // SAFETY: the handle is a live client; the cluster is destroyed before it (Drop).
        let cluster =
            unsafe { rdkafka_sys::rd_kafka_mock_cluster_new(handle.client().native_ptr(), 1) };
        if cluster.is_null() {
            return Err(BusError::Embedded(
                "librdkafka could not create the mock cluster".into(),
            ));
        }
        // SAFETY: `cluster` is the live cluster created above.
        unsafe { rdkafka_sys::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 300) };
        Ok(MockBroker {
            cluster,
            _handle: handle,
        })
    }

    fn bootstrap(&self) -> String {
        // SAFETY: the cluster is live; librdkafka returns a NUL-terminated string it owns.
        unsafe { CStr::from_ptr(rdkafka_sys::rd_kafka_mock_cluster_bootstraps(self.cluster)) }
            .to_string_lossy()
            .into_owned()
    }

    fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let name_c = CString::new(name).map_err(|e| BusError::Embedded(e.to_string()))?;
        // SAFETY: live cluster, NUL-terminated name that outlives the call.
        let err = unsafe {
            rdkafka_sys::rd_kafka_mock_topic_create(self.cluster, name_c.as_ptr(), partitions, 1)
        };
        use rdkafka_sys::rd_kafka_resp_err_t as E;
        // An existing topic is fine: a retried job publishes into its topics again.
        if matches!(
            err,
            E::RD_KAFKA_RESP_ERR_NO_ERROR | E::RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS
        ) {
            Ok(())
        } else {
            Err(BusError::Embedded(format!(
                "cannot create topic {name}: {err:?}"
            )))
        }
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once, before the handle it belongs to.
        unsafe { rdkafka_sys::rd_kafka_mock_cluster_destroy(self.cluster) };
    }
}

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
    embedded: Option<EmbeddedBroker>,
}

impl Bus {
    /// Starts the embedded broker, or connects to the configured one, waiting for it to answer.
    pub async fn start(config: &BusConfig) -> Result<Bus> {
        let (bootstrap, embedded) = match &config.brokers {
            Some(b) => (b.clone(), None),
            None => {
                let broker = EmbeddedBroker::start()?;
                tracing::info!(
                    bootstrap = broker.bootstrap(),
                    "embedded Kafka broker started"
                );
                (broker.bootstrap().to_string(), Some(broker))
            }
        };
        let props = config.client_properties.0.clone();
        let producer: FutureProducer = client_config(&bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
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
            partitions: config.partitions.max(1),
            replication: config.replication.max(1),
            no_admin: AtomicBool::new(false),
            props,
        })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Creates a sheet's topic; an existing one is fine (a re-driven job finds its topics).
    pub async fn create_topic(&self, topic: &SheetTopic) -> Result<()> {
        self.create_topic_named(&topic.name()).await
    }

    /// Creates a topic by name (as row topics are); an existing one is fine.
    pub async fn create_topic_named(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        if let Some(embedded) = &self.embedded {
            return embedded.create_topic(&name, self.partitions).await;
        }
        if self.no_admin.load(Ordering::Relaxed) {
            return Ok(());
        }
        let admin = self
            .admin
            .as_ref()
            .expect("external bus has an admin client");
        let new = NewTopic::new(
            &name,
            self.partitions,
            TopicReplication::Fixed(self.replication),
        );
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
                    return Err(BusError::Kafka(KafkaError::AdminOp(code))).inspect_err(|_| {
                        tracing::error!(topic = t, ?code, "cannot create topic");
                    })
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

    /// A consumer in the workers' group; the caller subscribes it. `worker` names it in logs.
    pub fn consumer(
        &self,
        group: &str,
        worker: &str,
        lag: ConsumerLag,
    ) -> Result<StreamConsumer<WorkerContext>> {
        let context = WorkerContext {
            worker: worker.to_string(),
            lag,
        };
        let embedded = self.embedded.is_some();
        Ok(client_config(&self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // Pattern subscriptions see new topics on a metadata refresh: a new job's rows must
            // start moving within seconds, not librdkafka's default five minutes.
            .set("topic.metadata.refresh.interval.ms", "1000")
            // A rebalance (every new job's topic causes one) waits on the session timeout in
            // the mock cluster; in-process members can afford a short one. Real brokers
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
            .create_with_context(context)?)
    }

    pub async fn flush(&self) {
        let _ = self.producer.flush(Duration::from_secs(10));
    }
}

/// Consumer lag per (topic, partition), as the workers of this process last saw it.
#[derive(Clone, Default)]
pub struct ConsumerLag(Arc<Mutex<HashMap<(String, i32), i64>>>);

impl ConsumerLag {
    pub fn snapshot(&self) -> Vec<((String, i32), i64)> {
        let map = self.0.lock().expect("lag map");
        let mut v: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort();
        v
    }
}

/// Logs partition assignments (so a takeover after a crash is visible) and records lag.
pub struct WorkerContext {
    worker: String,
    lag: ConsumerLag,
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        let mut map = self.lag.0.lock().expect("lag map");
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // -1 means unknown (not assigned here); partition -1 is librdkafka's internal one.
                if partition >= 0 && p.consumer_lag >= 0 {
                    map.insert((topic.clone(), partition), p.consumer_lag);
                } else {
                    map.remove(&(topic.clone(), partition));
                }
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}[{}]", e.topic(), e.partition()))
                    .collect();
                tracing::info!(
                    worker = %self.worker,
                    "partitions assigned: {}",
                    if parts.is_empty() { "none".to_string() } else { parts.join(" ") }
                );
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(worker = %self.worker, "partitions revoked: {}", tpl.count());
                let mut map = self.lag.0.lock().expect("lag map");
                for e in tpl.elements() {
                    map.remove(&(e.topic().to_string(), e.partition()));
                }
            }
            Rebalance::Error(e) => tracing::warn!(worker = %self.worker, "rebalance error: {e}"),
        }
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
    let mut attempt = 1u32;
    let mut delay = Duration::from_secs(1);
    loop {
        // fetch_metadata blocks; block_in_place keeps the runtime's other tasks going.
        let probe = tokio::task::block_in_place(|| {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|m| m.brokers().len())
        });
        match probe {
            Ok(n) if n > 0 => {
                if attempt > 1 {
                    tracing::info!("Kafka at {bootstrap} is up after {attempt} attempts");
                }
                return;
            }
            _ => {
                tracing::warn!(
                    "waiting for Kafka at {bootstrap} (attempt {attempt}, next in {}s)",
                    delay.as_secs()
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips() {
        let batch = RowBatch {
            sheet: 3,
            rows: vec![
                RowPoint {
                    seq: 10_000_000_000,
                    x: 198_765.123_456_789,
                    y: -1.5,
                },
                RowPoint {
                    seq: 10_000_000_007,
                    x: f64::MIN_POSITIVE,
                    y: 451_234.5,
                },
            ],
        };
        assert_eq!(RowBatch::decode(&batch.encode()).unwrap(), batch);
    }

    #[test]
    fn batch_of_another_version_is_refused() {
        let mut bytes = RowBatch {
            sheet: 0,
            rows: vec![],
        }
        .encode();
        bytes[0] = 2;
        let err = RowBatch::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("version 2"), "{err}");
        assert!(RowBatch::decode(&bytes[..5]).is_err());
    }

    #[test]
    fn topic_names_round_trip() {
        let t = SheetTopic::new("ab12cd", 7);
        assert_eq!(t.name(), "geobatch.rows.ab12cd.7");
        assert_eq!(SheetTopic::parse(&t.name()), Some(t));
        assert_eq!(SheetTopic::parse("other.topic"), None);
    }
}
