//! Starting the workload in its cgroup. With one cgroup2 directory the workload is born in it
//! ([`crate::clone3`]); otherwise (cgroup v1: one `cgroup.procs` per hierarchy; a kernel or a
//! sandbox without clone3) std's `Command` forks it and the child joins the cgroup before exec
//! (on v1 through each hierarchy's `tasks` file: see [`open_join_file`]).

use crate::clone3::{self, ChildStdio, CloneError, ExecPlan};
use crate::SHIM_IGNORES;
use crate::{Placement, ShimLaunch};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::ExitStatus;

/// The started workload's main process, a child of the shim.
pub(crate) enum Workload {
    Command(std::process::Child),
    Cloned(libc::pid_t),
}

impl Workload {
    pub(crate) fn id(&self) -> u32 {
        match self {
            Workload::Command(c) => c.id(),
            Workload::Cloned(pid) => *pid as u32,
        }
    }

    pub(crate) fn kill(&mut self) {
        match self {
            Workload::Command(c) => {
                let _ = c.kill();
            }
            Workload::Cloned(pid) => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
    }

    /// Waits for it to end (retrying when interrupted).
    pub(crate) fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Workload::Command(c) => loop {
                match c.wait() {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => return r,
                }
            },
            Workload::Cloned(pid) => clone3::wait(*pid).map(ExitStatus::from_raw),
        }
    }
}

/// A started workload: its process, the read ends of its stdout and stderr, how it entered
/// its cgroup.
pub(crate) struct Spawned {
    pub workload: Workload,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub placement: Placement,
}

/// Starts `launch` in the cgroup whose `cgroup.procs` files it names. The error is the
/// shim's answer without its `err `.
pub(crate) fn spawn(launch: &ShimLaunch) -> Result<Spawned, String> {
    let cannot_start =
        |e: std::io::Error| format!("cannot start {}: {e}", launch.program.display());
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from);
    let (out_r, out_w) = pipe().map_err(cannot_start)?;
    let (err_r, err_w) = pipe().map_err(cannot_start)?;
    let null = std::fs::File::open("/dev/null").map_err(cannot_start)?;
    let started = |workload, placement| Spawned {
        workload,
        stdout: out_r,
        stderr: err_r,
        placement,
    };

    let cgroup2 = match launch.cgroup_procs.as_slice() {
        [one] => clone3::cgroup2_dir(one),
        _ => None,
    };
    if let Some(dir) = cgroup2 {
        let plan = ExecPlan::new(launch).map_err(cannot_start)?;
        let stdio = ChildStdio {
            stdin: null.as_fd(),
            stdout: out_w.as_fd(),
            stderr: err_w.as_fd(),
        };
        match clone3::spawn(&plan, dir.as_fd(), &stdio) {
            Ok(pid) => return Ok(started(Workload::Cloned(pid), Placement::CloneIntoCgroup)),
            // Nothing was started: the older way below.
            Err(CloneError::Unsupported) => {}
            Err(CloneError::Failed(e)) => return Err(cannot_start(e)),
        }
    }

    let procs = launch
        .cgroup_procs
        .iter()
        .map(|p| open_join_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    let placement = if procs.is_empty() {
        Placement::NoCgroup
    } else {
        Placement::JoinBeforeExec
    };
    let mut cmd = std::process::Command::new(&launch.program);
    cmd.arg0(&launch.argv0)
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .stdin(null)
        .stdout(out_w)
        .stderr(err_w);
    let user = launch.user.clone().map(|(uid, gid, groups)| {
        (
            nix::unistd::Uid::from_raw(uid),
            nix::unistd::Gid::from_raw(gid),
            groups
                .into_iter()
                .map(nix::unistd::Gid::from_raw)
                .collect::<Vec<_>>(),
        )
    });
    enter_in_child(&mut cmd, procs, user);
    let child = cmd.spawn().map_err(cannot_start)?;
    // The child's ends, which `cmd` holds, are closed with it: the copies see the end of the
    // output when the workload (and whatever inherited them) closes its own.
    drop(cmd);
    Ok(started(Workload::Command(child), placement))
}

/// The file a forked child writes `0` to to join the cgroup of `procs` (a `cgroup.procs`),
/// opened for writing: on cgroup v1 the `tasks` file beside it. Between fork and exec the child
/// has one thread, so moving that thread moves the process, and the kernel moves the calling
/// thread without the global lock that moving a process through `cgroup.procs` takes
/// (`cgroup_threadgroup_rwsem`, whose write side waits for an RCU grace period unless the
/// hierarchy is mounted with `favordynmods`: measured here, 0.19 ms at the p90 for five
/// hierarchies through `tasks`, 13 ms through `cgroup.procs`). cgroup v2 has no `tasks` file.
fn open_join_file(procs: &Path) -> Result<OwnedFd, String> {
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .map(OwnedFd::from)
    };
    let tasks = procs
        .parent()
        .filter(|_| procs.file_name() == Some(OsStr::new("cgroup.procs")))
        .map(|dir| dir.join("tasks"));
    if let Some(fd) = tasks.and_then(|t| open(&t).ok()) {
        return Ok(fd);
    }
    open(procs).map_err(|e| format!("cannot open the cgroup ({}): {e}", procs.display()))
}

/// In the forked child, before exec: join the cgroup (write `0` to each pre-opened file, see
/// [`open_join_file`]), start a new session, restore the signals the shim ignores and empty
/// the signal mask (std's Command keeps the parent's), then drop to the workload's user.
#[allow(unsafe_code)]
fn enter_in_child(
    cmd: &mut std::process::Command,
    fds: Vec<OwnedFd>,
    user: Option<(nix::unistd::Uid, nix::unistd::Gid, Vec<nix::unistd::Gid>)>,
) {
    // SAFETY: the closure runs between fork and exec. It only makes system calls (write,
    // setsid, sigaction, sigprocmask, setgroups, setgid, setuid) on data prepared before the
    // fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &fds {
                nix::unistd::write(fd, b"0")?;
            }
            nix::unistd::setsid()?;
            for sig in SHIM_IGNORES {
                nix::sys::signal::signal(sig, SigHandler::SigDfl)?;
            }
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            if let Some((uid, gid, groups)) = &user {
                nix::unistd::setgroups(groups)?;
                nix::unistd::setgid(*gid)?;
                nix::unistd::setuid(*uid)?;
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written_by(dir: &Path, files: &[&str]) -> Vec<String> {
        for f in files {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let fd = open_join_file(&dir.join("cgroup.procs")).unwrap();
        nix::unistd::write(&fd, b"0").unwrap();
        files
            .iter()
            .filter(|f| std::fs::read_to_string(dir.join(f)).unwrap() == "0")
            .map(|f| f.to_string())
            .collect()
    }

    #[test]
    fn a_v1_hierarchy_is_joined_through_tasks_a_v2_directory_through_cgroup_procs() {
        let v1 = tempfile::tempdir().unwrap();
        assert_eq!(written_by(v1.path(), &["cgroup.procs", "tasks"]), ["tasks"]);
        let v2 = tempfile::tempdir().unwrap();
        assert_eq!(written_by(v2.path(), &["cgroup.procs"]), ["cgroup.procs"]);
        let gone = tempfile::tempdir().unwrap();
        let err = open_join_file(&gone.path().join("cgroup.procs")).unwrap_err();
        assert!(err.starts_with("cannot open the cgroup ("), "{err}");
    }
}
