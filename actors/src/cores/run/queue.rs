//! Queued runs: which run waits, and which starts when room appears. Sans-IO: the fleet (the
//! registry and the placements since its heartbeats) and the journals in; the runs that start,
//! with their journals' effects, out.
//!
//! Order: highest `priority` first (default 0); equal priorities in submission order. The
//! order is strict: a run never starts before a queued run submitted earlier at its priority
//! or higher, even when it would fit and that one does not, so a large run at the head is
//! never starved by small ones behind it. A run with `queue = false` is not part of the queue:
//! it starts if it fits now, else it is refused.

use super::journal::{RunEffect, RunJournal};
use super::plan::{plan, PlanError};
use crate::cores::pending::{PendingPlacements, ResourceRequest};
use crate::cores::registry::{NodeRegistry, DEFAULT_HEARTBEAT_INTERVAL_MS};
use herd_bus::{ErrorBody, NodeId, RunId, RunRecord, RunSpec, RunState};
use std::collections::BTreeMap;

/// What becomes of a submitted run.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// It fits now, on these nodes.
    Start(Vec<NodeId>),
    /// It waits, for this reason.
    Queue(String),
    /// It is refused (a bad spec, or no room and `queue = false`).
    Refuse(ErrorBody),
}

#[derive(Debug, Clone)]
struct Waiting {
    run_id: RunId,
    priority: i32,
    /// Submission order.
    seq: u64,
}

/// The queued runs, in the order they may start.
#[derive(Debug, Clone, Default)]
pub struct RunQueue {
    waiting: Vec<Waiting>,
    next_seq: u64,
}

fn priority(spec: &RunSpec) -> i32 {
    spec.priority.unwrap_or(0)
}

impl RunQueue {
    /// Appends a queued run behind the others of its priority.
    pub fn push(&mut self, run_id: RunId, priority: i32) {
        self.waiting.retain(|w| w.run_id != run_id);
        self.waiting.push(Waiting {
            run_id,
            priority,
            seq: self.next_seq,
        });
        self.next_seq += 1;
        self.waiting
            .sort_by(|a, b| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
    }

    /// The queued runs of a restored coordinator, in the order they were submitted (by their
    /// creation time, then id).
    pub fn restore<'a>(&mut self, records: impl IntoIterator<Item = &'a RunRecord>) {
        let mut queued: Vec<&RunRecord> = records
            .into_iter()
            .filter(|r| r.state == RunState::Queued)
            .collect();
        queued.sort_by(|a, b| {
            a.created_at_ms
                .cmp(&b.created_at_ms)
                .then_with(|| a.run_id.cmp(&b.run_id))
        });
        for r in queued {
            self.push(r.run_id.clone(), priority(&r.spec));
        }
    }

    /// Takes a run out of the queue (it started, or was stopped); false when it was not there.
    pub fn remove(&mut self, run_id: &RunId) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|w| w.run_id != *run_id);
        self.waiting.len() != before
    }

    /// The queued runs, first to start first.
    pub fn ordered(&self) -> Vec<RunId> {
        self.waiting.iter().map(|w| w.run_id.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// What becomes of `spec`, submitted now: refused when invalid; queued when it does not
    /// fit, or when queued runs of its priority or higher wait before it; else started.
    pub fn admission(
        &self,
        spec: &RunSpec,
        registry: &NodeRegistry,
        pending: &PendingPlacements,
        round_robin: usize,
    ) -> Admission {
        let may_wait = spec.queue != Some(false);
        match plan(spec, registry, pending, round_robin) {
            Err(PlanError::Invalid(why)) => Admission::Refuse(ErrorBody::bad_request(why)),
            Err(PlanError::NoRoom(why)) if !may_wait => {
                Admission::Refuse(ErrorBody::unavailable(format!("{why} (queue = false)")))
            }
            Err(PlanError::NoRoom(why)) => Admission::Queue(why),
            Ok(nodes) => {
                let p = priority(spec);
                let ahead = self.waiting.iter().filter(|w| w.priority >= p).count();
                if may_wait && ahead > 0 {
                    Admission::Queue(format!(
                        "behind {ahead} queued run{} of priority {p} or higher",
                        if ahead == 1 { "" } else { "s" }
                    ))
                } else {
                    Admission::Start(nodes)
                }
            }
        }
    }

    /// Tries the queued runs in order: each that fits now starts (its starts held in
    /// `pending`, so the next one sees them); the first that does not ends the pass, its
    /// reason refreshed. A run no longer queued (stopped meanwhile) leaves the queue.
    pub fn admit(
        &mut self,
        runs: &mut BTreeMap<RunId, RunJournal>,
        registry: &NodeRegistry,
        pending: &mut PendingPlacements,
        round_robin: usize,
        now_ms: u64,
    ) -> Vec<(RunId, Vec<RunEffect>)> {
        let mut out = Vec::new();
        for id in self.ordered() {
            let Some(j) = runs.get_mut(&id).filter(|j| j.state() == RunState::Queued) else {
                self.remove(&id);
                continue;
            };
            match plan(&j.record.spec, registry, pending, round_robin) {
                Ok(nodes) => {
                    self.remove(&id);
                    let fx = j.dequeue(&nodes, now_ms);
                    hold_starts(pending, registry, &fx, now_ms);
                    out.push((id, fx));
                }
                // Whatever stands in the way now (no room, or its nodes down), it waits: the
                // fleet may change; an operator can stop it.
                Err(why) => {
                    let fx = j.still_queued(why.reason().to_string(), now_ms);
                    if !fx.is_empty() {
                        out.push((id, fx));
                    }
                    break;
                }
            }
        }
        out
    }
}

/// Holds in `pending` what the `Start` effects among `effects` ask of their nodes, until a
/// heartbeat of the node lists them.
pub fn hold_starts(
    pending: &mut PendingPlacements,
    registry: &NodeRegistry,
    effects: &[RunEffect],
    now_ms: u64,
) {
    for effect in effects {
        let RunEffect::Start { node, spec } = effect else {
            continue;
        };
        let Some(workload) = &spec.workload_id else {
            continue;
        };
        let interval_ms = registry
            .get(node)
            .and_then(|r| r.heartbeat.as_ref())
            .map_or(DEFAULT_HEARTBEAT_INTERVAL_MS, |hb| hb.interval_ms);
        let ask = ResourceRequest::of(&spec.limits);
        pending.placed(node, workload, ask, interval_ms, now_ms);
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
