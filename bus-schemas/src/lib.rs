//! herd's wire protocol, in one crate: identifiers, NATS subjects, message types and the codec.
//!
//! A reader learns the whole protocol here. Every subject is built (and parsed) by one function
//! of [`Subjects`]; every payload is one of the types in [`messages`]; every reply is a
//! [`Reply`]. Payloads are MessagePack with named fields, or JSON when a request asks for it
//! (see [`codec`]).

pub mod campaign;
pub mod codec;
pub mod fixtures;
pub mod ids;
pub mod messages;
pub mod reply;
pub mod subject;

pub use codec::{CodecError, DecodeLimits, Encoding};
pub use ids::{IdError, NodeId, RunId, WorkloadId};
pub use messages::*;
pub use reply::{ErrorBody, ErrorCode, Reply};
pub use subject::{ClusterVerb, NodeVerb, Subject, SubjectError, Subjects};

/// The protocol version embedded in every subject.
pub const API_VERSION: &str = "v1";

/// The default subject prefix (`herd.v1.…`).
pub const DEFAULT_PREFIX: &str = "herd";

/// Version of the crate that wrote a message, reported in NodeInfo and heartbeats.
pub const HERD_VERSION: &str = env!("CARGO_PKG_VERSION");
