//! Shared helpers for herd's benches (the criterion benches are in `benches/`, the end-to-end
//! measurements of `scripts/bench` in `src/bin/e2e.rs`).

use futures::FutureExt;
use herd_actors::cgroup::{CgroupBackend, CgroupVersion, WorkloadCgroup};
use herd_actors::driver::exec::ExecDriver;
use herd_actors::driver::{Driver, Launch, Running};
use herd_actors::workload::validate::{validate, ExecPolicy, Resolved};
use herd_bus::{NodeId, WorkloadId, WorkloadSpec};
use std::sync::Arc;

/// `n` idle workloads (`sleep`) started by herd's exec driver, each in a cgroup of its own
/// under `herd-bench-<pid>`; killed and removed on drop.
pub struct IdleWorkloads {
    pub backend: Arc<dyn CgroupBackend>,
    pub workloads: Vec<(WorkloadId, u32, Arc<dyn Running>)>,
}

impl IdleWorkloads {
    /// Needs a tokio runtime (the exec driver spawns with tokio::process).
    pub fn start(n: usize) -> IdleWorkloads {
        let root = format!("herd-bench-{}", std::process::id());
        let (backend, warning) = herd_actors::cgroup::detect("auto", &root);
        if let Some(w) = warning {
            eprintln!("bench: {w}");
        }
        let driver = ExecDriver::new(backend.clone());
        let spec = WorkloadSpec {
            command: vec!["sleep".into(), "3600".into()],
            user: Some("root".into()),
            ..Default::default()
        };
        let policy = ExecPolicy {
            allow_root: true,
            ..Default::default()
        };
        let resolved = validate(&spec, &policy, 1024.0).expect("sleep resolves");
        let node = NodeId::new("bench").unwrap();
        let mut workloads = Vec::with_capacity(n);
        for i in 0..n {
            let id = WorkloadId::new(format!("b{i:05}")).unwrap();
            let started = driver
                .launch(Launch {
                    workload_id: id.clone(),
                    node_id: node.clone(),
                    spec: spec.clone(),
                    resolved: Resolved::Exec(resolved.clone()),
                    output_dir: None,
                })
                .now_or_never()
                .expect("exec starts at once")
                .unwrap_or_else(|e| panic!("cannot start workload {i}: {e}"));
            workloads.push((id, started.pid, started.handle));
        }
        IdleWorkloads { backend, workloads }
    }

    pub fn version(&self) -> CgroupVersion {
        self.backend.version()
    }

    pub fn samplers(&self) -> Vec<(WorkloadId, Arc<dyn WorkloadCgroup>)> {
        self.workloads
            .iter()
            .map(|(id, _, h)| {
                (
                    id.clone(),
                    h.sampler().expect("exec workloads have a cgroup"),
                )
            })
            .collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.workloads.iter().map(|(_, pid, _)| *pid).collect()
    }
}

impl Drop for IdleWorkloads {
    fn drop(&mut self) {
        for (_, _, h) in &self.workloads {
            h.kill();
        }
        for (_, pid, _) in &self.workloads {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(*pid as i32), None);
        }
        for (_, _, h) in &self.workloads {
            if let Some(cgroup) = h.sampler() {
                let _ = cgroup.remove();
            }
        }
        self.backend.remove_root_if_empty();
    }
}
