//! `herdd doctor`: checks what a node needs, one line per check with what to do when it
//! fails. The exit code says whether the node can run (0) or not (1); warnings (no cgroups,
//! no Docker engine, no NVML) leave it able to run, with less.

use crate::config::Config;
use herd_actors::edges::cgroup::CgroupVersion;
use herd_actors::edges::driver::docker::DockerDriver;
use herd_bus::Role;
use herd_nats::{connect, Persistence};
use std::process::ExitCode;
use std::time::Duration;

mod service;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it, when it is not ok.
    pub fix: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn bad(name: &'static str, status: Status, detail: impl Into<String>, fix: &str) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        fix: Some(fix.to_string()),
    }
}

fn state_dir(config: &Config) -> Check {
    let dir = &config.state_dir;
    let probe = dir.join(".herd-doctor");
    let result = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b"ok"))
        .and_then(|_| std::fs::remove_file(&probe));
    match result {
        Ok(()) => ok("state_dir", format!("{} is writable", dir.display())),
        Err(e) => bad(
            "state_dir",
            Status::Fail,
            format!("{}: {e}", dir.display()),
            "create it and give it to herdd's user, or set state_dir",
        ),
    }
}

/// Whether a memory limit also bounds swap: the kernel must account swap per cgroup (v2
/// `memory.swap.max`, v1 `memory.memsw.*`) on a host that has swap.
fn swap_check(swap_accounted: bool) -> Check {
    let swap_on = std::fs::read_to_string("/proc/swaps")
        .map(|t| t.lines().count() > 1)
        .unwrap_or(false);
    match (swap_accounted, swap_on) {
        (true, _) => ok(
            "swap",
            "memory limits bound swap too (limits.swap allows some beyond memory)",
        ),
        (false, false) => ok("swap", "no swap on this host: memory limits mean memory"),
        (false, true) => bad(
            "swap",
            Status::Warn,
            "this kernel does not account swap per cgroup: a workload can swap past its memory limit",
            "boot with swapaccount=1 (cgroup v1) or a kernel with CONFIG_MEMCG_SWAP, or turn swap off",
        ),
    }
}

/// How a workload enters its cgroup. On v2 a child that exits at once is cloned into the
/// probe cgroup: that is the one way to know, as seccomp filters (container runtimes') may
/// refuse clone3 on a kernel that has it; a kernel version would not say.
fn placement_check(version: CgroupVersion, procs: &[std::path::PathBuf]) -> Check {
    let dir = match (version, procs) {
        (CgroupVersion::V2, [one]) => one.parent(),
        _ => None,
    };
    let Some(dir) = dir else {
        return ok(
            "placement",
            "cgroup v1: a workload joins its cgroups (one per hierarchy) between fork and exec",
        );
    };
    match herd_shim::probe_clone_into_cgroup(dir) {
        Ok(()) => ok(
            "placement",
            "a workload is created inside its cgroup (clone3 CLONE_INTO_CGROUP)",
        ),
        Err(e) => bad(
            "placement",
            Status::Warn,
            format!("clone3(CLONE_INTO_CGROUP) fails here ({e}): a workload joins its cgroup between fork and exec"),
            "use Linux >= 5.7, and a seccomp profile that allows clone3 if herdd runs in a container",
        ),
    }
}

