use super::*;
use herd_bus::{fixtures, Allocation, ErrorCode, Heartbeat, RunTargets, WorkloadSpec};

fn n(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn id(s: &str) -> RunId {
    RunId::new(s).unwrap()
}

/// A heartbeat of node `a`: 2 allocatable CPUs, `allocated` handed out, CPU not overcommitted.
fn beat(seq: u64, allocated: f64) -> Heartbeat {
    let mut hb = fixtures::heartbeat(0);
    hb.node_id = n("a");
    hb.seq = seq;
    hb.allocation = Some(Allocation {
        allocatable_cpus: 2.0,
        allocatable_memory: 1 << 30,
        allocated_cpus: allocated,
        ..Default::default()
    });
    hb
}

fn fleet(allocated: f64) -> NodeRegistry {
    let mut r = NodeRegistry::new(Default::default());
    r.on_heartbeat(beat(1, allocated), 0);
    r
}

/// A run of one task on node `a` asking `cpu` CPUs.
fn spec(run: &str, cpu: f64, priority: Option<i32>) -> RunSpec {
    let mut workload = WorkloadSpec {
        command: vec!["true".into()],
        ..Default::default()
    };
    workload.limits.cpu = Some(cpu);
    RunSpec {
        run_id: Some(id(run)),
        workload,
        targets: RunTargets {
            nodes: vec![n("a")],
            ..Default::default()
        },
        repetitions: 1,
        stop_timeout_s: None,
        queue: None,
        priority,
        ..Default::default()
    }
}

/// Submits as the coordinator does: starts it or queues it.
struct Coordinator {
    queue: RunQueue,
    runs: BTreeMap<RunId, RunJournal>,
    registry: NodeRegistry,
    pending: PendingPlacements,
}

impl Coordinator {
    fn new(allocated: f64) -> Coordinator {
        Coordinator {
            queue: RunQueue::default(),
            runs: BTreeMap::new(),
            registry: fleet(allocated),
            pending: PendingPlacements::default(),
        }
    }

    fn submit(&mut self, spec: RunSpec, now_ms: u64) -> Result<RunState, ErrorBody> {
        let run_id = spec.run_id.clone().unwrap();
        let (j, fx) = match self
            .queue
            .admission(&spec, &self.registry, &self.pending, 0)
        {
            Admission::Start(nodes) => RunJournal::new(run_id.clone(), spec, &nodes, now_ms),
            Admission::Queue(why) => {
                self.queue.push(run_id.clone(), spec.priority.unwrap_or(0));
                RunJournal::queued(run_id.clone(), spec, why, now_ms)
            }
            Admission::Refuse(e) => return Err(e),
        };
        hold_starts(&mut self.pending, &self.registry, &fx, now_ms);
        let state = j.state();
        self.runs.insert(run_id, j);
        Ok(state)
    }

    fn admit(&mut self, now_ms: u64) -> Vec<RunId> {
        self.queue
            .admit(&mut self.runs, &self.registry, &mut self.pending, 0, now_ms)
            .into_iter()
            .filter(|(_, fx)| fx.iter().any(|e| matches!(e, RunEffect::Start { .. })))
            .map(|(id, _)| id)
            .collect()
    }

    fn reason(&self, run: &str) -> String {
        self.runs[&id(run)]
            .record
            .queued_reason
            .clone()
            .unwrap_or_default()
    }
}

#[test]
fn a_burst_of_runs_queues_what_does_not_fit_and_starts_it_when_room_appears() {
    let mut c = Coordinator::new(0.0);
    let states: Vec<RunState> = (0..5)
        .map(|i| c.submit(spec(&format!("r{i}"), 0.5, None), 0).unwrap())
        .collect();
    assert_eq!(
        states,
        [
            RunState::Running,
            RunState::Running,
            RunState::Running,
            RunState::Running,
            RunState::Queued
        ]
    );
    assert_eq!(
        c.reason("r4"),
        "targets.nodes: no room now on a: cpu: needs 0.5 CPUs, 0.00 of 2 allocatable left"
    );
    assert!(c.admit(100).is_empty(), "no heartbeat yet: still full");
    // The node's heartbeat lists the four (its allocation counts them): still full.
    let mut hb = beat(2, 2.0);
    for j in c.runs.values().filter(|j| j.state() == RunState::Running) {
        let task = &j.record.tasks[0];
        let mut w = fixtures::workload_summary(0);
        w.workload_id = task.workload_id.clone().unwrap();
        hb.workloads.push(w);
    }
    c.pending.on_heartbeat(&hb);
    c.registry.on_heartbeat(hb, 200);
    assert!(c.admit(200).is_empty());
    // One ended.
    c.registry.on_heartbeat(beat(3, 1.5), 300);
    assert_eq!(c.admit(300), [id("r4")]);
    assert_eq!(c.runs[&id("r4")].state(), RunState::Running);
    assert_eq!(c.runs[&id("r4")].record.queued_reason, None);
    assert!(c.queue.is_empty());
}

#[test]
fn higher_priority_first_and_equal_priorities_in_submission_order() {
    let mut c = Coordinator::new(2.0);
    c.submit(spec("low-1", 1.0, None), 0).unwrap();
    c.submit(spec("high", 1.0, Some(5)), 1).unwrap();
    c.submit(spec("low-2", 1.0, Some(0)), 2).unwrap();
    c.submit(spec("low-3", 1.0, None), 3).unwrap();
    assert_eq!(
        c.queue.ordered(),
        [id("high"), id("low-1"), id("low-2"), id("low-3")]
    );
    c.registry.on_heartbeat(beat(2, 0.0), 10);
    assert_eq!(c.admit(10), [id("high"), id("low-1")]);
    assert!(
        c.reason("low-2")
            .contains("cpu: needs 1 CPUs, 0.00 of 2 allocatable left"),
        "{}",
        c.reason("low-2")
    );
    assert_eq!(c.queue.ordered(), [id("low-2"), id("low-3")]);
}

#[test]
fn the_order_is_strict_a_small_run_does_not_pass_a_large_one() {
    let mut c = Coordinator::new(1.5);
    c.submit(spec("large", 2.0, None), 0).unwrap();
    assert_eq!(c.runs[&id("large")].state(), RunState::Queued);
    // 0.5 would fit, but the large run came first.
    assert_eq!(c.submit(spec("small", 0.5, None), 1), Ok(RunState::Queued));
    assert_eq!(
        c.reason("small"),
        "behind 1 queued run of priority 0 or higher"
    );
    assert!(c.admit(2).is_empty());
    // A higher priority goes ahead of both.
    assert_eq!(
        c.submit(spec("urgent", 0.5, Some(1)), 3),
        Ok(RunState::Running)
    );
    c.registry.on_heartbeat(beat(2, 0.0), 10);
    c.pending = PendingPlacements::default();
    assert_eq!(c.admit(10), [id("large")]);
    assert!(
        c.admit(11).is_empty(),
        "small waits for the large one to end"
    );
}

#[test]
fn fail_fast_runs_are_refused_and_invalid_ones_never_queue() {
    let mut c = Coordinator::new(2.0);
    let e = c
        .submit(
            RunSpec {
                queue: Some(false),
                ..spec("now-or-never", 0.5, None)
            },
            0,
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("cpu: needs 0.5 CPUs"), "{}", e.message);
    let e = c.submit(spec("huge", 8.0, None), 0).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("2 allocatable in all"), "{}", e.message);
    assert!(c.runs.is_empty() && c.queue.is_empty());
}

