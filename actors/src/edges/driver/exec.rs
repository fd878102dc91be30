//! The exec driver: each workload runs under its own supervisor process (`herd-shim`, see
//! [`herd_shim`]) that starts it in a cgroup made with the workload's limits, as its user,
//! keeps its output in files and records its exit, so that the workload outlives a restart
//! of herdd and is re-adopted by the next one.

use super::inotify::{Signals, Watcher};
use super::spare::SpareShim;
use super::tail::{Tail, TAIL_MAX_WAIT, TAIL_MAX_WAIT_WATCHED};
use super::{Driver, DriverError, Launch, Output, Recovered, Running, Started};
use crate::cores::workload::lifecycle::Exit;
use crate::cores::workload::validate::Resolved;
use crate::edges::cgroup::{CgroupBackend, Pinned, WorkloadCgroup};
use futures::future::{FutureExt, LocalBoxFuture};
use herd_bus::{GpuInfo, LogStream, WorkloadId, WorkloadStatus};
use herd_shim::{self as shim, ShimExit, ShimLaunch, ShimState};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// Longest wait for a shim's answer.
const SHIM_ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Name of a workload's cgroup under herd's root.
pub fn cgroup_name(id: &WorkloadId) -> String {
    format!("wl-{id}")
}

pub struct ExecDriver {
    backend: Arc<dyn CgroupBackend>,
    /// Starts supervisors (the shim directory is appended to their command), a spare
    /// ready.
    shims: SpareShim,
    /// Where each workload's shim directory is made: `<dir>/<id>.shim`.
    dirs: PathBuf,
    /// Wakes log tails when shims write.
    watcher: Watcher,
    /// The node's GPUs: a workload's assigned UUIDs are found here to limit its device access
    /// to its own `/dev/nvidia<index>` (cgroup v1).
    gpus: Vec<GpuInfo>,
}

impl ExecDriver {
    /// `shim_command`: how to start a supervisor (`["/usr/bin/herd-shim"]`, or herdd itself
    /// with `shim`), the shim directory is its last argument.
    pub fn new(
        backend: Arc<dyn CgroupBackend>,
        shim_command: Vec<std::ffi::OsString>,
        dirs: PathBuf,
    ) -> Self {
        assert!(!shim_command.is_empty(), "a shim command");
        let shims = SpareShim::new(shim_command, dirs.clone());
        shims.refill_later();
        ExecDriver {
            backend,
            shims,
            dirs,
            watcher: Watcher::start(),
            gpus: vec![],
        }
    }

    /// With the node's GPU inventory (NVML's, or declared in the configuration): a workload
    /// with GPUs assigned is held to their device files. Without it, such a workload is
    /// refused, naming the GPU not found.
    pub fn with_gpu_inventory(mut self, gpus: Vec<GpuInfo>) -> Self {
        self.gpus = gpus;
        self
    }

    pub fn shim_dir(&self, id: &WorkloadId) -> PathBuf {
        self.dirs.join(format!("{id}.shim"))
    }

