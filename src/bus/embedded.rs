//! The embedded broker: librdkafka's mock cluster, on a thread of its own (its handle is
//! neither Send nor Sync), reached through its C API because `rdkafka::mocking` does not expose
//! the group initial-rebalance delay, whose 3 s default would hold every new job's rows back.

use std::ffi::{CStr, CString};
use std::sync::mpsc as std_mpsc;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use tokio::sync::oneshot;

use super::{BusError, Result};

enum EmbeddedCmd {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// A Kafka-protocol broker in this process. Dropping it stops the broker.
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

    pub(super) async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
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
