//! The Coordinator actor: owns a [`NodeRegistry`], feeds it heartbeats, node events and clock
//! ticks, announces and persists liveness changes, and answers `cluster.*` queries.

use super::placement;
use super::registry::{Change, NodeRegistry, RegistryConfig};
use crate::bus::{message_encoding, publish_msgpack, reply_message};
use crate::clock::now_ms;
use actix::prelude::*;
use async_nats::jetstream::{self, kv};
use async_nats::Message as NatsMessage;
use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{
    ClusterEvent, ClusterVerb, ClusterWorkloadList, ErrorBody, ErrorCode, FitQuery, Heartbeat,
    NodeEvent, NodeEventKind, NodeGet, NodeList, NodeLiveness, NodeRecord, NodesQuery, Reply,
    Subject, Subjects, WorkloadsQuery,
};
use serde::Serialize;
use std::time::Duration;

/// JetStream KV bucket with one NodeRecord per node: what heartbeats cannot rebuild.
pub const NODES_BUCKET: &str = "herd-nodes";
/// Queue group: with several coordinators, each query is answered once.
pub const QUEUE_GROUP: &str = "herd-coordinator";

pub struct Coordinator {
    client: async_nats::Client,
    subjects: Subjects,
    registry: NodeRegistry,
    limits: DecodeLimits,
    tick: Duration,
    kv: Option<kv::Store>,
    round_robin: usize,
    malformed_heartbeats: u64,
}

