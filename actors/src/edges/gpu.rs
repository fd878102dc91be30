//! Per-process GPU use through NVML, where `libnvidia-ml` loads at run time. Without it GPU
//! telemetry is absent, and the log says so once.

use herd_bus::{GpuInfo, GpuSample};
use std::collections::BTreeMap;

/// One process's use of one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessGpu {
    pub index: u32,
    pub pid: u32,
    pub memory_used: u64,
    /// SM utilization (%) over the last sampling window, when the driver reports it.
    pub sm_util: Option<u32>,
}

/// Sums the GPU use of a workload's processes per device.
pub fn for_workload(pids: &[i32], processes: &[ProcessGpu]) -> Vec<GpuSample> {
    let mut by_device: BTreeMap<u32, GpuSample> = BTreeMap::new();
    for p in processes.iter().filter(|p| pids.contains(&(p.pid as i32))) {
        let s = by_device.entry(p.index).or_insert_with(|| GpuSample {
            index: p.index,
            ..Default::default()
        });
        s.memory_used += p.memory_used;
        s.utilization_percent = (s.utilization_percent + p.sm_util.unwrap_or(0) as f64).min(100.0);
    }
    by_device.into_values().collect()
}

/// `[gpu]`: GPUs an operator declares for a node where NVML is absent or cannot be loaded by
/// herdd (a container runtime exposes them, a driver herdd cannot see). A declaration, not a
/// measurement: herd assigns what is declared and sets `CUDA_VISIBLE_DEVICES` to its UUIDs,
/// but has no GPU telemetry without NVML.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeclaredGpu>,
}

/// One declared GPU: its index is its `/dev/nvidia<index>` minor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredGpu {
    pub index: u32,
    pub uuid: String,
    #[serde(default)]
    pub name: String,
    /// Bytes.
    #[serde(default)]
    pub memory: u64,
}

impl GpuConfig {
    /// Duplicate indexes or UUIDs, or an empty UUID, named.
    pub fn validate(&self) -> Result<(), String> {
        let mut indexes = std::collections::BTreeSet::new();
        let mut uuids = std::collections::BTreeSet::new();
        for d in &self.devices {
            if d.uuid.trim().is_empty() {
                return Err(format!("gpu.devices: GPU {} has no uuid", d.index));
            }
            if !indexes.insert(d.index) {
                return Err(format!("gpu.devices: index {} is declared twice", d.index));
            }
            if !uuids.insert(d.uuid.as_str()) {
                return Err(format!("gpu.devices: uuid {} is declared twice", d.uuid));
            }
        }
        Ok(())
    }

    /// The node's GPUs: NVML's when it found any (a declaration beside them is ignored, and the
    /// log says so), else the declared ones.
    pub fn inventory(&self, from_nvml: Vec<GpuInfo>) -> Vec<GpuInfo> {
        if !from_nvml.is_empty() {
            if !self.devices.is_empty() {
                tracing::warn!(
                    nvml = from_nvml.len(),
                    declared = self.devices.len(),
                    "NVML found GPUs: [gpu] devices is ignored"
                );
            }
            return from_nvml;
        }
        self.devices
            .iter()
            .map(|d| GpuInfo {
                index: d.index,
                name: d.name.clone(),
                uuid: d.uuid.clone(),
                memory: d.memory,
                mig: None,
            })
            .collect()
    }
}

/// NVML, when present.
pub struct Nvml {
    nvml: Option<nvml_wrapper::Nvml>,
    last_seen_us: u64,
}

impl Nvml {
    /// Loads NVML; logs once whether GPU telemetry is on.
    pub fn load() -> Nvml {
        let nvml = match nvml_wrapper::Nvml::init() {
            Ok(n) => {
                tracing::info!(
                    gpus = n.device_count().unwrap_or(0),
                    "NVML loaded: per-workload GPU telemetry on"
                );
                Some(n)
            }
            Err(e) => {
                tracing::info!(reason = %e, "NVML not available: no GPU telemetry");
                None
            }
        };
        Nvml {
            nvml,
            last_seen_us: 0,
        }
    }

    /// The GPUs of this host, for heartbeats.
    pub fn devices(&self) -> Vec<herd_bus::GpuInfo> {
        let Some(nvml) = &self.nvml else {
            return vec![];
        };
        (0..nvml.device_count().unwrap_or(0))
            .filter_map(|index| {
                let d = nvml.device_by_index(index).ok()?;
                Some(herd_bus::GpuInfo {
                    index,
                    name: d.name().unwrap_or_default(),
                    uuid: d.uuid().unwrap_or_default(),
                    memory: d.memory_info().map(|m| m.total).unwrap_or(0),
                    // Absent where NVML cannot say (MIG-less GPUs answer NotSupported).
                    mig: d.mig_mode().ok().map(|m| m.current == 1),
                })
            })
            .collect()
    }

    pub fn is_present(&self) -> bool {
        self.nvml.is_some()
    }

    /// Every process using a GPU now, with its memory and (where reported) SM utilization.
    pub fn processes(&mut self) -> Vec<ProcessGpu> {
        let Some(nvml) = &self.nvml else {
            return vec![];
        };
        let mut out = Vec::new();
        let mut newest = self.last_seen_us;
        for index in 0..nvml.device_count().unwrap_or(0) {
            let Ok(device) = nvml.device_by_index(index) else {
                continue;
            };
            let util: BTreeMap<u32, u32> = device
                .process_utilization_stats(self.last_seen_us)
                .unwrap_or_default()
                .into_iter()
                .map(|s| {
                    newest = newest.max(s.timestamp);
                    (s.pid, s.sm_util)
                })
                .collect();
            let compute = device.running_compute_processes().unwrap_or_default();
            let graphics = device.running_graphics_processes().unwrap_or_default();
            for p in compute.into_iter().chain(graphics) {
                let memory_used = match p.used_gpu_memory {
                    nvml_wrapper::enums::device::UsedGpuMemory::Used(b) => b,
                    nvml_wrapper::enums::device::UsedGpuMemory::Unavailable => 0,
                };
                out.push(ProcessGpu {
                    index,
                    pid: p.pid,
                    memory_used,
                    sm_util: util.get(&p.pid).copied(),
                });
            }
        }
        self.last_seen_us = newest;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_workloads_processes_per_device() {
        let procs = [
            ProcessGpu {
                index: 0,
                pid: 10,
                memory_used: 100,
                sm_util: Some(30),
            },
            ProcessGpu {
                index: 0,
                pid: 11,
                memory_used: 50,
                sm_util: Some(80),
            },
            ProcessGpu {
                index: 1,
                pid: 10,
                memory_used: 7,
                sm_util: None,
            },
            ProcessGpu {
                index: 0,
                pid: 99,
                memory_used: 1000,
                sm_util: Some(50),
            },
        ];
        let s = for_workload(&[10, 11], &procs);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].index, s[0].memory_used, s[0].utilization_percent),
            (0, 150, 100.0)
        );
        assert_eq!(
            (s[1].index, s[1].memory_used, s[1].utilization_percent),
            (1, 7, 0.0)
        );
        assert!(for_workload(&[12], &procs).is_empty());
    }

    #[test]
    fn loading_without_a_driver_is_not_an_error() {
        // On machines without libnvidia-ml this reports absence; with it, processes() works.
        let mut nvml = Nvml::load();
        let procs = nvml.processes();
        if !nvml.is_present() {
            assert!(procs.is_empty());
        }
    }
}
