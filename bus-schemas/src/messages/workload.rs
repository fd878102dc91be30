//! Workloads: what to run (`workload.start`), how to stop and find them, their states and
//! lifecycle events, and their logs.

use super::{default_true, is_false, is_true, is_zero, is_zero_u32, Labels};
use crate::ids::{NodeId, RunId, WorkloadId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    /// fork/exec into a cgroup.
    #[default]
    Exec,
    /// A Docker container.
    Docker,
}

/// When a docker workload's image is pulled from a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Never pull: the image must already be on the node.
    Never,
    /// Pull when the node does not have the image.
    IfNotPresent,
    /// Pull before every start.
    Always,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Never => "never",
            PullPolicy::IfNotPresent => "if_not_present",
            PullPolicy::Always => "always",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// CPU in cores (0.5 = half a core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Maximum number of processes and threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Swap the workload may use beyond `memory`, in bytes (needs `memory`). None: no swap at
    /// all, so that a memory limit means memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<u64>,
    /// Whole CPU cores of its own (a cpuset): the node picks them, never gives one to two such
    /// workloads, and keeps them off the cores of its `reserved_cpu`. Counts as that many CPUs
    /// allocated (and as the CPU limit when `cpu` is unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<u32>,
    /// GPUs of its own: a number (the node picks), or the UUIDs wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<GpuRequest>,
}

/// `limits.gpus`: how many GPUs, or which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GpuRequest {
    Count(u32),
    Devices(Vec<String>),
}

impl GpuRequest {
    /// How many GPUs it asks for.
    pub fn count(&self) -> u32 {
        match self {
            GpuRequest::Count(n) => *n,
            GpuRequest::Devices(d) => d.len() as u32,
        }
    }
}

/// What a node handed a workload of its own when it admitted it: whole cores (a cpuset) and
/// GPUs, kept with the workload so that a restarted herdd hands them to no one else.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Assigned {
    /// CPU ids, ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cores: Vec<u32>,
    /// GPU UUIDs, in the node's inventory order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
}

impl Assigned {
    pub fn is_empty(&self) -> bool {
        self.cores.is_empty() && self.gpus.is_empty()
    }
}

impl Limits {
    /// Memory plus the swap allowed beyond it, when memory is limited (v1's
    /// `memory.memsw.limit_in_bytes`, Docker's `memory_swap`).
    pub fn memory_and_swap(&self) -> Option<u64> {
        self.memory
            .map(|m| m.saturating_add(self.swap.unwrap_or(0)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicyKind {
    #[default]
    Never,
    OnFailure,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RestartPolicy {
    #[serde(default)]
    pub policy: RestartPolicyKind,
    /// Most restarts before the workload is left failed.
    #[serde(default)]
    pub max: u32,
}

/// What to run: `workload.start` request, and the template of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_id: Option<WorkloadId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rep: Option<u32>,
    #[serde(default)]
    pub driver: Driver,
    /// argv; for docker, overrides the image's command when not empty.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// docker: when to pull `image`; default the node's `docker.pull_policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    /// Signal sent first on stop; default SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_signal: Option<String>,
    /// Seconds between kill_signal and SIGKILL; default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_s: Option<f64>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Telemetry for this workload; off for workloads whose measurement it would disturb.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub collect: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Files the node materializes, digest checked, into the task's `HERD_INPUT_DIR` before it
    /// starts (a run sets them from its `inputs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<super::InputFile>,
    /// In a run's workload: its parameter axes, expanded by the coordinator into one variant
    /// per combination; `workload.start` refuses a spec that still has one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub matrix: BTreeMap<String, Vec<super::ParamValue>>,
    /// In a run's workload: how many times a failed task is run again before its node moves
    /// on (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// The same defaults as a payload that leaves every optional field out (`collect` is on).
impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            workload_id: None,
            name: None,
            run_id: None,
            rep: None,
            driver: Driver::Exec,
            command: vec![],
            image: None,
            pull_policy: None,
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            limits: Limits::default(),
            timeout_s: None,
            kill_signal: None,
            grace_s: None,
            restart: RestartPolicy::default(),
            collect: true,
            labels: Labels::new(),
            inputs: vec![],
            matrix: BTreeMap::new(),
            retries: None,
        }
    }
}

impl WorkloadSpec {
    /// Nothing set: the form a suite's RunSpec leaves out.
    pub fn is_unset(&self) -> bool {
        *self == WorkloadSpec::default()
    }
}

/// Reply data of `workload.start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub workload_id: WorkloadId,
    /// True when an identical spec with this id was already started (idempotent retry).
    #[serde(default, skip_serializing_if = "is_false")]
    pub existing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadState {
    Pending,
    Starting,
    Running,
    Exited,
    Failed,
    Stopped,
    Killed,
    OomKilled,
    TimedOut,
    Lost,
}

impl WorkloadState {
    pub const ALL: [WorkloadState; 10] = [
        WorkloadState::Pending,
        WorkloadState::Starting,
        WorkloadState::Running,
        WorkloadState::Exited,
        WorkloadState::Failed,
        WorkloadState::Stopped,
        WorkloadState::Killed,
        WorkloadState::OomKilled,
        WorkloadState::TimedOut,
        WorkloadState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadState::Pending => "pending",
            WorkloadState::Starting => "starting",
            WorkloadState::Running => "running",
            WorkloadState::Exited => "exited",
            WorkloadState::Failed => "failed",
            WorkloadState::Stopped => "stopped",
            WorkloadState::Killed => "killed",
            WorkloadState::OomKilled => "oom_killed",
            WorkloadState::TimedOut => "timed_out",
            WorkloadState::Lost => "lost",
        }
    }

    pub fn parse(state: &str) -> Option<WorkloadState> {
        WorkloadState::ALL.into_iter().find(|s| s.as_str() == state)
    }

    /// A terminal state: the workload has no process any more.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            WorkloadState::Pending | WorkloadState::Starting | WorkloadState::Running
        )
    }
}

