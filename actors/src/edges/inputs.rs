//! A workload's inputs, materialized before it starts: each file fetched once per node from the
//! `herd-inputs` bucket into the node's cache (by digest, checked), then copied into the
//! workload's input directory with its mode. Every error names the input (`input bench.sh: …`).

use crate::cores::workload::inputs::digest_hex;
use herd_bus::{input_object_name, InputFile, INPUTS_BUCKET, INPUTS_STREAM};
use herd_nats::objects::ObjectBucket;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The node's inputs, one file per content: `<state>/workloads/inputs-cache/<hex>`. A content
/// two workloads need at once is fetched by the first; the second waits for it.
#[derive(Debug, Clone)]
pub struct InputCache {
    dir: PathBuf,
    fetching: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl InputCache {
    pub fn new(state_dir: &Path) -> InputCache {
        InputCache {
            dir: state_dir.join("workloads").join("inputs-cache"),
            fetching: Default::default(),
        }
    }

    /// Held while content `hex` is looked up and fetched.
    async fn fetch_lock(&self, hex: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(hex.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}

/// What materializing a workload's inputs did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Materialized {
    pub files: usize,
    /// Fetched from the bucket (the others were in the node's cache).
    pub downloaded: usize,
    pub bytes: u64,
}

/// Writes every input below `input_dir` (made if missing), fetching into `cache` what the
/// node does not hold yet. Files are replaced, never edited in place.
pub async fn materialize(
    client: async_nats::Client,
    cache: InputCache,
    input_dir: PathBuf,
    inputs: Vec<InputFile>,
) -> Result<Materialized, String> {
    let mut done = Materialized::default();
    let mut bucket: Option<ObjectBucket> = None;
    let dir = input_dir.clone();
    tokio::task::spawn_blocking(move || fresh_dir(&dir))
        .await
        .map_err(|e| format!("inputs: {e}"))?
        .map_err(|e| format!("inputs: cannot make {}: {e}", input_dir.display()))?;
    for input in &inputs {
        let named = |e: &dyn std::fmt::Display| format!("input {}: {e}", input.path);
        if let Some(why) = herd_bus::input_path_problem(&input.path) {
            return Err(named(&why));
        }
        let hex = digest_hex(&input.digest)
            .ok_or_else(|| named(&format!("digest {:?} is not SHA-256=…", input.digest)))?;
        let cached = cache.dir.join(&hex);
        let _fetching = cache.fetch_lock(&hex).await;
        let held = tokio::fs::metadata(&cached)
            .await
            .is_ok_and(|m| m.is_file() && m.len() == input.size);
        if !held {
            tokio::fs::create_dir_all(&cache.dir)
                .await
                .map_err(|e| named(&format!("cannot create {}: {e}", cache.dir.display())))?;
            let b = match &bucket {
                Some(b) => b,
                None => bucket.insert(
                    ObjectBucket::read_only(client.clone(), INPUTS_BUCKET, INPUTS_STREAM)
                        .await
                        .map_err(|e| named(&e))?,
                ),
            };
            b.get_to_file(
                &input_object_name(&input.digest),
                &cached,
                &input.digest,
                input.size,
            )
            .await
            .map_err(|e| named(&e))?;
            done.downloaded += 1;
        }
        let dest = input_dir.join(&input.path);
        let executable = input.executable;
        tokio::task::spawn_blocking(move || place(&cached, &dest, executable))
            .await
            .map_err(|e| named(&e))?
            .map_err(|e| named(&e))?;
        done.files += 1;
        done.bytes += input.size;
    }
    Ok(done)
}

/// Makes `dir` anew and empty. What a workload left there from an earlier start (a symbolic
/// link in place of a directory, say) is removed, never followed: herdd writes below it.
fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir)?,
        Ok(_) => std::fs::remove_file(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir(dir)
}

/// Copies `cached` to `dest` (through a file beside it, renamed into place) with mode 0644, or
/// 0755 when `executable`.
fn place(cached: &Path, dest: &Path, executable: bool) -> Result<(), String> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let part = dest.with_file_name(format!(".{name}.part"));
    let copied = std::fs::copy(cached, &part)
        .and_then(|_| {
            let mode = if executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&part, std::fs::Permissions::from_mode(mode))
        })
        .and_then(|()| std::fs::rename(&part, dest));
    copied.map_err(|e| {
        let _ = std::fs::remove_file(&part);
        format!("cannot write {}: {e}", dest.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_files_get_their_mode_and_replace_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let cached = dir.path().join("cached");
        std::fs::write(&cached, b"#!/bin/sh\necho hi\n").unwrap();
        let dest = dir.path().join("inputs/tools/run.sh");
        place(&cached, &dest, true).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dest), 0o755);
        assert_eq!(std::fs::read(&dest).unwrap(), b"#!/bin/sh\necho hi\n");
        std::fs::write(&dest, b"changed").unwrap();
        place(&cached, &dest, false).unwrap();
        assert_eq!(mode(&dest), 0o644);
        assert_eq!(std::fs::read(&dest).unwrap(), b"#!/bin/sh\necho hi\n");
        let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["run.sh"]);
    }

    #[test]
    fn the_input_dir_is_made_anew_and_links_left_in_it_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let inputs = dir.path().join("inputs");
        std::fs::create_dir(&inputs).unwrap();
        std::os::unix::fs::symlink(&outside, inputs.join("tools")).unwrap();
        fresh_dir(&inputs).unwrap();
        assert_eq!(std::fs::read_dir(&inputs).unwrap().count(), 0);
        assert!(outside.join("keep").exists());
        // The directory itself replaced by a link: the link goes, not its target.
        std::fs::remove_dir(&inputs).unwrap();
        std::os::unix::fs::symlink(&outside, &inputs).unwrap();
        fresh_dir(&inputs).unwrap();
        assert!(std::fs::symlink_metadata(&inputs).unwrap().is_dir());
        assert!(outside.join("keep").exists());
    }
}
