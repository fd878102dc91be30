//! Reading /proc: per-process CPU time, memory and I/O for the no-cgroup backend. A process's
//! stat line is parsed by herd-shim, which names itself by it.

pub use herd_shim::proc::{stat, ProcStat};

/// Every process of a session (a workload leader calls setsid, so its tree shares it).
pub fn session_members(session: i32) -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .filter(|s| s.session == session && s.state != 'Z')
        .collect()
}

/// (read_bytes, write_bytes) from /proc/<pid>/io.
pub fn io(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let get = |k: &str| super::keyed_value(&text.replace(": ", " "), k).unwrap_or(0);
    (get("read_bytes"), get("write_bytes"))
}

pub fn clock_ticks_per_s() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64
}

pub fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64
}
