//! Nodes: identity, roles and state, node lifecycle events, and the small request and reply
//! bodies every node command shares.

use super::{is_false, Labels};
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs workloads.
    Node,
    /// Aggregates fleet state, places workloads and runs.
    Coordinator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Coordinator => "coordinator",
        }
    }
}

/// What a node is willing to do right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Accepting workloads.
    #[default]
    Active,
    /// Draining: refuses new workloads.
    Lameduck,
    /// Shutting down.
    Stopping,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Lameduck => "lameduck",
            NodeState::Stopping => "stopping",
        }
    }
}

/// Reply to `node.<node>.ping` and `nodes.ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: NodeId,
    pub version: String,
    /// Protocol version the node speaks (`v1`).
    #[serde(default)]
    pub api: String,
    #[serde(default)]
    pub hostname: String,
    pub started_at_ms: u64,
    pub uptime_s: f64,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub state: NodeState,
    /// The cgroup backend in use (`v2`, `v1`, `none`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeEventKind {
    Started,
    Stopping,
    Lameduck,
    Active,
}

impl NodeEventKind {
    pub const ALL: [NodeEventKind; 4] = [
        NodeEventKind::Started,
        NodeEventKind::Stopping,
        NodeEventKind::Lameduck,
        NodeEventKind::Active,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeEventKind::Started => "started",
            NodeEventKind::Stopping => "stopping",
            NodeEventKind::Lameduck => "lameduck",
            NodeEventKind::Active => "active",
        }
    }

    pub fn parse(kind: &str) -> Option<NodeEventKind> {
        NodeEventKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

/// Published on `evt.<node>.node.<kind>` through JetStream (`HERD_EVENTS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// Unique per event; also the JetStream `Nats-Msg-Id`, so a retried publish is stored once.
    pub event_id: String,
    pub node_id: NodeId,
    pub kind: NodeEventKind,
    pub ts_ms: u64,
    #[serde(default)]
    pub version: String,
    /// When this instance of the daemon started; tells restarts apart.
    #[serde(default)]
    pub started_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `lameduck` request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LameduckRequest {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_s: Option<f64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stop_workloads: bool,
}

/// Empty request body (ping, list without a filter). Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// Acknowledgement carried in `Reply::data` for commands with nothing else to say.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_event_kinds_are_the_wire_names() {
        for kind in NodeEventKind::ALL {
            let wire = serde_json::to_value(kind).unwrap();
            assert_eq!(wire.as_str(), Some(kind.as_str()));
            assert_eq!(NodeEventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(NodeEventKind::parse("rebooted"), None);
    }
}
