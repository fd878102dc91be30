//! Docker workloads on the real Docker engine and a real nats-server, with the locally built
//! test image (no registry): exit codes, logs, CPU telemetry from the container's cgroup, OOM
//! kills, stops that escalate to SIGKILL, clear errors for a missing image or engine, a run
//! across `herdd dev` nodes, and containers taken back after herdd was killed.

use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{LogChunk, RunRecord, RunState, TaskStatus, WorkloadEvent, WorkloadState};
use herd_tests::{
    announce, connect, containers_of, docker_test_image, eventually, node_call, request,
    wait_for_node, wait_workload_event as wait_event, Herdd, HerddOptions, NatsServer,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

struct Node {
    herdd: Herdd,
    client: async_nats::Client,
    id: String,
    nats: NatsServer,
}

/// A node id of this test process only: the engine is shared with other runs.
fn node_id(name: &str) -> String {
    format!("dk{}-{name}", std::process::id())
}

fn config(id: &str) -> String {
    format!("[cgroup]\nroot = \"herdtest-{id}\"\n[shutdown]\nworkload_grace_cap_s = 2.0\n")
}

async fn node(name: &str) -> Node {
    node_with(name, None, vec![]).await
}

async fn node_with(name: &str, state_dir: Option<&Path>, env: Vec<(&str, String)>) -> Node {
    docker_test_image();
    let nats = NatsServer::start();
    let id = node_id(name);
    let herdd = start_herdd(&id, &nats, state_dir, env);
    let client = connect(&nats.url()).await;
    wait_for_node(&client, &id).await;
    Node {
        herdd,
        client,
        id,
        nats,
    }
}

fn start_herdd(
    id: &str,
    nats: &NatsServer,
    state_dir: Option<&Path>,
    env: Vec<(&str, String)>,
) -> Herdd {
    let config = config(id);
    Herdd::start_with(HerddOptions {
        config_toml: Some(&config),
        state_dir,
        env,
        ..HerddOptions::new(id, nats.url())
    })
}

fn container(spec: Value) -> Value {
    let mut spec = spec;
    spec["driver"] = json!("docker");
    spec["image"] = json!(docker_test_image());
    spec
}

impl Node {
    async fn call(&self, verb: &str, body: Value) -> Value {
        node_call(&self.client, &self.id, verb, body).await
    }

    async fn start(&self, spec: Value) -> Value {
        self.call("workload.start", spec).await
    }

    async fn start_ok(&self, spec: Value) {
        let reply = self.start(spec.clone()).await;
        assert_eq!(reply["ok"], true, "{spec} → {reply}");
    }

    async fn subscribe(&self, subject: String) -> async_nats::Subscriber {
        let sub = self.client.subscribe(subject).await.unwrap();
        self.client.flush().await.unwrap();
        sub
    }

    async fn events(&self) -> async_nats::Subscriber {
        self.subscribe(format!("herd.v1.evt.{}.workload.*", self.id))
            .await
    }

    /// Waits until no container of this node is left, running or not.
    async fn no_containers_left(&self) {
        eventually(
            Duration::from_secs(10),
            "no container of the node left",
            || async { containers_of(&self.id).is_empty().then_some(()) },
        )
        .await;
    }
}

/// Waits until each of `ids` has had an event in `states`; events of others are skipped.
async fn wait_each(
    sub: &mut async_nats::Subscriber,
    ids: &[&str],
    states: &[WorkloadState],
    within: Duration,
) -> std::collections::HashMap<String, WorkloadEvent> {
    let deadline = tokio::time::Instant::now() + within;
    let mut found = std::collections::HashMap::new();
    while found.len() < ids.len() {
        let ev = next_event(sub, deadline)
            .await
            .unwrap_or_else(|| panic!("{states:?} events within {within:?}: only {found:?}"));
        if ids.contains(&ev.workload_id.as_str()) && states.contains(&ev.state) {
            found.insert(ev.workload_id.to_string(), ev);
        }
    }
    found
}

async fn log_lines(sub: &mut async_nats::Subscriber, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    while lines.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} log lines: {lines:?}", lines.len()))
            .unwrap();
        let chunk: LogChunk =
            codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap();
        lines.extend(chunk.lines);
    }
    lines
}

/// Every terminal state.
fn settled() -> Vec<WorkloadState> {
    WorkloadState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .collect()
}

/// The next workload event, or None once `deadline` has passed.
async fn next_event(
    sub: &mut async_nats::Subscriber,
    deadline: tokio::time::Instant,
) -> Option<WorkloadEvent> {
    let msg = tokio::time::timeout_at(deadline, sub.next()).await.ok()??;
    Some(codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap())
}

