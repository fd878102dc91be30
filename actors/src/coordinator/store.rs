//! The coordinator's durable state in JetStream: its KV buckets (the node records and the run
//! journals, restored at start and saved on change) and its durable consumer of the lifecycle
//! events in `HERD_EVENTS`, so that none is missed while it is down.
//!
//! Every write is a compare-and-set on the revision this coordinator last read or wrote: when
//! another coordinator has written the key since (it leads now), the write fails as
//! [`SaveError::Superseded`] instead of overwriting its state.

use crate::cores::backoff::Backoff;
use crate::edges::nats::{kv_stream_config, open_bucket, Stored, RETRIED_REQUEST_TIMEOUT};
use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::{self, consumer, kv};
use futures::{Future, StreamExt};
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{NodeRecord, RunRecord, Subjects};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// JetStream KV bucket with one NodeRecord per node: what heartbeats cannot rebuild.
pub const NODES_BUCKET: &str = "herd-nodes";
/// JetStream KV bucket with one RunRecord (a run's journal) per run.
pub const RUNS_BUCKET: &str = "herd-runs";

/// The coordinator's buckets, once open.
#[derive(Clone)]
pub struct Store {
    nodes: Bucket,
    runs: Bucket,
}

/// What a coordinator finds at start.
pub struct Restored {
    pub store: Store,
    pub nodes: Vec<NodeRecord>,
    pub runs: Vec<RunRecord>,
}

/// Why a record was not saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaveError {
    /// Another coordinator wrote the key since this one read it: it no longer leads.
    #[error("another coordinator wrote {0} since this one read it")]
    Superseded(String),
    #[error("{0}")]
    Failed(String),
}

impl Store {
    /// Opens (or creates) both buckets with `replicas` and reads them, side by side; each tries
    /// again until JetStream answers (one read is not redone for the other's failure).
    pub async fn open(
        client: async_nats::Client,
        limits: DecodeLimits,
        replicas: usize,
    ) -> Restored {
        let nodes = open_until_read::<NodeRecord>(
            client.clone(),
            kv_stream_config(
                NODES_BUCKET,
                "herd coordinator: last known state of every node",
                replicas,
            ),
            limits,
        );
        let runs = open_until_read::<RunRecord>(
            client,
            kv_stream_config(
                RUNS_BUCKET,
                "herd coordinator: the journal of every run",
                replicas,
            ),
            limits,
        );
        let ((nodes_kv, nodes), (runs_kv, runs)) = tokio::join!(nodes, runs);
        let (nodes_bucket, nodes) = Bucket::restored(nodes_kv, nodes);
        let (runs_bucket, runs) = Bucket::restored(runs_kv, runs);
        Restored {
            store: Store {
                nodes: nodes_bucket,
                runs: runs_bucket,
            },
            nodes,
            runs,
        }
    }

    /// Saves a node's record, without its last heartbeat's inventory (to keep it small).
    pub fn save_node(&self, record: &NodeRecord) -> impl Future<Output = Result<(), SaveError>> {
        let mut record = record.clone();
        if let Some(hb) = record.heartbeat.as_mut() {
            hb.workloads.clear();
        }
        self.nodes.save(record.node_id.to_string(), &record)
    }

    /// Saves a run's journal.
    pub fn save_run(&self, record: &RunRecord) -> impl Future<Output = Result<(), SaveError>> {
        self.runs.save(record.run_id.to_string(), record)
    }
}

/// [`open_bucket`], again and again until it reads the bucket.
async fn open_until_read<T: serde::de::DeserializeOwned>(
    client: async_nats::Client,
    config: jetstream::stream::Config,
    limits: DecodeLimits,
) -> (kv::Store, Vec<Stored<T>>) {
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    loop {
        match open_bucket::<T>(client.clone(), config.clone(), limits).await {
            Ok(opened) => return opened,
            Err(e) => {
                tracing::warn!(error = %e, "coordinator buckets not ready; retrying");
                tokio::time::sleep(backoff.failed()).await;
            }
        }
    }
}

