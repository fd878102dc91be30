//! The Coordinator actor: owns a [`NodeRegistry`] and the [`RunJournal`]s, feeds them
//! heartbeats, lifecycle events and clock ticks, performs what they ask (announce, save, start
//! and stop tasks on nodes), and answers `cluster.*` requests through [`ClusterApi`].

use crate::coordinator::api::{self, ClusterApi};
use crate::coordinator::mandate::{Depose, LeaseGuard, Mandate, Superseded};
use crate::coordinator::node_client::NodeClient;
use crate::coordinator::store::{self, Restored, SaveError, Store};
use crate::cores::pending::PendingPlacements;
use crate::cores::placement;
use crate::cores::registry::{Change, NodeRegistry, RegistryConfig, SpareHeartbeat};
use crate::cores::run::{self, RunEffect, RunJournal, RunQueue};
use crate::edges::clock::now_ms;
use crate::edges::nats::{message_encoding, publish_msgpack};
use crate::edges::service::{self, Answer};
use actix::prelude::*;
use async_nats::jetstream;
use async_nats::Message as NatsMessage;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{
    ClusterEvent, ClusterEventKind, ClusterWorkloadList, ErrorBody, FitQuery, FitResult,
    Leadership, NodeEvent, NodeEventKind, NodeGet, NodeId, NodeList, NodeLiveness, NodeRecord,
    NodesQuery, ResultsEvent, RunCompare, RunComparison, RunId, RunList, RunListQuery, RunRecord,
    RunRef, RunRetried, RunRetry, RunSpec, RunState, RunStats, RunSubmitted, Subject, Subjects,
    WorkloadEvent, WorkloadSpec, WorkloadsQuery,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub struct Coordinator {
    client: async_nats::Client,
    subjects: Subjects,
    nodes: NodeClient,
    registry: NodeRegistry,
    /// The next heartbeat is decoded into the one the registry last replaced.
    spare: SpareHeartbeat,
    limits: DecodeLimits,
    tick: Duration,
    /// Once the buckets are open.
    store: Option<Store>,
    runs: BTreeMap<RunId, RunJournal>,
    /// Runs waiting for room, in the order they may start.
    queue: RunQueue,
    /// What was started on each node since its last heartbeat.
    pending: PendingPlacements,
    /// Runs whose last save failed: saved again on the next tick.
    unsaved: BTreeSet<RunId>,
    round_robin: usize,
    malformed_heartbeats: u64,
    /// The leadership this coordinator acts under.
    leadership: Leadership,
    /// Told when a write is refused because another coordinator wrote since.
    superseded: Recipient<Superseded>,
    guard: LeaseGuard,
    replicas: usize,
    /// Since when no heartbeat has reached this coordinator: its start, or the moment a
    /// standby registry handed over. Heartbeats flow again once the buckets are restored.
    deaf_since_ms: u64,
    /// Dropped with the actor: the lifecycle-event consumer stops with it.
    _events: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Coordinator {
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        config: RegistryConfig,
        limits: DecodeLimits,
        tick: Duration,
        mut mandate: Mandate,
    ) -> Coordinator {
        Coordinator {
            nodes: NodeClient::new(client.clone(), subjects.clone()),
            client,
            subjects,
            registry: mandate
                .warm
                .take()
                .unwrap_or_else(|| NodeRegistry::new(config)),
            spare: SpareHeartbeat::default(),
            limits,
            tick,
            store: None,
            runs: BTreeMap::new(),
            queue: RunQueue::default(),
            pending: PendingPlacements::default(),
            unsaved: BTreeSet::new(),
            round_robin: 0,
            malformed_heartbeats: 0,
            leadership: mandate.leadership,
            superseded: mandate.superseded,
            guard: mandate.guard,
            replicas: mandate.replicas,
            deaf_since_ms: now_ms(),
            _events: None,
        }
    }

    /// Announces and saves liveness changes; a lost node's run tasks are lost.
    fn apply(&mut self, changes: Vec<Change>, ctx: &mut Context<Self>) {
        for c in changes {
            let kind = ClusterEventKind::Node(c.to);
            tracing::info!(node = %c.node_id, to = c.to.as_str(), restarted = c.restarted, "node liveness");
            let event = ClusterEvent {
                node_id: Some(c.node_id.clone()),
                message: c
                    .restarted
                    .then(|| "the node's daemon restarted".to_string()),
                ..ClusterEvent::new(kind, now_ms())
            };
            publish_msgpack(
                &self.client,
                self.subjects.cluster_event(kind),
                &event,
                "a cluster event",
            );
            if let (Some(store), Some(record)) = (&self.store, self.registry.get(&c.node_id)) {
                self.save_node(store, record);
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
            self.on_run(&id, ctx, &mut f);
        }
    }

    /// Feeds one run's journal and performs what it asks.
    fn on_run(
        &mut self,
        run_id: &RunId,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut RunJournal) -> Vec<RunEffect>,
    ) -> Saved {
        let fx = self.runs.get_mut(run_id).map(f).unwrap_or_default();
        self.apply_run(run_id, fx, ctx)
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
        match self.spare.decode(&msg.payload, &self.limits) {
            Ok(hb) if hb.node_id != *node => {
                let why = format!("it names node {}", hb.node_id);
                self.spare.keep(Some(hb));
                self.malformed(msg.subject.as_str(), why)
            }
            Ok(hb) => {
                self.pending.on_heartbeat(&hb);
                let (changes, previous) = self.registry.ingest(hb, now_ms());
                self.spare.keep(previous);
                self.apply(changes, ctx);
                // Queued runs are tried on the tick, not here: a try places over the whole
                // fleet, and per heartbeat that would cost fleet size squared each interval.
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
        if ev.state.is_terminal() {
            // Over before a heartbeat listed it: it holds nothing on its node.
            self.pending.forget(node, &ev.workload_id);
        }
        let Some(run_id) = ev.run_id.clone() else {
            return Saved::nothing();
        };
        self.on_run(&run_id, ctx, |j| j.on_workload_event(node, &ev, now_ms()))
    }

    /// A node uploaded a run task's output: recorded in the task (acked once saved).
    fn on_results_event(
        &mut self,
        payload: &[u8],
        node: &NodeId,
        ctx: &mut Context<Self>,
    ) -> Saved {
        let ev = match codec::decode::<ResultsEvent>(payload, Encoding::MsgPack, &self.limits) {
            Ok(ev) if ev.node_id == *node => Ok(ev),
            Ok(ev) => Err(format!("it names node {}", ev.node_id)),
            Err(e) => Err(e.to_string()),
        };
        match ev {
            Ok(ev) => self.on_run(&ev.run_id, ctx, |j| {
                j.on_results(node, &ev.workload_id, ev.results, now_ms())
            }),
            Err(why) => {
                tracing::warn!(%node, "ignoring a results event: {why}");
                Saved::nothing()
            }
        }
    }

    fn on_node_event(
        &mut self,
        payload: &[u8],
        node: &NodeId,
        kind: NodeEventKind,
        ctx: &mut Context<Self>,
    ) {
        if kind != NodeEventKind::Stopping {
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

    /// Performs what a journal asked for; answers once the journal is saved, if it had to be.
    fn apply_run(
        &mut self,
        run_id: &RunId,
        effects: Vec<RunEffect>,
        ctx: &mut Context<Self>,
    ) -> Saved {
        run::hold_starts(&mut self.pending, &self.registry, &effects, now_ms());
        let mut save = false;
        for effect in effects {
            match effect {
                RunEffect::Start { node, spec } => self.start_task(run_id, node, spec, ctx),
                RunEffect::Reconcile { node, spec } => self.reconcile_task(run_id, node, spec, ctx),
                RunEffect::StopOnNode { node } => {
                    let (nodes, run) = (self.nodes.clone(), run_id.clone());
                    actix::spawn(async move {
                        if let Err(e) = nodes.stop_run(&node, &run).await {
                            tracing::warn!(%node, error = %e, "stop request not answered");
                        }
                    });
                }
                RunEffect::ListOnNode { node } => {
                    let (nodes, run) = (self.nodes.clone(), run_id.clone());
                    let list = async move { nodes.list_run(&node, &run).await.map(|l| (node, l)) };
                    let run = run_id.clone();
                    ctx.spawn(list.into_actor(self).map(move |res, act, ctx| match res {
                        Ok((node, list)) => {
                            act.on_run(&run, ctx, |j| {
                                j.on_node_workloads(&node, &list.workloads, now_ms())
                            });
                        }
                        // Unanswered: its events, or the stop timeout, will tell.
                        Err(e) => tracing::warn!(error = %e, "workload list not answered"),
                    }));
                }
                RunEffect::Announce(state) => self.announce_run(run_id, state),
                RunEffect::Persist => save = true,
            }
        }
        if save {
            self.save_run(run_id, ctx)
        } else {
            Saved::nothing()
        }
    }

    /// Announced once this coordinator answers: a client that hears it can ask at once.
    fn announce_leadership(&self) {
        let event = ClusterEvent {
            leader: Some(self.leadership.clone()),
            ..ClusterEvent::new(ClusterEventKind::Leader, now_ms())
        };
        publish_msgpack(
            &self.client,
            self.subjects.cluster_event(ClusterEventKind::Leader),
            &event,
            "a leader event",
        );
    }

    fn announce_run(&self, run_id: &RunId, state: RunState) {
        let Some(j) = self.runs.get(run_id) else {
            return;
        };
        let kind = ClusterEventKind::Run(state);
        tracing::info!(run = %run_id, state = %kind, "run state");
        let unconfirmed = &j.record.unconfirmed_nodes;
        let event = ClusterEvent {
            run_id: Some(run_id.clone()),
            nodes: unconfirmed.clone(),
            message: (state == RunState::StopFailed).then(|| {
                let names: Vec<&str> = unconfirmed.iter().map(|n| n.as_str()).collect();
                format!("no stop confirmation from {}", names.join(", "))
            }),
            ..ClusterEvent::new(kind, now_ms())
        };
        publish_msgpack(
            &self.client,
            self.subjects.cluster_event(kind),
            &event,
            "a run event",
        );
    }

    /// Saves a run's journal; a failed save is tried again on the next tick.
    fn save_run(&mut self, run_id: &RunId, ctx: &mut Context<Self>) -> Saved {
        let (Some(store), Some(j)) = (&self.store, self.runs.get(run_id)) else {
            return Saved::nothing();
        };
        let save = store.save_run(&j.record);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let id = run_id.clone();
        ctx.spawn(save.into_actor(self).map(move |res, act, _| {
            match &res {
                Err(SaveError::Superseded(why)) => act.superseded.do_send(Superseded(why.clone())),
                Err(SaveError::Failed(e)) => {
                    tracing::warn!(run = %id, error = %e, "cannot save a run journal");
                    act.unsaved.insert(id);
                }
                Ok(()) => {}
            }
            let _ = tx.send(res.is_ok());
        }));
        Saved(Some(rx))
    }

    /// Saves a node's record; a failed save waits for the node's next change.
    fn save_node(&self, store: &Store, record: &NodeRecord) {
        let save = store.save_node(record);
        let superseded = self.superseded.clone();
        actix::spawn(async move {
            match save.await {
                Err(SaveError::Superseded(why)) => superseded.do_send(Superseded(why)),
                Err(SaveError::Failed(e)) => {
                    tracing::warn!(error = %e, "cannot save a node record")
                }
                Ok(()) => {}
            }
        });
    }

    fn run(&self, id: &RunId) -> Result<&RunJournal, ErrorBody> {
        self.runs
            .get(id)
            .ok_or_else(|| ErrorBody::not_found(format!("no run {id}")))
    }
}

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
        let replicas = self.replicas;
        // Restore before anything is applied; subscriptions follow.
        ctx.wait(
            async move {
                let restored = Store::open(client.clone(), limits, replicas).await;
                // Lifecycle events come through the durable consumer, once restored. Requests
                // are no queue group's: only the leader subscribes, and a frozen former leader
                // must not be handed any of them.
                let [requests, requests2] = subjects.cluster_requests();
                let subs = futures::future::try_join3(
                    client.subscribe(subjects.heartbeats_all()),
                    client.subscribe(requests),
                    client.subscribe(requests2),
                )
                .await
                .map(|(a, b, c)| vec![a, b, c]);
                (restored, subs)
            }
            .into_actor(self)
            .map(|(restored, subs), act, ctx| {
                let Ok(subs) = subs else {
                    tracing::error!("coordinator cannot subscribe");
                    ctx.stop();
                    return;
                };
                ctx.add_stream(futures::stream::select_all(subs));
                act.restored(restored, ctx);
                act.announce_leadership();
            }),
        );
        ctx.run_interval(self.tick, |act, ctx| {
            if !act.guard.holds() {
                return;
            }
            let changes = act.registry.tick(now_ms());
            act.apply(changes, ctx);
            act.each_run(ctx, |j| j.tick(now_ms()));
            act.pending.tick(now_ms());
            act.admit_queued(ctx);
            for id in std::mem::take(&mut act.unsaved) {
                let _ = act.save_run(&id, ctx);
            }
        });
    }
}

/// Heartbeats and cluster requests.
impl StreamHandler<NatsMessage> for Coordinator {
    fn handle(&mut self, msg: NatsMessage, ctx: &mut Self::Context) {
        if !self.guard.holds() {
            return;
        }
        let parsed = self.subjects.parse(msg.subject.as_str());
        if let Ok(Subject::Heartbeat { node }) = &parsed {
            return self.on_heartbeat(&msg, node, ctx);
        }
        let Some(reply) = msg.reply.clone() else {
            return;
        };
        let enc = message_encoding(&msg);
        let limits = self.limits;
        let routed = match parsed {
            Ok(Subject::Cluster(verb)) => {
                let mut serving = Serving { act: self, ctx };
                api::dispatch(&mut serving, verb, &msg.payload, enc, &limits)
            }
            other => api::not_a_verb(other),
        };
        service::respond(&self.client, reply, routed, enc, |_| {});
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
        if !self.guard.holds() {
            // Left unacknowledged: the next leader gets it.
            return;
        }
        let saved = match self.subjects.parse(msg.subject.as_str()) {
            Ok(Subject::WorkloadEvent { node, .. }) => {
                self.on_workload_event(&msg.payload, &node, ctx)
            }
            Ok(Subject::Results { node }) => self.on_results_event(&msg.payload, &node, ctx),
            Ok(Subject::NodeEvent { node, kind }) => {
                self.on_node_event(&msg.payload, &node, kind, ctx);
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

impl Handler<Depose> for Coordinator {
    type Result = ();
    fn handle(&mut self, _: Depose, ctx: &mut Self::Context) {
        tracing::info!(
            term = self.leadership.term,
            "coordinator stopping: no longer the leader"
        );
        ctx.stop();
    }
}

mod admission;
mod serving;
mod takeover;
mod tasks;
use serving::Serving;
