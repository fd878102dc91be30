//! Cluster: the coordinator's view of the fleet (`cluster.nodes`, `cluster.workloads`,
//! `cluster.query`) and the cluster events it publishes.

use super::{Heartbeat, Labels, RunState, WorkloadState, WorkloadSummary};
use crate::ids::{NodeId, RunId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeLiveness {
    Up,
    Stale,
    Lost,
    Left,
}

impl NodeLiveness {
    pub const ALL: [NodeLiveness; 4] = [
        NodeLiveness::Up,
        NodeLiveness::Stale,
        NodeLiveness::Lost,
        NodeLiveness::Left,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeLiveness::Up => "up",
            NodeLiveness::Stale => "stale",
            NodeLiveness::Lost => "lost",
            NodeLiveness::Left => "left",
        }
    }

    pub fn parse(liveness: &str) -> Option<NodeLiveness> {
        NodeLiveness::ALL
            .into_iter()
            .find(|l| l.as_str() == liveness)
    }
}

/// `cluster.nodes` request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodesQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<NodeLiveness>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

/// `cluster.node.get` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGet {
    pub node_id: NodeId,
}

/// The coordinator's view of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: NodeId,
    pub liveness: NodeLiveness,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Heartbeat>,
}

/// Reply data of `cluster.nodes`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeList {
    #[serde(default)]
    pub nodes: Vec<NodeRecord>,
    /// The coordinator that answered, which leads (absent from coordinators before elections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<Leadership>,
}

/// JetStream KV bucket whose one key, [`LEADER_KEY`], names the leading coordinator. Its
/// entries expire after the lease (the bucket's `max_age`).
pub const LEADER_BUCKET: &str = "herd-leader";
pub const LEADER_KEY: &str = "coordinator";

/// A coordinator's leadership: the value of [`LEADER_KEY`], in `cluster.nodes` replies and in
/// `coordinator.leader` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    /// The coordinator's name: its node id, `:`, its process id (unique per process).
    pub coordinator: String,
    /// The revision of the KV entry that won the lease: later leaderships have higher terms.
    /// 0 in that entry itself (its revision is not known before it is written).
    pub term: u64,
    /// Wall clock, when it took the lease.
    pub since_ms: u64,
}

impl Leadership {
    /// The leadership's term, for this value read from an entry at `revision`: the entry that
    /// won the lease holds 0, its revision being the term.
    pub fn term_at(&self, revision: u64) -> u64 {
        if self.term == 0 {
            revision
        } else {
            self.term
        }
    }
}

/// `cluster.workloads` request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkloadsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<WorkloadState>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

/// A workload as the coordinator knows it (from heartbeats and events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterWorkload {
    pub node_id: NodeId,
    #[serde(flatten)]
    pub summary: WorkloadSummary,
}

/// Reply data of `cluster.workloads`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClusterWorkloadList {
    #[serde(default)]
    pub workloads: Vec<ClusterWorkload>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStrategy {
    RoundRobin,
    /// Least loaded first.
    #[default]
    Spread,
    /// Most loaded that still fits first.
    Binpack,
}

