//! The node's workload table, sans-IO: ids and idempotent starts, conflicts, stop targeting,
//! list filters, retention of settled workloads, and the generation that tells a current
//! process's timers and exits from an earlier one's. The executor owns one and performs the
//! effects its lifecycles ask for; `R` is the driver's handle on a started workload.
//!
//! Every method that feeds lifecycles returns the effects per workload instead of performing
//! them, and nothing is forgotten while effects are being performed: retention runs once a
//! message has been handled ([`WorkloadTable::forget_settled`]), so an id taken from the table
//! is still there when its effects are applied.

use super::lifecycle::{parse_signal, Effect, Lifecycle, DEFAULT_GRACE};
use super::validate::Resolved;
use herd_bus::{
    ErrorBody, NodeId, StopRequest, WorkloadFilter, WorkloadId, WorkloadList, WorkloadSpec,
    WorkloadState, WorkloadStatus,
};
use std::collections::HashMap;
use std::time::Duration;

/// Settled workloads remembered for `get` and `list`; the oldest are forgotten first.
pub const KEEP_SETTLED: usize = 1000;

#[derive(Debug)]
pub struct Entry<R> {
    pub lc: Lifecycle,
    /// What the driver needs to launch it; none after a restart until it launches again.
    pub resolved: Option<Resolved>,
    /// The started workload, until it is released.
    pub running: Option<R>,
    /// Its container or cgroup is being removed.
    pub releasing: bool,
    /// Incremented per launch; timers and exits of an older process are ignored.
    pub generation: u64,
}

impl<R> Entry<R> {
    /// Whether anything of the workload may still exist on the node.
    pub fn live(&self) -> bool {
        !self.lc.state().is_terminal() || self.running.is_some() || self.releasing
    }
}

/// What a start request became.
#[derive(Debug, PartialEq)]
pub enum Admitted {
    /// A new workload, with the effects of its creation.
    New(Vec<Effect>),
    /// A retry of a start already taken (same id, same spec).
    Existing,
}

/// Effects to perform, per workload, in order.
pub type Effects = Vec<(WorkloadId, Vec<Effect>)>;

#[derive(Debug)]
pub struct WorkloadTable<R> {
    node_id: NodeId,
    entries: HashMap<WorkloadId, Entry<R>>,
    keep_settled: usize,
}

impl<R> WorkloadTable<R> {
    pub fn new(node_id: NodeId, keep_settled: usize) -> WorkloadTable<R> {
        WorkloadTable {
            node_id,
            entries: HashMap::new(),
            keep_settled,
        }
    }

    pub fn get(&self, id: &WorkloadId) -> Option<&Entry<R>> {
        self.entries.get(id)
    }

    pub fn get_mut(&mut self, id: &WorkloadId) -> Option<&mut Entry<R>> {
        self.entries.get_mut(id)
    }

    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut Entry<R>> {
        self.entries.values_mut()
    }

    /// `workload.get`.
    pub fn status(&self, id: &WorkloadId) -> Result<WorkloadStatus, ErrorBody> {
        self.entries
            .get(id)
            .map(|e| e.lc.status.clone())
            .ok_or_else(|| ErrorBody::not_found(format!("no workload {id} on this node")))
    }

    /// Takes a validated spec on, or recognises a retry of one already taken.
    pub fn admit(
        &mut self,
        id: WorkloadId,
        spec: WorkloadSpec,
        resolved: Resolved,
        now_ms: u64,
    ) -> Result<Admitted, ErrorBody> {
        if let Some(existing) = self.entries.get(&id) {
            return if existing.lc.status.spec == spec {
                Ok(Admitted::Existing)
            } else {
                Err(ErrorBody::conflict(format!(
                    "workload {id} exists with a different spec"
                )))
            };
        }
        let (lc, effects) = Lifecycle::new(id.clone(), self.node_id.clone(), spec, now_ms);
        self.insert(id, lc, Some(resolved));
        Ok(Admitted::New(effects))
    }

    /// A workload of an earlier herdd, from its saved status; its process, if any, is
    /// generation 1.
    pub fn adopt(&mut self, status: WorkloadStatus, now_ms: u64) -> (WorkloadId, Vec<Effect>) {
        let id = status.workload_id.clone();
        let (lc, effects) = Lifecycle::adopted(status, now_ms);
        self.insert(id.clone(), lc, None);
        if let Some(e) = self.entries.get_mut(&id) {
            e.generation = 1;
        }
        (id, effects)
    }

    fn insert(&mut self, id: WorkloadId, lc: Lifecycle, resolved: Option<Resolved>) {
        self.entries.insert(
            id,
            Entry {
                lc,
                resolved,
                running: None,
                releasing: false,
                generation: 0,
            },
        );
    }

    /// Feeds an input to one lifecycle. No effects when the workload is unknown, or when
    /// `generation` names an earlier process than the current one.
    pub fn input(
        &mut self,
        id: &WorkloadId,
        generation: Option<u64>,
        f: impl FnOnce(&mut Lifecycle) -> Vec<Effect>,
    ) -> Vec<Effect> {
        match self.entries.get_mut(id) {
            Some(e) if generation.is_none_or(|g| g == e.generation) => f(&mut e.lc),
            _ => vec![],
        }
    }

