//! A v1 workload's own cores and GPUs: its cpuset cgroup and its devices cgroup, made only
//! for a workload the node pinned.

use super::V1Backend;
use crate::edges::cgroup::{
    io_err, write_file, CgroupError, Pinned, NVIDIA_GPU_MINORS, NVIDIA_MAJOR,
};
use std::path::{Path, PathBuf};

impl V1Backend {
    /// The workload's cpuset cgroup, made with `pinned`'s cores and herd's memory nodes. A new
    /// v1 cpuset cgroup starts with no cpus and no mems (no process could join it), so herd's
    /// own directory first gets its parent's.
    pub(super) fn cpuset_dir(&self, name: &str, pinned: &Pinned) -> Result<PathBuf, CgroupError> {
        let cores = pinned.cpu_list();
        let root = self.cpuset.as_ref().ok_or_else(|| {
            CgroupError::Limit(format!(
                "cannot pin the workload to cores {cores}: this host has no cgroup v1 cpuset hierarchy"
            ))
        })?;
        ensure_cpuset(root)?;
        let dir = root.join(name);
        ensure_cpuset(&dir)?;
        write_file(&dir.join("cpuset.cpus"), &cores).map_err(|e| {
            let allowed = std::fs::read_to_string(root.join("cpuset.cpus")).unwrap_or_default();
            CgroupError::Limit(format!(
                "cannot pin the workload to cores {cores} (herd's cpuset {} allows {}): {e}",
                root.display(),
                allowed.trim()
            ))
        })?;
        Ok(dir)
    }

    /// The workload's devices cgroup, with every NVIDIA GPU but its own denied; None (and a
    /// warning) where the host has no devices hierarchy.
    pub(super) fn devices_dir(
        &self,
        name: &str,
        pinned: &Pinned,
    ) -> Result<Option<PathBuf>, CgroupError> {
        let Some(root) = &self.devices else {
            tracing::warn!(
                "no cgroup v1 devices hierarchy: a workload with GPUs can open every /dev/nvidia*"
            );
            return Ok(None);
        };
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        deny_devices(&dir.join("devices.deny"), &other_gpus(&pinned.gpu_minors))?;
        Ok(Some(dir))
    }
}

/// Makes the cpuset cgroup `dir` (and its parents) usable: a directory whose `cpuset.cpus` or
/// `cpuset.mems` is empty gets its parent's.
fn ensure_cpuset(dir: &Path) -> Result<(), CgroupError> {
    if !dir.is_dir() {
        if let Some(parent) = dir.parent() {
            if !parent.join("cpuset.cpus").exists() {
                return Err(CgroupError::Unusable(format!(
                    "{} is not in a cpuset hierarchy",
                    dir.display()
                )));
            }
            ensure_cpuset(parent)?;
        }
        std::fs::create_dir(dir).or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(io_err(dir)(e)),
        })?;
    }
    for file in ["cpuset.mems", "cpuset.cpus"] {
        let path = dir.join(file);
        let value = std::fs::read_to_string(&path).unwrap_or_default();
        if value.trim().is_empty() {
            let from = dir.parent().map(|p| p.join(file)).unwrap_or_default();
            let inherited = std::fs::read_to_string(&from).map_err(io_err(&from))?;
            write_file(&path, inherited.trim())?;
        }
    }
    Ok(())
}

/// The v1 device rules that keep a workload off every NVIDIA GPU but its own: the cgroup
/// allows all devices (as its parent), so each other GPU minor is denied one by one. (Denying
/// `c 195:*` and allowing its own afterwards does not work there: in an allow-all cgroup an
/// allow only removes an identical deny rule, and `devices.list` shows `a *:* rwm` either way.)
/// `nvidiactl` (255) and `nvidia-modeset` (254) stay open: every CUDA process needs them.
pub(crate) fn other_gpus(own: &[u32]) -> Vec<String> {
    (0..NVIDIA_GPU_MINORS)
        .filter(|m| !own.contains(m))
        .map(|m| format!("c {NVIDIA_MAJOR}:{m} rwm"))
        .collect()
}