#[tokio::test]
async fn exit_codes_and_logs_in_order() {
    let n = node("exits").await;
    let mut events = n.events().await;
    let mut stdout = n
        .subscribe(format!("herd.v1.logs.{}.talker.stdout", n.id))
        .await;
    let mut stderr = n
        .subscribe(format!("herd.v1.logs.{}.talker.stderr", n.id))
        .await;
    n.start_ok(container(
        json!({"workload_id": "ok0", "command": ["true"]}),
    ))
    .await;
    n.start_ok(container(
        json!({"workload_id": "three", "command": ["sh", "-c", "exit 3"]}),
    ))
    .await;
    n.start_ok(container(
        json!({"workload_id": "talker", "command": ["sh", "-c",
        "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done; echo e1 >&2; echo e2 >&2"]}),
    ))
    .await;
    // Every event of the three, in the order they came.
    let mut seen: std::collections::HashMap<String, Vec<WorkloadEvent>> = Default::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ["ok0", "three", "talker"].iter().any(|id| {
        !seen
            .get(*id)
            .is_some_and(|e| e.last().is_some_and(|e| e.state.is_terminal()))
    }) {
        let ev = next_event(&mut events, deadline)
            .await
            .unwrap_or_else(|| panic!("not every container settled: {seen:#?}"));
        seen.entry(ev.workload_id.to_string()).or_default().push(ev);
    }
    for (id, code) in [("ok0", 0), ("three", 3), ("talker", 0)] {
        let states: Vec<WorkloadState> = seen[id].iter().map(|e| e.state).collect();
        assert_eq!(
            states,
            [
                WorkloadState::Pending,
                WorkloadState::Starting,
                WorkloadState::Running,
                WorkloadState::Exited
            ],
            "{id}"
        );
        assert_eq!(seen[id][3].exit_code, Some(code), "{:?}", seen[id]);
        announce(&format!(
            "container {id}: pending → starting → running → exited {code}"
        ));
    }
    let want: Vec<String> = (0..300).map(|i| format!("line {i}")).collect();
    assert_eq!(log_lines(&mut stdout, 300).await, want);
    assert_eq!(log_lines(&mut stderr, 2).await, ["e1", "e2"]);
    let got = n
        .call("workload.get", json!({"workload_id": "three"}))
        .await;
    assert_eq!(got["data"]["state"], "exited");
    assert_eq!(got["data"]["exit_code"], 3);
    n.no_containers_left().await;
}

