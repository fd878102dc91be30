//! WorkloadExecutor: owns this node's [`WorkloadTable`]. It validates specs, starts workloads
//! through their driver (exec or docker), follows them, and performs the effects their
//! lifecycles ask for; after a restart it asks each driver to recover what an earlier herdd
//! started. The table, the lifecycles and validation are sans-IO cores with their own tests.

use crate::cores::outbox::OutboxEntry;
use crate::cores::workload::lifecycle::{parse_signal, Effect, Exit, Lifecycle};
use crate::cores::workload::table::{Effects, WorkloadTable};
use crate::cores::workload::validate::ExecPolicy;
use crate::edges::cgroup::CgroupBackend;
use crate::edges::clock::now_ms;
use crate::edges::driver::docker::{DockerConfig, DockerDriver};
use crate::edges::driver::exec::ExecDriver;
use crate::edges::driver::{Driver, DriverError, Running, Started};
use crate::edges::logs::{self, LogTarget};
use crate::node::events::EventIds;
use crate::node::events::Publish;
use crate::node::monitor::{GpuUseBoard, ProcessMonitor, Track, Untrack};
use crate::node::results::{ResultsSpool, SettledTask};
use actix::prelude::*;
use futures::FutureExt;
use herd_bus::codec::{self, Encoding};
use herd_bus::{NodeId, Subjects, WorkloadEvent, WorkloadId, WorkloadSpec, WorkloadState};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::edges::driver::exec::cgroup_name;

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub node_id: NodeId,
    pub subjects: Subjects,
    pub policy: ExecPolicy,
    pub state_dir: PathBuf,
    pub host_cpus: f64,
    pub log_lines_per_s: u32,
    /// Settled workloads kept (records and working directories); the oldest go first.
    pub keep_settled: usize,
    /// Whether the node's log stream is made (the first chunk of a workload waits for it).
    pub logs_kept: crate::edges::log_history::LogsKept,
    pub docker: DockerConfig,
    /// How a supervisor for one exec workload is started (the shim directory is appended):
    /// `herd-shim` beside herdd, or herdd itself with `shim`.
    pub shim_command: Vec<std::ffi::OsString>,
    /// What this node hands out, and what it has (cores, GPUs): admission goes by it.
    pub allocation: Arc<crate::cores::allocation::AllocationPolicy>,
}

pub struct WorkloadExecutor {
    cfg: ExecutorConfig,
    exec: ExecDriver,
    docker: DockerDriver,
    client: async_nats::Client,
    events: Recipient<Publish>,
    ids: EventIds,
    monitor: Addr<ProcessMonitor>,
    table: WorkloadTable<Arc<dyn Running>>,
    accepting: bool,
    /// Workloads whose record changed; written once the current message is handled, so the
    /// several transitions of one start (pending, starting, running) cost one write.
    unsaved: std::collections::BTreeSet<WorkloadId>,
    /// Retention runs once the current message is handled, never while effects are applied.
    retention_due: bool,
    settle_scheduled: bool,
    records: crate::edges::records::RecordWriter,
    /// Where settled run tasks' outputs go to be uploaded.
    results: Option<ResultsSpool>,
    /// Run inputs this node fetched, by content.
    inputs: crate::edges::inputs::InputCache,
    gpu_use: Option<GpuUseBoard>,
}

impl WorkloadExecutor {
    pub fn new(
        cfg: ExecutorConfig,
        backend: Arc<dyn CgroupBackend>,
        client: async_nats::Client,
        events: Recipient<Publish>,
        ids: EventIds,
        monitor: Addr<ProcessMonitor>,
    ) -> WorkloadExecutor {
        if let Err(e) = std::fs::create_dir_all(cfg.state_dir.join("workloads")) {
            tracing::warn!(error = %e, "cannot create the workload records directory");
        }
        WorkloadExecutor {
            exec: ExecDriver::new(
                backend,
                cfg.shim_command.clone(),
                cfg.state_dir.join("workloads"),
            )
            // A GPU's /dev/nvidia<minor> is its index in the node's inventory.
            .with_gpu_inventory(cfg.allocation.gpus.clone()),
            docker: DockerDriver::new(&cfg.docker, cfg.node_id.clone()),
            table: WorkloadTable::new(cfg.node_id.clone(), cfg.keep_settled),
            inputs: crate::edges::inputs::InputCache::new(&cfg.state_dir),
            cfg,
            client,
            events,
            ids,
            monitor,
            accepting: true,
            unsaved: Default::default(),
            retention_due: false,
            settle_scheduled: false,
            records: crate::edges::records::RecordWriter::start(),
            results: None,
            gpu_use: None,
        }
    }

