//! The coordinator role: fleet state from heartbeats and events, cluster queries, placement,
//! runs and their stops. The actor is a shell around the cores in [`crate::cores`].

pub mod actor;
pub mod store;

pub use actor::Coordinator;