    /// Makes the cgroup and the shim directory, then starts the shim.
    fn prepare(&self, l: &Launch) -> Result<(tokio::process::Child, Prepared), String> {
        let Resolved::Exec(r) = &l.resolved else {
            return Err("not an exec workload".into());
        };
        let spec = &l.spec;
        shim::stage::stage("driver_prepare");
        let pinned = Pinned {
            cores: l.assigned.cores.clone(),
            gpu_minors: super::gpu_minors(&l.assigned.gpus, &self.gpus)?,
        };
        // An existing empty cgroup (a restart's) is reused.
        let cgroup = self
            .backend
            .create(&cgroup_name(&l.workload_id), &spec.limits, &pinned)
            .map_err(|e| format!("cannot create the cgroup: {e}"))?;
        shim::stage::stage("driver_cgroup_made");
        let oom_before = cgroup.sample().map(|s| s.oom_kills).unwrap_or(0);
        // The working directory (and what herd made in it) belongs to the workload's user.
        if nix::unistd::Uid::effective().is_root() {
            let tmp = l.work_dir.join(super::TMP_SUBDIR);
            for dir in [Some(&l.work_dir), Some(&tmp), l.output_dir.as_ref()]
                .into_iter()
                .flatten()
            {
                nix::unistd::chown(dir, Some(r.uid), Some(r.gid))
                    .map_err(|e| format!("cannot hand {} to {}: {e}", dir.display(), r.user))?;
            }
        }
        let mut env = vec![
            ("PATH".to_string(), r.path_env.clone()),
            ("USER".to_string(), r.user.clone()),
            ("LOGNAME".to_string(), r.user.clone()),
        ];
        env.extend(l.herd_env(&l.work_dir.to_string_lossy()));
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(l.gpu_env());
        let env = super::merge_env(env);
        let change_user = nix::unistd::Uid::effective() != r.uid;
        let launch = ShimLaunch {
            program: r.program.clone(),
            argv0: spec.command[0].clone(),
            args: spec.command[1..].to_vec(),
            env,
            cwd: spec
                .cwd
                .as_deref()
                .map(PathBuf::from)
                .unwrap_or_else(|| l.work_dir.clone()),
            user: change_user.then(|| {
                (
                    r.uid.as_raw(),
                    r.gid.as_raw(),
                    r.groups.iter().map(|g| g.as_raw()).collect(),
                )
            }),
            cgroup_procs: cgroup.placement_files(),
            oom_before,
        };
        let dir = self.shim_dir(&l.workload_id);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .and_then(|()| shim::write_json(&dir, shim::LAUNCH_FILE, &launch))
            .map_err(|e| format!("cannot prepare {}: {e}", dir.display()))?;
        shim::stage::stage("driver_launch_written");
        let child = self.shims.start(&dir).map_err(|e| {
            format!(
                "cannot start the workload's supervisor {}: {e}",
                Path::new(&self.shims.program()).display()
            )
        })?;
        shim::stage::stage("driver_shim_started");
        Ok((
            child,
            Prepared {
                cgroup,
                dir,
                oom_before,
            },
        ))
    }

    /// Finds what is left of `status`'s workload after a restart of herdd.
    fn adopt(&self, status: &WorkloadStatus) -> Recovered {
        let id = &status.workload_id;
        let dir = self.shim_dir(id);
        let launch: Option<ShimLaunch> = shim::read_json(&dir, shim::LAUNCH_FILE);
        let state: Option<ShimState> = shim::read_json(&dir, shim::STATE_FILE);
        let (Some(launch), Some(state)) = (launch, state) else {
            self.discard(id);
            return Recovered::Lost(
                "herdd stopped before its workload had started; nothing of it is left".into(),
            );
        };
        // How it ended is read before anything that can fail (systemd may have removed an
        // emptied cgroup while herdd was stopped): an exit is never lost once recorded.
        let ended: Option<ShimExit> = shim::read_json(&dir, shim::EXIT_FILE);
        let cgroup = match (self.backend.open(&cgroup_name(id)), ended) {
            (Ok(c), _) => c,
            (Err(_), Some(exit)) if !state.is_running() => {
                let _ = std::fs::remove_dir_all(&dir);
                return Recovered::Ended(Exit::from(exit));
            }
            (Err(e), _) => {
                // Nothing may run unseen: the workload leads its own session (setsid).
                if state.is_running() {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(state.child_pid as i32),
                        Signal::SIGKILL,
                    );
                }
                let _ = std::fs::remove_dir_all(&dir);
                return Recovered::Lost(format!("cannot open its cgroup again: {e}"));
            }
        };
        cgroup.set_leader(state.child_pid);
        tracing::info!(
            workload = %id,
            pid = state.child_pid,
            running = state.is_running(),
            placement = placement(Some(&state)),
            "adopting an exec workload after a restart"
        );
        let prepared = Prepared {
            cgroup,
            dir,
            oom_before: launch.oom_before,
        };
        let alive = state.is_running();
        let ended = ended.is_some();
        let done = Arc::new(Signals::default());
        if !alive || ended {
            done.set_done();
        }
        let output = prepared
            .tails(&self.watcher, &done, true)
            .unwrap_or_else(|e| {
                tracing::warn!(workload = %id, error = %e, "cannot follow its output again");
                vec![]
            });
        let exit = if alive {
            let p = prepared.clone();
            async move {
                if let Err(e) = wait_pidfd(state.shim_pid).await {
                    tracing::warn!(pid = state.shim_pid, error = %e, "cannot wait for a shim; polling it");
                    while state.is_running() {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                done.set_done();
                p.outcome()
            }
            .boxed_local()
        } else {
            futures::future::ready(prepared.outcome()).boxed_local()
        };
        Recovered::Found(Started {
            pid: state.child_pid,
            handle: Arc::new(ExecWorkload {
                cgroup: prepared.cgroup.clone(),
                dir: prepared.dir.clone(),
            }),
            exit,
            output,
        })
    }

    /// Kills and removes whatever is left of a workload that cannot be followed.
    fn discard(&self, id: &WorkloadId) {
        if let Ok(cgroup) = self.backend.open(&cgroup_name(id)) {
            let _ = cgroup.kill_all();
            let _ = cgroup.remove();
        }
        let _ = std::fs::remove_dir_all(self.shim_dir(id));
    }
}

/// How the shim put the workload into its cgroup, for logs.
fn placement(state: Option<&ShimState>) -> &'static str {
    match state {
        Some(ShimState {
            placement: Some(p), ..
        }) => p.as_str(),
        Some(_) => "unrecorded (an older herd-shim)",
        None => "unknown (no state.json)",
    }
}

