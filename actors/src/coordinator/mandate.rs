//! What passes between the candidate and the coordinator it starts: the mandate the coordinator
//! acts under (its leadership, the lease guard, whom to tell when its writes are refused), and
//! the messages each sends the other.

use crate::cores::registry::NodeRegistry;
use actix::prelude::*;
use herd_bus::Leadership;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Where a coordinator stands: the leadership it acts under, the replicas of its buckets, and
/// whom to tell when it finds that another coordinator acts.
pub struct Mandate {
    pub leadership: Leadership,
    pub superseded: Recipient<Superseded>,
    /// Whether the lease still lets this coordinator act.
    pub guard: LeaseGuard,
    pub replicas: usize,
    /// The standby's registry, warm from heartbeats (None: start from the buckets alone).
    pub warm: Option<NodeRegistry>,
}

/// Until when this process may act as the leader, shared by the candidate with its
/// coordinator, which checks it before each request, event and tick: a coordinator frozen past
/// its lease (a paused VM, SIGSTOP) does not act on what it finds queued when it thaws, before
/// the candidate has had a chance to depose it.
#[derive(Clone)]
pub struct LeaseGuard {
    epoch: Instant,
    until_ms: Arc<AtomicU64>,
}

impl LeaseGuard {
    pub(super) fn new() -> LeaseGuard {
        LeaseGuard {
            epoch: Instant::now(),
            until_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A guard on the same clock that holds nothing yet, for the next leadership: the old
    /// one's holder keeps its own, which is never set again.
    pub(super) fn fresh(&self) -> LeaseGuard {
        LeaseGuard {
            epoch: self.epoch,
            until_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Monotonic milliseconds since this process's guard was made.
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn holds(&self) -> bool {
        self.now_ms() < self.until_ms.load(Ordering::Acquire)
    }

    pub(super) fn set(&self, until_ms: Option<u64>) {
        self.until_ms
            .store(until_ms.unwrap_or(0), Ordering::Release);
    }
}

/// A coordinator found its writes refused: another one leads.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Superseded(pub String);

/// This coordinator no longer leads: it stops at once, and with it its subscriptions and its
/// consumer of lifecycle events.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Depose;
