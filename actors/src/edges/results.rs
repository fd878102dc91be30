//! The results bucket, and what the node reads of a task's output directory: its listing
//! (symbolic links are never followed, so that a workload cannot make the root-run herdd upload
//! a file its own user could not read) and a file's SHA-256. The bucket itself is herd-nats'
//! [`ObjectBucket`], by the object store's conventions.

use crate::cores::results::Found;
use herd_bus::{RESULTS_BUCKET, RESULTS_STREAM};
use herd_nats::objects::file_kind;
pub use herd_nats::objects::{hash_file, object_digest, open_regular, ObjectBucket, PutError};
use std::path::Path;

/// Lists `dir` recursively without following symbolic links. A subdirectory that cannot be
/// read is reported as such; `dir` itself must be readable.
pub fn list_output(dir: &Path) -> std::io::Result<Vec<Found>> {
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    let mut top = true;
    while let Some((abs, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&abs) {
            Ok(entries) => entries,
            Err(e) if top => return Err(e),
            Err(e) => {
                found.push(Found::Other {
                    path: rel,
                    what: format!("a directory that cannot be read ({e})"),
                });
                continue;
            }
        };
        top = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                found.push(Found::Other {
                    path: join(&rel, &name.to_string_lossy()),
                    what: "a name that is not UTF-8".into(),
                });
                continue;
            };
            let path = join(&rel, name);
            // DirEntry's type and metadata are the entry's own, never a link's target.
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push((entry.path(), path));
            } else if ft.is_file() {
                let size = entry.metadata()?.len();
                found.push(Found::File { path, size });
            } else {
                found.push(Found::Other {
                    path,
                    what: file_kind(ft).into(),
                });
            }
        }
    }
    Ok(found)
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// Opens the `herd-results` bucket, creating its stream (idempotently) with `replicas`.
pub async fn open_results_bucket(
    client: async_nats::Client,
    replicas: usize,
) -> Result<ObjectBucket, String> {
    ObjectBucket::open(
        client,
        RESULTS_BUCKET,
        RESULTS_STREAM,
        "herd: the files run tasks left, as RUN/NODE/TASK/PATH",
        replicas,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_never_follows_links_and_names_what_it_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("top.txt"), b"12345").unwrap();
        std::fs::write(d.join("a/b/deep.bin"), vec![7u8; 300]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("a/passwd")).unwrap();
        std::os::unix::fs::symlink(d.join("a"), d.join("loop")).unwrap();
        nix::unistd::mkfifo(&d.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut found = list_output(d).unwrap();
        found.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(
            found,
            [
                Found::File {
                    path: "a/b/deep.bin".into(),
                    size: 300
                },
                Found::File {
                    path: "top.txt".into(),
                    size: 5
                },
                Found::Other {
                    path: "a/passwd".into(),
                    what: "a symbolic link".into()
                },
                Found::Other {
                    path: "fifo".into(),
                    what: "a FIFO".into()
                },
                Found::Other {
                    path: "loop".into(),
                    what: "a symbolic link".into()
                },
            ]
        );
        assert!(list_output(&d.join("missing")).is_err());
    }
}
