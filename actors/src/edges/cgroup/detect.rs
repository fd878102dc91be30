//! Which cgroup backend this host gets, from its mounts.

use super::mounts::MountInfo;
use super::{none::NoCgroups, v1::V1Backend, v2::V2Backend, CgroupBackend, CgroupVersion};
use std::sync::Arc;

/// Picks a backend: `preference` is `auto`, `v2`, `v1` or `none`; `root` names herd's cgroup
/// under each hierarchy when herdd's own cgroup is not delegated to it.
pub fn detect(preference: &str, root: &str) -> (Arc<dyn CgroupBackend>, Option<String>) {
    let info = MountInfo::read().unwrap_or_default();
    let fallback = |why: String| -> (Arc<dyn CgroupBackend>, Option<String>) {
        (
            Arc::new(NoCgroups),
            Some(format!(
                "running workloads without cgroups ({why}): no limits, sampling from /proc"
            )),
        )
    };
    let want = |v: CgroupVersion| preference == "auto" || preference == v.as_str();
    if preference == "none" {
        return (Arc::new(NoCgroups), None);
    }
    if !nix::unistd::Uid::effective().is_root() && preference == "auto" {
        // Without root, only a delegated v2 subtree is usable.
        if let Some(m) = info.unified() {
            if let Ok(b) = V2Backend::new(&m.mount_point, root) {
                return (Arc::new(b), None);
            }
        }
        return fallback("not root and no delegated cgroup".into());
    }
    if want(CgroupVersion::V2) {
        if let Some(m) = info.unified() {
            match V2Backend::new(&m.mount_point, root) {
                Ok(b) => return (Arc::new(b), None),
                Err(e) if preference == "v2" => return fallback(e.to_string()),
                Err(_) => {}
            }
        }
    }
    if want(CgroupVersion::V1) {
        match V1Backend::new(&info, root) {
            Ok(b) => return (Arc::new(b), None),
            Err(e) => return fallback(e.to_string()),
        }
    }
    fallback(format!("no cgroup {preference} hierarchy found"))
}