/// How the shim recorded the end: a code, else a signal (neither cannot happen: -1).
impl From<ShimExit> for Exit {
    fn from(x: ShimExit) -> Exit {
        match (x.code, x.signal) {
            (Some(c), _) => Exit::code(c),
            (None, Some(s)) => Exit::signal(s),
            (None, None) => Exit::code(-1),
        }
    }
}

/// A started shim's cgroup and directory.
#[derive(Clone)]
struct Prepared {
    cgroup: Arc<dyn WorkloadCgroup>,
    dir: PathBuf,
    oom_before: u64,
}

impl Prepared {
    /// Followers of the output files, from their start or (`from_end`) from now on.
    fn tails(
        &self,
        watcher: &Watcher,
        done: &Arc<Signals>,
        from_end: bool,
    ) -> std::io::Result<Vec<(LogStream, Output)>> {
        let max_wait = if watcher.watch(&self.dir, done) {
            TAIL_MAX_WAIT_WATCHED
        } else {
            TAIL_MAX_WAIT
        };
        let mut out: Vec<(LogStream, Output)> = vec![];
        for (i, (stream, name)) in [
            (LogStream::Stdout, shim::STDOUT_LOG),
            (LogStream::Stderr, shim::STDERR_LOG),
        ]
        .into_iter()
        .enumerate()
        {
            let tail = Tail::open(self.dir.join(name), done.clone(), i, from_end, max_wait)?;
            out.push((stream, Box::new(tail)));
        }
        Ok(out)
    }

    /// How the workload ended, from the shim's `exit.json`.
    fn outcome(&self) -> Result<Exit, DriverError> {
        match shim::read_json::<ShimExit>(&self.dir, shim::EXIT_FILE) {
            Some(x) => {
                let oom_after = self.cgroup.sample().map(|s| s.oom_kills).unwrap_or(0);
                Ok(Exit::from(x).oom_killed(oom_after > self.oom_before))
            }
            None => Err(DriverError::Lost(
                "its supervisor (herd-shim) ended without recording how the workload ended".into(),
            )),
        }
    }
}

