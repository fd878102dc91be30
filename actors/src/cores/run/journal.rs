//! A run's journal: one task per node × repetition, fed with workload events, task statuses,
//! node loss, stop requests and the clock; it answers with effects.

use super::stop::{StopProtocol, StopVerdict};
use herd_bus::campaign::{self as suite, Variant};
use herd_bus::TaskPhase;
use herd_bus::{
    NodeId, ResourceSummary, RunId, RunList, RunListQuery, RunRecord, RunSpec, RunState,
    RunSummary, TaskRecord, TaskResults, TaskStatus, WorkloadEvent, WorkloadId, WorkloadSpec,
    WorkloadState, WorkloadStatus,
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
    /// While stopping, once every node confirmed or the timeout passed: the verdict, given
    /// when the teardowns have run.
    verdict: Option<StopVerdict>,
    /// What each node runs, in order (setup, each workload's variants, teardown).
    variants: Vec<Variant>,
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

pub(super) fn is_settled(s: TaskStatus) -> bool {
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
        let variants = suite::variants(&spec);
        let tasks = campaign::tasks_over(&run_id, &spec, nodes, &variants);
        let mut j = RunJournal {
            record: RunRecord {
                run_id,
                state: RunState::Pending,
                spec,
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                tasks,
                unconfirmed_nodes: vec![],
                queued_reason: None,
            },
            stop: None,
            verdict: None,
            variants,
        };
        let mut fx = j.set_state(RunState::Running, now_ms);
        fx.extend(j.next_starts());
        (j, fx)
    }

    /// Resumes a journal saved before a coordinator restart.
    pub fn resume(record: RunRecord, now_ms: u64) -> (RunJournal, Vec<RunEffect>) {
        let stopping = record.state == RunState::Stopping;
        let timeout = stop_timeout_ms(&record.spec);
        let variants = suite::variants(&record.spec);
        let mut j = RunJournal {
            record,
            stop: None,
            verdict: None,
            variants,
        };
        let mut fx = Vec::new();
        if stopping {
            // Ask again, and ask what has settled: confirmations may have come while the
            // coordinator was away, and a workload that settled then says nothing new. A
            // running teardown is left to finish.
            fx.extend(j.reconcile_teardowns());
            let nodes = j.stoppable_nodes();
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

    /// Nodes running a task a stop interrupts: any but a teardown.
    fn stoppable_nodes(&self) -> BTreeSet<NodeId> {
        self.record
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Running && t.phase != TaskPhase::Teardown)
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

    /// The workload a task starts: its variant's spec (a journal from before suites has one
    /// workload), with the task's ids and the run's inputs.
    fn task_spec(&self, t: &TaskRecord) -> WorkloadSpec {
        let variant = t
            .workload
            .as_ref()
            .and_then(|name| self.variants.iter().find(|v| v.name == *name))
            .or_else(|| {
                self.variants
                    .iter()
                    .find(|v| v.phase == TaskPhase::Workloads)
            });
        let mut spec = variant.map(|v| v.spec.clone()).unwrap_or_default();
        spec.workload_id = t.workload_id.clone();
        spec.run_id = Some(self.record.run_id.clone());
        spec.rep = Some(t.rep);
        spec.inputs = self.record.spec.inputs.clone();
        spec
    }

    /// The next task of every node that has none running, in the node's order. While running,
    /// a node that has not begun waits while `max_parallel` nodes are busy; while stopping,
    /// only teardowns start, on nodes that have confirmed the stop.
    fn next_starts(&mut self) -> Vec<RunEffect> {
        let stopping = self.record.state == RunState::Stopping;
        if self.record.state != RunState::Running && !stopping {
            return vec![];
        }
        let busy = self.running_nodes();
        let awaiting: BTreeSet<NodeId> = self
            .stop
            .as_ref()
            .map(|s| s.awaiting().cloned().collect())
            .unwrap_or_default();
        let mut active = self.active_nodes();
        let limit = self.record.spec.max_parallel.unwrap_or(u32::MAX) as usize;
        let mut started = BTreeSet::new();
        let mut fx = Vec::new();
        for i in 0..self.record.tasks.len() {
            let t = &self.record.tasks[i];
            if t.status != TaskStatus::Pending
                || busy.contains(&t.node_id)
                || started.contains(&t.node_id)
                || (stopping && (t.phase != TaskPhase::Teardown || awaiting.contains(&t.node_id)))
            {
                continue;
            }
            if !active.contains(&t.node_id) {
                if active.len() >= limit {
                    continue;
                }
                active.insert(t.node_id.clone());
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
        let i = self.task_index(node, workload)?;
        Some(&mut self.record.tasks[i])
    }

    fn task_index(&self, node: &NodeId, workload: &WorkloadId) -> Option<usize> {
        self.record
            .tasks
            .iter()
            .position(|t| t.node_id == *node && t.workload_id.as_ref() == Some(workload))
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
        let mut fx = self.record_resources(node, &ev.workload_id, ev.resources.as_ref());
        fx.extend(self.observe(node, &ev.workload_id, seen, now_ms));
        fx
    }

    /// What a task's workload used, as its node measured it at the end (in the settled event,
    /// or the settled status after a coordinator restart): kept on the task, even when the
    /// event is late for the task's status.
    fn record_resources(
        &mut self,
        node: &NodeId,
        workload: &WorkloadId,
        resources: Option<&ResourceSummary>,
    ) -> Vec<RunEffect> {
        let (Some(used), Some(t)) = (resources, self.task_mut(node, workload)) else {
            return vec![];
        };
        if t.resources.as_ref() == Some(used) {
            return vec![];
        }
        t.resources = Some(used.clone());
        vec![RunEffect::Persist]
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
        let mut fx = self.record_resources(node, &status.workload_id, status.resources.as_ref());
        fx.extend(self.observe(node, &status.workload_id, seen, now_ms));
        fx
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
        let Some(i) = self.task_index(node, workload) else {
            return vec![];
        };
        let t = &mut self.record.tasks[i];
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
        self.after_settled(i, now_ms);
        fx.extend(self.advance(now_ms));
        fx
    }

    /// A node uploaded a task's output (`evt.<node>.results`). Recorded whatever the task's
    /// status: the upload may be reported before its last lifecycle event is, and a run that
    /// has settled still gets its tasks' results. It changes nothing else.
    pub fn on_results(
        &mut self,
        node: &NodeId,
        workload: &WorkloadId,
        results: TaskResults,
        now_ms: u64,
    ) -> Vec<RunEffect> {
        let Some(t) = self.task_mut(node, workload) else {
            return vec![];
        };
        if t.results.as_ref() == Some(&results) {
            return vec![]; // sent again after a node restart
        }
        t.results = Some(results);
        self.record.updated_at_ms = now_ms;
        vec![RunEffect::Persist]
    }

    /// A start request was refused (or never answered, however often it was sent).
    pub fn on_start_failed(
        &mut self,
        node: &NodeId,
        workload: &WorkloadId,
        error: String,
        now_ms: u64,
    ) -> Vec<RunEffect> {
        let Some(i) = self.task_index(node, workload) else {
            return vec![];
        };
        let t = &mut self.record.tasks[i];
        if is_settled(t.status) {
            return vec![];
        }
        t.status = TaskStatus::Failed;
        t.error = Some(error);
        t.finished_at_ms = Some(now_ms);
        let mut fx = vec![RunEffect::Persist];
        self.after_settled(i, now_ms);
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
        if self.record.state == RunState::Stopping {
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

    /// Task counts per status, for the run catalog.
    pub fn counts(&self) -> BTreeMap<String, u32> {
        let mut m = BTreeMap::new();
        for t in &self.record.tasks {
            *m.entry(t.status.as_str().to_string()).or_insert(0) += 1;
        }
        m
    }

    /// The run's line in the catalog.
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            run_id: self.record.run_id.clone(),
            state: self.record.state,
            created_at_ms: self.record.created_at_ms,
            updated_at_ms: self.record.updated_at_ms,
            tasks: self.counts(),
        }
    }
}

/// The run catalog (`cluster.run.list`): newest first, optionally one state only, at most
/// `limit` runs (100 by default).
pub fn catalog<'a>(runs: impl IntoIterator<Item = &'a RunJournal>, q: &RunListQuery) -> RunList {
    let mut runs: Vec<RunSummary> = runs
        .into_iter()
        .filter(|j| q.state.is_none_or(|s| j.state() == s))
        .map(RunJournal::summary)
        .collect();
    runs.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
    runs.truncate(q.limit.unwrap_or(100) as usize);
    RunList { runs }
}

fn stop_timeout_ms(spec: &RunSpec) -> u64 {
    (spec.stop_timeout_s.unwrap_or(DEFAULT_STOP_TIMEOUT_S) * 1000.0) as u64
}

mod campaign;
#[cfg(test)]
mod campaign_tests;
mod queued;
mod starting;
mod stopping;
pub use starting::UnansweredStart;
#[cfg(test)]
mod tests;
