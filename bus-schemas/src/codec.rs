//! Encoding and decoding of payloads.
//!
//! MessagePack with named fields is the default. A request is JSON when its `Content-Type`
//! header says so, or, without that header, when its first non-blank byte is `{`. A reply uses
//! its request's encoding. Untrusted bytes are decoded under [`DecodeLimits`]: a size cap checked
//! before anything is parsed, and a nesting depth limit.

use serde::de::DeserializeOwned;
use serde::Serialize;

mod msgpack;

pub const CONTENT_TYPE_HEADER: &str = "Content-Type";
pub const CONTENT_TYPE_MSGPACK: &str = "application/msgpack";
pub const CONTENT_TYPE_JSON: &str = "application/json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    MsgPack,
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::MsgPack => CONTENT_TYPE_MSGPACK,
            Encoding::Json => CONTENT_TYPE_JSON,
        }
    }

    /// Parses a `Content-Type` value; parameters such as `; charset=utf-8` are ignored.
    pub fn from_content_type(value: &str) -> Option<Encoding> {
        let essence = value.split(';').next().unwrap_or("").trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/json" | "text/json" => Some(Encoding::Json),
            "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
                Some(Encoding::MsgPack)
            }
            _ => None,
        }
    }

    /// The encoding of a message, request or reply: `content_type` is the value of its
    /// [`CONTENT_TYPE_HEADER`] header, if it has one. The header wins when it names a known type;
    /// otherwise JSON when the payload's first non-blank byte is `{`, otherwise MessagePack.
    ///
    /// The one place this rule lives; a NATS client only looks the header up and calls it.
    pub fn detect(content_type: Option<&str>, payload: &[u8]) -> Encoding {
        if let Some(enc) = content_type.and_then(Encoding::from_content_type) {
            return enc;
        }
        match payload.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Encoding::Json,
            _ => Encoding::MsgPack,
        }
    }
}

/// Bounds on what a decoder accepts from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
}

impl DecodeLimits {
    /// 1 MiB, the NATS server's default max payload.
    pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
    /// Deeper than any herd message needs (a RunSpec is 4 levels).
    pub const DEFAULT_MAX_DEPTH: usize = 32;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("payload nests deeper than the limit of {limit} levels")]
    TooDeep { limit: usize },
    #[error("invalid JSON{}: {message}", at(path))]
    Json { path: String, message: String },
    #[error("invalid MessagePack{}: {message}", at(path))]
    MsgPack { path: String, message: String },
    #[error("{0} trailing bytes after the MessagePack message")]
    TrailingBytes(u64),
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn at(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!(" at `{path}`")
    }
}

pub fn encode<T: Serialize + ?Sized>(value: &T, encoding: Encoding) -> Result<Vec<u8>, CodecError> {
    match encoding {
        Encoding::MsgPack => {
            rmp_serde::to_vec_named(value).map_err(|e| CodecError::Encode(e.to_string()))
        }
        Encoding::Json => serde_json::to_vec(value).map_err(|e| CodecError::Encode(e.to_string())),
    }
}

/// Decodes untrusted bytes into `T` under `limits`. Errors name the field path that was wrong.
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    encoding: Encoding,
    limits: &DecodeLimits,
) -> Result<T, CodecError> {
    if bytes.len() > limits.max_bytes {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    match encoding {
        Encoding::Json => {
            if json_depth_exceeds(bytes, limits.max_depth) {
                return Err(CodecError::TooDeep {
                    limit: limits.max_depth,
                });
            }
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let value =
                serde_path_to_error::deserialize(&mut de).map_err(|e| CodecError::Json {
                    path: e.path().to_string(),
                    message: e.inner().to_string(),
                })?;
            de.end().map_err(|e| CodecError::Json {
                path: String::new(),
                message: e.to_string(),
            })?;
            Ok(value)
        }
        Encoding::MsgPack => {
            // Most payloads are valid: decode them straight from the slice (strings borrowed,
            // no field path kept); only a payload that fails is decoded again, tracking the
            // path, to say where. Both decoders accept the same bytes.
            if let Some(value) = decode_msgpack_valid(bytes, limits) {
                return Ok(value);
            }
            let mut cursor = std::io::Cursor::new(bytes);
            let mut de = rmp_serde::Deserializer::new(&mut cursor);
            // rmp-serde counts each map/array level; one level of ours is one of theirs.
            de.set_max_depth(limits.max_depth);
            let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let message = e.inner().to_string();
                if message.contains("depth limit exceeded") {
                    CodecError::TooDeep {
                        limit: limits.max_depth,
                    }
                } else {
                    CodecError::MsgPack {
                        path: e.path().to_string(),
                        message,
                    }
                }
            })?;
            let rest = bytes.len() as u64 - cursor.position();
            if rest > 0 {
                return Err(CodecError::TrailingBytes(rest));
            }
            Ok(value)
        }
    }
}

