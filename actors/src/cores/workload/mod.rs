//! Workloads: the lifecycle state machine (sans-IO), spec validation, and telemetry rates.

pub mod inputs;
pub mod lifecycle;
pub mod rates;
pub mod resources;
pub mod table;
pub mod validate;

pub use lifecycle::{Effect, Exit, Lifecycle, StopCause};
pub use validate::{validate, ExecPolicy, ResolvedSpec};
