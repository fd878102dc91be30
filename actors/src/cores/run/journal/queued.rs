//! A queued run: journaled and announced like any other, with no task until its nodes have
//! room; then it goes on as a fresh submission placed there would.

use super::{RunEffect, RunJournal};
use herd_bus::{NodeId, RunId, RunRecord, RunSpec, RunState};

impl RunJournal {
    /// A run whose tasks do not fit now: it waits `queued`, saved, with why.
    pub fn queued(
        run_id: RunId,
        spec: RunSpec,
        reason: String,
        now_ms: u64,
    ) -> (RunJournal, Vec<RunEffect>) {
        let variants = herd_bus::campaign::variants(&spec);
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
            verdict: None,
            variants,
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
        self.record.tasks = super::campaign::tasks_over(
            &self.record.run_id,
            &self.record.spec,
            nodes,
            &self.variants,
        );
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
