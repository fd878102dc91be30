//! herd's actors and the domain logic they wrap.
//!
//! Domain logic lives in plain structs tested without actix, NATS or a clock (`outbox`);
//! actors (`bus`, `events`) own them and do the I/O.

pub mod bus;
pub mod cgroup;
pub mod clock;
pub mod connection;
pub mod coordinator;
pub mod driver;
pub mod events;
pub mod executor;
pub mod gpu;
pub mod heartbeat;
pub mod host;
pub mod logs;
pub mod metrics;
pub mod monitor;
pub mod outbox;
pub mod records;
pub mod workload;

pub use bus::{Bus, EmitNodeEvent, NodeIdentity, SetNodeState};
pub use events::{EventPublisher, Flush, Publish};
pub use outbox::{Outbox, OutboxEntry};
