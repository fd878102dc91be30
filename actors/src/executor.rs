//! WorkloadExecutor: owns every workload of this node. It validates specs, creates cgroups,
//! spawns processes into them, waits for them, and feeds a [`Lifecycle`] per workload with
//! exits, stops, timeouts and restarts, performing the effects it asks for.

use crate::cgroup::{CgroupBackend, WorkloadCgroup};
use crate::clock::now_ms;
use crate::events::EventIds;
use crate::events::Publish;
use crate::logs::{self, LogTarget};
use crate::monitor::{ProcessMonitor, Track, Untrack};
use crate::outbox::OutboxEntry;
use crate::workload::lifecycle::{parse_signal, Effect, Exit, Lifecycle};
use crate::workload::validate::{validate, ExecPolicy, ResolvedSpec};
use actix::prelude::*;
use herd_bus::codec::{self, Encoding};
use herd_bus::{
    Accepted, Ack, ErrorBody, ErrorCode, LogStream, NodeId, StopRequest, Subjects, WorkloadEvent,
    WorkloadFilter, WorkloadId, WorkloadList, WorkloadSpec, WorkloadState, WorkloadStatus,
};
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

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
}

struct Entry {
    lc: Lifecycle,
    resolved: ResolvedSpec,
    cgroup: Option<Arc<dyn WorkloadCgroup>>,
    /// Incremented per spawn; timers and exits of an older process are ignored.
    generation: u64,
    oom_seen: u64,
}

pub struct WorkloadExecutor {
    cfg: ExecutorConfig,
    backend: Arc<dyn CgroupBackend>,
    client: async_nats::Client,
    events: Recipient<Publish>,
    ids: EventIds,
    monitor: Addr<ProcessMonitor>,
    workloads: HashMap<WorkloadId, Entry>,
    accepting: bool,
}

fn err(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        code,
        message: message.into(),
    }
}

/// A fresh workload id: `w-` and 12 random hex digits.
fn new_workload_id() -> WorkloadId {
    let mut bytes = [0u8; 6];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        bytes.copy_from_slice(&now_ms().to_be_bytes()[2..]);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    WorkloadId::new(format!("w-{hex}")).expect("valid id")
}

