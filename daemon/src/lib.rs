//! herdd (node daemon) and herdctl (operator CLI). Thin: configuration, signals, systemd and
//! wiring; the domain logic lives in herd-actors and herd-bus.

pub mod config;
pub mod dev;
pub mod doctor;
pub mod gen;
pub mod herdctl;
pub mod herdd;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod systemd;
pub mod top;
