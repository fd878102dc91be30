//! A standby coordinator's warm registry: every heartbeat fed to a [`NodeRegistry`] while
//! another coordinator leads, so that the moment this one takes over it knows every node's
//! liveness and last inventory without waiting for the next heartbeats. It announces nothing
//! and saves nothing: only the leader does.

use crate::cores::registry::{NodeRegistry, RegistryConfig, SpareHeartbeat};
use crate::edges::clock::now_ms;
use actix::prelude::*;
use async_nats::Message as NatsMessage;
use herd_bus::codec::DecodeLimits;
use herd_bus::{Subject, Subjects};
use std::time::Duration;

pub struct WarmRegistry {
    client: async_nats::Client,
    subjects: Subjects,
    limits: DecodeLimits,
    tick: Duration,
    registry: Option<NodeRegistry>,
    spare: SpareHeartbeat,
}

impl WarmRegistry {
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        config: RegistryConfig,
        limits: DecodeLimits,
        tick: Duration,
    ) -> WarmRegistry {
        WarmRegistry {
            client,
            subjects,
            limits,
            tick,
            registry: Some(NodeRegistry::new(config)),
            spare: SpareHeartbeat::default(),
        }
    }
}

impl Actor for WarmRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (client, subject) = (self.client.clone(), self.subjects.heartbeats_all());
        let subscribe = async move { client.subscribe(subject).await };
        ctx.wait(subscribe.into_actor(self).map(|sub, _, ctx| match sub {
            Ok(sub) => {
                ctx.add_stream(sub);
            }
            Err(e) => tracing::warn!(error = %e, "standby: cannot follow heartbeats"),
        }));
        // Liveness ages as on the leader; the changes are the leader's to announce.
        ctx.run_interval(self.tick, |act, _| {
            if let Some(r) = act.registry.as_mut() {
                r.tick(now_ms());
            }
        });
    }
}

impl StreamHandler<NatsMessage> for WarmRegistry {
    fn handle(&mut self, msg: NatsMessage, _: &mut Self::Context) {
        let (Ok(Subject::Heartbeat { node }), Some(registry)) = (
            self.subjects.parse(msg.subject.as_str()),
            self.registry.as_mut(),
        ) else {
            return;
        };
        // Malformed heartbeats are the leader's to count and log.
        if let Ok(hb) = self.spare.decode(&msg.payload, &self.limits) {
            if hb.node_id == node {
                let (_, previous) = registry.ingest(hb, now_ms());
                self.spare.keep(previous);
            } else {
                self.spare.keep(Some(hb));
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

/// This process leads now: the registry goes to its coordinator, and the standby stops.
#[derive(Message)]
#[rtype(result = "Option<NodeRegistry>")]
pub struct Handover;

impl Handler<Handover> for WarmRegistry {
    type Result = Option<NodeRegistry>;
    fn handle(&mut self, _: Handover, ctx: &mut Self::Context) -> Self::Result {
        ctx.stop();
        self.registry.take()
    }
}
