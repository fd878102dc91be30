//! What a heartbeat says about the node's workloads, sans-IO: the live ones with their last
//! CPU and memory readings.

use herd_bus::{WorkloadId, WorkloadStatus, WorkloadSummary};
use std::collections::BTreeMap;

/// Each workload's last CPU % (None before its second sample) and memory working set.
pub type LastSamples = BTreeMap<WorkloadId, (Option<f64>, u64)>;

/// The inventory of live (not settled) workloads, with their last readings.
pub fn inventory(workloads: Vec<WorkloadStatus>, last: &LastSamples) -> Vec<WorkloadSummary> {
    workloads
        .into_iter()
        .filter(|w| !w.state.is_terminal())
        .map(|w| {
            let (cpu_percent, memory) = last.get(&w.workload_id).copied().unwrap_or((None, 0));
            WorkloadSummary {
                workload_id: w.workload_id,
                state: w.state,
                run_id: w.spec.run_id,
                rep: w.spec.rep,
                cpu_percent,
                memory: (memory > 0).then_some(memory),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::WorkloadState;

    #[test]
    fn settled_workloads_are_left_out_and_readings_attached() {
        let status = |id: &str, state| WorkloadStatus {
            workload_id: WorkloadId::new(id).unwrap(),
            state,
            ..herd_bus::fixtures::workload_status()
        };
        let last: LastSamples = [(WorkloadId::new("a").unwrap(), (Some(50.0), 1 << 20))].into();
        let inv = inventory(
            vec![
                status("a", WorkloadState::Running),
                status("b", WorkloadState::Starting),
                status("c", WorkloadState::Exited),
            ],
            &last,
        );
        let ids: Vec<&str> = inv.iter().map(|w| w.workload_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(
            (inv[0].cpu_percent, inv[0].memory),
            (Some(50.0), Some(1 << 20))
        );
        assert_eq!(
            (inv[1].cpu_percent, inv[1].memory),
            (None, None),
            "no reading yet"
        );
    }
}
