//! The distributed stop of one run: who must still confirm, and by when.

use herd_bus::NodeId;
use std::collections::BTreeSet;

/// The distributed stop of one run, sans-IO: which nodes must still confirm, and by when.
/// A node confirms once it has no running task of the run left; a node lost before confirming
/// never does, since nothing tells that its workloads stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct StopProtocol {
    awaiting: BTreeSet<NodeId>,
    lost: BTreeSet<NodeId>,
    deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopVerdict {
    /// Every node confirmed.
    Stopped,
    /// The deadline passed; these nodes never confirmed.
    StopFailed(Vec<NodeId>),
}

impl StopProtocol {
    pub fn new(nodes: BTreeSet<NodeId>, now_ms: u64, timeout_ms: u64) -> StopProtocol {
        StopProtocol {
            awaiting: nodes,
            lost: BTreeSet::new(),
            deadline_ms: now_ms + timeout_ms,
        }
    }

    /// `node` confirmed. Answers whether that counted: a repeat, a node not in the stop, or a
    /// lost node changes nothing.
    pub fn confirm(&mut self, node: &NodeId) -> bool {
        !self.lost.contains(node) && self.awaiting.remove(node)
    }

    pub fn node_lost(&mut self, node: &NodeId) {
        if self.awaiting.contains(node) {
            self.lost.insert(node.clone());
        }
    }

    pub fn awaiting(&self) -> impl Iterator<Item = &NodeId> {
        self.awaiting.iter()
    }

    /// Stopped once every node confirmed; at the deadline, StopFailed naming the others.
    pub fn verdict(&self, now_ms: u64) -> Option<StopVerdict> {
        if self.awaiting.is_empty() {
            Some(StopVerdict::Stopped)
        } else if now_ms >= self.deadline_ms {
            Some(StopVerdict::StopFailed(
                self.awaiting.iter().cloned().collect(),
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn nodes(names: &[&str]) -> BTreeSet<NodeId> {
        names.iter().map(|s| n(s)).collect()
    }

    #[test]
    fn stop_protocol_counts_each_node_once_and_only_its_own() {
        let mut p = StopProtocol::new(nodes(&["a", "b"]), 1000, 5000);
        assert_eq!(p.verdict(1000), None);
        assert!(p.confirm(&n("a")));
        assert!(
            !p.confirm(&n("a")),
            "a duplicate confirmation does not count twice"
        );
        assert!(
            !p.confirm(&n("zz")),
            "a node that is not in the stop does not count"
        );
        assert_eq!(p.verdict(5999), None);
        assert!(p.confirm(&n("b")));
        assert_eq!(
            p.verdict(6000),
            Some(StopVerdict::Stopped),
            "all confirmed: stopped, even at the deadline"
        );
    }

    #[test]
    fn stop_protocol_fails_at_the_deadline_naming_who_never_confirmed() {
        let mut p = StopProtocol::new(nodes(&["c", "a", "b"]), 0, 30_000);
        p.confirm(&n("b"));
        assert_eq!(p.verdict(29_999), None, "not before stop_timeout_s");
        assert_eq!(
            p.verdict(30_000),
            Some(StopVerdict::StopFailed(vec![n("a"), n("c")]))
        );
        // A lost node never confirms, even if something claims it did.
        let mut p = StopProtocol::new(nodes(&["a"]), 0, 10);
        p.node_lost(&n("a"));
        p.node_lost(&n("zz"));
        assert!(!p.confirm(&n("a")));
        assert_eq!(p.verdict(10), Some(StopVerdict::StopFailed(vec![n("a")])));
        // Nothing to wait for: stopped at once.
        assert_eq!(
            StopProtocol::new(BTreeSet::new(), 0, 10).verdict(0),
            Some(StopVerdict::Stopped)
        );
    }
}
