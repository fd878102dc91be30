//! Wakes the log tails of exec workloads when their shims write: one inotify descriptor for
//! every shim directory of this node, so that an idle workload's logs cost no polling. Without
//! inotify (or when its queue overflows) the tails fall back to looking now and then.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::task::AtomicWaker;

/// What a workload's two tails wait on: the end of its shim (`done`) and, per tail, a change to
/// the files (`changed`).
#[derive(Default)]
pub struct Signals {
    done: AtomicBool,
    changed: [AtomicBool; 2],
    wakers: [AtomicWaker; 2],
}

impl Signals {
    /// The shim has ended: its output files are complete.
    pub fn set_done(&self) {
        self.done.store(true, Ordering::Release);
        self.wake_all();
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Something in the directory changed: both tails look again.
    pub fn poke(&self) {
        for c in &self.changed {
            c.store(true, Ordering::Release);
        }
        self.wake_all();
    }

    /// Whether tail `slot` was poked since it last asked (and forgets it).
    pub fn take_changed(&self, slot: usize) -> bool {
        self.changed[slot].swap(false, Ordering::AcqRel)
    }

    pub fn register(&self, slot: usize, waker: &std::task::Waker) {
        self.wakers[slot].register(waker);
    }

    fn wake_all(&self) {
        for w in &self.wakers {
            w.wake();
        }
    }
}

struct Inner {
    /// The inotify descriptor, owned by the AsyncFd that polls it: nothing closes it while the
    /// reader task waits on it.
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
    dirs: Mutex<HashMap<i32, Weak<Signals>>>,
}

/// One inotify descriptor and the directories it watches.
#[derive(Clone, Default)]
pub struct Watcher {
    inner: Option<Arc<Inner>>,
}

impl Watcher {
    /// Starts the reader task on the current tokio runtime; without a runtime or inotify, a
    /// watcher that watches nothing (the tails poll).
    #[allow(unsafe_code)]
    pub fn start() -> Watcher {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Watcher::default();
        };
        // SAFETY: inotify_init1 takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "no inotify: workload logs are polled");
            return Watcher::default();
        }
        // SAFETY: the descriptor was just returned to us and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let registered = {
            let _runtime = handle.enter();
            // SAFETY: the AsyncFd takes the OwnedFd itself: the descriptor stays open, and the
            // same, for exactly as long as the AsyncFd lives (the owner can no longer drop
            // first, as it could when only the raw number was registered).
            unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            }
        };
        let Ok(fd) = registered else {
            return Watcher::default();
        };
        let inner = Arc::new(Inner {
            fd,
            dirs: Mutex::new(HashMap::new()),
        });
        // The task holds the descriptor (through `inner`) for as long as it reads it, and ends
        // once it is the last holder (the watcher was dropped).
        let reader = inner.clone();
        handle.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let Ok(mut guard) = reader.fd.readable().await else {
                    return;
                };
                let raw = reader.fd.get_ref().as_raw_fd();
                loop {
                    // SAFETY: `raw` is open (owned by `reader.fd`, which we hold); reads into a
                    // buffer we own, of its length.
                    let n = unsafe { libc::read(raw, buf.as_mut_ptr().cast(), buf.len()) };
                    if n <= 0 {
                        break;
                    }
                    reader.dispatch(&buf[..n as usize]);
                }
                guard.clear_ready();
                if Arc::strong_count(&reader) == 1 {
                    return;
                }
            }
        });
        Watcher { inner: Some(inner) }
    }

    /// Pokes `signals` whenever a file in `dir` is written, created or renamed into it. Answers
    /// whether it is watched (else the tails must poll).
    #[allow(unsafe_code)]
    pub fn watch(&self, dir: &Path, signals: &Arc<Signals>) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        let mask = libc::IN_MODIFY | libc::IN_CREATE | libc::IN_MOVED_TO;
        // SAFETY: a descriptor we own (open while `inner` lives) and a NUL-terminated path.
        let wd =
            unsafe { libc::inotify_add_watch(inner.fd.get_ref().as_raw_fd(), path.as_ptr(), mask) };
        if wd < 0 {
            tracing::debug!(dir = %dir.display(), error = %std::io::Error::last_os_error(), "cannot watch; its logs are polled");
            return false;
        }
        let mut dirs = inner.dirs.lock().unwrap_or_else(|e| e.into_inner());
        dirs.insert(wd, Arc::downgrade(signals));
        true
    }
}

impl Inner {
    /// Handles a buffer of `struct inotify_event`s.
    fn dispatch(&self, mut events: &[u8]) {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        while events.len() >= HEADER {
            let wd = i32::from_ne_bytes(events[0..4].try_into().expect("4 bytes"));
            let mask = u32::from_ne_bytes(events[4..8].try_into().expect("4 bytes"));
            let len = u32::from_ne_bytes(events[12..16].try_into().expect("4 bytes")) as usize;
            events = &events[(HEADER + len).min(events.len())..];
            if mask & libc::IN_Q_OVERFLOW != 0 {
                // Events were lost: every tail looks again.
                dirs.retain(|_, s| s.upgrade().map(|s| s.poke()).is_some());
                continue;
            }
            if mask & libc::IN_IGNORED != 0 {
                // The directory is gone (released) or its watch was removed.
                dirs.remove(&wd);
                continue;
            }
            match dirs.get(&wd).and_then(Weak::upgrade) {
                Some(s) => s.poke(),
                None => {
                    dirs.remove(&wd);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[tokio::test]
    async fn a_write_in_a_watched_directory_pokes_its_signals() {
        let dir = tempfile::tempdir().unwrap();
        let watcher = Watcher::start();
        let signals = Arc::new(Signals::default());
        assert!(watcher.watch(dir.path(), &signals));
        assert!(!signals.take_changed(0));
        let mut f = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        f.write_all(b"hello\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !signals.take_changed(0) {
            assert!(std::time::Instant::now() < deadline, "no poke within 5 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(signals.take_changed(1), "both tails are poked");
        assert!(!signals.take_changed(0), "a poke is taken once");
    }

    #[test]
    fn without_a_runtime_nothing_is_watched() {
        let dir = tempfile::tempdir().unwrap();
        let signals = Arc::new(Signals::default());
        assert!(!Watcher::start().watch(dir.path(), &signals));
    }
}
