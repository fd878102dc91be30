//! `herdctl run submit --input PATH`: files and directories every task finds below its
//! `HERD_INPUT_DIR`. Two steps, in order: [`collect`] reads and hashes them (no NATS: a bad
//! path fails the submission before anything is uploaded), [`upload`] sends to the
//! `herd-inputs` bucket what it does not hold yet (one object per content, so the same file is
//! stored once across runs).

use crate::render::human_bytes;
use anyhow::{bail, Context};
use herd_bus::{input_object_name, InputFile, INPUTS_BUCKET, INPUTS_STREAM};
use herd_nats::objects::{file_kind, hash_file, object_digest, ObjectBucket, Sha256Digest};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One file to ship: where it is here, and what the run will list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalInput {
    pub source: PathBuf,
    pub sha256: Sha256Digest,
    pub file: InputFile,
}

/// What [`upload`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UploadReport {
    pub files: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    /// Already in the bucket (an earlier run's, or the same content twice in this one).
    pub already: usize,
}

impl std::fmt::Display for UploadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} files, {} uploaded ({}), {} already stored",
            self.files,
            self.uploaded,
            human_bytes(self.uploaded_bytes),
            self.already
        )
    }
}

/// Reads every `--input`: a file is shipped as its name, a directory as `<its name>/<path>`
/// for each regular file below it. Symbolic links and special files are refused, and so are two
/// inputs that would land on the same path.
pub fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<LocalInput>> {
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for given in paths {
        let meta = std::fs::symlink_metadata(given)
            .with_context(|| format!("--input {}", given.display()))?;
        let name = top_name(given)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            walk(given, &name, &mut found)?;
        } else if ft.is_file() {
            found.push((name, given.clone()));
        } else {
            bail!(
                "--input {}: {}; give a regular file or a directory",
                given.display(),
                file_kind(ft)
            );
        }
    }
    let mut by_path: BTreeMap<&str, &Path> = BTreeMap::new();
    for (path, source) in &found {
        if let Some(first) = by_path.insert(path, source) {
            bail!(
                "two inputs would both be {path} in HERD_INPUT_DIR: {} and {}",
                first.display(),
                source.display()
            );
        }
    }
    found
        .into_iter()
        .map(|(path, source)| {
            let (size, sha256) =
                hash_file(&source).with_context(|| format!("cannot read {}", source.display()))?;
            let mode = std::fs::metadata(&source)
                .with_context(|| format!("cannot read {}", source.display()))?
                .permissions()
                .mode();
            Ok(LocalInput {
                file: InputFile {
                    path,
                    digest: object_digest(&sha256),
                    size,
                    executable: mode & 0o111 != 0,
                },
                source,
                sha256,
            })
        })
        .collect()
}

/// The name a given path is shipped under: its last component (`.` and `..` resolved).
fn top_name(given: &Path) -> anyhow::Result<String> {
    let name = match given.file_name() {
        Some(n) => n.to_os_string(),
        None => std::fs::canonicalize(given)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_os_string()))
            .with_context(|| format!("--input {}: cannot tell its name", given.display()))?,
    };
    name.into_string()
        .map_err(|n| anyhow::anyhow!("--input {}: {n:?} is not UTF-8", given.display()))
}

/// Every regular file below `dir`, as `prefix/<relative path>`, in name order.
fn walk(dir: &Path, prefix: &str, found: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("--input: cannot read the directory {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--input: cannot read the directory {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let source = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| anyhow::anyhow!("--input: {}: {n:?} is not UTF-8", source.display()))?;
        let path = format!("{prefix}/{name}");
        // The entry's own type: a link is never followed.
        let ft = entry
            .file_type()
            .with_context(|| format!("--input: {}", source.display()))?;
        if ft.is_dir() {
            walk(&source, &path, found)?;
        } else if ft.is_file() {
            found.push((path, source));
        } else {
            bail!(
                "--input: {} is {}; only regular files and directories are shipped",
                source.display(),
                file_kind(ft)
            );
        }
    }
    Ok(())
}

