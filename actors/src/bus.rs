//! Bus: this node's face on NATS. Subscribes to the node's command subjects and the fleet-wide
//! ping, decodes each request under the configured limits, routes it, and replies in the
//! request's encoding. Every request with a reply subject gets a reply, bad input included.

use crate::clock::now_ms;
use crate::events::Publish;
use crate::outbox::OutboxEntry;
use actix::prelude::*;
use async_nats::{HeaderMap, Message as NatsMessage};
use herd_bus::codec::{self, CodecError, DecodeLimits, Encoding, CONTENT_TYPE_HEADER};
use herd_bus::reply::{SERVICE_ERROR_CODE_HEADER, SERVICE_ERROR_HEADER};
use herd_bus::{
    Ack, Empty, ErrorBody, ErrorCode, LameduckRequest, NodeEvent, NodeEventKind, NodeId, NodeInfo,
    NodeState, NodeVerb, Reply, Role, StopRequest, Subject, SubjectError, Subjects, WorkloadFilter,
    WorkloadGet, WorkloadSpec,
};
use serde::Serialize;
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

type Handled = Result<Vec<u8>, ErrorBody>;

pub struct Bus {
    client: async_nats::Client,
    subjects: Subjects,
    identity: NodeIdentity,
    limits: DecodeLimits,
    state: NodeState,
    events: Recipient<Publish>,
    event_seq: u64,
}

impl Bus {
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        identity: NodeIdentity,
        limits: DecodeLimits,
        events: Recipient<Publish>,
    ) -> Bus {
        Bus {
            client,
            subjects,
            identity,
            limits,
            state: NodeState::Active,
            events,
            event_seq: 0,
        }
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
            cgroup: None,
        }
    }

    /// Queues a node event for JetStream delivery. Ids are unique per daemon instance.
    fn emit(&mut self, kind: NodeEventKind, message: Option<String>) {
        self.event_seq += 1;
        let event = NodeEvent {
            event_id: format!(
                "{}-{}-{}",
                self.identity.node_id, self.identity.started_at_ms, self.event_seq
            ),
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

    fn route(&mut self, msg: &NatsMessage, enc: Encoding) -> Handled {
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
                encode_ok(&self.node_info(), enc)
            }
            Subject::NodeCommand { node, verb } if node == self.identity.node_id => {
                self.node_command(verb, &msg.payload, enc)
            }
            other => Err(bad_request(format!(
                "subject '{}' ({other:?}) is not served by node {}",
                msg.subject, self.identity.node_id
            ))),
        }
    }

    fn node_command(&mut self, verb: NodeVerb, payload: &[u8], enc: Encoding) -> Handled {
        match verb {
            NodeVerb::Ping => {
                self.decode::<Empty>(payload, enc)?;
                encode_ok(&self.node_info(), enc)
            }
            NodeVerb::Lameduck => {
                let req: LameduckRequest = self.decode(payload, enc)?;
                if req.stop_workloads {
                    return Err(ErrorBody {
                        code: ErrorCode::Unavailable,
                        message: "stop_workloads needs the workload executor, which this build \
                                  of herdd does not have yet"
                            .into(),
                    });
                }
                if let Some(d) = req.delay_s.filter(|d| !d.is_finite() || *d < 0.0) {
                    return Err(bad_request(format!("delay_s must be ≥ 0, got {d}")));
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
                }
                encode_ok(
                    &Ack {
                        message: Some(format!("node is {}", state.as_str())),
                    },
                    enc,
                )
            }
            // Requests are validated even before the executor exists, so clients learn about
            // malformed input rather than a missing feature.
            NodeVerb::WorkloadStart => {
                self.decode::<WorkloadSpec>(payload, enc)?;
                Err(no_executor(verb))
            }
            NodeVerb::WorkloadStop => {
                self.decode::<StopRequest>(payload, enc)?;
                Err(no_executor(verb))
            }
            NodeVerb::WorkloadList => {
                self.decode::<WorkloadFilter>(payload, enc)?;
                Err(no_executor(verb))
            }
            NodeVerb::WorkloadGet => {
                codec::decode::<WorkloadGet>(payload, enc, &self.limits).map_err(bad_request)?;
                Err(no_executor(verb))
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

/// The encoding of a NATS message: its `Content-Type` header, else what its payload looks like.
pub fn message_encoding(msg: &NatsMessage) -> Encoding {
    let content_type = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(CONTENT_TYPE_HEADER))
        .map(|v| v.as_str());
    Encoding::detect(content_type, &msg.payload)
}

/// Builds the reply payload and headers for a handled request.
pub fn reply_message(handled: Handled, enc: Encoding) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE_HEADER, enc.content_type());
    let payload = match handled {
        Ok(payload) => payload,
        Err(error) => {
            // Header values cannot hold line breaks.
            let one_line: String = error
                .message
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(512)
                .collect();
            headers.insert(SERVICE_ERROR_HEADER, one_line.as_str());
            headers.insert(
                SERVICE_ERROR_CODE_HEADER,
                error.code.status().to_string().as_str(),
            );
            let reply = Reply::<Empty> {
                ok: false,
                data: None,
                error: Some(error),
            };
            codec::encode(&reply, enc).unwrap_or_else(|_| b"{\"ok\":false}".to_vec())
        }
    };
    (headers, payload)
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
    fn handle(&mut self, msg: NatsMessage, _: &mut Self::Context) {
        let Some(reply_to) = msg.reply.clone() else {
            tracing::debug!(subject = %msg.subject, "ignoring a request without a reply subject");
            return;
        };
        let enc = message_encoding(&msg);
        let handled = self.route(&msg, enc);
        if let Err(e) = &handled {
            tracing::debug!(subject = %msg.subject, code = %e.code, error = %e.message, "request refused");
        }
        let (headers, payload) = reply_message(handled, enc);
        let client = self.client.clone();
        actix::spawn(async move {
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
