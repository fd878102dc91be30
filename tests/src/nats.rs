//! A real `nats-server -js` per test, on a free port, with a temporary JetStream store.

use crate::process::{signal, wait_child};
use crate::{announce, free_port};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

fn nats_server_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed: these tests need a real one. \
                 `scripts/test` installs it (apt-get install nats-server)."
            )
        })
}

/// `nats-server --version`, announced once per test binary.
pub fn nats_version() -> String {
    static ONCE: Once = Once::new();
    let out = Command::new(nats_server_bin())
        .arg("--version")
        .output()
        .expect("nats-server --version");
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ONCE.call_once(|| {
        announce(&format!(
            "backend {version} with JetStream (real server, temp store)"
        ))
    });
    version
}

/// Larger than the 1 MiB default, so tests can send payloads past herdd's own cap.
pub const TEST_MAX_PAYLOAD: usize = 4 * 1024 * 1024;

/// What nats-server logs once its client listener is bound.
const LISTENING: &str = "Listening for client connections on";

pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        NatsServer::start_on(free_port())
    }

    /// On a given port (a test may point herdd there before the server exists).
    pub fn start_on(port: u16) -> NatsServer {
        nats_version();
        let dir = tempfile::Builder::new()
            .prefix("herd-test-nats-")
            .tempdir()
            .unwrap();
        let conf = format!(
            "listen: 127.0.0.1:{port}\nmax_payload: {TEST_MAX_PAYLOAD}\nserver_name: herd-test-{port}\n\
             jetstream {{ store_dir: {:?} }}\n",
            dir.path().join("js")
        );
        std::fs::write(dir.path().join("nats.conf"), conf).unwrap();
        let mut server = NatsServer {
            child: None,
            port,
            dir,
            env: vec![],
        };
        server.spawn();
        server
    }

    /// With a configuration of the caller's: `config(port, store_dir)` gives its text;
    /// `env` is nats-server's environment (variables the configuration refers to).
    pub fn start_with_config(
        config: impl FnOnce(u16, &Path) -> String,
        env: &[(&str, &str)],
    ) -> NatsServer {
        nats_version();
        let port = free_port();
        let dir = tempfile::Builder::new()
            .prefix("herd-test-nats-")
            .tempdir()
            .unwrap();
        let text = config(port, &dir.path().join("js"));
        std::fs::write(dir.path().join("nats.conf"), text).unwrap();
        let mut server = NatsServer {
            child: None,
            port,
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        // The log is appended to across restarts: count what earlier runs wrote.
        let listened_before = self.log().matches(LISTENING).count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .unwrap();
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        logs()
            .lock()
            .unwrap()
            .insert(self.port, self.dir.path().join("nats.log"));
        // Ready once this server's own log says it listens: a connection alone could reach
        // another process that took the port meanwhile (then this one's bind fails).
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = self.log();
            if log.matches(LISTENING).count() > listened_before {
                break;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "nats-server on 127.0.0.1:{} exited ({status}) before listening:\n{log}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on 127.0.0.1:{} within 15 s:\n{log}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Sends `sig` to the server (SIGSTOP and SIGCONT: a stall, every request held meanwhile).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("the server runs");
        signal(child.id(), sig);
    }

    /// Graceful stop (SIGTERM), so that JetStream's store is consistent for a restart.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), nix::sys::signal::Signal::SIGTERM);
            wait_child(&mut child, Duration::from_secs(10));
        }
    }

    /// Starts again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

/// Each running test server's log by port, for a client that cannot connect to say why.
fn logs() -> &'static Mutex<HashMap<u16, PathBuf>> {
    static LOGS: OnceLock<Mutex<HashMap<u16, PathBuf>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

/// The log of the test server on `port`, where one of this process runs there.
pub fn log_on_port(port: u16) -> Option<String> {
    let path = logs().lock().unwrap().get(&port).cloned()?;
    std::fs::read_to_string(path).ok()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        logs().lock().unwrap().remove(&self.port);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