impl Coordinator {
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        config: RegistryConfig,
        limits: DecodeLimits,
        tick: Duration,
    ) -> Coordinator {
        Coordinator {
            client,
            subjects,
            registry: NodeRegistry::new(config),
            limits,
            tick,
            kv: None,
            round_robin: 0,
            malformed_heartbeats: 0,
        }
    }

    fn apply(&mut self, changes: Vec<Change>) {
        for c in changes {
            let kind = format!("node.{}", liveness_name(c.to));
            tracing::info!(node = %c.node_id, to = liveness_name(c.to), restarted = c.restarted, "node liveness");
            let event = ClusterEvent {
                kind: kind.clone(),
                ts_ms: now_ms(),
                node_id: Some(c.node_id.clone()),
                run_id: None,
                nodes: vec![],
                message: c
                    .restarted
                    .then(|| "the node's daemon restarted".to_string()),
            };
            publish_msgpack(
                &self.client,
                self.subjects.cluster_event(&kind),
                &event,
                "a cluster event",
            );
            if let (Some(kv), Some(record)) = (self.kv.clone(), self.registry.get(&c.node_id)) {
                // Without the last heartbeat's inventory, to keep the record small.
                let mut record = record.clone();
                if let Some(hb) = record.heartbeat.as_mut() {
                    hb.workloads.clear();
                }
                if let Ok(bytes) = codec::encode(&record, Encoding::MsgPack) {
                    let key = c.node_id.to_string();
                    actix::spawn(async move {
                        if let Err(e) = kv.put(key, bytes.into()).await {
                            tracing::warn!(error = %e, "cannot save a node record");
                        }
                    });
                }
            }
        }
    }

    fn malformed(&mut self, subject: &str, why: String) {
        self.malformed_heartbeats += 1;
        let n = self.malformed_heartbeats;
        // The first of each power of ten, so a noisy sender cannot flood the log.
        if n.is_power_of_two() || n.is_multiple_of(1000) {
            tracing::warn!(%subject, count = n, "ignoring a malformed heartbeat: {why}");
        }
    }

    fn on_heartbeat(&mut self, msg: &NatsMessage, node: &herd_bus::NodeId) {
        match codec::decode::<Heartbeat>(&msg.payload, Encoding::MsgPack, &self.limits) {
            Ok(hb) if hb.node_id != *node => self.malformed(
                msg.subject.as_str(),
                format!("it names node {}", hb.node_id),
            ),
            Ok(hb) => {
                let changes = self.registry.on_heartbeat(hb, now_ms());
                self.apply(changes);
            }
            Err(e) => self.malformed(msg.subject.as_str(), e.to_string()),
        }
    }

    fn query(
        &mut self,
        verb: ClusterVerb,
        msg: &NatsMessage,
        enc: Encoding,
    ) -> Result<Vec<u8>, ErrorBody> {
        fn ok<T: Serialize>(data: &T, enc: Encoding) -> Result<Vec<u8>, ErrorBody> {
            codec::encode(&Reply::ok(data), enc).map_err(|e| ErrorBody {
                code: ErrorCode::Internal,
                message: e.to_string(),
            })
        }
        let bad = |e: herd_bus::CodecError| ErrorBody {
            code: ErrorCode::BadRequest,
            message: e.to_string(),
        };
        match verb {
            ClusterVerb::Nodes => {
                let q: NodesQuery =
                    codec::decode_request(&msg.payload, enc, &self.limits).map_err(bad)?;
                ok(
                    &NodeList {
                        nodes: self.registry.nodes(&q),
                    },
                    enc,
                )
            }
            ClusterVerb::NodeGet => {
                let q: NodeGet = codec::decode(&msg.payload, enc, &self.limits).map_err(bad)?;
                let record = self.registry.get(&q.node_id).ok_or_else(|| ErrorBody {
                    code: ErrorCode::NotFound,
                    message: format!("node {} is not known to the coordinator", q.node_id),
                })?;
                ok(record, enc)
            }
            ClusterVerb::Workloads => {
                let q: WorkloadsQuery =
                    codec::decode_request(&msg.payload, enc, &self.limits).map_err(bad)?;
                ok(
                    &ClusterWorkloadList {
                        workloads: self.registry.workloads(&q),
                    },
                    enc,
                )
            }
            ClusterVerb::Query => {
                let q: FitQuery =
                    codec::decode_request(&msg.payload, enc, &self.limits).map_err(bad)?;
                for (name, v) in [("cpu", q.cpu)] {
                    if v.is_some_and(|c| !c.is_finite() || c <= 0.0) {
                        return Err(ErrorBody {
                            code: ErrorCode::BadRequest,
                            message: format!("{name}: must be > 0"),
                        });
                    }
                }
                self.round_robin = self.round_robin.wrapping_add(1);
                ok(
                    &placement::place(self.registry.records(), &q, self.round_robin),
                    enc,
                )
            }
            ClusterVerb::RunSubmit
            | ClusterVerb::RunStop
            | ClusterVerb::RunGet
            | ClusterVerb::RunList => Err(ErrorBody {
                code: ErrorCode::Unavailable,
                message: format!(
                    "{} needs runs, which this build of the coordinator does not have yet",
                    verb.as_str()
                ),
            }),
        }
    }
}

fn liveness_name(l: NodeLiveness) -> &'static str {
    match l {
        NodeLiveness::Up => "up",
        NodeLiveness::Stale => "stale",
        NodeLiveness::Lost => "lost",
        NodeLiveness::Left => "left",
    }
}

