//! herd's exec driver without NATS or actors, for the baselines of the start latency and the
//! spawn throughput: launches made as herdd makes them (cgroup with the bench's limits, the
//! supervisor, placement, exec of `true`).

use anyhow::Result;
use herd_actors::cores::workload::validate::{validate, Resolved, ResolvedSpec};
use herd_actors::edges::cgroup::CgroupBackend;
use herd_actors::edges::driver::{exec::ExecDriver, Launch, TMP_SUBDIR};
use std::sync::Arc;

pub(crate) struct BenchDriver {
    pub backend: Arc<dyn CgroupBackend>,
    pub driver: ExecDriver,
    dirs: tempfile::TempDir,
    spec: herd_bus::WorkloadSpec,
    resolved: ResolvedSpec,
}

impl BenchDriver {
    /// A driver whose cgroups go under `herd-bench-<tag>-<pid>`.
    pub(crate) fn new(tag: &str) -> Result<BenchDriver> {
        let (backend, _) = herd_actors::edges::cgroup::detect(
            "auto",
            &format!("herd-bench-{tag}-{}", std::process::id()),
        );
        let dirs = tempfile::tempdir()?;
        // What the executor makes before a launch: the working directory and its tmp/.
        std::fs::create_dir_all(dirs.path().join(TMP_SUBDIR))?;
        let driver = ExecDriver::new(
            backend.clone(),
            vec![herd_tests::workspace_bin("herd-shim").into_os_string()],
            dirs.path().to_path_buf(),
        );
        let spec = herd_bus::WorkloadSpec {
            command: vec!["true".into()],
            limits: bench_limits(),
            ..Default::default()
        };
        let resolved = validate(&spec, &Default::default(), 1024.0)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        Ok(BenchDriver {
            backend,
            driver,
            dirs,
            spec,
            resolved,
        })
    }

    /// The launch of workload `id`.
    pub(crate) fn launch(&self, id: String) -> Result<Launch> {
        Ok(Launch {
            workload_id: herd_bus::WorkloadId::new(id)?,
            node_id: herd_bus::NodeId::new("bench")?,
            spec: self.spec.clone(),
            resolved: Resolved::Exec(self.resolved.clone()),
            work_dir: self.dirs.path().to_path_buf(),
            output_dir: None,
            assigned: Default::default(),
        })
    }
}

impl Drop for BenchDriver {
    fn drop(&mut self) {
        self.backend.remove_root_if_empty();
    }
}

/// The limits every bench start carries: a cgroup with cpu, memory and pids limits.
pub(crate) fn bench_limits() -> herd_bus::Limits {
    herd_bus::Limits {
        cpu: Some(0.1),
        memory: Some(32 << 20),
        pids: Some(16),
        ..Default::default()
    }
}
