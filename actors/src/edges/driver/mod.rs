//! Workload drivers: how a workload's processes are started, signalled, killed and released.
//! The executor, the lifecycle, telemetry and logs are the same for every driver; `exec`
//! forks into herd's own cgroup, `docker` asks the Docker engine for a container.

pub mod docker;
pub mod exec;
pub mod inotify;

use crate::cores::workload::lifecycle::Exit;
use crate::cores::workload::validate::Resolved;
use crate::edges::cgroup::WorkloadCgroup;
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
    /// A run task's own results directory on this node, already created.
    pub output_dir: Option<PathBuf>,
}

impl Launch {
    /// The variables herd gives every workload; `output_dir` as the workload sees it.
    pub fn herd_env(&self, output_dir: Option<&str>) -> Vec<(String, String)> {
        let mut env = vec![
            ("HERD_NODE".to_string(), self.node_id.to_string()),
            ("HERD_WORKLOAD_ID".to_string(), self.workload_id.to_string()),
        ];
        if let Some(run) = &self.spec.run_id {
            env.push(("HERD_RUN_ID".into(), run.to_string()));
        }
        if let Some(rep) = self.spec.rep {
            env.push(("HERD_REP".into(), rep.to_string()));
        }
        if let Some(dir) = output_dir {
            env.push(("HERD_OUTPUT_DIR".into(), dir.to_string()));
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
    /// Removes what is left (the cgroup, the container); resolves when done.
    fn release(&self) -> LocalBoxFuture<'static, ()>;
}

/// What a restarted herdd finds of a workload an earlier herdd started.
pub enum Recovered {
    /// It is still there (running, or ended with its exit readable): followed as if launched.
    Found(Started),
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
