use super::*;
use herd_bus::{RestartPolicy, RestartPolicyKind};
use WorkloadState::*;

fn spec() -> WorkloadSpec {
    WorkloadSpec {
        command: vec!["sleep".into(), "10".into()],
        ..Default::default()
    }
}

fn running(spec: WorkloadSpec) -> Lifecycle {
    let (mut lc, fx) = Lifecycle::new(
        WorkloadId::new("w").unwrap(),
        NodeId::new("n").unwrap(),
        spec,
        0,
    );
    assert_eq!(
        fx,
        vec![Effect::Emit(Pending), Effect::Persist, Effect::Spawn]
    );
    assert_eq!(
        lc.on_spawn(1),
        vec![Effect::Emit(Starting), Effect::Persist, Effect::Launch]
    );
    lc.on_spawned(42, 10);
    assert_eq!(lc.state(), Running);
    lc
}

fn emitted(fx: &[Effect]) -> Vec<WorkloadState> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Emit(s) => Some(*s),
            _ => None,
        })
        .collect()
}

#[test]
fn exit_codes_and_signals() {
    let mut lc = running(spec());
    let fx = lc.on_exit(Exit::code(3), 20);
    assert_eq!(emitted(&fx), [Exited]);
    assert_eq!(lc.status.exit_code, Some(3));
    assert!(fx.contains(&Effect::KillTree) && fx.contains(&Effect::Cleanup));

    let mut lc = running(spec());
    lc.on_exit(Exit::signal(11), 20);
    assert_eq!(
        (lc.state(), lc.status.signal.as_deref()),
        (Killed, Some("SIGSEGV"))
    );
}

#[test]
fn timeout_arms_and_ends_timed_out() {
    let mut lc = running(WorkloadSpec {
        timeout_s: Some(2.0),
        grace_s: Some(1.0),
        ..spec()
    });
    // on_spawned armed it; the owner fires it.
    let fx = lc.on_timeout();
    assert_eq!(
        fx,
        vec![
            Effect::SignalAll("SIGTERM".into()),
            Effect::KillAfter(Duration::from_secs(1))
        ]
    );
    assert_eq!(lc.on_timeout(), vec![], "only once");
    lc.on_exit(Exit::signal(15), 30);
    assert_eq!(lc.state(), TimedOut);
}

#[test]
fn stop_within_grace_is_stopped_and_after_grace_killed() {
    let mut lc = running(WorkloadSpec {
        kill_signal: Some("SIGINT".into()),
        ..spec()
    });
    let fx = lc.on_stop(None, None, 20);
    assert_eq!(
        fx,
        vec![
            Effect::SignalAll("SIGINT".into()),
            Effect::KillAfter(DEFAULT_GRACE)
        ]
    );
    lc.on_exit(Exit::signal(2), 30);
    assert_eq!(lc.state(), Stopped);

    let mut lc = running(spec());
    lc.on_stop(Some("SIGUSR1".into()), Some(Duration::from_millis(100)), 20);
    assert_eq!(lc.on_grace_expired(), vec![Effect::KillTree]);
    lc.on_exit(Exit::signal(9), 30);
    assert_eq!(
        (lc.state(), lc.status.signal.as_deref()),
        (Killed, Some("SIGKILL"))
    );
}

#[test]
fn a_second_stop_without_grace_kills_at_once() {
    let mut lc = running(spec());
    lc.on_stop(None, None, 1);
    assert_eq!(
        lc.on_stop(None, Some(Duration::from_secs(1)), 2),
        vec![],
        "still in grace"
    );
    assert_eq!(
        lc.on_stop(None, Some(Duration::ZERO), 3),
        vec![Effect::KillTree]
    );
    lc.on_exit(Exit::signal(9), 4);
    assert_eq!(lc.state(), Killed);
}

#[test]
fn grace_expiring_after_exit_does_nothing() {
    let mut lc = running(spec());
    lc.on_stop(None, None, 1);
    lc.on_exit(Exit::code(0), 2);
    assert_eq!(lc.on_grace_expired(), vec![]);
    assert_eq!(
        lc.on_stop(None, None, 3),
        vec![],
        "a settled workload ignores stops"
    );
}

#[test]
fn oom_wins_over_everything() {
    let mut lc = running(spec());
    lc.on_exit(Exit::signal(9).oom_killed(true), 20);
    assert_eq!(lc.state(), OomKilled);
}

#[test]
fn on_failure_restarts_up_to_max_with_backoff() {
    let mut lc = running(WorkloadSpec {
        restart: RestartPolicy {
            policy: RestartPolicyKind::OnFailure,
            max: 2,
        },
        ..spec()
    });
    let fx = lc.on_exit(Exit::code(1), 1);
    assert_eq!(
        fx.last(),
        Some(&Effect::RestartAfter(Duration::from_secs(1)))
    );
    assert_eq!(lc.on_restart_due(), vec![Effect::Spawn]);
    assert_eq!(emitted(&lc.on_spawn(2)), [Starting]);
    lc.on_spawned(43, 2);
    let fx = lc.on_exit(Exit::code(1), 3);
    assert_eq!(
        fx.last(),
        Some(&Effect::RestartAfter(Duration::from_secs(2)))
    );
    lc.on_restart_due();
    lc.on_spawn(4);
    lc.on_spawned(44, 4);
    let fx = lc.on_exit(Exit::code(1), 5);
    assert_eq!(fx.last(), Some(&Effect::Cleanup), "max reached");
    assert_eq!(lc.status.restarts, 2);
    assert_eq!(lc.state(), Exited);
}

