//! What the coordinator started on each node since that node's last heartbeat: placements the
//! node's allocation does not show yet. Placement subtracts them, so that a burst of
//! submissions between two heartbeats never hands out the same room twice. Sans-IO: starts,
//! heartbeats, refusals and the clock in; what each node holds out.
//!
//! A placement is forgotten when a heartbeat of its node lists its workload (from then on the
//! node's allocation counts it, or it has already ended), when the node refused it, or after
//! [`FORGET_AFTER_INTERVALS`] heartbeat intervals (a start the node never got).
//!
//! A restarted coordinator does not know what it placed before: a node it remembers is
//! [`PendingPlacements::unheard`] until its next heartbeat, and takes nothing meanwhile.

use herd_bus::{Heartbeat, Limits, NodeId, WorkloadId};
use std::collections::{BTreeMap, BTreeSet};

/// Heartbeat intervals after which a placement no heartbeat listed is forgotten.
pub const FORGET_AFTER_INTERVALS: u64 = 3;

/// What a workload asks of its node, as the node's allocation counts it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResourceRequest {
    /// CPUs: a cpuset's whole cores, else the CPU limit.
    pub cpu: f64,
    pub memory: u64,
    /// Whole cores of its own (`cpuset_cpus`).
    pub cores: u32,
    pub gpus: u32,
}

impl ResourceRequest {
    /// The request of a workload with these limits. Without a limit it asks nothing here (the
    /// node counts its own default request, which the coordinator does not know).
    pub fn of(limits: &Limits) -> ResourceRequest {
        ResourceRequest {
            cpu: limits
                .cpuset_cpus
                .map(f64::from)
                .or(limits.cpu)
                .unwrap_or(0.0),
            memory: limits.memory.unwrap_or(0),
            cores: limits.cpuset_cpus.unwrap_or(0),
            gpus: limits.gpus.as_ref().map_or(0, |g| g.count()),
        }
    }

    fn add(&mut self, other: &ResourceRequest) {
        self.cpu += other.cpu;
        self.memory = self.memory.saturating_add(other.memory);
        self.cores += other.cores;
        self.gpus += other.gpus;
    }
}

#[derive(Debug, Clone)]
struct Placed {
    workload: WorkloadId,
    request: ResourceRequest,
    forget_at_ms: u64,
}

/// Placements per node that no heartbeat has shown yet.
#[derive(Debug, Clone, Default)]
pub struct PendingPlacements {
    by_node: BTreeMap<NodeId, Vec<Placed>>,
    /// Nodes whose placements are not known: remembered across a restart, not heard since.
    unheard: BTreeSet<NodeId>,
}

impl PendingPlacements {
    /// The coordinator started `workload` on `node`, whose heartbeats come every
    /// `interval_ms`. Starting the same workload again (a retry) is one placement.
    pub fn placed(
        &mut self,
        node: &NodeId,
        workload: &WorkloadId,
        request: ResourceRequest,
        interval_ms: u64,
        now_ms: u64,
    ) {
        let forget_at_ms = now_ms + FORGET_AFTER_INTERVALS * interval_ms.max(1);
        let list = self.by_node.entry(node.clone()).or_default();
        match list.iter_mut().find(|p| p.workload == *workload) {
            Some(p) => p.forget_at_ms = p.forget_at_ms.max(forget_at_ms),
            None => list.push(Placed {
                workload: workload.clone(),
                request,
                forget_at_ms,
            }),
        }
    }

    /// After a coordinator restart: what was placed on `node` since the heartbeat remembered
    /// of it is not known, until its next heartbeat.
    pub fn unheard(&mut self, node: &NodeId) {
        self.unheard.insert(node.clone());
    }

    /// Whether `node`'s placements are known (it beat since the coordinator started, or it
    /// was not remembered from before).
    pub fn known(&self, node: &NodeId) -> bool {
        !self.unheard.contains(node)
    }

    /// A heartbeat: the workloads it lists are in the node's allocation (or over) now.
    pub fn on_heartbeat(&mut self, hb: &Heartbeat) {
        self.unheard.remove(&hb.node_id);
        if let Some(list) = self.by_node.get_mut(&hb.node_id) {
            list.retain(|p| !hb.workloads.iter().any(|w| w.workload_id == p.workload));
            if list.is_empty() {
                self.by_node.remove(&hb.node_id);
            }
        }
    }

