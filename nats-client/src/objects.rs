//! herd's object store buckets (`herd-results`, `herd-inputs`), shared by herdd and herdctl.
//!
//! Objects follow the JetStream object store's conventions (stream `OBJ_<bucket>`, chunks on
//! `$O.<bucket>.C.<nuid>`, the object's info as JSON on `$O.<bucket>.M.<base64url of the
//! name>`, rolled up), so that any object store client reads them: async-nats, nats-py, the
//! `nats` CLI. herd writes them itself rather than with async-nats' `put`, for two reasons:
//! each attempt has a fresh nuid and the chunks of attempts cut short by an outage are purged
//! afterwards (a client's buffered publishes may land after it gave up, and must never mix
//! with a later attempt's); and files are read and hashed off the caller's thread.

use async_nats::jetstream::object_store::{ObjectInfo, ObjectOptions};
use async_nats::jetstream::{self, stream};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The object store's default chunk size, as other clients write it.
pub const CHUNK_SIZE: usize = 128 * 1024;
/// Chunks published before the oldest acknowledgement is awaited.
const WINDOW: usize = 8;

/// A file's SHA-256.
pub type Sha256Digest = [u8; 32];

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

/// What a directory entry that is not a regular file is, in words (`a symbolic link`, `a
/// FIFO`, …): herd uploads and materializes regular files only.
pub fn file_kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
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

/// Size and SHA-256 of a file (blocking: call it off an async runtime's threads).
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

/// Why a download did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// No such object (or it was deleted).
    #[error("object {object} is not in the {bucket} bucket")]
    Missing { bucket: String, object: String },
    /// The object, or what arrived of it, is not the content asked for.
    #[error("object {object}: {what}")]
    Mismatch { object: String, what: String },
    /// NATS did not answer, or the transfer broke off.
    #[error("object {object}: {what}")]
    Nats { object: String, what: String },
    /// The destination cannot be written.
    #[error("{0}")]
    File(String),
}

fn retry(what: &str) -> impl Fn(&dyn std::fmt::Display) -> PutError + '_ {
    move |e| PutError::Retry(format!("{what}: {e}"))
}

/// One object store bucket, opened by its stream.
#[derive(Clone)]
pub struct ObjectBucket {
    js: jetstream::Context,
    stream: stream::Stream<()>,
    bucket: String,
}

