//! Shared helpers for herd's benches (the criterion benches are in `benches/`, the end-to-end
//! measurements of `scripts/bench` in `src/bin/e2e.rs`).

use herd_actors::edges::cgroup::{CgroupBackend, CgroupVersion, WorkloadCgroup};
use herd_bus::{Limits, WorkloadId};
use std::sync::Arc;

/// `n` idle workloads (`sleep`), each in a cgroup of its own under `herd-bench-<pid>`, made by
/// herd's cgroup backend as for a workload; killed and removed on drop.
pub struct IdleWorkloads {
    pub backend: Arc<dyn CgroupBackend>,
    pub workloads: Vec<(WorkloadId, u32, Arc<dyn WorkloadCgroup>)>,
    children: Vec<std::process::Child>,
}

impl IdleWorkloads {
    pub fn start(n: usize) -> IdleWorkloads {
        let root = format!("herd-bench-{}", std::process::id());
        let (backend, warning) = herd_actors::edges::cgroup::detect("auto", &root);
        if let Some(w) = warning {
            eprintln!("bench: {w}");
        }
        let mut workloads = Vec::with_capacity(n);
        let mut children = Vec::with_capacity(n);
        for i in 0..n {
            let id = WorkloadId::new(format!("b{i:05}")).unwrap();
            let cgroup = backend
                .create(&format!("wl-{id}"), &Limits::default(), &Default::default())
                .unwrap_or_else(|e| panic!("cannot create a cgroup for workload {i}: {e}"));
            let child = std::process::Command::new("sleep")
                .arg("3600")
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start workload {i}: {e}"));
            for procs in cgroup.placement_files() {
                std::fs::write(&procs, child.id().to_string()).unwrap_or_else(|e| {
                    panic!("cannot move {} into {}: {e}", child.id(), procs.display())
                });
            }
            cgroup.set_leader(child.id());
            workloads.push((id, child.id(), cgroup));
            children.push(child);
        }
        IdleWorkloads {
            backend,
            workloads,
            children,
        }
    }

    pub fn version(&self) -> CgroupVersion {
        self.backend.version()
    }

    pub fn samplers(&self) -> Vec<(WorkloadId, Arc<dyn WorkloadCgroup>)> {
        self.workloads
            .iter()
            .map(|(id, _, cgroup)| (id.clone(), cgroup.clone()))
            .collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.workloads.iter().map(|(_, pid, _)| *pid).collect()
    }
}

impl Drop for IdleWorkloads {
    fn drop(&mut self) {
        for (_, _, cgroup) in &self.workloads {
            let _ = cgroup.kill_all();
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (_, _, cgroup) in &self.workloads {
            let _ = cgroup.remove();
        }
        self.backend.remove_root_if_empty();
    }
}
