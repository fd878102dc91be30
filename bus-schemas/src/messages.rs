//! Every message that travels on herd's bus.
//!
//! Compatibility rules (checked by the golden vectors in `golden/`):
//! - fields are encoded by name, so readers skip fields they do not know;
//! - every field added after v1 is optional or has a default, so old bytes still decode;
//! - enums are lowercase strings (task statuses are upper case, as operators read them).
//!
//! Times are milliseconds since the Unix epoch (`*_ms`); durations are seconds as floats
//! (`*_s`) unless the name says otherwise.

use crate::ids::{NodeId, RunId, WorkloadId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &u64) -> bool {
    *n == 0
}
fn default_true() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

// ---------------------------------------------------------------------------------------------
// Nodes

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs workloads.
    Node,
    /// Aggregates fleet state, places workloads and runs.
    Coordinator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Coordinator => "coordinator",
        }
    }
}

/// What a node is willing to do right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Accepting workloads.
    #[default]
    Active,
    /// Draining: refuses new workloads.
    Lameduck,
    /// Shutting down.
    Stopping,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Lameduck => "lameduck",
            NodeState::Stopping => "stopping",
        }
    }
}

/// Reply to `node.<node>.ping` and `nodes.ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: NodeId,
    pub version: String,
    /// Protocol version the node speaks (`v1`).
    #[serde(default)]
    pub api: String,
    #[serde(default)]
    pub hostname: String,
    pub started_at_ms: u64,
    pub uptime_s: f64,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub state: NodeState,
    /// The cgroup backend in use (`v2`, `v1`, `none`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeEventKind {
    Started,
    Stopping,
    Lameduck,
    Active,
}

impl NodeEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeEventKind::Started => "started",
            NodeEventKind::Stopping => "stopping",
            NodeEventKind::Lameduck => "lameduck",
            NodeEventKind::Active => "active",
        }
    }
}

/// Published on `evt.<node>.node.<kind>` through JetStream (`HERD_EVENTS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// Unique per event; also the JetStream `Nats-Msg-Id`, so a retried publish is stored once.
    pub event_id: String,
    pub node_id: NodeId,
    pub kind: NodeEventKind,
    pub ts_ms: u64,
    #[serde(default)]
    pub version: String,
    /// When this instance of the daemon started; tells restarts apart.
    #[serde(default)]
    pub started_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `lameduck` request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LameduckRequest {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_s: Option<f64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stop_workloads: bool,
}

/// Empty request body (ping, list without a filter). Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// Acknowledgement carried in `Reply::data` for commands with nothing else to say.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Workloads

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
        }
    }
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
}

// ---------------------------------------------------------------------------------------------
// Heartbeats

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GpuInfo {
    pub index: u32,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uuid: String,
    /// Total memory in bytes.
    #[serde(default)]
    pub memory: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Capacity {
    pub cpus: f64,
    /// Total memory in bytes.
    pub memory: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuInfo>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Whole-node CPU, 100 = one core.
    pub cpu_percent: f64,
    /// Bytes available (MemAvailable).
    pub memory_available: u64,
    #[serde(default)]
    pub load_avg: [f64; 3],
}

/// One line of a heartbeat's workload inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSummary {
    pub workload_id: WorkloadId,
    pub state: WorkloadState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rep: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

/// Published on `hb.<node>` every interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: NodeId,
    /// Increments by one per heartbeat; restarts at 1 with the daemon.
    pub seq: u64,
    pub interval_ms: u64,
    pub ts_ms: u64,
    pub started_at_ms: u64,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub uptime_s: f64,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub state: NodeState,
    #[serde(default)]
    pub capacity: Capacity,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub workloads: Vec<WorkloadSummary>,
}

// ---------------------------------------------------------------------------------------------
// Telemetry and logs

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GpuSample {
    pub index: u32,
    #[serde(default)]
    pub utilization_percent: f64,
    /// Bytes of GPU memory used by the workload's processes.
    #[serde(default)]
    pub memory_used: u64,
}

/// One workload's measurements in one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSample {
    pub workload_id: WorkloadId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// 100 = one full core, as `top` shows it. Absent on the first sample and after a counter
    /// reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    #[serde(default)]
    pub cpu_usage_us: u64,
    #[serde(default)]
    pub memory_current: u64,
    /// current − inactive_file.
    #[serde(default)]
    pub memory_working_set: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    #[serde(default)]
    pub pids: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_read_bps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_write_bps: Option<f64>,
    #[serde(default)]
    pub uptime_s: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub oom_kills: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuSample>,
    /// Set when this sample could not be taken; the other fields are then zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Published on `telemetry.<node>` (and stream `HERD_TELEMETRY`) every telemetry interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryBatch {
    pub node_id: NodeId,
    pub seq: u64,
    pub ts_ms: u64,
    /// How long sampling every workload took, in microseconds.
    pub collection_us: u64,
    #[serde(default)]
    pub samples: Vec<WorkloadSample>,
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
}

// ---------------------------------------------------------------------------------------------
// Cluster queries (coordinator)

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

// ---------------------------------------------------------------------------------------------
// Runs

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