/// The value in `bytes` when they hold exactly one valid MessagePack `T` within the depth limit,
/// read by [`msgpack::SliceReader`]; `None` otherwise (and [`decode`] asks rmp-serde why).
fn decode_msgpack_valid<T: DeserializeOwned>(bytes: &[u8], limits: &DecodeLimits) -> Option<T> {
    let mut reader = msgpack::SliceReader::new(bytes, limits.max_depth);
    let value = T::deserialize(&mut reader).ok()?;
    reader.at_end().then_some(value)
}

/// Like [`decode`], into `place`: a MessagePack payload is decoded into the strings and vectors
/// `place` already holds (serde's in-place decoding), so that a value replaced at a high rate
/// (a heartbeat in the coordinator) costs no allocation and no free once its buffers are large
/// enough. On success `place` holds exactly what [`decode`] returns; on an error it holds
/// something unspecified, to be overwritten or dropped, never used.
pub fn decode_into<T: DeserializeOwned>(
    bytes: &[u8],
    encoding: Encoding,
    limits: &DecodeLimits,
    place: &mut T,
) -> Result<(), CodecError> {
    if encoding == Encoding::MsgPack && bytes.len() <= limits.max_bytes {
        let mut reader = msgpack::SliceReader::new(bytes, limits.max_depth);
        if T::deserialize_in_place(&mut reader, place).is_ok() && reader.at_end() {
            return Ok(());
        }
    }
    // Not MessagePack, or not valid: decoded as a new value (which says what was wrong).
    *place = decode(bytes, encoding, limits)?;
    Ok(())
}

/// Like [`decode`], but an empty (or all-blank) payload is `T::default()`: requests such as ping
/// need no body.
pub fn decode_request<T: DeserializeOwned + Default>(
    bytes: &[u8],
    encoding: Encoding,
    limits: &DecodeLimits,
) -> Result<T, CodecError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) && bytes.len() <= limits.max_bytes {
        return Ok(T::default());
    }
    decode(bytes, encoding, limits)
}

