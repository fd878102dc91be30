//! A start its node did not answer (no reply in time, or no one listening). The node may well
//! have acted on it — the reply lost as it was cut off, say — so the task is not failed on a
//! guess: while the run waits on it the start is sent again (starts are idempotent by workload
//! id); once the run no longer does, the node's events and liveness settle the task (`LOST`
//! with its node). Only an up node that keeps leaving it unanswered fails it.

use super::RunJournal;
use herd_bus::{NodeId, RunState, TaskStatus, WorkloadId};

/// Starts an up node may leave unanswered before its task fails.
pub const UNANSWERED_STARTS: u32 = 3;

/// What to do about a start its node did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnansweredStart {
    /// The run no longer waits on it (stopping, settled, or the task settled).
    Leave,
    /// Send it again; `unanswered`: how many so far while the node was up.
    Again { unanswered: u32 },
    /// Fail the task ([`RunJournal::on_start_failed`]): that many unanswered, the node up.
    Fail { unanswered: u32 },
}

impl RunJournal {
    /// Whether the run still waits on its node starting this task (sent, not settled, and
    /// the run running).
    pub fn wants_start(&self, node: &NodeId, workload: &WorkloadId) -> bool {
        self.record.state == RunState::Running
            && self
                .task_index(node, workload)
                .is_some_and(|i| self.record.tasks[i].status == TaskStatus::Running)
    }

    /// The start of `workload` on `node` got no answer; `unanswered` before it did too while
    /// the node was up. A stale node's silence is its liveness' to judge: only an up node's
    /// counts against the task.
    pub fn on_start_unanswered(
        &self,
        node: &NodeId,
        workload: &WorkloadId,
        node_up: bool,
        unanswered: u32,
    ) -> UnansweredStart {
        if !self.wants_start(node, workload) {
            return UnansweredStart::Leave;
        }
        let unanswered = unanswered + u32::from(node_up);
        if unanswered >= UNANSWERED_STARTS {
            UnansweredStart::Fail { unanswered }
        } else {
            UnansweredStart::Again { unanswered }
        }
    }
}
