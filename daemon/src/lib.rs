//! herdd, the node daemon. Thin: configuration, signals, systemd and wiring; the domain logic
//! lives in herd-actors and herd-bus. (herdctl, the operator CLI, is a crate of its own.)

pub mod config;
pub mod dashboard;
pub mod dev;
pub mod doctor;
pub mod gen;
pub mod herdd;
mod http;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod systemd;
