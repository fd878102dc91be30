//! herdd processes, each with its own configuration, state directory and log.

use crate::announce;
use crate::process::{signal, wait_child, workspace_bin};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A herdd process; killed on drop. Its stderr goes to a file, shown by [`Herdd::log`].
pub struct Herdd {
    child: Option<Child>,
    pub node_id: String,
    /// The cgroup root it was configured with, when a test chose one.
    pub cgroup_root: String,
    pub state_dir: PathBuf,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

pub struct HerddOptions<'a> {
    pub node_id: &'a str,
    pub nats_url: String,
    /// Reuse a state dir (restart tests); a fresh one otherwise.
    pub state_dir: Option<&'a Path>,
    pub env: Vec<(&'a str, String)>,
    pub config_toml: Option<&'a str>,
    /// Arguments after the global flags (`dev --nodes 2`); none runs a node.
    pub args: Vec<&'a str>,
    /// Another herdd binary than the workspace's.
    pub program: Option<PathBuf>,
}

impl<'a> HerddOptions<'a> {
    pub fn new(node_id: &'a str, nats_url: String) -> Self {
        HerddOptions {
            node_id,
            nats_url,
            state_dir: None,
            env: Vec::new(),
            config_toml: None,
            args: Vec::new(),
            program: None,
        }
    }
}

/// A temporary directory for herdd's state, readable by all like /var/lib: workloads running
/// as another user reach their work and output directories below it.
pub fn state_dir() -> tempfile::TempDir {
    state_dir_with_prefix(".tmp")
}

fn state_dir_with_prefix(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir
}

impl Herdd {
    pub fn start(node_id: &str, nats_url: String) -> Herdd {
        Herdd::start_with(HerddOptions::new(node_id, nats_url))
    }

    pub fn start_with(opts: HerddOptions) -> Herdd {
        let dir = state_dir_with_prefix("herd-test-herdd-");
        let state_dir = opts
            .state_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("state"));
        let config = dir.path().join("herd.toml");
        std::fs::write(&config, opts.config_toml.unwrap_or("")).unwrap();
        let log_path = dir.path().join("herdd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(opts.program.unwrap_or_else(|| workspace_bin("herdd")));
        cmd.arg("--config")
            .arg(&config)
            .arg("--node-id")
            .arg(opts.node_id)
            .arg("--nats-url")
            .arg(&opts.nats_url)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(&opts.args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            // Tests leave nothing behind; the restart tests ask for `keep` themselves.
            .env("HERD_ON_SHUTDOWN", "stop")
            .env(
                "HERD_LOG",
                "debug,async_nats=info,bollard=info,hyper_util=info",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start herdd");
        Herdd {
            child: Some(child),
            node_id: opts.node_id.to_string(),
            cgroup_root: String::new(),
            state_dir,
            log_path,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        signal(self.pid(), sig);
    }

    /// Waits for herdd to exit by itself; None when it still runs after `within` (then killed).
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("running");
        wait_child(&mut child, within)
    }

    /// SIGTERM, then wait for the exit; None when it did not exit in time (then killed).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut child = self.child.take().expect("running");
        wait_child(&mut child, within)
    }
}

impl Drop for Herdd {
    fn drop(&mut self) {
        // Gracefully, so that herdd stops its workloads: a SIGKILLed herdd leaves them running.
        if let Some(mut child) = self.child.take() {
            signal(child.id(), nix::sys::signal::Signal::SIGTERM);
            wait_child(&mut child, Duration::from_secs(15));
        }
        if std::thread::panicking() {
            announce(&format!(
                "herdd {} log:\n{}",
                self.node_id,
                std::fs::read_to_string(&self.log_path).unwrap_or_default()
            ));
        }
    }
}
