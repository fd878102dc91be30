//! The per-workload supervisor ("shim") that lets exec workloads outlive herdd, and the files
//! through which herdd and it talk.
//!
//! herdd does not fork a workload itself: it writes the launch to `<state>/workloads/<id>.shim/`
//! ([`LAUNCH_FILE`]) and starts `herd-shim <dir>` (this crate's binary, installed beside herdd;
//! `herdd shim <dir>` when it is missing). The shim starts its own session, starts the workload
//! in its cgroup as its user (born in it with `clone3(CLONE_INTO_CGROUP)` on cgroup v2, else
//! joining it before exec: [`Placement`]), copies the workload's stdout and stderr into
//! [`STDOUT_LOG`] and [`STDERR_LOG`] there (rotated at [`LOG_CAP_BYTES`], one old file kept),
//! waits for it and writes how it ended to [`EXIT_FILE`]. It answers herdd on its stdout with
//! one line, `ok <pid>` or `err <reason>` ([`parse_answer`]), and writes its own pid, its start
//! time and how the workload was placed to [`STATE_FILE`].
//!
//! Because the shim, not herdd, is the workload's parent, herdd may stop or restart (systemd
//! `KillMode=process`) without the workload noticing: a new herdd finds the shim by its
//! `state.json` ([`ShimState::is_running`]), follows the logs from their end, and learns the
//! exit from `exit.json` once the shim ends (a pidfd says when). A workload that ended while
//! herdd was away left its `exit.json`; one whose shim is gone without it is reported lost.
//!
//! herdd keeps one shim started ahead of need (`herd-shim --spare <workloads dir>`, see
//! [`spare_main`]): it has paid for its exec and waits for herdd to write a workload's
//! directory on its stdin, so that a start does not wait for a supervisor to load.
//!
//! This crate is small on purpose (serde, serde_json, nix and libc): one shim runs per workload.

mod clone3;
mod files;
pub mod proc;
mod spawn;
pub mod stage;
mod supervise;

pub use clone3::probe as probe_clone_into_cgroup;
pub use files::{read_json, write_atomic, write_json};
pub use supervise::{copy_rotating, main, spare_main};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The signals the shim ignores, so that a terminal's or herdd's do not end it (and a closed
/// pipe to herdd does not either); its child restores them before exec.
pub(crate) const SHIM_IGNORES: [Signal; 4] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGPIPE,
];

/// A log file is rotated (to `<name>.1`, replacing the previous one) once it holds this much.
pub const LOG_CAP_BYTES: u64 = 64 * 1024 * 1024;

/// [`ShimLaunch`], written by herdd before it starts the shim.
pub const LAUNCH_FILE: &str = "launch.json";
/// [`ShimState`], written by the shim once the workload runs.
pub const STATE_FILE: &str = "state.json";
/// [`ShimExit`], written by the shim once the workload ended.
pub const EXIT_FILE: &str = "exit.json";
pub const STDOUT_LOG: &str = "stdout.log";
pub const STDERR_LOG: &str = "stderr.log";

/// What the shim starts; written by herdd.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimLaunch {
    pub program: PathBuf,
    pub argv0: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// (uid, gid, supplementary groups) to switch to; None keeps the shim's user.
    pub user: Option<(u32, u32, Vec<u32>)>,
    /// `cgroup.procs` files of the workload's cgroup: one on cgroup v2 (the workload is
    /// created in its directory), one per hierarchy on v1 (joined before exec), none without
    /// cgroups.
    pub cgroup_procs: Vec<PathBuf>,
    /// The cgroup's OOM kill count before the start, to tell an OOM kill from other ends.
    pub oom_before: u64,
}

/// Who the shim is; written by the shim once the workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimState {
    pub shim_pid: u32,
    /// The shim's start time (clock ticks after boot): a reused pid is not taken for it.
    pub shim_start_ticks: u64,
    pub child_pid: u32,
    /// How the workload entered its cgroup; None in a file an older shim wrote.
    #[serde(default)]
    pub placement: Option<Placement>,
}

/// How the shim put the workload into its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Created inside its cgroup v2 directory by `clone3(CLONE_INTO_CGROUP)`: none of its
    /// instructions ran outside it.
    CloneIntoCgroup,
    /// Forked, then joined its cgroup(s) before exec (v1: each hierarchy's `tasks`; v2: its
    /// `cgroup.procs`): cgroup v1, or a kernel (< 5.7) or sandbox without clone3.
    JoinBeforeExec,
    /// No cgroup (herd's none backend): its own session only.
    NoCgroup,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::CloneIntoCgroup => "clone_into_cgroup",
            Placement::JoinBeforeExec => "join_before_exec",
            Placement::NoCgroup => "no_cgroup",
        }
    }
}

impl ShimState {
    /// Whether the shim this describes still runs (same pid, same start time, not a zombie).
    pub fn is_running(&self) -> bool {
        proc::stat(self.shim_pid as i32)
            .is_some_and(|s| s.start_ticks == self.shim_start_ticks && s.state != 'Z')
    }
}

/// How the workload's main process ended; written by the shim. `code` for a process that
/// exited, `signal` for one a signal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// Reads the shim's one-line answer: the workload's pid, or why it did not start.
pub fn parse_answer(line: &str) -> Result<u32, String> {
    let line = line.trim_end();
    if let Some(pid) = line.strip_prefix("ok ") {
        return pid
            .parse()
            .map_err(|_| format!("the shim answered {line:?}"));
    }
    if let Some(reason) = line.strip_prefix("err ") {
        return Err(reason.to_string());
    }
    if line.is_empty() {
        return Err("the shim ended without starting the workload".into());
    }
    Err(format!("the shim answered {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        assert_eq!(parse_answer("ok 42\n"), Ok(42));
        assert_eq!(
            parse_answer("err cannot start /x: No such file\n"),
            Err("cannot start /x: No such file".into())
        );
        assert!(parse_answer("").unwrap_err().contains("without starting"));
        assert!(parse_answer("ok x").is_err());
    }

    #[test]
    fn exit_and_state_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let exit = ShimExit {
            code: None,
            signal: Some(9),
        };
        write_json(dir.path(), EXIT_FILE, &exit).unwrap();
        assert_eq!(read_json::<ShimExit>(dir.path(), EXIT_FILE), Some(exit));
        let me = std::process::id();
        let state = ShimState {
            shim_pid: me,
            shim_start_ticks: proc::stat(me as i32).unwrap().start_ticks,
            child_pid: 1,
            placement: Some(Placement::CloneIntoCgroup),
        };
        write_json(dir.path(), STATE_FILE, &state).unwrap();
        let back: ShimState = read_json(dir.path(), STATE_FILE).unwrap();
        assert_eq!(back, state);
        assert!(back.is_running());
        let older: ShimState =
            serde_json::from_str(r#"{"shim_pid":1,"shim_start_ticks":2,"child_pid":3}"#).unwrap();
        assert_eq!(
            older.placement, None,
            "a file an older shim wrote still reads"
        );
        assert!(serde_json::to_string(&state)
            .unwrap()
            .contains(r#""placement":"clone_into_cgroup""#));
        assert!(!ShimState {
            shim_start_ticks: state.shim_start_ticks + 1,
            ..state
        }
        .is_running());
    }
}