/// Writes each rule to `devices.deny`, one write per rule (the kernel reads one per write).
fn deny_devices(deny: &Path, rules: &[String]) -> Result<(), CgroupError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        // Made only in a fake tree of the tests: the kernel has it already.
        .create(true)
        .truncate(false)
        .open(deny)
        .map_err(io_err(deny))?;
    for rule in rules {
        file.write_all(format!("{rule}\n").as_bytes())
            .map_err(io_err(deny))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edges::cgroup::{CgroupBackend, MountInfo};
    use herd_bus::Limits;

    /// A fake v1 tree in a temp dir: one directory per hierarchy, the cpuset root with the
    /// host's cpus and mems.
    fn fake_v1(base: &Path, with: &[&str]) -> V1Backend {
        let mut info = String::new();
        for (i, c) in with.iter().enumerate() {
            let dir = base.join(c);
            std::fs::create_dir_all(&dir).unwrap();
            info.push_str(&format!(
                "{} 1 0:{i} / {} rw - cgroup cgroup rw,{c}\n",
                30 + i,
                dir.display()
            ));
        }
        if with.contains(&"cpuset") {
            std::fs::write(base.join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
            std::fs::write(base.join("cpuset/cpuset.mems"), "0\n").unwrap();
        }
        V1Backend::new(&MountInfo::parse(&info), "herd").unwrap()
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    const ALL: &[&str] = &["cpu", "cpuacct", "memory", "pids", "cpuset", "devices"];

    #[test]
    fn a_pinned_workload_gets_its_cores_and_the_parents_mems() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = fake_v1(tmp.path(), ALL);
        let pinned = Pinned {
            cores: vec![1],
            gpu_minors: vec![],
        };
        let limits = Limits {
            cpuset_cpus: Some(1),
            ..Default::default()
        };
        let cg = backend.create("w1", &limits, &pinned).unwrap();
        let cpuset = tmp.path().join("cpuset");
        assert_eq!(read(cpuset.join("herd/cpuset.cpus")), "0-1", "herd's root");
        assert_eq!(read(cpuset.join("herd/cpuset.mems")), "0");
        assert_eq!(read(cpuset.join("herd/w1/cpuset.cpus")), "1");
        assert_eq!(read(cpuset.join("herd/w1/cpuset.mems")), "0");
        assert!(
            cg.placement_files()
                .contains(&cpuset.join("herd/w1/cgroup.procs")),
            "the process joins its cpuset: {:?}",
            cg.placement_files()
        );
        // cpuset_cpus without cpu: no quota.
        assert_eq!(read(tmp.path().join("cpu/herd/w1/cpu.cfs_quota_us")), "-1");
        let files = cg.limit_files();
        assert!(files
            .iter()
            .any(|(f, v)| f.ends_with("cpuset.cpus") && v == "1"));
        assert!(!tmp.path().join("devices/herd/w1").exists(), "no GPUs");

        // Found again after a restart with its cpuset; an unpinned one gets none.
        let again = backend.open("w1").unwrap();
        assert_eq!(again.placement_files(), cg.placement_files());
        let plain = backend
            .create("w2", &Default::default(), &Pinned::default())
            .unwrap();
        assert!(!cpuset.join("herd/w2").exists());
        assert!(plain
            .placement_files()
            .iter()
            .all(|p| !p.starts_with(&cpuset)));
    }

    #[test]
    fn a_workload_with_gpus_is_denied_every_other_gpu() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = fake_v1(tmp.path(), ALL);
        let pinned = Pinned {
            cores: vec![],
            gpu_minors: vec![1, 3],
        };
        let cg = backend.create("w1", &Default::default(), &pinned).unwrap();
        let dir = tmp.path().join("devices/herd/w1");
        let rules = read(dir.join("devices.deny"));
        let rules: Vec<&str> = rules.lines().collect();
        assert_eq!(rules.len(), 252);
        assert_eq!(rules[..3], ["c 195:0 rwm", "c 195:2 rwm", "c 195:4 rwm"]);
        assert!(!rules.contains(&"c 195:1 rwm") && !rules.contains(&"c 195:3 rwm"));
        assert!(
            !rules
                .iter()
                .any(|r| r.contains(":254") || r.contains(":255")),
            "nvidiactl and nvidia-modeset stay open"
        );
        assert!(cg.placement_files().contains(&dir.join("cgroup.procs")));
        assert!(!tmp.path().join("cpuset/herd/w1").exists(), "no cores");
    }

    #[test]
    fn pinning_without_a_cpuset_hierarchy_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = fake_v1(tmp.path(), &["cpu", "cpuacct", "memory", "pids"]);
        let pinned = Pinned {
            cores: vec![0, 1],
            gpu_minors: vec![0],
        };
        let e = backend
            .create("w1", &Default::default(), &pinned)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot pin the workload to cores 0,1: this host has no cgroup v1 cpuset hierarchy"
        );
        // GPUs without a devices hierarchy: made, with a warning.
        let gpus_only = Pinned {
            cores: vec![],
            gpu_minors: vec![0],
        };
        backend
            .create("w2", &Default::default(), &gpus_only)
            .unwrap();
    }
}