/// `cluster.query` request: which nodes fit this now?
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FitQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Whole cores of its own (`limits.cpuset_cpus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    #[serde(default)]
    pub strategy: PlacementStrategy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub node_id: NodeId,
    /// Higher is preferred under the query's strategy.
    pub score: f64,
}

/// Reply data of `cluster.query`: candidates best first, and why the others were left out.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FitResult {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// node id → why it does not fit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected: BTreeMap<String, String>,
    /// When there is no candidate: why, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// What a [`ClusterEvent`] announces: `node.<liveness>` or `run.<state>`, e.g. `node.lost` or
/// `run.stop_failed`. It is the tail of the event's subject and its `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterEventKind {
    /// A node's liveness changed.
    Node(NodeLiveness),
    /// A run's state changed.
    Run(RunState),
    /// A coordinator took the lead ([`ClusterEvent::leader`] says which, in which term).
    Leader,
}

impl ClusterEventKind {
    /// Every kind: each node liveness, then each run state.
    pub fn all() -> impl Iterator<Item = ClusterEventKind> {
        let nodes = NodeLiveness::ALL.into_iter().map(ClusterEventKind::Node);
        nodes
            .chain(RunState::ALL.into_iter().map(ClusterEventKind::Run))
            .chain([ClusterEventKind::Leader])
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterEventKind::Node(NodeLiveness::Up) => "node.up",
            ClusterEventKind::Node(NodeLiveness::Stale) => "node.stale",
            ClusterEventKind::Node(NodeLiveness::Lost) => "node.lost",
            ClusterEventKind::Node(NodeLiveness::Left) => "node.left",
            ClusterEventKind::Run(RunState::Queued) => "run.queued",
            ClusterEventKind::Run(RunState::Pending) => "run.pending",
            ClusterEventKind::Run(RunState::Running) => "run.running",
            ClusterEventKind::Run(RunState::Completed) => "run.completed",
            ClusterEventKind::Run(RunState::Failed) => "run.failed",
            ClusterEventKind::Run(RunState::Stopping) => "run.stopping",
            ClusterEventKind::Run(RunState::Stopped) => "run.stopped",
            ClusterEventKind::Run(RunState::StopFailed) => "run.stop_failed",
            ClusterEventKind::Leader => "coordinator.leader",
        }
    }

    pub fn parse(kind: &str) -> Option<ClusterEventKind> {
        match kind.split_once('.')? {
            ("node", liveness) => NodeLiveness::parse(liveness).map(ClusterEventKind::Node),
            ("run", state) => RunState::parse(state).map(ClusterEventKind::Run),
            ("coordinator", "leader") => Some(ClusterEventKind::Leader),
            _ => None,
        }
    }
}

impl fmt::Display for ClusterEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Published on `cluster.evt.<kind>`: node liveness changes and run state changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// A [`ClusterEventKind`] by name, e.g. `node.lost` or `run.stop_failed`; also the subject's
    /// tail. A string on the wire so that a reader skips kinds newer than itself.
    pub kind: String,
    pub ts_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// In `coordinator.leader`: the new leadership.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<Leadership>,
}

impl ClusterEvent {
    /// An event of `kind` at `ts_ms` that names no node, run or message yet.
    pub fn new(kind: ClusterEventKind, ts_ms: u64) -> ClusterEvent {
        ClusterEvent {
            kind: kind.as_str().to_string(),
            ts_ms,
            node_id: None,
            run_id: None,
            nodes: vec![],
            message: None,
            leader: None,
        }
    }

    /// The event's kind, or `None` for a kind this version does not know.
    pub fn event_kind(&self) -> Option<ClusterEventKind> {
        ClusterEventKind::parse(&self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_names_are_the_wire_names() {
        for liveness in NodeLiveness::ALL {
            let wire = serde_json::to_value(liveness).unwrap();
            assert_eq!(wire.as_str(), Some(liveness.as_str()));
            assert_eq!(NodeLiveness::parse(liveness.as_str()), Some(liveness));
        }
    }

    #[test]
    fn the_entry_that_won_the_lease_has_its_revision_as_term() {
        let won = Leadership {
            coordinator: "c:1".into(),
            term: 0,
            since_ms: 0,
        };
        assert_eq!(won.term_at(41), 41);
        let renewed = Leadership { term: 41, ..won };
        assert_eq!(renewed.term_at(57), 41);
    }

    #[test]
    fn cluster_event_kinds_are_area_dot_name_and_parse_back() {
        assert_eq!(ClusterEventKind::all().count(), 13);
        for kind in ClusterEventKind::all() {
            let expected = match kind {
                ClusterEventKind::Node(l) => format!("node.{}", l.as_str()),
                ClusterEventKind::Run(s) => format!("run.{}", s.as_str()),
                ClusterEventKind::Leader => "coordinator.leader".to_string(),
            };
            assert_eq!(kind.as_str(), expected);
            assert_eq!(ClusterEventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(ClusterEvent::new(kind, 1).event_kind(), Some(kind));
        }
        for unknown in [
            "",
            "node",
            "node.",
            "node.gone",
            "run.waiting",
            "run.STOPPED",
            "up",
        ] {
            assert_eq!(ClusterEventKind::parse(unknown), None, "{unknown:?}");
        }
    }
}
