//! The workers' side of the bus: batches of deliveries in, offsets committed only for what the
//! caller says is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use super::{Result, RowBatch, SheetTopic};

/// One message as a worker handles it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
}

impl Delivery {
    /// The sheet this message belongs to; None for a topic that is not a row topic.
    pub fn sheet_topic(&self) -> Option<SheetTopic> {
        SheetTopic::parse(&self.topic)
    }

    pub fn batch(&self) -> Result<RowBatch> {
        RowBatch::decode(&self.payload)
    }
}

/// A partition of a topic.
pub type TopicPartition = (String, i32);

/// The offsets to commit once the messages at `handled` (topic, partition, offset) are
/// stored: per partition, one past the last one handled. Messages not in `handled` are never
/// committed past, so a crash redelivers them.
pub fn offsets_to_commit(handled: &[(String, i32, i64)]) -> Vec<(String, i32, i64)> {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for (topic, partition, offset) in handled {
        let slot = next.entry((topic, *partition)).or_insert(offset + 1);
        *slot = (*slot).max(offset + 1);
    }
    let mut out: Vec<(String, i32, i64)> = next
        .into_iter()
        .map(|((t, p), o)| (t.to_string(), p, o))
        .collect();
    out.sort();
    out
}

/// A member of the workers' consumer group, subscribed to every row topic.
pub struct RowConsumer {
    consumer: StreamConsumer<WorkerContext>,
}

impl RowConsumer {
    pub(super) fn new(consumer: StreamConsumer<WorkerContext>) -> RowConsumer {
        RowConsumer { consumer }
    }

    /// The next message. Transient consumer errors are logged and waited out here. Cancel-safe:
    /// a message is taken only when it is returned.
    pub async fn next(&self) -> Delivery {
        loop {
            match self.consumer.recv().await {
                Ok(m) => return detach(&m),
                // No row topic exists yet (a fresh broker): not an error for a worker.
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                // librdkafka retries by itself; the consumer stays usable.
                Err(e) => tracing::warn!("consuming: {e}"),
            }
        }
    }

    /// Commits the messages at `handled` (see [`offsets_to_commit`]).
    pub fn commit(&self, handled: &[(String, i32, i64)]) -> Result<()> {
        let offsets = offsets_to_commit(handled);
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
        }
        self.consumer.commit(&tpl, CommitMode::Async)?;
        Ok(())
    }

    /// Stops fetching these partitions; messages already received stay with the caller, and
    /// fetching resumes after them.
    pub fn pause(&self, partitions: &[TopicPartition]) -> Result<()> {
        self.consumer.pause(&list(partitions))?;
        Ok(())
    }

    pub fn resume(&self, partitions: &[TopicPartition]) -> Result<()> {
        self.consumer.resume(&list(partitions))?;
        Ok(())
    }

    /// Leaves the group (its partitions go to the other members at once, not after the session
    /// timeout). librdkafka's close waits for the broker, so it runs off the async threads.
    pub async fn close(self) {
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
    }
}

fn list(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

fn detach(m: &rdkafka::message::BorrowedMessage<'_>) -> Delivery {
    Delivery {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        payload: m.payload().unwrap_or_default().to_vec(),
    }
}

/// Consumer lag per (topic, partition), as the workers of this process last saw it.
#[derive(Clone, Default)]
pub struct ConsumerLag(Arc<Mutex<HashMap<(String, i32), i64>>>);

impl ConsumerLag {
    pub fn snapshot(&self) -> Vec<((String, i32), i64)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort();
        v
    }
}

/// Logs partition assignments (so a takeover after a crash is visible) and records lag.
pub struct WorkerContext {
    pub(super) worker: String,
    pub(super) lag: ConsumerLag,
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        let mut map = self.lag.0.lock().unwrap_or_else(|e| e.into_inner());
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
                let mut map = self.lag.0.lock().unwrap_or_else(|e| e.into_inner());
                for e in tpl.elements() {
                    map.remove(&(e.topic().to_string(), e.partition()));
                }
            }
            Rebalance::Error(e) => tracing::warn!(worker = %self.worker, "rebalance error: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(topic: &str, partition: i32, offset: i64) -> (String, i32, i64) {
        (topic.into(), partition, offset)
    }

    /// The commit rule: one past the last handled message of each partition, nothing for a
    /// partition none of whose messages was handled.
    #[test]
    fn commits_one_past_the_last_handled_message_per_partition() {
        let handled = [
            d("a", 0, 5),
            d("a", 1, 9),
            d("a", 0, 7),
            d("b", 0, 0),
            d("a", 0, 6),
        ];
        assert_eq!(
            offsets_to_commit(&handled),
            vec![("a".into(), 0, 8), ("a".into(), 1, 10), ("b".into(), 0, 1)]
        );
        assert!(offsets_to_commit(&[]).is_empty());
    }
}
