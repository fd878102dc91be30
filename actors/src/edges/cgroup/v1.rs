//! cgroup v1 (legacy, or hybrid with an empty unified mount): one directory per hierarchy.

mod pinned;

use super::mounts::MountInfo;
use super::*;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// Above this, v1's memory.limit_in_bytes means "no limit" (PAGE_COUNTER_MAX in bytes).
const V1_UNLIMITED: u64 = 1 << 62;

/// One directory per v1 hierarchy herd uses (co-mounted controllers share one).
#[derive(Debug, Clone)]
struct V1Dirs {
    cpu: PathBuf,
    cpuacct: PathBuf,
    memory: PathBuf,
    pids: PathBuf,
    freezer: Option<PathBuf>,
    blkio: Option<PathBuf>,
    /// Only for a workload with cores of its own.
    cpuset: Option<PathBuf>,
    /// Only for a workload with GPUs of its own.
    devices: Option<PathBuf>,
}

impl V1Dirs {
    /// A workload's directories: no cpuset or devices cgroup unless it is pinned.
    fn join(&self, name: &str) -> V1Dirs {
        V1Dirs {
            cpu: self.cpu.join(name),
            cpuacct: self.cpuacct.join(name),
            memory: self.memory.join(name),
            pids: self.pids.join(name),
            freezer: self.freezer.as_ref().map(|d| d.join(name)),
            blkio: self.blkio.as_ref().map(|d| d.join(name)),
            cpuset: None,
            devices: None,
        }
    }

