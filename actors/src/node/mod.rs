//! The node role (every herdd): the Bus that answers node commands, the WorkloadExecutor, the
//! ProcessMonitor, the Heartbeat, the EventPublisher and the ResultsUploader. Each actor is a shell around a core
//! in [`crate::cores`].

pub mod api;
pub mod bus;
pub mod events;
pub mod executor;
pub mod heartbeat;
pub mod monitor;
pub mod results;
pub mod shutdown;

pub use bus::{Bus, EmitNodeEvent, NodeIdentity, SetNodeState};
pub use events::{EventPublisher, Flush, Publish};
