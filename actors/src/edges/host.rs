//! This host's capacity and usage, read from /proc.

use herd_bus::{Capacity, Usage};

/// Cumulative CPU jiffies from /proc/stat's first line: (busy, total).
pub fn parse_cpu_line(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// A value in kB from /proc/meminfo, in bytes.
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        Some(rest.split_whitespace().next()?.parse::<u64>().ok()? * 1024)
    })
}

pub fn parse_loadavg(text: &str) -> [f64; 3] {
    let mut it = text.split_whitespace().map(|x| x.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

pub fn cpus() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .unwrap_or(1) as f64
}

/// Whole-host CPU % between two readings (100 = one core), as `top` shows it summed.
#[derive(Debug, Default)]
pub struct HostCpu {
    prev: Option<(u64, u64)>,
}

impl HostCpu {
    pub fn percent(&mut self, now: (u64, u64), cpus: f64) -> f64 {
        let pct = match self.prev {
            Some((b0, t0)) if now.1 > t0 && now.0 >= b0 => {
                (now.0 - b0) as f64 / (now.1 - t0) as f64 * 100.0 * cpus
            }
            _ => 0.0,
        };
        self.prev = Some(now);
        pct
    }
}

/// CPU ids in a kernel list such as `/sys/devices/system/cpu/online` (`0-3,8,10-11`).
pub fn parse_cpu_list(text: &str) -> Vec<u32> {
    let mut out = vec![];
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.trim().parse::<u32>().ok()),
        }
    }
    out
}

/// The host's online CPU ids, ascending (0..cpus when sysfs does not say).
pub fn online_cores() -> Vec<u32> {
    let cores = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|t| parse_cpu_list(&t))
        .unwrap_or_default();
    if cores.is_empty() {
        (0..cpus() as u32).collect()
    } else {
        cores
    }
}

/// What this node allocates against: the configured capacity, else the host's; its online
/// cores; `gpus` (NVML's, or declared).
pub fn allocation_policy(
    config: &crate::cores::allocation::ResourcesConfig,
    gpus: Vec<herd_bus::GpuInfo>,
) -> crate::cores::allocation::AllocationPolicy {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    crate::cores::allocation::AllocationPolicy {
        config: config.clone(),
        capacity_cpus: config.capacity_cpu.unwrap_or_else(cpus),
        capacity_memory: config
            .capacity_memory
            .unwrap_or_else(|| meminfo_bytes(&meminfo, "MemTotal").unwrap_or(0)),
        cores: online_cores(),
        gpus,
    }
}

/// Reads capacity (without GPUs) and usage now.
pub fn read(cpu: &mut HostCpu) -> (Capacity, Usage) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let n = cpus();
    let busy_total = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_cpu_line(&s));
    let cpu_percent = busy_total.map(|bt| cpu.percent(bt, n)).unwrap_or(0.0);
    (
        Capacity {
            cpus: n,
            memory: meminfo_bytes(&meminfo, "MemTotal").unwrap_or(0),
            gpus: vec![],
        },
        Usage {
            cpu_percent,
            memory_available: meminfo_bytes(&meminfo, "MemAvailable").unwrap_or(0),
            load_avg: parse_loadavg(&std::fs::read_to_string("/proc/loadavg").unwrap_or_default()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_cpu_line(stat), Some((150, 1000)));
        let mem = "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(meminfo_bytes(mem, "MemTotal"), Some(24_576_000 * 1024));
        assert_eq!(meminfo_bytes(mem, "MemAvailable"), Some(20_000_000 * 1024));
        assert_eq!(meminfo_bytes(mem, "Mem"), None);
        assert_eq!(
            parse_loadavg("0.50 0.40 0.30 1/200 1234\n"),
            [0.5, 0.4, 0.3]
        );
    }

    #[test]
    fn cpu_lists_are_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("0\n"), vec![0]);
        assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
        assert!(!online_cores().is_empty());
    }

    #[test]
    fn host_cpu_is_summed_over_cores() {
        let mut c = HostCpu::default();
        assert_eq!(c.percent((0, 1000), 2.0), 0.0, "first reading");
        // Half of all jiffies busy on 2 cores = one full core = 100 %.
        assert_eq!(c.percent((500, 2000), 2.0), 100.0);
    }

    #[test]
    fn reads_this_host() {
        let (cap, usage) = read(&mut HostCpu::default());
        assert!(cap.cpus >= 1.0 && cap.memory > 0 && usage.memory_available > 0);
    }
}
