//! cgroup v2 (unified). As root under systemd, workload cgroups are made in herd's systemd
//! scope ([`super::scope`], `…/herd.slice/herd-workloads.scope/workloads/`). Without root, in a
//! cgroup delegated to herdd (a user service with `Delegate=yes`), herdd moves itself into a
//! `supervisor` leaf and makes them under `workloads/` beside it. Otherwise under
//! `<mount>/<root>/`.

use super::scope::WorkloadScope;
use super::*;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct V2Backend {
    parent: PathBuf,
    /// How the parent was chosen, when systemd was asked (for logs and `doctor`).
    placed: Option<String>,
    /// herd's systemd scope, made again when it is gone (stopped by hand).
    scope: Option<WorkloadScope>,
    /// Set when herdd was started in the delegated service cgroup itself rather than in its
    /// `supervisor` leaf: the next start would be refused (EBUSY) while workloads live below.
    blocks_restart: Option<String>,
    /// The directories whose `cgroup.subtree_control` herd writes, top down, `parent` last:
    /// `+cpuset` goes into each when a workload is first pinned to cores.
    controlled: Vec<PathBuf>,
}

/// The delegated service cgroup, from herdd's own cgroup path: the service's (`Delegate=yes`),
/// or its parent when systemd already put herdd in the `supervisor` leaf
/// (`DelegateSubgroup=supervisor`, systemd ≥ 254).
fn service_cgroup(own: &Path) -> Option<&Path> {
    let is_service = |p: &Path| p.to_string_lossy().ends_with(".service");
    if is_service(own) {
        return Some(own);
    }
    let parent = own.parent()?;
    (own.file_name()? == "supervisor" && is_service(parent)).then_some(parent)
}

/// Delegated when systemd started us (INVOCATION_ID) in a service cgroup we may write to.
fn delegated_base(mount: &Path) -> Option<PathBuf> {
    std::env::var_os("INVOCATION_ID")?;
    let own = super::mounts::own_unified_path()?;
    let service = service_cgroup(&own)?;
    let dir = mount.join(service.strip_prefix("/").ok()?);
    nix::unistd::access(
        &dir.join("cgroup.subtree_control"),
        nix::unistd::AccessFlags::W_OK,
    )
    .ok()?;
    Some(dir)
}

impl V2Backend {
    pub fn new(mount: &Path, root: &str) -> Result<V2Backend, CgroupError> {
        let mut blocks_restart = None;
        let as_root = nix::unistd::Uid::effective().is_root();
        let mut placed = None;
        let mut in_scope = None;
        let mut controlled = vec![];
        let scope = (as_root && super::scope::systemd_is_init()).then(|| {
            WorkloadScope::ensure(mount, root).map_err(|e| {
                // Still safe for restarts (not under herdd.service), but outside systemd's view.
                tracing::warn!(
                    "{e}; making workload cgroups under {}",
                    mount.join(root).display()
                );
                e
            })
        });
        let parent = if let Some(Ok(scope)) = scope {
            placed = Some(format!("in the systemd scope {}", scope.unit));
            in_scope = Some(scope.clone());
            controlled.push(scope.dir.clone());
            scope.workloads()
        } else if let Some(base) = delegated_base(mount) {
            let started_in = super::mounts::own_unified_path()
                .map(|own| mount.join(own.strip_prefix("/").unwrap_or(&own)));
            if started_in.as_deref() == Some(base.as_path()) {
                blocks_restart = Some(format!(
                    "systemd started herdd in {} itself, not in its supervisor leaf (DelegateSubgroup=supervisor needs systemd 254): with workloads kept below it, the kernel would refuse the next herdd there (EBUSY)",
                    base.display()
                ));
            }
            // No process may stay in a cgroup that has controllers enabled for children.
            let supervisor = base.join("supervisor");
            std::fs::create_dir_all(&supervisor).map_err(io_err(&supervisor))?;
            for pid in read_pids(&base.join("cgroup.procs")) {
                write_file(&supervisor.join("cgroup.procs"), &pid.to_string())?;
            }
            enable_controllers(&base)?;
            controlled.push(base.clone());
            base.join("workloads")
        } else {
            if let Some(Err(e)) = scope {
                placed = Some(format!("herd's own root: {e}"));
            }
            enable_controllers(mount)?;
            controlled.push(mount.to_path_buf());
            mount.join(root)
        };
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        enable_controllers(&parent)?;
        controlled.push(parent.clone());
        Ok(V2Backend {
            parent,
            placed,
            scope: in_scope,
            blocks_restart,
            controlled,
        })
    }
}