/// A KV bucket and the revision this coordinator knows of each key (0: none, the next write
/// creates it). Writes of one key go one at a time, each at the revision the last one left.
#[derive(Clone)]
struct Bucket {
    kv: kv::Store,
    revisions: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<u64>>>>>,
}

impl Bucket {
    fn restored<T>(kv: kv::Store, stored: Vec<Stored<T>>) -> (Bucket, Vec<T>) {
        let mut revisions = HashMap::new();
        let mut values = Vec::with_capacity(stored.len());
        for s in stored {
            revisions.insert(s.key, Arc::new(tokio::sync::Mutex::new(s.revision)));
            values.push(s.value);
        }
        let bucket = Bucket {
            kv,
            revisions: Arc::new(Mutex::new(revisions)),
        };
        (bucket, values)
    }

    fn revision(&self, key: &str) -> Arc<tokio::sync::Mutex<u64>> {
        let mut map = self.revisions.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string()).or_default().clone()
    }

    fn save<T: Serialize>(
        &self,
        key: String,
        value: &T,
    ) -> impl Future<Output = Result<(), SaveError>> {
        let kv = self.kv.clone();
        let bytes = codec::encode(value, Encoding::MsgPack).map_err(|e| e.to_string());
        let slot = self.revision(&key);
        async move {
            let bytes = bytes.map_err(SaveError::Failed)?;
            let mut revision = slot.lock().await;
            let written = if *revision == 0 {
                kv.create(&key, bytes.into())
                    .await
                    .map_err(|e| match e.kind() {
                        CreateErrorKind::AlreadyExists => SaveError::Superseded(key.clone()),
                        _ => SaveError::Failed(e.to_string()),
                    })
            } else {
                kv.update(&key, bytes.into(), *revision)
                    .await
                    .map_err(|e| match e.kind() {
                        UpdateErrorKind::WrongLastRevision => SaveError::Superseded(key.clone()),
                        _ => SaveError::Failed(e.to_string()),
                    })
            };
            *revision = written?;
            Ok(())
        }
    }
}

/// The coordinator's durable consumer of `HERD_EVENTS`.
pub const EVENTS_CONSUMER: &str = "herd-coordinator";
/// An event not acknowledged in this time is delivered again (acks follow the journal's save,
/// milliseconds after delivery).
const EVENTS_ACK_WAIT: Duration = Duration::from_secs(10);
/// Each pull of the consumer waits this long for events, the server sending a heartbeat this
/// often while it has none. A pull lost with a server (the consumer's leader was on it; the
/// connection, elsewhere, never broke) shows as two missed heartbeats: the consumer is then
/// looked up again and pulled from anew, seconds after, not half a minute.
const EVENTS_PULL_EXPIRES: Duration = Duration::from_secs(10);
const EVENTS_HEARTBEAT: Duration = Duration::from_secs(2);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Hands every event of the stream (`evt.<node>.workload.*`, `evt.<node>.node.*`,
/// `evt.<node>.results`) to `deliver`, in order, until `deliver` answers false; each must be
/// acknowledged once handled. Waits for the stream (the nodes create it) and comes back after
/// an outage.
///
/// The consumer is durable: one that exists resumes where the last coordinator left it, events
/// it had delivered but not acknowledged included. A new one starts after what the stream held
/// when this was called, so a first coordinator does not replay old history — or at the stream's
/// start, when the stream was created later.
pub async fn follow_events(
    client: async_nats::Client,
    subjects: Subjects,
    stop: tokio::sync::oneshot::Receiver<()>,
    deliver: impl FnMut(jetstream::Message) -> bool,
) {
    // Stopping drops the consumer's pull requests at once: what this coordinator pulled but did
    // not acknowledge goes to the next one after the ack wait.
    tokio::select! {
        _ = stop => {}
        _ = follow(client, subjects, deliver) => {}
    }
}

async fn follow(
    client: async_nats::Client,
    subjects: Subjects,
    mut deliver: impl FnMut(jetstream::Message) -> bool,
) {
    let mut js = jetstream::new(client);
    js.set_timeout(RETRIED_REQUEST_TIMEOUT);
    let mut seen = Seen::Nothing;
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    loop {
        match consume(&js, &subjects, &mut seen).await {
            Ok(mut messages) => {
                while let Some(next) = messages.next().await {
                    match next {
                        Ok(m) => {
                            backoff.succeeded();
                            if !deliver(m) {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "lifecycle events interrupted; pulling anew");
                            break;
                        }
                    }
                }
            }
            Err(e) if backoff.is_fresh() => {
                tracing::info!(error = %e, "waiting for lifecycle events")
            }
            Err(e) => tracing::debug!(error = %e, "waiting for lifecycle events"),
        }
        tokio::time::sleep(backoff.failed()).await;
    }
}

/// What this coordinator saw of the events stream, to place a new consumer in it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Nothing,
    /// No stream: every event of one created later is news.
    Missing,
    /// The stream created at `created_ns`, and where a new consumer starts in it.
    Stream {
        created_ns: i128,
        start: consumer::DeliverPolicy,
    },
}