/// The backend herdd would pick, and a probe cgroup made and removed with it.
fn cgroups(config: &Config) -> Vec<Check> {
    let (backend, warning) =
        herd_actors::edges::cgroup::detect(&config.cgroup.backend, &config.cgroup.root);
    let mut checks = vec![];
    match backend.version() {
        CgroupVersion::None => checks.push(bad(
            "cgroup",
            Status::Warn,
            warning.unwrap_or_else(|| "no cgroups".into()),
            "run herdd as root on a host with cgroup v2 (or v1) mounted; without cgroups no limit is enforced",
        )),
        v => {
            let probe = backend.create("doctor-probe", &Default::default(), &Default::default());
            match probe {
                Ok(cg) => {
                    let swap_file = cg
                        .limit_files()
                        .into_iter()
                        .any(|(f, _)| f.ends_with("memory.swap.max") || f.ends_with("memory.memsw.limit_in_bytes"));
                    let placement = placement_check(v, &cg.placement_files());
                    let _ = cg.remove();
                    checks.push(ok(
                        "cgroup",
                        format!("{} ({}), writable", v.as_str(), backend.describe()),
                    ));
                    checks.push(placement);
                    checks.push(swap_check(swap_file));
                }
                Err(e) => checks.push(bad(
                    "cgroup",
                    Status::Fail,
                    format!("{}: cannot create a workload cgroup: {e}", backend.describe()),
                    "run herdd as root, or delegate a cgroup subtree to it (systemd Delegate=yes)",
                )),
            }
        }
    }
    let systemd = service::systemd_version()
        .map(|(_, line)| line)
        .unwrap_or_else(|| "no systemd".into());
    let delegation = match backend.version() {
        CgroupVersion::V2 => match backend.keeping_blocks_restart() {
            Some(why) => bad(
                "delegation",
                Status::Warn,
                why,
                "use systemd >= 254 (DelegateSubgroup=supervisor) for a user service; until then herdd stops its workloads when it stops, whatever shutdown.on_shutdown says",
            ),
            None if backend.describe().contains("herd's own root:") => bad(
                "delegation",
                Status::Warn,
                format!("{systemd}: {}", backend.describe()),
                "install systemd-run and dbus (or make /run/systemd/private reachable) so that herd can make its scope; workloads still survive herdd restarts",
            ),
            None => ok("delegation", format!("{systemd}: {}", backend.describe())),
        },
        CgroupVersion::V1 => ok(
            "delegation",
            "not used on cgroup v1: herd's own root in each hierarchy",
        ),
        CgroupVersion::None => bad(
            "delegation",
            Status::Warn,
            "no cgroups",
            "see the cgroup check",
        ),
    };
    checks.push(delegation);
    let unified = herd_actors::edges::cgroup::MountInfo::read()
        .ok()
        .and_then(|m| m.unified().map(|u| u.mount_point.clone()));
    checks.push(service::check(unified.as_deref()));
    backend.remove_root_if_empty();
    checks
}

fn exec_user(config: &Config) -> Check {
    let name = &config.exec.default_user;
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => {
            let me = nix::unistd::Uid::effective();
            if me.is_root() || me == u.uid {
                ok("exec_user", format!("{name} (uid {})", u.uid))
            } else {
                bad(
                    "exec_user",
                    Status::Fail,
                    format!(
                        "herdd runs as uid {me} and cannot switch to {name} (uid {})",
                        u.uid
                    ),
                    "run herdd as root, or set exec.default_user to herdd's own user",
                )
            }
        }
        Ok(None) => bad(
            "exec_user",
            Status::Fail,
            format!("no user '{name}' on this host"),
            "create the user or set exec.default_user",
        ),
        Err(e) => bad(
            "exec_user",
            Status::Fail,
            format!("cannot look up '{name}': {e}"),
            "check NSS (/etc/passwd)",
        ),
    }
}

async fn nats_and_jetstream(config: &Config) -> Vec<Check> {
    let url = config.nats.urls.join(",");
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        connect(&config.nats, "herdd-doctor", Persistence::Cli, |_| {}),
    )
    .await;
    let client = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            // With its causes: an authorization violation is one of them.
            let text = format!("{:#}", anyhow::Error::from(e));
            let auth = text.to_lowercase().contains("author");
            return vec![bad(
                if auth { "nats_auth" } else { "nats" },
                Status::Fail,
                format!("cannot connect to {url}: {text}"),
                if auth {
                    "check nats.creds_file / nkey / user and password against the server's accounts"
                } else {
                    "start nats-server there (with -js), or set nats.urls / --nats-url"
                },
            )];
        }
        Err(_) => {
            return vec![bad(
                "nats",
                Status::Fail,
                format!("no answer from {url} within 5 s"),
                "start nats-server there (with -js), or set nats.urls / --nats-url",
            )]
        }
    };
    let mut checks = vec![ok(
        "nats",
        format!(
            "connected to {url} (server {})",
            client.server_info().version
        ),
    )];
    checks.push(if config.nats.has_credentials() {
        ok("nats_auth", "connected with credentials")
    } else {
        bad(
            "nats_auth",
            Status::Warn,
            "connected without credentials: any client of this server can command this node",
            "give the node a NATS user of its own and set nats.creds_file or nats.user/password",
        )
    });
    // The raw account-info request: async-nats's typed one cannot parse nats-server 2.9's answer.
    let info = tokio::time::timeout(
        Duration::from_secs(3),
        client.request("$JS.API.INFO", bytes::Bytes::new()),
    )
    .await;
    checks.push(match info {
        Ok(Ok(msg)) => {
            let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
            match v.get("error") {
                None if v.get("type").is_some() => ok("jetstream", "enabled for this account"),
                None => bad(
                    "jetstream",
                    Status::Fail,
                    "an unexpected answer to $JS.API.INFO",
                    "check that the server is nats-server 2.9 or later with JetStream",
                ),
                Some(e) => bad(
                    "jetstream",
                    Status::Fail,
                    e["description"].as_str().unwrap_or("not available").to_string(),
                    "run nats-server with JetStream (-js, or jetstream {} in its config) and allow this account to use it",
                ),
            }
        }
        Ok(Err(e)) => bad(
            "jetstream",
            Status::Fail,
            format!("{e}"),
            "run nats-server with JetStream (-js, or jetstream {} in its config)",
        ),
        Err(_) => bad(
            "jetstream",
            Status::Fail,
            "no answer within 3 s",
            "run nats-server with JetStream (-js)",
        ),
    });
    checks
}

