//! `herdd dev`: a node on this machine with its own nats-server when none answers.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str =
    "install it with `sudo apt-get install nats-server` (Debian, Ubuntu) \
     or from https://github.com/nats-io/nats-server/releases";

/// A nats-server started for development; killed (and its store removed) on drop.
pub struct DevNats {
    child: Child,
    pub url: String,
    _store: tempfile::TempDir,
}

impl Drop for DevNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when something at `url` speaks the NATS protocol (sends `INFO` on connect).
pub fn nats_answers(url: &str) -> bool {
    let hostport = url
        .split("://")
        .last()
        .unwrap_or(url)
        .rsplit('@')
        .next()
        .unwrap_or(url);
    let Ok(mut addrs) = hostport.to_socket_addrs() else {
        return false;
    };
    let Some(addr) = addrs.next() else {
        return false;
    };
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO")
}

pub fn find_nats_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Where `herdd dev --nodes N` serves the dashboard: 127.0.0.1:8080, or a free port when
/// something else has that one.
pub fn dashboard_listen() -> String {
    match TcpListener::bind("127.0.0.1:8080") {
        Ok(_) => "127.0.0.1:8080".to_string(),
        Err(_) => format!("127.0.0.1:{}", free_port().unwrap_or(8081)),
    }
}

/// Starts `nats-server -js` on a free loopback port with a temporary store.
pub fn start_nats() -> anyhow::Result<DevNats> {
    let Some(bin) = find_nats_server() else {
        bail!("nats-server is not installed; {INSTALL_HINT}");
    };
    let store = tempfile::Builder::new()
        .prefix("herd-dev-nats-")
        .tempdir()?;
    let port = free_port()?;
    let conf = store.path().join("nats.conf");
    let mut f = std::fs::File::create(&conf)?;
    writeln!(
        f,
        "listen: 127.0.0.1:{port}\nserver_name: herd-dev\njetstream {{ store_dir: {:?} }}",
        store.path().join("js")
    )?;
    let mut cmd = Command::new(&bin);
    cmd.arg("-c").arg(&conf);
    let child = spawn_background(cmd, &store.path().join("nats.log"))
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let dev = DevNats {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        _store: store,
    };
    wait_for_port(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    )
    .with_context(|| {
        let log = std::fs::read_to_string(dev._store.path().join("nats.log")).unwrap_or_default();
        format!("nats-server did not come up; its log:\n{log}")
    })?;
    Ok(dev)
}

/// N node processes started by `herdd dev --nodes N`; stopped (SIGTERM, then SIGKILL) by
/// [`DevFleet::stop`], and killed with their parent in any case.
pub struct DevFleet {
    children: Vec<(String, Child)>,
    dir: tempfile::TempDir,
}

