//! Workload drivers: how a workload's processes are started, signalled, killed and released.
//! The executor, the lifecycle, telemetry and logs are the same for every driver; `exec`
//! forks into herd's own cgroup, `docker` asks the Docker engine for a container.

pub mod docker;
pub mod exec;
pub mod inotify;
mod spare;
mod tail;

use crate::cores::workload::lifecycle::Exit;
use crate::cores::workload::validate::Resolved;
use crate::edges::cgroup::{FinalCounters, WorkloadCgroup};
use futures::future::LocalBoxFuture;
use herd_bus::{GpuInfo, LogStream, NodeId, WorkloadId, WorkloadSpec, WorkloadStatus};
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::sync::Arc;

/// What a driver needs to start one workload.
#[derive(Debug, Clone)]
pub struct Launch {
    pub workload_id: WorkloadId,
    pub node_id: NodeId,
    pub spec: WorkloadSpec,
    pub resolved: Resolved,
    /// The workload's own working directory on this node (its default cwd, HOME and TMPDIR),
    /// already created; kept across restarts of the workload, removed with its record.
    pub work_dir: PathBuf,
    /// A run task's results directory, inside `work_dir`, already created.
    pub output_dir: Option<PathBuf>,
    /// The whole cores and GPUs this node assigned it (its cpuset; its visible GPUs).
    pub assigned: herd_bus::Assigned,
}

/// Inside the working directory: the workload's TMPDIR, a run task's output directory, and
/// where its inputs are materialized.
pub const TMP_SUBDIR: &str = "tmp";
pub const OUTPUT_SUBDIR: &str = "output";
pub use crate::cores::workload::inputs::INPUT_SUBDIR;

impl Launch {
    /// The variables herd gives every workload, with `work_dir` as the workload sees it (the
    /// path on the node, or where a container has it mounted): HOME, TMPDIR and HERD_WORK_DIR
    /// point into it, and a run task's HERD_OUTPUT_DIR and a workload's HERD_INPUT_DIR (when it
    /// has inputs) are inside it. The spec's own `env`
    /// comes after and wins.
    pub fn herd_env(&self, work_dir: &str) -> Vec<(String, String)> {
        let mut env = vec![
            ("HERD_NODE".to_string(), self.node_id.to_string()),
            ("HERD_WORKLOAD_ID".to_string(), self.workload_id.to_string()),
            ("HERD_WORK_DIR".to_string(), work_dir.to_string()),
            ("HOME".to_string(), work_dir.to_string()),
            ("TMPDIR".to_string(), format!("{work_dir}/{TMP_SUBDIR}")),
        ];
        let output_dir = self
            .output_dir
            .as_ref()
            .map(|_| format!("{work_dir}/{OUTPUT_SUBDIR}"));
        if let Some(run) = &self.spec.run_id {
            env.push(("HERD_RUN_ID".into(), run.to_string()));
        }
        if let Some(rep) = self.spec.rep {
            env.push(("HERD_REP".into(), rep.to_string()));
        }
        if let Some(dir) = output_dir {
            env.push(("HERD_OUTPUT_DIR".into(), dir));
        }
        if !self.spec.inputs.is_empty() {
            env.push((
                "HERD_INPUT_DIR".into(),
                format!("{work_dir}/{INPUT_SUBDIR}"),
            ));
        }
        env
    }
}

/// The variables that name a workload's GPUs, to CUDA and to NVIDIA's container runtime.
pub const GPU_ENV: [&str; 2] = ["CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"];

impl Launch {
    /// [`GPU_ENV`], each the UUIDs of the GPUs assigned to it joined by `,`. Drivers set them
    /// after the spec's `env`, so herd's assignment wins over the spec's own values of these
    /// names: the workload may use those GPUs and no others. A workload without GPUs gets none
    /// of them from herd (its spec's own values, if any, pass as given).
    pub fn gpu_env(&self) -> Vec<(String, String)> {
        if self.assigned.gpus.is_empty() {
            return vec![];
        }
        let uuids = self.assigned.gpus.join(",");
        GPU_ENV
            .iter()
            .map(|name| (name.to_string(), uuids.clone()))
            .collect()
    }
}

/// `env` with each name once: a later entry replaces an earlier one of the same name, in the
/// place the name first had (a process's `getenv` takes the first of duplicates).
pub fn merge_env(env: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut merged: Vec<(String, String)> = vec![];
    for (name, value) in env {
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => merged.push((name, value)),
        }
    }
    merged
}

