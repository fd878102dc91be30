//! After a restart of herdd: the records an earlier herdd kept, what each driver recovered of
//! the workloads that had not settled, and working directories nothing refers to any more.

use super::WorkloadExecutor;
use crate::edges::clock::now_ms;
use crate::edges::driver::Recovered;
use actix::prelude::*;
use herd_bus::{WorkloadId, WorkloadStatus};

impl WorkloadExecutor {
    /// The saved status of every workload an earlier herdd kept a record of.
    pub(super) fn records(&self) -> Vec<WorkloadStatus> {
        let Ok(dir) = std::fs::read_dir(self.cfg.state_dir.join("workloads")) else {
            return vec![];
        };
        dir.filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect()
    }

    /// Working directories of workloads with no record left (forgotten while a directory's
    /// removal was still queued when herdd stopped).
    pub(super) fn remove_orphan_work_dirs(&self) {
        let Ok(dirs) = std::fs::read_dir(self.cfg.state_dir.join("work")) else {
            return;
        };
        for dir in dirs.filter_map(|e| e.ok()) {
            let name = dir.file_name();
            let known = WorkloadId::new(name.to_string_lossy().to_string())
                .is_ok_and(|id| self.table.get(&id).is_some() || self.record_path(&id).exists());
            if !known {
                self.records.remove_dir(dir.path());
            }
        }
    }

    /// Follows again what a driver recovered after a restart; reports what it lost.
    pub(super) fn adopt(
        &mut self,
        found: Vec<(WorkloadStatus, Recovered)>,
        ctx: &mut Context<Self>,
    ) {
        for (status, recovered) in found {
            let (id, fx) = self.table.adopt(status, now_ms());
            self.apply(&id, fx, ctx);
            match recovered {
                Recovered::Found(started) => {
                    tracing::info!(workload = %id, pid = started.pid, "adopting a workload after a restart");
                    self.launched(&id, Some(1), Ok(started), ctx);
                }
                Recovered::Ended(exit) => {
                    tracing::info!(workload = %id, ?exit, "a workload ended while herdd was away");
                    self.input(&id, None, ctx, |lc| lc.on_exit(exit, now_ms()));
                }
                Recovered::Lost(reason) => {
                    tracing::warn!(workload = %id, %reason, "a workload of the previous herdd is lost");
                    self.input(&id, None, ctx, |lc| lc.on_lost(reason, now_ms()));
                }
            }
        }
    }
}
