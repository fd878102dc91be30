//! WorkloadExecutor: owns every workload of this node. It validates specs, starts them through
//! their driver (exec or docker), waits for them, and feeds a [`Lifecycle`] per workload with
//! exits, stops, timeouts and restarts, performing the effects it asks for.

use crate::cores::outbox::OutboxEntry;
use crate::cores::workload::lifecycle::{parse_signal, Effect, Exit, Lifecycle};
use crate::cores::workload::validate::{validate_any, ExecPolicy, Resolved};
use crate::edges::cgroup::CgroupBackend;
use crate::edges::clock::now_ms;
use crate::edges::driver::docker::{plan_adoption, DockerConfig, DockerDriver};
use crate::edges::driver::exec::{resolved_from_launch, Adoption, ExecDriver};
use crate::edges::driver::{Driver as _, Launch, Running, Started};
use crate::edges::logs::{self, LogTarget};
use crate::node::events::EventIds;
use crate::node::events::Publish;
use crate::node::monitor::{ProcessMonitor, Track, Untrack};
use actix::prelude::*;
use futures::FutureExt;
use herd_bus::codec::{self, Encoding};
use herd_bus::{
    Accepted, Ack, Driver, ErrorBody, ErrorCode, NodeId, StopRequest, Subjects, WorkloadEvent,
    WorkloadFilter, WorkloadId, WorkloadList, WorkloadSpec, WorkloadState, WorkloadStatus,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::edges::driver::exec::cgroup_name;

/// Settled workloads remembered for `get` and `list`; the oldest are forgotten first.
const KEEP_SETTLED: usize = 1000;

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub node_id: NodeId,
    pub subjects: Subjects,
    pub policy: ExecPolicy,
    pub state_dir: PathBuf,
    pub host_cpus: f64,
    pub log_lines_per_s: u32,
    pub docker: DockerConfig,
    /// How a supervisor for one exec workload is started (the shim directory is appended):
    /// `herd-shim` beside herdd, or herdd itself with `shim`.
    pub shim_command: Vec<std::ffi::OsString>,
}

struct Entry {
    lc: Lifecycle,
    resolved: Resolved,
    /// The started workload, until it is released.
    running: Option<Arc<dyn Running>>,
    /// Its container or cgroup is being removed.
    releasing: bool,
    /// Incremented per spawn; timers and exits of an older process are ignored.
    generation: u64,
}

impl Entry {
    fn new(lc: Lifecycle, resolved: Resolved) -> Entry {
        Entry {
            lc,
            resolved,
            running: None,
            releasing: false,
            generation: 0,
        }
    }

    /// Whether anything of the workload may still exist on the node.
    fn live(&self) -> bool {
        !self.lc.state().is_terminal() || self.running.is_some() || self.releasing
    }
}

pub struct WorkloadExecutor {
    cfg: ExecutorConfig,
    exec: ExecDriver,
    docker: DockerDriver,
    client: async_nats::Client,
    events: Recipient<Publish>,
    ids: EventIds,
    monitor: Addr<ProcessMonitor>,
    workloads: HashMap<WorkloadId, Entry>,
    accepting: bool,
    /// Workloads whose record changed; written once the current message is handled, so the
    /// several transitions of one start (pending, starting, running) cost one write.
    unsaved: std::collections::BTreeSet<WorkloadId>,
    records: crate::edges::records::RecordWriter,
}

