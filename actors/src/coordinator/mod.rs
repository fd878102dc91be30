//! The coordinator: fleet state from heartbeats and events, cluster queries, placement.

pub mod actor;
pub mod placement;
pub mod registry;
pub mod runs;

pub use actor::Coordinator;