#[test]
fn a_queued_run_stops_at_once_and_leaves_the_queue() {
    let mut c = Coordinator::new(2.0);
    c.submit(spec("q", 1.0, None), 0).unwrap();
    let fx = c.runs.get_mut(&id("q")).unwrap().on_stop(5);
    assert_eq!(
        fx,
        [RunEffect::Announce(RunState::Stopped), RunEffect::Persist]
    );
    let j = &c.runs[&id("q")];
    assert_eq!(j.state(), RunState::Stopped);
    assert!(j.record.tasks.is_empty(), "no task ever started");
    c.registry.on_heartbeat(beat(2, 0.0), 10);
    assert!(c.admit(10).is_empty());
    assert!(c.queue.is_empty());
}

#[test]
fn queued_runs_are_restored_in_submission_order() {
    let mut c = Coordinator::new(2.0);
    c.submit(spec("first", 1.0, None), 0).unwrap();
    c.submit(spec("second", 1.0, None), 7).unwrap();
    c.submit(spec("urgent", 1.0, Some(9)), 9).unwrap();
    let mut records: Vec<RunRecord> = c.runs.values().map(|j| j.record.clone()).collect();
    records.reverse();
    let mut restored = RunQueue::default();
    let mut resumed = BTreeMap::new();
    for r in &records {
        let (j, fx) = RunJournal::resume(r.clone(), 100);
        assert!(fx.is_empty(), "a queued run waits on: {fx:?}");
        assert_eq!(j.state(), RunState::Queued);
        resumed.insert(r.run_id.clone(), j);
    }
    restored.restore(&records);
    assert_eq!(
        restored.ordered(),
        [id("urgent"), id("first"), id("second")]
    );
}
