//! Test support: a real `nats-server -js` on a free port with a temporary store, and herdd
//! processes. Both are stopped on drop. Each test binary prints which backends it exercised.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub use herd_bus;

/// Prints a line past the test harness's capture, so CI logs show which real components ran.
pub fn announce(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "herd-tests: {line}");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

/// The Docker test image (`scripts/test-image` builds it from Debian's busybox-static, with no
/// registry); the engine's version is announced once per test binary. Panics with what is
/// missing when the machine has no usable Docker engine.
pub fn docker_test_image() -> &'static str {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let version = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output();
        let version = match version {
            Ok(out) if out.status.success() => {
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
            Ok(out) => panic!(
                "these tests need a running Docker engine; `docker version` says: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => {
                panic!("these tests need Docker (the docker command and a running engine): {e}")
            }
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-image");
        let status = Command::new(&script)
            .status()
            .expect("run scripts/test-image");
        assert!(status.success(), "{} failed: {status}", script.display());
        let image = "herd-test/busybox:1".to_string();
        announce(&format!(
            "backend Docker engine {version}, test image {image} (local, no registry)"
        ));
        image
    })
}

/// Ids of the containers (running or not) labelled `herd.node=<node>`.
pub fn containers_of(node: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter"])
        .arg(format!("label=herd.node={node}"))
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "docker ps: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
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

pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

fn wait_child(child: &mut Child, within: Duration) -> Option<ExitStatus> {
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

/// Path of a binary of this workspace (built by `cargo test --workspace` because herd-daemon and
/// herdctl have integration tests; `HERD_BIN_DIR` overrides). `cargo test -p herd-tests` alone
/// does not rebuild herdd: run `cargo build --workspace --bins` first, as scripts/test does.
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

impl Herdd {
    pub fn start(node_id: &str, nats_url: String) -> Herdd {
        Herdd::start_with(HerddOptions::new(node_id, nats_url))
    }

    pub fn start_with(opts: HerddOptions) -> Herdd {
        let dir = tempfile::Builder::new()
            .prefix("herd-test-herdd-")
            .tempdir()
            .unwrap();
        // Like /var/lib: workloads running as another user reach their HERD_OUTPUT_DIR.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
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

pub async fn connect(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A JSON request on `herd.v1.node.<node>.<verb>`; the JSON reply. Panics without one.
pub async fn node_call(
    client: &async_nats::Client,
    node: &str,
    verb: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let msg = request(
        client,
        &format!("herd.v1.node.{node}.{verb}"),
        None,
        serde_json::to_vec(&body).unwrap(),
    )
    .await
    .unwrap_or_else(|e| panic!("{verb}: {e}"));
    serde_json::from_slice(&msg.payload).unwrap()
}

/// Waits for an event of `workload` in one of `states` on a subscription to workload events;
/// other events are skipped.
pub async fn wait_workload_event(
    sub: &mut async_nats::Subscriber,
    workload: &str,
    states: &[herd_bus::WorkloadState],
    within: Duration,
) -> herd_bus::WorkloadEvent {
    wait_workloads_events(sub, &[workload], states, within)
        .await
        .remove(workload)
        .expect("the event waited for")
}

/// Waits until each of `workloads` has had an event in one of `states`, keeping every event
/// meanwhile (workloads reach their states in any order); answers the first such event of each.
pub async fn wait_workloads_events(
    sub: &mut async_nats::Subscriber,
    workloads: &[&str],
    states: &[herd_bus::WorkloadState],
    within: Duration,
) -> std::collections::HashMap<String, herd_bus::WorkloadEvent> {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = std::collections::HashMap::new();
    while seen.len() < workloads.len() {
        let msg = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{states:?} events within {within:?}: only {:?} of {workloads:?}",
                    seen.keys().collect::<Vec<_>>()
                )
            })
            .unwrap();
        let ev: herd_bus::WorkloadEvent = herd_bus::codec::decode(
            &msg.payload,
            herd_bus::Encoding::MsgPack,
            &herd_bus::DecodeLimits::default(),
        )
        .unwrap();
        let id = ev.workload_id.to_string();
        if workloads.contains(&id.as_str()) && states.contains(&ev.state) {
            seen.entry(id).or_insert(ev);
        }
    }
    seen
}

/// Retries `f` until it returns Some or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request with an optional Content-Type; answers the reply message.
pub async fn request(
    client: &async_nats::Client,
    subject: &str,
    content_type: Option<&str>,
    payload: Vec<u8>,
) -> Result<async_nats::Message, async_nats::RequestError> {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(ct) = content_type {
        headers.insert("Content-Type", ct);
    }
    let req = async_nats::Request::new()
        .payload(payload.into())
        .headers(headers)
        .timeout(Some(Duration::from_secs(5)));
    client.send_request(subject.to_string(), req).await
}

pub fn content_type(msg: &async_nats::Message) -> Option<String> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get("Content-Type"))
        .map(|v| v.as_str().to_string())
}

