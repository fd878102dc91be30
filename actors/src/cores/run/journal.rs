//! A run's journal: one task per node × repetition, fed with workload events, task statuses,
//! node loss, stop requests and the clock; it answers with effects.

use super::plan::task_workload_id;
use super::stop::{StopProtocol, StopVerdict};
use herd_bus::{
    NodeId, RunId, RunRecord, RunSpec, RunState, TaskRecord, TaskStatus, WorkloadEvent, WorkloadId,
    WorkloadSpec, WorkloadState, WorkloadStatus,
};
use std::collections::{BTreeMap, BTreeSet};

/// Default seconds to wait for every node to confirm a stop.
pub const DEFAULT_STOP_TIMEOUT_S: f64 = 30.0;

#[derive(Debug, Clone, PartialEq)]
pub enum RunEffect {
    /// Start this task's workload on its node (idempotent: same id, same spec).
    Start { node: NodeId, spec: WorkloadSpec },
    /// After a coordinator restart: ask the node how this running task is doing
    /// (`workload.get`) and feed the answer to [`RunJournal::on_task_status`], or start the
    /// workload if the node never got it.
    Reconcile { node: NodeId, spec: WorkloadSpec },
    /// Ask a node to stop every workload of the run.
    StopOnNode { node: NodeId },
    /// After a coordinator restart during a stop: ask the node for the run's workloads
    /// (`workload.list`) and feed the answer to [`RunJournal::on_node_workloads`]; confirmations
    /// sent while the coordinator was away are not sent again.
    ListOnNode { node: NodeId },
    /// The run's state changed: announce it.
    Announce(RunState),
    /// Save the journal.
    Persist,
}

#[derive(Debug, Clone)]
pub struct RunJournal {
    pub record: RunRecord,
    /// While stopping: who must still confirm.
    stop: Option<StopProtocol>,
}

/// What the coordinator learned about a task's workload, from an event or from its node.
struct Observed {
    state: WorkloadState,
    exit_code: Option<i32>,
    reason: Option<String>,
    started_at_ms: Option<u64>,
    /// When it reached `state`.
    ts_ms: u64,
}

fn is_settled(s: TaskStatus) -> bool {
    !matches!(s, TaskStatus::Pending | TaskStatus::Running)
}

impl RunJournal {
    /// A new run over `nodes` (already placed), `spec.repetitions` times each.
    pub fn new(
        run_id: RunId,
        spec: RunSpec,
        nodes: &[NodeId],
        now_ms: u64,
    ) -> (RunJournal, Vec<RunEffect>) {
        let name = spec.workload.name.clone().unwrap_or_else(|| "task".into());
        let mut tasks = Vec::new();
        for node in nodes {
            for rep in 1..=spec.repetitions {
                tasks.push(TaskRecord {
                    task_id: format!("{node}::{name}::{rep}"),
                    node_id: node.clone(),
                    rep,
                    status: TaskStatus::Pending,
                    workload_id: Some(task_workload_id(&run_id, node, rep)),
                    started_at_ms: None,
                    finished_at_ms: None,
                    duration_s: None,
                    exit_code: None,
                    error: None,
                });
            }
        }
        let mut j = RunJournal {
            record: RunRecord {
                run_id,
                state: RunState::Pending,
                spec,
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                tasks,
                unconfirmed_nodes: vec![],
            },
            stop: None,
        };
        let mut fx = j.set_state(RunState::Running, now_ms);
        fx.extend(j.next_starts());
        (j, fx)
    }

    /// Resumes a journal saved before a coordinator restart.
    pub fn resume(record: RunRecord, now_ms: u64) -> (RunJournal, Vec<RunEffect>) {
        let stopping = record.state == RunState::Stopping;
        let timeout = stop_timeout_ms(&record.spec);
        let mut j = RunJournal { record, stop: None };
        let mut fx = Vec::new();
        if stopping {
            // Ask again, and ask what has settled: confirmations may have come while the
            // coordinator was away, and a workload that settled then says nothing new.
            let nodes = j.running_nodes();
            for n in &nodes {
                fx.push(RunEffect::StopOnNode { node: n.clone() });
                fx.push(RunEffect::ListOnNode { node: n.clone() });
            }
            j.stop = Some(StopProtocol::new(nodes, now_ms, timeout));
            fx.extend(j.check_stopped(now_ms));
        } else if j.record.state == RunState::Running {
            // Running tasks are re-associated by their events; pending ones start (idempotently).
            fx.extend(j.restart_running());
            fx.extend(j.next_starts());
        }
        (j, fx)
    }