    /// Hands the output of each run task that settles to the results uploader.
    /// Reads each workload's GPU use from the monitor's board when it ends.
    pub fn with_gpu_use(mut self, board: GpuUseBoard) -> WorkloadExecutor {
        self.gpu_use = Some(board);
        self
    }

    pub fn with_results(mut self, spool: ResultsSpool) -> WorkloadExecutor {
        self.results = Some(spool);
        self
    }

    fn driver(&self, driver: herd_bus::Driver) -> &dyn Driver {
        match driver {
            herd_bus::Driver::Exec => &self.exec,
            herd_bus::Driver::Docker => &self.docker,
        }
    }

    fn apply_all(&mut self, effects: Effects, ctx: &mut Context<Self>) {
        for (id, fx) in effects {
            self.apply(&id, fx, ctx);
        }
    }

    /// Performs what a workload's lifecycle asked for.
    fn apply(&mut self, id: &WorkloadId, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        for effect in effects {
            let Some(entry) = self.table.get_mut(id) else {
                return;
            };
            let generation = entry.generation;
            match effect {
                Effect::Emit(state) => self.emit(id, state),
                Effect::Persist => {
                    self.after_message(ctx);
                    self.unsaved.insert(id.clone());
                }
                Effect::Spawn => self.input(id, None, ctx, |lc| lc.on_spawn(now_ms())),
                Effect::Launch => self.launch(id, ctx),
                Effect::ArmTimeout(d) => {
                    self.later(id, Some(generation), d, ctx, Lifecycle::on_timeout)
                }
                Effect::SignalAll(signal) => {
                    // Validated at start: a signal name that does not parse never gets here.
                    let Some(signal) = parse_signal(&signal) else {
                        continue;
                    };
                    if let Some(r) = &entry.running {
                        r.signal(signal);
                    }
                }
                Effect::KillAfter(d) => {
                    self.later(id, Some(generation), d, ctx, Lifecycle::on_grace_expired)
                }
                Effect::KillTree => {
                    if let Some(r) = &entry.running {
                        r.kill();
                    }
                }
                Effect::RestartAfter(d) => self.later(id, None, d, ctx, Lifecycle::on_restart_due),
                Effect::Cleanup => {
                    self.monitor.do_send(Untrack(id.clone()));
                    if let Some(r) = entry.running.take() {
                        let mut release = r.release();
                        if release.as_mut().now_or_never().is_none() {
                            // A container's removal takes a request to the engine.
                            entry.releasing = true;
                            let id = id.clone();
                            ctx.spawn(release.into_actor(self).map(move |(), act, ctx| {
                                if let Some(e) = act.table.get_mut(&id) {
                                    e.releasing = false;
                                }
                                act.retention_due = true;
                                act.after_message(ctx);
                            }));
                        }
                    }
                    self.retention_due = true;
                    self.after_message(ctx);
                    self.hand_over_results(id);
                }
            }
        }
    }

    /// A settled run task's output directory goes to the results uploader.
    fn hand_over_results(&self, id: &WorkloadId) {
        let (Some(spool), Some(entry)) = (&self.results, self.table.get(id)) else {
            return;
        };
        let spec = &entry.lc.status.spec;
        let (Some(run_id), Some(output_dir)) = (spec.run_id.clone(), self.output_dir(spec, id))
        else {
            return;
        };
        spool.hand_over(SettledTask {
            run_id,
            workload_id: id.clone(),
            task: herd_bus::result_task_name(spec.name.as_deref(), spec.rep.unwrap_or(0)),
            output_dir,
        });
    }

    /// A run task's own output directory (None outside runs).
    fn output_dir(&self, spec: &WorkloadSpec, id: &WorkloadId) -> Option<PathBuf> {
        spec.run_id
            .as_ref()
            .map(|_| self.work_dir(id).join(crate::edges::driver::OUTPUT_SUBDIR))
    }

