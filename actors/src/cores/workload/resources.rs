//! What a workload used, from its cgroup's counters read once when it ended: the counters as
//! a backend reads them, and the summary reported on the bus.

use herd_bus::ResourceSummary;

/// A workload's cgroup counters when it ended. A figure the backend cannot read is `None`,
/// with a note saying why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FinalCounters {
    /// Total CPU time, µs (user + system when the split is unknown).
    pub cpu_usage_us: u64,
    /// User and system CPU time, µs, where the kernel splits them.
    pub cpu_user_us: Option<u64>,
    pub cpu_system_us: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub pids_peak: Option<u64>,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub oom_kills: u64,
    pub notes: Vec<String>,
}

impl FinalCounters {
    /// The counters every backend samples anyway; peaks, the CPU split and notes are added by
    /// the backends that have them.
    pub fn from_sample(s: &super::rates::CgroupSample) -> FinalCounters {
        FinalCounters {
            cpu_usage_us: s.cpu_usage_us,
            io_read_bytes: s.io_read_bytes,
            io_write_bytes: s.io_write_bytes,
            oom_kills: s.oom_kills,
            ..Default::default()
        }
    }
}

/// A workload's GPU use over its life, from the per-process readings NVML gives each tick (the
/// kernel keeps no GPU counters in a cgroup).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuUse {
    utilization_sum: f64,
    readings: u32,
    memory_peak: u64,
}

impl GpuUse {
    /// One tick's readings of the workload's GPUs: utilisation summed over them (100 = one
    /// whole GPU busy), memory summed.
    pub fn add(&mut self, samples: &[herd_bus::GpuSample]) {
        if samples.is_empty() {
            return;
        }
        self.utilization_sum += samples.iter().map(|g| g.utilization_percent).sum::<f64>();
        self.readings += 1;
        let memory: u64 = samples.iter().map(|g| g.memory_used).sum();
        self.memory_peak = self.memory_peak.max(memory);
    }

    /// Puts the mean utilisation and the peak memory into `summary`, when there were readings.
    pub fn fill(&self, summary: &mut ResourceSummary) {
        if self.readings > 0 {
            summary.gpu_util_mean_pct = Some(self.utilization_sum / self.readings as f64);
            summary.gpu_memory_peak_bytes = Some(self.memory_peak);
        }
    }
}

/// The summary of `c` for a workload that ran `wall_s` seconds.
pub fn summary(c: FinalCounters, wall_s: Option<f64>) -> ResourceSummary {
    let (user_us, system_us) = match (c.cpu_user_us, c.cpu_system_us) {
        // The split in the proportions the kernel counted, of the precise total (v1 counts
        // the split in clock ticks).
        (Some(u), Some(s)) if u + s > 0 && c.cpu_usage_us > 0 => {
            let user = (c.cpu_usage_us as u128 * u as u128 / (u + s) as u128) as u64;
            (user, c.cpu_usage_us - user)
        }
        (Some(u), Some(s)) => (u, s),
        // Without the split all of it counts as user time, and the summary says so.
        _ => (c.cpu_usage_us, 0),
    };
    let mut notes = c.notes;
    if c.cpu_user_us.is_none() {
        notes.push("user and system CPU time are not split here: all counted as user".into());
    }
    let cpu_s = (user_us + system_us) as f64 / 1e6;
    ResourceSummary {
        cpu_user_s: user_us as f64 / 1e6,
        cpu_system_s: system_us as f64 / 1e6,
        cpu_mean_pct: wall_s.filter(|w| *w > 0.0).map(|w| cpu_s / w * 100.0),
        memory_peak_bytes: c.memory_peak_bytes,
        pids_peak: c.pids_peak,
        io_read_bytes: c.io_read_bytes,
        io_write_bytes: c.io_write_bytes,
        oom_kills: c.oom_kills,
        gpu_util_mean_pct: None,
        gpu_memory_peak_bytes: None,
        notes,
    }
}

/// `user N\nsystem N` in clock ticks (v1 `cpuacct.stat`), as µs.
pub fn parse_cpuacct_stat(text: &str, ticks_per_s: u64) -> Option<(u64, u64)> {
    let tick_us = 1_000_000 / ticks_per_s.max(1);
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse::<u64>().ok())?
        })
    };
    Some((field("user")? * tick_us, field("system")? * tick_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_cpu_for_four_seconds_is_two_cpu_seconds_at_fifty_percent() {
        let s = summary(
            FinalCounters {
                cpu_usage_us: 2_000_000,
                cpu_user_us: Some(1_900_000),
                cpu_system_us: Some(100_000),
                memory_peak_bytes: Some(100 << 20),
                ..Default::default()
            },
            Some(4.0),
        );
        assert_eq!(s.cpu_user_s + s.cpu_system_s, 2.0);
        assert_eq!(s.cpu_mean_pct, Some(50.0));
        assert_eq!(s.memory_peak_bytes, Some(100 << 20));
        assert!(s.notes.is_empty());
    }

    #[test]
    fn missing_figures_are_absent_and_explained() {
        let s = summary(
            FinalCounters {
                cpu_usage_us: 500_000,
                notes: vec!["no memory.peak".into()],
                ..Default::default()
            },
            None,
        );
        assert_eq!(s.cpu_user_s, 0.5);
        assert_eq!(s.cpu_mean_pct, None, "no wall time, no mean");
        assert_eq!(s.memory_peak_bytes, None);
        assert_eq!(s.notes.len(), 2, "{:?}", s.notes);
    }

    #[test]
    fn gpu_use_is_the_mean_utilisation_and_the_peak_memory_of_the_readings() {
        let g = |u, m| herd_bus::GpuSample {
            index: 0,
            utilization_percent: u,
            memory_used: m,
        };
        let mut used = GpuUse::default();
        used.add(&[]);
        let mut s = ResourceSummary::default();
        used.fill(&mut s);
        assert_eq!((s.gpu_util_mean_pct, s.gpu_memory_peak_bytes), (None, None));
        used.add(&[g(80.0, 1 << 30)]);
        used.add(&[g(40.0, 3 << 30), g(20.0, 1 << 30)]);
        used.fill(&mut s);
        assert_eq!(s.gpu_util_mean_pct, Some(70.0), "(80 + 60) / 2 ticks");
        assert_eq!(s.gpu_memory_peak_bytes, Some(4 << 30));
    }

    #[test]
    fn cpuacct_stat_ticks_become_microseconds() {
        assert_eq!(
            parse_cpuacct_stat("user 150\nsystem 50\n", 100),
            Some((1_500_000, 500_000))
        );
        assert_eq!(parse_cpuacct_stat("user 1\n", 100), None);
    }
}
