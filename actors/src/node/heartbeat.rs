//! Heartbeat: every `interval` (±10 % jitter) publishes this node's capacity, usage, state and
//! workload inventory on `hb.<node>`. A state change (lameduck) is published at once.

use crate::cores::allocation::{self, AllocationPolicy};
use crate::cores::heartbeat::inventory;
use crate::edges::clock::now_ms;
use crate::edges::host::{self, HostCpu};
use crate::node::bus::{Bus, GetNodeState, NodeIdentity, StateChanged};
use crate::node::executor::{self, WorkloadExecutor};
use crate::node::monitor::{LastSamples, ProcessMonitor};
use actix::prelude::*;
use herd_bus::codec::{self, Encoding};
use herd_bus::{Heartbeat, Subjects, WorkloadFilter};
use std::sync::Arc;
use std::time::Duration;

pub struct HeartbeatActor {
    client: async_nats::Client,
    subjects: Subjects,
    identity: NodeIdentity,
    interval: Duration,
    seq: u64,
    cpu: HostCpu,
    /// Capacity as this node offers it (a dev node's share), its GPUs, and what it hands out.
    allocation: Arc<AllocationPolicy>,
    bus: Addr<Bus>,
    executor: Addr<WorkloadExecutor>,
    monitor: Addr<ProcessMonitor>,
    next: Option<SpawnHandle>,
}

impl HeartbeatActor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        identity: NodeIdentity,
        interval: Duration,
        allocation: Arc<AllocationPolicy>,
        bus: Addr<Bus>,
        executor: Addr<WorkloadExecutor>,
        monitor: Addr<ProcessMonitor>,
    ) -> HeartbeatActor {
        HeartbeatActor {
            client,
            subjects,
            identity,
            interval,
            seq: 0,
            cpu: HostCpu::default(),
            allocation,
            bus,
            executor,
            monitor,
            next: None,
        }
    }

    /// interval × [0.9, 1.1), so that a fleet started together does not beat in step.
    fn jittered(&self) -> Duration {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let frac = (nanos % 1000) as f64 / 1000.0;
        self.interval.mul_f64(0.9 + 0.2 * frac)
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.next.take() {
            ctx.cancel_future(h);
        }
        let delay = self.jittered();
        self.next = Some(ctx.run_later(delay, |act, ctx| {
            act.beat(ctx);
        }));
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        let due = std::time::Instant::now();
        self.schedule(ctx);
        let (bus, executor, monitor) = (
            self.bus.clone(),
            self.executor.clone(),
            self.monitor.clone(),
        );
        let gather = async move {
            let state = bus.send(GetNodeState).await.unwrap_or_default();
            let list = executor
                .send(executor::List(WorkloadFilter::default()))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let last = monitor.send(LastSamples).await.unwrap_or_default();
            (state, list, last)
        };
        ctx.spawn(
            gather
                .into_actor(self)
                .map(move |(state, list, last), act, _| {
                    act.seq += 1;
                    let (mut capacity, usage) = host::read(&mut act.cpu);
                    let policy = &act.allocation;
                    capacity.cpus = policy.capacity_cpus;
                    capacity.memory = policy.capacity_memory;
                    capacity.gpus = policy.gpus.clone();
                    let allocation = policy.allocation(&allocation::live(&list.workloads));
                    let workloads = inventory(list.workloads, &last);
                    let hb = Heartbeat {
                        node_id: act.identity.node_id.clone(),
                        seq: act.seq,
                        interval_ms: act.interval.as_millis() as u64,
                        ts_ms: now_ms(),
                        started_at_ms: act.identity.started_at_ms,
                        version: herd_bus::HERD_VERSION.to_string(),
                        uptime_s: act.identity.started.elapsed().as_secs_f64(),
                        labels: act.identity.labels.clone().into(),
                        roles: act.identity.roles.clone(),
                        state,
                        capacity,
                        usage,
                        workloads,
                        allocation: Some(allocation),
                    };
                    let subject = act.subjects.heartbeat(&hb.node_id);
                    match codec::encode(&hb, Encoding::MsgPack) {
                        Ok(bytes) => {
                            let client = act.client.clone();
                            actix::spawn(async move {
                                match client.publish(subject, bytes.into()).await {
                                    Ok(()) => crate::edges::metrics::metrics()
                                        .heartbeat_lag_seconds
                                        .observe(due.elapsed().as_secs_f64()),
                                    Err(e) => {
                                        tracing::debug!(error = %e, "cannot publish a heartbeat")
                                    }
                                }
                            });
                        }
                        Err(e) => tracing::error!(error = %e, "cannot encode a heartbeat"),
                    }
                }),
        );
    }
}

impl Actor for HeartbeatActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.beat(ctx);
    }
}

/// After a state change: publish a heartbeat now, then keep the rhythm.
impl Handler<StateChanged> for HeartbeatActor {
    type Result = ();
    fn handle(&mut self, _: StateChanged, ctx: &mut Self::Context) {
        self.beat(ctx);
    }
}
