//! The shim itself: start the workload, answer herdd, copy the output, record the exit.

use crate::spawn::{spawn, Spawned};
use crate::SHIM_IGNORES;
use crate::{
    proc, read_json, write_json, ShimExit, ShimLaunch, ShimState, EXIT_FILE, LAUNCH_FILE,
    LOG_CAP_BYTES, STATE_FILE, STDERR_LOG, STDOUT_LOG,
};
use nix::sys::signal::SigHandler;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

/// After the workload's main process ended, how long the shim waits for its output to drain
/// (a background process of it may hold the pipes open).
const DRAIN: Duration = Duration::from_secs(2);

/// `herd-shim <dir>` (or `herdd shim <dir>`): runs one workload as the crate documentation
/// describes. Answers the process exit code.
pub fn main(dir: &Path) -> i32 {
    crate::stage::stage("shim_main");
    let mut answer = std::io::stdout();
    match start(dir) {
        Ok(spawned) => {
            let _ = writeln!(answer, "ok {}", spawned.workload.id());
            let _ = answer.flush();
            // herdd reads to the end of this pipe: close it (stdout becomes /dev/null).
            if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                let _ = nix::unistd::dup2_stdout(null);
            }
            supervise(dir, spawned)
        }
        Err(reason) => {
            let _ = writeln!(answer, "err {reason}");
            1
        }
    }
}

/// `herd-shim --spare <workloads dir>` (or `herdd shim --spare …`): a shim started ahead of
/// need. It reads its workload's directory from stdin, to the end, then runs as [`main`]
/// does. An empty stdin (herdd ended, or dropped the spare) ends it quietly with 0.
pub fn spare_main() -> i32 {
    use std::os::unix::ffi::OsStringExt;
    crate::stage::open();
    let mut dir = Vec::new();
    if std::io::stdin().lock().read_to_end(&mut dir).is_err() || dir.is_empty() {
        return 0;
    }
    // The pipe from herdd is done with; nothing else reads stdin.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(null);
    }
    main(Path::new(&std::ffi::OsString::from_vec(dir)))
}

fn start(dir: &Path) -> Result<Spawned, String> {
    let launch: ShimLaunch = read_json(dir, LAUNCH_FILE)
        .ok_or_else(|| format!("cannot read {}", dir.join(LAUNCH_FILE).display()))?;
    // Its own session: a terminal's or herdd's signals are not the shim's.
    let _ = nix::unistd::setsid();
    for sig in SHIM_IGNORES {
        // SAFETY: setting a signal to be ignored installs no handler.
        #[allow(unsafe_code)]
        unsafe {
            let _ = nix::sys::signal::signal(sig, SigHandler::SigIgn);
        }
    }
    for name in [STDOUT_LOG, STDERR_LOG] {
        std::fs::File::create(dir.join(name))
            .map_err(|e| format!("cannot create {}: {e}", dir.join(name).display()))?;
    }
    crate::stage::stage("shim_spawning");
    let mut spawned = spawn(&launch)?;
    crate::stage::stage("shim_spawned");
    let me = std::process::id();
    let state = ShimState {
        shim_pid: me,
        shim_start_ticks: proc::stat(me as i32).map(|s| s.start_ticks).unwrap_or(0),
        child_pid: spawned.workload.id(),
        placement: Some(spawned.placement),
    };
    if let Err(e) = write_json(dir, STATE_FILE, &state) {
        spawned.workload.kill();
        let _ = spawned.workload.wait();
        return Err(format!(
            "cannot write {}: {e}",
            dir.join(STATE_FILE).display()
        ));
    }
    Ok(spawned)
}

/// Copies the output, waits for the workload, records its exit.
fn supervise(dir: &Path, spawned: Spawned) -> i32 {
    let Spawned {
        mut workload,
        stdout,
        stderr,
        ..
    } = spawned;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let mut copiers = 0;
    for (fd, name) in [(stdout, STDOUT_LOG), (stderr, STDERR_LOG)] {
        let reader = std::fs::File::from(fd);
        let path = dir.join(name);
        let done = done_tx.clone();
        let started = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                copy_rotating(reader, &path, LOG_CAP_BYTES);
                let _ = done.send(());
            });
        if started.is_ok() {
            copiers += 1;
        }
    }
    drop(done_tx);
    let status = match workload.wait() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herd shim: cannot wait for {}: {e}", workload.id());
            return 1;
        }
    };
    let deadline = std::time::Instant::now() + DRAIN;
    for _ in 0..copiers {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let exit = ShimExit {
        code: status.code(),
        signal: status.signal(),
    };
    if let Err(e) = write_json(dir, EXIT_FILE, &exit) {
        eprintln!(
            "herd shim: cannot record the exit in {}: {e}",
            dir.display()
        );
        return 1;
    }
    0
}

/// Appends `reader` to `path`, moving the file to `<path>.1` whenever it reaches `cap`.
pub fn copy_rotating(mut reader: impl Read, path: &Path, cap: u64) {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    };
    let Ok(mut file) = open() else { return };
    let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if size > 0 && size + n as u64 > cap {
            let mut old = path.as_os_str().to_owned();
            old.push(".1");
            if std::fs::rename(path, &old).is_ok() {
                if let Ok(f) = open() {
                    file = f;
                    size = 0;
                }
            }
        }
        // A full disk loses output, never the workload.
        if file.write_all(&buf[..n]).is_ok() {
            size += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_rotates_at_the_cap_keeping_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let data: Vec<u8> = (0..250u32)
            .flat_map(|i| format!("{i:09}\n").into_bytes())
            .collect();
        // 2500 bytes through a 1000-byte cap, read 100 at a time as from a pipe: the last
        // file plus one old one remain.
        struct Chunked(std::io::Cursor<Vec<u8>>);
        impl Read for Chunked {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(100);
                self.0.read(&mut buf[..n])
            }
        }
        copy_rotating(Chunked(std::io::Cursor::new(data.clone())), &path, 1000);
        let now = std::fs::read(&path).unwrap();
        let old = std::fs::read(dir.path().join("stdout.log.1")).unwrap();
        assert!(now.len() as u64 <= 1000 && old.len() as u64 <= 1000);
        let mut tail = old.clone();
        tail.extend_from_slice(&now);
        assert!(
            data.ends_with(&tail),
            "the kept files are the end of the output"
        );
    }
}