/// `workload.stop` request: one workload, or every workload of a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StopRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_id: Option<WorkloadId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_s: Option<f64>,
}

/// `workload.get` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadGet {
    pub workload_id: WorkloadId,
}

/// `workload.list` request; every field narrows the list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkloadFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<WorkloadState>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

/// Reply data of `workload.get`, and an element of `workload.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    pub workload_id: WorkloadId,
    pub node_id: NodeId,
    pub state: WorkloadState,
    pub spec: WorkloadSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub restarts: u32,
    /// Once settled: what it used, from its cgroup's counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<super::ResourceSummary>,
    /// Its own working directory on the node (cwd, HOME, TMPDIR), while it is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    /// The cores and GPUs the node assigned it (`limits.cpuset_cpus`, `limits.gpus`).
    #[serde(default, skip_serializing_if = "Assigned::is_empty")]
    pub assigned: Assigned,
}

/// Reply data of `workload.list`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkloadList {
    #[serde(default)]
    pub workloads: Vec<WorkloadStatus>,
}

/// Published on `evt.<node>.workload.<state>` through JetStream (`HERD_EVENTS`), one per
/// transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadEvent {
    pub event_id: String,
    pub node_id: NodeId,
    pub workload_id: WorkloadId,
    pub state: WorkloadState,
    pub ts_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rep: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub restarts: u32,
    /// In the event of a settled state: what it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<super::ResourceSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }

    pub fn parse(s: &str) -> Option<LogStream> {
        match s {
            "stdout" => Some(LogStream::Stdout),
            "stderr" => Some(LogStream::Stderr),
            _ => None,
        }
    }
}

/// A batch of log lines, published on `logs.<node>.<workload>.<stream>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogChunk {
    pub node_id: NodeId,
    pub workload_id: WorkloadId,
    pub stream: LogStream,
    /// Per workload and stream, increments by one per chunk; a gap means chunks were lost.
    pub seq: u64,
    pub ts_ms: u64,
    /// Lines without their newline; invalid UTF-8 is replaced.
    #[serde(default)]
    pub lines: Vec<String>,
    /// Lines dropped by the rate cap since the previous chunk.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
    /// The last chunk of this stream: the workload's output ended (its pipe or file reached
    /// its end). Followers wait for it after a terminal state, so that no line is cut off.
    #[serde(default, skip_serializing_if = "is_false")]
    pub eof: bool,
    /// Which run of the workload wrote it: its `restarts` when that run started (0 for the
    /// first). A follower waiting for the last run's `eof` tells it from an earlier run's.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_equals_an_empty_payload() {
        let from_wire: WorkloadSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(from_wire, WorkloadSpec::default());
        assert!(WorkloadSpec::default().collect);
    }

    #[test]
    fn workload_states_are_the_wire_names() {
        for state in WorkloadState::ALL {
            let wire = serde_json::to_value(state).unwrap();
            assert_eq!(wire.as_str(), Some(state.as_str()));
            assert_eq!(WorkloadState::parse(state.as_str()), Some(state));
        }
        assert_eq!(WorkloadState::parse("OOM_KILLED"), None);
    }
}
