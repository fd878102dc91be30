//! A queued run: journaled and announced like any other, with no task until its nodes have
//! room; then it goes on as a fresh submission placed there would.

use super::{RunEffect, RunJournal};
use crate::cores::run::plan::task_workload_id;
use herd_bus::{NodeId, RunId, RunRecord, RunSpec, RunState, TaskRecord, TaskStatus};

impl RunJournal {
    /// A run whose tasks do not fit now: it waits `queued`, saved, with why.
    pub fn queued(
        run_id: RunId,
        spec: RunSpec,
        reason: String,
        now_ms: u64,
    ) -> (RunJournal, Vec<RunEffect>) {
        let j = RunJournal {
            record: RunRecord {
                run_id,
                state: RunState::Queued,
                spec,
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                tasks: vec![],
                unconfirmed_nodes: vec![],
                queued_reason: Some(reason),
            },
            stop: None,
        };
        (
            j,
            vec![RunEffect::Announce(RunState::Queued), RunEffect::Persist],
        )
    }

    /// Still no room: it keeps waiting; a new reason is saved.
    pub fn still_queued(&mut self, reason: String, now_ms: u64) -> Vec<RunEffect> {
        if self.record.state != RunState::Queued
            || self.record.queued_reason.as_ref() == Some(&reason)
        {
            return vec![];
        }
        self.record.queued_reason = Some(reason);
        self.record.updated_at_ms = now_ms;
        vec![RunEffect::Persist]
    }

    /// Room on `nodes` (placed as for a fresh submission): its tasks are made and the first
    /// repetition on each node starts.
    pub fn dequeue(&mut self, nodes: &[NodeId], now_ms: u64) -> Vec<RunEffect> {
        if self.record.state != RunState::Queued {
            return vec![];
        }
        self.record.tasks = tasks_over(&self.record.run_id, &self.record.spec, nodes);
        self.record.queued_reason = None;
        let mut fx = self.set_state(RunState::Running, now_ms);
        fx.extend(self.next_starts());
        fx
    }

    /// Stopped while queued: no task ever started, no node to ask.
    pub(super) fn stop_queued(&mut self, now_ms: u64) -> Vec<RunEffect> {
        self.record.queued_reason = None;
        self.set_state(RunState::Stopped, now_ms)
    }
}

/// One pending task per node × repetition (`node::name::rep`).
pub(super) fn tasks_over(run_id: &RunId, spec: &RunSpec, nodes: &[NodeId]) -> Vec<TaskRecord> {
    let name = spec.workload.name.clone().unwrap_or_else(|| "task".into());
    let mut tasks = Vec::new();
    for node in nodes {
        for rep in 1..=spec.repetitions {
            tasks.push(TaskRecord {
                task_id: format!("{node}::{name}::{rep}"),
                node_id: node.clone(),
                rep,
                status: TaskStatus::Pending,
                workload_id: Some(task_workload_id(run_id, node, rep)),
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
