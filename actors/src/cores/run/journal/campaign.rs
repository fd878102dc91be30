//! A run as a campaign: each node's sequence of tasks (setup, the workloads' variants and
//! repetitions, teardown), what a failed setup and a failed task do, and `cluster.run.retry`.

use super::{is_settled, RunEffect, RunJournal};
use crate::cores::run::plan::task_workload_id;
use herd_bus::campaign::Variant;
use herd_bus::{
    NodeId, RunId, RunRetry, RunSpec, RunState, SetupFailure, TaskAttempt, TaskOrder, TaskPhase,
    TaskRecord, TaskStatus,
};
use std::collections::BTreeSet;

/// Each node's tasks, in the order it runs them: setup, then the workloads' tasks
/// (`workload_major`: each variant with all its repetitions; `rep_major`: repetition 1 of every
/// variant, then 2, …), then teardown. Ids are `node::variant::rep` (`node::setup::1`).
pub(super) fn tasks_over(
    run_id: &RunId,
    spec: &RunSpec,
    nodes: &[NodeId],
    variants: &[Variant],
) -> Vec<TaskRecord> {
    let workloads: Vec<&Variant> = variants
        .iter()
        .filter(|v| v.phase == TaskPhase::Workloads)
        .collect();
    let mut order: Vec<(&Variant, u32)> = Vec::new();
    match spec.order.unwrap_or_default() {
        TaskOrder::WorkloadMajor => {
            for v in &workloads {
                for rep in 1..=spec.repetitions {
                    order.push((v, rep));
                }
            }
        }
        TaskOrder::RepMajor => {
            for rep in 1..=spec.repetitions {
                for v in &workloads {
                    order.push((v, rep));
                }
            }
        }
    }
    let setup = variants.iter().find(|v| v.phase == TaskPhase::Setup);
    let teardown = variants.iter().find(|v| v.phase == TaskPhase::Teardown);
    let mut tasks = Vec::new();
    for node in nodes {
        let seq = setup
            .map(|v| (v, 1))
            .into_iter()
            .chain(order.iter().copied())
            .chain(teardown.map(|v| (v, 1)));
        for (v, rep) in seq {
            let task_id = format!("{node}::{}::{rep}", v.name);
            tasks.push(TaskRecord {
                workload_id: Some(task_workload_id(run_id, &task_id, 1)),
                task_id,
                node_id: node.clone(),
                rep,
                status: TaskStatus::Pending,
                workload: Some(v.name.clone()),
                phase: v.phase,
                attempt: 1,
                attempts: vec![],
                started_at_ms: None,
                finished_at_ms: None,
                duration_s: None,
                exit_code: None,
                error: None,
                resources: None,
                results: None,
            });
        }
    }
    tasks
}

/// The task as it ended, for its list of attempts.
fn attempt_of(t: &TaskRecord) -> TaskAttempt {
    TaskAttempt {
        attempt: t.attempt.max(1),
        status: t.status,
        workload_id: t.workload_id.clone(),
        started_at_ms: t.started_at_ms,
        finished_at_ms: t.finished_at_ms,
        exit_code: t.exit_code,
        error: t.error.clone(),
        automatic: false,
    }
}

/// The task made pending again as its next attempt (a new workload id: the node starts it
/// afresh), its last attempt kept.
fn next_attempt(run_id: &RunId, t: &mut TaskRecord, automatic: bool) {
    let mut done = attempt_of(t);
    done.automatic = automatic;
    t.attempts.push(done);
    t.attempt = t.attempt.max(1) + 1;
    t.workload_id = Some(task_workload_id(run_id, &t.task_id, t.attempt));
    t.status = TaskStatus::Pending;
    t.started_at_ms = None;
    t.finished_at_ms = None;
    t.duration_s = None;
    t.exit_code = None;
    t.error = None;
    t.resources = None;
    t.results = None;
}

impl RunJournal {
    /// Nodes that have begun their sequence and not finished it: they count against
    /// `max_parallel`.
    pub(super) fn active_nodes(&self) -> BTreeSet<NodeId> {
        // One pass: a node is active when it has both a task that left PENDING and one that has
        // not settled.
        let (mut begun, mut unsettled) = (BTreeSet::new(), BTreeSet::new());
        for t in &self.record.tasks {
            if t.status != TaskStatus::Pending {
                begun.insert(&t.node_id);
            }
            if !is_settled(t.status) {
                unsettled.insert(&t.node_id);
            }
        }
        begun
            .intersection(&unsettled)
            .map(|n| (*n).clone())
            .collect()
    }

    /// Nodes with a task that has left `PENDING`.
    pub(super) fn begun_nodes(&self) -> BTreeSet<NodeId> {
        self.record
            .tasks
            .iter()
            .filter(|t| t.status != TaskStatus::Pending)
            .map(|t| t.node_id.clone())
            .collect()
    }

