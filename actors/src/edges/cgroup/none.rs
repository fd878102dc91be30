//! No cgroups: workloads run as plain process sessions, sampled from /proc. No limits are
//! enforced; herdd warns at start.

use super::proc;
use super::*;
use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct NoCgroups;

impl CgroupBackend for NoCgroups {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::None
    }

    fn describe(&self) -> String {
        "no cgroups (process sessions, /proc sampling, no limits)".into()
    }

    fn open(&self, _name: &str) -> Result<Arc<dyn WorkloadCgroup>, CgroupError> {
        Ok(Arc::new(ProcessSession {
            leader: AtomicI32::new(0),
        }))
    }

    /// Refuses a workload pinned to cores: there is no cpuset to hold it to them. GPUs pass
    /// (their environment names them; device access is not limited).
    fn create(
        &self,
        _name: &str,
        _limits: &Limits,
        pinned: &Pinned,
    ) -> Result<Arc<dyn WorkloadCgroup>, CgroupError> {
        if !pinned.cores.is_empty() {
            return Err(CgroupError::Limit(format!(
                "cannot pin the workload to cores {}: this node runs workloads without cgroups, so it has no cpuset to hold them to",
                pinned.cpu_list()
            )));
        }
        Ok(Arc::new(ProcessSession {
            leader: AtomicI32::new(0),
        }))
    }
}

/// A workload's processes without a cgroup: the session its leader started with setsid.
#[derive(Debug)]
pub struct ProcessSession {
    leader: AtomicI32,
}

impl WorkloadCgroup for ProcessSession {
    fn placement_files(&self) -> Vec<PathBuf> {
        vec![]
    }

    fn set_leader(&self, pid: u32) {
        self.leader.store(pid as i32, Ordering::Relaxed);
    }

    fn pids(&self) -> Vec<i32> {
        match self.leader.load(Ordering::Relaxed) {
            0 => vec![],
            leader => proc::session_members(leader)
                .iter()
                .map(|s| s.pid)
                .collect(),
        }
    }

    fn sample(&self) -> Result<CgroupSample, CgroupError> {
        let leader = self.leader.load(Ordering::Relaxed);
        let members = if leader == 0 {
            vec![]
        } else {
            proc::session_members(leader)
        };
        let ticks: u64 = members.iter().map(|s| s.cpu_ticks).sum();
        let rss: u64 = members.iter().map(|s| s.rss_pages).sum();
        let (r, w) = members
            .iter()
            .map(|s| proc::io(s.pid))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        Ok(CgroupSample {
            cpu_usage_us: ticks * 1_000_000 / proc::clock_ticks_per_s(),
            memory_current: rss * proc::page_size(),
            memory_inactive_file: 0,
            memory_limit: None,
            pids: members.len() as u64,
            io_read_bytes: r,
            io_write_bytes: w,
            oom_kills: 0,
        })
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        let leader = self.leader.load(Ordering::Relaxed);
        if leader == 0 {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(leader), Signal::SIGKILL);
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            self.signal_all(Signal::SIGKILL);
            if Instant::now() > deadline {
                return Err(CgroupError::Limit(format!(
                    "session {leader} still holds {pids:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn limit_files(&self) -> Vec<(PathBuf, String)> {
        vec![]
    }

    fn remove(&self) -> Result<(), CgroupError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_cores_are_refused_without_cgroups() {
        let pinned = Pinned {
            cores: vec![1],
            gpu_minors: vec![],
        };
        let e = NoCgroups
            .create("w1", &Default::default(), &pinned)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot pin the workload to cores 1: this node runs workloads without cgroups, so it has no cpuset to hold them to"
        );
        let gpus = Pinned {
            cores: vec![],
            gpu_minors: vec![0],
        };
        assert!(NoCgroups.create("w2", &Default::default(), &gpus).is_ok());
    }
}
