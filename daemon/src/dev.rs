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
    let log = std::fs::File::create(store.path().join("nats.log"))?;
    let mut cmd = Command::new(&bin);
    cmd.arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in the terminal reaches herdd only, which then
        // delivers its `stopping` event before the server goes away.
        .process_group(0);
    die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
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

/// The dev server must not outlive herdd, even when herdd is killed with SIGKILL.
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

pub fn banner(node: &str, url: &str, prefix: &str, state_dir: &Path) -> String {
    format!(
        "\nherd dev node '{node}' on {url} (state in {})\n\
         Try, from another terminal:\n  \
         herdctl --nats-url {url} ping {node}\n  \
         herdctl --nats-url {url} request {prefix}.v1.node.{node}.ping '{{}}'\n  \
         herdctl --nats-url {url} run {node} --cpu 0.5 -- sh -c 'while :; do :; done'\n  \
         herdctl --nats-url {url} watch\n  \
         nats --server {url} req {prefix}.v1.node.{node}.ping '{{}}'\n\
         Stop with Ctrl-C.\n",
        state_dir.display()
    )
}
