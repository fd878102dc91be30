//! Runs: a workload template over targets × repetitions (`cluster.run.*`), its journal of
//! tasks, and the run catalog.

use super::{
    is_false, InputFile, Labels, PlacementStrategy, SetupFailure, TaskAttempt, TaskOrder,
    TaskPhase, WorkloadSpec,
};
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
    /// The single-workload form; left out when `workloads` is given.
    #[serde(default, skip_serializing_if = "WorkloadSpec::is_unset")]
    pub workload: WorkloadSpec,
    /// A suite: named workloads, each run on every node in order (see `order`), each with its
    /// repetitions and the variants of its `matrix`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadSpec>,
    /// Run once on each node before its first task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<WorkloadSpec>,
    /// Run once on each node after its last task: after completion, failures and stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown: Option<WorkloadSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<TaskOrder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_setup_failure: Option<SetupFailure>,
    /// At most this many nodes run the run's tasks at once; the others wait their turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// Files every task finds in `HERD_INPUT_DIR` (uploaded by `herdctl run submit --input`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputFile>,
    pub targets: RunTargets,
    pub repetitions: u32,
    /// Seconds to wait for every node to confirm a stop; default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_s: Option<f64>,
    /// When its tasks do not fit now: wait `queued` for room (the default, `None` or `true`),
    /// or fail at once (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<bool>,
    /// Among queued runs, a higher priority starts first; equal ones in submission order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// One repetition of an unset workload on no target: the base of a RunSpec written field by
/// field (`RunSpec { workloads, ..Default::default() }`).
impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            run_id: None,
            workload: WorkloadSpec::default(),
            workloads: vec![],
            setup: None,
            teardown: None,
            order: None,
            on_setup_failure: None,
            max_parallel: None,
            inputs: vec![],
            targets: RunTargets::default(),
            repetitions: 1,
            stop_timeout_s: None,
            queue: None,
            priority: None,
        }
    }
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
    /// Waiting for room on enough nodes (`queued_reason` says what is missing).
    Queued,
    Pending,
    Running,
    Completed,
    Failed,
    Stopping,
    Stopped,
    StopFailed,
}

impl RunState {
    pub const ALL: [RunState; 8] = [
        RunState::Queued,
        RunState::Pending,
        RunState::Running,
        RunState::Completed,
        RunState::Failed,
        RunState::Stopping,
        RunState::Stopped,
        RunState::StopFailed,
    ];

    /// The name on the wire, e.g. `stop_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            RunState::Stopping => "stopping",
            RunState::Stopped => "stopped",
            RunState::StopFailed => "stop_failed",
        }
    }

    pub fn parse(name: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.as_str() == name)
    }
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

impl TaskStatus {
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Skipped,
        TaskStatus::Stopped,
        TaskStatus::Lost,
    ];

    /// The name on the wire, e.g. `COMPLETED`; also the key of [`RunSummary::tasks`].
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Completed => "COMPLETED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Skipped => "SKIPPED",
            TaskStatus::Stopped => "STOPPED",
            TaskStatus::Lost => "LOST",
        }
    }

    pub fn parse(name: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One node × repetition of a run; `task_id` is `node::workload::rep`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: String,
    pub node_id: NodeId,
    pub rep: u32,
    pub status: TaskStatus,
    /// Its workload's name, with the variant's values for a matrix: `fio[size=1G,threads=2]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(default, skip_serializing_if = "is_workloads")]
    pub phase: TaskPhase,
    /// Which attempt this is (1 unless it was run again).
    #[serde(default, skip_serializing_if = "is_first")]
    pub attempt: u32,
    /// Its earlier attempts, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<TaskAttempt>,
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
    /// What its workload used, from the node's final measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<super::ResourceSummary>,
    /// Its uploaded output and metrics, once the node has uploaded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<super::TaskResults>,
}

fn is_workloads(p: &TaskPhase) -> bool {
    *p == TaskPhase::Workloads
}

fn is_first(attempt: &u32) -> bool {
    *attempt <= 1
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
    /// While queued: why its tasks do not fit yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_reason: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_name<T: Serialize>(value: T) -> String {
        match serde_json::to_value(value).unwrap() {
            serde_json::Value::String(name) => name,
            other => panic!("{other} is not a name"),
        }
    }

    #[test]
    fn names_are_the_wire_names() {
        for state in RunState::ALL {
            assert_eq!(state.as_str(), serde_name(state));
            assert_eq!(RunState::parse(state.as_str()), Some(state));
        }
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str(), serde_name(status));
            assert_eq!(TaskStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RunState::parse("STOPPED"), None);
        assert_eq!(TaskStatus::parse("stopped"), None);
    }
}