    pub fn run_id(&self) -> &RunId {
        &self.record.run_id
    }

    pub fn state(&self) -> RunState {
        self.record.state
    }

    fn set_state(&mut self, state: RunState, now_ms: u64) -> Vec<RunEffect> {
        if self.record.state == state {
            return vec![];
        }
        self.record.state = state;
        self.record.updated_at_ms = now_ms;
        vec![RunEffect::Announce(state), RunEffect::Persist]
    }

    fn running_nodes(&self) -> BTreeSet<NodeId> {
        self.record
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Running)
            .map(|t| t.node_id.clone())
            .collect()
    }

    /// Reconciles the tasks recorded as running with their nodes.
    fn restart_running(&self) -> Vec<RunEffect> {
        self.record
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Running)
            .map(|t| RunEffect::Reconcile {
                node: t.node_id.clone(),
                spec: self.task_spec(t),
            })
            .collect()
    }

    fn task_spec(&self, t: &TaskRecord) -> WorkloadSpec {
        let mut spec = self.record.spec.workload.clone();
        spec.workload_id = t.workload_id.clone();
        spec.run_id = Some(self.record.run_id.clone());
        spec.rep = Some(t.rep);
        spec
    }

    /// The next repetition of every node that has none running.
    fn next_starts(&mut self) -> Vec<RunEffect> {
        if self.record.state != RunState::Running {
            return vec![];
        }
        let busy = self.running_nodes();
        let mut started = BTreeSet::new();
        let mut fx = Vec::new();
        for i in 0..self.record.tasks.len() {
            let t = &self.record.tasks[i];
            if t.status != TaskStatus::Pending
                || busy.contains(&t.node_id)
                || started.contains(&t.node_id)
            {
                continue;
            }
            started.insert(t.node_id.clone());
            let spec = self.task_spec(t);
            let t = &mut self.record.tasks[i];
            t.status = TaskStatus::Running;
            fx.push(RunEffect::Start {
                node: t.node_id.clone(),
                spec,
            });
        }
        if !fx.is_empty() {
            fx.push(RunEffect::Persist);
        }
        fx
    }

    fn task_mut(&mut self, node: &NodeId, workload: &WorkloadId) -> Option<&mut TaskRecord> {
        self.record
            .tasks
            .iter_mut()
            .find(|t| t.node_id == *node && t.workload_id.as_ref() == Some(workload))
    }

    /// A workload event of this run (from `evt.<node>.workload.<state>`).
    pub fn on_workload_event(
        &mut self,
        node: &NodeId,
        ev: &WorkloadEvent,
        now_ms: u64,
    ) -> Vec<RunEffect> {
        let seen = Observed {
            state: ev.state,
            exit_code: ev.exit_code,
            reason: ev.reason.clone(),
            started_at_ms: (ev.state == WorkloadState::Running).then_some(ev.ts_ms),
            ts_ms: ev.ts_ms,
        };
        self.observe(node, &ev.workload_id, seen, now_ms)
    }

    /// A task's workload as its node reports it (`workload.get`, or an element of
    /// `workload.list`), after a coordinator restart: the same outcome as the events it stands
    /// for. A settled status settles the task — and confirms the node's stop when it was the
    /// node's last running task.
    pub fn on_task_status(
        &mut self,
        node: &NodeId,
        status: &WorkloadStatus,
        now_ms: u64,
    ) -> Vec<RunEffect> {
        let seen = Observed {
            state: status.state,
            exit_code: status.exit_code,
            reason: status.reason.clone(),
            started_at_ms: status.started_at_ms,
            ts_ms: status.finished_at_ms.unwrap_or(now_ms),
        };
        self.observe(node, &status.workload_id, seen, now_ms)
    }

    /// A node's answer to `workload.list {run_id}`: each listed workload as
    /// [`RunJournal::on_task_status`]. While the run stops, a task the node does not list runs
    /// nowhere: it counts as stopped (skipped if it never started).
    pub fn on_node_workloads(
        &mut self,
        node: &NodeId,
        listed: &[WorkloadStatus],
        now_ms: u64,
    ) -> Vec<RunEffect> {
        let mut fx = Vec::new();
        for status in listed {
            fx.extend(self.on_task_status(node, status, now_ms));
        }
        if self.stop.is_none() {
            return fx;
        }
        let mut changed = false;
        for t in self.record.tasks.iter_mut().filter(|t| {
            t.node_id == *node
                && t.status == TaskStatus::Running
                && !listed
                    .iter()
                    .any(|s| t.workload_id.as_ref() == Some(&s.workload_id))
        }) {
            t.status = if t.started_at_ms.is_some() {
                TaskStatus::Stopped
            } else {
                TaskStatus::Skipped
            };
            t.finished_at_ms = Some(now_ms);
            changed = true;
        }
        if changed {
            self.record.updated_at_ms = now_ms;
            fx.push(RunEffect::Persist);
            fx.extend(self.advance(now_ms));
        }
        fx
    }

    fn observe(
        &mut self,
        node: &NodeId,
        workload: &WorkloadId,
        seen: Observed,
        now_ms: u64,
    ) -> Vec<RunEffect> {
        let Observed {
            state,
            exit_code,
            reason,
            started_at_ms,
            ts_ms,
        } = seen;
        // During a stop, and after its verdict, an ended task counts as stopped.
        let stopping = !matches!(self.record.state, RunState::Pending | RunState::Running);
        let Some(t) = self.task_mut(node, workload) else {
            return vec![];
        };
        if is_settled(t.status) {
            return vec![]; // late or duplicate
        }
        let started = t.started_at_ms.is_none() && started_at_ms.is_some();
        if started {
            t.started_at_ms = started_at_ms;
            t.status = TaskStatus::Running;
        }
        let outcome = match state {
            WorkloadState::Pending | WorkloadState::Starting | WorkloadState::Running => {
                return if started {
                    vec![RunEffect::Persist]
                } else {
                    vec![]
                };
            }
            WorkloadState::Exited if exit_code == Some(0) => TaskStatus::Completed,
            WorkloadState::Stopped | WorkloadState::Killed if stopping => TaskStatus::Stopped,
            WorkloadState::Exited
            | WorkloadState::Failed
            | WorkloadState::Killed
            | WorkloadState::OomKilled
            | WorkloadState::TimedOut
            | WorkloadState::Stopped => TaskStatus::Failed,
            WorkloadState::Lost => TaskStatus::Lost,
        };
        t.status = outcome;
        t.finished_at_ms = Some(ts_ms);
        t.duration_s = t
            .started_at_ms
            .map(|s| ts_ms.saturating_sub(s) as f64 / 1e3);
        t.exit_code = exit_code;
        if matches!(outcome, TaskStatus::Failed | TaskStatus::Lost) {
            t.error = reason.or_else(|| Some(format!("workload {}", state.as_str())));
        }
        let mut fx = vec![RunEffect::Persist];
        self.record.updated_at_ms = now_ms;
        fx.extend(self.advance(now_ms));
        fx
    }

    /// A start request failed (the node refused or did not answer).
    pub fn on_start_failed(
        &mut self,
        node: &NodeId,
        workload: &WorkloadId,
        error: String,
        now_ms: u64,
    ) -> Vec<RunEffect> {
        let Some(t) = self.task_mut(node, workload) else {
            return vec![];
        };
        if is_settled(t.status) {
            return vec![];
        }
        t.status = TaskStatus::Failed;
        t.error = Some(error);
        t.finished_at_ms = Some(now_ms);
        let mut fx = vec![RunEffect::Persist];
        fx.extend(self.advance(now_ms));
        fx
    }

    /// The node is lost: its running task is LOST, its pending ones SKIPPED; the run goes on
    /// elsewhere.
    pub fn on_node_lost(&mut self, node: &NodeId, now_ms: u64) -> Vec<RunEffect> {
        let mut changed = false;
        for t in self.record.tasks.iter_mut().filter(|t| t.node_id == *node) {
            let to = match t.status {
                TaskStatus::Running => TaskStatus::Lost,
                TaskStatus::Pending => TaskStatus::Skipped,
                _ => continue,
            };
            t.status = to;
            t.finished_at_ms = Some(now_ms);
            t.error = Some(format!("node {node} was lost"));
            changed = true;
        }
        if !changed {
            return vec![];
        }
        if let Some(stop) = self.stop.as_mut() {
            stop.node_lost(node);
        }
        let mut fx = vec![RunEffect::Persist];
        fx.extend(self.advance(now_ms));
        fx
    }

    /// Starts the next repetitions, settles the run when every task is settled, and counts stop
    /// confirmations.
    fn advance(&mut self, now_ms: u64) -> Vec<RunEffect> {
        if self.stop.is_some() {
            return self.check_stopped(now_ms);
        }
        if self.record.state != RunState::Running {
            return vec![]; // settled (e.g. stop_failed): late events are recorded, not judged
        }
        let mut fx = self.next_starts();
        if self.record.tasks.iter().all(|t| is_settled(t.status)) {
            let ok = self
                .record
                .tasks
                .iter()
                .all(|t| t.status == TaskStatus::Completed);
            fx.extend(self.set_state(
                if ok {
                    RunState::Completed
                } else {
                    RunState::Failed
                },
                now_ms,
            ));
        }
        fx
    }

    /// Stop: pending repetitions are skipped, every node with a running task is asked to stop
    /// the run and must confirm (with an event of its task) before `stop_timeout_s`.
    pub fn on_stop(&mut self, now_ms: u64) -> Vec<RunEffect> {
        if !matches!(self.record.state, RunState::Pending | RunState::Running) {
            return vec![];
        }
        for t in self
            .record
            .tasks
            .iter_mut()
            .filter(|t| t.status == TaskStatus::Pending)
        {
            t.status = TaskStatus::Skipped;
        }
        let nodes = self.running_nodes();
        let mut fx = self.set_state(RunState::Stopping, now_ms);
        for n in &nodes {
            fx.push(RunEffect::StopOnNode { node: n.clone() });
        }
        self.stop = Some(StopProtocol::new(
            nodes,
            now_ms,
            stop_timeout_ms(&self.record.spec),
        ));
        fx.extend(self.check_stopped(now_ms));
        fx
    }

    /// Counts as confirmed every awaited node with no running task left, and settles the stop
    /// when its verdict is in.
    fn check_stopped(&mut self, now_ms: u64) -> Vec<RunEffect> {
        let running = self.running_nodes();
        let Some(stop) = self.stop.as_mut() else {
            return vec![];
        };
        let done: Vec<NodeId> = stop
            .awaiting()
            .filter(|n| !running.contains(*n))
            .cloned()
            .collect();
        for n in &done {
            stop.confirm(n);
        }
        self.settle_stop(now_ms)
    }

    fn settle_stop(&mut self, now_ms: u64) -> Vec<RunEffect> {
        let Some(verdict) = self.stop.as_ref().and_then(|s| s.verdict(now_ms)) else {
            return vec![];
        };
        self.stop = None;
        match verdict {
            StopVerdict::Stopped => {
                self.record.unconfirmed_nodes.clear();
                self.set_state(RunState::Stopped, now_ms)
            }
            StopVerdict::StopFailed(nodes) => {
                self.record.unconfirmed_nodes = nodes;
                self.set_state(RunState::StopFailed, now_ms)
            }
        }
    }

    pub fn tick(&mut self, now_ms: u64) -> Vec<RunEffect> {
        self.settle_stop(now_ms)
    }

    /// Task counts per status, for the run catalog.
    pub fn counts(&self) -> BTreeMap<String, u32> {
        let mut m = BTreeMap::new();
        for t in &self.record.tasks {
            *m.entry(
                serde_json::to_value(t.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
            )
            .or_insert(0) += 1;
        }
        m
    }
}

fn stop_timeout_ms(spec: &RunSpec) -> u64 {
    (spec.stop_timeout_s.unwrap_or(DEFAULT_STOP_TIMEOUT_S) * 1000.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::{RunTargets, TaskStatus::*};

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
        task_workload_id(j.run_id(), &n(node), rep)
    }

    fn event(
        workload: WorkloadId,
        state: WorkloadState,
        code: Option<i32>,
        t: u64,
    ) -> WorkloadEvent {
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
        let other = task_workload_id(&RunId::new("other").unwrap(), &n("a"), 1);
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
}
