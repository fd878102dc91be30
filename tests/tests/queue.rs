//! Queued runs (issue 16), across separate herdd processes on a real nats-server: agents with
//! 1 allocatable CPU that they do not overcommit. A run that does not fit waits `queued`
//! (saying why) and starts when the one before it ends; it survives a coordinator restart and
//! can be stopped while it waits; one that must not wait is refused at once.

use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{ClusterEvent, RunRecord, RunState, TaskStatus};
use herd_tests::{announce, eventually, herdctl, Fleet};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::time::Duration;

const HB: f64 = 0.5;

/// One allocatable CPU, not overcommitted.
const ONE_CPU: &str = "[resources]\ncapacity_cpu = 1.0\novercommit_cpu = false\n";

fn run_spec(id: &str, node: &str, seconds: f64) -> Value {
    json!({
        "run_id": id,
        "workload": {"command": ["sleep", seconds.to_string()], "limits": {"cpu": 1.0}},
        "targets": {"nodes": [node]},
        "repetitions": 1
    })
}

async fn submit(f: &Fleet, spec: Value) -> String {
    let v = f.cluster("run.submit", spec.clone()).await;
    assert_eq!(v["ok"], true, "{spec} → {v}");
    v["data"]["run_id"].as_str().unwrap().to_string()
}

/// The run as the coordinator has it; None while no coordinator answers.
async fn try_get(f: &Fleet, run: &str) -> Option<RunRecord> {
    let v = f
        .try_call("herd.v1.cluster.run.get", json!({"run_id": run}))
        .await?;
    serde_json::from_value(v["data"].clone()).ok()
}

async fn get(f: &Fleet, run: &str) -> RunRecord {
    try_get(f, run).await.expect("the coordinator answers")
}

async fn wait_state(f: &Fleet, run: &str, state: RunState, within: Duration) -> RunRecord {
    eventually(within, &format!("run {run} {state:?}"), || async {
        try_get(f, run).await.filter(|r| r.state == state)
    })
    .await
}

/// Every workload of `run` any agent has or had, whatever its state.
async fn workloads_of(f: &Fleet, run: &str) -> usize {
    let mut n = 0;
    for a in &f.agents {
        let v = f
            .call(
                &format!("herd.v1.node.{}.workload.list", a.node_id),
                json!({"run_id": run}),
            )
            .await;
        n += v["data"]["workloads"].as_array().map_or(0, Vec::len);
    }
    n
}

