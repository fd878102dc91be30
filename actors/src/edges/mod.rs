//! Edges: what touches the outside world on behalf of the roles — cgroup backends, workload
//! drivers, NATS helpers, GPUs, the host, workload records, the results bucket, run inputs,
//! logs, metrics and the wall clock.

pub mod cgroup;
pub mod clock;
pub mod driver;
pub mod gpu;
pub mod host;
pub mod inputs;
pub mod log_history;
pub mod logs;
pub mod metrics;
pub mod nats;
pub mod records;
pub mod results;
pub mod service;