    /// Whether `generation` is the current process of `id`.
    pub fn is_current(&self, id: &WorkloadId, generation: u64) -> bool {
        self.entries
            .get(id)
            .is_some_and(|e| e.generation == generation)
    }

    /// A new process is being launched for `id`: its generation.
    pub fn next_generation(&mut self, id: &WorkloadId) -> Option<u64> {
        self.entries.get_mut(id).map(|e| {
            e.generation += 1;
            e.generation
        })
    }

    /// `workload.stop`, by workload or by run: the stop's effects per workload and the reply.
    pub fn stop(&mut self, req: &StopRequest, now_ms: u64) -> Result<(Effects, String), ErrorBody> {
        if let Some(s) = &req.signal {
            if parse_signal(s).is_none() {
                return Err(ErrorBody::bad_request(format!(
                    "signal: unknown signal '{s}'"
                )));
            }
        }
        let grace = match req.grace_s {
            Some(g) if !g.is_finite() || g < 0.0 => {
                return Err(ErrorBody::bad_request(format!(
                    "grace_s: must be ≥ 0, got {g}"
                )))
            }
            g => g.map(Duration::from_secs_f64),
        };
        let targets: Vec<WorkloadId> = match (&req.workload_id, &req.run_id) {
            (Some(id), _) if !self.entries.contains_key(id) => {
                return Err(ErrorBody::not_found(format!(
                    "no workload {id} on this node"
                )))
            }
            (Some(id), _) => vec![id.clone()],
            (None, Some(run)) => self
                .entries
                .iter()
                .filter(|(_, e)| e.lc.status.spec.run_id.as_ref() == Some(run))
                .map(|(id, _)| id.clone())
                .collect(),
            (None, None) => return Err(ErrorBody::bad_request("give workload_id or run_id")),
        };
        let mut effects = Vec::new();
        let mut stopping = 0;
        for id in targets {
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            let was_live = !e.lc.state().is_terminal();
            let fx = e.lc.on_stop(req.signal.clone(), grace, now_ms);
            if !fx.is_empty() || was_live {
                stopping += 1;
            }
            effects.push((id, fx));
        }
        let message = match (&req.workload_id, &req.run_id) {
            (Some(id), _) if stopping == 0 => match self.entries.get(id) {
                Some(e) => format!("{id} is already {}", e.lc.state().as_str()),
                None => format!("{id} is gone"),
            },
            (Some(id), _) => format!("stopping {id}"),
            (None, run) => format!(
                "stopping {stopping} workload(s) of run {}",
                run.as_ref().map(|r| r.as_str()).unwrap_or_default()
            ),
        };
        Ok((effects, message))
    }

    /// Stops every workload, each with its own grace capped at `grace_cap`.
    pub fn stop_all(&mut self, grace_cap: Duration, now_ms: u64) -> Effects {
        self.entries
            .iter_mut()
            .map(|(id, e)| {
                let grace =
                    e.lc.status
                        .spec
                        .grace_s
                        .map(Duration::from_secs_f64)
                        .unwrap_or(DEFAULT_GRACE)
                        .min(grace_cap);
                (id.clone(), e.lc.on_stop(None, Some(grace), now_ms))
            })
            .collect()
    }

    /// `workload.list`: oldest first.
    /// Every workload's status, in no order.
    pub fn statuses(&self) -> impl Iterator<Item = &WorkloadStatus> {
        self.entries.values().map(|e| &e.lc.status)
    }

    pub fn list(&self, filter: &WorkloadFilter) -> WorkloadList {
        let mut workloads: Vec<WorkloadStatus> = self
            .entries
            .values()
            .map(|e| &e.lc.status)
            .filter(|s| filter.run_id.is_none() || s.spec.run_id == filter.run_id)
            .filter(|s| filter.state.is_none_or(|st| s.state == st))
            .filter(|s| {
                filter
                    .labels
                    .iter()
                    .all(|(k, v)| s.spec.labels.get(k) == Some(v))
            })
            .cloned()
            .collect();
        workloads.sort_by(|a, b| {
            (a.created_at_ms, &a.workload_id).cmp(&(b.created_at_ms, &b.workload_id))
        });
        WorkloadList { workloads }
    }

    /// Workloads that may still have processes, a cgroup or a container.
    pub fn live_count(&self) -> usize {
        self.entries.values().filter(|e| e.live()).count()
    }

    pub fn state_counts(&self) -> HashMap<WorkloadState, usize> {
        let mut counts = HashMap::new();
        for e in self.entries.values() {
            *counts.entry(e.lc.state()).or_insert(0) += 1;
        }
        counts
    }

    /// Retention: forgets the oldest settled workloads beyond `keep_settled`; answers their ids
    /// (their records go too). Call it once a message has been handled.
    pub fn forget_settled(&mut self) -> Vec<WorkloadId> {
        let mut settled: Vec<(u64, WorkloadId)> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.live())
            .map(|(id, e)| (e.lc.status.finished_at_ms.unwrap_or(0), id.clone()))
            .collect();
        if settled.len() <= self.keep_settled {
            return vec![];
        }
        settled.sort();
        let excess = settled.len() - self.keep_settled;
        let forgotten: Vec<WorkloadId> =
            settled.into_iter().take(excess).map(|(_, id)| id).collect();
        for id in &forgotten {
            self.entries.remove(id);
        }
        forgotten
    }
}

#[cfg(test)]
mod tests;
