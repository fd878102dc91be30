//! deploy/nats/herd.conf on a real nats-server, with two nodes added by deploy/nats/add-node:
//! node A's credentials cannot publish in node B's name or read B's commands (the server's
//! permission errors are checked), while herdd nodes, the coordinator and an operator work
//! under their own users without a single permission violation (the operator reads a node's
//! kept logs with herdctl, and uploads a run input that a node fetches).

use futures::StreamExt;
use herd_tests::{announce, node_call, wait_for_node, Herdd, HerddOptions, NatsServer};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::sync::mpsc;

const COORDINATOR_PASSWORD: &str = "coordinator-secret";
const OPERATOR_PASSWORD: &str = "operator-secret";

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/nats")
        .join(file)
}

/// The shipped configuration with nodes `a` and `b` added, on this test's port and store.
fn server() -> NatsServer {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("herd.conf");
    std::fs::copy(deploy("herd.conf"), &conf).unwrap();
    for (node, password) in [("a", "a-secret"), ("b", "b-secret")] {
        let out = Command::new("bash")
            .arg(deploy("add-node"))
            .args([node, "--into"])
            .arg(&conf)
            .args(["--password", password])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "add-node {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(&format!("user = \"node-{node}\"")), "{said}");
    }
    // add-node refuses a node that is already there, and a bad id.
    let again = Command::new("bash")
        .arg(deploy("add-node"))
        .args(["a", "--into"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let bad = Command::new("bash")
        .arg(deploy("add-node"))
        .arg("a.b")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("listen: 0.0.0.0:4222") && text.contains("/var/lib/nats/jetstream"));
    NatsServer::start_with_config(
        |port, store| {
            text.replace("listen: 0.0.0.0:4222", &format!("listen: 127.0.0.1:{port}"))
                .replace("/var/lib/nats/jetstream", &store.display().to_string())
        },
        &[
            ("HERD_COORDINATOR_PASSWORD", COORDINATOR_PASSWORD),
            ("HERD_OPERATOR_PASSWORD", OPERATOR_PASSWORD),
        ],
    )
}

/// A client as `user`, with the server's errors (permission violations) on a channel.
async fn client_as(
    nats: &NatsServer,
    user: &str,
    password: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(nats.url())
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
    (client, rx)
}

/// A JSON request to the coordinator; its JSON reply.
async fn cluster(
    client: &async_nats::Client,
    verb: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let msg = herd_tests::request(
        client,
        &format!("herd.v1.cluster.{verb}"),
        None,
        serde_json::to_vec(&body).unwrap(),
    )
    .await
    .unwrap_or_else(|e| panic!("{verb}: {e}"));
    serde_json::from_slice(&msg.payload).unwrap()
}

/// The next server error within 5 s; it must name `subject`.
async fn expect_violation(errors: &mut mpsc::UnboundedReceiver<String>, what: &str, subject: &str) {
    let err = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .unwrap_or_else(|_| panic!("no permission error for {what} {subject}"))
        .unwrap();
    let lower = err.to_lowercase();
    assert!(
        lower.contains("permissions violation") && lower.contains(what) && err.contains(subject),
        "{what} {subject}: {err}"
    );
}

async fn no_violation(errors: &mut mpsc::UnboundedReceiver<String>) {
    if let Ok(Some(err)) = tokio::time::timeout(Duration::from_millis(500), errors.recv()).await {
        panic!("unexpected server error: {err}");
    }
}

