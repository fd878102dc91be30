//! Rates from successive counter readings: cpu % (100 = one core) and I/O bytes/s.

/// Raw counters of one workload at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupSample {
    pub cpu_usage_us: u64,
    pub memory_current: u64,
    pub memory_inactive_file: u64,
    pub memory_limit: Option<u64>,
    pub pids: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub oom_kills: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    pub cpu_percent: Option<f64>,
    pub io_read_bps: Option<f64>,
    pub io_write_bps: Option<f64>,
}

/// `prev` and `cur` with their times in seconds. None on the first sample, for a counter that
/// went backwards (reset), or when no time passed.
pub fn rates(prev: Option<(f64, &CgroupSample)>, cur: (f64, &CgroupSample)) -> Rates {
    let Some((t0, p)) = prev else {
        return Rates::default();
    };
    let (t1, c) = cur;
    let dt = t1 - t0;
    if dt <= 0.0 {
        return Rates::default();
    }
    let per_s = |a: u64, b: u64| (b >= a).then(|| (b - a) as f64 / dt);
    Rates {
        cpu_percent: per_s(p.cpu_usage_us, c.cpu_usage_us).map(|us| us / 1e6 * 100.0),
        io_read_bps: per_s(p.io_read_bytes, c.io_read_bytes),
        io_write_bps: per_s(p.io_write_bytes, c.io_write_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(cpu_us: u64, rd: u64) -> CgroupSample {
        CgroupSample {
            cpu_usage_us: cpu_us,
            io_read_bytes: rd,
            ..Default::default()
        }
    }

    #[test]
    fn half_a_core_is_fifty_percent() {
        let r = rates(Some((10.0, &s(1_000_000, 0))), (12.0, &s(2_000_000, 4096)));
        assert_eq!(r.cpu_percent, Some(50.0));
        assert_eq!(r.io_read_bps, Some(2048.0));
    }

    #[test]
    fn first_sample_and_resets_have_no_rate() {
        assert_eq!(rates(None, (1.0, &s(5, 5))).cpu_percent, None);
        let r = rates(Some((1.0, &s(500, 10))), (2.0, &s(100, 20)));
        assert_eq!(r.cpu_percent, None, "counter reset");
        assert_eq!(r.io_read_bps, Some(10.0));
        assert_eq!(
            rates(Some((1.0, &s(1, 1))), (1.0, &s(2, 2))).cpu_percent,
            None
        );
    }
}