/// True when the JSON text opens more than `max` nested arrays/objects. Linear, no allocation;
/// strings (with escapes) are skipped so brackets inside them do not count.
fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Empty, Limits, WorkloadSpec};

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    #[test]
    fn detects_encoding_from_header_then_payload() {
        assert_eq!(Encoding::detect(None, b"  {\"a\":1}"), Encoding::Json);
        assert_eq!(Encoding::detect(None, &[0x80]), Encoding::MsgPack);
        assert_eq!(Encoding::detect(None, b""), Encoding::MsgPack);
        assert_eq!(
            Encoding::detect(Some("application/json; charset=utf-8"), &[0x80]),
            Encoding::Json
        );
        assert_eq!(
            Encoding::detect(Some("application/msgpack"), b"{"),
            Encoding::MsgPack
        );
        assert_eq!(Encoding::detect(Some("text/plain"), b"{}"), Encoding::Json);
    }

    #[test]
    fn round_trips_both_encodings() {
        let spec = WorkloadSpec {
            command: vec!["sleep".into(), "5".into()],
            limits: Limits {
                cpu: Some(0.5),
                memory: Some(64 << 20),
                pids: None,
                swap: None,
                ..Default::default()
            },
            ..Default::default()
        };
        for enc in [Encoding::MsgPack, Encoding::Json] {
            let bytes = encode(&spec, enc).unwrap();
            let back: WorkloadSpec = decode(&bytes, enc, &limits()).unwrap();
            assert_eq!(back, spec);
        }
    }

    #[test]
    fn errors_name_the_field() {
        let err = decode::<WorkloadSpec>(
            br#"{"command":["x"],"limits":{"memory":-5}}"#,
            Encoding::Json,
            &limits(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("limits.memory"), "{err}");

        #[derive(serde::Serialize)]
        struct Bad {
            command: Vec<String>,
            limits: BadLimits,
        }
        #[derive(serde::Serialize)]
        struct BadLimits {
            cpu: &'static str,
        }
        let bytes = rmp_serde::to_vec_named(&Bad {
            command: vec!["x".into()],
            limits: BadLimits { cpu: "lots" },
        })
        .unwrap();
        let err = decode::<WorkloadSpec>(&bytes, Encoding::MsgPack, &limits()).unwrap_err();
        assert!(err.to_string().contains("limits.cpu"), "{err}");
    }

    #[test]
    fn size_cap_is_checked_before_parsing() {
        let small = DecodeLimits {
            max_bytes: 8,
            max_depth: 4,
        };
        let err = decode::<Empty>(b"{\"aaaaaaaaaa\":1}", Encoding::Json, &small).unwrap_err();
        assert_eq!(err, CodecError::TooLarge { size: 16, limit: 8 });
    }

    #[test]
    fn depth_limit_applies_to_unknown_fields_too() {
        let deep_json = format!("{{\"x\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(
            decode::<Empty>(deep_json.as_bytes(), Encoding::Json, &limits()).unwrap_err(),
            CodecError::TooDeep { limit: 32 }
        );
        // fixmap{ "x": [[[[...]]]] } in MessagePack
        let mut deep_mp = vec![0x81, 0xa1, b'x'];
        deep_mp.extend(std::iter::repeat_n(0x91, 40));
        deep_mp.push(0xc0);
        assert_eq!(
            decode::<Empty>(&deep_mp, Encoding::MsgPack, &limits()).unwrap_err(),
            CodecError::TooDeep { limit: 32 }
        );
        // Brackets inside strings do not count.
        let text = format!("{{\"x\":\"{}\"}}", "[".repeat(100));
        assert!(decode::<Empty>(text.as_bytes(), Encoding::Json, &limits()).is_ok());
    }

    #[test]
    fn trailing_bytes_and_truncation_are_errors() {
        let mut bytes = encode(&Empty {}, Encoding::MsgPack).unwrap();
        bytes.push(0x01);
        assert_eq!(
            decode::<Empty>(&bytes, Encoding::MsgPack, &limits()).unwrap_err(),
            CodecError::TrailingBytes(1)
        );
        let spec = WorkloadSpec {
            command: vec!["sleep".into()],
            ..Default::default()
        };
        let full = encode(&spec, Encoding::MsgPack).unwrap();
        for cut in 1..full.len() {
            assert!(decode::<WorkloadSpec>(&full[..cut], Encoding::MsgPack, &limits()).is_err());
        }
        assert!(decode::<Empty>(b"{\"a\":1} x", Encoding::Json, &limits()).is_err());
    }

    #[test]
    fn empty_request_is_default() {
        let e: Empty = decode_request(b"", Encoding::MsgPack, &limits()).unwrap();
        assert_eq!(e, Empty {});
        let e: Empty = decode_request(b" \n", Encoding::Json, &limits()).unwrap();
        assert_eq!(e, Empty {});
    }

    /// Heartbeats of every shape, each decoded into a place that held another: the place ends
    /// up equal to a fresh decode, whatever it held (longer or shorter lists, fields present
    /// there and absent here).
    #[test]
    fn decodes_into_a_used_value_exactly_as_anew() {
        use crate::fixtures::heartbeat;
        use crate::messages::{Allocation, Heartbeat};
        let mut bare = heartbeat(0);
        bare.labels.clear();
        bare.capacity.gpus.clear();
        bare.version.clear();
        let mut allocated = heartbeat(3);
        allocated.allocation = Some(Allocation {
            allocatable_cpus: 2.0,
            gpus_free: vec!["GPU-5c1d".into()],
            ..Allocation::default()
        });
        allocated.workloads[1].run_id = None;
        allocated.workloads[2].cpu_percent = None;
        let shapes = [heartbeat(100), bare, allocated, heartbeat(1), heartbeat(10)];
        for held in &shapes {
            for next in &shapes {
                let bytes = encode(next, Encoding::MsgPack).unwrap();
                let mut place: Heartbeat = held.clone();
                decode_into(&bytes, Encoding::MsgPack, &limits(), &mut place).unwrap();
                assert_eq!(place, *next);
                let fresh: Heartbeat = decode(&bytes, Encoding::MsgPack, &limits()).unwrap();
                assert_eq!(place, fresh);
            }
        }
        // JSON is decoded anew.
        let json = encode(&shapes[2], Encoding::Json).unwrap();
        let mut place = shapes[0].clone();
        decode_into(&json, Encoding::Json, &limits(), &mut place).unwrap();
        assert_eq!(place, shapes[2]);
    }

    /// What `decode` refuses, `decode_into` refuses with the same error.
    #[test]
    fn decode_into_refuses_what_decode_refuses() {
        use crate::fixtures::heartbeat;
        use crate::messages::Heartbeat;
        let good = encode(&heartbeat(2), Encoding::MsgPack).unwrap();
        let mut trailing = good.clone();
        trailing.push(0xc0);
        // A workload id with a character no id may hold, same length as the good one.
        let bad_id = {
            let mut b = good.clone();
            let at = b.windows(6).position(|w| w == b"w-0001").unwrap();
            b[at + 1] = b'/';
            b
        };
        // 100 nested one-element arrays.
        let mut deep = vec![0x91; 100];
        deep.push(0xc0);
        let too_large = vec![0u8; limits().max_bytes + 1];
        for bytes in [
            &trailing,
            &bad_id,
            &deep,
            &too_large,
            &good[..good.len() - 3],
        ] {
            let mut place = heartbeat(5);
            let into = decode_into(bytes, Encoding::MsgPack, &limits(), &mut place).unwrap_err();
            let anew = decode::<Heartbeat>(bytes, Encoding::MsgPack, &limits()).unwrap_err();
            assert_eq!(into.to_string(), anew.to_string());
        }
        let mut place = heartbeat(5);
        let err = decode_into(&bad_id, Encoding::MsgPack, &limits(), &mut place).unwrap_err();
        assert!(err.to_string().contains("workload id"), "{err}");
    }
}
