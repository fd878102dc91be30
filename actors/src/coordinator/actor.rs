//! The Coordinator actor: owns a [`NodeRegistry`] and the [`RunJournal`]s, feeds them
//! heartbeats, node and workload events and clock ticks, performs what they ask (announce,
//! persist, start and stop tasks on nodes), and answers `cluster.*` requests.

use crate::coordinator::store;
use crate::cores::placement;
use crate::cores::registry::{Change, NodeRegistry, RegistryConfig};
use crate::cores::run::{self, RunEffect, RunJournal};
use crate::edges::clock::now_ms;
use crate::edges::nats::{
    message_encoding, open_bucket, publish_msgpack, reply_message, request_msgpack, Handled,
};
use actix::prelude::*;
use async_nats::jetstream::{self, kv};
use async_nats::Message as NatsMessage;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{
    Accepted, Ack, ClusterEvent, ClusterVerb, ClusterWorkloadList, ErrorBody, ErrorCode, FitQuery,
    Heartbeat, NodeEvent, NodeEventKind, NodeGet, NodeId, NodeList, NodeLiveness, NodeRecord,
    NodeVerb, NodesQuery, Reply, RunId, RunList, RunListQuery, RunRecord, RunRef, RunSpec,
    RunState, RunSubmitted, RunSummary, StopRequest, Subject, Subjects, WorkloadEvent,
    WorkloadFilter, WorkloadGet, WorkloadId, WorkloadList, WorkloadStatus, WorkloadsQuery,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// JetStream KV bucket with one NodeRecord per node: what heartbeats cannot rebuild.
pub const NODES_BUCKET: &str = "herd-nodes";
/// JetStream KV bucket with one RunRecord (a run's journal) per run.
pub const RUNS_BUCKET: &str = "herd-runs";
/// Queue group: with several coordinators, each query is answered once.
pub const QUEUE_GROUP: &str = "herd-coordinator";

pub struct Coordinator {
    client: async_nats::Client,
    subjects: Subjects,
    registry: NodeRegistry,
    limits: DecodeLimits,
    tick: Duration,
    nodes_kv: Option<kv::Store>,
    runs_kv: Option<kv::Store>,
    runs: BTreeMap<RunId, RunJournal>,
    /// Runs whose last save failed: saved again on the next tick.
    unsaved: BTreeSet<RunId>,
    round_robin: usize,
    malformed_heartbeats: u64,
}

fn ok<T: Serialize>(data: &T, enc: Encoding) -> Handled {
    codec::encode(&Reply::ok(data), enc).map_err(|e| ErrorBody {
        code: ErrorCode::Internal,
        message: e.to_string(),
    })
}

fn bad(message: impl std::fmt::Display) -> ErrorBody {
    ErrorBody {
        code: ErrorCode::BadRequest,
        message: message.to_string(),
    }
}

fn no_run(id: &RunId) -> ErrorBody {
    ErrorBody {
        code: ErrorCode::NotFound,
        message: format!("no run {id}"),
    }
}

/// `run.<state>`, e.g. `run.stop_failed`.
fn run_event_kind(state: RunState) -> String {
    let name = serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    format!("run.{name}")
}

/// `run-` and 10 random hex digits.
fn new_run_id() -> RunId {
    let mut bytes = [0u8; 5];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    RunId::new(format!("run-{hex}")).expect("valid id")
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
            nodes_kv: None,
            runs_kv: None,
            runs: BTreeMap::new(),
            unsaved: BTreeSet::new(),
            round_robin: 0,
            malformed_heartbeats: 0,
        }
    }

    /// Announces and persists liveness changes; a lost node's run tasks are lost.
    fn apply(&mut self, changes: Vec<Change>, ctx: &mut Context<Self>) {
        for c in changes {
            let kind = format!("node.{}", c.to.as_str());
            tracing::info!(node = %c.node_id, to = c.to.as_str(), restarted = c.restarted, "node liveness");
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
            if let (Some(kv), Some(record)) = (self.nodes_kv.clone(), self.registry.get(&c.node_id))
            {
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
            if c.to == NodeLiveness::Lost {
                self.each_run(ctx, |j| j.on_node_lost(&c.node_id, now_ms()));
            }
        }
    }

    fn each_run(
        &mut self,
        ctx: &mut Context<Self>,
        mut f: impl FnMut(&mut RunJournal) -> Vec<RunEffect>,
    ) {
        let ids: Vec<RunId> = self.runs.keys().cloned().collect();
        for id in ids {
            let fx = self.runs.get_mut(&id).map(&mut f).unwrap_or_default();
            self.apply_run(&id, fx, ctx);
        }
    }

    fn malformed(&mut self, subject: &str, why: String) {
        self.malformed_heartbeats += 1;
        let n = self.malformed_heartbeats;
        // The first of each power of two, so a noisy sender cannot flood the log.
        if n.is_power_of_two() || n.is_multiple_of(1000) {
            tracing::warn!(%subject, count = n, "ignoring a malformed heartbeat: {why}");
        }
    }

    fn on_heartbeat(&mut self, msg: &NatsMessage, node: &NodeId, ctx: &mut Context<Self>) {
        match codec::decode::<Heartbeat>(&msg.payload, Encoding::MsgPack, &self.limits) {
            Ok(hb) if hb.node_id != *node => self.malformed(
                msg.subject.as_str(),
                format!("it names node {}", hb.node_id),
            ),
            Ok(hb) => {
                let changes = self.registry.on_heartbeat(hb, now_ms());
                self.apply(changes, ctx);
            }
            Err(e) => self.malformed(msg.subject.as_str(), e.to_string()),
        }
    }

    fn on_workload_event(
        &mut self,
        payload: &[u8],
        node: &NodeId,
        ctx: &mut Context<Self>,
    ) -> Saved {
        let Ok(ev) = codec::decode::<WorkloadEvent>(payload, Encoding::MsgPack, &self.limits)
        else {
            return Saved::nothing();
        };
        let Some(run_id) = ev.run_id.clone() else {
            return Saved::nothing();
        };
        let fx = self
            .runs
            .get_mut(&run_id)
            .map(|j| j.on_workload_event(node, &ev, now_ms()))
            .unwrap_or_default();
        self.apply_run(&run_id, fx, ctx)
    }

    fn on_node_event(
        &mut self,
        payload: &[u8],
        node: &NodeId,
        kind: &str,
        ctx: &mut Context<Self>,
    ) {
        if kind != NodeEventKind::Stopping.as_str() {
            return;
        }
        match codec::decode::<NodeEvent>(payload, Encoding::MsgPack, &self.limits) {
            Ok(ev) => {
                let changes = self.registry.on_stopping(node, ev.started_at_ms);
                self.apply(changes, ctx);
            }
            Err(e) => tracing::debug!(error = %e, "ignoring a malformed node event"),
        }
    }

    fn query(
        &mut self,
        verb: ClusterVerb,
        msg: &NatsMessage,
        enc: Encoding,
        ctx: &mut Context<Self>,
    ) -> Handled {
        let payload = &msg.payload;
        match verb {
            ClusterVerb::Nodes => {
                let q: NodesQuery =
                    codec::decode_request(payload, enc, &self.limits).map_err(bad)?;
                ok(
                    &NodeList {
                        nodes: self.registry.nodes(&q),
                    },
                    enc,
                )
            }
            ClusterVerb::NodeGet => {
                let q: NodeGet = codec::decode(payload, enc, &self.limits).map_err(bad)?;
                let record = self.registry.get(&q.node_id).ok_or_else(|| ErrorBody {
                    code: ErrorCode::NotFound,
                    message: format!("node {} is not known to the coordinator", q.node_id),
                })?;
                ok(record, enc)
            }
            ClusterVerb::Workloads => {
                let q: WorkloadsQuery =
                    codec::decode_request(payload, enc, &self.limits).map_err(bad)?;
                ok(
                    &ClusterWorkloadList {
                        workloads: self.registry.workloads(&q),
                    },
                    enc,
                )
            }
            ClusterVerb::Query => {
                let q: FitQuery = codec::decode_request(payload, enc, &self.limits).map_err(bad)?;
                if q.cpu.is_some_and(|c| !c.is_finite() || c <= 0.0) {
                    return Err(bad("cpu: must be > 0"));
                }
                self.round_robin = self.round_robin.wrapping_add(1);
                ok(
                    &placement::place(self.registry.records(), &q, self.round_robin),
                    enc,
                )
            }
            ClusterVerb::RunSubmit => {
                let spec: RunSpec = codec::decode(payload, enc, &self.limits).map_err(bad)?;
                let submitted = self.submit(spec, ctx)?;
                ok(&submitted, enc)
            }
            ClusterVerb::RunStop => {
                let r: RunRef = codec::decode(payload, enc, &self.limits).map_err(bad)?;
                let fx = self
                    .runs
                    .get_mut(&r.run_id)
                    .ok_or_else(|| no_run(&r.run_id))?
                    .on_stop(now_ms());
                self.apply_run(&r.run_id, fx, ctx);
                ok(&self.runs[&r.run_id].record, enc)
            }
            ClusterVerb::RunGet => {
                let r: RunRef = codec::decode(payload, enc, &self.limits).map_err(bad)?;
                ok(
                    &self
                        .runs
                        .get(&r.run_id)
                        .ok_or_else(|| no_run(&r.run_id))?
                        .record,
                    enc,
                )
            }
            ClusterVerb::RunList => {
                let q: RunListQuery =
                    codec::decode_request(payload, enc, &self.limits).map_err(bad)?;
                let mut runs: Vec<RunSummary> = self
                    .runs
                    .values()
                    .filter(|j| q.state.is_none_or(|s| j.state() == s))
                    .map(|j| RunSummary {
                        run_id: j.run_id().clone(),
                        state: j.state(),
                        created_at_ms: j.record.created_at_ms,
                        updated_at_ms: j.record.updated_at_ms,
                        tasks: j.counts(),
                    })
                    .collect();
                runs.sort_by(|a, b| {
                    b.created_at_ms
                        .cmp(&a.created_at_ms)
                        .then_with(|| a.run_id.cmp(&b.run_id))
                });
                runs.truncate(q.limit.unwrap_or(100) as usize);
                ok(&RunList { runs }, enc)
            }
        }
    }

    /// Validates a RunSpec, places it, and starts its journal. Nothing starts on a bad spec.
    fn submit(
        &mut self,
        mut spec: RunSpec,
        ctx: &mut Context<Self>,
    ) -> Result<RunSubmitted, ErrorBody> {
        if let Some(id) = &spec.run_id {
            if let Some(j) = self.runs.get(id) {
                return if j.record.spec == spec {
                    Ok(RunSubmitted {
                        run_id: id.clone(),
                        existing: true,
                    })
                } else {
                    Err(ErrorBody {
                        code: ErrorCode::Conflict,
                        message: format!("run {id} exists with a different spec"),
                    })
                };
            }
        }
        self.round_robin = self.round_robin.wrapping_add(1);
        let nodes = run::plan(&spec, &self.registry, self.round_robin).map_err(bad)?;
        let run_id = spec.run_id.clone().unwrap_or_else(new_run_id);
        spec.run_id = Some(run_id.clone());
        let (journal, fx) = RunJournal::new(run_id.clone(), spec, &nodes, now_ms());
        tracing::info!(run = %run_id, nodes = nodes.len(), tasks = journal.record.tasks.len(), "run submitted");
        self.runs.insert(run_id.clone(), journal);
        self.apply_run(&run_id, fx, ctx);
        Ok(RunSubmitted {
            run_id,
            existing: false,
        })
    }

    /// Performs what a journal asked for; answers once the journal is saved, if it had to be.
    fn apply_run(
        &mut self,
        run_id: &RunId,
        effects: Vec<RunEffect>,
        ctx: &mut Context<Self>,
    ) -> Saved {
        let mut persist = false;
        for effect in effects {
            let Some(j) = self.runs.get(run_id) else {
                return Saved::nothing();
            };
            match effect {
                RunEffect::Start { node, spec } => {
                    let client = self.client.clone();
                    let subject = self.subjects.node_command(&node, NodeVerb::WorkloadStart);
                    let addr = ctx.address();
                    let run_id = run_id.clone();
                    actix::spawn(async move {
                        let Some(workload) = spec.workload_id.clone() else {
                            return;
                        };
                        if let Err(error) =
                            request_msgpack::<_, Accepted>(&client, subject, &spec).await
                        {
                            addr.do_send(StartFailed {
                                run_id,
                                node,
                                workload,
                                error,
                            });
                        }
                    });
                }
                RunEffect::Reconcile { node, spec } => {
                    let client = self.client.clone();
                    let get = self.subjects.node_command(&node, NodeVerb::WorkloadGet);
                    let start = self.subjects.node_command(&node, NodeVerb::WorkloadStart);
                    let addr = ctx.address();
                    let run_id = run_id.clone();
                    actix::spawn(async move {
                        let Some(workload) = spec.workload_id.clone() else {
                            return;
                        };
                        let req = WorkloadGet {
                            workload_id: workload.clone(),
                        };
                        match request_msgpack::<_, WorkloadStatus>(&client, get, &req).await {
                            // Settled while the coordinator was away: replay its outcome.
                            Ok(status) if status.state.is_terminal() => addr.do_send(Reconciled {
                                run_id,
                                node,
                                status,
                            }),
                            // Still running: its events will come.
                            Ok(_) => {}
                            // The node never got it (or forgot it): start it, idempotently.
                            Err(_) => {
                                if let Err(error) =
                                    request_msgpack::<_, Accepted>(&client, start, &spec).await
                                {
                                    addr.do_send(StartFailed {
                                        run_id,
                                        node,
                                        workload,
                                        error,
                                    });
                                }
                            }
                        }
                    });
                }
                RunEffect::StopOnNode { node } => {
                    let client = self.client.clone();
                    let subject = self.subjects.node_command(&node, NodeVerb::WorkloadStop);
                    let req = StopRequest {
                        run_id: Some(run_id.clone()),
                        ..Default::default()
                    };
                    actix::spawn(async move {
                        if let Err(e) = request_msgpack::<_, Ack>(&client, subject, &req).await {
                            tracing::warn!(%node, error = %e, "stop request not answered");
                        }
                    });
                }
                RunEffect::ListOnNode { node } => {
                    let client = self.client.clone();
                    let subject = self.subjects.node_command(&node, NodeVerb::WorkloadList);
                    let req = WorkloadFilter {
                        run_id: Some(run_id.clone()),
                        ..Default::default()
                    };
                    let addr = ctx.address();
                    let run_id = run_id.clone();
                    actix::spawn(async move {
                        match request_msgpack::<_, WorkloadList>(&client, subject, &req).await {
                            Ok(list) => addr.do_send(Listed {
                                run_id,
                                node,
                                workloads: list.workloads,
                            }),
                            // Unanswered: its events, or the stop timeout, will tell.
                            Err(e) => {
                                tracing::warn!(%node, error = %e, "workload list not answered")
                            }
                        }
                    });
                }
                RunEffect::Announce(state) => {
                    let kind = run_event_kind(state);
                    let unconfirmed: Vec<String> = j
                        .record
                        .unconfirmed_nodes
                        .iter()
                        .map(|n| n.to_string())
                        .collect();
                    tracing::info!(run = %run_id, state = %kind, "run state");
                    let event = ClusterEvent {
                        kind: kind.clone(),
                        ts_ms: now_ms(),
                        node_id: None,
                        run_id: Some(run_id.clone()),
                        nodes: j.record.unconfirmed_nodes.clone(),
                        message: (state == RunState::StopFailed).then(|| {
                            format!("no stop confirmation from {}", unconfirmed.join(", "))
                        }),
                    };
                    publish_msgpack(
                        &self.client,
                        self.subjects.cluster_event(&kind),
                        &event,
                        "a run event",
                    );
                }
                RunEffect::Persist => persist = true,
            }
        }
        if persist {
            self.save_run(run_id, ctx)
        } else {
            Saved::nothing()
        }
    }

    /// Saves a run's journal; a failed save is tried again on the next tick.
    fn save_run(&mut self, run_id: &RunId, ctx: &mut Context<Self>) -> Saved {
        let (Some(kv), Some(j)) = (self.runs_kv.clone(), self.runs.get(run_id)) else {
            return Saved::nothing();
        };
        let bytes = match codec::encode(&j.record, Encoding::MsgPack) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a run journal");
                return Saved::nothing();
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let key = run_id.to_string();
        let id = run_id.clone();
        ctx.spawn(
            async move { kv.put(key, bytes.into()).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    let ok = res.is_ok();
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "cannot save a run journal");
                        act.unsaved.insert(id);
                    }
                    let _ = tx.send(ok);
                }),
        );
        Saved(Some(rx))
    }
}

