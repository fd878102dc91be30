//! The journal, fed by hand: events, statuses, stops, losses and restarts.

use super::*;
use crate::cores::run::task_workload_id;
use herd_bus::{ResourceSummary, RunTargets, TaskStatus::*};

fn n(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn spec(reps: u32) -> RunSpec {
    RunSpec {
        run_id: None,
        workload: WorkloadSpec {
            command: vec!["true".into()],
            name: Some("bench".into()),
            ..Default::default()
        },
        targets: RunTargets::default(),
        repetitions: reps,
        stop_timeout_s: Some(10.0),
        queue: None,
        priority: None,
        ..Default::default()
    }
}

fn started(fx: &[RunEffect]) -> Vec<(String, u32)> {
    fx.iter()
        .filter_map(|e| match e {
            RunEffect::Start { node, spec } => Some((node.to_string(), spec.rep.unwrap())),
            _ => None,
        })
        .collect()
}

fn wid(j: &RunJournal, node: &str, rep: u32) -> WorkloadId {
    task_workload_id(j.run_id(), &format!("{node}::bench::{rep}"), 1)
}

fn event(workload: WorkloadId, state: WorkloadState, code: Option<i32>, t: u64) -> WorkloadEvent {
    WorkloadEvent {
        event_id: format!("e{t}"),
        node_id: n("x"),
        workload_id: workload,
        state,
        ts_ms: t,
        run_id: None,
        rep: None,
        pid: None,
        exit_code: code,
        signal: None,
        reason: None,
        restarts: 0,
        resources: None,
    }
}

fn ev(
    j: &mut RunJournal,
    node: &str,
    rep: u32,
    state: WorkloadState,
    code: Option<i32>,
    t: u64,
) -> Vec<RunEffect> {
    let w = wid(j, node, rep);
    j.on_workload_event(&n(node), &event(w, state, code, t), t)
}

fn status(j: &RunJournal) -> Vec<TaskStatus> {
    j.record.tasks.iter().map(|t| t.status).collect()
}

#[test]
fn repetitions_run_in_order_per_node_and_in_parallel_across_nodes() {
    let (mut j, fx) = RunJournal::new(RunId::new("r1").unwrap(), spec(2), &[n("a"), n("b")], 0);
    assert_eq!(j.state(), RunState::Running);
    assert_eq!(started(&fx), [("a".into(), 1), ("b".into(), 1)]);
    assert_eq!(j.record.tasks[0].task_id, "a::bench::1");
    ev(&mut j, "a", 1, WorkloadState::Running, None, 10);
    let fx = ev(&mut j, "a", 1, WorkloadState::Exited, Some(0), 30);
    assert_eq!(started(&fx), [("a".into(), 2)], "a moves on; b still busy");
    assert_eq!(j.record.tasks[0].duration_s, Some(0.02));
    ev(&mut j, "b", 1, WorkloadState::Exited, Some(0), 40);
    ev(&mut j, "a", 2, WorkloadState::Exited, Some(0), 50);
    let fx = ev(&mut j, "b", 2, WorkloadState::Exited, Some(0), 60);
    assert!(fx.contains(&RunEffect::Announce(RunState::Completed)));
    assert_eq!(status(&j), [Completed; 4]);
}

#[test]
fn a_failing_rep_is_recorded_the_rest_runs_and_the_run_fails() {
    let (mut j, _) = RunJournal::new(RunId::new("r2").unwrap(), spec(3), &[n("a")], 0);
    ev(&mut j, "a", 1, WorkloadState::Exited, Some(0), 1);
    let fx = ev(&mut j, "a", 2, WorkloadState::Exited, Some(1), 2);
    assert_eq!(started(&fx), [("a".into(), 3)]);
    let fx = ev(&mut j, "a", 3, WorkloadState::Exited, Some(0), 3);
    assert!(fx.contains(&RunEffect::Announce(RunState::Failed)));
    assert_eq!(status(&j), [Completed, Failed, Completed]);
    assert_eq!(j.record.tasks[1].exit_code, Some(1));
}

#[test]
fn duplicate_late_and_foreign_events_change_nothing() {
    let (mut j, _) = RunJournal::new(RunId::new("r3").unwrap(), spec(1), &[n("a"), n("b")], 0);
    ev(&mut j, "a", 1, WorkloadState::Exited, Some(0), 1);
    assert!(
        ev(&mut j, "a", 1, WorkloadState::Exited, Some(0), 2).is_empty(),
        "duplicate"
    );
    assert!(
        ev(&mut j, "a", 1, WorkloadState::Killed, None, 3).is_empty(),
        "late"
    );
    let other = task_workload_id(&RunId::new("other").unwrap(), "a::bench::1", 1);
    assert!(j
        .on_workload_event(&n("a"), &event(other, WorkloadState::Exited, Some(0), 4), 4)
        .is_empty());
    let w = wid(&j, "b", 1);
    assert!(
        j.on_workload_event(&n("zz"), &event(w, WorkloadState::Exited, Some(0), 4), 4)
            .is_empty(),
        "wrong node"
    );
    assert_eq!(status(&j), [Completed, Running]);
}

#[test]
fn stop_skips_pending_and_waits_for_every_running_node() {
    let (mut j, _) = RunJournal::new(RunId::new("r4").unwrap(), spec(3), &[n("a"), n("b")], 0);
    let fx = j.on_stop(100);
    assert!(fx.contains(&RunEffect::Announce(RunState::Stopping)));
    let stops: Vec<_> = fx
        .iter()
        .filter(|e| matches!(e, RunEffect::StopOnNode { .. }))
        .collect();
    assert_eq!(stops.len(), 2);
    assert_eq!(
        status(&j),
        [Running, Skipped, Skipped, Running, Skipped, Skipped]
    );
    let fx = ev(&mut j, "a", 1, WorkloadState::Stopped, None, 110);
    assert!(
        !fx.contains(&RunEffect::Announce(RunState::Stopped)),
        "b has not confirmed"
    );
    assert!(started(&fx).is_empty(), "nothing starts while stopping");
    let fx = ev(&mut j, "b", 1, WorkloadState::Killed, None, 120);
    assert!(fx.contains(&RunEffect::Announce(RunState::Stopped)));
    assert_eq!(
        status(&j),
        [Stopped, Skipped, Skipped, Stopped, Skipped, Skipped]
    );
    assert!(j.on_stop(130).is_empty(), "stopping twice does nothing");
    assert!(
        j.tick(1_000_000).is_empty(),
        "no timeout after a clean stop"
    );
}

#[test]
fn a_node_that_never_confirms_makes_stop_failed_naming_it() {
    let (mut j, _) = RunJournal::new(RunId::new("r5").unwrap(), spec(1), &[n("a"), n("b")], 0);
    j.on_stop(1000);
    ev(&mut j, "a", 1, WorkloadState::Exited, Some(0), 1500);
    assert!(j.tick(10_999).is_empty(), "before stop_timeout_s");
    let fx = j.tick(11_000);
    assert!(fx.contains(&RunEffect::Announce(RunState::StopFailed)));
    assert_eq!(j.record.unconfirmed_nodes, vec![n("b")]);
    let fx = ev(&mut j, "b", 1, WorkloadState::Stopped, None, 12_000);
    assert!(
        !fx.iter().any(|e| matches!(e, RunEffect::Announce(_))),
        "{fx:?}"
    );
    assert_eq!(
        j.state(),
        RunState::StopFailed,
        "a late confirmation does not change the verdict"
    );
    assert_eq!(
        j.record.tasks[1].status, Stopped,
        "but the task's outcome is recorded"
    );
}

#[test]
fn settled_runs_cannot_be_stopped_and_refused_starts_fail_the_task() {
    let (mut j, _) = RunJournal::new(RunId::new("r6").unwrap(), spec(1), &[n("a")], 0);
    ev(&mut j, "a", 1, WorkloadState::Exited, Some(0), 1);
    assert!(j.on_stop(2).is_empty(), "completed runs cannot be stopped");
    // A start the node refused fails the task; the next repetition still runs.
    let (mut j, _) = RunJournal::new(RunId::new("r7").unwrap(), spec(2), &[n("a")], 0);
    let w = wid(&j, "a", 1);
    let fx = j.on_start_failed(&n("a"), &w, "unavailable: lameduck".into(), 1);
    assert_eq!(started(&fx), [("a".into(), 2)]);
    assert_eq!(
        j.record.tasks[0].error.as_deref(),
        Some("unavailable: lameduck")
    );
}

#[test]
fn a_lost_node_loses_its_task_and_the_run_goes_on() {
    let (mut j, _) = RunJournal::new(RunId::new("r8").unwrap(), spec(2), &[n("a"), n("b")], 0);
    let fx = j.on_node_lost(&n("a"), 5);
    assert!(fx.contains(&RunEffect::Persist));
    assert_eq!(status(&j), [Lost, Skipped, Running, Pending]);
    ev(&mut j, "b", 1, WorkloadState::Exited, Some(0), 6);
    let fx = ev(&mut j, "b", 2, WorkloadState::Exited, Some(0), 7);
    assert!(
        fx.contains(&RunEffect::Announce(RunState::Failed)),
        "lost tasks fail the run"
    );
    // A node lost while stopping never confirmed: the stop fails, naming it.
    let (mut j, _) = RunJournal::new(RunId::new("r9").unwrap(), spec(1), &[n("a"), n("b")], 0);
    j.on_stop(10);
    ev(&mut j, "a", 1, WorkloadState::Stopped, None, 11);
    let fx = j.on_node_lost(&n("b"), 12);
    assert!(
        !fx.contains(&RunEffect::Announce(RunState::Stopped)),
        "{fx:?}"
    );
    assert!(j
        .tick(10_010)
        .contains(&RunEffect::Announce(RunState::StopFailed)));
    assert_eq!(j.record.unconfirmed_nodes, vec![n("b")]);
}

#[test]
fn resume_restarts_idempotently_and_continues() {
    let (mut j, _) = RunJournal::new(RunId::new("r10").unwrap(), spec(2), &[n("a")], 0);
    ev(&mut j, "a", 1, WorkloadState::Running, None, 1);
    let saved = j.record.clone();
    let (mut again, fx) = RunJournal::resume(saved, 100);
    // The running task is reconciled with its node under the same workload id; nothing new
    // starts (nothing runs twice).
    assert!(started(&fx).is_empty());
    match &fx[0] {
        RunEffect::Reconcile { spec, node } => {
            assert_eq!(spec.workload_id, Some(wid(&again, "a", 1)));
            assert_eq!(node, &n("a"));
        }
        other => panic!("{other:?}"),
    }
    let fx = ev(&mut again, "a", 1, WorkloadState::Exited, Some(0), 101);
    assert_eq!(started(&fx), [("a".into(), 2)]);
}

fn reported(
    j: &RunJournal,
    node: &str,
    rep: u32,
    state: WorkloadState,
    times: (Option<u64>, Option<u64>),
) -> WorkloadStatus {
    WorkloadStatus {
        workload_id: wid(j, node, rep),
        node_id: n(node),
        state,
        spec: j.task_spec(&j.record.tasks[0]),
        pid: None,
        created_at_ms: 0,
        started_at_ms: times.0,
        finished_at_ms: times.1,
        exit_code: (state == WorkloadState::Exited).then_some(0),
        signal: None,
        reason: None,
        restarts: 0,
        resources: None,
        work_dir: None,
        assigned: Default::default(),
    }
}

#[test]
fn a_reported_status_counts_as_the_events_it_stands_for() {
    let (mut j, _) = RunJournal::new(RunId::new("r11").unwrap(), spec(2), &[n("a")], 0);
    // Still running: its start is recorded, nothing else.
    let running = reported(&j, "a", 1, WorkloadState::Running, (Some(10), None));
    assert_eq!(
        j.on_task_status(&n("a"), &running, 50),
        [RunEffect::Persist]
    );
    assert!(
        j.on_task_status(&n("a"), &running, 60).is_empty(),
        "nothing new"
    );
    // Settled: the task completes with the node's timings and the next rep starts.
    let exited = reported(&j, "a", 1, WorkloadState::Exited, (Some(10), Some(40)));
    let fx = j.on_task_status(&n("a"), &exited, 70);
    assert_eq!(started(&fx), [("a".into(), 2)]);
    let t = &j.record.tasks[0];
    assert_eq!(
        (t.status, t.finished_at_ms, t.duration_s),
        (Completed, Some(40), Some(0.03))
    );
    assert!(
        j.on_task_status(&n("a"), &exited, 80).is_empty(),
        "a repeat"
    );
    assert!(
        ev(&mut j, "a", 1, WorkloadState::Exited, Some(0), 90).is_empty(),
        "its event, late, changes nothing"
    );
    // A status the node never had a start event for still carries its start time.
    let mut gone = reported(&j, "a", 2, WorkloadState::Exited, (Some(100), Some(300)));
    gone.exit_code = Some(3);
    gone.node_id = n("zz");
    assert!(
        j.on_task_status(&n("zz"), &gone, 400).is_empty(),
        "wrong node"
    );
    let fx = j.on_task_status(&n("a"), &gone, 400);
    assert!(fx.contains(&RunEffect::Announce(RunState::Failed)));
    let t = &j.record.tasks[1];
    assert_eq!(
        (t.status, t.exit_code, t.duration_s),
        (Failed, Some(3), Some(0.2))
    );
}

#[test]
fn a_stop_resumed_after_a_restart_is_confirmed_by_what_the_nodes_list() {
    let (mut j, _) = RunJournal::new(
        RunId::new("r12").unwrap(),
        spec(2),
        &[n("a"), n("b"), n("c")],
        0,
    );
    for node in ["a", "b", "c"] {
        ev(&mut j, node, 1, WorkloadState::Running, None, 1);
    }
    j.on_stop(10);
    // The coordinator goes away; the nodes stop their tasks unheard.
    let (mut j, fx) = RunJournal::resume(j.record.clone(), 5_000);
    for node in ["a", "b", "c"] {
        assert!(fx.contains(&RunEffect::StopOnNode { node: n(node) }));
        assert!(fx.contains(&RunEffect::ListOnNode { node: n(node) }));
    }
    let killed = reported(&j, "a", 1, WorkloadState::Killed, (Some(1), Some(2_010)));
    let fx = j.on_node_workloads(&n("a"), &[killed], 5_010);
    assert!(fx.contains(&RunEffect::Persist));
    assert!(
        !fx.iter().any(|e| matches!(e, RunEffect::Announce(_))),
        "{fx:?}"
    );
    // b still runs its task: no confirmation until its event comes.
    let running = reported(&j, "b", 1, WorkloadState::Running, (Some(1), None));
    assert!(j.on_node_workloads(&n("b"), &[running], 5_020).is_empty());
    // c no longer has it at all: nothing of it runs there.
    assert_eq!(
        j.on_node_workloads(&n("c"), &[], 5_030),
        [RunEffect::Persist]
    );
    let fx = ev(&mut j, "b", 1, WorkloadState::Stopped, None, 5_040);
    assert!(
        fx.contains(&RunEffect::Announce(RunState::Stopped)),
        "{fx:?}"
    );
    assert_eq!(
        status(&j),
        [Stopped, Skipped, Stopped, Skipped, Stopped, Skipped]
    );
    assert_eq!(j.record.tasks[0].finished_at_ms, Some(2_010));
    assert!(j.record.unconfirmed_nodes.is_empty());
    // A listing outside of a stop settles nothing by absence.
    let (mut j, _) = RunJournal::new(RunId::new("r13").unwrap(), spec(1), &[n("a")], 0);
    assert!(j.on_node_workloads(&n("a"), &[], 1).is_empty());
    assert_eq!(status(&j), [Running]);
}

#[test]
fn the_catalog_is_newest_first_filtered_and_limited() {
    let run =
        |id: &str, at: u64| RunJournal::new(RunId::new(id).unwrap(), spec(1), &[n("a")], at).0;
    let (old, mid, new) = (run("old", 1), run("mid", 2), run("new", 3));
    let mut done = run("done", 4);
    ev(&mut done, "a", 1, WorkloadState::Exited, Some(0), 5);
    let all = [&old, &mid, &new, &done];
    let ids = |l: RunList| -> Vec<String> { l.runs.iter().map(|r| r.run_id.to_string()).collect() };
    assert_eq!(
        ids(catalog(all, &RunListQuery::default())),
        ["done", "new", "mid", "old"]
    );
    let running = RunListQuery {
        state: Some(RunState::Running),
        limit: Some(2),
    };
    assert_eq!(ids(catalog(all, &running)), ["new", "mid"]);
    let line = &catalog([&done], &RunListQuery::default()).runs[0];
    assert_eq!(
        (line.state, line.tasks["COMPLETED"]),
        (RunState::Completed, 1)
    );
}

#[test]
fn a_task_keeps_what_its_workload_used_from_the_settled_event_or_status() {
    let (mut j, _) = RunJournal::new(RunId::new("r9").unwrap(), spec(2), &[n("a")], 0);
    let used = ResourceSummary {
        cpu_user_s: 1.5,
        cpu_system_s: 0.5,
        memory_peak_bytes: Some(64 << 20),
        ..Default::default()
    };
    ev(&mut j, "a", 1, WorkloadState::Running, None, 1);
    let settled = WorkloadEvent {
        resources: Some(used.clone()),
        ..event(wid(&j, "a", 1), WorkloadState::Exited, Some(0), 2)
    };
    let fx = j.on_workload_event(&n("a"), &settled, 2);
    assert!(fx.contains(&RunEffect::Persist));
    assert_eq!(j.record.tasks[0].resources.as_ref(), Some(&used));
    assert_eq!(j.record.tasks[0].status, Completed);
    // The same event again changes nothing.
    assert!(j.on_workload_event(&n("a"), &settled, 3).is_empty());
    assert_eq!(j.record.tasks[1].resources, None, "rep 2 has not run");

    // After a coordinator restart, the node's settled status carries them.
    let status = WorkloadStatus {
        resources: Some(used.clone()),
        ..reported(&j, "a", 2, WorkloadState::Exited, (Some(3), Some(4)))
    };
    j.on_task_status(&n("a"), &status, 5);
    assert_eq!(j.record.tasks[1].resources, Some(used));
    assert_eq!(j.state(), RunState::Completed);
}

#[test]
fn uploaded_results_are_recorded_in_their_task_whatever_its_status() {
    let (mut j, _) = RunJournal::new(RunId::new("r1").unwrap(), spec(2), &[n("a"), n("b")], 0);
    let results = TaskResults {
        objects: vec![herd_bus::ResultObject {
            path: "out/data.bin".into(),
            object: "r1/a/bench-1/out/data.bin".into(),
            size: 3,
            sha256: "ab".repeat(32),
        }],
        bytes: 3,
        metrics: [("ops".to_string(), 12.5)].into(),
        ..TaskResults::default()
    };
    // Before the task's exit is seen (the events come in any order): recorded, nothing else.
    ev(&mut j, "a", 1, WorkloadState::Running, None, 10);
    let fx = j.on_results(&n("a"), &wid(&j, "a", 1), results.clone(), 20);
    assert_eq!(fx, [RunEffect::Persist]);
    assert_eq!(j.record.tasks[0].results.as_ref(), Some(&results));
    assert_eq!(j.record.tasks[0].status, Running);
    assert_eq!(j.record.updated_at_ms, 20);
    assert_eq!(j.record.tasks[2].results, None, "b's task is another");
    // The same event again (a node that restarted before removing its spool): no save.
    assert!(j
        .on_results(&n("a"), &wid(&j, "a", 1), results.clone(), 30)
        .is_empty());
    // After the run settled, a task's results still arrive.
    for (node, rep, t) in [("a", 1, 40), ("b", 1, 41), ("a", 2, 50), ("b", 2, 51)] {
        ev(&mut j, node, rep, WorkloadState::Running, None, t);
        ev(&mut j, node, rep, WorkloadState::Exited, Some(0), t + 1);
    }
    assert_eq!(j.state(), RunState::Completed);
    let truncated = TaskResults {
        truncated: true,
        ..TaskResults::default()
    };
    let fx = j.on_results(&n("b"), &wid(&j, "b", 2), truncated, 60);
    assert_eq!(fx, [RunEffect::Persist], "saved, not announced");
    assert!(j.record.tasks[3].results.as_ref().unwrap().truncated);
    assert_eq!(j.state(), RunState::Completed);
    // A workload this run does not have, or a node that is not the task's: ignored.
    let other = task_workload_id(&RunId::new("other").unwrap(), "a::bench::1", 1);
    assert!(j
        .on_results(&n("a"), &other, TaskResults::default(), 70)
        .is_empty());
    assert!(j
        .on_results(&n("b"), &wid(&j, "a", 2), TaskResults::default(), 70)
        .is_empty());
    assert_eq!(j.record.tasks[1].results, None);
}

#[test]
fn a_start_is_wanted_while_the_run_runs_and_its_task_waits_on_it() {
    let (mut j, _) = RunJournal::new(RunId::new("r20").unwrap(), spec(2), &[n("a"), n("b")], 0);
    assert!(
        j.wants_start(&n("a"), &wid(&j, "a", 1)),
        "sent, not yet settled"
    );
    assert!(!j.wants_start(&n("a"), &wid(&j, "a", 2)), "not sent yet");
    assert!(!j.wants_start(&n("b"), &wid(&j, "a", 1)), "another node's");
    ev(&mut j, "a", 1, WorkloadState::Exited, Some(0), 5);
    assert!(!j.wants_start(&n("a"), &wid(&j, "a", 1)), "settled");
    j.on_node_lost(&n("b"), 6);
    assert!(
        !j.wants_start(&n("b"), &wid(&j, "b", 1)),
        "lost with its node"
    );
    j.on_stop(7);
    assert!(
        !j.wants_start(&n("a"), &wid(&j, "a", 2)),
        "no start once the run stops"
    );
}

#[test]
fn an_unanswered_start_is_sent_again_counted_only_while_its_node_is_up() {
    use super::starting::UnansweredStart::*;
    let (mut j, _) = RunJournal::new(RunId::new("r21").unwrap(), spec(1), &[n("a"), n("b")], 0);
    let a = wid(&j, "a", 1);
    assert_eq!(
        j.on_start_unanswered(&n("a"), &a, true, 0),
        Again { unanswered: 1 }
    );
    assert_eq!(
        j.on_start_unanswered(&n("a"), &a, false, 1),
        Again { unanswered: 1 },
        "a stale node's silence is not counted"
    );
    assert_eq!(
        j.on_start_unanswered(&n("a"), &a, true, 2),
        Fail { unanswered: 3 }
    );
    j.on_stop(5);
    assert_eq!(
        j.on_start_unanswered(&n("a"), &a, true, 2),
        Leave,
        "stopping: left to the node's events and liveness"
    );
}
