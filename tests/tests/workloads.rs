//! Exec workloads on the real cgroup filesystem and a real nats-server: limits as written by
//! the kernel, CPU telemetry under a quota, OOM kills, stops of process trees that ignore
//! SIGTERM, 100 workloads in one batch, and bad specs refused with the field named.

use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{TelemetryBatch, WorkloadList, WorkloadState};
use herd_tests::{
    announce, connect, node_call as call, real_cgroup_backend, wait_for_node,
    wait_workload_event as wait_event, Herdd, HerddOptions, NatsServer,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// herd's cgroup root for this test run, apart from a real installation's and from other runs.
fn root() -> &'static str {
    static ROOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| format!("herdtest-{}", std::process::id()))
}

struct Node {
    _nats: NatsServer,
    herdd: Herdd,
    client: async_nats::Client,
    id: String,
    backend: String,
}

async fn node(id: &str, extra_config: &str) -> Node {
    let nats = NatsServer::start();
    let config = format!(
        "[cgroup]\nroot = \"{}\"\n[shutdown]\nworkload_grace_cap_s = 2.0\n{extra_config}",
        root()
    );
    let herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&config),
        ..HerddOptions::new(id, nats.url())
    });
    let client = connect(&nats.url()).await;
    wait_for_node(&client, id).await;
    let backend = real_cgroup_backend(&client, id).await;
    Node {
        _nats: nats,
        herdd,
        client,
        id: id.to_string(),
        backend,
    }
}

impl Node {
    async fn start(&self, spec: Value) -> Value {
        call(&self.client, &self.id, "workload.start", spec).await
    }

    async fn events(&self) -> async_nats::Subscriber {
        let sub = self
            .client
            .subscribe(format!("herd.v1.evt.{}.workload.*", self.id))
            .await
            .unwrap();
        self.client.flush().await.unwrap();
        sub
    }

    /// The cgroup directory holding `file` for workload `id`.
    fn cgroup_file(&self, id: &str, controller: &str, file: &str) -> PathBuf {
        match self.backend.as_str() {
            "v2" => PathBuf::from(format!("/sys/fs/cgroup/{}/wl-{id}/{file}", root())),
            _ => PathBuf::from(format!(
                "/sys/fs/cgroup/{controller}/{}/wl-{id}/{file}",
                root()
            )),
        }
    }

    fn procs(&self, id: &str) -> Vec<i32> {
        std::fs::read_to_string(self.cgroup_file(id, "memory", "cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.parse().ok()).collect())
            .unwrap_or_default()
    }
}

/// Running (or sleeping, stopped…): neither gone nor an exited zombie waiting for its new
/// parent (init, after herd killed its own parent) to reap it.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.trim().chars().next())
                != Some('Z')
        }
        Err(_) => false,
    }
}

fn decode_batch(msg: &async_nats::Message) -> TelemetryBatch {
    codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap()
}