    /// Feeds an input to a workload's lifecycle; `generation` guards timers of an earlier run.
    fn input(
        &mut self,
        id: &WorkloadId,
        generation: Option<u64>,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut Lifecycle) -> Vec<Effect>,
    ) {
        let fx = self.table.input(id, generation, f);
        self.apply(id, fx, ctx);
    }

    /// Feeds `f` to the lifecycle after `delay`.
    fn later(
        &self,
        id: &WorkloadId,
        generation: Option<u64>,
        delay: Duration,
        ctx: &mut Context<Self>,
        f: fn(&mut Lifecycle) -> Vec<Effect>,
    ) {
        let id = id.clone();
        ctx.run_later(delay, move |act, ctx| act.input(&id, generation, ctx, f));
    }

    /// Saves changed records and applies retention once the current message is handled.
    fn after_message(&mut self, ctx: &mut Context<Self>) {
        if !std::mem::replace(&mut self.settle_scheduled, true) {
            ctx.run_later(Duration::ZERO, |act, _| act.settle_message());
        }
    }

    fn settle_message(&mut self) {
        self.settle_scheduled = false;
        if std::mem::take(&mut self.retention_due) {
            for id in self.table.forget_settled() {
                self.unsaved.remove(&id);
                self.records.remove(self.record_path(&id));
                self.records.remove_dir(self.work_dir(&id));
            }
        }
        for id in std::mem::take(&mut self.unsaved) {
            self.persist(&id);
        }
    }

    fn emit(&mut self, id: &WorkloadId, state: WorkloadState) {
        let Some(entry) = self.table.get(id) else {
            return;
        };
        let s = &entry.lc.status;
        let event = WorkloadEvent {
            event_id: self.ids.next("w"),
            node_id: s.node_id.clone(),
            workload_id: s.workload_id.clone(),
            state,
            ts_ms: now_ms(),
            run_id: s.spec.run_id.clone(),
            rep: s.spec.rep,
            pid: s.pid,
            exit_code: s.exit_code,
            signal: s.signal.clone(),
            reason: s.reason.clone(),
            restarts: s.restarts,
            resources: state.is_terminal().then(|| s.resources.clone()).flatten(),
        };
        tracing::info!(workload = %id, state = state.as_str(), pid = ?s.pid, exit_code = ?s.exit_code, signal = ?s.signal, "workload state");
        if state == WorkloadState::Running {
            herd_shim::stage::stage("running_queued");
        }
        match codec::encode(&event, Encoding::MsgPack) {
            Ok(payload) => self.events.do_send(Publish(OutboxEntry {
                subject: self.cfg.subjects.workload_event(&self.cfg.node_id, state),
                msg_id: event.event_id,
                payload,
            })),
            Err(e) => tracing::error!(error = %e, "cannot encode a workload event"),
        }
    }

    /// The workload's own directory: `<state>/work/<id>`.
    fn work_dir(&self, id: &WorkloadId) -> PathBuf {
        self.cfg.state_dir.join("work").join(id.as_str())
    }

    fn record_path(&self, id: &WorkloadId) -> PathBuf {
        self.cfg
            .state_dir
            .join("workloads")
            .join(format!("{id}.json"))
    }

    /// Keeps the workload's record in the state dir (for re-adoption after a restart).
    fn persist(&self, id: &WorkloadId) {
        let Some(entry) = self.table.get(id) else {
            return;
        };
        match serde_json::to_vec_pretty(&entry.lc.status) {
            Ok(bytes) => self.records.write(self.record_path(id), bytes),
            Err(e) => {
                tracing::warn!(workload = %id, error = %e, "cannot encode the workload record")
            }
        }
    }

    /// Follows a started workload: its logs, its exit, its telemetry; then reports it running.
    fn attach(&mut self, id: &WorkloadId, started: Started, ctx: &mut Context<Self>) {
        let Some(entry) = self.table.get_mut(id) else {
            started.handle.kill();
            return;
        };
        let generation = entry.generation;
        let attempt = entry.lc.status.restarts;
        for (stream, reader) in started.output {
            actix::spawn(logs::pump(
                reader,
                LogTarget {
                    client: self.client.clone(),
                    subject: self.cfg.subjects.logs(&self.cfg.node_id, id, stream),
                    node_id: self.cfg.node_id.clone(),
                    workload_id: id.clone(),
                    stream,
                    attempt,
                    max_lines_per_s: self.cfg.log_lines_per_s,
                    kept: self.cfg.logs_kept.clone(),
                },
            ));
        }
        let addr = ctx.address();
        let wid = id.clone();
        let exit = started.exit;
        actix::spawn(async move {
            let outcome = exit.await;
            addr.do_send(ChildExited {
                workload_id: wid,
                generation,
                outcome,
            });
        });
        if entry.lc.status.spec.collect {
            if let Some(cgroup) = started.handle.sampler() {
                self.monitor.do_send(Track {
                    workload_id: id.clone(),
                    run_id: entry.lc.status.spec.run_id.clone(),
                    cgroup,
                });
            }
        }
        entry.running = Some(started.handle);
        if entry.lc.state() == WorkloadState::Running {
            return; // adopted after a restart: already reported running
        }
        let fx = entry.lc.on_spawned(started.pid, now_ms());
        self.apply(id, fx, ctx);
    }
}