/// Starts `nodes` herdd processes `<id>-1` … against the configured NATS server.
pub fn start_fleet(config: &crate::config::Config, nodes: u32) -> anyhow::Result<DevFleet> {
    let base = config.node_id()?;
    let exe = std::env::current_exe().context("cannot find this herdd binary")?;
    let dir = tempfile::Builder::new()
        .prefix("herd-dev-fleet-")
        .tempdir()?;
    let mut children = Vec::new();
    // Each node offers its share of the host, so that placement and admission in a dev fleet
    // meet the limits they would on separate machines ([resources] in the configuration wins).
    let share = |configured: Option<String>, host: f64| {
        configured.unwrap_or_else(|| format!("{}", host / nodes.max(1) as f64))
    };
    let host = herd_actors::edges::host::allocation_policy(&Default::default(), vec![]);
    let cpu = share(
        config.resources.capacity_cpu.map(|c| c.to_string()),
        host.capacity_cpus,
    );
    let memory = share(
        config.resources.capacity_memory.map(|m| m.to_string()),
        host.capacity_memory as f64,
    );
    let memory = memory.parse::<f64>().map(|m| m as u64).unwrap_or(0);
    for i in 1..=nodes {
        let id = format!("{base}-{i}");
        let node_dir = dir.path().join(&id);
        std::fs::create_dir_all(&node_dir)?;
        let conf = node_dir.join("herd.toml");
        std::fs::write(
            &conf,
            format!(
                // Their state dies with the fleet: nothing could re-adopt a kept workload.
                "[cgroup]\nroot = \"herd-{id}\"\n[heartbeat]\ninterval_s = {}\n[shutdown]\non_shutdown = \"stop\"\n\
                 [resources]\ncapacity_cpu = {cpu}\ncapacity_memory = {memory}\n",
                config.heartbeat.interval_s
            ),
        )?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--config")
            .arg(&conf)
            .args([
                "--node-id",
                &id,
                "--roles",
                "node",
                "--nats-url",
                &config.nats.urls[0],
            ])
            .args(["--prefix", &config.nats.prefix])
            .arg("--state-dir")
            .arg(node_dir.join("state"))
            .arg("run")
            .env_remove("HERD_CONFIG");
        let child = spawn_background(cmd, &node_dir.join("herdd.log"))
            .with_context(|| format!("cannot start node {id}"))?;
        children.push((id, child));
    }
    // A node that cannot start (bad flag, bad config) exits at once: say so, with its log.
    std::thread::sleep(Duration::from_millis(300));
    for (id, child) in &mut children {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.path().join(&*id).join("herdd.log"))
                .unwrap_or_default();
            bail!("dev node {id} exited at once ({status}):\n{log}");
        }
    }
    Ok(DevFleet { children, dir })
}

impl DevFleet {
    pub fn banner(&self, url: &str) -> String {
        let ids: Vec<&str> = self.children.iter().map(|(id, _)| id.as_str()).collect();
        let first = ids.first().copied().unwrap_or("NODE");
        format!(
            "\nherd dev fleet: this process is the coordinator; nodes {} (logs in {})\n\
             Try, from another terminal:\n  \
             herdctl --nats-url {url} nodes\n  \
             herdctl --nats-url {url} query --cpu 0.5 --memory 64M\n  \
             herdctl --nats-url {url} run {first} --cpu 0.5 -- sh -c 'while :; do :; done'\n  \
             herdctl --nats-url {url} top\n\
             Stop with Ctrl-C.\n",
            ids.join(", "),
            self.dir.path().display()
        )
    }

    /// SIGTERM to every node (each stops its workloads), then SIGKILL after 15 s.
    pub fn stop(mut self) {
        for (_, child) in &self.children {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for (id, child) in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        tracing::warn!(node = %id, "dev node did not stop in time; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

/// Starts a helper process of `herdd dev` with its output in `log`, in its own process group (a
/// Ctrl-C in the terminal reaches herdd only, which then stops its helpers in order), and dying
/// with herdd.
fn spawn_background(mut cmd: Command, log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    die_with_parent(&mut cmd);
    Ok(cmd.spawn()?)
}

/// Helpers of `herdd dev` must not outlive it, even when it is killed with SIGKILL.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
}

fn wait_for_port(addr: &SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after {within:?}")
}

/// A temporary state directory for a dev node, unless one was configured.
pub fn temp_state_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("herd-dev-state-")
        .tempdir()?)
}

pub fn banner(
    node: &herd_bus::NodeId,
    url: &str,
    subjects: &herd_bus::Subjects,
    state_dir: &Path,
) -> String {
    let ping = subjects.node_command(node, herd_bus::NodeVerb::Ping);
    format!(
        "\nherd dev node '{node}' on {url} (state in {})\n\
         Try, from another terminal:\n  \
         herdctl --nats-url {url} ping {node}\n  \
         herdctl --nats-url {url} request {ping} '{{}}'\n  \
         herdctl --nats-url {url} run {node} --cpu 0.5 -- sh -c 'while :; do :; done'\n  \
         herdctl --nats-url {url} watch\n  \
         nats --server {url} req {ping} '{{}}'\n\
         Stop with Ctrl-C.\n",
        state_dir.display()
    )
}
