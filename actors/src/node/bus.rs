//! Bus: this node's face on NATS. Subscribes to the node's command subjects and the fleet-wide
//! ping, decodes each request under the configured limits, routes it, and replies in the
//! request's encoding. Every request with a reply subject gets a reply, bad input included.

use crate::cores::node_state::NodeStatus;
use crate::cores::outbox::OutboxEntry;
use crate::edges::clock::now_ms;
use crate::edges::nats::message_encoding;
use crate::edges::service::{respond, Answer, Routed};
use crate::node::api::{dispatch, NodeApi};
use crate::node::events::{EventIds, Publish};
use crate::node::executor::{self, WorkloadExecutor};
use actix::prelude::*;
use async_nats::Message as NatsMessage;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{
    Accepted, Ack, Empty, ErrorBody, LameduckRequest, NodeEvent, NodeEventKind, NodeId, NodeInfo,
    NodeState, NodeVerb, Role, StopRequest, Subject, SubjectError, Subjects, WorkloadFilter,
    WorkloadGet, WorkloadList, WorkloadSpec, WorkloadStatus,
};
use std::collections::BTreeMap;
use std::time::Instant;

/// Who this node is, as ping and events report it.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub node_id: NodeId,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub roles: Vec<Role>,
    pub started_at_ms: u64,
    pub started: Instant,
}

impl NodeIdentity {
    pub fn new(
        node_id: NodeId,
        hostname: String,
        labels: BTreeMap<String, String>,
        roles: Vec<Role>,
    ) -> NodeIdentity {
        NodeIdentity {
            node_id,
            hostname,
            labels,
            roles,
            started_at_ms: now_ms(),
            started: Instant::now(),
        }
    }
}

pub struct Bus {
    client: async_nats::Client,
    subjects: Subjects,
    identity: NodeIdentity,
    limits: DecodeLimits,
    status: NodeStatus,
    events: Recipient<Publish>,
    ids: EventIds,
    executor: Option<Addr<WorkloadExecutor>>,
    cgroup: Option<String>,
    on_state_change: Option<Recipient<StateChanged>>,
}