    /// Each distinct directory once.
    fn distinct(&self) -> Vec<PathBuf> {
        let mut dirs = vec![
            self.cpu.clone(),
            self.cpuacct.clone(),
            self.memory.clone(),
            self.pids.clone(),
        ];
        dirs.extend(self.freezer.clone());
        dirs.extend(self.blkio.clone());
        dirs.extend(self.cpuset.clone());
        dirs.extend(self.devices.clone());
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

#[derive(Debug)]
pub struct V1Backend {
    root: V1Dirs,
    /// herd's directory in the cpuset hierarchy, made when a workload is first pinned to cores.
    cpuset: Option<PathBuf>,
    /// herd's directory in the devices hierarchy, made when a workload first gets GPUs.
    devices: Option<PathBuf>,
}

impl V1Backend {
    pub fn new(info: &MountInfo, root: &str) -> Result<V1Backend, CgroupError> {
        let need = |c: &str| {
            info.v1_controller(c)
                .map(|m| m.mount_point.join(root))
                .ok_or_else(|| CgroupError::Unusable(format!("no cgroup v1 '{c}' hierarchy")))
        };
        let optional = |c: &str| info.v1_controller(c).map(|m| m.mount_point.join(root));
        let backend = V1Backend {
            root: V1Dirs {
                cpu: need("cpu")?,
                cpuacct: need("cpuacct")?,
                memory: need("memory")?,
                pids: need("pids")?,
                freezer: optional("freezer"),
                blkio: optional("blkio"),
                cpuset: None,
                devices: None,
            },
            cpuset: optional("cpuset"),
            devices: optional("devices"),
        };
        for dir in backend.root.distinct() {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(backend)
    }
}

impl CgroupBackend for V1Backend {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn describe(&self) -> String {
        format!("cgroup v1 under {}", self.root.memory.display())
    }

    fn remove_root_if_empty(&self) {
        let pinning = self
            .cpuset
            .iter()
            .chain(&self.devices)
            .filter(|d| d.is_dir());
        for dir in self.root.distinct().iter().chain(pinning) {
            if let Err(e) = std::fs::remove_dir(dir) {
                tracing::debug!(dir = %dir.display(), error = %e, "herd's cgroup root stays");
            }
        }
    }

    fn open(&self, name: &str) -> Result<Arc<dyn WorkloadCgroup>, CgroupError> {
        let mut dirs = self.root.join(name);
        // Pinned when it was made: its cpuset and devices cgroups go with it.
        dirs.cpuset = self
            .cpuset
            .as_ref()
            .map(|d| d.join(name))
            .filter(|d| d.is_dir());
        dirs.devices = self
            .devices
            .as_ref()
            .map(|d| d.join(name))
            .filter(|d| d.is_dir());
        let cg = V1Cgroup::new(dirs);
        for dir in &cg.d.distinct() {
            std::fs::metadata(dir).map_err(io_err(dir))?;
        }
        Ok(Arc::new(cg))
    }

    fn create(
        &self,
        name: &str,
        limits: &Limits,
        pinned: &Pinned,
    ) -> Result<Arc<dyn WorkloadCgroup>, CgroupError> {
        let mut dirs = self.root.join(name);
        if !pinned.cores.is_empty() {
            dirs.cpuset = Some(self.cpuset_dir(name, pinned)?);
        }
        if !pinned.gpu_minors.is_empty() {
            dirs.devices = self.devices_dir(name, pinned)?;
        }
        let cg = V1Cgroup::new(dirs);
        for dir in &cg.d.distinct() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        if !cg.pids().is_empty() {
            return Err(CgroupError::Limit(format!(
                "{} already holds processes",
                cg.d.memory.display()
            )));
        }
        write_file(
            &cg.d.cpu.join("cpu.cfs_period_us"),
            &CPU_PERIOD_US.to_string(),
        )?;
        let quota = limits
            .cpu
            .map(|c| cpu_quota_us(c, CPU_PERIOD_US).to_string())
            .unwrap_or_else(|| "-1".into());
        write_file(&cg.d.cpu.join("cpu.cfs_quota_us"), &quota)?;
        // Memory plus swap (memory.memsw, where swap accounting is on) must stay ≥ memory:
        // lifted first, set after, so a reused cgroup's old values never get in the way.
        let memsw = cg.d.memory.join("memory.memsw.limit_in_bytes");
        let swap_accounted = memsw.exists();
        if swap_accounted {
            write_file(&memsw, "-1")?;
        }
        let memory = limit_text(limits.memory, "-1");
        write_file(&cg.d.memory.join("memory.limit_in_bytes"), &memory)?;
        if swap_accounted {
            write_file(&memsw, &limit_text(limits.memory_and_swap(), "-1"))?;
        }
        let pids = limit_text(limits.pids, "max");
        write_file(&cg.d.pids.join("pids.max"), &pids)?;
        Ok(Arc::new(cg))
    }
}

#[derive(Debug)]
pub struct V1Cgroup {
    d: V1Dirs,
    files: V1Files,
}

/// The files sampled each tick, kept open.
#[derive(Debug)]
struct V1Files {
    cpuacct_usage: KeptFile,
    memory_stat: KeptFile,
    memory_usage: KeptFile,
    memory_limit: KeptFile,
    pids_current: KeptFile,
    oom_control: KeptFile,
    blkio: Option<KeptFile>,
}

impl V1Cgroup {
    fn new(d: V1Dirs) -> V1Cgroup {
        let files = V1Files {
            cpuacct_usage: KeptFile::new(d.cpuacct.join("cpuacct.usage")),
            memory_stat: KeptFile::new(d.memory.join("memory.stat")),
            memory_usage: KeptFile::new(d.memory.join("memory.usage_in_bytes")),
            memory_limit: KeptFile::new(d.memory.join("memory.limit_in_bytes")),
            pids_current: KeptFile::new(d.pids.join("pids.current")),
            oom_control: KeptFile::new(d.memory.join("memory.oom_control")),
            blkio: d
                .blkio
                .as_ref()
                .map(|b| KeptFile::new(b.join("blkio.throttle.io_service_bytes"))),
        };
        V1Cgroup { d, files }
    }

    /// The v1 cgroups a process is in, from its `/proc/<pid>/cgroup` text.
    pub(crate) fn of_process(info: &MountInfo, proc_cgroup: &str) -> Option<V1Cgroup> {
        let dir = |controller: &str| {
            let mount = info.v1_controller(controller)?;
            proc_cgroup.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == controller)
                    .then(|| mount.mount_point.join(path.trim_start_matches('/')))
            })
        };
        Some(V1Cgroup::new(V1Dirs {
            cpu: dir("cpu")?,
            cpuacct: dir("cpuacct")?,
            memory: dir("memory")?,
            pids: dir("pids")?,
            freezer: dir("freezer"),
            blkio: dir("blkio"),
            cpuset: None,
            devices: None,
        }))
    }
}

/// Sums `Read` and `Write` over devices in blkio.throttle.io_service_bytes.
fn blkio_bytes(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(_dev), Some(op), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let v: u64 = v.parse().unwrap_or(0);
        match op {
            "Read" => r += v,
            "Write" => w += v,
            _ => {}
        }
    }
    (r, w)
}

