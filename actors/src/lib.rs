//! herd's actors and the domain logic they wrap.
//!
//! - [`node`] and [`coordinator`]: the two roles, actix actors that are thin shells;
//! - [`cores`]: their domain logic, sans-IO (no actix, tokio or NATS), unit-tested;
//! - [`edges`]: cgroups, drivers, NATS helpers and the rest of the outside world.
//!
//! Arrows point one way: roles → cores → herd-bus; roles → edges.

pub mod coordinator;
pub mod cores;
pub mod edges;
pub mod node;

pub use cores::outbox::{Outbox, OutboxEntry};
pub use node::{Bus, EmitNodeEvent, EventPublisher, Flush, NodeIdentity, Publish, SetNodeState};