/// Name of a workload's cgroup under herd's root.
pub fn cgroup_name(id: &WorkloadId) -> String {
    format!("wl-{id}")
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
            cfg,
            backend,
            client,
            events,
            ids,
            monitor,
            workloads: HashMap::new(),
            accepting: true,
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
                Effect::Persist => self.persist(id),
                Effect::Spawn => self.spawn(id, ctx),
                Effect::ArmTimeout(d) => {
                    let id = id.clone();
                    ctx.run_later(d, move |act, ctx| {
                        act.input(&id, Some(generation), ctx, |lc| lc.on_timeout())
                    });
                }
                Effect::SignalAll(signal) => {
                    let signal = parse_signal(&signal).unwrap_or(entry.resolved.kill_signal);
                    if let Some(cg) = &entry.cgroup {
                        cg.signal_all(signal);
                    }
                }
                Effect::KillAfter(d) => {
                    let id = id.clone();
                    ctx.run_later(d, move |act, ctx| {
                        act.input(&id, Some(generation), ctx, |lc| lc.on_grace_expired())
                    });
                }
                Effect::KillTree => {
                    if let Some(cg) = &entry.cgroup {
                        if let Err(e) = cg.kill_all() {
                            tracing::error!(workload = %id, error = %e, "cannot kill the workload's processes");
                        }
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
                    if let Some(cg) = entry.cgroup.take() {
                        if let Err(e) = cg.remove() {
                            tracing::warn!(workload = %id, error = %e, "cannot remove the workload's cgroup");
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

    /// Keeps the workload's record in the state dir (for re-adoption after a restart).
    fn persist(&self, id: &WorkloadId) {
        let Some(entry) = self.workloads.get(id) else {
            return;
        };
        let path = self.record_path(id);
        let tmp = path.with_extension("tmp");
        let result = serde_json::to_vec_pretty(&entry.lc.status)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            tracing::warn!(workload = %id, error = %e, "cannot save the workload record");
        }
    }

    fn forget_old(&mut self) {
        let mut settled: Vec<(u64, WorkloadId)> = self
            .workloads
            .iter()
            .filter(|(_, e)| e.lc.state().is_terminal() && e.cgroup.is_none())
            .map(|(id, e)| (e.lc.status.finished_at_ms.unwrap_or(0), id.clone()))
            .collect();
        if settled.len() <= KEEP_SETTLED {
            return;
        }
        settled.sort();
        for (_, id) in settled.iter().take(settled.len() - KEEP_SETTLED) {
            self.workloads.remove(id);
            let _ = std::fs::remove_file(self.record_path(id));
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
        match self.spawn_process(id, ctx) {
            Ok(pid) => {
                let entry = self.workloads.get_mut(id).expect("present");
                let fx = entry.lc.on_spawned(pid, now_ms());
                self.apply(id, fx, ctx);
            }
            Err(reason) => {
                tracing::warn!(workload = %id, %reason, "workload failed to start");
                let entry = self.workloads.get_mut(id).expect("present");
                let fx = entry.lc.on_spawn_failed(reason, now_ms());
                self.apply(id, fx, ctx);
            }
        }
    }

    fn spawn_process(&mut self, id: &WorkloadId, ctx: &mut Context<Self>) -> Result<u32, String> {
        let entry = self.workloads.get_mut(id).expect("present");
        let spec = &entry.lc.status.spec;
        let cgroup = match &entry.cgroup {
            Some(cg) => cg.clone(),
            None => {
                let cg = self
                    .backend
                    .create(&cgroup_name(id), &spec.limits)
                    .map_err(|e| format!("cannot create the cgroup: {e}"))?;
                entry.cgroup = Some(cg.clone());
                entry.oom_seen = 0;
                cg
            }
        };
        let fds = cgroup
            .placement_fds()
            .map_err(|e| format!("cannot open the cgroup: {e}"))?;
        let r = &entry.resolved;
        let mut cmd = tokio::process::Command::new(&r.program);
        cmd.arg0(&spec.command[0])
            .args(&spec.command[1..])
            .env_clear()
            .env("PATH", &r.path_env)
            .env("HOME", &r.home)
            .env("USER", &r.user)
            .env("LOGNAME", &r.user)
            .env("HERD_NODE", self.cfg.node_id.as_str())
            .env("HERD_WORKLOAD_ID", id.as_str())
            .current_dir(spec.cwd.as_deref().unwrap_or("/"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        if let Some(run) = &spec.run_id {
            cmd.env("HERD_RUN_ID", run.as_str());
            // A directory of its own for the task's results, owned by the workload's user.
            let dir = self
                .cfg
                .state_dir
                .join("runs")
                .join(run.as_str())
                .join(format!("{}-{id}", spec.rep.unwrap_or(0)));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            if nix::unistd::Uid::effective().is_root() {
                nix::unistd::chown(&dir, Some(r.uid), Some(r.gid))
                    .map_err(|e| format!("cannot hand {} to {}: {e}", dir.display(), r.user))?;
            }
            cmd.env("HERD_OUTPUT_DIR", &dir);
        }
        if let Some(rep) = spec.rep {
            cmd.env("HERD_REP", rep.to_string());
        }
        cmd.envs(&spec.env);
        let change_user = nix::unistd::Uid::effective() != r.uid;
        enter_in_child(
            &mut cmd,
            fds,
            change_user.then(|| (r.uid, r.gid, r.groups.clone())),
        );
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", r.program.display()))?;
        let pid = child.id().ok_or("the process vanished at once")?;
        cgroup.set_leader(pid);
        entry.generation += 1;
        let generation = entry.generation;

        for (stream, reader) in [
            (
                LogStream::Stdout,
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin>),
            ),
            (
                LogStream::Stderr,
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin>),
            ),
        ] {
            if let Some(reader) = reader {
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
        }
        let addr = ctx.address();
        let wid = id.clone();
        actix::spawn(async move {
            let status = child.wait().await;
            addr.do_send(ChildExited {
                workload_id: wid,
                generation,
                status,
            });
        });
        if entry.lc.status.spec.collect {
            self.monitor.do_send(Track {
                workload_id: id.clone(),
                run_id: entry.lc.status.spec.run_id.clone(),
                cgroup,
            });
        }
        Ok(pid)
    }

    fn start(
        &mut self,
        mut spec: WorkloadSpec,
        ctx: &mut Context<Self>,
    ) -> Result<Accepted, ErrorBody> {
        if !self.accepting {
            return Err(err(ErrorCode::Unavailable, "the node is shutting down"));
        }
        let resolved = validate(&spec, &self.cfg.policy, self.cfg.host_cpus)?;
        let id = spec.workload_id.clone().unwrap_or_else(new_workload_id);
        spec.workload_id = Some(id.clone());
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
        self.workloads.insert(
            id.clone(),
            Entry {
                lc,
                resolved,
                cgroup: None,
                generation: 0,
                oom_seen: 0,
            },
        );
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
        self.workloads
            .values()
            .filter(|e| !e.lc.state().is_terminal() || e.cgroup.is_some())
            .count()
    }
}

/// In the forked child, before exec: join the cgroup (write `0` to each pre-opened
/// `cgroup.procs`), start a new session, then drop to the workload's user.
#[allow(unsafe_code)]
fn enter_in_child(
    cmd: &mut tokio::process::Command,
    fds: Vec<std::os::fd::OwnedFd>,
    user: Option<(nix::unistd::Uid, nix::unistd::Gid, Vec<nix::unistd::Gid>)>,
) {
    // SAFETY: the closure runs between fork and exec. It only makes system calls (write,
    // setsid, setgroups, setgid, setuid) on data prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &fds {
                nix::unistd::write(fd, b"0")?;
            }
            nix::unistd::setsid()?;
            if let Some((uid, gid, groups)) = &user {
                nix::unistd::setgroups(groups)?;
                nix::unistd::setgid(*gid)?;
                nix::unistd::setuid(*uid)?;
            }
            Ok(())
        });
    }
}

impl Actor for WorkloadExecutor {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct ChildExited {
    workload_id: WorkloadId,
    generation: u64,
    status: std::io::Result<std::process::ExitStatus>,
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
        let exit = match msg.status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) => Exit::Code(c),
                (None, Some(sig)) => Exit::Signal(sig),
                (None, None) => Exit::Code(-1),
            },
            Err(e) => {
                tracing::error!(workload = %id, error = %e, "cannot wait for the workload");
                Exit::Code(-1)
            }
        };
        let oom_kills = entry
            .cgroup
            .as_ref()
            .and_then(|cg| cg.sample().ok())
            .map(|s| s.oom_kills)
            .unwrap_or(0);
        let oom = oom_kills > entry.oom_seen;
        entry.oom_seen = oom_kills;
        let fx = entry.lc.on_exit(exit, oom, now_ms());
        self.apply(&id, fx, ctx);
    }
}

#[derive(Message)]
#[rtype(result = "Result<Accepted, ErrorBody>")]
pub struct Start(pub WorkloadSpec);

impl Handler<Start> for WorkloadExecutor {
    type Result = Result<Accepted, ErrorBody>;
    fn handle(&mut self, msg: Start, ctx: &mut Self::Context) -> Self::Result {
        self.start(msg.0, ctx)
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
                .unwrap_or(crate::workload::lifecycle::DEFAULT_GRACE)
                .min(msg.grace_cap);
            let fx = entry.lc.on_stop(None, Some(grace), now_ms());
            self.apply(id, fx, ctx);
        }
    }
}

/// Kills and removes whatever still has processes; answers how many workloads that was.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct KillRemaining;

impl Handler<KillRemaining> for WorkloadExecutor {
    type Result = usize;
    fn handle(&mut self, _: KillRemaining, _: &mut Self::Context) -> usize {
        let mut killed = 0;
        for e in self.workloads.values_mut() {
            if let Some(cg) = e.cgroup.take() {
                killed += 1;
                let _ = cg.kill_all();
                let _ = cg.remove();
            }
        }
        killed
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
