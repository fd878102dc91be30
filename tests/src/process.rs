//! Processes the tests start: the workspace's binaries, signals, waiting with a deadline.

use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Path of a binary of this workspace (built by `cargo test --workspace` because herd-daemon
/// and herd-shim have integration tests; `HERD_BIN_DIR` overrides). `cargo test -p herd-tests`
/// alone does not rebuild herdd: run `cargo build --workspace --bins` first, as scripts/test
/// does.
pub fn workspace_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("HERD_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            // target/<profile>/deps/<test> → target/<profile>
            exe.parent().unwrap().parent().unwrap().to_path_buf()
        });
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --workspace --bins` (scripts/test does)",
        bin.display()
    );
    bin
}

/// Process `pid`'s command line, one string per argument; None when it is gone.
pub fn proc_args(pid: i32) -> Option<Vec<String>> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Process `pid`'s state letter and parent's pid, from /proc/<pid>/stat; None when it is gone.
pub fn proc_state_and_parent(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut after = stat.rsplit(')').next()?.split_whitespace();
    let state = after.next()?.chars().next()?;
    let parent = after.next()?.parse().ok()?;
    Some((state, parent))
}

/// Sends `sig` to process `pid`, if it still exists.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Waits for `child` to exit; None when it still runs after `within` (then killed).
pub(crate) fn wait_child(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `herdctl --nats-url URL --wait 5 ARGS…` and answers its stdout and stderr; fails the
/// test, with both, when it does not succeed.
pub async fn herdctl(nats_url: &str, args: &[&str]) -> (String, String) {
    let out = tokio::process::Command::new(workspace_bin("herdctl"))
        .args(["--nats-url", nats_url, "--wait", "5"])
        .args(args)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "herdctl {args:?}: {stderr}\n{stdout}");
    (stdout, stderr)
}
