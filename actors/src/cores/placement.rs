//! Which nodes fit a workload now, ranked by a strategy. Sans-IO: pure functions of the
//! registry's records and the [`PendingPlacements`] made since each node's last heartbeat.
//! Stale, lost, left and lameduck nodes are never candidates.
//!
//! A node whose heartbeat carries an [`Allocation`] fits by what it can still hand out: its
//! allocatable CPUs (unless it overcommits CPU) and memory (unless it overcommits memory), its
//! free whole cores for `cpuset_cpus`, its free GPUs — less what was placed there since that
//! heartbeat. A node without one (an older herdd) fits by live usage, as before allocations.
//!
//! Ranking: `spread` prefers the largest free fraction of allocatable CPU and memory (and of
//! GPUs, when the query asks for GPUs), live usage breaking ties; `binpack` the smallest that
//! still fits. A query that asks no GPUs ranks by CPU and memory alone: a GPU node is neither
//! kept for GPU work nor preferred.

use crate::cores::pending::{PendingPlacements, ResourceRequest};
use herd_bus::{
    Allocation, Candidate, FitQuery, FitResult, Heartbeat, NodeLiveness, NodeRecord, NodeState,
    PlacementStrategy,
};

/// Why a node does not take a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Misfit {
    /// Not now: the room is taken (by its workloads, or placements on their way).
    NoRoom(String),
    /// Not as the node stands: not up, not active, other labels, or not that much capacity
    /// even when empty.
    Never(String),
}

impl Misfit {
    /// Why, in words.
    pub fn reason(&self) -> &str {
        match self {
            Misfit::NoRoom(why) | Misfit::Never(why) => why,
        }
    }
}

/// CPUs a query asks for, as a node counts them: a cpuset's whole cores, else its CPU limit.
fn ask_cpus(q: &FitQuery) -> Option<f64> {
    q.cpuset_cpus.map(f64::from).or(q.cpu)
}

