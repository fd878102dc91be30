//! Cgroup backends behind one trait: v2 (unified), v1 (legacy or hybrid) and none (plain
//! processes sampled from /proc, with a warning).
//!
//! A workload's cgroup is created with its limits before the process exists; the forked child
//! writes `0` to pre-opened `cgroup.procs` files before it execs, so it never runs unlimited.
//! Written by hand rather than with cgroups-rs: placement must happen in the child through
//! pre-opened descriptors, v2's `cgroup.kill` and v1's freeze-kill-thaw are needed for tree
//! kills, and sampling reads a handful of files per tick without the crate's allocations.

mod detect;
mod mounts;
pub mod none;
pub mod proc;
pub mod scope;
pub mod v1;
pub mod v2;

pub use detect::detect;
pub use mounts::{own_unified_path, Mount, MountInfo};

pub use crate::cores::workload::rates::CgroupSample;
pub use crate::cores::workload::resources::FinalCounters;
use herd_bus::Limits;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V2,
    V1,
    None,
}

impl CgroupVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupVersion::V2 => "v2",
            CgroupVersion::V1 => "v1",
            CgroupVersion::None => "none",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no usable cgroup hierarchy: {0}")]
    Unusable(String),
    #[error("{0}")]
    Limit(String),
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.into();
    move |source| CgroupError::Io { path, source }
}

/// Creates workload cgroups on one hierarchy layout.
pub trait CgroupBackend: Send + Sync {
    fn version(&self) -> CgroupVersion;
    /// Where workload cgroups are made (for logs and `doctor`).
    fn describe(&self) -> String;
    /// Creates the cgroup `name` with `limits`, held to the cores and GPU devices of `pinned`;
    /// an existing empty one is reused. An error when the backend cannot pin what `pinned`
    /// names (no cpuset controller, no cgroups at all).
    fn create(
        &self,
        name: &str,
        limits: &Limits,
        pinned: &Pinned,
    ) -> Result<Arc<dyn WorkloadCgroup>, CgroupError>;
    /// An existing workload cgroup, as a restarted herdd finds it: limits and processes are
    /// left as they are. An error when it does not exist.
    fn open(&self, name: &str) -> Result<Arc<dyn WorkloadCgroup>, CgroupError>;
    /// Removes herd's own cgroup directories when nothing is left in them (at shutdown).
    fn remove_root_if_empty(&self) {}
    /// Why workloads kept running at shutdown would keep the next herdd from starting, if
    /// they would (cgroup v2 under an older systemd); None when keeping them is safe.
    fn keeping_blocks_restart(&self) -> Option<String> {
        None
    }
}

/// What a workload's cgroup holds it to besides its limits: the whole cores and the GPUs the
/// node assigned it. Empty (the default): any core, device access as herdd's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pinned {
    /// CPU ids of its cpuset, ascending. Empty: no cpuset of its own (cgroup v1 makes no
    /// cpuset cgroup for it).
    pub cores: Vec<u32>,
    /// Minors of its GPUs' device files, `/dev/nvidia<minor>`. Non-empty: on cgroup v1 with a
    /// devices hierarchy, every other `/dev/nvidia<N>` (N < 254) is denied to it; empty: its
    /// device access is left alone.
    pub gpu_minors: Vec<u32>,
}

impl Pinned {
    /// The cores as a cpuset list (`1,3`), as `cpuset.cpus` and Docker's `CpusetCpus` take it.
    pub fn cpu_list(&self) -> String {
        cpu_list(&self.cores)
    }
}