impl Driver for ExecDriver {
    fn launch(&self, launch: Launch) -> LocalBoxFuture<'static, Result<Started, DriverError>> {
        let (mut child, prepared) = match self.prepare(&launch) {
            Ok(p) => p,
            Err(e) => return futures::future::ready(Err(DriverError::Launch(e))).boxed_local(),
        };
        let watcher = self.watcher.clone();
        let id = launch.workload_id.clone();
        let shims = self.shims.clone();
        async move {
            let answer = match child.stdout.take() {
                Some(out) => {
                    let mut line = String::new();
                    let mut reader = tokio::io::BufReader::new(out);
                    match tokio::time::timeout(SHIM_ANSWER_WITHIN, reader.read_line(&mut line))
                        .await
                    {
                        Ok(_) => shim::parse_answer(&line),
                        Err(_) => Err(format!(
                            "the workload's supervisor did not answer within {SHIM_ANSWER_WITHIN:?}"
                        )),
                    }
                }
                None => Err("no answer from the workload's supervisor".into()),
            };
            shims.refill_later();
            let pid = match answer {
                Ok(pid) => pid,
                Err(reason) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    let _ = prepared.cgroup.kill_all();
                    release(prepared.cgroup.clone(), prepared.dir.clone()).await;
                    return Err(DriverError::Launch(reason));
                }
            };
            shim::stage::stage("driver_answered");
            prepared.cgroup.set_leader(pid);
            let state: Option<ShimState> = shim::read_json(&prepared.dir, shim::STATE_FILE);
            tracing::info!(
                workload = %id,
                pid,
                placement = placement(state.as_ref()),
                "started under its supervisor"
            );
            let done = Arc::new(Signals::default());
            let output = prepared
                .tails(&watcher, &done, false)
                .map_err(|e| format!("cannot follow the workload's output: {e}"));
            let output = match output {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(pid, error = %e, "the workload runs without its logs");
                    vec![]
                }
            };
            let p = prepared.clone();
            let exit = async move {
                if let Err(e) = child.wait().await {
                    tracing::error!(pid, error = %e, "cannot wait for the workload's supervisor");
                }
                done.set_done();
                p.outcome()
            };
            Ok(Started {
                pid,
                handle: Arc::new(ExecWorkload {
                    cgroup: prepared.cgroup,
                    dir: prepared.dir,
                }),
                exit: exit.boxed_local(),
                output,
            })
        }
        .boxed_local()
    }

    fn recover(
        &self,
        records: Vec<WorkloadStatus>,
    ) -> LocalBoxFuture<'static, Vec<(WorkloadStatus, Recovered)>> {
        let found = records
            .into_iter()
            .map(|status| {
                let recovered = self.adopt(&status);
                (status, recovered)
            })
            .collect();
        futures::future::ready(found).boxed_local()
    }
}

/// Waits until process `pid` (not necessarily a child of herdd) has ended.
#[allow(unsafe_code)]
async fn wait_pidfd(pid: u32) -> std::io::Result<()> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(()),
            _ => Err(e),
        };
    }
    // SAFETY: the descriptor was just returned to us and is owned by nothing else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    // SAFETY: the descriptor is owned by the AsyncFd and closed only when it is dropped.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }
    .map_err(std::io::Error::from)?;
    let _ready = fd.readable().await?;
    Ok(())
}

/// An exec workload: its cgroup is all herd needs to signal, kill and sample it.
#[derive(Debug)]
struct ExecWorkload {
    cgroup: Arc<dyn WorkloadCgroup>,
    dir: PathBuf,
}

impl Running for ExecWorkload {
    fn signal(&self, signal: Signal) {
        self.cgroup.signal_all(signal);
    }

    fn kill(&self) {
        if let Err(e) = self.cgroup.kill_all() {
            tracing::error!(error = %e, "cannot kill the workload's processes");
        }
    }

    fn sampler(&self) -> Option<Arc<dyn WorkloadCgroup>> {
        Some(self.cgroup.clone())
    }

    /// Off the executor's thread: the kernel may keep an emptied cgroup busy for a few ms,
    /// and removal waits for it; starts and stops of other workloads must not.
    fn release(&self) -> LocalBoxFuture<'static, ()> {
        release(self.cgroup.clone(), self.dir.clone()).boxed_local()
    }
}

async fn release(cgroup: Arc<dyn WorkloadCgroup>, dir: PathBuf) {
    let removed = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&dir);
        cgroup.remove()
    })
    .await;
    match removed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove the workload's cgroup"),
        Err(e) => tracing::warn!(error = %e, "the cgroup removal task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shims_exit_is_a_code_or_a_signal() {
        let exit = |code, signal| Exit::from(ShimExit { code, signal });
        assert_eq!(exit(Some(3), None), Exit::code(3));
        assert_eq!(exit(None, Some(9)), Exit::signal(9));
        assert_eq!(exit(None, None), Exit::code(-1));
    }
}