impl V1Cgroup {
    fn freeze(&self, state: &str) {
        if let Some(f) = &self.d.freezer {
            let _ = std::fs::write(f.join("freezer.state"), state);
            if state == "FROZEN" {
                let deadline = Instant::now() + Duration::from_millis(500);
                while Instant::now() < deadline {
                    match std::fs::read_to_string(f.join("freezer.state")) {
                        Ok(s) if s.trim() == "FROZEN" => return,
                        Err(_) => return,
                        _ => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }
        }
    }
}

impl WorkloadCgroup for V1Cgroup {
    fn placement_files(&self) -> Vec<PathBuf> {
        self.d
            .distinct()
            .iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    fn pids(&self) -> Vec<i32> {
        read_pids(&self.d.memory.join("cgroup.procs"))
    }

    fn sample(&self) -> Result<CgroupSample, CgroupError> {
        sample_by_steps(self)
    }

    /// The counters (cpu, memory usage, pids, io), then with `full` the limit, memory.stat's
    /// inactive file memory and the OOM kill count.
    fn sample_step(
        &self,
        step: usize,
        full: bool,
        s: &mut CgroupSample,
        buf: &mut ReadBuf,
    ) -> Result<bool, CgroupError> {
        let f = &self.files;
        let buf = &mut buf.0;
        match step {
            0 => s.cpu_usage_us = f.cpuacct_usage.read_u64(buf)?.unwrap_or(0) / 1000,
            1 => s.memory_current = f.memory_usage.read_u64(buf)?.unwrap_or(0),
            2 => s.pids = f.pids_current.read_u64(buf)?.unwrap_or(0),
            3 => {
                (s.io_read_bytes, s.io_write_bytes) = match &f.blkio {
                    Some(b) => b.read(buf).map(blkio_bytes).unwrap_or((0, 0)),
                    None => (0, 0),
                }
            }
            4 => s.memory_limit = f.memory_limit.read_u64(buf)?.filter(|l| *l < V1_UNLIMITED),
            5 => {
                let stat = f.memory_stat.read(buf)?;
                s.memory_inactive_file = keyed_value(stat, "total_inactive_file")
                    .or_else(|| keyed_value(stat, "inactive_file"))
                    .unwrap_or(0);
            }
            6 => s.oom_kills = keyed_value(f.oom_control.read(buf)?, "oom_kill").unwrap_or(0),
            _ => return Ok(false),
        }
        Ok(step_follows(step, full))
    }

    fn final_counters(&self) -> Result<FinalCounters, CgroupError> {
        let s = self.sample()?;
        let read = |path: PathBuf| std::fs::read_to_string(path).ok();
        let split = read(self.d.cpuacct.join("cpuacct.stat")).and_then(|t| {
            crate::cores::workload::resources::parse_cpuacct_stat(&t, proc::clock_ticks_per_s())
        });
        let memory_peak_bytes = read(self.d.memory.join("memory.max_usage_in_bytes"))
            .and_then(|t| t.trim().parse::<u64>().ok());
        let mut notes = vec!["no peak pids: cgroup v1 does not keep it".to_string()];
        if memory_peak_bytes.is_none() {
            notes.push("no memory.max_usage_in_bytes".into());
        }
        Ok(FinalCounters {
            cpu_user_us: split.map(|(u, _)| u),
            cpu_system_us: split.map(|(_, s)| s),
            memory_peak_bytes,
            notes,
            ..FinalCounters::from_sample(&s)
        })
    }

    /// Freeze, SIGKILL everything, thaw: a process cannot fork away in between.
    fn kill_all(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            self.freeze("FROZEN");
            for pid in &pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
            }
            self.freeze("THAWED");
            if Instant::now() > deadline {
                return Err(CgroupError::Limit(format!(
                    "{} still holds {pids:?} after SIGKILL",
                    self.d.memory.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn limit_files(&self) -> Vec<(PathBuf, String)> {
        let files = [
            self.d.cpu.join("cpu.cfs_quota_us"),
            self.d.cpu.join("cpu.cfs_period_us"),
            self.d.memory.join("memory.limit_in_bytes"),
            self.d.memory.join("memory.memsw.limit_in_bytes"),
            self.d.pids.join("pids.max"),
        ];
        let cpuset = self.d.cpuset.iter().map(|d| d.join("cpuset.cpus"));
        read_back(
            files
                .into_iter()
                .filter(|f| f.exists())
                .chain(cpuset)
                .collect::<Vec<_>>(),
        )
    }

    fn remove(&self) -> Result<(), CgroupError> {
        for dir in &self.d.distinct() {
            remove_dir(dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_process_cgroup_maps_to_each_mount() {
        let info = crate::edges::cgroup::MountInfo::parse(
            "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             32 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
        );
        let text = "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n8:pids:/docker/abc\n0::/\n";
        let cg = super::V1Cgroup::of_process(&info, text).unwrap();
        assert_eq!(
            cg.d.memory,
            std::path::Path::new("/sys/fs/cgroup/memory/docker/abc")
        );
        assert_eq!(
            cg.d.cpu,
            std::path::Path::new("/sys/fs/cgroup/cpu,cpuacct/docker/abc")
        );
        assert_eq!(cg.d.cpuacct, cg.d.cpu);
        assert!(cg.d.freezer.is_none());
        assert!(super::V1Cgroup::of_process(&info, "0::/docker/abc\n").is_none());
    }

    #[test]
    fn blkio_sums_devices() {
        let text =
            "8:0 Read 100\n8:0 Write 20\n8:16 Read 5\n8:16 Write 1\n8:0 Total 120\nTotal 126\n";
        assert_eq!(super::blkio_bytes(text), (105, 21));
    }
}
