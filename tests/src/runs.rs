//! What several run tests check the same way.

use futures::StreamExt;
use herd_bus::{RunRecord, RunState, TaskStatus};
use std::collections::HashSet;
use std::time::Duration;

/// A run stopped during its first repetition, every node confirming: `stopped`, each first
/// repetition's task STOPPED and every later one SKIPPED.
pub fn assert_stopped_in_first_rep(r: &RunRecord) {
    assert_eq!(r.state, RunState::Stopped, "{r:#?}");
    assert!(r.unconfirmed_nodes.is_empty(), "{r:?}");
    for t in &r.tasks {
        let want = if t.rep == 1 {
            TaskStatus::Stopped
        } else {
            TaskStatus::Skipped
        };
        assert_eq!(t.status, want, "{t:?}");
    }
}

/// Waits until each of `workloads` has logged a line `ready` on `logs` (a subscription to
/// `herd.v1.logs.*.*.stdout`).
pub async fn wait_ready_lines(
    logs: &mut async_nats::Subscriber,
    workloads: &[String],
    within: Duration,
) {
    let mut ready = HashSet::new();
    let deadline = tokio::time::Instant::now() + within;
    while ready.len() < workloads.len() {
        let m = tokio::time::timeout_at(deadline, logs.next())
            .await
            .unwrap_or_else(|_| panic!("only {ready:?} of {workloads:?} ready"))
            .unwrap();
        let chunk: herd_bus::LogChunk = herd_bus::codec::decode(
            &m.payload,
            herd_bus::Encoding::MsgPack,
            &herd_bus::DecodeLimits::default(),
        )
        .unwrap();
        let id = chunk.workload_id.to_string();
        if workloads.contains(&id) && chunk.lines.contains(&"ready".into()) {
            ready.insert(id);
        }
    }
}
