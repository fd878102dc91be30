//! A restart of herdd does not touch its workloads (`shutdown.on_shutdown = "keep"`): each exec
//! workload runs under its own supervisor (`herd-shim`), and the next herdd re-adopts it from
//! the state directory: listed with the same pid, sampled, its logs followed, stoppable. One
//! that ended while herdd was down is reported with its real exit code.

use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{LogChunk, TelemetryBatch, WorkloadState};
use herd_tests::{
    announce, connect, node_call, state_dir, wait_for_node, wait_workloads_events, Herdd,
    HerddOptions, NatsServer,
};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

const NODE: &str = "restarter";
const KEPT: [&str; 3] = ["sleeper", "ticker", "spinner"];

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().and_then(|r| r.trim().chars().next()) != Some('Z'))
        .unwrap_or(false)
}

/// Kills what a failed test would otherwise leave running (a kept herdd leaves workloads).
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn start_herdd(nats: &NatsServer, state: &Path, root: &str, on_shutdown: &str) -> Herdd {
    let config = format!("[cgroup]\nroot = \"{root}\"\n[telemetry]\ninterval_s = 0.5\n");
    Herdd::start_with(HerddOptions {
        state_dir: Some(state),
        config_toml: Some(&config),
        env: vec![("HERD_ON_SHUTDOWN", on_shutdown.to_string())],
        ..HerddOptions::new(NODE, nats.url())
    })
}

async fn workload(client: &async_nats::Client, id: &str) -> serde_json::Value {
    workload_of(client, NODE, id).await
}

fn decode<T: serde::de::DeserializeOwned>(msg: &async_nats::Message) -> T {
    codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap()
}

