//! What a workload leaves behind: what it used (measured by its node from its cgroup at the
//! end), the files a run task left in its output directory (uploaded to the object store
//! bucket [`RESULTS_BUCKET`]), the metrics it reported, and the statistics over a run.

use crate::ids::{NodeId, RunId, WorkloadId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// JetStream object store bucket holding run task outputs, as `RUN/NODE/TASK/PATH`.
pub const RESULTS_BUCKET: &str = "herd-results";
/// The file a task may write in its output directory: an object of metric name → number.
pub const METRICS_FILE: &str = "metrics.json";

/// The JetStream stream behind [`RESULTS_BUCKET`], by the object store's convention
/// (`OBJ_<bucket>`, chunks on `$O.<bucket>.C.<nuid>`, object infos on `$O.<bucket>.M.<name>`).
pub const RESULTS_STREAM: &str = "OBJ_herd-results";

/// The object name of `path` (relative, `/`-separated) in task `task` of `run` on `node`.
pub fn result_object_name(run: &RunId, node: &NodeId, task: &str, path: &str) -> String {
    format!("{run}/{node}/{task}/{path}")
}

/// A run task's directory in [`RESULTS_BUCKET`] (the `TASK` of `RUN/NODE/TASK/…`) and in what
/// `herdctl run fetch` writes: its workload's name (`task` without one) and repetition,
/// `name-rep`. Characters other than `[A-Za-z0-9._-]` become `_`, so that it is one path
/// segment whatever the name.
pub fn result_task_name(name: Option<&str>, rep: u32) -> String {
    let name = name.filter(|n| !n.is_empty()).unwrap_or("task");
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{rep}")
}

/// What a settled workload used, read from its cgroup's counters when it ended (not estimated
/// from telemetry ticks). A figure the kernel does not keep is absent, and `notes` says why.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResourceSummary {
    /// CPU time in user mode, seconds.
    #[serde(default)]
    pub cpu_user_s: f64,
    /// CPU time in kernel mode, seconds.
    #[serde(default)]
    pub cpu_system_s: f64,
    /// (user + system) / wall time × 100: 100 is one full core on average.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_mean_pct: Option<f64>,
    /// The most memory it held at once (v2 `memory.peak`, v1 `memory.max_usage_in_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak_bytes: Option<u64>,
    /// The most processes it had at once (v2 `pids.peak`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_peak: Option<u64>,
    #[serde(default)]
    pub io_read_bytes: u64,
    #[serde(default)]
    pub io_write_bytes: u64,
    #[serde(default)]
    pub oom_kills: u64,
    /// Mean GPU utilisation of its processes, where NVML reported any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_util_mean_pct: Option<f64>,
    /// The most GPU memory its processes held, where NVML reported any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_peak_bytes: Option<u64>,
    /// Why a figure is missing (e.g. "memory.peak needs Linux 5.19").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One uploaded file of a task's output directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultObject {
    /// Path relative to the output directory, `/`-separated.
    pub path: String,
    /// Its name in [`RESULTS_BUCKET`]: `RUN/NODE/TASK/PATH`.
    pub object: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of its bytes.
    pub sha256: String,
}

/// What a run task left: its files as uploaded, and the metrics it reported.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskResults {
    #[serde(default)]
    pub objects: Vec<ResultObject>,
    /// Bytes uploaded.
    #[serde(default)]
    pub bytes: u64,
    /// The output was larger than the node's `results.max_bytes`: `objects` is what was kept.
    #[serde(default, skip_serializing_if = "super::is_false")]
    pub truncated: bool,
    /// Files left out (over the cap, or unreadable), with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// From the task's `metrics.json`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// What was wrong with `metrics.json`, if it was there but unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_error: Option<String>,
}

/// `evt.<node>.results`: a run task's output was uploaded (JetStream `HERD_EVENTS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsEvent {
    pub event_id: String,
    pub node_id: NodeId,
    pub run_id: RunId,
    pub workload_id: WorkloadId,
    /// The task's directory name in the bucket (`RUN/NODE/TASK/…`).
    pub task: String,
    pub ts_ms: u64,
    pub results: TaskResults,
}

/// Statistics of one metric over repetitions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricStats {
    pub n: u32,
    pub mean: f64,
    pub median: f64,
    /// Sample standard deviation (n − 1); 0 for one value.
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    /// stddev / mean; absent when the mean is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv: Option<f64>,
    /// The values, in repetition order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f64>,
}

/// Below this p-value a difference is called significant, unless a comparison asks otherwise.
pub const DEFAULT_SIGNIFICANCE_LEVEL: f64 = 0.05;

/// Statistics of one workload of a run over its completed tasks: on one node, or across nodes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StatsGroup {
    /// The workload's name (`task` when the spec has none).
    pub workload: String,
    /// The node; absent for the group across all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<NodeId>,
    /// Completed tasks: the only ones counted.
    #[serde(default)]
    pub completed: u32,
    /// Tasks that did not complete (failed, stopped, lost, skipped, not settled yet).
    #[serde(default)]
    pub left_out: u32,
    /// Per metric of the tasks' `metrics.json`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, MetricStats>,
    /// Per figure measured by the nodes: `duration_s`, `cpu_s`, `cpu_mean_pct`,
    /// `memory_peak_bytes`, `io_read_bytes`, `io_write_bytes`, … (see docs/bus.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, MetricStats>,
    /// What was left out of the figures and why (e.g. a task's unreadable `metrics.json`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Reply data of `cluster.run.summary`: per workload, the group across nodes first, then one
/// group per node when the workload ran on more than one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    pub run_id: RunId,
    pub state: super::RunState,
    #[serde(default)]
    pub groups: Vec<StatsGroup>,
}

/// `cluster.run.compare` request: run B against run A.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCompare {
    pub run_a: RunId,
    pub run_b: RunId,
    /// Significance level, in (0, 1); default [`DEFAULT_SIGNIFICANCE_LEVEL`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
}

/// Where a compared figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FigureKind {
    /// Reported by the task in its `metrics.json`.
    Metric,
    /// Measured by the node (duration, CPU, memory, IO).
    Resource,
}

impl FigureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FigureKind::Metric => "metric",
            FigureKind::Resource => "resource",
        }
    }
}

/// One figure of one workload in two runs, across nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    pub workload: String,
    pub kind: FigureKind,
    pub metric: String,
    /// In run A; absent when run A has no value of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<MetricStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<MetricStats>,
    /// Relative change of the mean, (b − a) / a; absent when a's mean is 0 or a side is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<f64>,
    /// Two-sided p-value of the test; absent when no test could be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// p < alpha.
    #[serde(default)]
    pub significant: bool,
    /// The test made: `welch_t`, or `none`.
    pub test: String,
    /// Why there is no p-value, or why it is 0 or 1 exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Reply data of `cluster.run.compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunComparison {
    pub run_a: RunId,
    pub run_b: RunId,
    pub alpha: f64,
    #[serde(default)]
    pub rows: Vec<MetricComparison>,
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_are_one_path_segment() {
        assert_eq!(result_task_name(Some("bench"), 2), "bench-2");
        assert_eq!(result_task_name(None, 1), "task-1");
        assert_eq!(result_task_name(Some(""), 3), "task-3");
        assert_eq!(result_task_name(Some("a/../b c"), 1), "a_.._b_c-1");
        assert_eq!(result_task_name(Some(".."), 1), "..-1");
        let run = RunId::new("r1").unwrap();
        let node = NodeId::new("n1").unwrap();
        assert_eq!(
            result_object_name(&run, &node, "bench-2", "out/data.bin"),
            "r1/n1/bench-2/out/data.bin"
        );
    }
}