impl V2Backend {
    /// The parent of workload cgroups, made again with its controllers when it was removed
    /// meanwhile (`herdd doctor` removes an empty one; the scope may have been stopped).
    fn ensure_parent(&self) -> Result<(), CgroupError> {
        if self.parent.is_dir() {
            return Ok(());
        }
        if let Some(scope) = &self.scope {
            scope.ensure_again()?;
        }
        std::fs::create_dir_all(&self.parent).map_err(io_err(&self.parent))?;
        enable_controllers(&self.parent)
    }

    /// Enables the cpuset controller down to workload cgroups (herd enables it only once a
    /// workload is pinned to cores); an error naming the directory that does not offer it.
    fn enable_cpuset(&self, cores: &str) -> Result<(), CgroupError> {
        for dir in &self.controlled {
            let offered = std::fs::read_to_string(dir.join("cgroup.controllers"))
                .map_err(io_err(dir.join("cgroup.controllers")))?;
            if !offered.split_whitespace().any(|c| c == "cpuset") {
                return Err(CgroupError::Limit(format!(
                    "cannot pin the workload to cores {cores}: cgroup v2 offers no cpuset controller in {} (its cgroup.controllers: {})",
                    dir.display(),
                    offered.trim()
                )));
            }
            let enabled =
                std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "cpuset") {
                write_file(&dir.join("cgroup.subtree_control"), "+cpuset")?;
            }
        }
        Ok(())
    }
}

impl CgroupBackend for V2Backend {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn describe(&self) -> String {
        match &self.placed {
            Some(how) => format!("cgroup v2 under {} ({how})", self.parent.display()),
            None => format!("cgroup v2 under {}", self.parent.display()),
        }
    }

    fn keeping_blocks_restart(&self) -> Option<String> {
        self.blocks_restart.clone()
    }

    fn remove_root_if_empty(&self) {
        match std::fs::remove_dir(&self.parent) {
            Ok(()) => {
                if let Some(scope) = &self.scope {
                    scope.end_if_unused();
                }
            }
            Err(e) => {
                tracing::debug!(dir = %self.parent.display(), error = %e, "herd's cgroup root stays")
            }
        }
    }

    fn open(&self, name: &str) -> Result<Arc<dyn WorkloadCgroup>, CgroupError> {
        let dir = self.parent.join(name);
        std::fs::metadata(&dir).map_err(io_err(&dir))?;
        Ok(Arc::new(V2Cgroup::new(dir)))
    }

