//! A workload's lifecycle as a plain state machine: inputs in, effects out, `now` passed in.
//!
//! pending → starting → running → exited{code} | failed{reason} | stopped | killed{signal} |
//! oom_killed | timed_out | lost. With `restart.policy = on_failure`, a failed outcome is
//! followed by starting → running again after a backoff, up to `restart.max` times.

use super::resources::{self, FinalCounters};
use herd_bus::{
    NodeId, RestartPolicyKind, WorkloadId, WorkloadSpec, WorkloadState, WorkloadStatus,
};
use std::time::Duration;

/// How a workload's main process ended, as its driver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Its exit code, when it exited by itself.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Its cgroup counted an OOM kill meanwhile: the kernel ended it for lack of memory.
    pub oom_killed: bool,
}

impl Exit {
    pub fn code(code: i32) -> Exit {
        Exit {
            code: Some(code),
            signal: None,
            oom_killed: false,
        }
    }

    pub fn signal(signal: i32) -> Exit {
        Exit {
            code: None,
            signal: Some(signal),
            oom_killed: false,
        }
    }

    pub fn oom_killed(self, oom_killed: bool) -> Exit {
        Exit { oom_killed, ..self }
    }
}

/// Why herd is stopping a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    Requested,
    Timeout,
}

/// What the owner must do after an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Publish a WorkloadEvent for the state the status now holds.
    Emit(WorkloadState),
    /// Write the status to the state directory.
    Persist,
    /// The workload is due to start (first, or again after a restart's backoff): feed
    /// [`Lifecycle::on_spawn`], the one place that enters `starting`.
    Spawn,
    /// Ask the driver to start the process now.
    Launch,
    /// Arm the timeout.
    ArmTimeout(Duration),
    /// Send this signal to every process of the workload.
    SignalAll(String),
    /// Kill the tree once this grace period has passed, if the workload still runs.
    KillAfter(Duration),
    /// Kill whatever is left of the tree now.
    KillTree,
    /// Spawn again after this backoff.
    RestartAfter(Duration),
    /// Remove the cgroup and stop sampling.
    Cleanup,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub status: WorkloadStatus,
    stop: Option<StopCause>,
    escalated: bool,
    restart_pending: bool,
}

pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
pub const DEFAULT_KILL_SIGNAL: &str = "SIGTERM";
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// 1 s, 2 s, 4 s … up to 30 s.
pub fn restart_backoff(restarts: u32) -> Duration {
    Duration::from_secs(1u64 << restarts.min(5)).min(MAX_BACKOFF)
}

impl Lifecycle {
    pub fn new(
        workload_id: WorkloadId,
        node_id: NodeId,
        spec: WorkloadSpec,
        now_ms: u64,
    ) -> (Lifecycle, Vec<Effect>) {
        let lc = Lifecycle {
            status: WorkloadStatus {
                workload_id,
                node_id,
                state: WorkloadState::Pending,
                spec,
                pid: None,
                created_at_ms: now_ms,
                started_at_ms: None,
                finished_at_ms: None,
                exit_code: None,
                signal: None,
                reason: None,
                restarts: 0,
                resources: None,
                work_dir: None,
                assigned: Default::default(),
            },
            stop: None,
            escalated: false,
            restart_pending: false,
        };
        (
            lc,
            vec![
                Effect::Emit(WorkloadState::Pending),
                Effect::Persist,
                Effect::Spawn,
            ],
        )
    }

    pub fn state(&self) -> WorkloadState {
        self.status.state
    }