async fn docker(config: &Config) -> Check {
    let node = config
        .node_id()
        .unwrap_or_else(|_| herd_bus::NodeId::new("doctor").expect("valid"));
    let driver = DockerDriver::new(&config.docker, node);
    match driver.version().await {
        Ok(v) => ok("docker", format!("engine {v} at {}", driver.socket_url())),
        Err(e) => bad(
            "docker",
            Status::Warn,
            e.message,
            "docker workloads answer 'unavailable' here; start the engine or set docker.socket",
        ),
    }
}

fn nvml() -> Check {
    let nvml = herd_actors::edges::gpu::Nvml::load();
    let devices = nvml.devices();
    if devices.is_empty() {
        ok("nvml", "no NVIDIA driver or GPU: no GPU telemetry")
    } else {
        ok(
            "nvml",
            format!(
                "{} GPU(s): {}",
                devices.len(),
                devices
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    }
}

/// Every check, in order.
pub async fn checks(config: &Config) -> Vec<Check> {
    let mut all = vec![state_dir(config)];
    if config.roles.contains(&Role::Node) {
        all.extend(cgroups(config));
        all.push(exec_user(config));
    }
    all.extend(nats_and_jetstream(config).await);
    if config.roles.contains(&Role::Node) {
        all.push(docker(config).await);
        all.push(nvml());
    }
    all
}

pub fn print(checks: &[Check]) -> ExitCode {
    for c in checks {
        let word = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        match &c.fix {
            Some(fix) => println!("{word} {:<11} {} — {fix}", c.name, c.detail),
            None => println!("{word} {:<11} {}", c.name, c.detail),
        }
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name)
        .collect();
    if failed.is_empty() {
        println!("this node can run herdd");
        ExitCode::SUCCESS
    } else {
        println!("this node cannot run herdd: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

pub fn main(config: &Config) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herdd doctor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let checks = rt.block_on(async {
        let local = tokio::task::LocalSet::new();
        local.run_until(checks(config)).await
    });
    print(&checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cgroup2 mount point, from /proc/self/mountinfo.
    fn cgroup2_mount() -> Option<std::path::PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        info.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            right
                .starts_with("cgroup2 ")
                .then(|| left.split(' ').nth(4).map(Into::into))?
        })
    }

    #[test]
    fn placement_says_how_a_workload_enters_its_cgroup() {
        let v1 = placement_check(CgroupVersion::V1, &["/a/cgroup.procs".into()]);
        assert_eq!(v1.status, Status::Ok);
        assert!(v1.detail.contains("between fork and exec"), "{}", v1.detail);
        // Not a cgroup2 directory: the probe fails, and says why.
        let tmp = tempfile::tempdir().unwrap();
        let not_v2 = placement_check(CgroupVersion::V2, &[tmp.path().join("cgroup.procs")]);
        assert_eq!(not_v2.status, Status::Warn);
        assert!(
            not_v2.detail.contains("not a cgroup2 directory"),
            "{}",
            not_v2.detail
        );

        let (Some(mount), true) = (cgroup2_mount(), nix::unistd::Uid::effective().is_root()) else {
            eprintln!("herdd doctor test: no cgroup2 mount or not root, the probe itself not run");
            return;
        };
        let dir = mount.join(format!("herd-doctor-test-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let v2 = placement_check(CgroupVersion::V2, &[dir.join("cgroup.procs")]);
        // The reaped child may keep the cgroup busy for a few ms.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::fs::remove_dir(&dir).is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(v2.status, Status::Ok, "{}", v2.detail);
        assert!(v2.detail.contains("CLONE_INTO_CGROUP"), "{}", v2.detail);
    }
}
