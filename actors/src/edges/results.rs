//! The results bucket, and what the node reads of a task's output directory: its listing
//! (symbolic links are never followed, so that a workload cannot make the root-run herdd upload
//! a file its own user could not read) and a file's SHA-256.
//!
//! Objects follow the JetStream object store's conventions (stream `OBJ_herd-results`, chunks
//! on `$O.herd-results.C.<nuid>`, the object's info as JSON on `$O.herd-results.M.<base64url of
//! the name>`, rolled up), so that any object store client reads them: async-nats, nats-py,
//! the `nats` CLI. herd writes them itself rather than with async-nats' `put`, for two reasons:
//! each attempt has a fresh nuid and the chunks of attempts cut short by an outage are purged
//! afterwards (a client's buffered publishes may land after it gave up, and must never mix
//! with a later attempt's); and files are read and hashed off the actor's thread.

use crate::cores::results::Found;
use async_nats::jetstream::object_store::{ObjectInfo, ObjectOptions};
use async_nats::jetstream::{self, stream};
use base64::Engine;
use herd_bus::{RESULTS_BUCKET, RESULTS_STREAM};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The object store's default chunk size, as other clients write it.
pub const CHUNK_SIZE: usize = 128 * 1024;
/// Chunks published before the oldest acknowledgement is awaited.
const WINDOW: usize = 8;

/// A file's SHA-256.
pub type Sha256Digest = [u8; 32];

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
                    what: describe(ft).into(),
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

