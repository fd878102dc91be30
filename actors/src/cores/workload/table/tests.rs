use super::*;
use crate::cores::workload::lifecycle::Exit;
use herd_bus::{ErrorCode, RestartPolicy, RestartPolicyKind, RunId};

fn table(keep: usize) -> WorkloadTable<()> {
    WorkloadTable::new(NodeId::new("n1").unwrap(), keep)
}

fn docker() -> Resolved {
    Resolved::Docker {
        kill_signal: nix::sys::signal::Signal::SIGTERM,
    }
}

fn spec(run: Option<&str>) -> WorkloadSpec {
    WorkloadSpec {
        command: vec!["true".into()],
        run_id: run.map(|r| RunId::new(r).unwrap()),
        ..Default::default()
    }
}

fn wid(i: usize) -> WorkloadId {
    WorkloadId::new(format!("w-{i:05}")).unwrap()
}

/// Admits and starts a workload; it runs.
fn running(t: &mut WorkloadTable<()>, id: &WorkloadId, spec: WorkloadSpec, now: u64) {
    assert!(matches!(
        t.admit(id.clone(), spec, docker(), now).unwrap(),
        Admitted::New(_)
    ));
    t.input(id, None, |lc| lc.on_spawn(now));
    t.input(id, None, |lc| lc.on_spawned(100, now));
}

#[test]
fn a_retry_with_the_same_spec_is_the_same_workload_and_another_spec_conflicts() {
    let mut t = table(10);
    running(&mut t, &wid(1), spec(None), 0);
    assert_eq!(
        t.admit(wid(1), spec(None), docker(), 1).unwrap(),
        Admitted::Existing
    );
    let err = t.admit(wid(1), spec(Some("r")), docker(), 1).unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert_eq!(t.status(&wid(1)).unwrap().state, WorkloadState::Running);
    assert_eq!(t.status(&wid(2)).unwrap_err().code, ErrorCode::NotFound);
}

#[test]
fn stop_requests_are_checked_before_anything_stops() {
    let mut t = table(10);
    running(&mut t, &wid(1), spec(None), 0);
    let stop = |t: &mut WorkloadTable<()>, req: StopRequest| t.stop(&req, 1).unwrap_err().code;
    let by_id = StopRequest {
        workload_id: Some(wid(1)),
        ..Default::default()
    };
    assert_eq!(
        stop(
            &mut t,
            StopRequest {
                signal: Some("SIGNOPE".into()),
                ..by_id.clone()
            }
        ),
        ErrorCode::BadRequest
    );
    assert_eq!(
        stop(
            &mut t,
            StopRequest {
                grace_s: Some(-1.0),
                ..by_id.clone()
            }
        ),
        ErrorCode::BadRequest
    );
    assert_eq!(stop(&mut t, StopRequest::default()), ErrorCode::BadRequest);
    assert_eq!(
        stop(
            &mut t,
            StopRequest {
                workload_id: Some(wid(9)),
                ..Default::default()
            }
        ),
        ErrorCode::NotFound
    );
    assert_eq!(t.status(&wid(1)).unwrap().state, WorkloadState::Running);
    let (fx, message) = t.stop(&by_id, 2).unwrap();
    assert_eq!(message, format!("stopping {}", wid(1)));
    assert!(matches!(fx[0].1[0], Effect::SignalAll(_)));
}

/// The executor's stop-by-run loop used to look each id up again after performing the
/// previous one's effects, which may forget settled workloads: a panic waiting to happen.
/// Now the table hands out every effect first and forgets only when asked, after.
#[test]
fn a_stop_by_run_over_many_settled_workloads_and_some_in_backoff_cannot_lose_an_id() {
    let mut t = table(1000);
    for i in 0..1100 {
        let id = wid(i);
        running(&mut t, &id, spec(Some("big")), i as u64);
        let fx = t.input(&id, None, |lc| lc.on_exit(Exit::code(0), 10_000 + i as u64));
        assert!(fx.contains(&Effect::Cleanup));
    }
    let restarting = WorkloadSpec {
        restart: RestartPolicy {
            policy: RestartPolicyKind::OnFailure,
            max: 3,
        },
        ..spec(Some("big"))
    };
    for i in 1100..1103 {
        running(&mut t, &wid(i), restarting.clone(), 20_000);
        let fx = t.input(&wid(i), None, |lc| lc.on_exit(Exit::code(1), 20_001));
        assert!(matches!(fx.last(), Some(Effect::RestartAfter(_))), "{fx:?}");
    }
    let req = StopRequest {
        run_id: Some(RunId::new("big").unwrap()),
        ..Default::default()
    };
    let (effects, message) = t.stop(&req, 30_000).unwrap();
    assert_eq!(effects.len(), 1103, "every workload of the run is targeted");
    assert_eq!(message, "stopping 3 workload(s) of run big");
    // Performing the effects (each Cleanup may trigger retention) finds every id.
    for (id, fx) in &effects {
        assert!(t.get(id).is_some(), "{id} is still in the table");
        if fx.contains(&Effect::Cleanup) {
            assert_eq!(t.status(id).unwrap().state, WorkloadState::Stopped);
        }
    }
    let forgotten = t.forget_settled();
    assert_eq!(forgotten.len(), 103, "1103 settled, 1000 kept");
    assert!(forgotten.contains(&wid(0)), "the oldest go first");
    assert!(t.get(&wid(1102)).is_some(), "the newest stay");
    assert!(t.forget_settled().is_empty());
}

