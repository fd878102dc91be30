//! What a node is doing, sans-IO: active, lameduck (draining) or stopping. It decides whether a
//! start is admitted and what a lameduck request changes; the Bus performs the outcome.

use herd_bus::{ErrorBody, LameduckRequest, NodeEventKind, NodeState};
use std::time::Duration;

/// The longest drain delay a lameduck request may ask for.
pub const MAX_DRAIN_DELAY_S: f64 = 86_400.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStatus {
    state: NodeState,
}

impl Default for NodeStatus {
    fn default() -> NodeStatus {
        NodeStatus {
            state: NodeState::Active,
        }
    }
}

/// What a lameduck request changed.
#[derive(Debug, Clone, PartialEq)]
pub struct LameduckOutcome {
    /// The event to publish, when the state changed.
    pub changed: Option<NodeEventKind>,
    /// Stop every workload after this delay, if the node is still draining then.
    pub drain_after: Option<Duration>,
    /// The reply's message.
    pub message: String,
}

impl NodeStatus {
    pub fn state(&self) -> NodeState {
        self.state
    }

    /// At shutdown.
    pub fn stopping(&mut self) {
        self.state = NodeState::Stopping;
    }

    pub fn set(&mut self, state: NodeState) {
        self.state = state;
    }

    /// Whether a new workload may start here.
    pub fn admit_start(&self) -> Result<(), ErrorBody> {
        match self.state {
            NodeState::Active => Ok(()),
            NodeState::Lameduck => Err(ErrorBody::unavailable(
                "the node is in lameduck mode and accepts no new workloads",
            )),
            NodeState::Stopping => Err(ErrorBody::unavailable("the node is shutting down")),
        }
    }

    /// A delayed drain is due: only while the node still drains (`enabled: false` cancels).
    pub fn drain_due(&self) -> bool {
        self.state == NodeState::Lameduck
    }

    /// Enters or leaves lameduck mode; `can_stop_workloads` is false on a node without an
    /// executor.
    pub fn on_lameduck(
        &mut self,
        req: &LameduckRequest,
        can_stop_workloads: bool,
    ) -> Result<LameduckOutcome, ErrorBody> {
        if let Some(d) = req
            .delay_s
            .filter(|d| !d.is_finite() || *d < 0.0 || *d > MAX_DRAIN_DELAY_S)
        {
            return Err(ErrorBody::bad_request(format!(
                "delay_s must be between 0 and {MAX_DRAIN_DELAY_S}, got {d}"
            )));
        }
        if req.stop_workloads && !req.enabled {
            return Err(ErrorBody::bad_request("stop_workloads needs enabled: true"));
        }
        if req.stop_workloads && !can_stop_workloads {
            return Err(ErrorBody::unavailable(
                "lameduck with stop_workloads needs the workload executor, which this herdd does not run",
            ));
        }
        if self.state == NodeState::Stopping {
            return Err(ErrorBody::unavailable("the node is shutting down"));
        }
        let (state, kind) = if req.enabled {
            (NodeState::Lameduck, NodeEventKind::Lameduck)
        } else {
            (NodeState::Active, NodeEventKind::Active)
        };
        let changed = (self.state != state).then_some(kind);
        self.state = state;
        let mut message = format!("node is {}", state.as_str());
        let drain_after = req
            .stop_workloads
            .then(|| Duration::from_secs_f64(req.delay_s.unwrap_or(0.0)));
        if let Some(delay) = drain_after {
            message += &format!("; its workloads stop in {delay:?}");
        }
        Ok(LameduckOutcome {
            changed,
            drain_after,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::ErrorCode;

    fn req(enabled: bool, stop_workloads: bool, delay_s: Option<f64>) -> LameduckRequest {
        LameduckRequest {
            enabled,
            stop_workloads,
            delay_s,
        }
    }

    #[test]
    fn lameduck_refuses_starts_until_undone_and_reports_each_change_once() {
        let mut n = NodeStatus::default();
        assert!(n.admit_start().is_ok());
        let out = n.on_lameduck(&req(true, false, None), true).unwrap();
        assert_eq!(out.changed, Some(NodeEventKind::Lameduck));
        assert_eq!(out.drain_after, None);
        assert_eq!(n.admit_start().unwrap_err().code, ErrorCode::Unavailable);
        let again = n.on_lameduck(&req(true, false, None), true).unwrap();
        assert_eq!(again.changed, None, "no second event for the same state");
        let undo = n.on_lameduck(&req(false, false, None), true).unwrap();
        assert_eq!(undo.changed, Some(NodeEventKind::Active));
        assert!(n.admit_start().is_ok());
        assert!(!n.drain_due());
    }

    #[test]
    fn a_drain_is_due_only_while_still_draining() {
        let mut n = NodeStatus::default();
        let out = n.on_lameduck(&req(true, true, Some(2.5)), true).unwrap();
        assert_eq!(out.drain_after, Some(Duration::from_millis(2500)));
        assert!(out.message.contains("stop in"), "{}", out.message);
        assert!(n.drain_due());
        n.on_lameduck(&req(false, false, None), true).unwrap();
        assert!(!n.drain_due(), "enabled: false cancels the drain");
    }

    #[test]
    fn bad_lameduck_requests_are_refused_and_change_nothing() {
        let mut n = NodeStatus::default();
        for (r, code) in [
            (req(true, false, Some(-1.0)), ErrorCode::BadRequest),
            (req(true, false, Some(f64::NAN)), ErrorCode::BadRequest),
            (req(true, false, Some(90_000.0)), ErrorCode::BadRequest),
            (req(false, true, None), ErrorCode::BadRequest),
        ] {
            assert_eq!(n.on_lameduck(&r, true).unwrap_err().code, code);
        }
        assert_eq!(
            n.on_lameduck(&req(true, true, None), false)
                .unwrap_err()
                .code,
            ErrorCode::Unavailable
        );
        assert_eq!(n.state(), NodeState::Active);
        n.stopping();
        assert_eq!(
            n.on_lameduck(&req(true, false, None), true)
                .unwrap_err()
                .code,
            ErrorCode::Unavailable
        );
        assert_eq!(
            n.admit_start().unwrap_err().message,
            "the node is shutting down"
        );
    }
}