impl Seen {
    /// Where a new consumer starts in the stream created at `created_ns` whose last message is
    /// `last_sequence`: after it, if this is the first look (what it holds is history); at its
    /// start, if the stream is newer than the last look.
    fn start(&mut self, created_ns: i128, last_sequence: u64) -> consumer::DeliverPolicy {
        let start = match *self {
            Seen::Stream {
                created_ns: seen,
                start,
            } if seen == created_ns => start,
            Seen::Nothing => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: last_sequence + 1,
            },
            Seen::Missing | Seen::Stream { .. } => consumer::DeliverPolicy::All,
        };
        *self = Seen::Stream { created_ns, start };
        start
    }
}

async fn consume(
    js: &jetstream::Context,
    subjects: &Subjects,
    seen: &mut Seen,
) -> Result<consumer::pull::Stream, String> {
    let name = subjects.events_stream();
    let stream = match js.get_stream(&name).await {
        Ok(stream) => stream,
        Err(e) => {
            if let jetstream::context::GetStreamErrorKind::JetStream(js_error) = e.kind() {
                if js_error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND {
                    *seen = Seen::Missing;
                }
            }
            return Err(format!("stream {name}: {e}"));
        }
    };
    let info = stream.cached_info();
    let deliver_policy = seen.start(
        info.created.unix_timestamp_nanos(),
        info.state.last_sequence,
    );
    let consumer = stream
        .get_or_create_consumer(
            EVENTS_CONSUMER,
            consumer::pull::Config {
                durable_name: Some(EVENTS_CONSUMER.into()),
                description: Some("herd coordinator: every node's lifecycle events".into()),
                deliver_policy,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: EVENTS_ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {EVENTS_CONSUMER} on {name}: {e}"))?;
    consumer
        .stream()
        .expires(EVENTS_PULL_EXPIRES)
        .heartbeat(EVENTS_HEARTBEAT)
        .messages()
        .await
        .map_err(|e| format!("consumer {EVENTS_CONSUMER} on {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use consumer::DeliverPolicy::{All, ByStartSequence};

    #[test]
    fn a_new_consumer_skips_the_history_of_its_first_stream_only() {
        // First look at a stream with history: start after it, on every later look too.
        let mut seen = Seen::Nothing;
        let after = ByStartSequence { start_sequence: 41 };
        assert_eq!(seen.start(7, 40), after);
        assert_eq!(seen.start(7, 90), after, "the same stream: the same place");
        // A stream created since (the server lost the old one): all of it is news.
        assert_eq!(seen.start(8, 3), All);
        assert_eq!(seen.start(8, 9), All);
        // No stream at the first look: every event of the one created later is news.
        let mut seen = Seen::Missing;
        assert_eq!(seen.start(9, 12), All);
    }
}
