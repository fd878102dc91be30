//! Files replaced whole: the shim's, and herdd's own records and outbox (which use
//! [`write_atomic`] too, so that herd has one way to replace a file).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` through a temporary file beside it (`.<name>.tmp`) and a rename:
/// a reader sees the old file or the new one, whatever process dies meanwhile. One writer per
/// path at a time. Not synced to disk: herd's files describe processes and queues that a machine
/// crash takes down with them, and a sync per write costs more than it saves.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Writes `value` as JSON to `dir/name` with [`write_atomic`].
pub fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<()> {
    write_atomic(&dir.join(name), &serde_json::to_vec(value)?)
}

/// Reads `dir/name` as JSON; None when it is missing or unreadable.
pub fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Option<T> {
    serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_leaves_nothing_else_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["w.json"]);
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }
}