impl Actor for WorkloadExecutor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (settled, unsettled): (Vec<_>, Vec<_>) = self
            .records()
            .into_iter()
            .partition(|s| s.state.is_terminal());
        // Settled workloads stay answerable (get, list) until retention forgets them, which
        // also removes their directories.
        for status in settled {
            self.table.adopt(status, now_ms());
        }
        self.remove_orphan_work_dirs();
        self.retention_due = true;
        self.after_message(ctx);
        let (exec, docker): (Vec<_>, Vec<_>) = unsettled
            .into_iter()
            .partition(|s| s.spec.driver == herd_bus::Driver::Exec);
        for recovering in [self.exec.recover(exec), self.docker.recover(docker)] {
            let mut recovering = recovering;
            // exec answers at once (before any request is handled); the engine takes requests.
            match recovering.as_mut().now_or_never() {
                Some(found) => self.adopt(found, ctx),
                None => {
                    ctx.spawn(
                        recovering
                            .into_actor(self)
                            .map(|found, act, ctx| act.adopt(found, ctx)),
                    );
                }
            }
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.settle_message();
        self.records.sync(Duration::from_secs(5));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct ChildExited {
    workload_id: WorkloadId,
    generation: u64,
    /// How it ended; or why that is unknown.
    outcome: Result<Exit, DriverError>,
}

impl Handler<ChildExited> for WorkloadExecutor {
    type Result = ();
    fn handle(&mut self, msg: ChildExited, ctx: &mut Self::Context) {
        let id = msg.workload_id;
        let fx = match msg.outcome {
            Ok(exit) => {
                // Read before the exit's effects remove the cgroup.
                let counters = self
                    .table
                    .get(&id)
                    .filter(|e| e.generation == msg.generation)
                    .and_then(|e| e.running.as_ref())
                    .and_then(|r| r.final_counters());
                let gpu = self.gpu_use.as_ref().and_then(|b| {
                    b.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&id)
                        .copied()
                });
                self.table.input(&id, Some(msg.generation), |lc| {
                    if let Some(c) = counters {
                        lc.on_final_counters(c, now_ms());
                    }
                    if let (Some(g), Some(r)) = (gpu, lc.status.resources.as_mut()) {
                        g.fill(r);
                    }
                    lc.on_exit(exit, now_ms())
                })
            }
            Err(reason) => {
                if !self.table.is_current(&id, msg.generation) {
                    return;
                }
                tracing::warn!(workload = %id, %reason, "workload lost");
                if let Some(r) = self.table.get(&id).and_then(|e| e.running.as_ref()) {
                    r.kill();
                }
                self.table
                    .input(&id, None, |lc| lc.on_lost(reason.to_string(), now_ms()))
            }
        };
        self.apply(&id, fx, ctx);
    }
}

mod launch;
mod recovery;
mod requests;
pub use requests::{
    Get, KillRemaining, List, LiveCount, Start, StateCounts, Stop, StopAccepting, StopAll,
};
