//! A run, sans-IO: its [`plan`] (which nodes, which workload ids), the [`RunQueue`] of runs
//! waiting for room, its [`RunJournal`] (inputs —
//! workload events, task statuses, node loss, stop requests, the clock — in; effects — start
//! this task, stop that node's run, persist, announce — out) and the [`StopProtocol`] the
//! journal follows while the run stops.
//!
//! One task per node × repetition (`node::name::rep`). Repetitions run in order on a node;
//! nodes run in parallel. Run states: (queued →) pending → running → completed | failed |
//! stopping → stopped | stop_failed; a queued run may also be stopped at once.

pub mod journal;
pub mod plan;
pub mod queue;
pub mod stop;
pub mod summary;

pub use journal::{catalog, RunEffect, RunJournal, UnansweredStart, DEFAULT_STOP_TIMEOUT_S};
pub use plan::{plan, task_workload_id, PlanError};
pub use queue::{hold_starts, Admission, RunQueue};
pub use stop::{StopProtocol, StopVerdict};
pub use summary::{compare, run_stats, significance_level};
