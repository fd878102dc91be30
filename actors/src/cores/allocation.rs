//! A node's allocations: what it has handed out to its workloads, and whether a new one fits.
//! Sans-IO: a policy (capacity, what is reserved for the system, overcommit, the default
//! request of a workload without limits, the cores and GPUs there are) and the live workloads
//! (pending, starting, running: what they asked for and what they were assigned) in; an
//! [`Allocation`] for the heartbeat, or an admission with the cores and GPUs to hand out, or a
//! refusal naming the resource, what was asked and what is left.

use herd_bus::{Allocation, Assigned, GpuInfo, GpuRequest, Limits, WorkloadStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// `[resources]` of herdd's configuration, with what the node found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourcesConfig {
    /// CPUs this node offers [default: the host's online CPUs]; `herdd dev --nodes N` gives
    /// each node a 1/N share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_cpu: Option<f64>,
    /// Memory this node offers, bytes [default: the host's].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_memory: Option<u64>,
    /// CPUs kept for the system (herdd, sshd, the kernel): never handed out. Its whole cores
    /// (the lowest ids, rounded up) are never pinned.
    pub reserved_cpu: f64,
    /// Memory kept for the system, bytes.
    pub reserved_memory: u64,
    /// Admit past allocatable CPU (limits are ceilings that workloads seldom all reach).
    pub overcommit_cpu: bool,
    /// Admit past allocatable memory (risks the OOM killer).
    pub overcommit_memory: bool,
    /// Give a GPU to more than one workload.
    pub overcommit_gpus: bool,
    /// What a workload without a CPU limit counts as, CPUs.
    pub default_cpu: f64,
    /// What a workload without a memory limit counts as, bytes.
    pub default_memory: u64,
}

impl Default for ResourcesConfig {
    fn default() -> Self {
        ResourcesConfig {
            capacity_cpu: None,
            capacity_memory: None,
            reserved_cpu: 0.0,
            reserved_memory: 0,
            overcommit_cpu: true,
            overcommit_memory: false,
            overcommit_gpus: false,
            default_cpu: 0.0,
            default_memory: 0,
        }
    }
}

impl ResourcesConfig {
    /// The errors of a configuration, named by key.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |v: f64| v.is_finite() && v >= 0.0;
        if let Some(c) = self.capacity_cpu.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(format!("resources.capacity_cpu must be > 0, got {c}"));
        }
        if self.capacity_memory == Some(0) {
            return Err("resources.capacity_memory must be > 0".into());
        }
        if !positive(self.reserved_cpu) {
            return Err(format!(
                "resources.reserved_cpu must be ≥ 0, got {}",
                self.reserved_cpu
            ));
        }
        if !positive(self.default_cpu) {
            return Err(format!(
                "resources.default_cpu must be ≥ 0, got {}",
                self.default_cpu
            ));
        }
        Ok(())
    }
}

/// What allocations are computed against.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationPolicy {
    pub config: ResourcesConfig,
    /// CPUs and memory this node offers (the configuration's, else the host's).
    pub capacity_cpus: f64,
    pub capacity_memory: u64,
    /// The host's online CPU ids, ascending.
    pub cores: Vec<u32>,
    /// The GPUs there are (NVML's, or `[gpu] devices`).
    pub gpus: Vec<GpuInfo>,
}

/// A live workload as allocation sees it: what it asked for, what it was given.
#[derive(Debug, Clone, Copy)]
pub struct Holding<'a> {
    pub limits: &'a Limits,
    pub assigned: &'a Assigned,
}

/// What the live (pending, starting, running) workloads among `statuses` hold: a settled
/// workload holds nothing.
pub fn live<'a>(statuses: impl IntoIterator<Item = &'a WorkloadStatus>) -> Vec<Holding<'a>> {
    statuses
        .into_iter()
        .filter(|s| !s.state.is_terminal())
        .map(|s| Holding {
            limits: &s.spec.limits,
            assigned: &s.assigned,
        })
        .collect()
}

fn mib(b: u64) -> String {
    format!("{} MiB", b / (1 << 20))
}

impl AllocationPolicy {
    pub fn allocatable_cpus(&self) -> f64 {
        (self.capacity_cpus - self.config.reserved_cpu).max(0.0)
    }

    pub fn allocatable_memory(&self) -> u64 {
        self.capacity_memory
            .saturating_sub(self.config.reserved_memory)
    }

    /// CPUs a workload counts as: its cpuset's cores, else its CPU limit, else the default.
    pub fn request_cpus(&self, l: &Limits) -> f64 {
        match (l.cpuset_cpus, l.cpu) {
            (Some(n), _) => n as f64,
            (None, Some(c)) => c,
            (None, None) => self.config.default_cpu,
        }
    }

    pub fn request_memory(&self, l: &Limits) -> u64 {
        l.memory.unwrap_or(self.config.default_memory)
    }