#[tokio::test]
async fn node_users_are_confined_to_their_own_subjects() {
    let nats = server();
    let (coordinator, mut coordinator_errors) =
        client_as(&nats, "coordinator", COORDINATOR_PASSWORD).await;
    let mut heartbeats = coordinator.subscribe("herd.v1.hb.*").await.unwrap();
    coordinator.flush().await.unwrap();
    let (a, mut a_errors) = client_as(&nats, "node-a", "a-secret").await;

    // A may publish its own heartbeat and read its own commands.
    a.publish("herd.v1.hb.a", "from a".into()).await.unwrap();
    let mut own = a.subscribe("herd.v1.node.a.>").await.unwrap();
    a.flush().await.unwrap();
    no_violation(&mut a_errors).await;

    // …but not publish in B's name: heartbeat, events, telemetry, logs, nor command B.
    for subject in [
        "herd.v1.hb.b",
        "herd.v1.evt.b.workload.running",
        "herd.v1.telemetry.b",
        "herd.v1.logs.b.w1.stdout",
        "herd.v1.node.b.workload.start",
        "herd.v1.cluster.evt.run.finished",
    ] {
        a.publish(subject, "forged".into()).await.unwrap();
        a.flush().await.unwrap();
        expect_violation(&mut a_errors, "publish", subject).await;
    }
    // …nor read B's commands, directly or through a wildcard.
    for subject in [
        "herd.v1.node.b.>",
        "herd.v1.node.*.workload.start",
        "herd.v1.>",
    ] {
        let _sub = a.subscribe(subject).await.unwrap();
        a.flush().await.unwrap();
        expect_violation(&mut a_errors, "subscription", subject).await;
    }
    // A command to B does not reach A.
    let (operator, mut operator_errors) = client_as(&nats, "operator", OPERATOR_PASSWORD).await;
    operator
        .publish("herd.v1.node.b.ping", "to b".into())
        .await
        .unwrap();
    operator
        .publish("herd.v1.node.a.ping", "to a".into())
        .await
        .unwrap();
    operator.flush().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), own.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.subject.as_str(), "herd.v1.node.a.ping");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), own.next())
            .await
            .is_err(),
        "A received something else"
    );
    // Only A's own heartbeat reached the coordinator; the forged one was dropped by the server.
    let hb = tokio::time::timeout(Duration::from_secs(5), heartbeats.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hb.subject.as_str(), "herd.v1.hb.a");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), heartbeats.next())
            .await
            .is_err(),
        "a forged heartbeat got through"
    );
    // The operator cannot speak for a node either.
    operator
        .publish("herd.v1.evt.a.workload.exited", "forged".into())
        .await
        .unwrap();
    operator.flush().await.unwrap();
    expect_violation(
        &mut operator_errors,
        "publish",
        "herd.v1.evt.a.workload.exited",
    )
    .await;
    no_violation(&mut coordinator_errors).await;
    announce("nats permissions: node a refused on 6 subjects of b's (publish) and 3 subscriptions; operator refused a node's event subject");
}