    fn create(
        &self,
        name: &str,
        limits: &Limits,
        pinned: &Pinned,
    ) -> Result<Arc<dyn WorkloadCgroup>, CgroupError> {
        self.ensure_parent()?;
        if !pinned.cores.is_empty() {
            self.enable_cpuset(&pinned.cpu_list())?;
        }
        let dir = self.parent.join(name);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let cg = V2Cgroup::new(dir);
        if !cg.pids().is_empty() {
            return Err(CgroupError::Limit(format!(
                "{} already holds processes",
                cg.dir.display()
            )));
        }
        let cpu = match limits.cpu {
            Some(c) => format!("{} {CPU_PERIOD_US}", cpu_quota_us(c, CPU_PERIOD_US)),
            None => format!("max {CPU_PERIOD_US}"),
        };
        write_file(&cg.dir.join("cpu.max"), &cpu)?;
        let memory = limit_text(limits.memory, "max");
        write_file(&cg.dir.join("memory.max"), &memory)?;
        // No swap beyond a memory limit unless asked for (the file exists where the kernel
        // accounts swap; `doctor` says when it does not).
        let swap_max = cg.dir.join("memory.swap.max");
        if swap_max.exists() {
            let swap = match limits.memory {
                Some(_) => limits.swap.unwrap_or(0).to_string(),
                None => "max".to_string(),
            };
            write_file(&swap_max, &swap)?;
        }
        // An OOM kill takes the whole workload, not one random process of it.
        write_file(&cg.dir.join("memory.oom.group"), "1")?;
        let pids = limit_text(limits.pids, "max");
        write_file(&cg.dir.join("pids.max"), &pids)?;
        // Device access is eBPF on v2: herd leaves it alone (GPUs are named by the environment).
        if !pinned.cores.is_empty() {
            let cores = pinned.cpu_list();
            write_file(&cg.dir.join("cpuset.cpus"), &cores).map_err(|e| {
                CgroupError::Limit(format!("cannot pin the workload to cores {cores}: {e}"))
            })?;
        }
        Ok(Arc::new(cg))
    }
}

#[derive(Debug)]
pub struct V2Cgroup {
    dir: PathBuf,
    files: V2Files,
}

/// The files sampled each tick, kept open.
#[derive(Debug)]
struct V2Files {
    cpu_stat: KeptFile,
    memory_current: KeptFile,
    memory_stat: KeptFile,
    memory_max: KeptFile,
    pids_current: KeptFile,
    io_stat: KeptFile,
    memory_events: KeptFile,
}

impl V2Cgroup {
    fn new(dir: PathBuf) -> V2Cgroup {
        let f = |name: &str| KeptFile::new(dir.join(name));
        let files = V2Files {
            cpu_stat: f("cpu.stat"),
            memory_current: f("memory.current"),
            memory_stat: f("memory.stat"),
            memory_max: f("memory.max"),
            pids_current: f("pids.current"),
            io_stat: f("io.stat"),
            memory_events: f("memory.events"),
        };
        V2Cgroup { dir, files }
    }

    /// The unified cgroup a process is in, from its `/proc/<pid>/cgroup` text.
    pub(crate) fn of_process(mount: &Path, proc_cgroup: &str) -> Option<V2Cgroup> {
        let path = proc_cgroup
            .lines()
            .find_map(|line| line.strip_prefix("0::"))?;
        Some(V2Cgroup::new(mount.join(path.trim_start_matches('/'))))
    }
}

/// Sums rbytes and wbytes over devices in io.stat.
fn io_bytes(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            r += v.parse::<u64>().unwrap_or(0);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            w += v.parse::<u64>().unwrap_or(0);
        }
    }
    (r, w)
}

impl WorkloadCgroup for V2Cgroup {
    fn placement_files(&self) -> Vec<PathBuf> {
        vec![self.dir.join("cgroup.procs")]
    }