    /// The node refused the start, or never answered it: it holds nothing.
    pub fn forget(&mut self, node: &NodeId, workload: &WorkloadId) {
        if let Some(list) = self.by_node.get_mut(node) {
            list.retain(|p| p.workload != *workload);
            if list.is_empty() {
                self.by_node.remove(node);
            }
        }
    }

    /// Forgets placements older than their node's [`FORGET_AFTER_INTERVALS`] intervals.
    pub fn tick(&mut self, now_ms: u64) {
        self.by_node.retain(|_, list| {
            list.retain(|p| p.forget_at_ms > now_ms);
            !list.is_empty()
        });
    }

    /// What the placements on `node` hold together.
    pub fn held(&self, node: &NodeId) -> ResourceRequest {
        let mut sum = ResourceRequest::default();
        for p in self.by_node.get(node).into_iter().flatten() {
            sum.add(&p.request);
        }
        sum
    }

    /// How many placements `node` holds.
    pub fn count(&self, node: &NodeId) -> usize {
        self.by_node.get(node).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::{fixtures, GpuRequest, WorkloadState, WorkloadSummary};

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn w(s: &str) -> WorkloadId {
        WorkloadId::new(s).unwrap()
    }

    fn half_cpu() -> ResourceRequest {
        ResourceRequest {
            cpu: 0.5,
            memory: 1 << 20,
            ..Default::default()
        }
    }

    #[test]
    fn a_request_counts_as_the_node_counts_it() {
        let pinned = Limits {
            cpu: Some(0.5),
            cpuset_cpus: Some(2),
            gpus: Some(GpuRequest::Devices(vec!["GPU-a".into(), "GPU-b".into()])),
            ..Default::default()
        };
        assert_eq!(
            ResourceRequest::of(&pinned),
            ResourceRequest {
                cpu: 2.0,
                memory: 0,
                cores: 2,
                gpus: 2
            }
        );
        assert_eq!(
            ResourceRequest::of(&Limits::default()),
            ResourceRequest::default()
        );
    }

    #[test]
    fn placements_add_up_until_a_heartbeat_lists_them() {
        let mut p = PendingPlacements::default();
        p.placed(&n("a"), &w("w1"), half_cpu(), 1000, 0);
        p.placed(&n("a"), &w("w2"), half_cpu(), 1000, 10);
        p.placed(&n("a"), &w("w2"), half_cpu(), 1000, 20); // a retry: still one
        p.placed(&n("b"), &w("w3"), half_cpu(), 1000, 20);
        assert_eq!(p.held(&n("a")).cpu, 1.0);
        assert_eq!(p.held(&n("a")).memory, 2 << 20);
        assert_eq!(p.count(&n("a")), 2);

        let mut hb = fixtures::heartbeat(0);
        hb.node_id = n("a");
        hb.workloads.push(WorkloadSummary {
            workload_id: w("w1"),
            state: WorkloadState::Running,
            run_id: None,
            rep: None,
            cpu_percent: None,
            memory: None,
        });
        p.on_heartbeat(&hb);
        assert_eq!(p.held(&n("a")).cpu, 0.5, "w1 is in the allocation now");
        assert_eq!(p.held(&n("b")).cpu, 0.5, "another node's heartbeat");

        p.forget(&n("a"), &w("w2"));
        assert_eq!(p.held(&n("a")), ResourceRequest::default());

        // Remembered from before a restart: unknown until the node beats again.
        p.unheard(&n("a"));
        assert!(!p.known(&n("a")));
        p.on_heartbeat(&hb);
        assert!(p.known(&n("a")));
    }

    #[test]
    fn a_placement_no_heartbeat_lists_is_forgotten_after_three_intervals() {
        let mut p = PendingPlacements::default();
        p.placed(&n("a"), &w("w1"), half_cpu(), 1000, 0);
        p.tick(2_999);
        assert_eq!(p.count(&n("a")), 1);
        p.tick(3_000);
        assert_eq!(p.count(&n("a")), 0);
    }
}
