//! A bounded queue of events waiting for a JetStream acknowledgement.
//!
//! Sans-IO: the [`EventPublisher`](crate::node::events::EventPublisher) actor feeds it and does the
//! publishing. When full, the oldest event is dropped and counted: a node that has been cut off
//! for long keeps its most recent history. The queue survives a daemon restart through a file in
//! the state directory ([`Outbox::save`], [`Outbox::load`]).

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub subject: String,
    /// JetStream `Nats-Msg-Id`: a publish retried after a lost ack is stored once.
    pub msg_id: String,
    #[serde(with = "serde_bytes_compat")]
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<OutboxEntry>,
    capacity: usize,
    dropped: u64,
}

impl Outbox {
    /// Capacity is at least one.
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Queues an entry; returns the oldest entry when it had to make room.
    pub fn push(&mut self, entry: OutboxEntry) -> Option<OutboxEntry> {
        let evicted = if self.queue.len() >= self.capacity {
            self.dropped += 1;
            self.queue.pop_front()
        } else {
            None
        };
        self.queue.push_back(entry);
        evicted
    }

    pub fn front(&self) -> Option<&OutboxEntry> {
        self.queue.front()
    }

    /// Removes the front entry once it is acknowledged; `msg_id` guards against removing an
    /// entry that replaced it (after an eviction while the publish was in flight).
    pub fn ack(&mut self, msg_id: &str) -> bool {
        if self.queue.front().is_some_and(|e| e.msg_id == msg_id) {
            self.queue.pop_front();
            true
        } else {
            false
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Events dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes the queue to `path` atomically ([`herd_shim::write_atomic`]), or removes the file
    /// when the queue is empty.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if self.queue.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let entries: Vec<&OutboxEntry> = self.queue.iter().collect();
        let bytes = rmp_serde::to_vec_named(&entries).map_err(io::Error::other)?;
        herd_shim::write_atomic(path, &bytes)
    }

    /// Queues the entries saved at `path` (oldest first), if the file exists.
    pub fn load(&mut self, path: &Path) -> io::Result<usize> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let entries: Vec<OutboxEntry> = rmp_serde::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        let n = entries.len();
        for e in entries {
            self.push(e);
        }
        Ok(n)
    }
}

/// Payloads as MessagePack `bin`, not as an array of integers.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32) -> OutboxEntry {
        OutboxEntry {
            subject: format!("herd.v1.evt.n1.node.e{i}"),
            msg_id: format!("id-{i}"),
            payload: vec![0x80, i as u8],
        }
    }

    #[test]
    fn keeps_order_and_acks_only_the_front() {
        let mut o = Outbox::new(10);
        o.push(entry(1));
        o.push(entry(2));
        assert!(!o.ack("id-2"), "only the front can be acknowledged");
        assert!(o.ack("id-1"));
        assert_eq!(o.front(), Some(&entry(2)));
        assert!(o.ack("id-2"));
        assert!(o.is_empty());
    }

    #[test]
    fn drops_oldest_when_full_and_counts() {
        let mut o = Outbox::new(2);
        assert_eq!(o.push(entry(1)), None);
        assert_eq!(o.push(entry(2)), None);
        assert_eq!(o.push(entry(3)), Some(entry(1)));
        assert_eq!(o.dropped(), 1);
        assert_eq!(o.len(), 2);
        assert_eq!(o.front(), Some(&entry(2)));
    }

    #[test]
    fn survives_a_restart_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.msgpack");
        let mut o = Outbox::new(10);
        o.push(entry(1));
        o.push(entry(2));
        o.save(&path).unwrap();

        let mut again = Outbox::new(10);
        assert_eq!(again.load(&path).unwrap(), 2);
        assert_eq!(again.front(), Some(&entry(1)));

        again.ack("id-1");
        again.ack("id-2");
        again.save(&path).unwrap();
        assert!(!path.exists(), "an empty outbox leaves no file");
        assert_eq!(Outbox::new(1).load(&path).unwrap(), 0);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.msgpack");
        std::fs::write(&path, b"\xc1garbage").unwrap();
        let err = Outbox::new(4).load(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
