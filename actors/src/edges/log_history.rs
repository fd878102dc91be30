//! The node's log history: the JetStream stream `HERD_LOGS_<node>` that keeps every LogChunk
//! the node publishes, so that `herdctl logs` prints a workload's output after it ended, after
//! herdd restarted, or while the node is down.
//!
//! One stream per node: JetStream limits apply per stream, and an operator who sets "keep 1 GiB
//! of logs" means per node, with one chatty node never pushing another's history out. The
//! stream takes the live subjects (`logs.<node>.>`), so the pumps' plain publishes land in it
//! with no acknowledgement round trip on the output path.

use crate::cores::backoff::Backoff;
use async_nats::jetstream::{self, stream};
use herd_bus::{NodeId, Subjects};
use std::time::Duration;
use tokio::sync::watch;

/// How long the node's log history is kept, and how much of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetention {
    pub max_age: Duration,
    /// The stream's byte cap: this node's logs, all workloads together.
    pub max_bytes: u64,
}

/// The stream keeping `node`'s logs: its live subjects, limits by age and bytes, the oldest
/// chunks discarded first.
pub fn logs_stream_config(
    subjects: &Subjects,
    node: &NodeId,
    retention: LogRetention,
    replicas: usize,
) -> stream::Config {
    stream::Config {
        name: subjects.logs_stream(node),
        subjects: vec![subjects.logs_of_node(node)],
        storage: stream::StorageType::File,
        max_age: retention.max_age,
        max_bytes: i64::try_from(retention.max_bytes).unwrap_or(i64::MAX),
        discard: stream::DiscardPolicy::Old,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Whether the first attempt to make the log stream is over (made, or failed and retried in
/// the background). A workload's first chunk waits for it, briefly, so that a workload started
/// just after herdd does not lose its first lines to a stream not made yet.
#[derive(Debug, Clone)]
pub struct LogsKept(watch::Receiver<bool>);

impl LogsKept {
    /// Answers at once: for tests and for nodes that keep no history.
    pub fn settled() -> LogsKept {
        let (_, rx) = watch::channel(true);
        LogsKept(rx)
    }

    /// Waits until the first attempt is over, at most `within`.
    pub async fn wait(&mut self, within: Duration) {
        let _ = tokio::time::timeout(within, self.0.wait_for(|settled| *settled)).await;
    }
}

/// Makes (or finds) the node's log stream in the background, retrying with backoff until
/// JetStream answers; brings an existing stream's limits to `config`'s, so that a changed
/// `[logs]` section takes effect at the next start.
pub fn keep_logs(client: async_nats::Client, config: stream::Config) -> LogsKept {
    let (tx, rx) = watch::channel(false);
    let js = jetstream::new(client);
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            match ensure(&js, &config).await {
                Ok(()) => {
                    tracing::debug!(stream = %config.name, "log history kept");
                    let _ = tx.send(true);
                    return;
                }
                Err(error) => {
                    if backoff.is_fresh() {
                        tracing::warn!(stream = %config.name, %error, "cannot make the log stream yet: logs are published live only until JetStream answers");
                    }
                    let _ = tx.send(true);
                }
            }
            tokio::time::sleep(backoff.failed()).await;
        }
    });
    LogsKept(rx)
}

async fn ensure(js: &jetstream::Context, config: &stream::Config) -> Result<(), String> {
    let stream = herd_nats::ensure_stream(js, config.clone()).await?;
    let current = &stream.cached_info().config;
    if (current.max_age, current.max_bytes, current.discard)
        != (config.max_age, config.max_bytes, config.discard)
    {
        tracing::info!(
            stream = %config.name,
            max_age_s = config.max_age.as_secs(),
            max_bytes = config.max_bytes,
            "updating the log stream's limits"
        );
        js.update_stream(config.clone())
            .await
            .map_err(|e| format!("cannot update its limits: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stream_per_node_takes_only_that_nodes_logs() {
        let subjects = Subjects::default();
        let node = NodeId::new("n1").unwrap();
        let config = logs_stream_config(
            &subjects,
            &node,
            LogRetention {
                max_age: Duration::from_secs(86_400),
                max_bytes: 1 << 30,
            },
            3,
        );
        assert_eq!(config.name, "HERD_LOGS_n1");
        assert_eq!(config.num_replicas, 3);
        assert_eq!(config.subjects, ["herd.v1.logs.n1.>"]);
        assert_eq!(config.max_bytes, 1 << 30);
        assert_eq!(config.max_age, Duration::from_secs(86_400));
        assert_eq!(config.discard, stream::DiscardPolicy::Old);
    }
}