/// Waits until `node` answers a ping.
pub async fn wait_for_node(client: &async_nats::Client, node: &str) {
    let subject = format!("herd.v1.node.{node}.ping");
    eventually(
        Duration::from_secs(15),
        &format!("{node} to answer"),
        || async { request(client, &subject, None, vec![]).await.ok() },
    )
    .await;
}

impl Drop for Fleet {
    /// Stops the agents, then removes their cgroup roots: one killed by a test (SIGKILL) could
    /// not remove its own.
    fn drop(&mut self) {
        let roots: Vec<String> = self.agents.iter().map(|a| a.cgroup_root.clone()).collect();
        self.agents.clear();
        for root in roots {
            for dir in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::remove_dir(dir.path().join(&root));
            }
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&root));
        }
    }
}

/// A coordinator and agents, each a herdd process, on one real nats-server. Fields drop in
/// order: the daemons stop (and flush their events) before the server goes.
pub struct Fleet {
    pub agents: Vec<Herdd>,
    pub coordinator: Herdd,
    pub client: async_nats::Client,
    pub nats: NatsServer,
    pub heartbeat_s: f64,
    pub lost_after_s: f64,
}

impl Fleet {
    /// `tag-coord` and agents `tag-<name>`, heartbeating every `heartbeat_s`.
    pub async fn start(tag: &str, agents: &[&str], heartbeat_s: f64, lost_after_s: f64) -> Fleet {
        let nats = NatsServer::start();
        let coordinator =
            Fleet::start_coordinator(&nats, &format!("{tag}-coord"), heartbeat_s, lost_after_s);
        let agents: Vec<Herdd> = agents
            .iter()
            .map(|n| {
                let config = format!(
                    "[heartbeat]\ninterval_s = {heartbeat_s}\n[cgroup]\nroot = \"{}\"\n",
                    Fleet::cgroup_root(tag, n)
                );
                let mut agent = Herdd::start_with(HerddOptions {
                    config_toml: Some(&config),
                    ..HerddOptions::new(&format!("{tag}-{n}"), nats.url())
                });
                agent.cgroup_root = Fleet::cgroup_root(tag, n);
                agent
            })
            .collect();
        let client = connect(&nats.url()).await;
        for a in &agents {
            wait_for_node(&client, &a.node_id).await;
        }
        let fleet = Fleet {
            agents,
            coordinator,
            client,
            nats,
            heartbeat_s,
            lost_after_s,
        };
        let n = fleet.agents.len();
        eventually(
            Duration::from_secs(15),
            "every agent up at the coordinator",
            || async {
                let v = fleet
                    .try_call("herd.v1.cluster.nodes", serde_json::json!({"state": "up"}))
                    .await?;
                (v["data"]["nodes"].as_array().map(|a| a.len()) == Some(n)).then_some(())
            },
        )
        .await;
        fleet
    }

    /// The cgroup root of agent `name` of fleet `tag`.
    fn cgroup_root(tag: &str, name: &str) -> String {
        format!("herdtest-{}-{tag}-{name}", std::process::id())
    }

    pub fn start_coordinator(
        nats: &NatsServer,
        id: &str,
        heartbeat_s: f64,
        lost_after_s: f64,
    ) -> Herdd {
        let config = format!(
            "roles = [\"coordinator\"]\n[heartbeat]\ninterval_s = {heartbeat_s}\n[coordinator]\nlost_after_s = {lost_after_s}\n"
        );
        Herdd::start_with(HerddOptions {
            config_toml: Some(&config),
            ..HerddOptions::new(id, nats.url())
        })
    }

    /// A JSON request on `herd.v1.cluster.<verb>`; the JSON reply.
    pub async fn cluster(&self, verb: &str, body: serde_json::Value) -> serde_json::Value {
        self.call(&format!("herd.v1.cluster.{verb}"), body).await
    }

    /// Like [`Fleet::call`], but None while nobody answers (a coordinator starting up).
    pub async fn try_call(
        &self,
        subject: &str,
        body: serde_json::Value,
    ) -> Option<serde_json::Value> {
        let body = serde_json::to_vec(&body).unwrap();
        let msg = request(&self.client, subject, None, body).await.ok()?;
        serde_json::from_slice(&msg.payload).ok()
    }

    /// A JSON request on any subject; the JSON reply.
    pub async fn call(&self, subject: &str, body: serde_json::Value) -> serde_json::Value {
        let msg = request(
            &self.client,
            subject,
            None,
            serde_json::to_vec(&body).unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
        serde_json::from_slice(&msg.payload).unwrap()
    }
}