type Restored = ((kv::Store, Vec<NodeRecord>), (kv::Store, Vec<RunRecord>));

/// Whether a journal was saved, known once its write is answered.
struct Saved(Option<tokio::sync::oneshot::Receiver<bool>>);

impl Saved {
    /// Nothing had to be saved.
    fn nothing() -> Saved {
        Saved(None)
    }

    /// True once saved (or when nothing had to be); false when the write failed.
    async fn wait(self) -> bool {
        match self.0 {
            None => true,
            Some(rx) => rx.await.unwrap_or(false),
        }
    }
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
                let restored: Restored = loop {
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
                        (Ok(n), Ok(r)) => break (n, r),
                        (Err(e), _) | (_, Err(e)) => {
                            tracing::warn!(error = %e, "coordinator buckets not ready; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                    }
                };
                let [requests, requests2] = subjects.cluster_requests();
                // Lifecycle events come through the durable consumer (see below).
                let subs =
                    futures::future::join_all([client.subscribe(subjects.heartbeats_all())]).await;
                let queues = futures::future::join_all([
                    client.queue_subscribe(requests, QUEUE_GROUP.into()),
                    client.queue_subscribe(requests2, QUEUE_GROUP.into()),
                ])
                .await;
                (
                    restored,
                    subs.into_iter()
                        .chain(queues)
                        .collect::<Result<Vec<_>, _>>(),
                )
            }
            .into_actor(self)
            .map(|(restored, subs), act, ctx| {
                let ((nodes_kv, nodes), (runs_kv, runs)) = restored;
                tracing::info!(
                    nodes = nodes.len(),
                    runs = runs.len(),
                    "coordinator restored its records"
                );
                act.registry.restore(nodes, now_ms());
                act.nodes_kv = Some(nodes_kv);
                act.runs_kv = Some(runs_kv);
                let Ok(subs) = subs else {
                    tracing::error!("coordinator cannot subscribe");
                    ctx.stop();
                    return;
                };
                ctx.add_stream(futures::stream::select_all(subs));
                for record in runs {
                    let id = record.run_id.clone();
                    let (journal, fx) = RunJournal::resume(record, now_ms());
                    if matches!(journal.state(), RunState::Running | RunState::Stopping) {
                        tracing::info!(run = %id, "resuming run");
                    }
                    act.runs.insert(id.clone(), journal);
                    act.apply_run(&id, fx, ctx);
                }
                let addr = ctx.address();
                actix::spawn(store::follow_events(
                    act.client.clone(),
                    act.subjects.clone(),
                    move |m| {
                        addr.do_send(LifecycleEvent(m));
                        addr.connected()
                    },
                ));
            }),
        );
        ctx.run_interval(self.tick, |act, ctx| {
            let changes = act.registry.tick(now_ms());
            act.apply(changes, ctx);
            act.each_run(ctx, |j| j.tick(now_ms()));
            for id in std::mem::take(&mut act.unsaved) {
                let _ = act.save_run(&id, ctx);
            }
        });
    }
}