impl Bus {
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        identity: NodeIdentity,
        limits: DecodeLimits,
        events: Recipient<Publish>,
        ids: EventIds,
    ) -> Bus {
        Bus {
            client,
            subjects,
            identity,
            limits,
            status: NodeStatus::default(),
            events,
            ids,
            executor: None,
            cgroup: None,
            on_state_change: None,
        }
    }

    /// Serve workload verbs through `executor`, on a node with this cgroup backend.
    pub fn with_executor(mut self, executor: Addr<WorkloadExecutor>, cgroup: &str) -> Bus {
        self.executor = Some(executor);
        self.cgroup = Some(cgroup.to_string());
        self
    }

    fn node_info(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.identity.node_id.clone(),
            version: herd_bus::HERD_VERSION.to_string(),
            api: herd_bus::API_VERSION.to_string(),
            hostname: self.identity.hostname.clone(),
            started_at_ms: self.identity.started_at_ms,
            uptime_s: self.identity.started.elapsed().as_secs_f64(),
            labels: self.identity.labels.clone().into(),
            roles: self.identity.roles.clone(),
            state: self.status.state(),
            cgroup: self.cgroup.clone(),
        }
    }

    /// Queues a node event for JetStream delivery. Ids are unique per daemon instance.
    fn emit(&mut self, kind: NodeEventKind, message: Option<String>) {
        let event = NodeEvent {
            event_id: self.ids.next("n"),
            node_id: self.identity.node_id.clone(),
            kind,
            ts_ms: now_ms(),
            version: herd_bus::HERD_VERSION.to_string(),
            started_at_ms: self.identity.started_at_ms,
            message,
        };
        match codec::encode(&event, Encoding::MsgPack) {
            Ok(payload) => self.events.do_send(Publish(OutboxEntry {
                subject: self.subjects.node_event(&self.identity.node_id, kind),
                msg_id: event.event_id,
                payload,
            })),
            Err(e) => tracing::error!(error = %e, "cannot encode a node event"),
        }
    }

    fn route(&mut self, msg: &NatsMessage, enc: Encoding, ctx: &mut Context<Self>) -> Routed {
        let verb = match self.subjects.parse(msg.subject.as_str()) {
            Ok(Subject::NodesPing) => NodeVerb::Ping,
            Ok(Subject::NodeCommand { node, verb }) if node == self.identity.node_id => verb,
            Ok(other) => {
                return Routed::Now(Err(ErrorBody::bad_request(format!(
                    "subject '{}' ({other:?}) is not served by node {}",
                    msg.subject, self.identity.node_id
                ))))
            }
            Err(e @ SubjectError::UnknownVerb { .. }) => {
                return Routed::Now(Err(ErrorBody::bad_request(format!(
                    "{e}; a node answers: {}",
                    NodeVerb::ALL.map(NodeVerb::as_str).join(", ")
                ))))
            }
            Err(e) => return Routed::Now(Err(ErrorBody::bad_request(e))),
        };
        let limits = self.limits;
        dispatch(
            &mut Serving { bus: self, ctx },
            verb,
            &msg.payload,
            enc,
            &limits,
        )
    }

    /// Hands a request to the executor; the answer follows when it answers.
    fn to_executor<M, T>(&self, verb: NodeVerb, msg: M) -> Answer<T>
    where
        M: Message<Result = Result<T, ErrorBody>> + Send + 'static,
        T: Send + 'static,
        WorkloadExecutor: Handler<M>,
    {
        let Some(executor) = self.executor.clone() else {
            return Answer::Now(Err(ErrorBody::unavailable(format!(
                "{} needs the workload executor, which this herdd does not run",
                verb.as_str()
            ))));
        };
        Answer::Later(Box::pin(async move {
            executor.send(msg).await.unwrap_or_else(|e| {
                Err(ErrorBody::internal(format!(
                    "workload executor unavailable: {e}"
                )))
            })
        }))
    }
}

/// The Bus answering one request: its verbs, each a few lines around a core.
struct Serving<'a> {
    bus: &'a mut Bus,
    ctx: &'a mut Context<Bus>,
}

impl NodeApi for Serving<'_> {
    fn ping(&mut self, _: Empty) -> Answer<NodeInfo> {
        Answer::Now(Ok(self.bus.node_info()))
    }

    fn lameduck(&mut self, req: LameduckRequest) -> Answer<Ack> {
        let bus = &mut *self.bus;
        let outcome = match bus.status.on_lameduck(&req, bus.executor.is_some()) {
            Ok(o) => o,
            Err(e) => return Answer::Now(Err(e)),
        };
        if let Some(kind) = outcome.changed {
            bus.emit(kind, None);
            tracing::info!(state = bus.status.state().as_str(), "node state changed");
            if let Some(r) = &bus.on_state_change {
                r.do_send(StateChanged);
            }
        }
        if let Some(delay) = outcome.drain_after {
            self.ctx.run_later(delay, |bus, _| {
                if let (true, Some(executor)) = (bus.status.drain_due(), &bus.executor) {
                    tracing::info!("lameduck: stopping every workload");
                    executor.do_send(executor::StopAll {
                        grace_cap: std::time::Duration::from_secs(3600),
                        refuse_new: false,
                    });
                }
            });
        }
        Answer::Now(Ok(Ack {
            message: Some(outcome.message),
        }))
    }

    fn workload_start(&mut self, spec: WorkloadSpec) -> Answer<Accepted> {
        herd_shim::stage::stage("api_start");
        match self.bus.status.admit_start() {
            Ok(()) => self
                .bus
                .to_executor(NodeVerb::WorkloadStart, executor::Start(spec)),
            Err(e) => Answer::Now(Err(e)),
        }
    }

    fn workload_stop(&mut self, req: StopRequest) -> Answer<Ack> {
        self.bus
            .to_executor(NodeVerb::WorkloadStop, executor::Stop(req))
    }

    fn workload_list(&mut self, filter: WorkloadFilter) -> Answer<WorkloadList> {
        self.bus
            .to_executor(NodeVerb::WorkloadList, executor::List(filter))
    }

    fn workload_get(&mut self, req: WorkloadGet) -> Answer<WorkloadStatus> {
        self.bus
            .to_executor(NodeVerb::WorkloadGet, executor::Get(req.workload_id))
    }
}