/// Opens (or creates) the node bucket and reads every record in it.
async fn open_bucket(
    client: async_nats::Client,
    limits: DecodeLimits,
) -> Result<(kv::Store, Vec<NodeRecord>), String> {
    let js = jetstream::new(client);
    // The bucket's stream is created with the KV conventions through the stream API: the KV
    // create call of async-nats cannot read nats-server 2.9's reply, the stream call can.
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{NODES_BUCKET}"),
        description: Some("herd coordinator: last known state of every node".into()),
        subjects: vec![format!("$KV.{NODES_BUCKET}.>")],
        max_messages_per_subject: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create the {NODES_BUCKET} bucket: {e}"))?;
    let store = js
        .get_key_value(NODES_BUCKET)
        .await
        .map_err(|e| format!("cannot open the {NODES_BUCKET} bucket: {e}"))?;
    let mut records = Vec::new();
    let mut keys = store.keys().await.map_err(|e| e.to_string())?;
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        if let Ok(Some(bytes)) = store.get(&key).await {
            match codec::decode::<NodeRecord>(&bytes, Encoding::MsgPack, &limits) {
                Ok(r) => records.push(r),
                Err(e) => tracing::warn!(%key, error = %e, "ignoring an unreadable node record"),
            }
        }
    }
    Ok((store, records))
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let client = self.client.clone();
        let limits = self.limits;
        let subjects = self.subjects.clone();
        // Restore before anything is applied; subscriptions follow.
        ctx.wait(
            async move {
                let mut delay = Duration::from_millis(200);
                let restored = loop {
                    match open_bucket(client.clone(), limits).await {
                        Ok(r) => break r,
                        Err(e) => {
                            tracing::warn!(error = %e, "node bucket not ready; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                    }
                };
                let hb = client.subscribe(subjects.heartbeats_all()).await;
                let ev = client
                    .subscribe(format!("{}.v1.evt.*.node.*", subjects.prefix()))
                    .await;
                let q1 = client
                    .queue_subscribe(
                        format!("{}.v1.cluster.*", subjects.prefix()),
                        QUEUE_GROUP.into(),
                    )
                    .await;
                let q2 = client
                    .queue_subscribe(
                        format!("{}.v1.cluster.*.*", subjects.prefix()),
                        QUEUE_GROUP.into(),
                    )
                    .await;
                (restored, hb, ev, q1, q2)
            }
            .into_actor(self)
            .map(|(restored, hb, ev, q1, q2), act, ctx| {
                let (store, records) = restored;
                tracing::info!(nodes = records.len(), "coordinator restored node records");
                act.registry.restore(records, now_ms());
                act.kv = Some(store);
                match (hb, ev, q1, q2) {
                    (Ok(hb), Ok(ev), Ok(q1), Ok(q2)) => {
                        ctx.add_stream(futures::stream::select_all([hb, ev, q1, q2]));
                    }
                    _ => {
                        tracing::error!("coordinator cannot subscribe");
                        ctx.stop();
                    }
                }
            }),
        );
        ctx.run_interval(self.tick, |act, _| {
            let changes = act.registry.tick(now_ms());
            act.apply(changes);
        });
    }
}

impl StreamHandler<NatsMessage> for Coordinator {
    fn handle(&mut self, msg: NatsMessage, _: &mut Self::Context) {
        match self.subjects.parse(msg.subject.as_str()) {
            Ok(Subject::Heartbeat { node }) => self.on_heartbeat(&msg, &node),
            Ok(Subject::NodeEvent { node, kind }) if kind == NodeEventKind::Stopping.as_str() => {
                match codec::decode::<NodeEvent>(&msg.payload, Encoding::MsgPack, &self.limits) {
                    Ok(ev) => {
                        let changes = self.registry.on_stopping(&node, ev.started_at_ms);
                        self.apply(changes);
                    }
                    Err(e) => tracing::debug!(error = %e, "ignoring a malformed node event"),
                }
            }
            Ok(Subject::NodeEvent { .. }) | Ok(Subject::ClusterEvent { .. }) => {}
            parsed => {
                let Some(reply) = msg.reply.clone() else {
                    return;
                };
                let enc = message_encoding(&msg);
                let handled = match parsed {
                    Ok(Subject::Cluster(verb)) => self.query(verb, &msg, enc),
                    Ok(other) => Err(ErrorBody {
                        code: ErrorCode::BadRequest,
                        message: format!("{other:?} is not a cluster request"),
                    }),
                    Err(e) => Err(ErrorBody {
                        code: ErrorCode::BadRequest,
                        message: format!(
                            "{e}; the coordinator answers: {}",
                            ClusterVerb::ALL.map(ClusterVerb::as_str).join(", ")
                        ),
                    }),
                };
                let (headers, payload) = reply_message(handled, enc);
                let client = self.client.clone();
                actix::spawn(async move {
                    let _ = client
                        .publish_with_headers(reply, headers, payload.into())
                        .await;
                });
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