fn size(b: u64) -> String {
    const GIB: u64 = 1 << 30;
    if b >= GIB {
        format!("{:.1} GiB", b as f64 / GIB as f64)
    } else {
        format!("{} MiB", b >> 20)
    }
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// The refusal of a node remembered across a coordinator restart, until it beats again.
pub const UNHEARD: &str =
    "no heartbeat since the coordinator started: what was placed there is not known yet";

/// Why `r` cannot take `q` beside what `pending` holds there, or None when it fits.
pub fn misfit(r: &NodeRecord, q: &FitQuery, pending: &PendingPlacements) -> Option<Misfit> {
    match misfit_beside(r, q, &pending.held(&r.node_id)) {
        None if !pending.known(&r.node_id) => Some(Misfit::NoRoom(UNHEARD.into())),
        other => other,
    }
}

/// Why `r` cannot take `q` with `held` placed there since its heartbeat, or None when it fits.
fn misfit_beside(r: &NodeRecord, q: &FitQuery, held: &ResourceRequest) -> Option<Misfit> {
    match r.liveness {
        NodeLiveness::Up => {}
        other => return Some(Misfit::Never(format!("node is {}", other.as_str()))),
    }
    let Some(hb) = &r.heartbeat else {
        return Some(Misfit::Never("no heartbeat yet".into()));
    };
    if hb.state != NodeState::Active {
        return Some(Misfit::Never(format!("node is in {}", hb.state.as_str())));
    }
    for (k, v) in &q.labels {
        if hb.labels.get(k) != Some(v) {
            return Some(Misfit::Never(format!(
                "label {k}={v} does not match ({k}={})",
                hb.labels.get(k).map(String::as_str).unwrap_or("unset")
            )));
        }
    }
    room(hb, q, held)
}

/// Why `r` cannot take `q`, or None when it fits (nothing placed since its heartbeat).
pub fn unfit(r: &NodeRecord, q: &FitQuery) -> Option<String> {
    misfit_beside(r, q, &ResourceRequest::default()).map(|m| m.reason().to_string())
}

/// Whether the node of `hb` has room for `q`, resources only.
pub fn room(hb: &Heartbeat, q: &FitQuery, held: &ResourceRequest) -> Option<Misfit> {
    match &hb.allocation {
        Some(a) => room_by_allocation(hb, a, q, held),
        None => room_by_usage(hb, q, held),
    }
}

fn room_by_allocation(
    hb: &Heartbeat,
    a: &Allocation,
    q: &FitQuery,
    held: &ResourceRequest,
) -> Option<Misfit> {
    if let Some(c) = ask_cpus(q).filter(|_| !a.overcommit_cpu) {
        if c > a.allocatable_cpus + 1e-9 {
            return Some(Misfit::Never(format!(
                "cpu: needs {c} CPUs, the node has {} allocatable in all",
                a.allocatable_cpus
            )));
        }
        let left = a.free_cpus() - held.cpu;
        if c > left + 1e-9 {
            return Some(Misfit::NoRoom(format!(
                "cpu: needs {c} CPUs, {:.2} of {} allocatable left",
                left.max(0.0),
                a.allocatable_cpus
            )));
        }
    }
    if let Some(m) = q.memory.filter(|_| !a.overcommit_memory) {
        if m > a.allocatable_memory {
            return Some(Misfit::Never(format!(
                "memory: needs {}, the node has {} allocatable in all",
                size(m),
                size(a.allocatable_memory)
            )));
        }
        let left = a.free_memory().saturating_sub(held.memory);
        if m > left {
            return Some(Misfit::NoRoom(format!(
                "memory: needs {}, {} of {} allocatable left",
                size(m),
                size(left),
                size(a.allocatable_memory)
            )));
        }
    }
    if let Some(n) = q.cpuset_cpus.filter(|n| *n > 0) {
        if f64::from(n) > hb.capacity.cpus {
            return Some(Misfit::Never(format!(
                "cpuset_cpus: needs {n} whole cores, the node has {}",
                hb.capacity.cpus
            )));
        }
        let left = a.cores_free.saturating_sub(held.cores);
        if n > left {
            return Some(Misfit::NoRoom(format!(
                "cpuset_cpus: needs {n} whole cores, {left} free"
            )));
        }
    }
    if let Some(g) = q.gpus.filter(|g| *g > 0) {
        let total = hb.capacity.gpus.len() as u32;
        if g > total {
            return Some(Misfit::Never(format!(
                "gpus: needs {g}, the node has {total}"
            )));
        }
        let left = (a.gpus_free.len() as u32).saturating_sub(held.gpus);
        if g > left {
            return Some(Misfit::NoRoom(format!(
                "gpus: needs {g}, {left} free of {total}"
            )));
        }
    }
    None
}

/// The check of a node without allocations: live usage, less what was placed since.
fn room_by_usage(hb: &Heartbeat, q: &FitQuery, held: &ResourceRequest) -> Option<Misfit> {
    let (free_cpu, free_mem) = live_free(hb);
    if let Some(m) = q.memory {
        if m > hb.capacity.memory {
            return Some(Misfit::Never(format!(
                "needs {} of memory; the node has {} in all",
                gib(m),
                gib(hb.capacity.memory)
            )));
        }
        let left = free_mem.saturating_sub(held.memory);
        if m > left {
            return Some(Misfit::NoRoom(format!(
                "needs {} of memory, {} available",
                gib(m),
                gib(left)
            )));
        }
    }
    if let Some(c) = ask_cpus(q) {
        if c > hb.capacity.cpus {
            return Some(Misfit::Never(format!(
                "needs {c} CPUs; the node has {} in all",
                hb.capacity.cpus
            )));
        }
        let left = free_cpu - held.cpu;
        if c > left {
            return Some(Misfit::NoRoom(format!(
                "needs {c} CPUs, {:.2} free",
                left.max(0.0)
            )));
        }
    }
    if let Some(g) = q.gpus {
        let have = hb.capacity.gpus.len() as u32;
        if g > have {
            return Some(Misfit::Never(format!(
                "needs {g} GPUs, the node has {have}"
            )));
        }
    }
    None
}

/// Free CPUs (cores) and memory (bytes) by live usage.
fn live_free(hb: &Heartbeat) -> (f64, u64) {
    let free_cpu = (hb.capacity.cpus - hb.usage.cpu_percent / 100.0).max(0.0);
    (free_cpu, hb.usage.memory_available)
}

/// The fraction of a node that is free by live usage, CPU and memory alike.
fn live_fraction(hb: &Heartbeat, held: &ResourceRequest) -> f64 {
    let (free_cpu, free_mem) = live_free(hb);
    let cpu = (free_cpu - held.cpu) / hb.capacity.cpus.max(1e-9);
    let mem = free_mem.saturating_sub(held.memory) as f64 / hb.capacity.memory.max(1) as f64;
    0.5 * cpu + 0.5 * mem
}

/// The fraction of a node's allocatable that is free (by live usage without allocations):
/// CPU and memory, and GPUs when the query asks for some.
fn free_fraction(hb: &Heartbeat, q: &FitQuery, held: &ResourceRequest) -> f64 {
    let Some(a) = &hb.allocation else {
        return live_fraction(hb, held);
    };
    let cpu = (a.free_cpus() - held.cpu) / a.allocatable_cpus.max(1e-9);
    let mem =
        a.free_memory().saturating_sub(held.memory) as f64 / a.allocatable_memory.max(1) as f64;
    let total_gpus = hb.capacity.gpus.len();
    if q.gpus.unwrap_or(0) > 0 && total_gpus > 0 {
        let gpus = a.gpus_free.len().saturating_sub(held.gpus as usize) as f64 / total_gpus as f64;
        (cpu + mem + gpus) / 3.0
    } else {
        0.5 * cpu + 0.5 * mem
    }
}

/// Candidates best first, and a reason for every node left out (nothing placed since the
/// heartbeats). `round_robin_start` rotates the round-robin order between calls.
pub fn place<'a>(
    records: impl IntoIterator<Item = &'a NodeRecord>,
    q: &FitQuery,
    round_robin_start: usize,
) -> FitResult {
    place_with(records, &PendingPlacements::default(), q, round_robin_start)
}

