//! Starting a workload: its directories, its inputs (fetched off the mailbox), then its driver;
//! and the driver's answer.

use super::WorkloadExecutor;
use crate::cores::workload::validate::validate_any;
use crate::edges::clock::now_ms;
use crate::edges::driver::{DriverError, Launch, Started, INPUT_SUBDIR};
use crate::edges::inputs;
use actix::prelude::*;
use futures::FutureExt;
use herd_bus::WorkloadId;

impl WorkloadExecutor {
    /// Asks the workload's driver to start it (its lifecycle is `starting`), once its inputs
    /// are in its input directory.
    pub(super) fn launch(&mut self, id: &WorkloadId, ctx: &mut Context<Self>) {
        let launch = match self.launch_for(id) {
            Ok(l) => l,
            Err(reason) => return self.launched(id, None, Err(DriverError::Launch(reason)), ctx),
        };
        let Some(generation) = self.table.next_generation(id) else {
            return;
        };
        if launch.spec.inputs.is_empty() {
            return self.drive(id, generation, launch, ctx);
        }
        // Fetched and copied off the mailbox: other workloads' requests are answered meanwhile.
        let materialize = inputs::materialize(
            self.client.clone(),
            self.inputs.clone(),
            launch.work_dir.join(INPUT_SUBDIR),
            launch.spec.inputs.clone(),
        );
        let id = id.clone();
        ctx.spawn(
            materialize
                .into_actor(self)
                .map(move |materialized, act, ctx| match materialized {
                    Ok(m) => {
                        tracing::info!(workload = %id, files = m.files, downloaded = m.downloaded, bytes = m.bytes, "inputs in place");
                        act.drive(&id, generation, launch, ctx)
                    }
                    Err(reason) => act.launched(
                        &id,
                        Some(generation),
                        Err(DriverError::Launch(reason)),
                        ctx,
                    ),
                }),
        );
    }

    /// Hands `launch` to its driver.
    fn drive(&mut self, id: &WorkloadId, generation: u64, launch: Launch, ctx: &mut Context<Self>) {
        if !self.table.is_current(id, generation) {
            return; // forgotten or superseded while its inputs were fetched
        }
        let mut started = self.driver(launch.spec.driver).launch(launch);
        // exec starts at once; a container is started by requests to the engine.
        match started.as_mut().now_or_never() {
            Some(result) => self.launched(id, Some(generation), result, ctx),
            None => {
                let id = id.clone();
                ctx.spawn(
                    started.into_actor(self).map(move |result, act, ctx| {
                        act.launched(&id, Some(generation), result, ctx)
                    }),
                );
            }
        }
    }

    /// What the driver needs, with the run task's results directory made. A workload adopted
    /// after a restart has its spec resolved again when it restarts.
    fn launch_for(&mut self, id: &WorkloadId) -> Result<Launch, String> {
        let work_dir = self.work_dir(id);
        let (policy, host_cpus) = (&self.cfg.policy, self.cfg.host_cpus);
        let entry = self.table.get_mut(id).ok_or("forgotten")?;
        let spec = entry.lc.status.spec.clone();
        let resolved = match &entry.resolved {
            Some(r) => r.clone(),
            None => {
                let r = validate_any(&spec, policy, host_cpus).map_err(|e| e.message)?;
                entry.resolved = Some(r.clone());
                r
            }
        };
        let output_dir = spec
            .run_id
            .as_ref()
            .map(|_| work_dir.join(crate::edges::driver::OUTPUT_SUBDIR));
        for dir in [
            Some(work_dir.join(crate::edges::driver::TMP_SUBDIR)),
            output_dir.clone(),
        ]
        .into_iter()
        .flatten()
        {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        entry.lc.status.work_dir = Some(work_dir.display().to_string());
        Ok(Launch {
            workload_id: id.clone(),
            node_id: self.cfg.node_id.clone(),
            spec,
            resolved,
            work_dir,
            output_dir,
            assigned: entry.lc.status.assigned.clone(),
        })
    }

    /// A driver's answer to a launch (`generation` None: it failed before launching).
    pub(super) fn launched(
        &mut self,
        id: &WorkloadId,
        generation: Option<u64>,
        result: Result<Started, DriverError>,
        ctx: &mut Context<Self>,
    ) {
        if generation.is_some_and(|g| !self.table.is_current(id, g)) {
            // Forgotten or superseded meanwhile: nothing may keep running unseen.
            if let Ok(started) = result {
                started.handle.kill();
                ctx.spawn(started.handle.release().into_actor(self));
            }
            return;
        }
        match result {
            Ok(started) => self.attach(id, started, ctx),
            Err(e) => {
                tracing::warn!(workload = %id, reason = %e, "workload failed to start");
                self.input(id, None, ctx, |lc| {
                    lc.on_spawn_failed(e.to_string(), now_ms())
                });
            }
        }
    }
}
