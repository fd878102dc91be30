//! Every message that travels on herd's bus.
//!
//! Compatibility rules (checked by the golden vectors in `golden/`):
//! - fields are encoded by name, so readers skip fields they do not know;
//! - every field added after v1 is optional or has a default, so old bytes still decode;
//! - enums are lowercase strings (task statuses are upper case, as operators read them).
//!
//! Times are milliseconds since the Unix epoch (`*_ms`); durations are seconds as floats
//! (`*_s`) unless the name says otherwise.
//!
//! One module per domain: [`node`], [`workload`], [`telemetry`], [`cluster`], [`run`]. Every
//! type is re-exported here and from the crate root, so `herd_bus::NodeInfo`,
//! `herd_bus::messages::NodeInfo` and `herd_bus::messages::node::NodeInfo` are one type.

pub mod cluster;
mod labels;
pub mod node;
pub mod results;
pub mod run;
pub mod suite;
pub mod telemetry;
pub mod workload;

pub use cluster::*;
pub use node::*;
pub use results::*;
pub use run::*;
pub use suite::*;
pub use telemetry::*;
pub use workload::*;

pub use labels::Labels;

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &u64) -> bool {
    *n == 0
}
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}
fn default_true() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