/// [`place`], less what `pending` holds on each node.
pub fn place_with<'a>(
    records: impl IntoIterator<Item = &'a NodeRecord>,
    pending: &PendingPlacements,
    q: &FitQuery,
    round_robin_start: usize,
) -> FitResult {
    let mut result = FitResult::default();
    let mut fits: Vec<(&NodeRecord, &Heartbeat, ResourceRequest)> = Vec::new();
    for r in records {
        let held = pending.held(&r.node_id);
        match (misfit(r, q, pending), &r.heartbeat) {
            (None, Some(hb)) => fits.push((r, hb, held)),
            (why, _) => {
                let why = why.map_or("no heartbeat yet".to_string(), |m| m.reason().into());
                result.rejected.insert(r.node_id.to_string(), why);
            }
        }
    }
    fits.sort_by(|a, b| a.0.node_id.cmp(&b.0.node_id));
    let n = fits.len();
    // (candidate, tie-breaker): live usage breaks ties under spread.
    let mut scored: Vec<(Candidate, f64)> = fits
        .iter()
        .enumerate()
        .map(|(i, (r, hb, held))| {
            let free = free_fraction(hb, q, held);
            let (score, tie) = match q.strategy {
                PlacementStrategy::Spread => (free, live_fraction(hb, held)),
                PlacementStrategy::Binpack => (1.0 - free, 0.0),
                // Position after rotating by the cursor: first gets the highest score.
                PlacementStrategy::RoundRobin => (
                    (n - ((i + n - round_robin_start % n.max(1)) % n)) as f64,
                    0.0,
                ),
            };
            let candidate = Candidate {
                node_id: r.node_id.clone(),
                score,
            };
            (candidate, tie)
        })
        .collect();
    scored.sort_by(|(a, ta), (b, tb)| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| tb.total_cmp(ta))
            .then_with(|| a.node_id.cmp(&b.node_id))
    });
    result.candidates = scored.into_iter().map(|(c, _)| c).collect();
    if result.candidates.is_empty() {
        result.summary = Some(if result.rejected.is_empty() {
            "no node is known to the coordinator yet".into()
        } else {
            format!("none of {} nodes fits; see rejected", result.rejected.len())
        });
    }
    result
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