#[test]
fn success_and_stops_are_not_restarted() {
    let policy = RestartPolicy {
        policy: RestartPolicyKind::OnFailure,
        max: 5,
    };
    let mut lc = running(WorkloadSpec {
        restart: policy.clone(),
        ..spec()
    });
    assert_eq!(lc.on_exit(Exit::code(0), 1).last(), Some(&Effect::Cleanup));
    let mut lc = running(WorkloadSpec {
        restart: policy,
        ..spec()
    });
    lc.on_stop(None, None, 1);
    assert_eq!(
        lc.on_exit(Exit::signal(15), 2).last(),
        Some(&Effect::Cleanup)
    );
}

#[test]
fn stop_while_waiting_to_restart_settles_stopped() {
    let mut lc = running(WorkloadSpec {
        restart: RestartPolicy {
            policy: RestartPolicyKind::OnFailure,
            max: 1,
        },
        ..spec()
    });
    lc.on_exit(Exit::code(1), 1);
    let fx = lc.on_stop(None, None, 2);
    assert_eq!(emitted(&fx), [Stopped]);
    assert_eq!(lc.on_restart_due(), vec![], "restart cancelled");
}

#[test]
fn stop_before_spawn_and_spawn_failure() {
    let (mut lc, _) = Lifecycle::new(
        WorkloadId::new("w").unwrap(),
        NodeId::new("n").unwrap(),
        spec(),
        0,
    );
    lc.on_stop(None, None, 1);
    let fx = lc.on_spawn(2);
    assert_eq!(emitted(&fx), [Stopped]);
    assert!(
        !fx.contains(&Effect::Launch),
        "a stopped workload is not launched"
    );

    let (mut lc, _) = Lifecycle::new(
        WorkloadId::new("w").unwrap(),
        NodeId::new("n").unwrap(),
        spec(),
        0,
    );
    lc.on_spawn(1);
    let fx = lc.on_spawn_failed("exec: permission denied".into(), 1);
    assert_eq!(emitted(&fx), [Failed]);
    assert_eq!(lc.status.reason.as_deref(), Some("exec: permission denied"));
}

#[test]
fn a_stop_while_starting_stops_the_workload_once_it_runs() {
    let (mut lc, _) = Lifecycle::new(
        WorkloadId::new("w").unwrap(),
        NodeId::new("n").unwrap(),
        WorkloadSpec {
            grace_s: Some(2.0),
            timeout_s: Some(60.0),
            ..spec()
        },
        0,
    );
    lc.on_spawn(1);
    assert_eq!(lc.on_stop(None, None, 1), vec![], "nothing to signal yet");
    let fx = lc.on_spawned(42, 2);
    assert_eq!(emitted(&fx), [Running]);
    assert!(fx.contains(&Effect::SignalAll("SIGTERM".into())));
    assert!(fx.contains(&Effect::KillAfter(Duration::from_secs(2))));
    assert!(!fx.iter().any(|e| matches!(e, Effect::ArmTimeout(_))));
    assert_eq!(emitted(&lc.on_exit(Exit::code(143), 3)), [Stopped]);
}

#[test]
fn an_adopted_workload_keeps_what_is_left_of_its_timeout_and_can_be_lost() {
    let mut lc = running(WorkloadSpec {
        timeout_s: Some(10.0),
        ..spec()
    });
    lc.status.started_at_ms = Some(1_000);
    let (mut adopted, fx) = Lifecycle::adopted(lc.status.clone(), 4_000);
    assert_eq!(fx, vec![Effect::ArmTimeout(Duration::from_secs(7))]);
    assert_eq!(adopted.state(), Running);
    let fx = adopted.on_lost("gone".into(), 5_000);
    assert_eq!(emitted(&fx), [Lost]);
    assert_eq!(fx.last(), Some(&Effect::Cleanup));
}

#[test]
fn signals_parse_in_every_spelling() {
    use nix::sys::signal::Signal;
    assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
    assert_eq!(parse_signal("term"), Some(Signal::SIGTERM));
    assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
    assert_eq!(parse_signal("SIGNOPE"), None);
    assert_eq!(parse_signal("99"), None);
}

/// Drives effects as the executor does (Spawn → on_spawn, Launch → the process runs) and
/// counts how often each state was entered.
fn drive(lc: &mut Lifecycle, mut fx: Vec<Effect>, now: u64) -> Vec<WorkloadState> {
    let mut entered = Vec::new();
    while !fx.is_empty() {
        let mut next = Vec::new();
        for e in fx {
            match e {
                Effect::Emit(s) => entered.push(s),
                Effect::Spawn => next.extend(lc.on_spawn(now)),
                Effect::Launch => next.extend(lc.on_spawned(7, now)),
                _ => {}
            }
        }
        fx = next;
    }
    entered
}

#[test]
fn starting_is_entered_once_per_start_and_once_per_restart() {
    let (mut lc, fx) = Lifecycle::new(
        WorkloadId::new("w").unwrap(),
        NodeId::new("n").unwrap(),
        WorkloadSpec {
            restart: RestartPolicy {
                policy: RestartPolicyKind::OnFailure,
                max: 2,
            },
            ..spec()
        },
        0,
    );
    assert_eq!(drive(&mut lc, fx, 0), [Pending, Starting, Running]);
    for n in 1..=2 {
        let fx = lc.on_exit(Exit::code(1), n);
        assert_eq!(drive(&mut lc, fx, n), [Exited]);
        let fx = lc.on_restart_due();
        assert_eq!(
            drive(&mut lc, fx, n),
            [Starting, Running],
            "restart {n}: one starting, one running"
        );
    }
    assert_eq!(lc.status.restarts, 2);
}