#[tokio::test]
async fn the_second_of_two_runs_that_cannot_both_fit_waits_queued_then_completes() {
    let f = Fleet::start_configured("qq", &["a"], HB, 30.0, ONE_CPU).await;
    let mut queued_events = f
        .client
        .subscribe("herd.v1.cluster.evt.run.queued")
        .await
        .unwrap();
    f.client.flush().await.unwrap();

    let first = submit(&f, run_spec("qq-first", "qq-a", 3.0)).await;
    // The second one through herdctl, following it: it says why it waits, then goes on.
    let url = f.nats.url();
    let follow = tokio::spawn(async move {
        herdctl(
            &url,
            &[
                "run",
                "submit",
                "--id",
                "qq-second",
                "--nodes",
                "qq-a",
                "--cpu",
                "1",
                "--follow",
                "--",
                "sleep",
                "0.5",
            ],
        )
        .await
    });
    let second = wait_state(&f, "qq-second", RunState::Queued, Duration::from_secs(10)).await;
    let reason = second.queued_reason.clone().expect("a queued run says why");
    assert!(
        reason.contains("cpu: needs 1 CPUs, 0.00 of 1 allocatable left"),
        "{reason}"
    );
    assert!(second.tasks.is_empty(), "{second:?}");
    announce(&format!(
        "queue: the second 1-CPU run on 1 allocatable CPU: {reason}"
    ));
    let msg = tokio::time::timeout(Duration::from_secs(5), queued_events.next())
        .await
        .expect("a run.queued event")
        .unwrap();
    let ev: ClusterEvent =
        codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap();
    assert_eq!(
        ev.run_id.map(|r| r.to_string()).as_deref(),
        Some("qq-second")
    );
    let listed = f.cluster("run.list", json!({"state": "queued"})).await;
    assert_eq!(listed["data"]["runs"][0]["run_id"], "qq-second", "{listed}");

    // Another one that must not wait is refused at once, naming CPU; one larger than the node
    // could ever hold is a bad request, never queued.
    let mut now_or_never = run_spec("qq-now", "qq-a", 1.0);
    now_or_never["queue"] = json!(false);
    let v = f.cluster("run.submit", now_or_never).await;
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    let refusal = v["error"]["message"].as_str().unwrap();
    assert!(refusal.contains("cpu: needs 1 CPUs"), "{refusal}");
    let mut huge = run_spec("qq-huge", "qq-a", 1.0);
    huge["workload"]["limits"]["cpu"] = json!(4.0);
    let v = f.cluster("run.submit", huge).await;
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cpu: needs 4 CPUs, the node has 1 allocatable in all"),
        "{v}"
    );

    let first = wait_state(&f, &first, RunState::Completed, Duration::from_secs(20)).await;
    let (stdout, _) = follow.await.unwrap();
    assert!(
        stdout.contains("queued: targets.nodes: no room now on qq-a: cpu"),
        "{stdout}"
    );
    let second = wait_state(
        &f,
        "qq-second",
        RunState::Completed,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(second.queued_reason, None);
    assert_eq!(second.tasks.len(), 1);
    assert_eq!(second.tasks[0].status, TaskStatus::Completed);
    let first_ended = first.tasks[0].finished_at_ms.unwrap();
    let second_started = second.tasks[0].started_at_ms.unwrap();
    assert!(
        second_started >= first_ended,
        "the second started at {second_started}, before the first ended at {first_ended}"
    );
    announce(&format!(
        "queue: the second run started {} ms after the first ended",
        second_started - first_ended
    ));
}

#[tokio::test]
async fn a_queued_run_survives_a_coordinator_restart_and_one_can_be_stopped_while_queued() {
    let mut f = Fleet::start_configured("qr", &["a"], HB, 30.0, ONE_CPU).await;
    let first = submit(&f, run_spec("qr-first", "qr-a", 6.0)).await;
    let waiting = submit(&f, run_spec("qr-waiting", "qr-a", 0.5)).await;
    let dropped = submit(&f, run_spec("qr-dropped", "qr-a", 0.5)).await;
    for run in [&waiting, &dropped] {
        wait_state(&f, run, RunState::Queued, Duration::from_secs(10)).await;
    }
    let reason = get(&f, &dropped).await.queued_reason.unwrap_or_default();
    assert!(reason.contains("cpu: needs 1 CPUs"), "{reason}");

    f.coordinator.signal(Signal::SIGKILL);
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.coordinator = Fleet::start_coordinator(&f.nats, "qr-coord", HB, 30.0);
    let after = eventually(
        Duration::from_secs(15),
        "the new coordinator answering",
        || async { try_get(&f, &waiting).await },
    )
    .await;
    assert_eq!(after.state, RunState::Queued, "{after:?}");
    assert!(after.queued_reason.is_some());
    assert_eq!(get(&f, &first).await.state, RunState::Running);

    // Stopped while queued: at once, and nothing of it ever ran anywhere.
    let v = f.cluster("run.stop", json!({"run_id": dropped})).await;
    assert_eq!(v["ok"], true, "{v}");
    let stopped: RunRecord = serde_json::from_value(v["data"].clone()).unwrap();
    assert_eq!(stopped.state, RunState::Stopped, "{stopped:?}");
    assert!(stopped.tasks.is_empty());

    let first = wait_state(&f, &first, RunState::Completed, Duration::from_secs(20)).await;
    let waiting = wait_state(&f, &waiting, RunState::Completed, Duration::from_secs(20)).await;
    assert!(waiting.tasks[0].started_at_ms >= first.tasks[0].finished_at_ms);
    // Give a wrongly started run time to show, then look on every node.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(get(&f, &dropped).await.state, RunState::Stopped);
    assert_eq!(workloads_of(&f, &dropped).await, 0);
    assert_eq!(workloads_of(&f, "qr-waiting").await, 1);
    announce(
        "queue: a queued run survived a coordinator restart; one stopped while queued never ran",
    );
}