#[tokio::test]
async fn herdd_nodes_the_coordinator_and_an_operator_work_under_their_users() {
    let nats = server();
    let node = |id: &'static str, password: &'static str| {
        Herdd::start_with(HerddOptions {
            env: vec![
                ("HERD_NATS_USER", format!("node-{id}")),
                ("HERD_NATS_PASSWORD", password.to_string()),
            ],
            ..HerddOptions::new(id, nats.url())
        })
    };
    let a = node("a", "a-secret");
    let b = node("b", "b-secret");
    let coordinator = Herdd::start_with(HerddOptions {
        env: vec![
            ("HERD_NATS_USER", "coordinator".to_string()),
            ("HERD_NATS_PASSWORD", COORDINATOR_PASSWORD.to_string()),
        ],
        args: vec!["--roles", "coordinator"],
        ..HerddOptions::new("coord", nats.url())
    });
    let (operator, mut operator_errors) = client_as(&nats, "operator", OPERATOR_PASSWORD).await;
    let mut events = operator
        .subscribe("herd.v1.evt.a.workload.*")
        .await
        .unwrap();
    operator.flush().await.unwrap();
    wait_for_node(&operator, "a").await;
    wait_for_node(&operator, "b").await;

    // The coordinator sees both nodes through their heartbeats.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let reply = herd_tests::request(&operator, "herd.v1.cluster.nodes", None, b"{}".to_vec())
            .await
            .map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap());
        let ids: Vec<String> = reply
            .as_ref()
            .ok()
            .and_then(|r| r["data"]["nodes"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n["node_id"].as_str().map(str::to_string))
            .collect();
        if ids.contains(&"a".to_string()) && ids.contains(&"b".to_string()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the coordinator does not list both nodes: {reply:?}\n{}",
            coordinator.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The operator runs a workload on A; its events (JetStream-published) arrive.
    let reply = node_call(
        &operator,
        "a",
        "workload.start",
        json!({"workload_id": "perm1", "command": ["sh", "-c", "echo hi; exit 4"]}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let ev = herd_tests::wait_workload_event(
        &mut events,
        "perm1",
        &[herd_bus::WorkloadState::Exited],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(ev.exit_code, Some(4));
    no_violation(&mut operator_errors).await;

    // Node A kept the output in its own log stream; the operator reads it with herdctl.
    let logs = tokio::process::Command::new(herd_tests::workspace_bin("herdctl"))
        .args(["--nats-url", &nats.url(), "--nats-user", "operator"])
        .args(["--nats-password", OPERATOR_PASSWORD, "logs", "a", "perm1"])
        .output()
        .await
        .unwrap();
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hi\n");
    // A run task's output goes to the results bucket under A's user (the object store's
    // stream, chunks, infos and purges), its results event to the coordinator; the operator
    // reads the object by its name.
    let spec = json!({
        "run_id": "perm-run",
        "workload": {"name": "w", "command": ["sh", "-c", "echo result > \"$HERD_OUTPUT_DIR/out.txt\""]},
        "targets": {"nodes": ["a"]},
        "repetitions": 1
    });
    let reply = cluster(&operator, "run.submit", spec).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let run = cluster(&operator, "run.get", json!({"run_id": "perm-run"})).await;
        if run["data"]["tasks"][0]["results"]["objects"][0]["object"] == "perm-run/a/w-1/out.txt" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no results in the journal: {run}\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bucket = async_nats::jetstream::new(operator.clone())
        .get_object_store("herd-results")
        .await
        .unwrap();
    let mut object = bucket.get("perm-run/a/w-1/out.txt").await.unwrap();
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut object, &mut text)
        .await
        .unwrap();
    assert_eq!(text, "result\n");
    no_violation(&mut operator_errors).await;

    // The operator uploads a run input with herdctl; node A fetches it under its own user.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "input\n").unwrap();
    let submit = tokio::process::Command::new(herd_tests::workspace_bin("herdctl"))
        .args(["--nats-url", &nats.url(), "--nats-user", "operator"])
        .args([
            "--nats-password",
            OPERATOR_PASSWORD,
            "run",
            "submit",
            "--nodes",
            "a",
        ])
        .args([
            "--input",
            dir.path().join("in.txt").to_str().unwrap(),
            "--",
            "true",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        submit.status.success(),
        "{}",
        String::from_utf8_lossy(&submit.stderr)
    );
    let run_id = String::from_utf8_lossy(&submit.stdout).trim().to_string();
    let run = cluster(&operator, "run.get", json!({"run_id": run_id})).await;
    let inputs = run["data"]["spec"]["inputs"].clone();
    assert_eq!(inputs[0]["path"], "in.txt", "{run}");
    let reply = node_call(
        &operator,
        "a",
        "workload.start",
        json!({"workload_id": "perm2", "inputs": inputs,
               "command": ["sh", "-c", "test \"$(cat \"$HERD_INPUT_DIR/in.txt\")\" = input"]}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let ev = herd_tests::wait_workload_event(
        &mut events,
        "perm2",
        &[
            herd_bus::WorkloadState::Exited,
            herd_bus::WorkloadState::Failed,
        ],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(ev.exit_code, Some(0), "{ev:?}\n{}", a.log());
    no_violation(&mut operator_errors).await;

    // Nobody hit a permission the configuration lacks: herdd's own uses (streams, KV,
    // replies, heartbeats, the results bucket) are all allowed.
    for herdd in [&a, &b, &coordinator] {
        assert!(!herdd.log().contains("Violation"), "{}", herdd.log());
    }
    drop((a, b, coordinator));
    // nats-server logs each refusal ("Publish Violation - User …").
    let log = nats.log();
    let violations: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    assert!(
        violations.is_empty(),
        "permission violations:\n{}",
        violations.join("\n")
    );
    announce("nats permissions: herdd nodes a and b, the coordinator and an operator ran a workload and a run task (its output uploaded, read back) and a workload with an input (uploaded by herdctl, fetched by its node) with no violation");
}
