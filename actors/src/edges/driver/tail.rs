//! Following a workload's output files as its supervisor (herd-shim) appends to them.

use super::inotify::Signals;
use herd_shim as shim;
use std::future::Future;
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};

/// Follows a file the shim appends to, like `tail -F`: at its end it waits until inotify says
/// the directory changed (or, as a safety net, 10 ms doubling up to 5 s; up to 1 s without
/// inotify) and reads again, follows a rotation to the new file, and ends once `done` is set
/// and everything is read.
pub(super) struct Tail {
    path: PathBuf,
    file: std::fs::File,
    ino: u64,
    done: Arc<Signals>,
    /// Which of `done`'s wakers is this tail's.
    slot: usize,
    sleep: Pin<Box<tokio::time::Sleep>>,
    waiting: bool,
    idle: Duration,
    max_wait: Duration,
    /// Offset in the current file: a rotation happens only once a file nears the cap, so the
    /// path is looked at only then.
    pos: u64,
}

/// The shim rotates a file at [`shim::LOG_CAP_BYTES`], before a write of at most 64 KiB.
const ROTATION_SLACK: u64 = 128 * 1024;

const TAIL_MIN_WAIT: Duration = Duration::from_millis(10);
pub(super) const TAIL_MAX_WAIT: Duration = Duration::from_secs(1);
pub(super) const TAIL_MAX_WAIT_WATCHED: Duration = Duration::from_secs(5);

impl Tail {
    pub(super) fn open(
        path: PathBuf,
        done: Arc<Signals>,
        slot: usize,
        from_end: bool,
        max_wait: Duration,
    ) -> std::io::Result<Tail> {
        use std::os::unix::fs::MetadataExt;
        let mut file = std::fs::File::open(&path)?;
        let pos = if from_end {
            file.seek(std::io::SeekFrom::End(0))?
        } else {
            0
        };
        let ino = file.metadata()?.ino();
        Ok(Tail {
            path,
            file,
            ino,
            done,
            slot,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            waiting: false,
            idle: TAIL_MIN_WAIT,
            max_wait,
            pos,
        })
    }

    /// The path's file, when it is no longer the one being read (rotated).
    fn rotated(&self) -> Option<(std::fs::File, u64)> {
        use std::os::unix::fs::MetadataExt;
        if self.pos + ROTATION_SLACK < shim::LOG_CAP_BYTES {
            return None;
        }
        let ino = std::fs::metadata(&self.path).ok()?.ino();
        if ino == self.ino {
            return None;
        }
        Some((std::fs::File::open(&self.path).ok()?, ino))
    }
}

impl AsyncRead for Tail {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.waiting {
                this.done.register(this.slot, cx.waker());
                if !this.done.is_done() && !this.done.take_changed(this.slot) {
                    ready!(this.sleep.as_mut().poll(cx));
                }
                this.waiting = false;
            }
            // Read before looking: once done is seen, a read of nothing is the end.
            let done = this.done.is_done();
            let n = this.file.read(buf.initialize_unfilled())?;
            if n > 0 {
                buf.advance(n);
                this.pos += n as u64;
                this.idle = TAIL_MIN_WAIT;
                return Poll::Ready(Ok(()));
            }
            if let Some((file, ino)) = this.rotated() {
                // Renamed: nothing more is written to the old file, but what was written
                // between the read above and the rename is read before moving on.
                let n = this.file.read(buf.initialize_unfilled())?;
                if n > 0 {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                this.file = file;
                this.ino = ino;
                this.pos = 0;
                continue;
            }
            if done {
                return Poll::Ready(Ok(()));
            }
            this.sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + this.idle);
            this.idle = (this.idle * 2).min(this.max_wait);
            this.waiting = true;
        }
    }
}
