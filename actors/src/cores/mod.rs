//! Sans-IO cores: the domain logic of both roles as plain structs, with no actix, tokio or
//! NATS. Inputs (requests, events, the clock as `now_ms`) in, effects out; tested with plain
//! `#[test]`s. Arrows point one way: roles → cores → herd-bus.

pub mod allocation;
pub mod backoff;
pub mod election;
pub mod heartbeat;
pub mod node_state;
pub mod outbox;
pub mod pending;
pub mod placement;
pub mod registry;
pub mod results;
pub mod run;
pub mod shutdown;
pub mod stats;
pub mod workload;
