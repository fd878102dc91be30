//! A start's stages, timed across herdd and its shims for `scripts/bench`'s breakdown: when
//! `HERD_START_TRACE` names a file, [`stage`] appends `<CLOCK_MONOTONIC ns> <pid> <stage>` to
//! it, one line per call (one append, so lines of several processes do not interleave). The
//! shim inherits the variable from herdd (the open file is not: it is opened close-on-exec).
//! Unset (the normal case), a call costs one load.

use std::fs::File;
use std::io::Write;
use std::sync::OnceLock;

/// The environment variable naming the trace file.
pub const START_TRACE_ENV: &str = "HERD_START_TRACE";

/// The trace file, opened for appending at the first stage of this process and kept open: a
/// stage costs one write, not an open and a close besides (which the traced start would pay).
fn target() -> Option<&'static File> {
    static TARGET: OnceLock<Option<File>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let path = std::env::var_os(START_TRACE_ENV)?;
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .ok()
        })
        .as_ref()
}

/// CLOCK_MONOTONIC in ns, the clock of the trace (and of std's `Instant` on Linux).
pub fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a local timespec.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t)
    };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Opens the trace file now, when tracing is on: a spare shim does so before it waits, so that
/// its first stage does not pay for the open.
pub fn open() {
    let _ = target();
}

/// Records that this process reached `name` (a short word, no spaces), when tracing is on.
pub fn stage(name: &str) {
    let Some(mut file) = target() else { return };
    let line = format!("{} {} {name}\n", now_ns(), std::process::id());
    let _ = file.write_all(line.as_bytes());
}

/// One parsed trace line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageMark {
    pub ns: u64,
    pub pid: u32,
    pub stage: String,
}

/// Reads a trace file's lines; malformed ones are skipped.
pub fn read_trace(text: &str) -> Vec<StageMark> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            Some(StageMark {
                ns: parts.next()?.parse().ok()?,
                pid: parts.next()?.parse().ok()?,
                stage: parts.next()?.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_parse_and_junk_is_skipped() {
        let marks = read_trace("10 7 api_start\nbad line\n12 8 shim_main\n");
        assert_eq!(marks.len(), 2);
        assert_eq!(marks[1].pid, 8);
        assert_eq!(marks[1].stage, "shim_main");
    }
}
