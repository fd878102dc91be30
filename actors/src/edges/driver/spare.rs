//! One supervisor started ahead of need. Starting `herd-shim` costs an exec and a dynamic
//! load (about a millisecond here, most of a start's time before this); a spare has paid it
//! and waits for a workload's directory on its stdin (`herd-shim --spare`, see
//! [`herd_shim::spare_main`]). A start takes the spare when there is one, else spawns a shim
//! as before, and a new spare is started shortly after that shim has answered. Dropping the
//! spare closes its stdin and it exits.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::process::{Child, Command};

/// How long after a start's answer its replacement spare is spawned.
const REFILL_AFTER: std::time::Duration = std::time::Duration::from_millis(2);

/// The spare shim, shared by the driver and the refills it schedules.
#[derive(Clone)]
pub(crate) struct SpareShim {
    /// The shim's program and leading arguments (as for a direct start).
    command: Arc<Vec<OsString>>,
    /// herdd's workloads directory, given to the spare for `ps` only.
    workloads: Arc<PathBuf>,
    slot: Arc<Mutex<Option<Child>>>,
}

impl SpareShim {
    pub(crate) fn new(command: Vec<OsString>, workloads: PathBuf) -> SpareShim {
        SpareShim {
            command: Arc::new(command),
            workloads: Arc::new(workloads),
            slot: Arc::default(),
        }
    }

    /// The supervisor's program, for messages.
    pub(crate) fn program(&self) -> &OsString {
        &self.command[0]
    }

    /// A shim started for `dir`: the spare handed `dir` when one waits, else a new one.
    pub(crate) fn start(&self, dir: &Path) -> std::io::Result<Child> {
        if let Some(child) = self.hand_off(dir) {
            return Ok(child);
        }
        self.shim().arg(dir).stdin(Stdio::null()).spawn()
    }

    /// The shim's command (program and leading arguments), its answer read from its stdout,
    /// outliving herdd (not killed when dropped).
    fn shim(&self) -> Command {
        let mut cmd = Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .stdout(Stdio::piped())
            .kill_on_drop(false);
        cmd
    }

    /// Gives `dir` to the waiting spare; None when there is none or it cannot take it (it
    /// ended: someone killed it), and then it is dropped.
    fn hand_off(&self, dir: &Path) -> Option<Child> {
        let mut child = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        if !matches!(child.try_wait(), Ok(None)) {
            return None;
        }
        let stdin = child.stdin.take()?.into_owned_fd().ok()?;
        // A path is far below a pipe's capacity: the write does not wait.
        let mut pipe = std::fs::File::from(stdin);
        match pipe.write_all(dir.as_os_str().as_bytes()) {
            // Dropping the pipe closes it: the spare reads to its end.
            Ok(()) => Some(child),
            Err(e) => {
                tracing::debug!(error = %e, "the spare shim cannot take a workload; starting one");
                let _ = child.start_kill();
                None
            }
        }
    }

    /// Starts a new spare [`REFILL_AFTER`] from now; without a runtime, never. The driver
    /// calls it once a start's shim has answered: a spare spawned and loading at once would
    /// compete for the CPU with that start's last steps (its `running` event).
    pub(crate) fn refill_later(&self) {
        let me = self.clone();
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(async move {
                tokio::time::sleep(REFILL_AFTER).await;
                me.refill()
            });
        }
    }

    /// Starts a spare when none waits.
    fn refill(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return;
        }
        let spawned = self
            .shim()
            .arg("--spare")
            .arg(self.workloads.as_os_str())
            .stdin(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => *slot = Some(child),
            Err(e) => tracing::warn!(error = %e, "cannot start a spare workload supervisor"),
        }
    }
}