impl ObjectBucket {
    /// Opens `bucket`, creating its stream `stream_name` (idempotently) by the object store's
    /// conventions: through the stream API, which nats-server 2.9 answers in a form async-nats
    /// reads.
    pub async fn open(
        client: async_nats::Client,
        bucket: &str,
        stream_name: &str,
        description: &str,
        replicas: usize,
    ) -> Result<ObjectBucket, String> {
        let js = jetstream::new(client);
        let config = stream::Config {
            name: stream_name.into(),
            description: Some(description.into()),
            subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            allow_direct: true,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        crate::ensure_stream(&js, config)
            .await
            .map_err(|e| format!("cannot open the {bucket} bucket: {e}"))?;
        ObjectBucket::existing(js, bucket, stream_name).await
    }

    /// A bucket made by someone else, to read: no request is made until it is read (so that a
    /// client allowed only direct gets on its stream reads it).
    pub async fn read_only(
        client: async_nats::Client,
        bucket: &str,
        stream_name: &str,
    ) -> Result<ObjectBucket, String> {
        ObjectBucket::existing(jetstream::new(client), bucket, stream_name).await
    }

    async fn existing(
        js: jetstream::Context,
        bucket: &str,
        stream_name: &str,
    ) -> Result<ObjectBucket, String> {
        // Never a request: only the name is checked.
        let stream = js
            .get_stream_no_info(stream_name)
            .await
            .map_err(|e| format!("the {bucket} bucket: {e}"))?;
        Ok(ObjectBucket {
            js,
            stream,
            bucket: bucket.to_string(),
        })
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.bucket
    }

    /// The info of object `name`; None when there is none (or it was deleted).
    pub async fn info(&self, name: &str) -> Result<Option<ObjectInfo>, String> {
        self.read_info(name)
            .await
            .map_err(|e| format!("object {name}: {e}"))
    }

    async fn read_info(&self, name: &str) -> Result<Option<ObjectInfo>, String> {
        match self
            .stream
            .direct_get_last_for_subject(self.meta_subject(name))
            .await
        {
            Ok(msg) => {
                let info: ObjectInfo = serde_json::from_slice(&msg.payload)
                    .map_err(|e| format!("unreadable info: {e}"))?;
                Ok((!info.deleted).then_some(info))
            }
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether object `name` is there with this digest (`SHA-256=…`) and size.
    pub async fn holds(&self, name: &str, digest: &str, size: u64) -> Result<bool, String> {
        Ok(self
            .info(name)
            .await?
            .is_some_and(|i| i.size as u64 == size && i.digest.as_deref() == Some(digest)))
    }

    /// Uploads the file at `path` as object `name`, checking that what was sent has the
    /// `sha256` the caller measured. The nuid of an attempt that fails is added to `stale`:
    /// its chunks are to be purged once NATS answers ([`ObjectBucket::purge_chunks`]).
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
        let subject = self.chunk_subject(nuid);
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
            bucket: self.bucket.clone(),
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
            .publish_with_headers(self.meta_subject(name), headers, payload.into())
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
            if let Err(e) = self.stream.purge().filter(self.chunk_subject(&nuid)).await {
                tracing::debug!(%nuid, error = %e, "cannot purge stale chunks yet");
                left.push(nuid);
            }
        }
        left
    }

    /// Downloads object `name` to `dest` (through a temporary file beside it, renamed into
    /// place only once complete) and checks that it is `size` bytes with SHA-256 `digest`
    /// (`SHA-256=…`): both in its info before the transfer and of the bytes received.
    pub async fn get_to_file(
        &self,
        name: &str,
        dest: &Path,
        digest: &str,
        size: u64,
    ) -> Result<(), GetError> {
        let nats = |what: String| GetError::Nats {
            object: name.to_string(),
            what,
        };
        let mismatch = |what: String| GetError::Mismatch {
            object: name.to_string(),
            what,
        };
        let info = self.read_info(name).await.map_err(nats)?;
        let Some(info) = info else {
            return Err(GetError::Missing {
                bucket: self.bucket.clone(),
                object: name.to_string(),
            });
        };
        let held = info.digest.as_deref().unwrap_or("no digest");
        if held != digest || info.size as u64 != size {
            return Err(mismatch(format!(
                "the bucket holds {} bytes with {held}, not {size} bytes with {digest}",
                info.size
            )));
        }
        let part = part_path(dest);
        let file_err = |e: std::io::Error| GetError::File(format!("{}: {e}", part.display()));
        let mut file = tokio::fs::File::create(&part).await.map_err(file_err)?;
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        // Chunk by chunk with direct gets: readers need no consumer of the stream.
        let subject = self.chunk_subject(&info.nuid);
        let mut seq = 0u64;
        let mut received = Ok(());
        for _ in 0..info.chunks {
            let chunk = match self
                .stream
                .direct_get_next_for_subject(subject.as_str(), Some(seq + 1))
                .await
            {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => {
                    received = Err(mismatch(format!(
                        "its chunks are gone after {got} of its {size} bytes"
                    )));
                    break;
                }
                Err(e) => {
                    received = Err(nats(format!("transfer: {e}")));
                    break;
                }
            };
            seq = chunk.sequence;
            got += chunk.payload.len() as u64;
            if got > size {
                received = Err(mismatch(format!("more than its {size} bytes arrived")));
                break;
            }
            hasher.update(&chunk.payload);
            if let Err(e) = file.write_all(&chunk.payload).await {
                received = Err(file_err(e));
                break;
            }
        }
        let received = match received {
            Ok(()) => file.flush().await.map_err(file_err),
            Err(e) => Err(e),
        };
        drop(file);
        let checked = received.and_then(|()| {
            let sha: Sha256Digest = hasher.finalize().into();
            let arrived = object_digest(&sha);
            if got != size || arrived != digest {
                return Err(mismatch(format!(
                    "{got} bytes with {arrived} arrived, not {size} bytes with {digest}"
                )));
            }
            Ok(())
        });
        if let Err(e) = checked {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
        tokio::fs::rename(&part, dest)
            .await
            .map_err(|e| GetError::File(format!("{}: {e}", dest.display())))
    }

    fn chunk_subject(&self, nuid: &str) -> String {
        format!("$O.{}.C.{nuid}", self.bucket)
    }

    fn meta_subject(&self, name: &str) -> String {
        format!(
            "$O.{}.M.{}",
            self.bucket,
            base64::engine::general_purpose::URL_SAFE.encode(name)
        )
    }
}

/// `.NAME.<nuid>.part` beside `dest`: a download of its own, whoever else fetches the same.
fn part_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}.part", nuid::next()))
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
    fn digests_are_in_the_object_stores_form_and_links_are_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        let (size, digest) = hash_file(&path).unwrap();
        assert_eq!(size, 3);
        assert_eq!(
            object_digest(&digest),
            "SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0="
        );
        std::os::unix::fs::symlink(&path, dir.path().join("link")).unwrap();
        assert!(hash_file(&dir.path().join("link")).is_err());
        let (a, b) = (
            part_path(&dir.path().join("x.bin")),
            part_path(&dir.path().join("x.bin")),
        );
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(dir.path()));
        let name = a.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with(".x.bin.") && name.ends_with(".part"),
            "{name}"
        );
    }
}
