//! Fault tests across hosts: deploy/cluster's topology (three NATS servers in a JetStream
//! cluster with replicas 3, two coordinators, three nodes), each a Docker container with its
//! own address, brought up by `deploy/cluster/up`; faults injected with the docker CLI (kill,
//! network disconnect). Each test prints its topology and the failure it injected.

use futures::StreamExt;
use herd_bus::{RunRecord, RunState, TaskStatus, WorkloadState};
use herd_tests::{
    announce, assert_stopped_in_first_rep, eventually, run_events, running_events, Cluster,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const LEASE_S: f64 = 2.0;

/// One topology at a time: eight containers each, on a two-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn submit(c: &Cluster, spec: Value) -> String {
    let v = c.cluster("run.submit", spec.clone()).await;
    assert_eq!(v["ok"], true, "{spec} → {v}");
    v["data"]["run_id"].as_str().unwrap().to_string()
}

async fn run_record(c: &Cluster, run: &str) -> Option<RunRecord> {
    let v = c
        .try_call(
            "herd.v1.cluster.run.get",
            json!({"run_id": run}),
            Duration::from_millis(500),
        )
        .await?;
    serde_json::from_value(v["data"].clone()).ok()
}

async fn wait_run(c: &Cluster, run: &str, states: &[RunState], within: Duration) -> RunRecord {
    eventually(within, &format!("run {run} in {states:?}"), || async {
        run_record(c, run)
            .await
            .filter(|r| states.contains(&r.state))
    })
    .await
}

async fn leader(c: &Cluster) -> String {
    eventually(Duration::from_secs(20), "a leader", || c.leader()).await
}

/// The leader, once the other coordinator stands by: it has read the leader key and follows
/// the leader, so it can take over. Under load a standby has been seen to need 10 s to open the
/// leader bucket; a leader killed before that is not what these tests are about.
async fn leader_with_standby(c: &Cluster) -> String {
    let old = leader(c).await;
    let standby = other(&old);
    eventually(
        Duration::from_secs(30),
        &format!("{standby} to stand by"),
        || async {
            c.logs(standby)
                .contains("another coordinator leads")
                .then_some(())
        },
    )
    .await;
    old
}

fn other(coordinator: &str) -> &'static str {
    if coordinator == "coord1" {
        "coord2"
    } else {
        "coord1"
    }
}

/// Waits until `who` leads; how long after `since`.
async fn led_by(c: &Cluster, who: &str, since: Instant) -> Duration {
    eventually(
        Duration::from_secs(30),
        &format!("{who} to lead"),
        || async { (c.leader().await.as_deref() == Some(who)).then_some(()) },
    )
    .await;
    since.elapsed()
}

