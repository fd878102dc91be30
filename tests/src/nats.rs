//! A real `nats-server -js` per test, on a free port, with a temporary JetStream store.

use crate::process::{signal, wait_child};
use crate::{announce, free_port};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
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
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {addr}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
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

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