    /// Cores that may be pinned: all but the reserved ones (the lowest ids, `reserved_cpu`
    /// rounded up).
    fn pinnable(&self) -> impl Iterator<Item = u32> + '_ {
        let reserved = self.config.reserved_cpu.ceil() as usize;
        self.cores.iter().copied().skip(reserved)
    }

    /// The node's allocations, for its heartbeat.
    pub fn allocation(&self, live: &[Holding]) -> Allocation {
        let pinned: BTreeSet<u32> = live
            .iter()
            .flat_map(|h| h.assigned.cores.iter().copied())
            .collect();
        let taken: BTreeSet<&str> = live
            .iter()
            .flat_map(|h| h.assigned.gpus.iter().map(String::as_str))
            .collect();
        Allocation {
            allocatable_cpus: self.allocatable_cpus(),
            allocatable_memory: self.allocatable_memory(),
            allocated_cpus: live.iter().map(|h| self.request_cpus(h.limits)).sum(),
            allocated_memory: live.iter().map(|h| self.request_memory(h.limits)).sum(),
            overcommit_cpu: self.config.overcommit_cpu,
            overcommit_memory: self.config.overcommit_memory,
            cores_free: self.pinnable().filter(|c| !pinned.contains(c)).count() as u32,
            gpus_free: self
                .gpus
                .iter()
                .filter(|g| !taken.contains(g.uuid.as_str()))
                .map(|g| g.uuid.clone())
                .collect(),
        }
    }

    /// Admits a workload asking for `limits` beside the `live` ones: the cores and GPUs it
    /// gets, or why it does not fit (`cpu: needs 0.5 CPUs, 0.25 of 2 allocatable left`).
    pub fn admit(&self, limits: &Limits, live: &[Holding]) -> Result<Assigned, String> {
        let now = self.allocation(live);
        let cpus = self.request_cpus(limits);
        if !self.config.overcommit_cpu && cpus > now.free_cpus() + 1e-9 {
            return Err(format!(
                "cpu: needs {cpus} CPUs, {:.2} of {} allocatable left",
                now.free_cpus().max(0.0),
                now.allocatable_cpus
            ));
        }
        let memory = self.request_memory(limits);
        if !self.config.overcommit_memory && memory > now.free_memory() {
            return Err(format!(
                "memory: needs {}, {} of {} allocatable left",
                mib(memory),
                mib(now.free_memory()),
                mib(now.allocatable_memory)
            ));
        }
        let mut assigned = Assigned::default();
        if let Some(n) = limits.cpuset_cpus {
            let pinned: BTreeSet<u32> = live
                .iter()
                .flat_map(|h| h.assigned.cores.iter().copied())
                .collect();
            let free: Vec<u32> = self.pinnable().filter(|c| !pinned.contains(c)).collect();
            if (n as usize) > free.len() {
                return Err(format!(
                    "cpuset_cpus: needs {n} whole cores, {} free of {} that can be pinned",
                    free.len(),
                    self.pinnable().count()
                ));
            }
            assigned.cores = free[..n as usize].to_vec();
        }
        if let Some(request) = &limits.gpus {
            assigned.gpus = self.gpus_for(request, live)?;
        }
        Ok(assigned)
    }

    /// The GPUs for `request`: free ones (any GPU's least-shared ones with overcommit), or the
    /// ones named when each exists and is free.
    fn gpus_for(&self, request: &GpuRequest, live: &[Holding]) -> Result<Vec<String>, String> {
        let users = |uuid: &str| {
            live.iter()
                .filter(|h| h.assigned.gpus.iter().any(|g| g == uuid))
                .count()
        };
        match request {
            GpuRequest::Count(0) => Ok(vec![]),
            GpuRequest::Count(n) => {
                let mut candidates: Vec<(usize, &GpuInfo)> = self
                    .gpus
                    .iter()
                    .map(|g| (users(&g.uuid), g))
                    .filter(|(u, _)| self.config.overcommit_gpus || *u == 0)
                    .collect();
                // Least shared first, then inventory order (stable sort).
                candidates.sort_by_key(|(u, _)| *u);
                if candidates.len() < *n as usize {
                    return Err(format!(
                        "gpus: needs {n}, {} free of {}",
                        candidates.len(),
                        self.gpus.len()
                    ));
                }
                let mut chosen: Vec<&GpuInfo> =
                    candidates[..*n as usize].iter().map(|(_, g)| *g).collect();
                chosen.sort_by_key(|g| g.index);
                Ok(chosen.iter().map(|g| g.uuid.clone()).collect())
            }
            GpuRequest::Devices(wanted) => {
                for uuid in wanted {
                    if !self.gpus.iter().any(|g| &g.uuid == uuid) {
                        return Err(format!("gpus: this node has no GPU {uuid}"));
                    }
                    if !self.config.overcommit_gpus && users(uuid) > 0 {
                        return Err(format!("gpus: {uuid} is another workload's"));
                    }
                }
                Ok(wanted.clone())
            }
        }
    }
}

#[cfg(test)]
#[path = "allocation_tests.rs"]
mod tests;