    /// Reconciles the teardowns recorded as running (after a coordinator restart during a
    /// stop: they are not stopped, and started if their node never got them).
    pub(super) fn reconcile_teardowns(&self) -> Vec<RunEffect> {
        self.record
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Running && t.phase == TaskPhase::Teardown)
            .map(|t| RunEffect::Reconcile {
                node: t.node_id.clone(),
                spec: self.task_spec(t),
            })
            .collect()
    }

    /// What task `i` settling does to the others: a failed workload task with retries left
    /// runs again at once (while the run is running); a setup that did not complete skips its
    /// node's workloads (`skip_node`) or every node's (`abort_run`), teardowns excepted on
    /// nodes that have begun.
    pub(super) fn after_settled(&mut self, i: usize, _now_ms: u64) {
        let running = self.record.state == RunState::Running;
        let t = &self.record.tasks[i];
        match (t.phase, t.status) {
            (TaskPhase::Workloads, TaskStatus::Failed) if running => {
                let retries = t
                    .workload
                    .as_ref()
                    .and_then(|n| self.variants.iter().find(|v| v.name == *n))
                    .map_or(0, |v| v.retries);
                let automatic = t.attempts.iter().rev().take_while(|a| a.automatic).count();
                if (automatic as u32) < retries {
                    let run_id = self.record.run_id.clone();
                    next_attempt(&run_id, &mut self.record.tasks[i], true);
                }
            }
            (TaskPhase::Setup, status) if status != TaskStatus::Completed => {
                let node = t.node_id.clone();
                let why = t
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("setup {}", status.as_str()));
                let abort = self.record.spec.on_setup_failure == Some(SetupFailure::AbortRun);
                let begun = self.begun_nodes();
                for t in self
                    .record
                    .tasks
                    .iter_mut()
                    .filter(|t| t.status == TaskStatus::Pending && (abort || t.node_id == node))
                {
                    if t.phase == TaskPhase::Teardown && begun.contains(&t.node_id) {
                        continue;
                    }
                    t.status = TaskStatus::Skipped;
                    t.error = Some(if t.node_id == node {
                        format!("setup failed: {why}")
                    } else {
                        format!("setup failed on node {node}: {why}")
                    });
                }
            }
            _ => {}
        }
    }

    /// `cluster.run.retry`: once the run has settled, its tasks that did not complete (in
    /// `q.statuses`, default FAILED, STOPPED, SKIPPED, LOST; narrowed to `q.nodes` and
    /// `q.workloads`) run again as their next attempt; on each node concerned, setup runs
    /// again first and teardown after. Every node concerned must be up. Answers the tasks
    /// that will run.
    pub fn retry(
        &mut self,
        q: &RunRetry,
        up: impl Fn(&NodeId) -> bool,
        now_ms: u64,
    ) -> Result<(Vec<String>, Vec<RunEffect>), String> {
        let state = self.record.state;
        if !matches!(
            state,
            RunState::Completed | RunState::Failed | RunState::Stopped | RunState::StopFailed
        ) {
            return Err(format!(
                "run {} is {}: retry once it has settled",
                self.record.run_id,
                state.as_str()
            ));
        }
        // After stop_failed, a node that never confirmed may still run its task.
        if let Some(t) = self
            .record
            .tasks
            .iter()
            .find(|t| t.status == TaskStatus::Running)
        {
            return Err(format!(
                "run {}: task {} is still running on node {} (it never confirmed the stop); retry once it has ended",
                self.record.run_id, t.task_id, t.node_id
            ));
        }
        let statuses: Vec<TaskStatus> = if q.statuses.is_empty() {
            vec![
                TaskStatus::Failed,
                TaskStatus::Stopped,
                TaskStatus::Skipped,
                TaskStatus::Lost,
            ]
        } else {
            q.statuses.clone()
        };
        let of_workload = |t: &TaskRecord| {
            q.workloads.is_empty()
                || t.workload.as_ref().is_some_and(|w| {
                    q.workloads.iter().any(|n| {
                        w == n
                            || w.strip_prefix(n.as_str())
                                .is_some_and(|r| r.starts_with('['))
                    })
                })
        };
        let chosen: Vec<usize> = (0..self.record.tasks.len())
            .filter(|&i| {
                let t = &self.record.tasks[i];
                t.phase == TaskPhase::Workloads
                    && statuses.contains(&t.status)
                    && (q.nodes.is_empty() || q.nodes.contains(&t.node_id))
                    && of_workload(t)
            })
            .collect();
        // A node whose phase did not complete is retried too, workloads or not.
        let phases: Vec<usize> = (0..self.record.tasks.len())
            .filter(|&i| {
                let t = &self.record.tasks[i];
                t.phase != TaskPhase::Workloads
                    && statuses.contains(&t.status)
                    && (q.nodes.is_empty() || q.nodes.contains(&t.node_id))
                    && q.workloads.is_empty()
            })
            .collect();
        let nodes: BTreeSet<NodeId> = chosen
            .iter()
            .chain(&phases)
            .map(|&i| self.record.tasks[i].node_id.clone())
            .collect();
        if nodes.is_empty() {
            return Err(format!(
                "run {}: no task to retry (none {} among those asked)",
                self.record.run_id,
                statuses
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let down: Vec<String> = nodes
            .iter()
            .filter(|n| !up(n))
            .map(|n| n.to_string())
            .collect();
        if !down.is_empty() {
            return Err(format!(
                "run {}: node {} is not up; retry the others with --node",
                self.record.run_id,
                down.join(", ")
            ));
        }
        let run_id = self.record.run_id.clone();
        let mut again = Vec::new();
        for i in 0..self.record.tasks.len() {
            let t = &self.record.tasks[i];
            let phase_of_node = t.phase != TaskPhase::Workloads && nodes.contains(&t.node_id);
            if !(chosen.contains(&i) || phase_of_node) {
                continue;
            }
            next_attempt(&run_id, &mut self.record.tasks[i], false);
            again.push(self.record.tasks[i].task_id.clone());
        }
        self.record.unconfirmed_nodes.clear();
        self.record.updated_at_ms = now_ms;
        let mut fx = self.set_state(RunState::Running, now_ms);
        fx.extend(self.next_starts());
        fx.push(RunEffect::Persist);
        Ok((again, fx))
    }
}
