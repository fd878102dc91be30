//! The coordinator role: fleet state from heartbeats and events, cluster queries, placement,
//! runs and their stops. The actor is a shell around the cores in [`crate::cores`]:
//!
//! - [`api`]: the cluster API, one typed method per `cluster.<verb>`, and its dispatch;
//! - [`store`]: the durable state in JetStream (KV buckets, the lifecycle-event consumer);
//! - [`node_client`]: the requests the coordinator makes to nodes;
//! - [`actor`]: receives, calls the cores, performs their effects;
//! - [`candidate`]: the election; starts the coordinator while this process leads;
//! - [`mandate`]: what the candidate hands the coordinator, and their messages;
//! - [`standby`]: the registry a standby keeps warm from heartbeats.

pub mod actor;
pub mod api;
pub mod candidate;
pub mod mandate;
pub mod node_client;
pub mod standby;
pub mod store;

pub use actor::Coordinator;
pub use candidate::{Candidate, CandidateConfig, Leave};
pub use mandate::Mandate;
