//! `/proc/<pid>/stat`: a process's state, times and start. A pid with its start time names one
//! process, which is how herdd recognises a shim after a restart; herdd's no-cgroup backend
//! samples workloads from the same fields.

/// Fields of `/proc/<pid>/stat` that herd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// user + system time in clock ticks.
    pub cpu_ticks: u64,
    pub rss_pages: u64,
    /// When the process started, in clock ticks after boot: with the pid, names one process.
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`; the command name may contain spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let pid = text.split(' ').next()?.parse().ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // After the name: state(3) ppid(4) pgrp(5) session(6) … utime(14) stime(15) … starttime(22)
    // … rss(24).
    let n = |i: usize| -> Option<u64> { f.get(i - 3)?.parse().ok() };
    Some(ProcStat {
        pid,
        state: f.first()?.chars().next()?,
        ppid: n(4)? as i32,
        pgrp: n(5)? as i32,
        session: n(6)? as i32,
        cpu_ticks: n(14)? + n(15)?,
        rss_pages: n(24)?,
        start_ticks: n(22)?,
    })
}

pub fn stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_name() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 \
                    12345 1000000 250 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            (s.pid, s.state, s.ppid, s.pgrp, s.session),
            (4242, 'S', 1, 4242, 4242)
        );
        assert_eq!(s.cpu_ticks, 10);
        assert_eq!(s.rss_pages, 250);
        assert_eq!(s.start_ticks, 12345);
    }

    #[test]
    fn reads_this_process() {
        let me = stat(std::process::id() as i32).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(me.rss_pages > 0);
    }
}
