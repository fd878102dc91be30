//! cgroup v2 under systemd: herd's workloads live in one transient scope,
//! `<root>-workloads.scope` in `<root>.slice` (`/sys/fs/cgroup/herd.slice/herd-workloads.scope`
//! by default), which systemd delegates to herd (`Delegate=yes`), as runc, crun and podman do
//! with a scope per container.
//!
//! Why not under herdd.service: a delegated service cgroup that holds workloads below it cannot
//! take a new process (the kernel answers EBUSY: no process may join a cgroup whose controllers
//! are enabled for children), so systemd < 254 could not start herdd again after a crash while
//! workloads ran (`status=219/CGROUP`); only systemd 254's `DelegateSubgroup=` starts it in a
//! leaf. A scope outlives herdd: herdd.service holds herdd alone and restarts on every systemd.
//!
//! The scope is made once, by `systemd-run --scope … sleep infinity`: systemd wants a process
//! in a scope when it is made, and the scope ends when it holds none. That holder is moved to
//! the scope's `holder` leaf, controllers are enabled for `workloads/`, and workload cgroups go
//! below it. A restarted herdd finds the scope alive and takes it as it is.

use super::{enable_controllers, io_err, read_pids, write_file, CgroupError};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long systemd may take to make the scope (under emulation, seconds).
const START_WAIT: Duration = Duration::from_secs(20);
/// How many times systemd-run is asked before herd gives up on the scope.
const START_TRIES: u32 = 4;

/// Whether systemd runs this host (as sd_booted(3) tells).
pub fn systemd_is_init() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// herd's workload scope on this host.
#[derive(Debug, Clone)]
pub struct WorkloadScope {
    /// The unit, e.g. `herd-workloads.scope`.
    pub unit: String,
    /// Its cgroup directory.
    pub dir: PathBuf,
    /// Whether this process made it (it was not alive before).
    pub made_here: bool,
    mount: PathBuf,
    root: String,
}

impl WorkloadScope {
    /// Where systemd puts the scope of `root` under the cgroup2 `mount`: a slice name's dashes
    /// nest it (`a-b.slice` lives in `a.slice`), see systemd.slice(5).
    pub fn expected(mount: &Path, root: &str) -> WorkloadScope {
        let unit = format!("{root}-workloads.scope");
        let mut dir = mount.to_path_buf();
        let parts: Vec<&str> = root.split('-').collect();
        for i in 1..=parts.len() {
            dir.push(format!("{}.slice", parts[..i].join("-")));
        }
        dir.push(&unit);
        WorkloadScope {
            unit,
            dir,
            made_here: false,
            mount: mount.to_path_buf(),
            root: root.to_string(),
        }
    }

    /// The scope's `workloads/` directory, where workload cgroups are made.
    pub fn workloads(&self) -> PathBuf {
        self.dir.join("workloads")
    }

    /// Whether the scope exists and holds a process (its holder, or workloads).
    pub fn alive(&self) -> bool {
        self.dir.is_dir() && !self.all_pids().is_empty()
    }

    fn all_pids(&self) -> Vec<i32> {
        let mut pids = read_pids(&self.dir.join("cgroup.procs"));
        pids.extend(read_pids(&self.dir.join("holder/cgroup.procs")));
        if let Ok(entries) = std::fs::read_dir(self.workloads()) {
            for e in entries.flatten() {
                pids.extend(read_pids(&e.path().join("cgroup.procs")));
            }
        }
        pids
    }

    /// The scope, made when it is not there yet, with controllers enabled for `workloads/`.
    pub fn ensure(mount: &Path, root: &str) -> Result<WorkloadScope, CgroupError> {
        let mut scope = WorkloadScope::expected(mount, root);
        if !scope.alive() {
            // A scope that just lost its last process may still be known to systemd for a
            // moment (stopping, not yet collected): systemd-run then refuses the name.
            let mut tries = 0;
            while let Err(e) = scope.start(root) {
                tries += 1;
                if tries == START_TRIES {
                    return Err(e);
                }
                tracing::debug!(error = %e, "making the workload scope again shortly");
                std::thread::sleep(Duration::from_millis(500));
            }
            scope.made_here = true;
        }
        // No process may stay in a cgroup whose controllers are enabled for children.
        let holder = scope.dir.join("holder");
        std::fs::create_dir_all(&holder).map_err(io_err(&holder))?;
        for pid in read_pids(&scope.dir.join("cgroup.procs")) {
            write_file(&holder.join("cgroup.procs"), &pid.to_string())?;
        }
        enable_controllers(&scope.dir)?;
        Ok(scope)
    }

