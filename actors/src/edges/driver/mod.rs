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
use herd_bus::{LogStream, NodeId, WorkloadId, WorkloadSpec};
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

/// A workload whose main process runs.
pub struct Started {
    pub pid: u32,
    pub handle: Arc<dyn Running>,
    /// Resolves once the main process has ended: how, and whether an OOM kill ended it; or,
    /// when that cannot be known (its supervisor vanished), why the workload is lost.
    pub exit: LocalBoxFuture<'static, Result<(Exit, bool), String>>,
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

/// Starts workloads of one kind.
pub trait Driver {
    /// Starts `launch`; the error is the reason the workload failed to start. A driver that
    /// starts synchronously (exec) returns a future that is already complete.
    fn launch(&self, launch: Launch) -> LocalBoxFuture<'static, Result<Started, String>>;
}
