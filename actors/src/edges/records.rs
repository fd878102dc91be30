//! Workload records in the state directory, written by a thread of their own: a write is a
//! temporary file renamed over the record ([`herd_shim::write_atomic`]: never a torn record),
//! and on ext4 allocating the new inode is costly enough (measured in docs/BENCHMARKS.md) to
//! keep it off the executor's thread, which starts workloads and answers requests. Writes of
//! one record keep their order.

use std::path::PathBuf;
use std::sync::mpsc;

enum Op {
    Write(PathBuf, Vec<u8>),
    Remove(PathBuf),
    /// A workload's working directory, with whatever it left there.
    RemoveDir(PathBuf),
    /// Answers once everything sent before it is done.
    Sync(mpsc::Sender<()>),
}

pub struct RecordWriter {
    tx: mpsc::Sender<Op>,
}

impl RecordWriter {
    pub fn start() -> RecordWriter {
        let (tx, rx) = mpsc::channel::<Op>();
        let spawned = std::thread::Builder::new()
            .name("herd-records".into())
            .spawn(move || {
                for op in rx {
                    match op {
                        Op::Write(path, bytes) => {
                            if let Err(e) = herd_shim::write_atomic(&path, &bytes) {
                                tracing::warn!(file = %path.display(), error = %e, "cannot save the workload record");
                            }
                        }
                        Op::Remove(path) => {
                            let _ = std::fs::remove_file(path);
                        }
                        Op::RemoveDir(path) => {
                            if let Err(e) = std::fs::remove_dir_all(&path) {
                                if e.kind() != std::io::ErrorKind::NotFound {
                                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove a workload's working directory");
                                }
                            }
                        }
                        Op::Sync(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the record writer; records are not saved");
        }
        RecordWriter { tx }
    }

    pub fn write(&self, path: PathBuf, bytes: Vec<u8>) {
        let _ = self.tx.send(Op::Write(path, bytes));
    }

    pub fn remove(&self, path: PathBuf) {
        let _ = self.tx.send(Op::Remove(path));
    }

    /// Removes a directory tree, after the writes sent before (off the executor's thread: a
    /// workload may leave many files).
    pub fn remove_dir(&self, path: PathBuf) {
        let _ = self.tx.send(Op::RemoveDir(path));
    }

    /// Blocks until every write sent so far is on disk (at shutdown), at most `timeout`.
    pub fn sync(&self, timeout: std::time::Duration) {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Op::Sync(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_keep_their_order_and_sync_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let w = RecordWriter::start();
        let path = dir.path().join("w.json");
        for i in 0..100 {
            w.write(path.clone(), format!("{i}").into_bytes());
        }
        w.sync(std::time::Duration::from_secs(5));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "99");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["w.json"], "no temporary file is left");
        w.remove(path.clone());
        w.sync(std::time::Duration::from_secs(5));
        assert!(!path.exists());
    }
}
