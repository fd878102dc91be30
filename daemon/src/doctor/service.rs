//! What `herdd doctor` finds of the running service, whatever shell it is run from: systemd's
//! version, herdd.service's state, main pid and cgroup, and whether systemd could start herdd
//! again there after a crash (nothing but herdd may live below a service cgroup whose
//! controllers are enabled for children: the kernel refuses a new process there with EBUSY).

use super::{bad, ok, Check, Status};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// `systemctl --version`'s first line: `systemd 252 (252.30-1~deb12u2)` → 252 and the line.
pub fn parse_systemd_version(text: &str) -> Option<(u32, String)> {
    let line = text.lines().next()?.trim();
    let n = line.strip_prefix("systemd ")?.split_whitespace().next()?;
    Some((n.parse().ok()?, line.to_string()))
}

/// `systemctl show -p A -p B unit`: `A=value` lines.
pub fn parse_show(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// systemd's version on this host, when systemd runs it.
pub fn systemd_version() -> Option<(u32, String)> {
    if !herd_actors::edges::cgroup::scope::systemd_is_init() {
        return None;
    }
    let out = Command::new("systemctl").arg("--version").output().ok()?;
    parse_systemd_version(&String::from_utf8_lossy(&out.stdout))
}

/// The cgroups below `dir` that hold processes (relative names), deepest included.
fn populated_children(dir: &Path) -> Vec<String> {
    let mut found = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            let procs = std::fs::read_to_string(p.join("cgroup.procs")).unwrap_or_default();
            if !procs.trim().is_empty() {
                if let Ok(rel) = p.strip_prefix(dir) {
                    found.push(rel.display().to_string());
                }
            }
            stack.push(p);
        }
    }
    found.sort();
    found
}

/// The `service` check: herdd.service as systemd runs it now.
pub fn check(unified_mount: Option<&Path>) -> Check {
    let Some((version, line)) = systemd_version() else {
        return ok(
            "service",
            "systemd does not run this host: herdd runs as a plain process (or under another supervisor)",
        );
    };
    let out = Command::new("systemctl")
        .args([
            "show",
            "-p",
            "LoadState",
            "-p",
            "ActiveState",
            "-p",
            "MainPID",
            "-p",
            "ControlGroup",
            "herdd.service",
        ])
        .output();
    let show = match out {
        Ok(o) => parse_show(&String::from_utf8_lossy(&o.stdout)),
        Err(e) => {
            return bad(
                "service",
                Status::Warn,
                format!("{line}: cannot ask systemctl about herdd.service: {e}"),
                "run doctor as root on the node",
            )
        }
    };
    let get = |k: &str| show.get(k).map(String::as_str).unwrap_or("");
    if get("LoadState") != "loaded" {
        return ok(
            "service",
            format!(
                "{line}; herdd.service is not installed ({})",
                get("LoadState")
            ),
        );
    }
    let pid: u32 = get("MainPID").parse().unwrap_or(0);
    if get("ActiveState") != "active" || pid == 0 {
        return ok(
            "service",
            format!(
                "{line}; herdd.service is {}: no running herdd to inspect",
                get("ActiveState")
            ),
        );
    }
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::"))
                .map(str::to_string)
        });
    let service_cgroup = get("ControlGroup");
    let (Some(own), Some(mount)) = (own, unified_mount) else {
        return ok(
            "service",
            format!("{line}; herdd.service active, main pid {pid} (its cgroup v2 path cannot be read: cgroup v1 or no permission)"),
        );
    };
    let service_dir = mount.join(service_cgroup.trim_start_matches('/'));
    let others: Vec<String> = populated_children(&service_dir)
        .into_iter()
        .filter(|c| {
            let rel = own
                .strip_prefix(service_cgroup)
                .unwrap_or("")
                .trim_start_matches('/');
            c != rel
        })
        .collect();
    let controllers = std::fs::read_to_string(service_dir.join("cgroup.subtree_control"))
        .unwrap_or_default()
        .trim()
        .to_string();
    // systemd >= 254 starts a service in its DelegateSubgroup= leaf, which takes processes.
    let restartable_in_leaf = own != service_cgroup && version >= 254;
    let blocked = !others.is_empty() && !controllers.is_empty();
    if blocked && !restartable_in_leaf {
        return bad(
            "service",
            Status::Warn,
            format!(
                "{line}; herdd (pid {pid}) in {own}; processes live below {service_cgroup} ({}), which has controllers enabled ({controllers}): after a crash systemd {version} cannot start herdd there again (EBUSY, status=219/CGROUP)",
                others.join(", ")
            ),
            "these are workloads of an older herd: stop them (herdctl stop), then restart herdd; this herd keeps its workloads in its own systemd scope",
        );
    }
    ok(
        "service",
        format!(
            "{line}; herdd.service active, main pid {pid} in {own}; nothing else lives below it: systemd can restart it after a crash"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_versions_parse() {
        let text = "systemd 252 (252.30-1~deb12u2)\n+PAM +AUDIT +SELINUX\n";
        assert_eq!(
            parse_systemd_version(text),
            Some((252, "systemd 252 (252.30-1~deb12u2)".into()))
        );
        assert_eq!(
            parse_systemd_version("systemd 254 (254.16-1~bpo12+1)").map(|v| v.0),
            Some(254)
        );
        assert_eq!(parse_systemd_version("not systemd"), None);
        assert_eq!(parse_systemd_version(""), None);
    }

    #[test]
    fn show_output_parses_to_properties() {
        let p = parse_show(
            "LoadState=loaded\nActiveState=active\nMainPID=412\nControlGroup=/system.slice/herdd.service\n",
        );
        assert_eq!(p["MainPID"], "412");
        assert_eq!(p["ControlGroup"], "/system.slice/herdd.service");
    }

    #[test]
    fn populated_children_are_found_at_any_depth() {
        let dir = std::env::temp_dir().join(format!("herd-doctor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("supervisor")).unwrap();
        std::fs::create_dir_all(dir.join("workloads/wl-a")).unwrap();
        std::fs::write(dir.join("supervisor/cgroup.procs"), "12\n").unwrap();
        std::fs::write(dir.join("workloads/cgroup.procs"), "").unwrap();
        std::fs::write(dir.join("workloads/wl-a/cgroup.procs"), "40\n41\n").unwrap();
        assert_eq!(
            populated_children(&dir),
            vec!["supervisor".to_string(), "workloads/wl-a".to_string()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
