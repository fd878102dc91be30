//! The coordinator's durable state in JetStream: its KV buckets (the node records and the run
//! journals, restored at start and saved on change) and its durable consumer of the lifecycle
//! events in `HERD_EVENTS`, so that none is missed while it is down.

use crate::cores::backoff::Backoff;
use crate::edges::nats::open_bucket;
use async_nats::jetstream::{self, consumer, kv};
use futures::{Future, StreamExt};
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{NodeRecord, RunRecord, Subjects};
use serde::Serialize;
use std::time::Duration;

/// JetStream KV bucket with one NodeRecord per node: what heartbeats cannot rebuild.
pub const NODES_BUCKET: &str = "herd-nodes";
/// JetStream KV bucket with one RunRecord (a run's journal) per run.
pub const RUNS_BUCKET: &str = "herd-runs";

/// The coordinator's buckets, once open.
#[derive(Clone)]
pub struct Store {
    nodes: kv::Store,
    runs: kv::Store,
}

/// What a coordinator finds at start.
pub struct Restored {
    pub store: Store,
    pub nodes: Vec<NodeRecord>,
    pub runs: Vec<RunRecord>,
}

impl Store {
    /// Opens (or creates) both buckets and reads them; tries again until JetStream answers.
    pub async fn open(client: async_nats::Client, limits: DecodeLimits) -> Restored {
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        loop {
            let nodes = open_bucket(
                client.clone(),
                NODES_BUCKET,
                "herd coordinator: last known state of every node",
                limits,
            )
            .await;
            let runs = open_bucket(
                client.clone(),
                RUNS_BUCKET,
                "herd coordinator: the journal of every run",
                limits,
            )
            .await;
            match (nodes, runs) {
                (Ok((nodes_kv, nodes)), Ok((runs_kv, runs))) => {
                    return Restored {
                        store: Store {
                            nodes: nodes_kv,
                            runs: runs_kv,
                        },
                        nodes,
                        runs,
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "coordinator buckets not ready; retrying");
                    tokio::time::sleep(backoff.failed()).await;
                }
            }
        }
    }

    /// Saves a node's record, without its last heartbeat's inventory (to keep it small).
    pub fn save_node(&self, record: &NodeRecord) -> impl Future<Output = Result<(), String>> {
        let mut record = record.clone();
        if let Some(hb) = record.heartbeat.as_mut() {
            hb.workloads.clear();
        }
        put(&self.nodes, record.node_id.to_string(), &record)
    }

    /// Saves a run's journal.
    pub fn save_run(&self, record: &RunRecord) -> impl Future<Output = Result<(), String>> {
        put(&self.runs, record.run_id.to_string(), record)
    }
}

fn put<T: Serialize>(
    bucket: &kv::Store,
    key: String,
    value: &T,
) -> impl Future<Output = Result<(), String>> {
    let bucket = bucket.clone();
    let bytes = codec::encode(value, Encoding::MsgPack).map_err(|e| e.to_string());
    async move {
        bucket
            .put(key, bytes?.into())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The coordinator's durable consumer of `HERD_EVENTS`.
pub const EVENTS_CONSUMER: &str = "herd-coordinator";
/// An event not acknowledged in this time is delivered again (acks follow the journal's save,
/// milliseconds after delivery).
const EVENTS_ACK_WAIT: Duration = Duration::from_secs(10);
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
    mut deliver: impl FnMut(jetstream::Message) -> bool,
) {
    let js = jetstream::new(client);
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
                            tracing::debug!(error = %e, "lifecycle events interrupted");
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