#[tokio::test]
async fn limit_files_hold_exactly_the_requested_values() {
    let n = node("limits", "").await;
    let reply = n
        .start(json!({"workload_id": "lim1", "command": ["sleep", "30"],
                      "limits": {"cpu": 0.25, "memory": 100_000_000u64, "pids": 17}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let read = |c: &str, f: &str| {
        std::fs::read_to_string(n.cgroup_file("lim1", c, f))
            .unwrap()
            .trim()
            .to_string()
    };
    let files = if n.backend == "v2" {
        vec![
            ("cpu.max", read("", "cpu.max"), "25000 100000".to_string()),
            (
                "memory.max",
                read("", "memory.max"),
                "100000000".to_string(),
            ),
            (
                "memory.oom.group",
                read("", "memory.oom.group"),
                "1".to_string(),
            ),
            ("pids.max", read("", "pids.max"), "17".to_string()),
        ]
    } else {
        // v1 rounds memory limits down to whole pages.
        let page = 4096u64;
        vec![
            (
                "cpu.cfs_quota_us",
                read("cpu", "cpu.cfs_quota_us"),
                "25000".to_string(),
            ),
            (
                "cpu.cfs_period_us",
                read("cpu", "cpu.cfs_period_us"),
                "100000".to_string(),
            ),
            (
                "memory.limit_in_bytes",
                read("memory", "memory.limit_in_bytes"),
                (100_000_000 / page * page).to_string(),
            ),
            ("pids.max", read("pids", "pids.max"), "17".to_string()),
        ]
    };
    for (file, got, want) in &files {
        announce(&format!("cgroup {}: {file} = {got}", n.backend));
        assert_eq!(got, want, "{file}");
    }
    // The process is in the cgroup, as the unprivileged default user (the reply accepts the
    // workload; its supervisor starts it a moment later). On v1 the child joins the cgroup as
    // root and drops to the default user just before exec, so wait until it runs `sleep`.
    let execed = |pids: &[i32]| {
        pids.len() == 1
            && std::fs::read(format!("/proc/{}/cmdline", pids[0]))
                .is_ok_and(|c| c.starts_with(b"sleep\0"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut pids = n.procs("lim1");
    while !execed(&pids) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        pids = n.procs("lim1");
    }
    assert!(execed(&pids), "{pids:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pids[0])).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    assert!(
        uid_line.split_whitespace().nth(1) == Some(&nobody.to_string()),
        "{uid_line}"
    );
    // Born in its cgroup on v2 (clone3 CLONE_INTO_CGROUP), joined before exec on v1: as the
    // shim recorded it and herdd logged it.
    let want = if n.backend == "v2" {
        "clone_into_cgroup"
    } else {
        "join_before_exec"
    };
    // herdd logs it once the shim has answered, which may come a moment after the workload
    // is in its cgroup.
    let start_line = || {
        n.herdd
            .log()
            .lines()
            .find(|l| l.contains("started under its supervisor") && l.contains("lim1"))
            .map(String::from)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut line = start_line();
    while line.is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        line = start_line();
    }
    let line = line.unwrap_or_else(|| panic!("no start line in:\n{}", n.herdd.log()));
    announce(&format!("cgroup {}: placement {want}", n.backend));
    assert!(line.contains(want), "{line}");
}

#[tokio::test]
async fn half_a_cpu_reads_fifty_percent() {
    let n = node("cpu", "").await;
    let mut telemetry = n.client.subscribe("herd.v1.telemetry.cpu").await.unwrap();
    let reply = n
        .start(json!({"workload_id": "spin", "command": ["sh", "-c", "while :; do :; done"], "limits": {"cpu": 0.5}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    // Skip the first batches (no rate yet, start-up), then 5 s of samples.
    let mut values = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(7) {
        let msg = tokio::time::timeout(Duration::from_secs(5), telemetry.next())
            .await
            .unwrap()
            .unwrap();
        let batch = decode_batch(&msg);
        if start.elapsed() < Duration::from_secs(2) {
            continue;
        }
        if let Some(s) = batch
            .samples
            .iter()
            .find(|s| s.workload_id.as_str() == "spin")
        {
            values.extend(s.cpu_percent);
        }
    }
    assert!(values.len() >= 4, "{values:?}");
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    announce(&format!(
        "cpu limit 0.5 → mean {mean:.1} % over {} samples {values:.1?}",
        values.len()
    ));
    assert!(
        (40.0..=60.0).contains(&mean),
        "mean {mean} % from {values:?}"
    );
}

#[tokio::test]
async fn allocating_past_the_memory_limit_ends_oom_killed() {
    let n = node("oom", "").await;
    let mut events = n.events().await;
    // tail keeps the whole "line" of /dev/zero in memory: it grows until the limit.
    let reply = n
        .start(json!({"workload_id": "hog", "command": ["tail", "/dev/zero"], "limits": {"memory": 64u64 << 20}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let ev = wait_event(
        &mut events,
        "hog",
        &[
            WorkloadState::OomKilled,
            WorkloadState::Exited,
            WorkloadState::Killed,
        ],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(ev.state, WorkloadState::OomKilled, "{ev:?}");
    let status = call(
        &n.client,
        "oom",
        "workload.get",
        json!({"workload_id": "hog"}),
    )
    .await;
    assert_eq!(status["data"]["state"], "oom_killed");
}

#[tokio::test]
async fn a_tree_ignoring_sigterm_is_gone_within_grace_plus_one_second() {
    let n = node("stopper", "").await;
    let mut events = n.events().await;
    let reply = n
        .start(json!({"workload_id": "stubborn", "grace_s": 2.0,
                      "command": ["sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000 & sh -c 'sleep 1000' & wait"]}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    wait_event(
        &mut events,
        "stubborn",
        &[WorkloadState::Running],
        Duration::from_secs(5),
    )
    .await;
    // Wait for the children to exist.
    let pids = herd_tests::eventually(Duration::from_secs(5), "the forked children", || async {
        let p = n.procs("stubborn");
        (p.len() >= 4).then_some(p)
    })
    .await;
    let asked = Instant::now();
    let ack = call(
        &n.client,
        "stopper",
        "workload.stop",
        json!({"workload_id": "stubborn"}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ev = wait_event(
        &mut events,
        "stubborn",
        &[WorkloadState::Killed, WorkloadState::Stopped],
        Duration::from_secs(10),
    )
    .await;
    let took = asked.elapsed();
    assert_eq!(
        ev.state,
        WorkloadState::Killed,
        "SIGTERM was ignored, so SIGKILL ended it: {ev:?}"
    );
    assert!(
        took <= Duration::from_secs(3),
        "stopped after {took:?}, grace was 2 s"
    );
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} of the tree is still alive");
    }
    assert!(n.procs("stubborn").is_empty());
    // Removed off the executor's thread, just after the event.
    herd_tests::eventually(Duration::from_secs(2), "the cgroup removed", || async {
        (!n.cgroup_file("stubborn", "memory", "").exists()).then_some(())
    })
    .await;
    announce(&format!(
        "stop of a SIGTERM-ignoring tree of {} processes took {took:?} (grace 2 s)",
        pids.len()
    ));
}

#[tokio::test]
async fn exit_codes_and_logs_in_order() {
    let n = node("exits", "").await;
    let mut events = n.events().await;
    let mut logs = n
        .client
        .subscribe("herd.v1.logs.exits.talker.stdout")
        .await
        .unwrap();
    n.client.flush().await.unwrap();
    assert_eq!(
        n.start(json!({"workload_id": "ok0", "command": ["true"]}))
            .await["ok"],
        true
    );
    assert_eq!(
        n.start(json!({"workload_id": "three", "command": ["sh", "-c", "exit 3"]}))
            .await["ok"],
        true
    );
    assert_eq!(
        n.start(json!({"workload_id": "talker", "command": ["sh", "-c", "i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done"]})).await["ok"],
        true
    );
    // The two end in either order: every event is kept until both exits are seen.
    let exits = herd_tests::wait_workloads_events(
        &mut events,
        &["ok0", "three"],
        &[WorkloadState::Exited],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(exits["ok0"].exit_code, Some(0));
    assert_eq!(exits["three"].exit_code, Some(3));
    let mut lines = Vec::new();
    while lines.len() < 500 {
        let msg = tokio::time::timeout(Duration::from_secs(10), logs.next())
            .await
            .expect("log lines")
            .unwrap();
        let chunk: herd_bus::LogChunk =
            codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap();
        lines.extend(chunk.lines);
    }
    let want: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, want);
}

#[tokio::test]
async fn a_hundred_workloads_fit_in_one_batch() {
    let n = node("many", "").await;
    let mut telemetry = n.client.subscribe("herd.v1.telemetry.many").await.unwrap();
    for i in 0..100 {
        let reply = n
            .start(json!({"workload_id": format!("s{i:03}"), "run_id": "hundred", "command": ["sleep", "120"], "limits": {"memory": 32u64 << 20}}))
            .await;
        assert_eq!(reply["ok"], true, "{reply}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let batch = loop {
        assert!(Instant::now() < deadline, "no batch with all 100 workloads");
        let msg = tokio::time::timeout(Duration::from_secs(5), telemetry.next())
            .await
            .unwrap()
            .unwrap();
        let b = decode_batch(&msg);
        if b.samples.len() == 100 && b.samples.iter().all(|s| s.error.is_none()) {
            break b;
        }
    };
    assert!(batch.collection_us > 0);
    announce(&format!(
        "100 workloads sampled in one batch in {} µs (debug build)",
        batch.collection_us
    ));
    let ack = call(
        &n.client,
        "many",
        "workload.stop",
        json!({"run_id": "hundred", "grace_s": 1.0}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let list: Value = herd_tests::eventually(Duration::from_secs(20), "all stopped", || async {
        let l = call(
            &n.client,
            "many",
            "workload.list",
            json!({"run_id": "hundred", "state": "running"}),
        )
        .await;
        (l["data"]["workloads"].as_array().map(|a| a.len()) == Some(0)).then_some(l)
    })
    .await;
    assert_eq!(list["ok"], true);
}

#[tokio::test]
async fn bad_specs_are_refused_naming_the_field_and_nothing_starts() {
    let n = node("strict", "[exec]\nallowed_commands = [\"sleep\", \"sh\"]\n").await;
    let cases = [
        (json!({"limits": {"cpu": 1}}), "command"),
        (json!({"command": []}), "command"),
        (json!({"command": ["no-such-binary-anywhere"]}), "command"),
        (json!({"command": ["/bin/nonexistent"]}), "command"),
        (
            json!({"command": ["sleep", "1"], "limits": {"memory": -1}}),
            "limits.memory",
        ),
        (
            json!({"command": ["sleep", "1"], "limits": {"cpu": 0}}),
            "limits.cpu",
        ),
        (
            json!({"command": ["sleep", "1"], "limits": {"cpu": 1000}}),
            "limits.cpu",
        ),
        (
            json!({"command": ["sleep", "1"], "limits": {"pids": 0}}),
            "limits.pids",
        ),
        (
            json!({"command": ["sleep", "1"], "user": "no-such-user-here"}),
            "user",
        ),
        (json!({"command": ["sleep", "1"], "user": "root"}), "user"),
        (json!({"command": ["true"]}), "command"),
        (
            json!({"command": ["sleep", "1"], "kill_signal": "SIGBOGUS"}),
            "kill_signal",
        ),
        (
            json!({"command": ["sleep", "1"], "timeout_s": 0}),
            "timeout_s",
        ),
    ];
    for (i, (spec, field)) in cases.iter().enumerate() {
        let mut spec = spec.clone();
        spec["workload_id"] = json!(format!("bad-{i}"));
        let reply = n.start(spec.clone()).await;
        assert_eq!(reply["ok"], false, "{spec} → {reply}");
        assert_eq!(reply["error"]["code"], "bad_request", "{spec} → {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "{spec}: message {message:?} should name {field}"
        );
    }
    let list = call(&n.client, "strict", "workload.list", json!({})).await;
    let list: WorkloadList = serde_json::from_value(list["data"].clone()).unwrap();
    assert!(list.workloads.is_empty(), "nothing started: {list:?}");
    let root = match n.backend.as_str() {
        "v2" => PathBuf::from(format!("/sys/fs/cgroup/{}", root())),
        _ => PathBuf::from(format!("/sys/fs/cgroup/memory/{}", root())),
    };
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("wl-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !leftovers.iter().any(|l| l.starts_with("wl-bad-")),
        "{leftovers:?}"
    );
    assert!(n.herdd.pid() > 0);
}

#[tokio::test]
async fn shutdown_leaves_no_process_behind() {
    let mut n = node("leaver", "").await;
    n.start(
        json!({"workload_id": "bg", "command": ["sh", "-c", "trap '' TERM; sleep 1000 & wait"]}),
    )
    .await;
    let pids = herd_tests::eventually(Duration::from_secs(5), "the workload", || async {
        let p = n.procs("bg");
        (p.len() >= 2).then_some(p)
    })
    .await;
    let status = n
        .herdd
        .terminate(Duration::from_secs(15))
        .expect("bounded shutdown");
    assert!(status.success());
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived herdd");
    }
    assert!(!Path::new(&n.cgroup_file("bg", "memory", "")).exists());
}

#[tokio::test]
async fn timeouts_restarts_and_collect_false() {
    let n = node("policies", "").await;
    let mut events = n.events().await;
    let mut telemetry = n
        .client
        .subscribe("herd.v1.telemetry.policies")
        .await
        .unwrap();
    assert_eq!(
        n.start(json!({"workload_id": "slow", "command": ["sleep", "30"], "timeout_s": 1.0, "grace_s": 1.0})).await["ok"],
        true
    );
    assert_eq!(
        n.start(json!({"workload_id": "flaky", "command": ["sh", "-c", "exit 7"], "restart": {"policy": "on_failure", "max": 2}})).await["ok"],
        true
    );
    assert_eq!(
        n.start(json!({"workload_id": "quiet", "command": ["sleep", "30"], "collect": false}))
            .await["ok"],
        true
    );
    assert_eq!(
        n.start(json!({"workload_id": "loud", "command": ["sleep", "30"]}))
            .await["ok"],
        true
    );

    let ev = wait_event(
        &mut events,
        "slow",
        &[WorkloadState::TimedOut],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        ev.signal.as_deref(),
        Some("SIGTERM"),
        "sleep dies of SIGTERM within grace"
    );

    // Three runs of `exit 7`: the first and two restarts (backoff 1 s, then 2 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let s = call(
            &n.client,
            "policies",
            "workload.get",
            json!({"workload_id": "flaky"}),
        )
        .await;
        if s["data"]["restarts"] == 2 && s["data"]["state"] == "exited" {
            break s;
        }
        assert!(Instant::now() < deadline, "flaky did not settle: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["data"]["exit_code"], 7);

    for _ in 0..3 {
        let msg = tokio::time::timeout(Duration::from_secs(5), telemetry.next())
            .await
            .unwrap()
            .unwrap();
        let ids: Vec<String> = decode_batch(&msg)
            .samples
            .iter()
            .map(|s| s.workload_id.to_string())
            .collect();
        assert!(ids.contains(&"loud".to_string()), "{ids:?}");
        assert!(
            !ids.contains(&"quiet".to_string()),
            "collect: false is left out: {ids:?}"
        );
    }
}

/// Without cgroups (forced here; automatic for a non-root herdd): no limits, but workloads still
/// run, are sampled from /proc, and stop with their whole process session.
#[tokio::test]
async fn without_cgroups_workloads_still_run_are_sampled_and_stop() {
    let nats = NatsServer::start();
    let herdd = Herdd::start_with(HerddOptions {
        config_toml: Some("[cgroup]\nbackend = \"none\"\n"),
        ..HerddOptions::new("plain", nats.url())
    });
    let client = connect(&nats.url()).await;
    wait_for_node(&client, "plain").await;
    assert_eq!(
        call(&client, "plain", "ping", json!({})).await["data"]["cgroup"],
        "none"
    );
    let mut telemetry = client.subscribe("herd.v1.telemetry.plain").await.unwrap();
    let mut events = client
        .subscribe("herd.v1.evt.plain.workload.*")
        .await
        .unwrap();
    client.flush().await.unwrap();
    let spec = json!({"workload_id": "tree", "grace_s": 1.0,
                      "command": ["sh", "-c", "trap '' TERM; sleep 1000 & while :; do :; done"]});
    assert_eq!(
        call(&client, "plain", "workload.start", spec).await["ok"],
        true
    );
    let mut cpu = None;
    for _ in 0..5 {
        let msg = tokio::time::timeout(Duration::from_secs(5), telemetry.next())
            .await
            .unwrap()
            .unwrap();
        let batch = decode_batch(&msg);
        let s = batch
            .samples
            .iter()
            .find(|s| s.workload_id.as_str() == "tree")
            .unwrap();
        assert!(s.error.is_none(), "{s:?}");
        if s.cpu_percent.is_some() && s.pids >= 2 {
            cpu = s.cpu_percent;
            break;
        }
    }
    let cpu = cpu.expect("a /proc sample with a rate and both processes");
    announce(&format!(
        "no-cgroup backend: spinner sampled at {cpu:.0} % from /proc"
    ));
    assert!(cpu > 20.0, "a busy loop reads {cpu} %");
    let leader = call(
        &client,
        "plain",
        "workload.get",
        json!({"workload_id": "tree"}),
    )
    .await["data"]["pid"]
        .as_i64()
        .unwrap() as i32;
    let members: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .map(|r| r.split_whitespace().nth(3) == Some(&leader.to_string()))
                })
                .unwrap_or(false)
        })
        .collect();
    assert!(members.len() >= 2, "session {leader}: {members:?}");
    call(
        &client,
        "plain",
        "workload.stop",
        json!({"workload_id": "tree"}),
    )
    .await;
    let ev = wait_event(
        &mut events,
        "tree",
        &[WorkloadState::Killed, WorkloadState::Stopped],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(ev.state, WorkloadState::Killed);
    for pid in members {
        assert!(!alive(pid), "pid {pid} of the session survived");
    }
    drop(herdd);
}

#[tokio::test]
async fn lameduck_stops_workloads_after_its_delay_unless_cancelled() {
    let n = node("drainer", "").await;
    let mut events = n.events().await;
    assert_eq!(
        n.start(json!({"workload_id": "d1", "command": ["sleep", "60"]}))
            .await["ok"],
        true
    );
    // Cancelled: lameduck with a stop in 1 s, then active again before it fires.
    let ack = call(
        &n.client,
        "drainer",
        "lameduck",
        json!({"enabled": true, "stop_workloads": true, "delay_s": 1.0}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    call(&n.client, "drainer", "lameduck", json!({"enabled": false})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let d1 = call(
        &n.client,
        "drainer",
        "workload.get",
        json!({"workload_id": "d1"}),
    )
    .await;
    assert_eq!(
        d1["data"]["state"], "running",
        "the cancelled drain stopped nothing"
    );
    // Not cancelled: stopped after the delay.
    let asked = Instant::now();
    call(
        &n.client,
        "drainer",
        "lameduck",
        json!({"enabled": true, "stop_workloads": true, "delay_s": 0.5}),
    )
    .await;
    wait_event(
        &mut events,
        "d1",
        &[WorkloadState::Stopped],
        Duration::from_secs(5),
    )
    .await;
    assert!(
        asked.elapsed() >= Duration::from_millis(500),
        "not before the delay"
    );
    let refused = n.start(json!({"command": ["true"]})).await;
    assert_eq!(refused["error"]["code"], "unavailable");
    let bad = call(
        &n.client,
        "drainer",
        "lameduck",
        json!({"enabled": true, "delay_s": -1}),
    )
    .await;
    assert_eq!(bad["error"]["code"], "bad_request");
}
