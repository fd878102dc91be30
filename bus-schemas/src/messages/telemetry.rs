//! Telemetry: a node's heartbeat (capacity, usage, workload inventory) and the per-workload
//! measurement batches.

use super::{is_zero, Labels, NodeState, Role, WorkloadState};
use crate::ids::{NodeId, RunId, WorkloadId};
use serde::{Deserialize, Serialize};

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
    /// MIG mode enabled (NVML); absent when unknown or declared in the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig: Option<bool>,
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
    /// What the node has handed out; absent from nodes older than allocations (placement then
    /// goes by live usage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<Allocation>,
}

/// A node's allocations: capacity less what is reserved for the system is allocatable; what
/// its pending, starting and running workloads asked for (their limits, or the default
/// request of a workload without) is allocated.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Allocation {
    pub allocatable_cpus: f64,
    pub allocatable_memory: u64,
    pub allocated_cpus: f64,
    pub allocated_memory: u64,
    /// Whether the node admits past allocatable for this resource.
    #[serde(default, skip_serializing_if = "super::is_false")]
    pub overcommit_cpu: bool,
    #[serde(default, skip_serializing_if = "super::is_false")]
    pub overcommit_memory: bool,
    /// Whole cores not pinned by any workload and not reserved: what `cpuset_cpus` can have.
    #[serde(default)]
    pub cores_free: u32,
    /// GPUs no workload has, by UUID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus_free: Vec<String>,
}

impl Allocation {
    /// CPUs that can still be handed out (negative when overcommitted).
    pub fn free_cpus(&self) -> f64 {
        self.allocatable_cpus - self.allocated_cpus
    }

    /// Memory that can still be handed out.
    pub fn free_memory(&self) -> u64 {
        self.allocatable_memory
            .saturating_sub(self.allocated_memory)
    }
}

// ---------------------------------------------------------------------------------------------
// Telemetry

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
