//! Runs across separate herdd processes on a real nats-server: repetitions, failures, stops
//! confirmed by every node (or not), a coordinator restart mid-run and mid-stop, and bad
//! RunSpecs.

use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{ClusterEvent, RunRecord, RunState, TaskStatus, WorkloadState};
use herd_tests::{
    announce, assert_stopped_in_first_rep, eventually, wait_ready_lines, wait_workloads_events,
    Fleet,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HB: f64 = 0.5;

async fn submit(f: &Fleet, spec: Value) -> String {
    let v = f.cluster("run.submit", spec.clone()).await;
    assert_eq!(v["ok"], true, "{spec} → {v}");
    v["data"]["run_id"].as_str().unwrap().to_string()
}

async fn get(f: &Fleet, run: &str) -> RunRecord {
    f.run_record(run).await
}

async fn wait_state(f: &Fleet, run: &str, states: &[RunState], within: Duration) -> RunRecord {
    f.wait_run(run, states, within).await
}

fn statuses(r: &RunRecord) -> Vec<(String, u32, TaskStatus)> {
    r.tasks
        .iter()
        .map(|t| (t.node_id.to_string(), t.rep, t.status))
        .collect()
}

#[tokio::test]
async fn three_reps_on_three_nodes_complete_and_a_failing_rep_fails_the_run() {
    let f = Fleet::start("rc", &["a", "b", "c"], HB, 30.0).await;
    // Every task sees its run, rep, node and output directory.
    let check_env = r#"test -n "$HERD_RUN_ID" && test -n "$HERD_REP" && test -n "$HERD_NODE" && test -d "$HERD_OUTPUT_DIR" && touch "$HERD_OUTPUT_DIR/done" && sleep 0.3"#;
    let run = submit(&f, json!({
        "workload": {"name": "env", "command": ["sh", "-c", check_env], "limits": {"cpu": 0.5, "memory": 67108864u64}},
        "targets": {"nodes": ["rc-a", "rc-b", "rc-c"]},
        "repetitions": 3
    }))
    .await;
    let r = wait_state(
        &f,
        &run,
        &[RunState::Completed, RunState::Failed],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.state, RunState::Completed, "{:#?}", statuses(&r));
    assert_eq!(r.tasks.len(), 9);
    for t in &r.tasks {
        assert_eq!(t.status, TaskStatus::Completed, "{t:?}");
        assert_eq!(t.exit_code, Some(0));
        // Event timestamps bound the 0.3 s sleep; a loaded 2-core machine may stamp the
        // running event a few ms after the process started.
        assert!(t.duration_s.unwrap() >= 0.2, "{t:?}");
        assert!(t.started_at_ms.unwrap() <= t.finished_at_ms.unwrap());
        assert_eq!(t.task_id, format!("{}::env::{}", t.node_id, t.rep));
    }
    // Repetitions ran in order on each node.
    for node in ["rc-a", "rc-b", "rc-c"] {
        let mut reps: Vec<_> = r
            .tasks
            .iter()
            .filter(|t| t.node_id.as_str() == node)
            .collect();
        reps.sort_by_key(|t| t.rep);
        for w in reps.windows(2) {
            assert!(
                w[0].finished_at_ms.unwrap() <= w[1].started_at_ms.unwrap(),
                "{node}: {w:?}"
            );
        }
    }
    let catalog = f.cluster("run.list", json!({})).await;
    assert_eq!(catalog["data"]["runs"][0]["tasks"]["COMPLETED"], 9);

    let run = submit(
        &f,
        json!({
            "workload": {"name": "flaky", "command": ["sh", "-c", "test \"$HERD_REP\" != 2"]},
            "targets": {"count": 3},
            "repetitions": 3
        }),
    )
    .await;
    let r = wait_state(
        &f,
        &run,
        &[RunState::Completed, RunState::Failed],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.state, RunState::Failed);
    for t in &r.tasks {
        let want = if t.rep == 2 {
            TaskStatus::Failed
        } else {
            TaskStatus::Completed
        };
        assert_eq!(t.status, want, "{t:?}");
        assert_eq!(t.exit_code, Some(if t.rep == 2 { 1 } else { 0 }));
    }
    let newest = f.cluster("run.list", json!({"limit": 1})).await;
    assert_eq!(
        newest["data"]["runs"][0]["run_id"],
        run.as_str(),
        "newest first"
    );
}

#[tokio::test]
async fn a_run_stopped_midway_is_confirmed_by_every_node_and_leaves_nothing() {
    let f = Fleet::start("rs", &["a", "b", "c"], HB, 30.0).await;
    let mut events = f
        .client
        .subscribe("herd.v1.cluster.evt.run.*")
        .await
        .unwrap();
    let run = submit(
        &f,
        json!({
            "workload": {"command": ["sleep", "60"]},
            "targets": {"nodes": ["rs-a", "rs-b", "rs-c"]},
            "repetitions": 3,
            "stop_timeout_s": 10.0
        }),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "rep 1 running everywhere",
        || async {
            let r = get(&f, &run).await;
            (r.tasks
                .iter()
                .filter(|t| t.status == TaskStatus::Running && t.started_at_ms.is_some())
                .count()
                == 3)
                .then_some(())
        },
    )
    .await;
    let asked = Instant::now();
    let v = f.cluster("run.stop", json!({"run_id": run})).await;
    assert_eq!(v["data"]["state"], "stopping", "{v}");
    let r = wait_state(
        &f,
        &run,
        &[RunState::Stopped, RunState::StopFailed],
        Duration::from_secs(15),
    )
    .await;
    announce(&format!(
        "run stop confirmed by 3 nodes in {:.2?}",
        asked.elapsed()
    ));
    assert_stopped_in_first_rep(&r);
    f.nothing_left(&run).await;
    let mut kinds = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), events.next()).await {
        let ev: ClusterEvent =
            codec::decode(&m.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap();
        kinds.push(ev.kind);
    }
    assert!(
        kinds.contains(&"run.stopping".to_string()) && kinds.contains(&"run.stopped".to_string()),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_frozen_node_makes_the_stop_fail_naming_exactly_that_node() {
    let f = Fleet::start("rf", &["a", "b", "c"], HB, 30.0).await;
    let run = submit(
        &f,
        json!({
            "workload": {"command": ["sleep", "60"]},
            "targets": {"nodes": ["rf-a", "rf-b", "rf-c"]},
            "repetitions": 2,
            "stop_timeout_s": 2.0
        }),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "rep 1 running everywhere",
        || async {
            let r = get(&f, &run).await;
            (r.tasks.iter().filter(|t| t.started_at_ms.is_some()).count() == 3).then_some(())
        },
    )
    .await;
    f.agents[1].signal(Signal::SIGSTOP);
    let asked = Instant::now();
    f.cluster("run.stop", json!({"run_id": run})).await;
    let r = wait_state(
        &f,
        &run,
        &[RunState::Stopped, RunState::StopFailed],
        Duration::from_secs(10),
    )
    .await;
    let took = asked.elapsed();
    announce(&format!(
        "stop with rf-b frozen: {:?} after {took:.2?} (stop_timeout_s 2)",
        r.state
    ));
    assert_eq!(r.state, RunState::StopFailed);
    let names: Vec<String> = r.unconfirmed_nodes.iter().map(|n| n.to_string()).collect();
    assert_eq!(names, ["rf-b"]);
    assert!(
        took >= Duration::from_millis(1900) && took <= Duration::from_secs(4),
        "{took:?}"
    );
    // Once thawed, the node reads the stop it was sent and leaves nothing behind.
    f.agents[1].signal(Signal::SIGCONT);
    eventually(Duration::from_secs(10), "rf-b stopped its task", || async {
        let v = f
            .call(
                "herd.v1.node.rf-b.workload.list",
                json!({"run_id": run, "state": "running"}),
            )
            .await;
        (v["data"]["workloads"].as_array().map(|w| w.len()) == Some(0)).then_some(())
    })
    .await;
    f.nothing_left(&run).await;
}

#[tokio::test]
async fn a_coordinator_restarted_mid_run_finishes_it_with_every_task_run_once() {
    let mut f = Fleet::start("rr", &["a", "b"], HB, 30.0).await;
    let run = submit(
        &f,
        json!({
            "workload": {"command": ["sleep", "1"]},
            "targets": {"nodes": ["rr-a", "rr-b"]},
            "repetitions": 3
        }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    f.coordinator.signal(Signal::SIGKILL);
    // Down long enough for a repetition to finish unseen.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    f.coordinator = Fleet::start_coordinator(&f.nats, "rr-coord", HB, 30.0);
    let r = eventually(Duration::from_secs(30), "the run to complete", || async {
        let v = f
            .try_call("herd.v1.cluster.run.get", json!({"run_id": run}))
            .await?;
        let r: RunRecord = serde_json::from_value(v["data"].clone()).ok()?;
        matches!(r.state, RunState::Completed | RunState::Failed).then_some(r)
    })
    .await;
    assert_eq!(r.state, RunState::Completed, "{:#?}", statuses(&r));
    assert!(r.tasks.iter().all(|t| t.status == TaskStatus::Completed));
    // Every task started exactly once: count `running` events per workload in HERD_EVENTS.
    let starts = f.running_events(&run).await;
    assert_eq!(starts.len(), 6, "{starts:?}");
    assert!(starts.values().all(|n| *n == 1), "{starts:?}");
    for t in &r.tasks {
        assert!(
            starts.contains_key(t.workload_id.as_ref().unwrap().as_str()),
            "{t:?}"
        );
    }
    announce("coordinator restarted mid-run: 6 tasks, each started exactly once, run completed");
}

#[tokio::test]
async fn a_coordinator_restarted_while_a_run_stops_ends_it_stopped() {
    let mut f = Fleet::start("rm", &["a", "b"], HB, 30.0).await;
    let mut ready = f.client.subscribe("herd.v1.logs.*.*.stdout").await.unwrap();
    let mut events = f
        .client
        .subscribe("herd.v1.evt.*.workload.*")
        .await
        .unwrap();
    f.client.flush().await.unwrap();
    // A task that ignores SIGTERM: each node stops it with SIGKILL once its 2 s grace is over.
    let run = submit(
        &f,
        json!({
            "workload": {"command": ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"], "grace_s": 2.0},
            "targets": {"nodes": ["rm-a", "rm-b"]},
            "repetitions": 2,
            "stop_timeout_s": 6.0
        }),
    )
    .await;
    let workloads: Vec<String> = get(&f, &run)
        .await
        .tasks
        .iter()
        .filter(|t| t.rep == 1)
        .map(|t| t.workload_id.as_ref().unwrap().to_string())
        .collect();
    wait_ready_lines(&mut ready, &workloads, Duration::from_secs(15)).await;
    let v = f.cluster("run.stop", json!({"run_id": run})).await;
    assert_eq!(v["data"]["state"], "stopping", "{v}");
    f.coordinator.signal(Signal::SIGSTOP);
    let frozen = Instant::now();
    // Both nodes stop their task while the coordinator cannot hear it.
    let ids: Vec<&str> = workloads.iter().map(String::as_str).collect();
    let killed = wait_workloads_events(
        &mut events,
        &ids,
        &[WorkloadState::Killed],
        Duration::from_secs(4),
    )
    .await;
    assert_eq!(killed.len(), 2);
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(frozen.elapsed())).await;
    f.coordinator.signal(Signal::SIGKILL);
    assert!(f.coordinator.wait_exit(Duration::from_secs(5)).is_some());
    let restarted = Instant::now();
    f.coordinator = Fleet::start_coordinator(&f.nats, "rm-coord", HB, 30.0);
    let r = eventually(Duration::from_secs(20), "the stop to settle", || async {
        let v = f
            .try_call("herd.v1.cluster.run.get", json!({"run_id": run}))
            .await?;
        let r: RunRecord = serde_json::from_value(v["data"].clone()).ok()?;
        matches!(r.state, RunState::Stopped | RunState::StopFailed).then_some(r)
    })
    .await;
    announce(&format!(
        "coordinator restarted mid-stop: run {:?} {:.2?} after the restart (stop_timeout_s 6)",
        r.state,
        restarted.elapsed()
    ));
    assert_stopped_in_first_rep(&r);
    f.nothing_left(&run).await;
}

#[tokio::test]
async fn bad_run_specs_are_refused_naming_the_problem_and_nothing_starts() {
    let f = Fleet::start("rb", &["a", "b"], HB, 30.0).await;
    let w = json!({"command": ["true"]});
    for (spec, says) in [
        (
            json!({"workload": w, "targets": {"nodes": ["rb-a"]}, "repetitions": 0}),
            "repetitions",
        ),
        (
            json!({"workload": w, "targets": {}, "repetitions": 1}),
            "targets",
        ),
        (
            json!({"workload": w, "targets": {"nodes": ["rb-a", "nobody"]}, "repetitions": 1}),
            "unknown node 'nobody'",
        ),
        (
            json!({"workload": w, "targets": {"count": 5}, "repetitions": 1}),
            "targets.count: 5 nodes asked, 2 fit",
        ),
        (
            json!({"workload": w, "targets": {"count": 1, "labels": {"gpu": "h200"}}, "repetitions": 1}),
            "label gpu=h200",
        ),
        (
            json!({"workload": w, "targets": {"nodes": ["rb-a"], "count": 1}, "repetitions": 1}),
            "not both",
        ),
        (
            json!({"workload": {"command": []}, "targets": {"nodes": ["rb-a"]}, "repetitions": 1}),
            "workload.command",
        ),
        (
            json!({"workload": w, "targets": {"nodes": ["rb-a", "rb-a"]}, "repetitions": 1}),
            "listed twice",
        ),
        (
            json!({"workload": w, "targets": {"nodes": ["rb-a"]}, "repetitions": 1, "stop_timeout_s": -1}),
            "stop_timeout_s",
        ),
        (
            json!({"targets": {"nodes": ["rb-a"]}, "repetitions": 1}),
            "give a workload, or a suite in workloads",
        ),
    ] {
        let v = f.cluster("run.submit", spec.clone()).await;
        assert_eq!(v["error"]["code"], "bad_request", "{spec} → {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{spec}: {message:?} should say {says:?}"
        );
    }
    let runs = f.cluster("run.list", json!({})).await;
    assert_eq!(runs["data"]["runs"].as_array().unwrap().len(), 0);
    for node in ["rb-a", "rb-b"] {
        let v = f
            .call(&format!("herd.v1.node.{node}.workload.list"), json!({}))
            .await;
        assert_eq!(
            v["data"]["workloads"].as_array().unwrap().len(),
            0,
            "{node}: nothing started"
        );
    }
    let missing = f.cluster("run.get", json!({"run_id": "nope"})).await;
    assert_eq!(missing["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_start_left_unanswered_by_a_node_that_is_then_lost_makes_its_task_lost_not_failed() {
    // rn-a is frozen before the run is submitted: its start goes unanswered (5 s), after the
    // stop has already failed naming it (1 s), and before it is lost (7 s). The start may have
    // been acted on for all the coordinator knows: the task is LOST with its node, not FAILED on
    // a guess.
    let f = Fleet::start("rn", &["a", "b"], HB, 7.0).await;
    f.agents[0].signal(Signal::SIGSTOP);
    let frozen = Instant::now();
    announce("failure: SIGSTOP of rn-a's herdd, then a run on rn-a and rn-b, stopped at once");
    let run = submit(
        &f,
        json!({
            "workload": {"command": ["sleep", "60"]},
            "targets": {"nodes": ["rn-a", "rn-b"]},
            "repetitions": 1,
            "stop_timeout_s": 1.0
        }),
    )
    .await;
    f.cluster("run.stop", json!({"run_id": run})).await;
    let r = wait_state(
        &f,
        &run,
        &[RunState::Stopped, RunState::StopFailed],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(r.state, RunState::StopFailed, "{r:#?}");
    let a_task = |r: &RunRecord| {
        r.tasks
            .iter()
            .find(|t| t.node_id.as_str() == "rn-a")
            .map(|t| (t.status, t.error.clone()))
            .unwrap()
    };
    let r = eventually(Duration::from_secs(20), "rn-a's task settled", || async {
        let r = get(&f, &run).await;
        (a_task(&r).0 != TaskStatus::Running).then_some(r)
    })
    .await;
    announce(&format!(
        "rn-a's task {:?} {:.2?} after the freeze",
        a_task(&r),
        frozen.elapsed()
    ));
    assert_eq!(a_task(&r).0, TaskStatus::Lost, "{r:#?}");
    assert!(
        frozen.elapsed() >= Duration::from_secs(6),
        "settled by the start's timeout, not the node's loss"
    );
    let log = f.coordinator.log();
    assert!(log.contains("a start got no answer"), "{log}");
    // Thawed, rn-a reads what it was sent in order: the start, then the stop, which ends the
    // workload as soon as it runs.
    f.agents[0].signal(Signal::SIGCONT);
    eventually(
        Duration::from_secs(15),
        "nothing of the run left",
        || async {
            for state in ["running", "starting", "pending"] {
                let v = f
                    .call(
                        "herd.v1.node.rn-a.workload.list",
                        json!({"run_id": run, "state": state}),
                    )
                    .await;
                if v["data"]["workloads"].as_array().map(|w| w.len()) != Some(0) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    f.nothing_left(&run).await;
}
