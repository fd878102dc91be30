//! Cluster: the coordinator's view of the fleet (`cluster.nodes`, `cluster.workloads`,
//! `cluster.query`) and the cluster events it publishes.

use super::{Heartbeat, Labels, WorkloadState, WorkloadSummary};
use crate::ids::{NodeId, RunId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeLiveness {
    Up,
    Stale,
    Lost,
    Left,
}

impl NodeLiveness {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeLiveness::Up => "up",
            NodeLiveness::Stale => "stale",
            NodeLiveness::Lost => "lost",
            NodeLiveness::Left => "left",
        }
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

/// Published on `cluster.evt.<kind>`: node liveness changes and run state changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// e.g. `node.lost` or `run.stop_failed`; also the subject's tail.
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
}
