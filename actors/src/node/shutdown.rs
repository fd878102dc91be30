//! herdd's shutdown, in order: report `stopping`, keep or stop the workloads (as
//! [`at_shutdown`] decides), publish the `stopping` node event, and deliver what the outbox
//! still holds. The daemon only calls [`shut_down`] when a signal comes.

use crate::cores::shutdown::{at_shutdown, AtShutdown};
use crate::edges::cgroup::CgroupBackend;
use crate::node::bus::{Bus, EmitNodeEvent, SetNodeState};
use crate::node::events::{EventPublisher, Flush};
use crate::node::executor::{KillRemaining, LiveCount, StopAccepting, StopAll, WorkloadExecutor};
use actix::Addr;
use herd_bus::{NodeEventKind, NodeState};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The node's actors that a shutdown drives.
pub struct NodeActors {
    pub client: async_nats::Client,
    pub bus: Addr<Bus>,
    pub publisher: Addr<EventPublisher>,
    pub executor: Option<(Addr<WorkloadExecutor>, Arc<dyn CgroupBackend>)>,
}

/// How to shut down (from `[shutdown]`).
pub struct ShutdownPolicy {
    pub keep_workloads: bool,
    pub workload_grace_cap: Duration,
    pub flush_timeout: Duration,
    /// Where unacknowledged events are saved, for the log.
    pub outbox_file: PathBuf,
}

impl ShutdownPolicy {
    /// The longest a shutdown may take.
    pub fn bound(&self) -> Duration {
        self.workload_grace_cap + self.flush_timeout + Duration::from_secs(5)
    }
}

/// Shuts the node down after `signal_name`; bounded by [`ShutdownPolicy::bound`].
pub async fn shut_down(node: &NodeActors, policy: &ShutdownPolicy, signal_name: &str) {
    let work = async {
        let _ = node.bus.send(SetNodeState(NodeState::Stopping)).await;
        if let Some((executor, backend)) = &node.executor {
            match at_shutdown(policy.keep_workloads, backend.keeping_blocks_restart()) {
                AtShutdown::Keep => keep(executor).await,
                AtShutdown::Stop { why } => {
                    if let Some(why) = why {
                        tracing::warn!("stopping workloads instead of keeping them: {why}");
                    }
                    stop(executor, policy.workload_grace_cap).await;
                    backend.remove_root_if_empty();
                }
            }
        }
        let _ = node
            .bus
            .send(EmitNodeEvent(
                NodeEventKind::Stopping,
                Some(format!("received {signal_name}")),
            ))
            .await;
        let left = node
            .publisher
            .send(Flush(policy.flush_timeout))
            .await
            .unwrap_or(0);
        if left > 0 {
            tracing::warn!(
                events = left,
                file = %policy.outbox_file.display(),
                "events not yet acknowledged are saved and will be sent at the next start"
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), node.client.flush()).await;
    };
    if tokio::time::timeout(policy.bound(), work).await.is_err() {
        tracing::warn!("shutdown did not finish in time; exiting anyway");
    }
}

async fn keep(executor: &Addr<WorkloadExecutor>) {
    let _ = executor.send(StopAccepting).await;
    let left = executor.send(LiveCount).await.unwrap_or(0);
    tracing::info!(
        workloads = left,
        "leaving workloads running (shutdown.on_shutdown = keep); the next herdd re-adopts them"
    );
}

/// Stops every workload with its grace (capped), waits for them, then kills what is left.
async fn stop(executor: &Addr<WorkloadExecutor>, grace_cap: Duration) {
    let _ = executor
        .send(StopAll {
            grace_cap,
            refuse_new: true,
        })
        .await;
    let deadline = tokio::time::Instant::now() + grace_cap + Duration::from_millis(500);
    while tokio::time::Instant::now() < deadline && executor.send(LiveCount).await.unwrap_or(0) > 0
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = executor.send(KillRemaining).await.unwrap_or(0);
    if killed > 0 {
        tracing::warn!(
            workloads = killed,
            "killed workloads that outlived their grace period"
        );
    }
}