#[test]
fn an_earlier_process_timers_and_exits_are_ignored() {
    let mut t = table(10);
    running(&mut t, &wid(1), spec(None), 0);
    let first = t.next_generation(&wid(1)).unwrap();
    let second = t.next_generation(&wid(1)).unwrap();
    assert!(t.is_current(&wid(1), second) && !t.is_current(&wid(1), first));
    let stale = t.input(&wid(1), Some(first), |lc| lc.on_exit(Exit::code(0), 5));
    assert!(stale.is_empty());
    assert_eq!(t.status(&wid(1)).unwrap().state, WorkloadState::Running);
    assert!(
        t.input(&wid(7), None, |lc| lc.on_timeout()).is_empty(),
        "unknown id"
    );
}

#[test]
fn lists_filter_by_run_state_and_label_oldest_first() {
    let mut t = table(10);
    let mut labelled = spec(Some("r1"));
    labelled.labels.insert("rack".into(), "a".into());
    running(&mut t, &wid(3), labelled, 30);
    running(&mut t, &wid(2), spec(Some("r1")), 20);
    running(&mut t, &wid(1), spec(None), 10);
    t.input(&wid(1), None, |lc| lc.on_exit(Exit::code(0), 40));
    let ids = |f: WorkloadFilter| -> Vec<WorkloadId> {
        t.list(&f)
            .workloads
            .into_iter()
            .map(|s| s.workload_id)
            .collect()
    };
    assert_eq!(ids(WorkloadFilter::default()), [wid(1), wid(2), wid(3)]);
    assert_eq!(
        ids(WorkloadFilter {
            run_id: Some(RunId::new("r1").unwrap()),
            ..Default::default()
        }),
        [wid(2), wid(3)]
    );
    assert_eq!(
        ids(WorkloadFilter {
            state: Some(WorkloadState::Exited),
            ..Default::default()
        }),
        [wid(1)]
    );
    assert_eq!(
        ids(WorkloadFilter {
            labels: [("rack".into(), "a".into())].into(),
            ..Default::default()
        }),
        [wid(3)]
    );
    assert_eq!(t.live_count(), 2);
    assert_eq!(t.state_counts()[&WorkloadState::Running], 2);
}

#[test]
fn stop_all_caps_each_grace() {
    let mut t = table(10);
    running(
        &mut t,
        &wid(1),
        WorkloadSpec {
            grace_s: Some(60.0),
            ..spec(None)
        },
        0,
    );
    running(&mut t, &wid(2), spec(None), 0);
    let fx = t.stop_all(Duration::from_secs(2), 1);
    for (_, fx) in fx {
        assert!(
            fx.contains(&Effect::KillAfter(Duration::from_secs(2))),
            "{fx:?}"
        );
    }
}

#[test]
fn an_adopted_workload_is_generation_one_and_answerable() {
    let mut t = table(10);
    let mut status = t
        .admit(wid(1), spec(None), docker(), 0)
        .map(|_| t.status(&wid(1)).unwrap())
        .unwrap();
    status.state = WorkloadState::Running;
    let mut fresh = table(10);
    let (id, _) = fresh.adopt(status, 5);
    assert!(fresh.is_current(&id, 1));
    assert!(fresh.get(&id).unwrap().resolved.is_none());
    assert_eq!(fresh.status(&id).unwrap().state, WorkloadState::Running);
}