    fn grace(&self) -> Duration {
        self.status
            .spec
            .grace_s
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_GRACE)
    }

    fn kill_signal(&self) -> String {
        self.status
            .spec
            .kill_signal
            .clone()
            .unwrap_or_else(|| DEFAULT_KILL_SIGNAL.into())
    }

    fn set(&mut self, state: WorkloadState, out: &mut Vec<Effect>) {
        self.status.state = state;
        out.push(Effect::Emit(state));
        out.push(Effect::Persist);
    }

    /// The workload is due to start ([`Effect::Spawn`]): it enters `starting` and asks for a
    /// launch, or settles `stopped` when a stop came first. The only way into `starting`.
    pub fn on_spawn(&mut self, now_ms: u64) -> Vec<Effect> {
        if self.stop == Some(StopCause::Requested) {
            return self.on_stopped_before_start(now_ms);
        }
        let mut out = Vec::new();
        self.restart_pending = false;
        self.status.resources = None;
        self.status.pid = None;
        self.status.exit_code = None;
        self.status.signal = None;
        self.status.reason = None;
        self.status.finished_at_ms = None;
        self.set(WorkloadState::Starting, &mut out);
        out.push(Effect::Launch);
        out
    }

    /// The main process runs as `pid`.
    pub fn on_spawned(&mut self, pid: u32, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        // 0: the process ended before its pid could be read (a container that exits at once).
        self.status.pid = (pid != 0).then_some(pid);
        self.status.started_at_ms = Some(now_ms);
        self.set(WorkloadState::Running, &mut out);
        if self.stop == Some(StopCause::Requested) {
            // A stop arrived while a slow driver (a container) was starting: stop it now.
            out.push(Effect::SignalAll(self.kill_signal()));
            out.push(Effect::KillAfter(self.grace()));
        } else if let Some(t) = self.status.spec.timeout_s {
            out.push(Effect::ArmTimeout(Duration::from_secs_f64(t)));
        }
        out
    }

    /// A workload found still running after herdd restarted, from its saved status; its
    /// timeout is re-armed for what is left of it.
    pub fn adopted(status: WorkloadStatus, now_ms: u64) -> (Lifecycle, Vec<Effect>) {
        let mut out = Vec::new();
        if let (Some(t), Some(started)) = (status.spec.timeout_s, status.started_at_ms) {
            let elapsed = Duration::from_millis(now_ms.saturating_sub(started));
            out.push(Effect::ArmTimeout(
                Duration::from_secs_f64(t).saturating_sub(elapsed),
            ));
        }
        let lc = Lifecycle {
            status,
            stop: None,
            escalated: false,
            restart_pending: false,
        };
        (lc, out)
    }

    /// Nothing is left of the workload and how it ended is unknown.
    pub fn on_lost(&mut self, reason: String, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        self.status.pid = None;
        self.status.reason = Some(reason);
        self.status.finished_at_ms = Some(now_ms);
        self.set(WorkloadState::Lost, &mut out);
        out.push(Effect::Cleanup);
        out
    }

    pub fn on_spawn_failed(&mut self, reason: String, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        self.status.reason = Some(reason);
        self.status.finished_at_ms = Some(now_ms);
        self.set(WorkloadState::Failed, &mut out);
        out.push(Effect::Cleanup);
        out
    }

    /// A stop request. `signal`/`grace` override the spec's for this stop.
    pub fn on_stop(
        &mut self,
        signal: Option<String>,
        grace: Option<Duration>,
        now_ms: u64,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        match self.status.state {
            WorkloadState::Running if self.stop.is_none() => {
                self.stop = Some(StopCause::Requested);
                out.push(Effect::SignalAll(
                    signal.unwrap_or_else(|| self.kill_signal()),
                ));
                out.push(Effect::KillAfter(grace.unwrap_or_else(|| self.grace())));
            }
            // Already stopping: a second stop with no grace kills at once.
            WorkloadState::Running if grace == Some(Duration::ZERO) => {
                self.escalated = true;
                out.push(Effect::KillTree);
            }
            WorkloadState::Pending | WorkloadState::Starting => {
                self.stop = Some(StopCause::Requested);
            }
            s if s.is_terminal() && self.restart_pending => {
                // Waiting to restart: cancel the restart and settle.
                self.restart_pending = false;
                self.status.finished_at_ms = Some(now_ms);
                self.set(WorkloadState::Stopped, &mut out);
                out.push(Effect::Cleanup);
            }
            _ => {}
        }
        out
    }

    pub fn on_timeout(&mut self) -> Vec<Effect> {
        if self.status.state != WorkloadState::Running || self.stop.is_some() {
            return vec![];
        }
        self.stop = Some(StopCause::Timeout);
        vec![
            Effect::SignalAll(self.kill_signal()),
            Effect::KillAfter(self.grace()),
        ]
    }

    pub fn on_grace_expired(&mut self) -> Vec<Effect> {
        if self.status.state != WorkloadState::Running {
            return vec![];
        }
        self.escalated = true;
        vec![Effect::KillTree]
    }

    /// The workload's cgroup counters as it ended (read before its exit is fed): its resource
    /// summary, reported with the settled state.
    pub fn on_final_counters(&mut self, counters: FinalCounters, now_ms: u64) {
        let wall_s = self
            .status
            .started_at_ms
            .map(|s| now_ms.saturating_sub(s) as f64 / 1e3);
        self.status.resources = Some(resources::summary(counters, wall_s));
    }

    /// The main process ended.
    pub fn on_exit(&mut self, exit: Exit, now_ms: u64) -> Vec<Effect> {
        let mut out = vec![Effect::KillTree];
        self.status.pid = None;
        self.status.finished_at_ms = Some(now_ms);
        let code = exit.code;
        self.status.exit_code = code;
        self.status.signal = exit.signal.map(signal_name);
        let by_signal = exit.signal.is_some();
        let state = if exit.oom_killed {
            WorkloadState::OomKilled
        } else {
            match (self.stop, exit) {
                (Some(StopCause::Timeout), _) => WorkloadState::TimedOut,
                (Some(StopCause::Requested), _) if self.escalated => {
                    self.status.signal = Some("SIGKILL".into());
                    WorkloadState::Killed
                }
                (Some(StopCause::Requested), _) => WorkloadState::Stopped,
                (None, _) if by_signal => WorkloadState::Killed,
                (None, _) => WorkloadState::Exited,
            }
        };
        let failed = match state {
            WorkloadState::Exited => code != Some(0),
            WorkloadState::Killed | WorkloadState::OomKilled | WorkloadState::Failed => {
                self.stop.is_none()
            }
            _ => false,
        };
        let restart = &self.status.spec.restart;
        let will_restart = failed
            && restart.policy == RestartPolicyKind::OnFailure
            && self.status.restarts < restart.max;
        self.set(state, &mut out);
        self.stop = None;
        self.escalated = false;
        if will_restart {
            out.push(Effect::RestartAfter(restart_backoff(self.status.restarts)));
            self.status.restarts += 1;
            self.restart_pending = true;
        } else {
            out.push(Effect::Cleanup);
        }
        out
    }

    /// A restart's backoff has passed: the workload is due to start again.
    pub fn on_restart_due(&mut self) -> Vec<Effect> {
        if !self.restart_pending {
            return vec![];
        }
        vec![Effect::Spawn]
    }

    /// Settles a workload stopped before it ran.
    fn on_stopped_before_start(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        self.stop = None;
        self.status.finished_at_ms = Some(now_ms);
        self.set(WorkloadState::Stopped, &mut out);
        out.push(Effect::Cleanup);
        out
    }
}

pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// Parses `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
    use std::str::FromStr;
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name).ok()
}

#[cfg(test)]
mod tests;
