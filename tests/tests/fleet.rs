//! A coordinator and three agents as separate herdd processes on a real nats-server: fleet
//! listing, liveness through SIGSTOP/SIGCONT, coordinator restarts (a node dying or leaving
//! meanwhile), placement queries and lameduck, and malformed heartbeats.

use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{ClusterEvent, FitResult, NodeList, NodeLiveness};
use herd_tests::{announce, eventually, request, Fleet};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HB: f64 = 0.5;
const LOST_AFTER: f64 = 3.0;

async fn fleet(tag: &str) -> Fleet {
    Fleet::start(tag, &["a", "b", "c"], HB, LOST_AFTER).await
}

async fn nodes(f: &Fleet) -> NodeList {
    let v = f.cluster("nodes", json!({})).await;
    serde_json::from_value(v["data"].clone()).unwrap_or_default()
}

async fn next_event(
    sub: &mut async_nats::Subscriber,
    node: &str,
    kind: &str,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event for {node} within {within:?}"))
            .unwrap();
        let ev: ClusterEvent =
            codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap();
        if ev.kind == kind && ev.node_id.as_ref().map(|n| n.as_str()) == Some(node) {
            assert_eq!(msg.subject.as_str(), format!("herd.v1.cluster.evt.{kind}"));
            return start.elapsed();
        }
    }
}