fn err(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        code,
        message: message.into(),
    }
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
            ),
            docker: DockerDriver::new(&cfg.docker, cfg.node_id.clone()),
            cfg,
            client,
            events,
            ids,
            monitor,
            workloads: HashMap::new(),
            accepting: true,
            unsaved: Default::default(),
            records: crate::edges::records::RecordWriter::start(),
        }
    }

    fn apply(&mut self, id: &WorkloadId, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        for effect in effects {
            let Some(entry) = self.workloads.get_mut(id) else {
                return;
            };
            let generation = entry.generation;
            match effect {
                Effect::Emit(state) => self.emit(id, state),
                Effect::Persist => {
                    if self.unsaved.is_empty() {
                        ctx.run_later(Duration::ZERO, |act, _| act.save_unsaved());
                    }
                    self.unsaved.insert(id.clone());
                }
                Effect::Spawn => self.spawn(id, ctx),
                Effect::ArmTimeout(d) => {
                    let id = id.clone();
                    ctx.run_later(d, move |act, ctx| {
                        act.input(&id, Some(generation), ctx, |lc| lc.on_timeout())
                    });
                }
                Effect::SignalAll(signal) => {
                    let signal = parse_signal(&signal).unwrap_or(entry.resolved.kill_signal());
                    if let Some(r) = &entry.running {
                        r.signal(signal);
                    }
                }
                Effect::KillAfter(d) => {
                    let id = id.clone();
                    ctx.run_later(d, move |act, ctx| {
                        act.input(&id, Some(generation), ctx, |lc| lc.on_grace_expired())
                    });
                }
                Effect::KillTree => {
                    if let Some(r) = &entry.running {
                        r.kill();
                    }
                }
                Effect::RestartAfter(d) => {
                    let id = id.clone();
                    ctx.run_later(d, move |act, ctx| {
                        act.input(&id, None, ctx, |lc| lc.on_restart_due())
                    });
                }
                Effect::Cleanup => {
                    self.monitor.do_send(Untrack(id.clone()));
                    if let Some(r) = entry.running.take() {
                        let mut release = r.release();
                        if release.as_mut().now_or_never().is_none() {
                            // A container's removal takes a request to the engine.
                            entry.releasing = true;
                            let id = id.clone();
                            ctx.spawn(release.into_actor(self).map(move |(), act, _| {
                                if let Some(e) = act.workloads.get_mut(&id) {
                                    e.releasing = false;
                                }
                                act.forget_old();
                            }));
                        }
                    }
                    self.forget_old();
                }
            }
        }
    }

    /// Feeds an input to a workload's lifecycle; `generation` guards timers of an earlier run.
    fn input(
        &mut self,
        id: &WorkloadId,
        generation: Option<u64>,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut Lifecycle) -> Vec<Effect>,
    ) {
        let Some(entry) = self.workloads.get_mut(id) else {
            return;
        };
        if generation.is_some_and(|g| g != entry.generation) {
            return;
        }
        let effects = f(&mut entry.lc);
        self.apply(id, effects, ctx);
    }

    fn emit(&mut self, id: &WorkloadId, state: WorkloadState) {
        let Some(entry) = self.workloads.get(id) else {
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
        };
        tracing::info!(workload = %id, state = state.as_str(), pid = ?s.pid, exit_code = ?s.exit_code, signal = ?s.signal, "workload state");
        match codec::encode(&event, Encoding::MsgPack) {
            Ok(payload) => self.events.do_send(Publish(OutboxEntry {
                subject: self.cfg.subjects.workload_event(&self.cfg.node_id, state),
                msg_id: event.event_id,
                payload,
            })),
            Err(e) => tracing::error!(error = %e, "cannot encode a workload event"),
        }
    }

    fn record_path(&self, id: &WorkloadId) -> PathBuf {
        self.cfg
            .state_dir
            .join("workloads")
            .join(format!("{id}.json"))
    }

    fn save_unsaved(&mut self) {
        for id in std::mem::take(&mut self.unsaved) {
            self.persist(&id);
        }
    }

    /// Keeps the workload's record in the state dir (for re-adoption after a restart).
    fn persist(&self, id: &WorkloadId) {
        let Some(entry) = self.workloads.get(id) else {
            return;
        };
        match serde_json::to_vec_pretty(&entry.lc.status) {
            Ok(bytes) => self.records.write(self.record_path(id), bytes),
            Err(e) => {
                tracing::warn!(workload = %id, error = %e, "cannot encode the workload record")
            }
        }
    }

    fn forget_old(&mut self) {
        let mut settled: Vec<(u64, WorkloadId)> = self
            .workloads
            .iter()
            .filter(|(_, e)| !e.live())
            .map(|(id, e)| (e.lc.status.finished_at_ms.unwrap_or(0), id.clone()))
            .collect();
        if settled.len() <= KEEP_SETTLED {
            return;
        }
        settled.sort();
        for (_, id) in settled.iter().take(settled.len() - KEEP_SETTLED) {
            self.workloads.remove(id);
            self.records.remove(self.record_path(id));
        }
    }

    fn spawn(&mut self, id: &WorkloadId, ctx: &mut Context<Self>) {
        let Some(entry) = self.workloads.get_mut(id) else {
            return;
        };
        if entry.lc.stop_requested() {
            let fx = entry.lc.on_stopped_before_start(now_ms());
            return self.apply(id, fx, ctx);
        }
        let fx = entry.lc.on_starting();
        self.apply(id, fx, ctx);
        let launch = match self.launch_for(id) {
            Ok(l) => l,
            Err(reason) => return self.launched(id, None, Err(reason), ctx),
        };
        let entry = self.workloads.get_mut(id).expect("present");
        entry.generation += 1;
        let generation = entry.generation;
        let mut started = match launch.spec.driver {
            Driver::Exec => self.exec.launch(launch),
            Driver::Docker => self.docker.launch(launch),
        };
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

    /// What the driver needs, with the run task's results directory made.
    fn launch_for(&self, id: &WorkloadId) -> Result<Launch, String> {
        let entry = &self.workloads[id];
        let spec = &entry.lc.status.spec;
        let output_dir = match &spec.run_id {
            Some(run) => {
                let dir = self
                    .cfg
                    .state_dir
                    .join("runs")
                    .join(run.as_str())
                    .join(format!("{}-{id}", spec.rep.unwrap_or(0)));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                Some(dir)
            }
            None => None,
        };
        Ok(Launch {
            workload_id: id.clone(),
            node_id: self.cfg.node_id.clone(),
            spec: spec.clone(),
            resolved: entry.resolved.clone(),
            output_dir,
        })
    }

    /// A driver's answer to a launch (`generation` None: it failed before launching).
    fn launched(
        &mut self,
        id: &WorkloadId,
        generation: Option<u64>,
        result: Result<Started, String>,
        ctx: &mut Context<Self>,
    ) {
        let current = self.workloads.get(id).map(|e| e.generation);
        if generation.is_some() && current != generation {
            // Forgotten or superseded meanwhile: nothing may keep running unseen.
            if let Ok(started) = result {
                started.handle.kill();
                ctx.spawn(started.handle.release().into_actor(self));
            }
            return;
        }
        match result {
            Ok(started) => self.attach(id, started, ctx),
            Err(reason) => {
                tracing::warn!(workload = %id, %reason, "workload failed to start");
                let entry = self.workloads.get_mut(id).expect("present");
                let fx = entry.lc.on_spawn_failed(reason, now_ms());
                self.apply(id, fx, ctx);
            }
        }
    }

    /// Follows a started workload: its logs, its exit, its telemetry; then reports it running.
    fn attach(&mut self, id: &WorkloadId, started: Started, ctx: &mut Context<Self>) {
        let entry = self.workloads.get_mut(id).expect("present");
        let generation = entry.generation;
        for (stream, reader) in started.output {
            actix::spawn(logs::pump(
                reader,
                LogTarget {
                    client: self.client.clone(),
                    subject: self.cfg.subjects.logs(&self.cfg.node_id, id, stream),
                    node_id: self.cfg.node_id.clone(),
                    workload_id: id.clone(),
                    stream,
                    max_lines_per_s: self.cfg.log_lines_per_s,
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

    fn start(
        &mut self,
        mut spec: WorkloadSpec,
        ctx: &mut Context<Self>,
    ) -> Result<Accepted, ErrorBody> {
        if !self.accepting {
            return Err(err(ErrorCode::Unavailable, "the node is shutting down"));
        }
        let resolved = validate_any(&spec, &self.cfg.policy, self.cfg.host_cpus)?;
        let id = spec.workload_id.clone().unwrap_or_else(WorkloadId::random);
        spec.workload_id = Some(id.clone());
        self.accept(id, spec, resolved, ctx)
    }

    /// Takes a validated spec on (or recognises a retry of one already taken).
    fn accept(
        &mut self,
        id: WorkloadId,
        spec: WorkloadSpec,
        resolved: Resolved,
        ctx: &mut Context<Self>,
    ) -> Result<Accepted, ErrorBody> {
        if !self.accepting {
            return Err(err(ErrorCode::Unavailable, "the node is shutting down"));
        }
        if let Some(existing) = self.workloads.get(&id) {
            return if existing.lc.status.spec == spec {
                Ok(Accepted {
                    workload_id: id,
                    existing: true,
                })
            } else {
                Err(err(
                    ErrorCode::Conflict,
                    format!("workload {id} exists with a different spec"),
                ))
            };
        }
        let (lc, effects) = Lifecycle::new(id.clone(), self.cfg.node_id.clone(), spec, now_ms());
        self.workloads.insert(id.clone(), Entry::new(lc, resolved));
        self.apply(&id, effects, ctx);
        Ok(Accepted {
            workload_id: id,
            existing: false,
        })
    }

    fn stop(&mut self, req: StopRequest, ctx: &mut Context<Self>) -> Result<Ack, ErrorBody> {
        if let Some(s) = &req.signal {
            parse_signal(s).ok_or_else(|| {
                err(
                    ErrorCode::BadRequest,
                    format!("signal: unknown signal '{s}'"),
                )
            })?;
        }
        let grace = match req.grace_s {
            Some(g) if !g.is_finite() || g < 0.0 => {
                return Err(err(
                    ErrorCode::BadRequest,
                    format!("grace_s: must be ≥ 0, got {g}"),
                ))
            }
            Some(g) => Some(Duration::from_secs_f64(g)),
            None => None,
        };
        let targets: Vec<WorkloadId> = match (&req.workload_id, &req.run_id) {
            (Some(id), _) => {
                if !self.workloads.contains_key(id) {
                    return Err(err(
                        ErrorCode::NotFound,
                        format!("no workload {id} on this node"),
                    ));
                }
                vec![id.clone()]
            }
            (None, Some(run)) => self
                .workloads
                .iter()
                .filter(|(_, e)| e.lc.status.spec.run_id.as_ref() == Some(run))
                .map(|(id, _)| id.clone())
                .collect(),
            (None, None) => {
                return Err(err(ErrorCode::BadRequest, "give workload_id or run_id"));
            }
        };
        let mut stopping = 0;
        for id in &targets {
            let entry = self.workloads.get_mut(id).expect("present");
            let was = entry.lc.state();
            let fx = entry.lc.on_stop(req.signal.clone(), grace, now_ms());
            if !fx.is_empty() || !was.is_terminal() {
                stopping += 1;
            }
            self.apply(id, fx, ctx);
        }
        let message = match (&req.workload_id, targets.len()) {
            (Some(id), _) if stopping == 0 => {
                format!("{id} is already {}", self.workloads[id].lc.state().as_str())
            }
            (Some(id), _) => format!("stopping {id}"),
            (None, _) => format!(
                "stopping {stopping} workload(s) of run {}",
                req.run_id.as_ref().expect("run")
            ),
        };
        Ok(Ack {
            message: Some(message),
        })
    }

    fn list(&self, filter: &WorkloadFilter) -> WorkloadList {
        let mut workloads: Vec<WorkloadStatus> = self
            .workloads
            .values()
            .map(|e| &e.lc.status)
            .filter(|s| filter.run_id.is_none() || s.spec.run_id == filter.run_id)
            .filter(|s| filter.state.is_none_or(|st| s.state == st))
            .filter(|s| {
                filter
                    .labels
                    .iter()
                    .all(|(k, v)| s.spec.labels.get(k) == Some(v))
            })
            .cloned()
            .collect();
        workloads.sort_by(|a, b| {
            (a.created_at_ms, &a.workload_id).cmp(&(b.created_at_ms, &b.workload_id))
        });
        WorkloadList { workloads }
    }

    fn live(&self) -> usize {
        self.workloads.values().filter(|e| e.live()).count()
    }
}

impl Actor for WorkloadExecutor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (exec, docker) = self
            .unsettled_records()
            .into_iter()
            .partition(|s| s.spec.driver == Driver::Exec);
        self.adopt_exec(exec, ctx);
        self.adopt_containers(docker, ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.save_unsaved();
        self.records.sync(Duration::from_secs(5));
    }
}

impl WorkloadExecutor {
    /// Saved statuses of workloads that had not settled when herdd last stopped.
    fn unsettled_records(&self) -> Vec<WorkloadStatus> {
        let Ok(dir) = std::fs::read_dir(self.cfg.state_dir.join("workloads")) else {
            return vec![];
        };
        dir.filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .filter(|s: &WorkloadStatus| !s.state.is_terminal())
            .collect()
    }

    /// After a restart: follows again every exec workload whose shim still runs, and reports
    /// those that ended meanwhile (with their exit, from the shim) or left nothing (lost).
    fn adopt_exec(&mut self, records: Vec<WorkloadStatus>, ctx: &mut Context<Self>) {
        for status in records {
            let id = status.workload_id.clone();
            let fallback = Resolved::Docker {
                kill_signal: nix::sys::signal::Signal::SIGTERM,
            };
            let resolved = resolved_from_launch(&self.exec.shim_dir(&id), &status, &fallback);
            let adoption = self.exec.adopt(&status);
            let (lc, fx) = Lifecycle::adopted(status, now_ms());
            let mut entry = Entry::new(lc, resolved);
            entry.generation = 1;
            self.workloads.insert(id.clone(), entry);
            self.apply(&id, fx, ctx);
            match adoption {
                Adoption::Found(started) => {
                    tracing::info!(workload = %id, pid = started.pid, "adopting a workload after a restart");
                    self.launched(&id, Some(1), Ok(started), ctx);
                }
                Adoption::Lost(reason) => {
                    tracing::warn!(workload = %id, %reason, "a workload of the previous herdd is lost");
                    let entry = self.workloads.get_mut(&id).expect("present");
                    let fx = entry.lc.on_lost(reason, now_ms());
                    self.apply(&id, fx, ctx);
                }
            }
        }
    }

    /// After a restart: takes back this node's containers (found by label) whose workloads were
    /// not settled, reports those whose container is gone as lost, and removes orphans.
    fn adopt_containers(&mut self, records: Vec<WorkloadStatus>, ctx: &mut Context<Self>) {
        let any_docker = records.iter().any(|s| s.spec.driver == Driver::Docker);
        let list = self.docker.list_mine();
        ctx.spawn(list.into_actor(self).map(move |found, act, ctx| {
            let found = match found {
                Ok(found) => found,
                Err(e) if !any_docker => {
                    tracing::debug!(error = %e.message, "no containers to adopt");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "cannot look for this node's containers; their workloads stay unknown");
                    return;
                }
            };
            let plan = plan_adoption(records, found);
            for (status, container, running) in plan.adopt {
                act.adopt(status, container, running, ctx);
            }
            for container in plan.orphans {
                tracing::warn!(%container, "removing a container of this node that herd has no unsettled record of");
                ctx.spawn(act.docker.remove(container).into_actor(act));
            }
            for status in plan.lost {
                let id = status.workload_id.clone();
                let (lc, _) = Lifecycle::adopted(status, now_ms());
                let resolved = Resolved::Docker {
                    kill_signal: nix::sys::signal::Signal::SIGTERM,
                };
                act.workloads.insert(id.clone(), Entry::new(lc, resolved));
                let entry = act.workloads.get_mut(&id).expect("present");
                let fx = entry.lc.on_lost(
                    "its container was gone when herdd restarted".into(),
                    now_ms(),
                );
                act.apply(&id, fx, ctx);
            }
        }));
    }

    fn adopt(
        &mut self,
        status: WorkloadStatus,
        container: String,
        running: bool,
        ctx: &mut Context<Self>,
    ) {
        let id = status.workload_id.clone();
        let kill_signal = status
            .spec
            .kill_signal
            .as_deref()
            .and_then(parse_signal)
            .unwrap_or(nix::sys::signal::Signal::SIGTERM);
        tracing::info!(workload = %id, %container, running, "adopting a container after a restart");
        let (lc, fx) = Lifecycle::adopted(status, now_ms());
        let mut entry = Entry::new(lc, Resolved::Docker { kill_signal });
        entry.generation = 1;
        self.workloads.insert(id.clone(), entry);
        self.apply(&id, fx, ctx);
        let adopted = self.docker.adopt(container);
        ctx.spawn(
            adopted
                .into_actor(self)
                .map(move |result, act, ctx| act.launched(&id, Some(1), result, ctx)),
        );
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct ChildExited {
    workload_id: WorkloadId,
    generation: u64,
    /// How it ended and whether an OOM kill ended it; or why that is unknown.
    outcome: Result<(Exit, bool), String>,
}

impl Handler<ChildExited> for WorkloadExecutor {
    type Result = ();
    fn handle(&mut self, msg: ChildExited, ctx: &mut Self::Context) {
        let id = msg.workload_id;
        let Some(entry) = self.workloads.get_mut(&id) else {
            return;
        };
        if entry.generation != msg.generation {
            return;
        }
        let fx = match msg.outcome {
            Ok((exit, oom)) => entry.lc.on_exit(exit, oom, now_ms()),
            Err(reason) => {
                tracing::warn!(workload = %id, %reason, "workload lost");
                if let Some(r) = &entry.running {
                    r.kill();
                }
                entry.lc.on_lost(reason, now_ms())
            }
        };
        self.apply(&id, fx, ctx);
    }
}

#[derive(Message)]
#[rtype(result = "Result<Accepted, ErrorBody>")]
pub struct Start(pub WorkloadSpec);

impl Handler<Start> for WorkloadExecutor {
    type Result = ResponseActFuture<Self, Result<Accepted, ErrorBody>>;
    fn handle(&mut self, msg: Start, ctx: &mut Self::Context) -> Self::Result {
        let spec = msg.0;
        if spec.driver != Driver::Docker || !self.accepting {
            return Box::pin(fut::ready(self.start(spec, ctx)));
        }
        // A container needs a reachable engine and, with pull_policy never, its image on the
        // node: both are answered now rather than as a failed workload later.
        let resolved = match validate_any(&spec, &self.cfg.policy, self.cfg.host_cpus) {
            Ok(r) => r,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let preflight = self.docker.preflight(&spec);
        Box::pin(preflight.into_actor(self).map(move |checked, act, ctx| {
            checked?;
            let mut spec = spec;
            let id = spec.workload_id.clone().unwrap_or_else(WorkloadId::random);
            spec.workload_id = Some(id.clone());
            act.accept(id, spec, resolved, ctx)
        }))
    }
}

#[derive(Message)]
#[rtype(result = "Result<Ack, ErrorBody>")]
pub struct Stop(pub StopRequest);

impl Handler<Stop> for WorkloadExecutor {
    type Result = Result<Ack, ErrorBody>;
    fn handle(&mut self, msg: Stop, ctx: &mut Self::Context) -> Self::Result {
        self.stop(msg.0, ctx)
    }
}

/// Answers like every request to the executor (a Result), though listing cannot fail.
#[derive(Message)]
#[rtype(result = "Result<WorkloadList, ErrorBody>")]
pub struct List(pub WorkloadFilter);

impl Handler<List> for WorkloadExecutor {
    type Result = Result<WorkloadList, ErrorBody>;
    fn handle(&mut self, msg: List, _: &mut Self::Context) -> Self::Result {
        Ok(self.list(&msg.0))
    }
}

#[derive(Message)]
#[rtype(result = "Result<WorkloadStatus, ErrorBody>")]
pub struct Get(pub WorkloadId);

impl Handler<Get> for WorkloadExecutor {
    type Result = Result<WorkloadStatus, ErrorBody>;
    fn handle(&mut self, msg: Get, _: &mut Self::Context) -> Self::Result {
        self.workloads
            .get(&msg.0)
            .map(|e| e.lc.status.clone())
            .ok_or_else(|| {
                err(
                    ErrorCode::NotFound,
                    format!("no workload {} on this node", msg.0),
                )
            })
    }
}

/// Stop every running workload, each with its grace capped at `grace_cap`; at shutdown also
/// refuse new ones (`refuse_new`), poll [`LiveCount`], then send [`KillRemaining`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll {
    pub grace_cap: Duration,
    pub refuse_new: bool,
}

impl Handler<StopAll> for WorkloadExecutor {
    type Result = ();
    fn handle(&mut self, msg: StopAll, ctx: &mut Self::Context) {
        self.accepting &= !msg.refuse_new;
        let ids: Vec<WorkloadId> = self.workloads.keys().cloned().collect();
        for id in &ids {
            let entry = self.workloads.get_mut(id).expect("present");
            let grace = entry
                .lc
                .status
                .spec
                .grace_s
                .map(Duration::from_secs_f64)
                .unwrap_or(crate::cores::workload::lifecycle::DEFAULT_GRACE)
                .min(msg.grace_cap);
            let fx = entry.lc.on_stop(None, Some(grace), now_ms());
            self.apply(id, fx, ctx);
        }
    }
}

/// Refuses new workloads from now on (herdd is stopping and leaves the running ones be).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

impl Handler<StopAccepting> for WorkloadExecutor {
    type Result = ();
    fn handle(&mut self, _: StopAccepting, _: &mut Self::Context) {
        self.accepting = false;
    }
}

/// Kills and removes whatever still has processes; answers how many workloads that was.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct KillRemaining;

impl Handler<KillRemaining> for WorkloadExecutor {
    type Result = ResponseFuture<usize>;
    fn handle(&mut self, _: KillRemaining, _: &mut Self::Context) -> Self::Result {
        let mut releases = vec![];
        for e in self.workloads.values_mut() {
            if let Some(r) = e.running.take() {
                r.kill();
                releases.push(r.release());
            }
        }
        let killed = releases.len();
        Box::pin(async move {
            futures::future::join_all(releases).await;
            killed
        })
    }
}

/// How many workloads this executor knows in each state (for the metrics endpoint).
#[derive(Message)]
#[rtype(result = "HashMap<WorkloadState, usize>")]
pub struct StateCounts;

impl Handler<StateCounts> for WorkloadExecutor {
    type Result = MessageResult<StateCounts>;
    fn handle(&mut self, _: StateCounts, _: &mut Self::Context) -> Self::Result {
        let mut counts = HashMap::new();
        for e in self.workloads.values() {
            *counts.entry(e.lc.state()).or_insert(0) += 1;
        }
        MessageResult(counts)
    }
}

/// How many workloads still have processes or a cgroup.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct LiveCount;

impl Handler<LiveCount> for WorkloadExecutor {
    type Result = usize;
    fn handle(&mut self, _: LiveCount, _: &mut Self::Context) -> usize {
        self.live()
    }
}