fn describe(ft: std::fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Opens a regular file for reading, never through a symbolic link (and never blocking on a
/// FIFO put in its place).
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Size and SHA-256 of a file (blocking: call it off the actor's thread).
pub fn hash_file(path: &Path) -> std::io::Result<(u64, Sha256Digest)> {
    let mut file = open_regular(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((size, hasher.finalize().into()));
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
}

/// The object store's form of a digest: `SHA-256=<base64url>`.
pub fn object_digest(sha256: &Sha256Digest) -> String {
    format!(
        "SHA-256={}",
        base64::engine::general_purpose::URL_SAFE.encode(sha256)
    )
}

/// Why an upload did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// The file cannot be read: leave it out.
    #[error("{0}")]
    File(String),
    /// NATS did not take it (or the file changed meanwhile): try again later.
    #[error("{0}")]
    Retry(String),
}

fn retry(what: &str) -> impl Fn(&dyn std::fmt::Display) -> PutError + '_ {
    move |e| PutError::Retry(format!("{what}: {e}"))
}

/// The `herd-results` object store bucket.
#[derive(Clone)]
pub struct ResultsBucket {
    js: jetstream::Context,
    stream: stream::Stream,
}

impl ResultsBucket {
    /// Opens the bucket, creating its stream (idempotently) by the object store's conventions:
    /// through the stream API, which nats-server 2.9 answers in a form async-nats reads.
    pub async fn open(client: async_nats::Client) -> Result<ResultsBucket, String> {
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: RESULTS_STREAM.into(),
                description: Some("herd: the files run tasks left, as RUN/NODE/TASK/PATH".into()),
                subjects: vec![
                    format!("$O.{RESULTS_BUCKET}.C.>"),
                    format!("$O.{RESULTS_BUCKET}.M.>"),
                ],
                discard: stream::DiscardPolicy::New,
                allow_rollup: true,
                allow_direct: true,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot open the {RESULTS_BUCKET} bucket: {e}"))?;
        Ok(ResultsBucket { js, stream })
    }

    /// The info of object `name`; None when there is none (or it was deleted).
    pub async fn info(&self, name: &str) -> Result<Option<ObjectInfo>, String> {
        match self
            .stream
            .direct_get_last_for_subject(meta_subject(name))
            .await
        {
            Ok(msg) => {
                let info: ObjectInfo = serde_json::from_slice(&msg.payload)
                    .map_err(|e| format!("object {name}: unreadable info: {e}"))?;
                Ok((!info.deleted).then_some(info))
            }
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("object {name}: {e}")),
        }
    }

    /// Uploads the file at `path` as object `name`, checking that what was sent has the
    /// `sha256` the caller measured. The nuid of an attempt that fails is added to `stale`:
    /// its chunks are to be purged once NATS answers ([`ResultsBucket::purge_chunks`]).
    pub async fn put_file(
        &self,
        name: &str,
        path: &Path,
        sha256: Sha256Digest,
        stale: &mut Vec<String>,
    ) -> Result<(), PutError> {
        let previous = self
            .info(name)
            .await
            .map_err(|e| PutError::Retry(e.to_string()))?;
        let nuid = nuid::next().to_string();
        let put = self.put_chunks(name, path, &nuid, sha256).await;
        if put.is_err() {
            stale.push(nuid);
            return put;
        }
        // The previous version's chunks go once the new info is in place, as other clients do.
        if let Some(prev) = previous.filter(|p| !p.nuid.is_empty() && p.nuid != nuid) {
            stale.push(prev.nuid);
        }
        Ok(())
    }

    async fn put_chunks(
        &self,
        name: &str,
        path: &Path,
        nuid: &str,
        sha256: Sha256Digest,
    ) -> Result<(), PutError> {
        let file = open_regular(path).map_err(|e| PutError::File(e.to_string()))?;
        let subject = chunk_subject(nuid);
        let mut reading = Some((file, Sha256::new()));
        let mut acks = VecDeque::new();
        let (mut size, mut chunks) = (0usize, 0usize);
        let hasher = loop {
            let (file, hasher) = reading.take().expect("put back after each chunk");
            let (file, hasher, chunk) = read_chunk(file, hasher)
                .await
                .map_err(|e| PutError::File(e.to_string()))?;
            if chunk.is_empty() {
                break hasher;
            }
            reading = Some((file, hasher));
            size += chunk.len();
            chunks += 1;
            let ack = self
                .js
                .publish(subject.clone(), chunk.into())
                .await
                .map_err(|e| retry("chunk")(&e))?;
            acks.push_back(ack);
            if acks.len() >= WINDOW {
                let oldest = acks.pop_front().expect("a full window");
                oldest.await.map_err(|e| retry("chunk")(&e))?;
            }
        };
        while let Some(ack) = acks.pop_front() {
            ack.await.map_err(|e| retry("chunk")(&e))?;
        }
        let sent: Sha256Digest = hasher.finalize().into();
        if sent != sha256 {
            return Err(PutError::Retry(format!(
                "{} changed while it was uploaded",
                path.display()
            )));
        }
        let info = ObjectInfo {
            name: name.to_string(),
            description: None,
            metadata: Default::default(),
            headers: None,
            options: Some(ObjectOptions {
                link: None,
                max_chunk_size: Some(CHUNK_SIZE),
            }),
            bucket: RESULTS_BUCKET.to_string(),
            nuid: nuid.to_string(),
            size,
            chunks,
            modified: Some(time::OffsetDateTime::now_utc()),
            digest: Some(object_digest(&sha256)),
            deleted: false,
        };
        let payload = serde_json::to_vec(&info).map_err(|e| PutError::File(e.to_string()))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_ROLLUP, "sub");
        self.js
            .publish_with_headers(meta_subject(name), headers, payload.into())
            .await
            .map_err(|e| retry("object info")(&e))?
            .await
            .map_err(|e| retry("object info")(&e))?;
        Ok(())
    }

    /// Purges the chunks of each nuid (best effort); answers those that could not be purged.
    pub async fn purge_chunks(&self, nuids: Vec<String>) -> Vec<String> {
        let mut left = Vec::new();
        for nuid in nuids {
            if let Err(e) = self.stream.purge().filter(chunk_subject(&nuid)).await {
                tracing::debug!(%nuid, error = %e, "cannot purge stale result chunks yet");
                left.push(nuid);
            }
        }
        left
    }
}

fn chunk_subject(nuid: &str) -> String {
    format!("$O.{RESULTS_BUCKET}.C.{nuid}")
}

fn meta_subject(name: &str) -> String {
    format!(
        "$O.{RESULTS_BUCKET}.M.{}",
        base64::engine::general_purpose::URL_SAFE.encode(name)
    )
}

/// The next chunk of `file` (empty at its end), hashed, read on tokio's blocking pool.
async fn read_chunk(
    mut file: std::fs::File,
    mut hasher: Sha256,
) -> std::io::Result<(std::fs::File, Sha256, Vec<u8>)> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut n = 0;
        while n < CHUNK_SIZE {
            match file.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        buf.truncate(n);
        hasher.update(&buf);
        Ok((file, hasher, buf))
    })
    .await
    .map_err(std::io::Error::other)?
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

    #[test]
    fn files_are_hashed_as_sha256_and_links_are_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        let (size, digest) = hash_file(&path).unwrap();
        assert_eq!(size, 3);
        assert_eq!(
            crate::cores::results::hex(&digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            object_digest(&digest),
            "SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0="
        );
        std::os::unix::fs::symlink(&path, dir.path().join("link")).unwrap();
        assert!(hash_file(&dir.path().join("link")).is_err());
    }
}