#[tokio::test]
async fn three_agents_listed_queries_lameduck_and_malformed_heartbeats() {
    let f = fleet("q").await;
    let list = nodes(&f).await;
    assert_eq!(list.nodes.len(), 3);
    for r in &list.nodes {
        let hb = r.heartbeat.as_ref().expect("heartbeat");
        assert_eq!(r.liveness, NodeLiveness::Up);
        assert!(hb.capacity.cpus >= 1.0 && hb.capacity.memory > 0, "{hb:?}");
        assert!(hb.usage.memory_available > 0);
    }

    // More memory than any node has: no candidates, and why.
    let fit = f.cluster("query", json!({"memory": 1u64 << 44})).await;
    let fit: FitResult = serde_json::from_value(fit["data"].clone()).unwrap();
    assert!(fit.candidates.is_empty());
    assert!(
        fit.summary
            .as_deref()
            .unwrap()
            .contains("none of 3 nodes fits"),
        "{fit:?}"
    );
    for id in ["q-a", "q-b", "q-c"] {
        assert!(fit.rejected[id].contains("memory"), "{fit:?}");
    }

    // Lameduck: never a candidate, and refuses workload.start with unavailable.
    let ack = request(
        &f.client,
        "herd.v1.node.q-a.lameduck",
        None,
        br#"{"enabled":true}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&ack.payload).unwrap()["ok"],
        true
    );
    let fit: FitResult = eventually(
        Duration::from_secs(5),
        "q-a reported in lameduck",
        || async {
            let v = request(&f.client, "herd.v1.cluster.query", None, b"{}".to_vec())
                .await
                .ok()?;
            let fit: FitResult = serde_json::from_value(
                serde_json::from_slice::<Value>(&v.payload).ok()?["data"].clone(),
            )
            .ok()?;
            fit.rejected.contains_key("q-a").then_some(fit)
        },
    )
    .await;
    assert_eq!(fit.rejected["q-a"], "node is in lameduck");
    let ids: Vec<&str> = fit.candidates.iter().map(|c| c.node_id.as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&"q-a"));
    for strategy in ["round_robin", "binpack", "spread"] {
        let fit = f.cluster("query", json!({"strategy": strategy})).await;
        let fit: FitResult = serde_json::from_value(fit["data"].clone()).unwrap();
        assert!(
            fit.candidates.iter().all(|c| c.node_id.as_str() != "q-a"),
            "{strategy}: {fit:?}"
        );
    }
    let start = request(
        &f.client,
        "herd.v1.node.q-a.workload.start",
        None,
        br#"{"command":["true"]}"#.to_vec(),
    )
    .await
    .unwrap();
    let start: Value = serde_json::from_slice(&start.payload).unwrap();
    assert_eq!(start["error"]["code"], "unavailable", "{start}");

    // Bad cluster requests get bad_request (or not_found) naming the problem; the coordinator
    // keeps answering.
    for (verb, body, code, says) in [
        ("nodes", vec![0xc1u8], "bad_request", "MessagePack"),
        (
            "nodes",
            br#"{"state":"sleeping"}"#.to_vec(),
            "bad_request",
            "`state`",
        ),
        ("node.get", b"{}".to_vec(), "bad_request", "node_id"),
        (
            "node.get",
            br#"{"node_id":"nobody"}"#.to_vec(),
            "not_found",
            "nobody",
        ),
        ("query", br#"{"cpu":-1}"#.to_vec(), "bad_request", "cpu"),
        (
            "query",
            br#"{"memory":"lots"}"#.to_vec(),
            "bad_request",
            "`memory`",
        ),
        (
            "query",
            br#"{"strategy":"random"}"#.to_vec(),
            "bad_request",
            "`strategy`",
        ),
        (
            "workloads",
            br#"{"node_id":"a.b"}"#.to_vec(),
            "bad_request",
            "may contain only",
        ),
        (
            "reboot",
            b"{}".to_vec(),
            "bad_request",
            "unknown verb 'reboot'",
        ),
        (
            "run.submit",
            br#"{"repetitions":1}"#.to_vec(),
            "bad_request",
            "`targets`",
        ),
    ] {
        let msg = request(&f.client, &format!("herd.v1.cluster.{verb}"), None, body)
            .await
            .unwrap();
        let reply: herd_bus::Reply<herd_bus::Empty> = codec::decode(
            &msg.payload,
            Encoding::detect(herd_tests::content_type(&msg).as_deref(), &msg.payload),
            &DecodeLimits::default(),
        )
        .unwrap();
        let e = reply.error.unwrap_or_else(|| panic!("{verb}: no error"));
        assert_eq!(e.code.as_str(), code, "{verb}: {}", e.message);
        assert!(e.message.contains(says), "{verb}: {}", e.message);
    }
    assert_eq!(nodes(&f).await.nodes.len(), 3);

    // Malformed heartbeats: garbage, truncated, and one naming another node on q-b's subject.
    let before = nodes(&f).await;
    let b_before = before
        .nodes
        .iter()
        .find(|r| r.node_id.as_str() == "q-b")
        .unwrap()
        .clone();
    let mut forged = b_before.heartbeat.clone().unwrap();
    forged.node_id = herd_bus::NodeId::new("q-c").unwrap();
    forged.seq += 1_000_000;
    let forged = codec::encode(&forged, Encoding::MsgPack).unwrap();
    for payload in [
        vec![0xc1u8],
        b"{\"node_id\":\"q-b\"}".to_vec(),
        forged[..forged.len() / 2].to_vec(),
        forged.clone(),
        vec![],
    ] {
        f.client
            .publish("herd.v1.hb.q-b", payload.into())
            .await
            .unwrap();
    }
    f.client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = nodes(&f).await;
    assert_eq!(after.nodes.len(), 3, "no node invented");
    assert!(
        after.nodes.iter().all(|r| r.liveness == NodeLiveness::Up),
        "{after:?}"
    );
    let c_after = after
        .nodes
        .iter()
        .find(|r| r.node_id.as_str() == "q-c")
        .unwrap();
    assert!(
        c_after.heartbeat.as_ref().unwrap().seq < 1_000_000,
        "the forged seq was not taken"
    );
    let log = f.coordinator.log();
    assert!(log.contains("ignoring a malformed heartbeat"), "logged");
    assert!(
        log.contains("count=4"),
        "counted: {}",
        log.lines()
            .filter(|l| l.contains("malformed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn a_frozen_agent_goes_stale_then_lost_and_comes_back() {
    let f = fleet("z").await;
    let mut events = f
        .client
        .subscribe("herd.v1.cluster.evt.node.*")
        .await
        .unwrap();
    f.client.flush().await.unwrap();
    // A workload on the node that will be frozen: the coordinator must report it lost.
    let started = request(
        &f.client,
        "herd.v1.node.z-b.workload.start",
        None,
        br#"{"workload_id":"zw","command":["sleep","60"]}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&started.payload).unwrap()["ok"],
        true
    );
    eventually(Duration::from_secs(5), "zw in the inventory", || async {
        let v = f.cluster("workloads", json!({"node_id": "z-b"})).await;
        (v["data"]["workloads"][0]["state"] == "running").then_some(())
    })
    .await;
    let frozen = &f.agents[1];
    frozen.signal(Signal::SIGSTOP);
    let stale = next_event(&mut events, "z-b", "node.stale", Duration::from_secs(6)).await;
    let lost = next_event(&mut events, "z-b", "node.lost", Duration::from_secs(6)).await + stale;
    announce(&format!("SIGSTOP → node.stale after {stale:.2?}, node.lost after {lost:.2?} (interval {HB} s, lost_after {LOST_AFTER} s)"));
    // Measured from SIGSTOP; the last heartbeat came up to one jittered interval (0.55 s)
    // before it. Stale: 3 missed intervals (1.5 s) after that beat; lost: lost_after (3 s) after
    // it; each noticed at the next coordinator tick (0.125 s), plus slack for a loaded machine.
    let last_beat_max = 1.1 * HB;
    let window = |at: f64| {
        (
            Duration::from_secs_f64(at - last_beat_max),
            Duration::from_secs_f64(at + 1.0),
        )
    };
    let (lo, hi) = window(3.0 * HB);
    assert!(
        stale >= lo && stale <= hi,
        "stale after {stale:?}, expected {lo:?}..{hi:?}"
    );
    let (lo, hi) = window(LOST_AFTER);
    assert!(
        lost >= lo && lost <= hi,
        "lost after {lost:?}, expected {lo:?}..{hi:?}"
    );
    let list = nodes(&f).await;
    let b = list
        .nodes
        .iter()
        .find(|r| r.node_id.as_str() == "z-b")
        .unwrap();
    assert_eq!(b.liveness, NodeLiveness::Lost);
    let w = f.cluster("workloads", json!({"node_id": "z-b"})).await;
    assert_eq!(w["data"]["workloads"][0]["workload_id"], "zw");
    assert_eq!(w["data"]["workloads"][0]["state"], "lost", "{w}");
    frozen.signal(Signal::SIGCONT);
    let up = next_event(&mut events, "z-b", "node.up", Duration::from_secs(5)).await;
    announce(&format!("SIGCONT → node.up after {up:.2?}"));
    eventually(Duration::from_secs(5), "all three up again", || async {
        let list = nodes(&f).await;
        (list
            .nodes
            .iter()
            .filter(|r| r.liveness == NodeLiveness::Up)
            .count()
            == 3)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn coordinator_restart_relists_the_fleet_and_finds_a_node_that_died_meanwhile() {
    let mut f = fleet("r").await;
    // Each live node's heartbeat seq now: after the restart, a higher one proves a fresh beat
    // (restored records carry older ones).
    let seq_before: std::collections::HashMap<String, u64> = nodes(&f)
        .await
        .nodes
        .iter()
        .map(|r| {
            (
                r.node_id.to_string(),
                r.heartbeat.as_ref().map(|h| h.seq).unwrap_or(0),
            )
        })
        .collect();
    f.coordinator.signal(Signal::SIGKILL);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Killed without a word: no `stopping` event, so it did not leave, it died.
    f.agents[2].signal(Signal::SIGKILL);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut events = f
        .client
        .subscribe("herd.v1.cluster.evt.node.*")
        .await
        .unwrap();
    f.client.flush().await.unwrap();
    let restarted_at = Instant::now();
    let coordinator = Fleet::start_coordinator(&f.nats, "r-coord", HB, LOST_AFTER);
    // The two live agents are up again within two heartbeat intervals of the coordinator
    // answering.
    let answering = eventually(
        Duration::from_secs(10),
        "the restarted coordinator",
        || async {
            let list = request(&f.client, "herd.v1.cluster.nodes", None, b"{}".to_vec())
                .await
                .ok()?;
            Some(list)
        },
    )
    .await;
    let _ = answering;
    let answered_after = restarted_at.elapsed();
    let answered = Instant::now();
    let list = eventually(
        Duration::from_secs_f64(2.0 * HB),
        "fresh heartbeats from a and b",
        || async {
            let list = nodes(&f).await;
            let fresh: Vec<_> = list
                .nodes
                .iter()
                .filter(|r| {
                    r.liveness == NodeLiveness::Up
                        && r.heartbeat.as_ref().map(|h| h.seq).unwrap_or(0)
                            > seq_before.get(r.node_id.as_str()).copied().unwrap_or(0)
                })
                .map(|r| r.node_id.to_string())
                .collect();
            (fresh.contains(&"r-a".to_string()) && fresh.contains(&"r-b".to_string()))
                .then_some(list)
        },
    )
    .await;
    let relisted = answered.elapsed();
    assert_eq!(
        list.nodes.len(),
        3,
        "c is remembered from the bucket: {list:?}"
    );
    next_event(
        &mut events,
        "r-c",
        "node.lost",
        Duration::from_secs_f64(LOST_AFTER + 3.0),
    )
    .await;
    let lost = restarted_at.elapsed();
    announce(&format!(
        "coordinator restart: answering after {answered_after:.2?}, live nodes relisted from fresh heartbeats {relisted:.2?} later; node killed meanwhile reported lost {lost:.2?} after the restart"
    ));
    let c = nodes(&f)
        .await
        .nodes
        .into_iter()
        .find(|r| r.node_id.as_str() == "r-c")
        .unwrap();
    assert_eq!(c.liveness, NodeLiveness::Lost);
    f.coordinator = coordinator;
}

#[tokio::test]
async fn a_node_that_left_while_the_coordinator_was_down_is_reported_left() {
    // lost_after_s is long: a node missed by the coordinator would show stale, not lost.
    let mut f = Fleet::start("l", &["a", "b"], HB, 30.0).await;
    f.coordinator.signal(Signal::SIGKILL);
    assert!(f.coordinator.wait_exit(Duration::from_secs(5)).is_some());
    // b shuts down gracefully: its `stopping` event is all that tells it left.
    assert!(f.agents[1].terminate(Duration::from_secs(15)).is_some());
    let mut events = f
        .client
        .subscribe("herd.v1.cluster.evt.node.*")
        .await
        .unwrap();
    f.client.flush().await.unwrap();
    f.coordinator = Fleet::start_coordinator(&f.nats, "l-coord", HB, 30.0);
    let left = next_event(&mut events, "l-b", "node.left", Duration::from_secs(10)).await;
    announce(&format!(
        "a node that left while the coordinator was down: node.left {left:.2?} after the restart"
    ));
    let list = nodes(&f).await;
    let liveness = |id: &str| {
        list.nodes
            .iter()
            .find(|r| r.node_id.as_str() == id)
            .map(|r| r.liveness)
    };
    assert_eq!(liveness("l-b"), Some(NodeLiveness::Left), "{list:?}");
    assert_eq!(liveness("l-a"), Some(NodeLiveness::Up), "{list:?}");
}