    fn pids(&self) -> Vec<i32> {
        read_pids(&self.dir.join("cgroup.procs"))
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
            0 => s.cpu_usage_us = keyed_value(f.cpu_stat.read(buf)?, "usage_usec").unwrap_or(0),
            1 => s.memory_current = f.memory_current.read_u64(buf)?.unwrap_or(0),
            2 => s.pids = f.pids_current.read_u64(buf)?.unwrap_or(0),
            3 => {
                (s.io_read_bytes, s.io_write_bytes) =
                    f.io_stat.read(buf).map(io_bytes).unwrap_or((0, 0))
            }
            4 => s.memory_limit = f.memory_max.read_u64(buf)?,
            5 => {
                s.memory_inactive_file =
                    keyed_value(f.memory_stat.read(buf)?, "inactive_file").unwrap_or(0)
            }
            6 => s.oom_kills = keyed_value(f.memory_events.read(buf)?, "oom_kill").unwrap_or(0),
            _ => return Ok(false),
        }
        Ok(step_follows(step, full))
    }

    fn final_counters(&self) -> Result<FinalCounters, CgroupError> {
        let s = self.sample()?;
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).ok();
        let cpu = read("cpu.stat").unwrap_or_default();
        let mut notes = Vec::new();
        let mut peak = |file: &str, why: &str| {
            let v = read(file).and_then(|t| t.trim().parse::<u64>().ok());
            if v.is_none() {
                notes.push(format!("no {file}: {why}"));
            }
            v
        };
        let memory_peak_bytes = peak("memory.peak", "it needs Linux 5.19");
        let pids_peak = peak("pids.peak", "it needs Linux 6.12");
        Ok(FinalCounters {
            cpu_user_us: keyed_value(&cpu, "user_usec"),
            cpu_system_us: keyed_value(&cpu, "system_usec"),
            memory_peak_bytes,
            pids_peak,
            notes,
            ..FinalCounters::from_sample(&s)
        })
    }

    /// `cgroup.kill` (Linux 5.14+) kills the tree atomically; older kernels freeze, SIGKILL and
    /// thaw.
    fn kill_all(&self) -> Result<(), CgroupError> {
        let kill = self.dir.join("cgroup.kill");
        let has_kill = kill.exists();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            if has_kill {
                write_file(&kill, "1")?;
            } else {
                let _ = std::fs::write(self.dir.join("cgroup.freeze"), "1");
                for pid in &pids {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
                }
                let _ = std::fs::write(self.dir.join("cgroup.freeze"), "0");
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Limit(format!(
                    "{} still holds {pids:?}",
                    self.dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn limit_files(&self) -> Vec<(PathBuf, String)> {
        read_back(
            [
                "cpu.max",
                "memory.max",
                "memory.swap.max",
                "memory.oom.group",
                "pids.max",
                "cpuset.cpus",
            ]
            .map(|f| self.dir.join(f))
            .into_iter()
            .filter(|f| f.exists())
            .collect::<Vec<_>>(),
        )
    }

    fn remove(&self) -> Result<(), CgroupError> {
        remove_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delegated_service_cgroup_is_found_from_the_service_or_its_supervisor_leaf() {
        let service = Path::new("/system.slice/herdd.service");
        assert_eq!(service_cgroup(service), Some(service));
        assert_eq!(
            service_cgroup(Path::new("/system.slice/herdd.service/supervisor")),
            Some(service)
        );
        assert_eq!(
            service_cgroup(Path::new("/user.slice/session-1.scope")),
            None
        );
        assert_eq!(
            service_cgroup(Path::new("/system.slice/herdd.service/workloads")),
            None
        );
    }

    #[test]
    fn a_process_cgroup_is_found_under_the_unified_mount() {
        let text = "0::/system.slice/docker-abc.scope\n";
        let cg = V2Cgroup::of_process(Path::new("/sys/fs/cgroup"), text).unwrap();
        assert_eq!(
            cg.dir,
            Path::new("/sys/fs/cgroup/system.slice/docker-abc.scope")
        );
        assert!(V2Cgroup::of_process(Path::new("/sys/fs/cgroup"), "4:memory:/x\n").is_none());
    }

    #[test]
    fn io_stat_sums_devices() {
        let text =
            "8:0 rbytes=100 wbytes=20 rios=1 wios=1 dbytes=0 dios=0\n8:16 rbytes=5 wbytes=1\n";
        assert_eq!(io_bytes(text), (105, 21));
    }

    /// On a fake tree (a temp dir standing in for the cgroup fs): the files a v2 workload
    /// cgroup is made of are written with the kernel's formats.
    #[test]
    fn writes_limits_in_v2_formats_on_a_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let backend = V2Backend::new(dir.path(), "herd").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids +io"
        );
        let cg = backend
            .create(
                "w1",
                &Limits {
                    cpu: Some(0.5),
                    memory: Some(64 << 20),
                    pids: Some(32),
                    swap: None,
                    ..Default::default()
                },
                &Pinned::default(),
            )
            .unwrap();
        let files: std::collections::BTreeMap<String, String> = cg
            .limit_files()
            .into_iter()
            .map(|(p, v)| (p.file_name().unwrap().to_string_lossy().into_owned(), v))
            .collect();
        assert_eq!(files["cpu.max"], "50000 100000");
        assert_eq!(files["memory.max"], "67108864");
        assert_eq!(files["memory.oom.group"], "1");
        assert_eq!(files["pids.max"], "32");
        std::fs::write(
            dir.path().join("herd/w1/cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("herd/w1/memory.current"), "4096\n").unwrap();
        std::fs::write(
            dir.path().join("herd/w1/memory.stat"),
            "anon 0\ninactive_file 1024\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("herd/w1/pids.current"), "3\n").unwrap();
        std::fs::write(
            dir.path().join("herd/w1/memory.events"),
            "low 0\noom 1\noom_kill 1\n",
        )
        .unwrap();
        let s = cg.sample().unwrap();
        assert_eq!(s.cpu_usage_us, 1500);
        assert_eq!(s.memory_current - s.memory_inactive_file, 3072);
        assert_eq!(s.memory_limit, Some(64 << 20));
        assert_eq!((s.pids, s.oom_kills), (3, 1));
    }

    /// cpuset only once a workload is pinned: `+cpuset` down the path, the cores in its
    /// `cpuset.cpus`, no CPU quota unless `cpu` asks for one too.
    #[test]
    fn a_pinned_workload_gets_cpuset_on_a_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let controllers = "cpuset cpu io memory pids\n";
        std::fs::write(dir.path().join("cgroup.controllers"), controllers).unwrap();
        let backend = V2Backend::new(dir.path(), "herd").unwrap();
        std::fs::write(dir.path().join("herd/cgroup.controllers"), controllers).unwrap();
        let plain = backend
            .create("w0", &Limits::default(), &Pinned::default())
            .unwrap();
        drop(plain);
        let subtree = std::fs::read_to_string(dir.path().join("herd/cgroup.subtree_control"));
        assert!(
            !subtree.unwrap().contains("cpuset"),
            "not before a pinned one"
        );
        let pinned = Pinned {
            cores: vec![0, 1],
            gpu_minors: vec![0],
        };
        let limits = Limits {
            cpuset_cpus: Some(2),
            ..Default::default()
        };
        backend.create("w1", &limits, &pinned).unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        for level in ["cgroup.subtree_control", "herd/cgroup.subtree_control"] {
            assert!(read(level).contains("+cpuset"), "{level}: {}", read(level));
        }
        assert_eq!(read("herd/w1/cpuset.cpus"), "0,1");
        assert_eq!(read("herd/w1/cpu.max"), "max 100000");
        let both = Limits {
            cpu: Some(1.5),
            cpuset_cpus: Some(2),
            ..Default::default()
        };
        backend.create("w2", &both, &pinned).unwrap();
        assert_eq!(read("herd/w2/cpuset.cpus"), "0,1");
        assert_eq!(read("herd/w2/cpu.max"), "150000 100000");

        std::fs::write(dir.path().join("herd/cgroup.controllers"), "cpu memory\n").unwrap();
        let e = backend.create("w3", &limits, &pinned).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot pin the workload to cores 0,1: cgroup v2 offers no cpuset controller in {} (its cgroup.controllers: cpu memory)",
                dir.path().join("herd").display()
            )
        );
    }
}
