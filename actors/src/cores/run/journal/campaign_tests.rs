//! The journal running campaigns: phases, suites, matrices, max_parallel, setup failures,
//! stops that tear down, automatic and asked-for retries.

use super::*;
use herd_bus::{ParamValue, RunRetry, RunTargets, TaskStatus::*};

fn n(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn w(name: &str) -> WorkloadSpec {
    WorkloadSpec {
        name: Some(name.into()),
        command: vec!["true".into()],
        ..Default::default()
    }
}

fn campaign(reps: u32) -> RunSpec {
    let mut mx = w("mx");
    mx.matrix
        .insert("size".into(), vec![ParamValue::Int(1), ParamValue::Int(2)]);
    RunSpec {
        workloads: vec![w("one"), mx],
        setup: Some(w("install")),
        teardown: Some(w("clean")),
        targets: RunTargets::default(),
        repetitions: reps,
        stop_timeout_s: Some(10.0),
        ..Default::default()
    }
}

/// The (node, task id) of each Start.
fn starts(j: &RunJournal, fx: &[RunEffect]) -> Vec<(String, String)> {
    fx.iter()
        .filter_map(|e| match e {
            RunEffect::Start { node, spec } => {
                let t = j
                    .record
                    .tasks
                    .iter()
                    .find(|t| t.workload_id == spec.workload_id)
                    .expect("a task of the run");
                Some((node.to_string(), t.task_id.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The task `id` ends in `state`; answers the effects.
fn end(
    j: &mut RunJournal,
    id: &str,
    state: WorkloadState,
    code: Option<i32>,
    t: u64,
) -> Vec<RunEffect> {
    let task = j.record.tasks.iter().find(|x| x.task_id == id).unwrap();
    let ev = WorkloadEvent {
        event_id: format!("e{t}"),
        node_id: task.node_id.clone(),
        workload_id: task.workload_id.clone().unwrap(),
        state,
        ts_ms: t,
        run_id: None,
        rep: None,
        pid: None,
        exit_code: code,
        signal: None,
        reason: (state != WorkloadState::Exited).then(|| format!("it was {}", state.as_str())),
        restarts: 0,
        resources: None,
    };
    let node = task.node_id.clone();
    let mut fx = j.on_workload_event(&node, &ev.clone().with_state(WorkloadState::Running, t), t);
    fx.extend(j.on_workload_event(&node, &ev, t));
    fx
}

trait WithState {
    fn with_state(self, s: WorkloadState, t: u64) -> Self;
}

impl WithState for WorkloadEvent {
    fn with_state(mut self, s: WorkloadState, t: u64) -> Self {
        self.state = s;
        self.ts_ms = t.saturating_sub(1);
        self.exit_code = None;
        self
    }
}

fn ok(j: &mut RunJournal, id: &str, t: u64) -> Vec<(String, String)> {
    let fx = end(j, id, WorkloadState::Exited, Some(0), t);
    starts(j, &fx)
}

fn of(j: &RunJournal, id: &str) -> TaskStatus {
    j.record
        .tasks
        .iter()
        .find(|t| t.task_id == id)
        .unwrap()
        .status
}

/// `run.retry` of everything that did not complete.
fn every_task(j: &RunJournal) -> RunRetry {
    RunRetry {
        run_id: j.record.run_id.clone(),
        statuses: vec![],
        nodes: vec![],
        workloads: vec![],
    }
}

fn s(node: &str, id: &str) -> (String, String) {
    (node.into(), id.into())
}

#[test]
fn each_node_runs_setup_its_variants_in_order_then_teardown() {
    let (mut j, fx) = RunJournal::new(RunId::new("c1").unwrap(), campaign(2), &[n("a"), n("b")], 0);
    assert_eq!(
        starts(&j, &fx),
        [s("a", "a::setup::1"), s("b", "b::setup::1")]
    );
    let ids: Vec<&str> = j
        .record
        .tasks
        .iter()
        .take(8)
        .map(|t| t.task_id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "a::setup::1",
            "a::one::1",
            "a::one::2",
            "a::mx[size=1]::1",
            "a::mx[size=1]::2",
            "a::mx[size=2]::1",
            "a::mx[size=2]::2",
            "a::teardown::1"
        ]
    );
    let order = [
        "a::one::1",
        "a::one::2",
        "a::mx[size=1]::1",
        "a::mx[size=1]::2",
        "a::mx[size=2]::1",
        "a::mx[size=2]::2",
        "a::teardown::1",
    ];
    let mut prev = "a::setup::1";
    for (t, next) in order.iter().enumerate() {
        assert_eq!(
            ok(&mut j, prev, 10 + t as u64),
            [s("a", next)],
            "after {prev}"
        );
        prev = next;
    }
    // The variant's spec carries its parameter.
    let t = j
        .record
        .tasks
        .iter()
        .find(|t| t.task_id == "a::mx[size=2]::1")
        .unwrap();
    assert_eq!(j.task_spec(t).env["HERD_PARAM_SIZE"], "2");
    assert!(ok(&mut j, "a::teardown::1", 30).is_empty());
    assert_eq!(j.state(), RunState::Running, "b is not done");
    let mut prev = "b::setup::1".to_string();
    for t in j
        .record
        .tasks
        .clone()
        .iter()
        .filter(|t| t.node_id == n("b"))
        .skip(1)
    {
        ok(&mut j, &prev, 40);
        prev = t.task_id.clone();
    }
    let fx = end(&mut j, &prev, WorkloadState::Exited, Some(0), 50);
    assert!(fx.contains(&RunEffect::Announce(RunState::Completed)));
}

#[test]
fn rep_major_interleaves_and_max_parallel_holds_nodes_back() {
    let mut spec = campaign(2);
    spec.order = Some(herd_bus::TaskOrder::RepMajor);
    spec.max_parallel = Some(1);
    spec.setup = None;
    spec.teardown = None;
    let (mut j, fx) = RunJournal::new(RunId::new("c2").unwrap(), spec, &[n("a"), n("b")], 0);
    assert_eq!(starts(&j, &fx), [s("a", "a::one::1")], "b waits its turn");
    assert_eq!(ok(&mut j, "a::one::1", 1), [s("a", "a::mx[size=1]::1")]);
    assert_eq!(
        ok(&mut j, "a::mx[size=1]::1", 2),
        [s("a", "a::mx[size=2]::1")]
    );
    assert_eq!(ok(&mut j, "a::mx[size=2]::1", 3), [s("a", "a::one::2")]);
    ok(&mut j, "a::one::2", 4);
    ok(&mut j, "a::mx[size=1]::2", 5);
    assert_eq!(
        ok(&mut j, "a::mx[size=2]::2", 6),
        [s("b", "b::one::1")],
        "a done: b begins"
    );
}

#[test]
fn a_failed_setup_skips_its_node_which_still_tears_down() {
    let (mut j, _) = RunJournal::new(RunId::new("c3").unwrap(), campaign(1), &[n("a"), n("b")], 0);
    let fx = end(&mut j, "a::setup::1", WorkloadState::Exited, Some(3), 5);
    assert_eq!(starts(&j, &fx), [s("a", "a::teardown::1")]);
    assert_eq!(of(&j, "a::setup::1"), Failed);
    for id in ["a::one::1", "a::mx[size=1]::1", "a::mx[size=2]::1"] {
        assert_eq!(of(&j, id), Skipped);
        let t = j.record.tasks.iter().find(|t| t.task_id == id).unwrap();
        assert_eq!(t.error.as_deref(), Some("setup failed: workload exited"));
    }
    ok(&mut j, "a::teardown::1", 6);
    assert_eq!(of(&j, "a::teardown::1"), Completed);
    assert_eq!(
        ok(&mut j, "b::setup::1", 7),
        [s("b", "b::one::1")],
        "b goes on"
    );
    ok(&mut j, "b::one::1", 8);
    ok(&mut j, "b::mx[size=1]::1", 9);
    ok(&mut j, "b::mx[size=2]::1", 10);
    let fx = end(&mut j, "b::teardown::1", WorkloadState::Exited, Some(0), 11);
    assert!(fx.contains(&RunEffect::Announce(RunState::Failed)));
}

#[test]
fn abort_run_skips_every_node_that_has_not_begun_entirely() {
    let mut spec = campaign(1);
    spec.on_setup_failure = Some(herd_bus::SetupFailure::AbortRun);
    spec.max_parallel = Some(1);
    let (mut j, _) = RunJournal::new(RunId::new("c4").unwrap(), spec, &[n("a"), n("b")], 0);
    let fx = end(&mut j, "a::setup::1", WorkloadState::Failed, None, 5);
    assert_eq!(starts(&j, &fx), [s("a", "a::teardown::1")]);
    assert!(j
        .record
        .tasks
        .iter()
        .filter(|t| t.node_id == n("b"))
        .all(|t| t.status == Skipped));
    let fx = ok(&mut j, "a::teardown::1", 6);
    assert!(fx.is_empty());
    assert_eq!(j.state(), RunState::Failed);
}

#[test]
fn a_stop_during_setup_interrupts_it_then_tears_down() {
    let (mut j, _) = RunJournal::new(RunId::new("c5").unwrap(), campaign(1), &[n("a"), n("b")], 0);
    let fx = j.on_stop(10);
    let asked: Vec<_> = fx
        .iter()
        .filter(|e| matches!(e, RunEffect::StopOnNode { .. }))
        .collect();
    assert_eq!(asked.len(), 2);
    assert_eq!(of(&j, "a::one::1"), Skipped);
    assert_eq!(
        of(&j, "a::teardown::1"),
        Pending,
        "a has begun: it tears down"
    );
    let fx = end(&mut j, "a::setup::1", WorkloadState::Stopped, None, 11);
    assert_eq!(
        starts(&j, &fx),
        [s("a", "a::teardown::1")],
        "a confirmed: teardown"
    );
    assert_eq!(of(&j, "a::setup::1"), Stopped);
    let fx = end(&mut j, "b::setup::1", WorkloadState::Killed, None, 12);
    assert_eq!(starts(&j, &fx), [s("b", "b::teardown::1")]);
    ok(&mut j, "a::teardown::1", 13);
    assert_eq!(j.state(), RunState::Stopping, "b still tears down");
    let fx = end(&mut j, "b::teardown::1", WorkloadState::Exited, Some(0), 14);
    assert!(fx.contains(&RunEffect::Announce(RunState::Stopped)));
}

#[test]
fn a_frozen_node_makes_stop_failed_after_the_others_tore_down() {
    let (mut j, _) = RunJournal::new(RunId::new("c6").unwrap(), campaign(1), &[n("a"), n("b")], 0);
    ok(&mut j, "a::setup::1", 1);
    ok(&mut j, "b::setup::1", 1);
    j.on_stop(10);
    let fx = end(&mut j, "a::one::1", WorkloadState::Stopped, None, 11);
    assert_eq!(starts(&j, &fx), [s("a", "a::teardown::1")]);
    ok(&mut j, "a::teardown::1", 12);
    assert_eq!(j.state(), RunState::Stopping);
    let fx = j.tick(10 + 10_001);
    assert!(fx.contains(&RunEffect::Announce(RunState::StopFailed)));
    assert_eq!(j.record.unconfirmed_nodes, [n("b")]);
    assert_eq!(of(&j, "b::teardown::1"), Skipped);
    // Its task never confirmed: no retry until it has ended.
    let q = every_task(&j);
    let e = j.retry(&q, |_| true, 10_020).unwrap_err();
    assert!(
        e.contains("task b::one::1 is still running on node b"),
        "{e}"
    );
    end(&mut j, "b::one::1", WorkloadState::Killed, None, 10_030);
    assert_eq!(
        of(&j, "b::one::1"),
        Stopped,
        "recorded late; the verdict stays"
    );
    assert_eq!(j.state(), RunState::StopFailed);
    let (again, _) = j.retry(&q, |_| true, 10_040).unwrap();
    assert!(
        again.contains(&"b::one::1".to_string()) && again.contains(&"b::teardown::1".to_string()),
        "{again:?}"
    );
}

#[test]
fn a_failed_task_with_retries_runs_again_with_its_attempts_kept() {
    let mut spec = campaign(1);
    spec.setup = None;
    spec.teardown = None;
    spec.workloads[0].retries = Some(1);
    let (mut j, _) = RunJournal::new(RunId::new("c7").unwrap(), spec, &[n("a")], 0);
    let first = j.record.tasks[0].workload_id.clone();
    let fx = end(&mut j, "a::one::1", WorkloadState::Exited, Some(1), 5);
    assert_eq!(starts(&j, &fx), [s("a", "a::one::1")], "run again at once");
    let t = &j.record.tasks[0];
    assert_eq!((t.attempt, t.status), (2, Running));
    assert_ne!(t.workload_id, first, "a new workload on the node");
    assert_eq!(t.attempts.len(), 1);
    assert_eq!(
        (t.attempts[0].status, t.attempts[0].exit_code),
        (Failed, Some(1))
    );
    // The second failure is the last: the node moves on.
    let fx = end(&mut j, "a::one::1", WorkloadState::Exited, Some(1), 6);
    assert_eq!(starts(&j, &fx), [s("a", "a::mx[size=1]::1")]);
    assert_eq!(of(&j, "a::one::1"), Failed);
}

#[test]
fn retry_reruns_only_what_did_not_complete_and_refuses_when_nothing_is_left() {
    let mut spec = campaign(2);
    spec.setup = None;
    spec.teardown = None;
    spec.workloads.truncate(1);
    let (mut j, _) = RunJournal::new(RunId::new("c8").unwrap(), spec, &[n("a"), n("b")], 0);
    ok(&mut j, "a::one::1", 1);
    end(&mut j, "a::one::2", WorkloadState::Exited, Some(2), 2);
    ok(&mut j, "b::one::1", 3);
    ok(&mut j, "b::one::2", 4);
    assert_eq!(j.state(), RunState::Failed);
    let q = every_task(&j);
    assert!(j
        .retry(&q, |_| false, 5)
        .unwrap_err()
        .contains("node a is not up"));
    let (again, fx) = j.retry(&q, |_| true, 5).unwrap();
    assert_eq!(again, ["a::one::2"]);
    assert_eq!(starts(&j, &fx), [s("a", "a::one::2")]);
    assert!(fx.contains(&RunEffect::Announce(RunState::Running)));
    assert!(j
        .retry(&q, |_| true, 5)
        .unwrap_err()
        .contains("retry once it has settled"));
    let fx = ok(&mut j, "a::one::2", 6);
    assert!(fx.is_empty());
    assert_eq!(j.state(), RunState::Completed);
    let t = &j.record.tasks[1];
    assert_eq!(
        (t.attempt, t.attempts.len(), t.attempts[0].exit_code),
        (2, 1, Some(2))
    );
    assert!(j
        .retry(&q, |_| true, 7)
        .unwrap_err()
        .contains("no task to retry"));
}

#[test]
fn a_retried_node_sets_up_again_and_tears_down_after() {
    let mut spec = campaign(1);
    spec.workloads.truncate(1);
    let (mut j, _) = RunJournal::new(RunId::new("c9").unwrap(), spec, &[n("a")], 0);
    ok(&mut j, "a::setup::1", 1);
    end(&mut j, "a::one::1", WorkloadState::Exited, Some(1), 2);
    ok(&mut j, "a::teardown::1", 3);
    assert_eq!(j.state(), RunState::Failed);
    let q = RunRetry {
        workloads: vec!["one".into()],
        ..every_task(&j)
    };
    let (again, fx) = j.retry(&q, |_| true, 4).unwrap();
    assert_eq!(again, ["a::setup::1", "a::one::1", "a::teardown::1"]);
    assert_eq!(starts(&j, &fx), [s("a", "a::setup::1")]);
    assert_eq!(ok(&mut j, "a::setup::1", 5), [s("a", "a::one::1")]);
    assert_eq!(ok(&mut j, "a::one::1", 6), [s("a", "a::teardown::1")]);
    ok(&mut j, "a::teardown::1", 7);
    assert_eq!(j.state(), RunState::Completed);
}
