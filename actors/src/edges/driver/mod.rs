//! Workload drivers: how a workload's processes are started, signalled, killed and released.
//! The executor, the lifecycle, telemetry and logs are the same for every driver; `exec`
//! forks into herd's own cgroup, `docker` asks the Docker engine for a container.

pub mod docker;
pub mod exec;
pub mod inotify;
mod tail;

use crate::cores::workload::lifecycle::Exit;
use crate::cores::workload::validate::Resolved;
use crate::edges::cgroup::{FinalCounters, WorkloadCgroup};
use futures::future::LocalBoxFuture;
use herd_bus::{LogStream, NodeId, WorkloadId, WorkloadSpec, WorkloadStatus};
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

/// Inside the working directory: the workload's TMPDIR and a run task's output directory.
pub const TMP_SUBDIR: &str = "tmp";
pub const OUTPUT_SUBDIR: &str = "output";

impl Launch {
    /// The variables herd gives every workload, with `work_dir` as the workload sees it (the
    /// path on the node, or where a container has it mounted): HOME, TMPDIR and HERD_WORK_DIR
    /// point into it, and a run task's HERD_OUTPUT_DIR is inside it. The spec's own `env`
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
        env
    }
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