/// Uploads to the `herd-inputs` bucket (made if missing) each content it does not hold yet,
/// prints what it did, and answers the run's `inputs`.
pub async fn upload(
    client: &async_nats::Client,
    inputs: &[LocalInput],
    replicas: usize,
) -> anyhow::Result<(Vec<InputFile>, UploadReport)> {
    let mut report = UploadReport {
        files: inputs.len(),
        ..Default::default()
    };
    if inputs.is_empty() {
        return Ok((vec![], report));
    }
    let bucket = ObjectBucket::open(
        client.clone(),
        INPUTS_BUCKET,
        INPUTS_STREAM,
        "herd: run inputs, one object per content (sha256/<digest>)",
        replicas,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let mut stored = BTreeSet::new();
    let mut stale = Vec::new();
    for input in inputs {
        let f = &input.file;
        let object = input_object_name(&f.digest);
        let held = stored.contains(&object)
            || bucket
                .holds(&object, &f.digest, f.size)
                .await
                .map_err(|e| anyhow::anyhow!("input {}: {e}", f.path))?;
        if held {
            report.already += 1;
        } else {
            bucket
                .put_file(&object, &input.source, input.sha256, &mut stale)
                .await
                .with_context(|| {
                    format!("input {}: cannot upload {}", f.path, input.source.display())
                })?;
            report.uploaded += 1;
            report.uploaded_bytes += f.size;
        }
        stored.insert(object);
    }
    // Chunks of an attempt cut short; best effort (a later upload purges nothing of them).
    bucket.purge_chunks(stale).await;
    eprintln!("herdctl: inputs: {report}");
    Ok((inputs.iter().map(|i| i.file.clone()).collect(), report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(inputs: &[LocalInput]) -> Vec<&str> {
        inputs.iter().map(|i| i.file.path.as_str()).collect()
    }

    #[test]
    fn files_go_by_name_and_directories_by_their_name_and_relative_path() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("bench.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            root.join("bench.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("data/sub/deeper")).unwrap();
        std::fs::write(root.join("data/a.csv"), b"abc").unwrap();
        std::fs::write(root.join("data/sub/deeper/b.bin"), [0u8; 10]).unwrap();
        std::fs::create_dir(root.join("data/empty")).unwrap();
        let got = collect(&[root.join("bench.sh"), root.join("data/")]).unwrap();
        assert_eq!(
            paths(&got),
            ["bench.sh", "data/a.csv", "data/sub/deeper/b.bin"]
        );
        assert!(got[0].file.executable);
        assert!(!got[1].file.executable);
        assert_eq!(got[1].file.size, 3);
        assert_eq!(
            got[1].file.digest,
            "SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0="
        );
        assert_eq!(got[2].source, root.join("data/sub/deeper/b.bin"));
        // `.` is shipped under the directory's own name.
        let here = collect(&[root.join("data/sub/.")]).unwrap();
        assert_eq!(paths(&here), ["sub/deeper/b.bin"]);
    }

    #[test]
    fn two_inputs_on_one_path_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("x/data")).unwrap();
        std::fs::create_dir_all(d.path().join("y/data")).unwrap();
        std::fs::write(d.path().join("x/data/a"), b"1").unwrap();
        std::fs::write(d.path().join("y/data/a"), b"2").unwrap();
        let err = collect(&[d.path().join("x/data"), d.path().join("y/data")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("two inputs would both be data/a in HERD_INPUT_DIR"),
            "{err}"
        );
        let file = d.path().join("x/data/a");
        let err = collect(&[file.clone(), file]).unwrap_err();
        assert!(err.to_string().contains("both be a "), "{err}");
    }

    #[test]
    fn a_missing_path_is_named() {
        let err = collect(&[PathBuf::from("/does/not/exist")]).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "--input /does/not/exist: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn links_and_special_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("real"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        let err = collect(&[root.join("link")]).unwrap_err().to_string();
        assert!(
            err.ends_with("link: a symbolic link; give a regular file or a directory"),
            "{err}"
        );
        std::fs::create_dir(root.join("dir")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("dir/passwd")).unwrap();
        let err = collect(&[root.join("dir")]).unwrap_err().to_string();
        assert!(err.contains("dir/passwd is a symbolic link"), "{err}");
        std::fs::remove_file(root.join("dir/passwd")).unwrap();
        nix::unistd::mkfifo(&root.join("dir/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = collect(&[root.join("dir")]).unwrap_err().to_string();
        assert!(err.contains("dir/fifo is a FIFO"), "{err}");
    }

    #[test]
    fn the_report_says_what_was_sent() {
        let r = UploadReport {
            files: 3,
            uploaded: 2,
            uploaded_bytes: 1_300_000,
            already: 1,
        };
        assert_eq!(
            r.to_string(),
            "3 files, 2 uploaded (1.2M), 1 already stored"
        );
    }
}