#[tokio::test]
async fn half_a_cpu_reads_fifty_percent_from_the_containers_cgroup() {
    let n = node("cpu").await;
    let mut telemetry = n.subscribe(format!("herd.v1.telemetry.{}", n.id)).await;
    n.start_ok(container(
        json!({"workload_id": "spin", "limits": {"cpu": 0.5},
        "command": ["sh", "-c", "while :; do :; done"]}),
    ))
    .await;
    let mut values = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        let msg = tokio::time::timeout(Duration::from_secs(5), telemetry.next())
            .await
            .expect("telemetry")
            .unwrap();
        let batch: herd_bus::TelemetryBatch =
            codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap();
        // The first seconds: the container starting, no rate yet.
        if start.elapsed() < Duration::from_secs(3) {
            continue;
        }
        if let Some(s) = batch
            .samples
            .iter()
            .find(|s| s.workload_id.as_str() == "spin")
        {
            assert!(s.error.is_none(), "{s:?}");
            values.extend(s.cpu_percent);
        }
    }
    assert!(values.len() >= 4, "{values:?}");
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    announce(&format!(
        "container cpu limit 0.5 → mean {mean:.1} % over {} samples {values:.1?}",
        values.len()
    ));
    assert!(
        (40.0..=60.0).contains(&mean),
        "mean {mean} % from {values:?}"
    );
    let ack = n
        .call(
            "workload.stop",
            json!({"workload_id": "spin", "grace_s": 0}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    n.no_containers_left().await;
}

#[tokio::test]
async fn allocating_past_the_memory_limit_ends_oom_killed() {
    let n = node("oom").await;
    let mut events = n.events().await;
    // tail keeps the whole "line" of /dev/zero in memory: it grows until the limit.
    n.start_ok(container(
        json!({"workload_id": "hog", "command": ["tail", "/dev/zero"],
        "limits": {"memory": 64u64 << 20}}),
    ))
    .await;
    let ev = wait_event(&mut events, "hog", &settled(), Duration::from_secs(30)).await;
    assert_eq!(ev.state, WorkloadState::OomKilled, "{ev:?}");
    announce(&format!(
        "container over 64 MiB: {} (exit code {:?})",
        ev.state.as_str(),
        ev.exit_code
    ));
    n.no_containers_left().await;
}

#[tokio::test]
async fn a_container_ignoring_sigterm_is_killed_after_grace() {
    let n = node("stopper").await;
    let mut events = n.events().await;
    n.start_ok(container(json!({"workload_id": "stubborn", "grace_s": 2.0,
        "command": ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"]})))
        .await;
    n.start_ok(container(json!({"workload_id": "polite", "grace_s": 10.0,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]})))
        .await;
    wait_each(
        &mut events,
        &["stubborn", "polite"],
        &[WorkloadState::Running],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(containers_of(&n.id).len(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await; // the traps are set
    let asked = Instant::now();
    for id in ["stubborn", "polite"] {
        let ack = n.call("workload.stop", json!({"workload_id": id})).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    // The polite one settles first; each time is taken when its event arrives.
    let polite = wait_event(&mut events, "polite", &settled(), Duration::from_secs(10)).await;
    let polite_took = asked.elapsed();
    let stubborn = wait_event(&mut events, "stubborn", &settled(), Duration::from_secs(10)).await;
    let took = asked.elapsed();
    assert_eq!(polite.state, WorkloadState::Stopped, "{polite:?}");
    assert!(polite_took < Duration::from_secs(3), "{polite_took:?}");
    assert_eq!(
        stubborn.state,
        WorkloadState::Killed,
        "SIGTERM was ignored, so SIGKILL ended it: {stubborn:?}"
    );
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_millis(3500),
        "killed after {took:?}, grace was 2 s"
    );
    announce(&format!(
        "container stops: SIGTERM honoured in {polite_took:?}; ignored → killed after {took:?} (grace 2 s)"
    ));
    n.no_containers_left().await;
}

#[tokio::test]
async fn a_missing_image_or_engine_is_a_clear_error_and_leaves_nothing() {
    let n = node("noimage").await;
    let reply = n
        .start(json!({"workload_id": "ghost2", "driver": "docker",
            "image": "herd-test/absent:0", "pull_policy": "never", "command": ["true"]}))
        .await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "not_found", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("herd-test/absent:0") && message.contains("pull_policy"),
        "{message}"
    );
    announce(&format!("missing image: {message}"));
    let reply = n
        .start(json!({"driver": "docker", "command": ["true"]}))
        .await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    let list = n
        .call("workload.get", json!({"workload_id": "ghost2"}))
        .await;
    assert_eq!(
        list["error"]["code"], "not_found",
        "nothing was kept: {list}"
    );

    // A node whose engine socket does not exist.
    let socket = "/nonexistent/herd-test/docker.sock";
    let m = node_with(
        "noengine",
        None,
        vec![("HERD_DOCKER_SOCKET", socket.to_string())],
    )
    .await;
    let reply = m
        .start(container(json!({"workload_id": "c1", "command": ["true"]})))
        .await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains(socket), "{message}");
    announce(&format!("no engine: {message}"));
    // Exec workloads still run there.
    let mut events = m.events().await;
    m.start_ok(json!({"workload_id": "e1", "command": ["true"]}))
        .await;
    let ev = wait_event(&mut events, "e1", &settled(), Duration::from_secs(10)).await;
    assert_eq!(ev.exit_code, Some(0));
    let list = m.call("workload.list", json!({})).await;
    assert_eq!(
        list["data"]["workloads"].as_array().unwrap().len(),
        1,
        "{list}"
    );
    n.no_containers_left().await;
    m.no_containers_left().await;
}

#[tokio::test]
async fn a_run_of_containers_completes_across_herdd_dev_nodes() {
    let image = docker_test_image();
    let nats = NatsServer::start();
    let base = node_id("dev");
    let config = "[heartbeat]\ninterval_s = 0.5\n";
    let _dev = Herdd::start_with(HerddOptions {
        config_toml: Some(config),
        args: vec!["dev", "--nodes", "2"],
        ..HerddOptions::new(&base, nats.url())
    });
    let client = connect(&nats.url()).await;
    let nodes = [format!("{base}-1"), format!("{base}-2")];
    let cluster = |verb: &'static str, body: Value| {
        let client = client.clone();
        async move {
            let msg = request(
                &client,
                &format!("herd.v1.cluster.{verb}"),
                None,
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .ok()?;
            serde_json::from_slice::<Value>(&msg.payload).ok()
        }
    };
    eventually(
        Duration::from_secs(30),
        "both dev nodes up at the coordinator",
        || async {
            let v = cluster("nodes", json!({"state": "up"})).await?;
            (v["data"]["nodes"].as_array()?.len() == 2).then_some(())
        },
    )
    .await;
    let write = r#"echo "rep $HERD_REP on $HERD_NODE" > "$HERD_OUTPUT_DIR/out" && cat "$HERD_OUTPUT_DIR/out""#;
    let submitted = cluster(
        "run.submit",
        json!({
            "workload": {"name": "boxed", "driver": "docker", "image": image,
                         "command": ["sh", "-c", write],
                         "limits": {"cpu": 0.5, "memory": 67108864u64}},
            "targets": {"nodes": nodes},
            "repetitions": 2
        }),
    )
    .await
    .expect("run.submit answered");
    assert_eq!(submitted["ok"], true, "{submitted}");
    let run = submitted["data"]["run_id"].as_str().unwrap().to_string();
    let record: RunRecord = eventually(Duration::from_secs(60), "the run settled", || async {
        let v = cluster("run.get", json!({"run_id": run})).await?;
        let r: RunRecord = serde_json::from_value(v["data"].clone()).ok()?;
        matches!(r.state, RunState::Completed | RunState::Failed).then_some(r)
    })
    .await;
    assert_eq!(record.state, RunState::Completed, "{record:#?}");
    assert_eq!(record.tasks.len(), 4);
    for t in &record.tasks {
        assert_eq!(t.status, TaskStatus::Completed, "{t:?}");
        assert_eq!(t.exit_code, Some(0), "{t:?}");
    }
    announce(&format!(
        "run {run}: 2 reps × 2 herdd dev nodes of container tasks, {} completed",
        record.tasks.len()
    ));
    for node in &nodes {
        eventually(Duration::from_secs(10), "containers removed", || async {
            containers_of(node).is_empty().then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn herdd_stopping_removes_its_containers() {
    let mut n = node("shutdown").await;
    let mut events = n.events().await;
    n.start_ok(container(
        json!({"workload_id": "long", "command": ["sleep", "1000"]}),
    ))
    .await;
    wait_event(
        &mut events,
        "long",
        &[WorkloadState::Running],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(containers_of(&n.id).len(), 1);
    let status = n.herdd.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(containers_of(&n.id).is_empty(), "herdd left its container");
}

#[tokio::test]
async fn containers_are_taken_back_after_herdd_was_killed() {
    let state = tempfile::tempdir().unwrap();
    let mut n = node_with("adopt", Some(state.path()), vec![]).await;
    let mut events = n.events().await;
    n.start_ok(container(json!({"workload_id": "keeps", "grace_s": 5.0,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do echo tick; sleep 0.2; done"]})))
        .await;
    n.start_ok(container(
        json!({"workload_id": "ends", "command": ["sh", "-c", "sleep 2; exit 7"]}),
    ))
    .await;
    let running = wait_each(
        &mut events,
        &["keeps", "ends"],
        &[WorkloadState::Running],
        Duration::from_secs(20),
    )
    .await;
    let before = &running["keeps"];
    // herdd dies without stopping anything; "ends" exits while it is down.
    n.herdd.signal(Signal::SIGKILL);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        containers_of(&n.id).len(),
        2,
        "both containers outlive herdd"
    );

    let herdd = start_herdd(&n.id, &n.nats, Some(state.path()), vec![]);
    n.herdd = herdd;
    let ended = wait_event(&mut events, "ends", &settled(), Duration::from_secs(20)).await;
    assert_eq!(ended.state, WorkloadState::Exited, "{ended:?}");
    assert_eq!(ended.exit_code, Some(7), "the real exit code: {ended:?}");
    let got = n
        .call("workload.get", json!({"workload_id": "keeps"}))
        .await;
    assert_eq!(got["data"]["state"], "running", "{got}");
    assert_eq!(got["data"]["pid"], json!(before.pid), "the same process");
    // Telemetry and logs from then on.
    let mut telemetry = n.subscribe(format!("herd.v1.telemetry.{}", n.id)).await;
    let mut logs = n
        .subscribe(format!("herd.v1.logs.{}.keeps.stdout", n.id))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "no sample of the adopted container"
        );
        let msg = tokio::time::timeout(Duration::from_secs(5), telemetry.next())
            .await
            .expect("telemetry")
            .unwrap();
        let batch: herd_bus::TelemetryBatch =
            codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap();
        if batch
            .samples
            .iter()
            .any(|s| s.workload_id.as_str() == "keeps" && s.error.is_none())
        {
            break;
        }
    }
    assert_eq!(log_lines(&mut logs, 2).await, ["tick", "tick"]);
    let ack = n
        .call("workload.stop", json!({"workload_id": "keeps"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ev = wait_event(&mut events, "keeps", &settled(), Duration::from_secs(10)).await;
    assert_eq!(ev.state, WorkloadState::Stopped, "{ev:?}");
    n.no_containers_left().await;
    announce("containers re-adopted after SIGKILL of herdd: running one sampled, logged, stopped; exited one reported with code 7");
}
