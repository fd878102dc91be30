//! The exec driver: fork/exec into a cgroup made with the workload's limits, as its user.

use super::{Driver, Launch, Running, Started};
use crate::cgroup::{CgroupBackend, WorkloadCgroup};
use crate::workload::lifecycle::Exit;
use crate::workload::validate::Resolved;
use futures::future::{FutureExt, LocalBoxFuture};
use herd_bus::{LogStream, WorkloadId};
use nix::sys::signal::Signal;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;

/// Name of a workload's cgroup under herd's root.
pub fn cgroup_name(id: &WorkloadId) -> String {
    format!("wl-{id}")
}

pub struct ExecDriver {
    backend: Arc<dyn CgroupBackend>,
}

impl ExecDriver {
    pub fn new(backend: Arc<dyn CgroupBackend>) -> ExecDriver {
        ExecDriver { backend }
    }

    fn start(&self, l: &Launch) -> Result<Started, String> {
        let Resolved::Exec(r) = &l.resolved else {
            return Err("not an exec workload".into());
        };
        let spec = &l.spec;
        // An existing empty cgroup (a restart's) is reused.
        let cgroup = self
            .backend
            .create(&cgroup_name(&l.workload_id), &spec.limits)
            .map_err(|e| format!("cannot create the cgroup: {e}"))?;
        let oom_before = cgroup.sample().map(|s| s.oom_kills).unwrap_or(0);
        let fds = cgroup
            .placement_fds()
            .map_err(|e| format!("cannot open the cgroup: {e}"))?;
        let mut cmd = tokio::process::Command::new(&r.program);
        cmd.arg0(&spec.command[0])
            .args(&spec.command[1..])
            .env_clear()
            .env("PATH", &r.path_env)
            .env("HOME", &r.home)
            .env("USER", &r.user)
            .env("LOGNAME", &r.user)
            .current_dir(spec.cwd.as_deref().unwrap_or("/"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        if let Some(dir) = &l.output_dir {
            // The task's results directory belongs to the workload's user.
            if nix::unistd::Uid::effective().is_root() {
                nix::unistd::chown(dir, Some(r.uid), Some(r.gid))
                    .map_err(|e| format!("cannot hand {} to {}: {e}", dir.display(), r.user))?;
            }
        }
        let output_dir = l.output_dir.as_ref().map(|d| d.to_string_lossy());
        cmd.envs(l.herd_env(output_dir.as_deref()));
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
        let mut output: Vec<(LogStream, super::Output)> = vec![];
        if let Some(s) = child.stdout.take() {
            output.push((LogStream::Stdout, Box::new(s)));
        }
        if let Some(s) = child.stderr.take() {
            output.push((LogStream::Stderr, Box::new(s)));
        }
        let cg = cgroup.clone();
        let exit = async move {
            let exit = match child.wait().await {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => Exit::Code(c),
                    (None, Some(sig)) => Exit::Signal(sig),
                    (None, None) => Exit::Code(-1),
                },
                Err(e) => {
                    tracing::error!(pid, error = %e, "cannot wait for the workload");
                    Exit::Code(-1)
                }
            };
            let oom_after = cg.sample().map(|s| s.oom_kills).unwrap_or(0);
            (exit, oom_after > oom_before)
        };
        Ok(Started {
            pid,
            handle: Arc::new(ExecWorkload { cgroup }),
            exit: exit.boxed_local(),
            output,
        })
    }
}

impl Driver for ExecDriver {
    fn launch(&self, launch: Launch) -> LocalBoxFuture<'static, Result<Started, String>> {
        futures::future::ready(self.start(&launch)).boxed_local()
    }
}

/// An exec workload: its cgroup is all herd needs to signal, kill and sample it.
#[derive(Debug)]
struct ExecWorkload {
    cgroup: Arc<dyn WorkloadCgroup>,
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
        let cgroup = self.cgroup.clone();
        async move {
            let removed = tokio::task::spawn_blocking(move || cgroup.remove()).await;
            match removed {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove the workload's cgroup"),
                Err(e) => tracing::warn!(error = %e, "the cgroup removal task failed"),
            }
        }
        .boxed_local()
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