#[tokio::test]
async fn a_restarted_herdd_adopts_its_running_workloads_and_learns_exits_it_missed() {
    let nats = NatsServer::start();
    let state = state_dir();
    let root = format!("herdtest-restart-{}", std::process::id());
    let go = state.path().join("go");
    let client = connect(&nats.url()).await;
    let mut events = client
        .subscribe(format!("herd.v1.evt.{NODE}.workload.*"))
        .await
        .unwrap();
    client.flush().await.unwrap();

    let mut herdd = start_herdd(&nats, state.path(), &root, "keep");
    wait_for_node(&client, NODE).await;
    let specs = [
        json!({"workload_id": "sleeper", "command": ["sleep", "300"]}),
        json!({"workload_id": "ticker", "command": ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"]}),
        json!({"workload_id": "spinner", "command": ["sh", "-c", "while true; do :; done"], "limits": {"cpu": 0.2}}),
        // Ends with 7 once the test creates `go`, which it does while herdd is down.
        json!({"workload_id": "quitter", "command": ["sh", "-c", format!("while [ ! -e {} ]; do sleep 0.05; done; exit 7", go.display())]}),
        // Its supervisor is killed while herdd is down: nothing can tell how it ends.
        json!({"workload_id": "orphan", "command": ["sleep", "300"]}),
    ];
    for spec in specs {
        let reply = node_call(&client, NODE, "workload.start", spec).await;
        assert_eq!(reply["ok"], true, "{reply}");
    }
    let all = ["sleeper", "ticker", "spinner", "quitter", "orphan"];
    wait_workloads_events(
        &mut events,
        &all,
        &[WorkloadState::Running],
        Duration::from_secs(10),
    )
    .await;
    let mut pids = HashMap::new();
    for id in all {
        let w = workload(&client, id).await;
        pids.insert(id.to_string(), w["pid"].as_i64().unwrap() as i32);
    }
    let _guard = KillOnDrop(pids.values().copied().collect());
    assert!(
        !herdd.log().contains("herd-shim is not installed"),
        "herd-shim beside herdd supervises: {}",
        herdd.log()
    );

    // SIGTERM: herdd exits, the workloads do not.
    let status = herdd.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "herdd did not stop cleanly: {status:?}\n{}",
        herdd.log()
    );
    assert!(
        herdd
            .log()
            .contains("leaving workloads running (shutdown.on_shutdown = keep)"),
        "{}",
        herdd.log()
    );
    for (id, pid) in &pids {
        assert!(alive(*pid), "{id} ({pid}) died with herdd");
    }
    // While herdd is down, one workload ends.
    std::fs::write(&go, b"").unwrap();
    let quitter = pids["quitter"];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(quitter) {
        assert!(std::time::Instant::now() < deadline, "quitter did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    // …and another loses its supervisor (its own process goes on, reparented).
    let shim_state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.path().join("workloads/orphan.shim/state.json")).unwrap(),
    )
    .unwrap();
    let shim_pid = shim_state["shim_pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    while alive(shim_pid) {
        assert!(std::time::Instant::now() < deadline, "the shim did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(alive(pids["orphan"]), "the orphan died with its shim");
    drop(herdd);
    announce("restart: herdd stopped with SIGTERM (on_shutdown = keep); 3 workloads kept running, 1 ended while it was down, 1 lost its supervisor");

    let mut telemetry = client
        .subscribe(format!("herd.v1.telemetry.{NODE}"))
        .await
        .unwrap();
    let mut ticks = client
        .subscribe(format!("herd.v1.logs.{NODE}.ticker.stdout"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let herdd = start_herdd(&nats, state.path(), &root, "stop");
    wait_for_node(&client, NODE).await;

    // The one that ended while herdd was down: its real exit code; the one whose supervisor
    // died: lost, and its process killed.
    let ended = wait_workloads_events(
        &mut events,
        &["quitter", "orphan"],
        &[WorkloadState::Exited, WorkloadState::Lost],
        Duration::from_secs(10),
    )
    .await;
    let q = &ended["quitter"];
    assert_eq!(
        (q.state, q.exit_code),
        (WorkloadState::Exited, Some(7)),
        "{q:?}"
    );
    let o = &ended["orphan"];
    assert_eq!(o.state, WorkloadState::Lost, "{o:?}");
    let orphan = pids["orphan"];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(orphan) {
        assert!(
            std::time::Instant::now() < deadline,
            "the lost workload's process was left running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let w = workload(&client, "orphan").await;
    assert!(
        w["reason"]
            .as_str()
            .is_some_and(|r| r.contains("supervisor")),
        "{w}"
    );

    // Listed as running, with the same pids.
    let list = node_call(&client, NODE, "workload.list", json!({})).await;
    assert_eq!(list["ok"], true, "{list}");
    for id in KEPT {
        let w = workload(&client, id).await;
        assert_eq!(w["state"], "running", "{id}: {w}");
        assert_eq!(w["pid"].as_i64().unwrap() as i32, pids[id], "{id}: {w}");
        let listed = list["data"]["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["workload_id"] == id && w["state"] == "running");
        assert!(listed, "{id} not listed as running: {list}");
    }
    let q = workload(&client, "quitter").await;
    assert_eq!(
        (q["state"].as_str(), q["exit_code"].as_i64()),
        (Some("exited"), Some(7)),
        "{q}"
    );

    // Sampled: the kept workloads appear in telemetry, the spinner burning its 20 % of a CPU.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut sampled = HashSet::new();
    let mut spinner_cpu = None;
    while sampled.len() < KEPT.len() || spinner_cpu.is_none() {
        let msg = tokio::time::timeout_at(deadline, telemetry.next())
            .await
            .unwrap_or_else(|_| panic!("sampled within 10 s: {sampled:?}, spinner {spinner_cpu:?}"))
            .unwrap();
        let batch: TelemetryBatch = decode(&msg);
        for s in &batch.samples {
            if s.error.is_none() {
                sampled.insert(s.workload_id.to_string());
            }
            if s.workload_id.as_str() == "spinner" && s.cpu_percent.is_some() {
                spinner_cpu = s.cpu_percent;
            }
        }
    }
    let cpu = spinner_cpu.unwrap();
    assert!((5.0..=30.0).contains(&cpu), "spinner at {cpu}% of a CPU");

    // Its logs are followed again: new lines arrive, in order.
    let mut lines = Vec::new();
    while lines.len() < 5 {
        let msg = tokio::time::timeout(Duration::from_secs(10), ticks.next())
            .await
            .expect("ticker's log lines after the restart")
            .unwrap();
        let chunk: LogChunk = decode(&msg);
        lines.extend(chunk.lines);
    }
    let numbers: Vec<u64> = lines
        .iter()
        .map(|l| l.strip_prefix("tick ").unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{lines:?}");

    // Stoppable: each ends stopped, its processes gone.
    for id in KEPT {
        let reply = node_call(&client, NODE, "workload.stop", json!({"workload_id": id})).await;
        assert_eq!(reply["ok"], true, "{reply}");
    }
    wait_workloads_events(
        &mut events,
        &KEPT,
        &[WorkloadState::Stopped],
        Duration::from_secs(15),
    )
    .await;
    for id in KEPT {
        let pid = pids[id];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "{id} ({pid}) outlived its stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Released just after the events: their shim directories go.
    let shims = || -> Vec<_> {
        std::fs::read_dir(state.path().join("workloads"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".shim"))
            .map(|e| e.file_name())
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !shims().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(shims().is_empty(), "shim directories left: {:?}", shims());
    announce(&format!(
        "restart: re-adopted {} workloads (listed, sampled, logs, stopped); quitter reported exited 7, orphan lost and killed",
        KEPT.len()
    ));
    drop(herdd);
}

/// Without herd-shim beside it (herdd copied alone), herdd supervises a workload with itself
/// (`herdd shim`), says so, and the workload still outlives a restart.
#[tokio::test]
async fn without_herd_shim_herdd_supervises_with_itself() {
    let nats = NatsServer::start();
    let alone = tempfile::tempdir().unwrap();
    let herdd_copy = alone.path().join("herdd");
    std::fs::copy(herd_tests::workspace_bin("herdd"), &herdd_copy).unwrap();
    let state = tempfile::tempdir().unwrap();
    let root = format!("herdtest-shimless-{}", std::process::id());
    let client = connect(&nats.url()).await;
    let start = |on_shutdown: &str| {
        Herdd::start_with(HerddOptions {
            state_dir: Some(state.path()),
            config_toml: Some(&format!("[cgroup]\nroot = \"{root}\"\n")),
            env: vec![("HERD_ON_SHUTDOWN", on_shutdown.to_string())],
            program: Some(herdd_copy.clone()),
            ..HerddOptions::new("shimless", nats.url())
        })
    };
    let mut herdd = start("keep");
    wait_for_node(&client, "shimless").await;
    let reply = node_call(
        &client,
        "shimless",
        "workload.start",
        json!({"workload_id": "s1", "command": ["sleep", "300"]}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let pid = herd_tests::eventually(Duration::from_secs(10), "s1 running", || async {
        let r = node_call(
            &client,
            "shimless",
            "workload.get",
            json!({"workload_id": "s1"}),
        )
        .await;
        (r["data"]["state"] == "running").then(|| r["data"]["pid"].as_i64().unwrap() as i32)
    })
    .await;
    let _guard = KillOnDrop(vec![pid]);
    assert!(
        herdd
            .log()
            .contains("herd-shim is not installed beside herdd"),
        "{}",
        herdd.log()
    );
    // Its parent is herdd's binary run as `shim`.
    let (_, ppid) = herd_tests::proc_state_and_parent(pid).expect("the workload runs");
    let args = herd_tests::proc_args(ppid).expect("its supervisor runs");
    assert_eq!(args.get(1).map(String::as_str), Some("shim"), "{args:?}");

    assert!(herdd
        .terminate(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
    assert!(alive(pid), "the workload died with herdd");
    let herdd = start("stop");
    wait_for_node(&client, "shimless").await;
    let w = workload_of(&client, "shimless", "s1").await;
    assert_eq!(
        (w["state"].as_str(), w["pid"].as_i64()),
        (Some("running"), Some(pid as i64)),
        "{w}"
    );
    drop(herdd); // stop mode: the workload is stopped.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "s1 outlived herdd in stop mode"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn workload_of(client: &async_nats::Client, node: &str, id: &str) -> serde_json::Value {
    let reply = node_call(client, node, "workload.get", json!({"workload_id": id})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    reply["data"].clone()
}

/// Kills whatever is left in a test's cgroup root and removes it, in every hierarchy.
struct RemoveRoot(String);

impl Drop for RemoveRoot {
    fn drop(&mut self) {
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for h in hierarchies.flatten() {
            let root = h.path().join(&self.0);
            let Ok(children) = std::fs::read_dir(&root) else {
                continue;
            };
            for child in children.flatten().filter(|c| c.path().is_dir()) {
                let procs = std::fs::read_to_string(child.path().join("cgroup.procs"));
                for pid in procs
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.parse().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                for _ in 0..20 {
                    if std::fs::remove_dir(child.path()).is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let _ = std::fs::remove_dir(&root);
        }
    }
}

/// systemd may remove an emptied cgroup while herdd is stopped: the exit the supervisor
/// recorded is still reported, never `lost`.
#[tokio::test]
async fn an_exit_recorded_while_herdd_was_down_survives_a_removed_cgroup() {
    let nats = NatsServer::start();
    let state = state_dir();
    let root = format!("herdtest-{}-gone", std::process::id());
    let _cleanup = RemoveRoot(root.clone());
    let node = "gone-cgroup";
    let config = format!("[cgroup]\nroot = \"{root}\"\n");
    let start = || {
        Herdd::start_with(HerddOptions {
            state_dir: Some(state.path()),
            config_toml: Some(&config),
            env: vec![("HERD_ON_SHUTDOWN", "keep".to_string())],
            ..HerddOptions::new(node, nats.url())
        })
    };
    let mut herdd = start();
    let client = connect(&nats.url()).await;
    wait_for_node(&client, node).await;
    let flag = state.path().join("go");
    let started = node_call(
        &client,
        node,
        "workload.start",
        json!({"workload_id": "goner",
               "command": ["sh", "-c", format!("while [ ! -e {} ]; do sleep 0.1; done; exit 9", flag.display())]}),
    )
    .await;
    assert_eq!(started["ok"], true, "{started}");
    let mut running = serde_json::Value::Null;
    for _ in 0..100 {
        running = workload_of(&client, node, "goner").await;
        if running["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(running["state"], "running", "{running}");
    herdd.terminate(Duration::from_secs(15));

    // While herdd is down: the workload ends, then its cgroup is removed from every hierarchy.
    std::fs::write(&flag, b"").unwrap();
    let pid = running["pid"].as_i64().unwrap() as i32;
    for _ in 0..100 {
        if !alive(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!alive(pid), "the workload ended");
    let mut removed = 0;
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = hierarchy.path().join(&root).join("wl-goner");
        for _ in 0..50 {
            if !dir.exists() || std::fs::remove_dir(&dir).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        removed += usize::from(!dir.exists() && hierarchy.path().join(&root).exists());
    }
    let unified = Path::new("/sys/fs/cgroup").join(&root).join("wl-goner");
    let _ = std::fs::remove_dir(&unified);
    assert!(
        removed > 0 || !unified.exists(),
        "a workload cgroup was removed"
    );
    announce(&format!(
        "removed the workload's cgroup in {removed} hierarchies while herdd was down"
    ));

    let _again = start();
    wait_for_node(&client, node).await;
    let mut seen = serde_json::Value::Null;
    for _ in 0..100 {
        seen = workload_of(&client, node, "goner").await;
        if seen["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["state"], "exited", "{seen}");
    assert_eq!(seen["exit_code"], 9, "{seen}");
}