/// CPU ids as a cpuset list (`1,3`).
pub fn cpu_list(cores: &[u32]) -> String {
    cores
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The character-device major of NVIDIA's GPU device files (`/dev/nvidia<minor>`); minors 254
/// and 255 are `nvidia-modeset` and `nvidiactl`, which every CUDA process needs.
pub const NVIDIA_MAJOR: u32 = 195;
/// Minors below this are GPUs (`/dev/nvidia0` …).
pub const NVIDIA_GPU_MINORS: u32 = 254;

/// One workload's cgroup (or, without cgroups, its process group).
pub trait WorkloadCgroup: Send + Sync + std::fmt::Debug {
    /// `cgroup.procs` files of the workload's cgroup: the shim creates the workload in the
    /// directory of a single cgroup2 one (clone3), else it joins each (writes `0`) before exec.
    fn placement_files(&self) -> Vec<PathBuf>;
    /// Called once the leader is spawned (the none backend tracks its process group).
    fn set_leader(&self, _pid: u32) {}
    fn pids(&self) -> Vec<i32>;
    fn sample(&self) -> Result<CgroupSample, CgroupError>;
    /// Reads step `step` of a sample into `into` (one cgroup file) and says whether another
    /// step follows. Without `full`, only the counters that move every tick (cpu, memory
    /// usage, pids, io); the slow-moving fields (inactive file memory from the costly
    /// memory.stat, the memory limit, the OOM kill count) stay as `into` holds them, the
    /// previous sample's. The monitor reads everything every few ticks; a workload's exit
    /// reads a full sample, so its OOM kill is never missed.
    ///
    /// The monitor takes step 0 of every workload, then step 1, and so on: each kind of file
    /// is read over all workloads in turn, which the kernel does a little faster than each
    /// workload's files in turn (measured in docs/BENCHMARKS.md, the tick's breakdown). By
    /// default the whole sample is step 0.
    fn sample_step(
        &self,
        step: usize,
        full: bool,
        into: &mut CgroupSample,
        buf: &mut ReadBuf,
    ) -> Result<bool, CgroupError> {
        let _ = (full, buf);
        if step == 0 {
            *into = self.sample()?;
        }
        Ok(false)
    }
    /// Sends `signal` to every process of the workload.
    fn signal_all(&self, signal: nix::sys::signal::Signal) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
    /// Its counters as it ends (peaks and the user/system split where the kernel keeps
    /// them), for the workload's resource summary. Read before the cgroup is removed.
    fn final_counters(&self) -> Result<FinalCounters, CgroupError> {
        let s = self.sample()?;
        Ok(FinalCounters {
            notes: vec!["no cgroup: no peak memory or peak pids".into()],
            ..FinalCounters::from_sample(&s)
        })
    }
    /// Kills every process of the workload, races with forks included.
    fn kill_all(&self) -> Result<(), CgroupError>;
    /// Limit files and what they hold, as the kernel reports them.
    fn limit_files(&self) -> Vec<(PathBuf, String)>;
    /// Removes the cgroup once empty.
    fn remove(&self) -> Result<(), CgroupError>;
}

/// The cgroup another manager (the Docker engine) made for process `pid`, to sample it through
/// the same path as herd's own workloads. herd must not kill or remove it: its owner does.
pub fn of_process(pid: u32) -> Result<Arc<dyn WorkloadCgroup>, CgroupError> {
    let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let info = MountInfo::read().map_err(io_err("/proc/self/mountinfo"))?;
    if let Some(cg) = v1::V1Cgroup::of_process(&info, &text) {
        return Ok(Arc::new(cg));
    }
    if let Some(mount) = info.unified() {
        if let Some(cg) = v2::V2Cgroup::of_process(&mount.mount_point, &text) {
            return Ok(Arc::new(cg));
        }
    }
    Err(CgroupError::Unusable(format!(
        "process {pid} is in no cgroup herd can read"
    )))
}

/// `Limits` to kernel values: cpu quota per 100 ms period, memory in bytes, pids.
pub fn cpu_quota_us(cores: f64, period_us: u64) -> u64 {
    ((cores * period_us as f64).round() as u64).max(1000)
}

pub const CPU_PERIOD_US: u64 = 100_000;

/// A cgroup file kept open and re-read from offset 0 each tick: opening is most of a small
/// file's read (≈ 8 µs against ≈ 1 µs on the machine of docs/BENCHMARKS.md). Reads of a removed
/// cgroup fail with ENODEV; the open file does not keep the directory from being removed.
#[derive(Debug)]
pub(crate) struct KeptFile {
    path: PathBuf,
    file: std::sync::Mutex<Option<std::fs::File>>,
}

/// Big enough for v1's memory.stat (≈ 1.3 KB) and every other file herd samples.
pub(crate) const READ_BUF: usize = 8192;

/// Room to read one cgroup file into, reused from file to file.
pub struct ReadBuf(pub(crate) [u8; READ_BUF]);

impl Default for ReadBuf {
    fn default() -> Self {
        ReadBuf([0; READ_BUF])
    }
}

/// How many steps v1's and v2's `sample_step` take: the counters (cpu, memory usage, pids, io)
/// are steps 0 to 3; a full sample goes on with the limit, memory.stat and the OOM count.
const COUNTER_STEPS: usize = 4;
const FULL_STEPS: usize = 7;

/// Whether another step follows `step` in a sample read by v1's or v2's steps.
pub(crate) fn step_follows(step: usize, full: bool) -> bool {
    step + 1 < if full { FULL_STEPS } else { COUNTER_STEPS }
}

/// A full sample read step by step ([`WorkloadCgroup::sample_step`]): `sample` of a backend
/// whose steps are its reads.
pub(crate) fn sample_by_steps(cgroup: &dyn WorkloadCgroup) -> Result<CgroupSample, CgroupError> {
    let mut buf = ReadBuf::default();
    let mut sample = CgroupSample::default();
    let mut step = 0;
    while cgroup.sample_step(step, true, &mut sample, &mut buf)? {
        step += 1;
    }
    Ok(sample)
}

impl KeptFile {
    pub(crate) fn new(path: PathBuf) -> KeptFile {
        KeptFile {
            path,
            file: std::sync::Mutex::new(None),
        }
    }

    /// The file's text, read into `buf`. A short read is the end: a cgroup file is a kernel
    /// seq_file that hands its whole text to a read that has room for it, and a second read
    /// at a later offset would make the kernel generate the whole text again to find that
    /// there is nothing after it (measured: that second read cost as much as the first, and
    /// memory.stat's is the dearest read of a tick).
    pub(crate) fn read<'b>(&self, buf: &'b mut [u8; READ_BUF]) -> Result<&'b str, CgroupError> {
        use std::os::unix::fs::FileExt;
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(std::fs::File::open(&self.path).map_err(io_err(&self.path))?);
        }
        let file = guard.as_ref().expect("opened");
        let mut n = 0;
        while n < buf.len() {
            let room = buf.len() - n;
            match file.read_at(&mut buf[n..], n as u64) {
                Ok(k) if k < room => {
                    n += k;
                    break;
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    *guard = None;
                    return Err(io_err(&self.path)(e));
                }
            }
        }
        std::str::from_utf8(&buf[..n])
            .map_err(|e| CgroupError::Limit(format!("{}: {e}", self.path.display())))
    }

    /// The file's one integer (`max` is None).
    pub(crate) fn read_u64(&self, buf: &mut [u8; READ_BUF]) -> Result<Option<u64>, CgroupError> {
        let t = self.read(buf)?.trim();
        if t == "max" {
            return Ok(None);
        }
        t.parse()
            .map(Some)
            .map_err(|e| CgroupError::Limit(format!("{}: {e}: {t:?}", self.path.display())))
    }
}