impl StreamHandler<NatsMessage> for Coordinator {
    fn handle(&mut self, msg: NatsMessage, ctx: &mut Self::Context) {
        match self.subjects.parse(msg.subject.as_str()) {
            Ok(Subject::Heartbeat { node }) => self.on_heartbeat(&msg, &node, ctx),
            Ok(Subject::ClusterEvent { .. }) => {}
            parsed => {
                let Some(reply) = msg.reply.clone() else {
                    return;
                };
                let enc = message_encoding(&msg);
                let handled = match parsed {
                    Ok(Subject::Cluster(verb)) => self.query(verb, &msg, enc, ctx),
                    Ok(other) => Err(bad(format!("{other:?} is not a cluster request"))),
                    Err(e) => Err(bad(format!(
                        "{e}; the coordinator answers: {}",
                        ClusterVerb::ALL.map(ClusterVerb::as_str).join(", ")
                    ))),
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

/// A lifecycle event from the durable consumer: acknowledged once the journal it changed is
/// saved, so that a coordinator that dies first gets it again.
#[derive(Message)]
#[rtype(result = "()")]
struct LifecycleEvent(jetstream::Message);

impl Handler<LifecycleEvent> for Coordinator {
    type Result = ();
    fn handle(&mut self, LifecycleEvent(msg): LifecycleEvent, ctx: &mut Self::Context) {
        let saved = match self.subjects.parse(msg.subject.as_str()) {
            Ok(Subject::WorkloadEvent { node, .. }) => {
                self.on_workload_event(&msg.payload, &node, ctx)
            }
            Ok(Subject::NodeEvent { node, kind }) => {
                self.on_node_event(&msg.payload, &node, &kind, ctx);
                Saved::nothing()
            }
            _ => Saved::nothing(),
        };
        actix::spawn(async move {
            if saved.wait().await {
                if let Err(e) = msg.ack().await {
                    tracing::debug!(error = %e, "cannot acknowledge a lifecycle event");
                }
            }
        });
    }
}

/// A task's workload as its node reported it after a coordinator restart.
#[derive(Message)]
#[rtype(result = "()")]
struct Reconciled {
    run_id: RunId,
    node: NodeId,
    status: WorkloadStatus,
}

impl Handler<Reconciled> for Coordinator {
    type Result = ();
    fn handle(&mut self, msg: Reconciled, ctx: &mut Self::Context) {
        let fx = self
            .runs
            .get_mut(&msg.run_id)
            .map(|j| j.on_task_status(&msg.node, &msg.status, now_ms()))
            .unwrap_or_default();
        self.apply_run(&msg.run_id, fx, ctx);
    }
}

/// A node's workloads of a stopping run, after a coordinator restart.
#[derive(Message)]
#[rtype(result = "()")]
struct Listed {
    run_id: RunId,
    node: NodeId,
    workloads: Vec<WorkloadStatus>,
}

impl Handler<Listed> for Coordinator {
    type Result = ();
    fn handle(&mut self, msg: Listed, ctx: &mut Self::Context) {
        let fx = self
            .runs
            .get_mut(&msg.run_id)
            .map(|j| j.on_node_workloads(&msg.node, &msg.workloads, now_ms()))
            .unwrap_or_default();
        self.apply_run(&msg.run_id, fx, ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct StartFailed {
    run_id: RunId,
    node: NodeId,
    workload: WorkloadId,
    error: String,
}

impl Handler<StartFailed> for Coordinator {
    type Result = ();
    fn handle(&mut self, msg: StartFailed, ctx: &mut Self::Context) {
        tracing::warn!(run = %msg.run_id, node = %msg.node, error = %msg.error, "a task did not start");
        let fx = self
            .runs
            .get_mut(&msg.run_id)
            .map(|j| j.on_start_failed(&msg.node, &msg.workload, msg.error, now_ms()))
            .unwrap_or_default();
        self.apply_run(&msg.run_id, fx, ctx);
    }
}
