//! The cgroup hierarchies mounted on this host (/proc/self/mountinfo) and this process's
//! place in the unified one.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fstype: String,
    /// Super options: for cgroup v1, the controllers (`cpu,cpuacct`).
    pub super_options: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct MountInfo {
    pub mounts: Vec<Mount>,
}

impl MountInfo {
    pub fn read() -> std::io::Result<MountInfo> {
        Ok(MountInfo::parse(&std::fs::read_to_string(
            "/proc/self/mountinfo",
        )?))
    }

    /// Parses mountinfo(5): `id parent major:minor root mount-point options [optional…] -
    /// fstype source super-options`.
    pub fn parse(text: &str) -> MountInfo {
        let mounts = text
            .lines()
            .filter_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                let mount_point = left.split(' ').nth(4)?;
                let mut r = right.split(' ');
                let fstype = r.next()?.to_string();
                let _source = r.next()?;
                let super_options = r
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(String::from)
                    .collect();
                Some(Mount {
                    mount_point: PathBuf::from(unescape(mount_point)),
                    fstype,
                    super_options,
                })
            })
            .collect();
        MountInfo { mounts }
    }

    /// The cgroup2 mount, when it holds the controllers herd needs (not an empty hybrid one).
    pub fn unified(&self) -> Option<&Mount> {
        self.mounts.iter().find(|m| {
            m.fstype == "cgroup2"
                && std::fs::read_to_string(m.mount_point.join("cgroup.controllers"))
                    .map(|c| c.split_whitespace().any(|x| x == "memory"))
                    .unwrap_or(false)
        })
    }

    /// The v1 hierarchy carrying `controller`.
    pub fn v1_controller(&self, controller: &str) -> Option<&Mount> {
        self.mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == controller))
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// This process's cgroup path on the unified hierarchy (`0::/path` in /proc/self/cgroup).
pub fn own_unified_path() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| Path::new(p.trim()).to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_v1_controllers_including_comounted_ones() {
        let info = MountInfo::parse(HYBRID);
        assert_eq!(
            info.v1_controller("cpuacct").unwrap().mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            info.v1_controller("memory").unwrap().mount_point,
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert!(info.v1_controller("freezer").is_none());
        assert_eq!(
            info.mounts.iter().filter(|m| m.fstype == "cgroup2").count(),
            1
        );
    }

    #[test]
    fn parses_a_pure_v2_host_and_escaped_paths() {
        let info = MountInfo::parse(
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n\
             40 23 0:40 / /mnt/with\\040space rw - ext4 /dev/sda1 rw\n",
        );
        assert_eq!(info.mounts[0].fstype, "cgroup2");
        assert_eq!(info.mounts[1].mount_point, PathBuf::from("/mnt/with space"));
        assert!(info.v1_controller("memory").is_none());
    }
}