    /// The scope again, made anew when it ended meanwhile (stopped by hand, or ended by the
    /// `herdd doctor` that made it).
    pub fn ensure_again(&self) -> Result<WorkloadScope, CgroupError> {
        WorkloadScope::ensure(&self.mount, &self.root)
    }

    /// Ends the scope once no workload is left in it, by ending its holder (systemd then
    /// removes the scope); for the process that made it, as it leaves (`herdd doctor`, a herdd
    /// that stopped its workloads), so that nothing of herd stays on a host that runs none.
    pub fn end_if_unused(&self) {
        if !self.made_here || self.workloads().exists() {
            return;
        }
        for pid in read_pids(&self.dir.join("holder/cgroup.procs")) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// `systemd-run --scope`: systemd makes the scope with systemd-run's own process in it,
    /// which then becomes the holder (`sleep infinity`).
    fn start(&self, root: &str) -> Result<(), CgroupError> {
        let failed = |why: String| {
            CgroupError::Unusable(format!(
                "cannot make the systemd scope {}: {why}",
                self.unit
            ))
        };
        let stderr = tempfile_for_stderr().map_err(|e| failed(e.to_string()))?;
        let mut child = Command::new("systemd-run")
            .args(["--scope", "--quiet", "--collect"])
            .arg(format!("--unit={}", self.unit))
            .arg(format!("--slice={root}.slice"))
            .arg("--property=Delegate=yes")
            .arg("--description=herd workloads (kept across herdd restarts)")
            .args(["--", "sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.try_clone().map_err(|e| failed(e.to_string()))?)
            .process_group(0)
            .spawn()
            .map_err(|e| failed(format!("systemd-run: {e}")))?;
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(failed(format!(
                    "systemd-run {status}: {}",
                    read_all(stderr)
                )));
            }
            if !read_pids(&self.dir.join("cgroup.procs")).is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "{} did not appear within {START_WAIT:?}",
                    self.dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The holder lives as long as the scope should; reap it if it ever ends.
        let _ = std::thread::Builder::new()
            .name("scope-holder".into())
            .stack_size(32 * 1024)
            .spawn(move || {
                let _ = child.wait();
            });
        tracing::info!(unit = %self.unit, dir = %self.dir.display(), "made the systemd scope for workloads");
        Ok(())
    }
}

/// An unnamed file for systemd-run's error output (a pipe would stay open in the holder).
fn tempfile_for_stderr() -> std::io::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("herd-scope-{}.err", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

fn read_all(mut file: std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_lives_in_the_slice_named_after_the_root() {
        let s = WorkloadScope::expected(Path::new("/sys/fs/cgroup"), "herd");
        assert_eq!(s.unit, "herd-workloads.scope");
        assert_eq!(
            s.dir,
            Path::new("/sys/fs/cgroup/herd.slice/herd-workloads.scope")
        );
        assert_eq!(
            s.workloads(),
            Path::new("/sys/fs/cgroup/herd.slice/herd-workloads.scope/workloads")
        );
        // Dashes nest slices.
        let s = WorkloadScope::expected(Path::new("/sys/fs/cgroup"), "lab-herd");
        assert_eq!(
            s.dir,
            Path::new("/sys/fs/cgroup/lab.slice/lab-herd.slice/lab-herd-workloads.scope")
        );
    }

    #[test]
    fn a_missing_scope_is_not_alive() {
        let s = WorkloadScope::expected(Path::new("/nonexistent/cgroup"), "herd");
        assert!(!s.alive());
    }
}