/// The device minors (`/dev/nvidia<minor>`) of the GPUs `uuids`, from the node's GPU inventory:
/// a GPU's `index` (NVML's, or the declared one) is its minor.
pub fn gpu_minors(uuids: &[String], inventory: &[GpuInfo]) -> Result<Vec<u32>, String> {
    uuids
        .iter()
        .map(|uuid| {
            inventory
                .iter()
                .find(|g| g.uuid == *uuid)
                .map(|g| g.index)
                .ok_or_else(|| {
                    let known: Vec<&str> = inventory.iter().map(|g| g.uuid.as_str()).collect();
                    format!(
                        "GPU {uuid} is assigned to the workload but not in this node's GPU inventory ({})",
                        if known.is_empty() {
                            "which is empty".to_string()
                        } else {
                            known.join(", ")
                        }
                    )
                })
        })
        .collect()
}

/// A stream of the workload's output, read by the executor's log pump.
pub type Output = Box<dyn tokio::io::AsyncRead + Unpin>;

/// Why a driver could not start a workload, or can no longer follow one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// It did not start; the text names what failed (the workload is `failed`).
    #[error("{0}")]
    Launch(String),
    /// Nothing of it can be followed any more and how it ended is unknown (it is `lost`).
    #[error("{0}")]
    Lost(String),
}

/// A workload whose main process runs.
pub struct Started {
    pub pid: u32,
    pub handle: Arc<dyn Running>,
    /// Resolves once the main process has ended; or, when how it ended cannot be known (its
    /// supervisor vanished), with why the workload is lost.
    pub exit: LocalBoxFuture<'static, Result<Exit, DriverError>>,
    pub output: Vec<(LogStream, Output)>,
}

/// The running side of a workload, as the lifecycle's effects need it.
pub trait Running: std::fmt::Debug {
    /// Sends `signal` to the workload (every process of it, for exec).
    fn signal(&self, signal: Signal);
    /// Kills whatever is left of the workload now.
    fn kill(&self);
    /// What telemetry samples: the workload's cgroup, when it can be read.
    fn sampler(&self) -> Option<Arc<dyn WorkloadCgroup>>;
    /// Its cgroup's counters as it ends, for its resource summary; None when they cannot be
    /// read (a container's cgroup is gone with it).
    fn final_counters(&self) -> Option<FinalCounters> {
        self.sampler().and_then(|c| c.final_counters().ok())
    }
    /// Removes what is left (the cgroup, the container); resolves when done.
    fn release(&self) -> LocalBoxFuture<'static, ()>;
}

/// What a restarted herdd finds of a workload an earlier herdd started.
pub enum Recovered {
    /// It is still there (running, or ended with its exit readable): followed as if launched.
    Found(Started),
    /// It ended while herdd was away and nothing of it is left but how it ended.
    Ended(Exit),
    /// Nothing of it can be followed; why.
    Lost(String),
}

/// Starts workloads of one kind and finds them again after a restart of herdd (as Nomad's
/// driver plugins do with StartTask and RecoverTask).
pub trait Driver {
    /// Starts `launch`. A driver that starts synchronously (exec) returns a future that is
    /// already complete.
    fn launch(&self, launch: Launch) -> LocalBoxFuture<'static, Result<Started, DriverError>>;

    /// After a restart: what is left of each unsettled workload of this driver, from its saved
    /// status. Whatever of this node the driver finds with no record is removed. Workloads the
    /// driver cannot tell about (an engine that does not answer) are left out and stay unknown.
    fn recover(
        &self,
        records: Vec<WorkloadStatus>,
    ) -> LocalBoxFuture<'static, Vec<(WorkloadStatus, Recovered)>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, uuid: &str) -> GpuInfo {
        GpuInfo {
            index,
            uuid: uuid.into(),
            ..Default::default()
        }
    }

    #[test]
    fn gpus_are_named_by_uuid_and_found_by_minor() {
        let inventory = [gpu(0, "GPU-a"), gpu(1, "GPU-b"), gpu(2, "GPU-c")];
        let uuids = ["GPU-c".to_string(), "GPU-a".to_string()];
        assert_eq!(gpu_minors(&uuids, &inventory), Ok(vec![2, 0]));
        assert_eq!(
            gpu_minors(&["GPU-x".to_string()], &inventory),
            Err("GPU GPU-x is assigned to the workload but not in this node's GPU inventory (GPU-a, GPU-b, GPU-c)".into())
        );
        assert_eq!(
            gpu_minors(&["GPU-x".to_string()], &[]),
            Err("GPU GPU-x is assigned to the workload but not in this node's GPU inventory (which is empty)".into())
        );
    }

    #[test]
    fn later_env_entries_replace_earlier_ones_in_place() {
        let env = [
            ("A", "1"),
            ("CUDA_VISIBLE_DEVICES", "0"),
            ("B", "2"),
            ("CUDA_VISIBLE_DEVICES", "GPU-a"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let merged = merge_env(env);
        let names: Vec<&str> = merged.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["A", "CUDA_VISIBLE_DEVICES", "B"]);
        assert_eq!(merged[1].1, "GPU-a");
    }
}
