//! A run stopping: pending tasks skipped, nodes asked to stop and confirm, teardowns on the
//! nodes that confirmed, then the verdict.

use super::{stop_timeout_ms, RunEffect, RunJournal};
use crate::cores::run::stop::{StopProtocol, StopVerdict};
use herd_bus::{NodeId, RunState, TaskPhase, TaskStatus};

impl RunJournal {
    /// Stop: pending tasks are skipped (but the teardown of a node that has begun), every
    /// node running a task other than its teardown is asked to stop the run and must confirm
    /// (with an event of its task) before `stop_timeout_s`; each node that confirms runs its
    /// teardown, and the verdict is given once the teardowns have run.
    pub fn on_stop(&mut self, now_ms: u64) -> Vec<RunEffect> {
        if self.record.state == RunState::Queued {
            return self.stop_queued(now_ms);
        }
        if !matches!(self.record.state, RunState::Pending | RunState::Running) {
            return vec![];
        }
        let begun = self.begun_nodes();
        for t in self
            .record
            .tasks
            .iter_mut()
            .filter(|t| t.status == TaskStatus::Pending)
        {
            if t.phase != TaskPhase::Teardown || !begun.contains(&t.node_id) {
                t.status = TaskStatus::Skipped;
            }
        }
        let nodes = self.stoppable_nodes();
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

    /// Counts as confirmed every awaited node with nothing but its teardown running, starts
    /// the teardowns of confirmed nodes, and settles the stop when its verdict is in and the
    /// teardowns have run.
    pub(super) fn check_stopped(&mut self, now_ms: u64) -> Vec<RunEffect> {
        let stoppable = self.stoppable_nodes();
        if let Some(stop) = self.stop.as_mut() {
            let done: Vec<NodeId> = stop
                .awaiting()
                .filter(|n| !stoppable.contains(*n))
                .cloned()
                .collect();
            for n in &done {
                stop.confirm(n);
            }
            if let Some(verdict) = stop.verdict(now_ms) {
                self.stop = None;
                if let StopVerdict::StopFailed(nodes) = &verdict {
                    for t in
                        self.record.tasks.iter_mut().filter(|t| {
                            t.status == TaskStatus::Pending && nodes.contains(&t.node_id)
                        })
                    {
                        t.status = TaskStatus::Skipped;
                        t.error = Some(format!("node {} did not confirm the stop", t.node_id));
                    }
                }
                self.verdict = Some(verdict);
            }
        }
        let mut fx = self.next_starts();
        let tearing_down = self.record.tasks.iter().any(|t| {
            t.phase == TaskPhase::Teardown
                && matches!(t.status, TaskStatus::Pending | TaskStatus::Running)
        });
        if tearing_down {
            return fx;
        }
        match self.verdict.take() {
            None => {}
            Some(StopVerdict::Stopped) => {
                self.record.unconfirmed_nodes.clear();
                fx.extend(self.set_state(RunState::Stopped, now_ms));
            }
            Some(StopVerdict::StopFailed(nodes)) => {
                self.record.unconfirmed_nodes = nodes;
                fx.extend(self.set_state(RunState::StopFailed, now_ms));
            }
        }
        fx
    }

    pub fn tick(&mut self, now_ms: u64) -> Vec<RunEffect> {
        if self.record.state != RunState::Stopping {
            return vec![];
        }
        self.check_stopped(now_ms)
    }
}
