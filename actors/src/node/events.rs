//! EventPublisher: delivers lifecycle events to JetStream, one at a time and in order, waiting
//! for each acknowledgement. Events wait in a bounded [`Outbox`] while NATS is unreachable, and
//! in a file of the state directory across restarts, so none is lost to an outage.

use crate::cores::backoff::Backoff;
use crate::cores::outbox::{Outbox, OutboxEntry};
use actix::prelude::*;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use herd_bus::Subjects;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long one publish waits for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(3);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a changed queue is written to disk (bounds loss on a crash).
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// How long JetStream remembers message ids for de-duplication.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Event ids unique per daemon instance: `<node>-<started_at_ms>-<kind><seq>`. Shared by every
/// actor that emits events.
#[derive(Debug, Clone)]
pub struct EventIds {
    prefix: String,
    seq: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl EventIds {
    pub fn new(node_id: &herd_bus::NodeId, started_at_ms: u64) -> EventIds {
        EventIds {
            prefix: format!("{node_id}-{started_at_ms}"),
            seq: Default::default(),
        }
    }

    /// `kind` tells event families apart (`n` node, `w` workload).
    pub fn next(&self, kind: &str) -> String {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        format!("{}-{kind}{n}", self.prefix)
    }
}

pub struct EventPublisher {
    js: jetstream::Context,
    stream: stream::Config,
    outbox: Outbox,
    state_file: Option<PathBuf>,
    in_flight: bool,
    stream_ready: bool,
    retry: Backoff,
    failing_since: Option<std::time::Instant>,
    dirty: bool,
    flush_waiters: Vec<oneshot::Sender<()>>,
}

impl EventPublisher {
    /// `state_file`: where the queue is kept across restarts; what it holds is queued first.
    pub fn new(
        client: async_nats::Client,
        subjects: &Subjects,
        capacity: usize,
        max_age: Duration,
        replicas: usize,
        state_file: Option<PathBuf>,
    ) -> EventPublisher {
        let mut js = jetstream::new(client);
        js.set_timeout(ACK_TIMEOUT);
        let mut outbox = Outbox::new(capacity);
        if let Some(path) = &state_file {
            match outbox.load(path) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(events = n, file = %path.display(), "resuming undelivered events")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the saved outbox; starting empty")
                }
            }
        }
        EventPublisher {
            js,
            stream: events_stream_config(subjects, max_age, replicas),
            outbox,
            state_file,
            in_flight: false,
            stream_ready: false,
            retry: Backoff::new(RETRY_MIN, RETRY_MAX),
            failing_since: None,
            dirty: false,
            flush_waiters: Vec::new(),
        }
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        let Some(entry) = self.outbox.front().cloned() else {
            for w in self.flush_waiters.drain(..) {
                let _ = w.send(());
            }
            return;
        };
        self.in_flight = true;
        let js = self.js.clone();
        let stream = (!self.stream_ready).then(|| self.stream.clone());
        let fut = async move {
            if let Some(config) = stream {
                herd_nats::ensure_stream(&js, config).await?;
            }
            herd_shim::stage::stage("event_sent");
            let publish = PublishMessage::build()
                .payload(entry.payload.clone().into())
                .message_id(&entry.msg_id);
            let ack = js
                .send_publish(entry.subject.clone(), publish)
                .await
                .map_err(|e| format!("publish failed: {e}"))?;
            tokio::time::timeout(ACK_TIMEOUT, ack)
                .await
                .map_err(|_| "no acknowledgement in time".to_string())?
                .map_err(|e| format!("not acknowledged: {e}"))?;
            Ok::<String, String>(entry.msg_id)
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.in_flight = false;
            match res {
                Ok(msg_id) => {
                    act.stream_ready = true;
                    act.retry.succeeded();
                    if let Some(since) = act.failing_since.take() {
                        tracing::info!(
                            after_s = since.elapsed().as_secs_f64(),
                            queued = act.outbox.len(),
                            "event delivery resumed"
                        );
                    }
                    act.outbox.ack(&msg_id);
                    crate::edges::metrics::metrics()
                        .outbox_events
                        .set(act.outbox.len() as i64);
                    act.dirty = true;
                    act.pump(ctx);
                }
                Err(error) => {
                    // A restarted server may have lost the stream: make sure of it next time.
                    act.stream_ready = false;
                    if act.failing_since.is_none() {
                        act.failing_since = Some(std::time::Instant::now());
                        tracing::warn!(%error, queued = act.outbox.len(), "events are queued until JetStream answers");
                    } else {
                        tracing::debug!(%error, "event delivery retry failed");
                    }
                    let delay = act.retry.failed();
                    ctx.run_later(delay, |act, ctx| act.pump(ctx));
                }
            }
        }));
    }

    fn persist(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        if let Some(path) = &self.state_file {
            if let Err(e) = self.outbox.save(path) {
                tracing::warn!(error = %e, file = %path.display(), "cannot save the outbox");
            }
        }
    }
}

/// The `HERD_EVENTS` stream: every node's lifecycle events, de-duplicated by message id.
pub fn events_stream_config(
    subjects: &Subjects,
    max_age: Duration,
    replicas: usize,
) -> stream::Config {
    stream::Config {
        name: subjects.events_stream(),
        subjects: vec![subjects.events_all()],
        storage: stream::StorageType::File,
        max_age,
        duplicate_window: DUPLICATE_WINDOW.min(max_age),
        num_replicas: replicas,
        ..Default::default()
    }
}

impl Actor for EventPublisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(PERSIST_EVERY, |act, _| act.persist());
        self.pump(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.dirty = true;
        self.persist();
    }
}

/// Queue an event for delivery.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub OutboxEntry);

impl Handler<Publish> for EventPublisher {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) {
        if let Some(evicted) = self.outbox.push(msg.0) {
            tracing::warn!(
                subject = %evicted.subject,
                dropped_total = self.outbox.dropped(),
                "outbox full: dropped the oldest event"
            );
        }
        crate::edges::metrics::metrics()
            .outbox_events
            .set(self.outbox.len() as i64);
        self.dirty = true;
        self.pump(ctx);
    }
}

/// Wait until every queued event is delivered or `timeout` passes; then save what is left.
/// Answers how many events are still queued.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Flush(pub Duration);

impl Handler<Flush> for EventPublisher {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, msg: Flush, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.flush_waiters.push(tx);
        self.pump(ctx);
        Box::pin(
            async move {
                let _ = tokio::time::timeout(msg.0, rx).await;
            }
            .into_actor(self)
            .map(|_, act, _| {
                act.dirty = true;
                act.persist();
                act.outbox.len()
            }),
        )
    }
}

/// How many events wait, and how many were dropped since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct OutboxCounts {
    pub queued: usize,
    pub dropped: u64,
}

#[derive(Message)]
#[rtype(result = "OutboxCounts")]
pub struct OutboxStats;

impl Handler<OutboxStats> for EventPublisher {
    type Result = OutboxCounts;

    fn handle(&mut self, _: OutboxStats, _: &mut Self::Context) -> OutboxCounts {
        OutboxCounts {
            queued: self.outbox.len(),
            dropped: self.outbox.dropped(),
        }
    }
}