impl Actor for Bus {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let client = self.client.clone();
        let own = self.subjects.node_commands(&self.identity.node_id);
        let fleet = self.subjects.nodes_ping();
        // Subscriptions are registered before anything else is handled; async-nats replays them
        // on every reconnect.
        ctx.wait(
            async move {
                let own = client.subscribe(own).await?;
                let fleet = client.subscribe(fleet).await?;
                Ok::<_, async_nats::SubscribeError>(futures::stream::select(own, fleet))
            }
            .into_actor(self)
            .map(|res, act, ctx| match res {
                Ok(stream) => {
                    ctx.add_stream(stream);
                    tracing::info!(node = %act.identity.node_id, "serving node commands");
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot subscribe to node commands");
                    ctx.stop();
                }
            }),
        );
    }
}

impl StreamHandler<NatsMessage> for Bus {
    fn handle(&mut self, msg: NatsMessage, ctx: &mut Self::Context) {
        let Some(reply_to) = msg.reply.clone() else {
            tracing::debug!(subject = %msg.subject, "ignoring a request without a reply subject");
            return;
        };
        let enc = message_encoding(&msg);
        let routed = self.route(&msg, enc, ctx);
        let verb = match self.subjects.parse(msg.subject.as_str()) {
            Ok(Subject::NodeCommand { verb, .. }) => verb.as_str(),
            Ok(Subject::NodesPing) => "nodes.ping",
            _ => "unknown",
        };
        let subject = msg.subject;
        respond(&self.client, reply_to, routed, enc, move |handled| {
            let outcome = match handled {
                Ok(_) => "ok".to_string(),
                Err(e) => e.code.to_string(),
            };
            crate::edges::metrics::metrics().command(verb, &outcome);
            if let Err(e) = handled {
                tracing::debug!(%subject, code = %e.code, error = %e.message, "request refused");
            }
        });
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        tracing::info!("command subscriptions closed");
        ctx.stop();
    }
}

/// Change what the node reports about itself (e.g. `stopping` at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetNodeState(pub NodeState);

impl Handler<SetNodeState> for Bus {
    type Result = ();
    fn handle(&mut self, msg: SetNodeState, _: &mut Self::Context) {
        self.status.set(msg.0);
    }
}

/// Publish a node event (`started`, `stopping`, …) through the outbox.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EmitNodeEvent(pub NodeEventKind, pub Option<String>);

impl Handler<EmitNodeEvent> for Bus {
    type Result = ();
    fn handle(&mut self, msg: EmitNodeEvent, _: &mut Self::Context) {
        self.emit(msg.0, msg.1);
    }
}

/// The node's state, for heartbeats.
#[derive(Message)]
#[rtype(result = "NodeState")]
pub struct GetNodeState;

impl Handler<GetNodeState> for Bus {
    type Result = MessageResult<GetNodeState>;
    fn handle(&mut self, _: GetNodeState, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.status.state())
    }
}

/// The node's state changed (the heartbeat publishes at once).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StateChanged;

/// Who to tell when the node's state changes (the heartbeat, to beat at once).
#[derive(Message)]
#[rtype(result = "()")]
pub struct OnStateChange(pub Recipient<StateChanged>);

impl Handler<OnStateChange> for Bus {
    type Result = ();
    fn handle(&mut self, msg: OnStateChange, _: &mut Self::Context) {
        self.on_state_change = Some(msg.0);
    }
}