/// Value of `key` in a flat-keyed file such as memory.stat or cpu.stat.
pub(crate) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// A limit as the kernel file wants it: the number, or the hierarchy's word for none.
pub(crate) fn limit_text(value: Option<u64>, unlimited: &str) -> String {
    value
        .map(|v| v.to_string())
        .unwrap_or_else(|| unlimited.to_string())
}

/// Each file with what it holds now, trimmed.
pub(crate) fn read_back(paths: impl IntoIterator<Item = PathBuf>) -> Vec<(PathBuf, String)> {
    paths
        .into_iter()
        .map(|p| {
            let v = std::fs::read_to_string(&p)
                .unwrap_or_default()
                .trim()
                .to_string();
            (p, v)
        })
        .collect()
}

/// The controllers herd enables for workload cgroups (cgroup v2), where the parent has them.
const V2_CONTROLLERS: &str = "+cpu +memory +pids +io";

/// Enables herd's controllers for the children of the cgroup v2 directory `dir`.
pub(crate) fn enable_controllers(dir: &std::path::Path) -> Result<(), CgroupError> {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<&str> = V2_CONTROLLERS
        .split(' ')
        .filter(|c| available.split_whitespace().any(|a| a == &c[1..]))
        .collect();
    write_file(&dir.join("cgroup.subtree_control"), &wanted.join(" "))
}

pub(crate) fn write_file(path: &std::path::Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_err(path))
}

pub(crate) fn read_pids(procs: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(procs)
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Removes a cgroup directory, retrying briefly while the kernel finishes reaping.
pub(crate) fn remove_dir(path: &std::path::Path) -> Result<(), CgroupError> {
    for _ in 0..50 {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => {
                return Err(CgroupError::Io {
                    path: path.into(),
                    source: e,
                })
            }
        }
    }
    Err(CgroupError::Io {
        path: path.into(),
        source: std::io::Error::from_raw_os_error(libc::EBUSY),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quota_matches_cores() {
        assert_eq!(cpu_quota_us(0.5, CPU_PERIOD_US), 50_000);
        assert_eq!(cpu_quota_us(2.0, CPU_PERIOD_US), 200_000);
        assert_eq!(
            cpu_quota_us(0.001, CPU_PERIOD_US),
            1000,
            "kernel minimum is 1 ms"
        );
    }

    #[test]
    fn keyed_files_parse() {
        let stat = "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n";
        assert_eq!(keyed_value(stat, "usage_usec"), Some(1234));
        assert_eq!(keyed_value(stat, "user"), None);
        assert_eq!(
            keyed_value("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
    }
}
