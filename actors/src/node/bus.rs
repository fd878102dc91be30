//! Bus: this node's face on NATS. Subscribes to the node's command subjects and the fleet-wide
//! ping, decodes each request under the configured limits, routes it, and replies in the
//! request's encoding. Every request with a reply subject gets a reply, bad input included.

use crate::cores::outbox::OutboxEntry;
use crate::edges::clock::now_ms;
use crate::edges::nats::{message_encoding, reply_message, Handled};
use crate::node::events::{EventIds, Publish};
use crate::node::executor::{self, WorkloadExecutor};
use actix::prelude::*;
use async_nats::Message as NatsMessage;
use herd_bus::codec::{self, CodecError, DecodeLimits, Encoding};
use herd_bus::{
    Ack, Empty, ErrorBody, ErrorCode, LameduckRequest, NodeEvent, NodeEventKind, NodeId, NodeInfo,
    NodeState, NodeVerb, Reply, Role, StopRequest, Subject, SubjectError, Subjects, WorkloadFilter,
    WorkloadGet, WorkloadSpec,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
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

/// A request handled at once, or by another actor (the reply follows when it answers).
enum Routed {
    Now(Handled),
    Later(Pin<Box<dyn Future<Output = Handled>>>),
}

impl From<Handled> for Routed {
    fn from(h: Handled) -> Routed {
        Routed::Now(h)
    }
}

pub struct Bus {
    client: async_nats::Client,
    subjects: Subjects,
    identity: NodeIdentity,
    limits: DecodeLimits,
    state: NodeState,
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
            state: NodeState::Active,
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
            labels: self.identity.labels.clone(),
            roles: self.identity.roles.clone(),
            state: self.state,
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

    fn decode<T: serde::de::DeserializeOwned + Default>(
        &self,
        payload: &[u8],
        enc: Encoding,
    ) -> Result<T, ErrorBody> {
        codec::decode_request(payload, enc, &self.limits).map_err(bad_request)
    }

    fn route(&mut self, msg: &NatsMessage, enc: Encoding, ctx: &mut Context<Self>) -> Routed {
        match self.route_inner(msg, enc, ctx) {
            Ok(routed) => routed,
            Err(e) => Routed::Now(Err(e)),
        }
    }

    fn route_inner(
        &mut self,
        msg: &NatsMessage,
        enc: Encoding,
        ctx: &mut Context<Self>,
    ) -> Result<Routed, ErrorBody> {
        let subject = self
            .subjects
            .parse(msg.subject.as_str())
            .map_err(|e| match e {
                SubjectError::UnknownVerb { .. } => ErrorBody {
                    code: ErrorCode::BadRequest,
                    message: format!(
                        "{e}; a node answers: {}",
                        NodeVerb::ALL.map(NodeVerb::as_str).join(", ")
                    ),
                },
                other => bad_request(other),
            })?;
        match subject {
            Subject::NodesPing => {
                self.decode::<Empty>(&msg.payload, enc)?;
                Ok(encode_ok(&self.node_info(), enc).into())
            }
            Subject::NodeCommand { node, verb } if node == self.identity.node_id => {
                self.node_command(verb, &msg.payload, enc, ctx)
            }
            other => Err(bad_request(format!(
                "subject '{}' ({other:?}) is not served by node {}",
                msg.subject, self.identity.node_id
            ))),
        }
    }

    /// Hands a request to the executor; the reply is encoded when it answers.
    fn to_executor<M, T>(&self, verb: NodeVerb, msg: M, enc: Encoding) -> Result<Routed, ErrorBody>
    where
        M: Message<Result = Result<T, ErrorBody>> + Send + 'static,
        T: Serialize + Send + 'static,
        WorkloadExecutor: Handler<M>,
    {
        let executor = self.executor.clone().ok_or_else(|| no_executor(verb))?;
        Ok(Routed::Later(Box::pin(async move {
            match executor.send(msg).await {
                Ok(Ok(data)) => encode_ok(&data, enc),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(ErrorBody {
                    code: ErrorCode::Internal,
                    message: format!("workload executor unavailable: {e}"),
                }),
            }
        })))
    }

    fn node_command(
        &mut self,
        verb: NodeVerb,
        payload: &[u8],
        enc: Encoding,
        ctx: &mut Context<Self>,
    ) -> Result<Routed, ErrorBody> {
        match verb {
            NodeVerb::Ping => {
                self.decode::<Empty>(payload, enc)?;
                Ok(encode_ok(&self.node_info(), enc).into())
            }
            NodeVerb::Lameduck => {
                let req: LameduckRequest = self.decode(payload, enc)?;
                if let Some(d) = req
                    .delay_s
                    .filter(|d| !d.is_finite() || *d < 0.0 || *d > 86_400.0)
                {
                    return Err(bad_request(format!(
                        "delay_s must be between 0 and 86400, got {d}"
                    )));
                }
                if req.stop_workloads && !req.enabled {
                    return Err(bad_request("stop_workloads needs enabled: true"));
                }
                if req.stop_workloads && self.executor.is_none() {
                    return Err(no_executor(verb));
                }
                if self.state == NodeState::Stopping {
                    return Err(unavailable("the node is shutting down"));
                }
                let (state, kind) = if req.enabled {
                    (NodeState::Lameduck, NodeEventKind::Lameduck)
                } else {
                    (NodeState::Active, NodeEventKind::Active)
                };
                if self.state != state {
                    self.state = state;
                    self.emit(kind, None);
                    tracing::info!(state = state.as_str(), "node state changed");
                    if let Some(r) = &self.on_state_change {
                        r.do_send(StateChanged);
                    }
                }
                let mut message = format!("node is {}", state.as_str());
                if req.stop_workloads {
                    let delay = std::time::Duration::from_secs_f64(req.delay_s.unwrap_or(0.0));
                    message += &format!("; its workloads stop in {delay:?}");
                    ctx.run_later(delay, |act, _| {
                        // Only if the node is still draining: `enabled: false` cancels.
                        if let (NodeState::Lameduck, Some(executor)) = (act.state, &act.executor) {
                            tracing::info!("lameduck: stopping every workload");
                            executor.do_send(executor::StopAll {
                                grace_cap: std::time::Duration::from_secs(3600),
                                refuse_new: false,
                            });
                        }
                    });
                }
                Ok(encode_ok(
                    &Ack {
                        message: Some(message),
                    },
                    enc,
                )
                .into())
            }
            // Requests are decoded here, so malformed input is a bad_request whatever the node
            // can serve.
            NodeVerb::WorkloadStart => {
                let spec = self.decode::<WorkloadSpec>(payload, enc)?;
                match self.state {
                    NodeState::Active => {}
                    NodeState::Lameduck => {
                        return Err(unavailable(
                            "the node is in lameduck mode and accepts no new workloads",
                        ))
                    }
                    NodeState::Stopping => return Err(unavailable("the node is shutting down")),
                }
                self.to_executor(verb, executor::Start(spec), enc)
            }
            NodeVerb::WorkloadStop => {
                let req = self.decode::<StopRequest>(payload, enc)?;
                self.to_executor(verb, executor::Stop(req), enc)
            }
            NodeVerb::WorkloadList => {
                let filter = self.decode::<WorkloadFilter>(payload, enc)?;
                self.to_executor(verb, executor::List(filter), enc)
            }
            NodeVerb::WorkloadGet => {
                let get = codec::decode::<WorkloadGet>(payload, enc, &self.limits)
                    .map_err(bad_request)?;
                self.to_executor(verb, executor::Get(get.workload_id), enc)
            }
        }
    }
}

fn bad_request(e: impl std::fmt::Display) -> ErrorBody {
    ErrorBody {
        code: ErrorCode::BadRequest,
        message: e.to_string(),
    }
}

fn unavailable(message: &str) -> ErrorBody {
    ErrorBody {
        code: ErrorCode::Unavailable,
        message: message.to_string(),
    }
}

fn no_executor(verb: NodeVerb) -> ErrorBody {
    unavailable(&format!(
        "{} needs the workload executor, which this build of herdd does not have yet",
        verb.as_str()
    ))
}

fn encode_ok<T: Serialize>(data: &T, enc: Encoding) -> Handled {
    codec::encode(&Reply::ok(data), enc).map_err(|e: CodecError| ErrorBody {
        code: ErrorCode::Internal,
        message: e.to_string(),
    })
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
        let client = self.client.clone();
        let subject = msg.subject.clone();
        let verb = match self.subjects.parse(subject.as_str()) {
            Ok(Subject::NodeCommand { verb, .. }) => verb.as_str(),
            Ok(Subject::NodesPing) => "nodes.ping",
            _ => "unknown",
        };
        actix::spawn(async move {
            let handled = match routed {
                Routed::Now(h) => h,
                Routed::Later(f) => f.await,
            };
            let outcome = match &handled {
                Ok(_) => "ok".to_string(),
                Err(e) => e.code.to_string(),
            };
            crate::edges::metrics::metrics().command(verb, &outcome);
            if let Err(e) = &handled {
                tracing::debug!(%subject, code = %e.code, error = %e.message, "request refused");
            }
            let (headers, payload) = reply_message(handled, enc);
            if let Err(e) = client
                .publish_with_headers(reply_to, headers, payload.into())
                .await
            {
                tracing::warn!(error = %e, "cannot send a reply");
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
        self.state = msg.0;
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
        MessageResult(self.state)
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
