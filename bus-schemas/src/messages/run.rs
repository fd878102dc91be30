//! Runs: a workload template over targets × repetitions (`cluster.run.*`), its journal of
//! tasks, and the run catalog.

use super::{is_false, Labels, PlacementStrategy, WorkloadSpec};
use crate::ids::{NodeId, RunId, WorkloadId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunTargets {
    /// Explicit nodes; when empty, `count` nodes are chosen by label and strategy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    #[serde(default)]
    pub strategy: PlacementStrategy,
}

/// `cluster.run.submit` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    pub workload: WorkloadSpec,
    pub targets: RunTargets,
    pub repetitions: u32,
    /// Seconds to wait for every node to confirm a stop; default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_s: Option<f64>,
}

/// Reply data of `cluster.run.submit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSubmitted {
    pub run_id: RunId,
    #[serde(default, skip_serializing_if = "is_false")]
    pub existing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Pending,
    Running,
    Completed,
    Failed,
    Stopping,
    Stopped,
    StopFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
    Stopped,
    Lost,
}

/// One node × repetition of a run; `task_id` is `node::workload::rep`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: String,
    pub node_id: NodeId,
    pub rep: u32,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_id: Option<WorkloadId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reply data of `cluster.run.get`: the run's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: RunId,
    pub state: RunState,
    pub spec: RunSpec,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    #[serde(default)]
    pub tasks: Vec<TaskRecord>,
    /// After stop_failed: nodes that never confirmed the stop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed_nodes: Vec<NodeId>,
}

/// `cluster.run.get` and `cluster.run.stop` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    pub run_id: RunId,
}

/// `cluster.run.list` request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RunState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One line of the run catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: RunId,
    pub state: RunState,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Task count per status, e.g. {"COMPLETED": 9}.
    #[serde(default)]
    pub tasks: BTreeMap<String, u32>,
}

/// Reply data of `cluster.run.list`, newest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunList {
    #[serde(default)]
    pub runs: Vec<RunSummary>,
}