/// Each coordinator's log lines about the lead (elections, timeouts, restores), for a
/// failover slower than it should be.
fn lead_log(c: &Cluster) -> String {
    ["coord1", "coord2"]
        .iter()
        .flat_map(|svc| {
            c.logs(svc)
                .lines()
                .filter(|l| {
                    ["lead", "timed out", "coordinator", "bucket"]
                        .iter()
                        .any(|w| l.contains(w))
                })
                .map(|l| format!("{svc}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_started_once(starts: &std::collections::HashMap<String, u32>, r: &RunRecord) {
    assert_eq!(starts.len(), r.tasks.len(), "{starts:?}");
    assert!(starts.values().all(|n| *n == 1), "{starts:?}");
}

fn three_nodes(command: Value, reps: u32) -> Value {
    json!({
        "workload": {"command": command},
        "targets": {"nodes": ["node1", "node2", "node3"]},
        "repetitions": reps
    })
}

#[tokio::test]
async fn the_leader_killed_mid_run_is_replaced_within_two_leases_and_every_task_runs_once() {
    let _one = SERIAL.lock().await;
    let c = Cluster::up("lk", 30.0, LEASE_S).await;
    let old = leader_with_standby(&c).await;
    let (out, _) = c.herdctl(&["nodes"]);
    assert!(out.contains(&format!("leader: {old}:")), "{out}");
    let run = submit(&c, three_nodes(json!(["sleep", "1"]), 3)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.kill(&old);
    let killed = Instant::now();
    announce(&format!(
        "failure: docker kill of the leading coordinator {old}, 1.5 s into a 9-task run"
    ));
    let took = led_by(&c, other(&old), killed).await;
    announce(&format!(
        "{} led {took:.2?} after the kill (lease {LEASE_S} s)",
        other(&old)
    ));
    assert!(
        took <= Duration::from_secs_f64(2.0 * LEASE_S),
        "took {took:?}; what the coordinators said about the lead:\n{}",
        lead_log(&c)
    );
    let r = wait_run(
        &c,
        &run,
        &[RunState::Completed, RunState::Failed],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(r.state, RunState::Completed, "{r:#?}");
    assert_started_once(&running_events(&c.client, &run).await, &r);
}

#[tokio::test]
async fn the_leader_killed_mid_stop_leaves_the_run_stopped() {
    let _one = SERIAL.lock().await;
    let c = Cluster::up("ls", 30.0, LEASE_S).await;
    let old = leader_with_standby(&c).await;
    let mut spec = three_nodes(json!(["sh", "-c", "trap '' TERM; exec sleep 60"]), 2);
    spec["workload"]["grace_s"] = json!(2.0);
    spec["stop_timeout_s"] = json!(10.0);
    let run = submit(&c, spec).await;
    eventually(
        Duration::from_secs(20),
        "every first task running",
        || async {
            // Started: its node's running event is in (RUNNING alone means the start was sent).
            let r = run_record(&c, &run).await?;
            let running = r
                .tasks
                .iter()
                .filter(|t| t.status == TaskStatus::Running && t.started_at_ms.is_some())
                .count();
            (running == 3).then_some(())
        },
    )
    .await;
    let v = c.cluster("run.stop", json!({"run_id": run})).await;
    assert_eq!(v["data"]["state"], "stopping", "{v}");
    c.kill(&old);
    announce(&format!(
        "failure: docker kill of the leading coordinator {old} right after run.stop"
    ));
    let r = wait_run(
        &c,
        &run,
        &[RunState::Stopped, RunState::StopFailed],
        Duration::from_secs(40),
    )
    .await;
    assert_stopped_in_first_rep(&r);
}

#[tokio::test]
async fn one_nats_server_killed_during_a_run_loses_no_lifecycle_event() {
    let _one = SERIAL.lock().await;
    let c = Cluster::up("nk", 30.0, LEASE_S).await;
    let mut telemetry = c.client.subscribe("herd.v1.telemetry.*").await.unwrap();
    c.client.flush().await.unwrap();
    let run = submit(&c, three_nodes(json!(["sleep", "0.7"]), 5)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.kill("nats1");
    let killed = Instant::now();
    announce(
        "failure: docker kill of nats1, one of the three NATS servers, 1 s into a 15-task run",
    );
    let r = wait_run(
        &c,
        &run,
        &[RunState::Completed, RunState::Failed],
        Duration::from_secs(60),
    )
    .await;
    let settled = killed.elapsed();
    assert_eq!(r.state, RunState::Completed, "{r:#?}");
    // Each task's workload has exactly one running and one exited event, on its own node.
    let events = run_events(&c.client, &run).await;
    let mut seen: BTreeMap<(String, String), Vec<WorkloadState>> = BTreeMap::new();
    for ev in &events {
        seen.entry((ev.node_id.to_string(), ev.workload_id.to_string()))
            .or_default()
            .push(ev.state);
    }
    for t in &r.tasks {
        let key = (
            t.node_id.to_string(),
            t.workload_id.as_ref().unwrap().to_string(),
        );
        let states = seen
            .get(&key)
            .unwrap_or_else(|| panic!("no events of {key:?}"));
        let count = |s| states.iter().filter(|x| **x == s).count();
        assert_eq!(
            (count(WorkloadState::Running), count(WorkloadState::Exited)),
            (1, 1),
            "{key:?}: {states:?}"
        );
    }
    assert_eq!(
        seen.len(),
        r.tasks.len(),
        "events of workloads no task has: {seen:?}"
    );
    // Telemetry goes on from every node through the other servers (a gap at most).
    let mut after = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while after.len() < 3 {
        let m = tokio::time::timeout_at(deadline, telemetry.next())
            .await
            .unwrap_or_else(|_| panic!("telemetry after the kill only from {after:?}"))
            .unwrap();
        if killed.elapsed() > Duration::from_secs(1) {
            after.insert(m.subject.to_string());
        }
    }
    announce(&format!(
        "run completed {:.1} s after the kill; {} lifecycle events of 15 tasks, each running and exited once; telemetry from {after:?} after the kill",
        settled.as_secs_f64(),
        events.len()
    ));
}

#[tokio::test]
async fn a_node_cut_off_goes_stale_then_lost_fails_the_stop_and_comes_back_without_a_duplicate() {
    let _one = SERIAL.lock().await;
    let c = Cluster::up("nc", 8.0, LEASE_S).await;
    let mut liveness = c
        .client
        .subscribe("herd.v1.cluster.evt.node.*")
        .await
        .unwrap();
    c.client.flush().await.unwrap();
    let mut spec = three_nodes(json!(["sleep", "30"]), 1);
    spec["stop_timeout_s"] = json!(3.0);
    let run = submit(&c, spec).await;
    // Every task started, by its node's running event: node2 is cut off with its task running,
    // not before its start reached it.
    eventually(Duration::from_secs(20), "every task running", || async {
        let r = run_record(&c, &run).await?;
        r.tasks
            .iter()
            .all(|t| t.status == TaskStatus::Running && t.started_at_ms.is_some())
            .then_some(())
    })
    .await;
    c.cut("node2");
    let cut = Instant::now();
    announce("failure: node2 disconnected from the network (docker network disconnect)");
    let mut next_change = async |want: &str| loop {
        let m = tokio::time::timeout(Duration::from_secs(30), liveness.next())
            .await
            .unwrap_or_else(|_| panic!("no {want} event"))
            .unwrap();
        if m.subject.as_str() == format!("herd.v1.cluster.evt.node.{want}") {
            let ev: herd_bus::ClusterEvent = herd_bus::codec::decode(
                &m.payload,
                herd_bus::Encoding::MsgPack,
                &herd_bus::DecodeLimits::default(),
            )
            .unwrap();
            if ev.node_id.as_ref().map(|n| n.as_str()) == Some("node2") {
                return;
            }
        }
    };
    next_change("stale").await;
    announce(&format!("node2 stale {:.2?} after the cut", cut.elapsed()));
    let v = c.cluster("run.stop", json!({"run_id": run})).await;
    assert_eq!(v["data"]["state"], "stopping", "{v}");
    let r = wait_run(
        &c,
        &run,
        &[RunState::Stopped, RunState::StopFailed],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(r.state, RunState::StopFailed, "{r:#?}");
    assert_eq!(
        r.unconfirmed_nodes
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>(),
        ["node2"],
        "{r:#?}"
    );
    next_change("lost").await;
    announce(&format!(
        "node2 lost {:.2?} after the cut; {} leads",
        cut.elapsed(),
        leader(&c).await
    ));
    // Within seconds, unless the lead changes hands meanwhile (a loaded machine can miss a
    // renewal): the next leader marks the task lost as it takes over.
    let r = eventually(Duration::from_secs(30), "node2's task lost", || async {
        let r = run_record(&c, &run).await?;
        r.tasks
            .iter()
            .any(|t| t.node_id.as_str() == "node2" && t.status == TaskStatus::Lost)
            .then_some(r)
    })
    .await;
    assert!(
        r.tasks
            .iter()
            .filter(|t| t.node_id.as_str() != "node2")
            .all(|t| t.status == TaskStatus::Stopped),
        "{r:#?}"
    );
    c.heal("node2");
    announce("healed: node2 connected again");
    next_change("up").await;
    // node2's running event, queued in its outbox while it was cut off, arrives; the task is
    // reconciled, not started again: one running event per task.
    let r = run_record(&c, &run).await.unwrap();
    let starts = eventually(Duration::from_secs(30), "node2's queued events", || async {
        let starts = running_events(&c.client, &run).await;
        (starts.len() == r.tasks.len()).then_some(starts)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        starts,
        running_events(&c.client, &run).await,
        "a late duplicate"
    );
    assert_started_once(&starts, &r);
    announce(&format!(
        "after the heal: node2 up; tasks {:?}",
        r.tasks
            .iter()
            .map(|t| (t.node_id.as_str(), t.status))
            .collect::<Vec<_>>()
    ));
}

#[tokio::test]
async fn a_partition_isolating_the_old_leader_stops_it_and_the_majority_side_carries_on() {
    let _one = SERIAL.lock().await;
    let c = Cluster::up("pl", 30.0, LEASE_S).await;
    let old = leader_with_standby(&c).await;
    let new = other(&old);
    c.cut(&old);
    let cut = Instant::now();
    announce(&format!(
        "failure: the leading coordinator {old} disconnected from the network"
    ));
    let took = led_by(&c, new, cut).await;
    announce(&format!("{new} led {took:.2?} after the partition"));
    assert!(
        took <= Duration::from_secs_f64(2.0 * LEASE_S),
        "took {took:?}"
    );
    eventually(
        Duration::from_secs(10),
        "the old leader to stop acting",
        || async { c.logs(&old).contains("no longer leads").then_some(()) },
    )
    .await;
    let run = submit(&c, three_nodes(json!(["sleep", "0.5"]), 2)).await;
    let r = wait_run(
        &c,
        &run,
        &[RunState::Completed, RunState::Failed],
        Duration::from_secs(40),
    )
    .await;
    assert_eq!(r.state, RunState::Completed, "{r:#?}");
    c.heal(&old);
    announce(&format!("healed: {old} connected again"));
    eventually(
        Duration::from_secs(20),
        "the old leader to stand by",
        || async {
            let log = c.logs(&old);
            let tail = &log[log.rfind("no longer leads").unwrap_or(0)..];
            tail.contains("another coordinator leads").then_some(())
        },
    )
    .await;
    for _ in 0..20 {
        assert_eq!(c.leader().await.as_deref(), Some(new));
    }
    assert_started_once(&running_events(&c.client, &run).await, &r);
}
