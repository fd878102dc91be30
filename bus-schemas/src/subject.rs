//! Every NATS subject herd uses, built and parsed in one place.
//!
//! Layout: `<prefix>.v1.<area>.…`; see docs/bus.md for the table.

use crate::ids::{validate_token, IdError, NodeId, WorkloadId};
use crate::messages::{ClusterEventKind, LogStream, NodeEventKind, WorkloadState};
use crate::API_VERSION;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject '{0}' is not under this bus's prefix '{1}'")]
    ForeignPrefix(String, String),
    #[error("unknown subject '{0}'")]
    Unknown(String),
    #[error("unknown verb '{verb}' on subject '{subject}'")]
    UnknownVerb { subject: String, verb: String },
    /// An event subject whose kind (workload state, node event or cluster event kind) this
    /// version does not know, perhaps one published by a newer node.
    #[error("unknown event kind '{kind}' on subject '{subject}'")]
    UnknownEventKind { subject: String, kind: String },
    #[error(transparent)]
    Id(#[from] IdError),
}

/// Requests a node answers on `<prefix>.v1.node.<node>.<verb>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeVerb {
    Ping,
    WorkloadStart,
    WorkloadStop,
    WorkloadList,
    WorkloadGet,
    Lameduck,
}

impl NodeVerb {
    pub const ALL: [NodeVerb; 6] = [
        NodeVerb::Ping,
        NodeVerb::WorkloadStart,
        NodeVerb::WorkloadStop,
        NodeVerb::WorkloadList,
        NodeVerb::WorkloadGet,
        NodeVerb::Lameduck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeVerb::Ping => "ping",
            NodeVerb::WorkloadStart => "workload.start",
            NodeVerb::WorkloadStop => "workload.stop",
            NodeVerb::WorkloadList => "workload.list",
            NodeVerb::WorkloadGet => "workload.get",
            NodeVerb::Lameduck => "lameduck",
        }
    }

    pub fn parse(verb: &str) -> Option<NodeVerb> {
        NodeVerb::ALL.into_iter().find(|v| v.as_str() == verb)
    }
}

/// Requests the coordinator answers on `<prefix>.v1.cluster.<verb>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterVerb {
    Nodes,
    NodeGet,
    Workloads,
    Query,
    RunSubmit,
    RunStop,
    RunGet,
    RunList,
    RunSummary,
    RunCompare,
    RunRetry,
}

impl ClusterVerb {
    pub const ALL: [ClusterVerb; 11] = [
        ClusterVerb::Nodes,
        ClusterVerb::NodeGet,
        ClusterVerb::Workloads,
        ClusterVerb::Query,
        ClusterVerb::RunSubmit,
        ClusterVerb::RunStop,
        ClusterVerb::RunGet,
        ClusterVerb::RunList,
        ClusterVerb::RunSummary,
        ClusterVerb::RunCompare,
        ClusterVerb::RunRetry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterVerb::Nodes => "nodes",
            ClusterVerb::NodeGet => "node.get",
            ClusterVerb::Workloads => "workloads",
            ClusterVerb::Query => "query",
            ClusterVerb::RunSubmit => "run.submit",
            ClusterVerb::RunStop => "run.stop",
            ClusterVerb::RunGet => "run.get",
            ClusterVerb::RunList => "run.list",
            ClusterVerb::RunSummary => "run.summary",
            ClusterVerb::RunCompare => "run.compare",
            ClusterVerb::RunRetry => "run.retry",
        }
    }

    pub fn parse(verb: &str) -> Option<ClusterVerb> {
        ClusterVerb::ALL.into_iter().find(|v| v.as_str() == verb)
    }
}

/// A parsed herd subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    NodeCommand {
        node: NodeId,
        verb: NodeVerb,
    },
    NodesPing,
    WorkloadEvent {
        node: NodeId,
        state: WorkloadState,
    },
    NodeEvent {
        node: NodeId,
        kind: NodeEventKind,
    },
    /// `evt.<node>.results`: a run task's output was uploaded.
    Results {
        node: NodeId,
    },
    Heartbeat {
        node: NodeId,
    },
    Telemetry {
        node: NodeId,
    },
    Logs {
        node: NodeId,
        workload: WorkloadId,
        stream: LogStream,
    },
    Cluster(ClusterVerb),
    ClusterEvent {
        kind: ClusterEventKind,
    },
}

/// Subject builder for one prefix. `Subjects::default()` is `herd.v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    base: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects::new(crate::DEFAULT_PREFIX).expect("default prefix is valid")
    }
}

impl Subjects {
    /// `prefix` is one or more dot-separated tokens, e.g. `herd` or `acme.herd`.
    pub fn new(prefix: &str) -> Result<Subjects, IdError> {
        for token in prefix.split('.') {
            validate_token("subject prefix", token)?;
        }
        Ok(Subjects {
            prefix: prefix.to_string(),
            base: format!("{prefix}.{API_VERSION}"),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Name of the JetStream stream holding lifecycle events: `HERD_EVENTS` for prefix `herd`.
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.stream_stem())
    }

    /// Name of the JetStream stream holding telemetry: `HERD_TELEMETRY` for prefix `herd`.
    pub fn telemetry_stream(&self) -> String {
        format!("{}_TELEMETRY", self.stream_stem())
    }

    /// Name of the JetStream stream holding one node's logs: `HERD_LOGS_<node>` for prefix
    /// `herd`. One stream per node, so that a node's byte cap bounds its own history and a
    /// chatty node never pushes another's out.
    pub fn logs_stream(&self, node: &NodeId) -> String {
        format!("{}_LOGS_{node}", self.stream_stem())
    }

    fn stream_stem(&self) -> String {
        self.prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    }

    pub fn node_command(&self, node: &NodeId, verb: NodeVerb) -> String {
        format!("{}.node.{node}.{}", self.base, verb.as_str())
    }

    /// Everything addressed to one node: what its Bus actor subscribes to.
    pub fn node_commands(&self, node: &NodeId) -> String {
        format!("{}.node.{node}.>", self.base)
    }

    /// The fleet-wide ping that every node answers.
    pub fn nodes_ping(&self) -> String {
        format!("{}.nodes.ping", self.base)
    }

    pub fn workload_event(&self, node: &NodeId, state: WorkloadState) -> String {
        format!("{}.evt.{node}.workload.{}", self.base, state.as_str())
    }

    pub fn node_event(&self, node: &NodeId, kind: NodeEventKind) -> String {
        format!("{}.evt.{node}.node.{}", self.base, kind.as_str())
    }

    /// A node's results events (a run task's output uploaded): [`crate::ResultsEvent`].
    pub fn results_event(&self, node: &NodeId) -> String {
        format!("{}.evt.{node}.results", self.base)
    }

    /// Results events of every node.
    pub fn results_events_all(&self) -> String {
        format!("{}.evt.*.results", self.base)
    }

    /// All node, workload and results events of every node: the subjects of the events stream.
    pub fn events_all(&self) -> String {
        format!("{}.evt.>", self.base)
    }

    /// Node events (`started`, `stopping`, …) of every node.
    pub fn node_events_all(&self) -> String {
        format!("{}.evt.*.node.*", self.base)
    }

    /// Node events of one node.
    pub fn node_events_of(&self, node: &NodeId) -> String {
        format!("{}.evt.{node}.node.*", self.base)
    }

    /// Workload events of every node.
    pub fn workload_events_all(&self) -> String {
        format!("{}.evt.*.workload.*", self.base)
    }

    /// Workload events of one node.
    pub fn workload_events_of(&self, node: &NodeId) -> String {
        format!("{}.evt.{node}.workload.*", self.base)
    }

    /// Every coordinator request (`nodes`, `run.submit`, …) and nothing else: cluster events
    /// have three tokens after `cluster`, verbs one or two.
    pub fn cluster_requests(&self) -> [String; 2] {
        [
            format!("{}.cluster.*", self.base),
            format!("{}.cluster.*.*", self.base),
        ]
    }

    pub fn heartbeat(&self, node: &NodeId) -> String {
        format!("{}.hb.{node}", self.base)
    }

    pub fn heartbeats_all(&self) -> String {
        format!("{}.hb.*", self.base)
    }

    pub fn telemetry(&self, node: &NodeId) -> String {
        format!("{}.telemetry.{node}", self.base)
    }

    pub fn telemetry_all(&self) -> String {
        format!("{}.telemetry.*", self.base)
    }

    pub fn logs(&self, node: &NodeId, workload: &WorkloadId, stream: LogStream) -> String {
        format!("{}.logs.{node}.{workload}.{}", self.base, stream.as_str())
    }

    /// Both streams of one workload's logs.
    pub fn logs_of(&self, node: &NodeId, workload: &WorkloadId) -> String {
        format!("{}.logs.{node}.{workload}.*", self.base)
    }

    /// Every log subject of one node: the subjects of its logs stream.
    pub fn logs_of_node(&self, node: &NodeId) -> String {
        format!("{}.logs.{node}.>", self.base)
    }

    pub fn cluster(&self, verb: ClusterVerb) -> String {
        format!("{}.cluster.{}", self.base, verb.as_str())
    }

    /// `herd.v1.cluster.evt.node.up`, `herd.v1.cluster.evt.run.completed`, …
    pub fn cluster_event(&self, kind: ClusterEventKind) -> String {
        format!("{}.cluster.evt.{}", self.base, kind.as_str())
    }

    /// Every cluster event: node liveness and run state changes.
    pub fn cluster_events_all(&self) -> String {
        format!("{}.cluster.evt.>", self.base)
    }

    /// Parses any subject under this prefix. Unknown verbs under a node are reported as such, so
    /// that the node can answer them with a clear error.
    pub fn parse(&self, subject: &str) -> Result<Subject, SubjectError> {
        let rest = subject
            .strip_prefix(self.base.as_str())
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(|| SubjectError::ForeignPrefix(subject.into(), self.base.clone()))?;
        let unknown = || SubjectError::Unknown(subject.to_string());
        let unknown_kind = |kind: &str| SubjectError::UnknownEventKind {
            subject: subject.to_string(),
            kind: kind.to_string(),
        };
        let (area, rest) = rest.split_once('.').ok_or_else(unknown)?;
        match area {
            "node" => {
                let (node, verb) = rest.split_once('.').ok_or_else(unknown)?;
                let node = NodeId::new(node)?;
                let verb = NodeVerb::parse(verb).ok_or_else(|| SubjectError::UnknownVerb {
                    subject: subject.to_string(),
                    verb: verb.to_string(),
                })?;
                Ok(Subject::NodeCommand { node, verb })
            }
            "nodes" if rest == "ping" => Ok(Subject::NodesPing),
            "evt" => {
                let mut parts = rest.splitn(3, '.');
                let (Some(node), Some(kind), what) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(unknown());
                };
                let node = NodeId::new(node)?;
                if kind == "results" {
                    return match what {
                        None => Ok(Subject::Results { node }),
                        Some(_) => Err(unknown()),
                    };
                }
                let what = what.ok_or_else(unknown)?;
                match kind {
                    "workload" => Ok(Subject::WorkloadEvent {
                        node,
                        state: WorkloadState::parse(what).ok_or_else(|| unknown_kind(what))?,
                    }),
                    "node" => Ok(Subject::NodeEvent {
                        node,
                        kind: NodeEventKind::parse(what).ok_or_else(|| unknown_kind(what))?,
                    }),
                    _ => Err(unknown()),
                }
            }
            "hb" => Ok(Subject::Heartbeat {
                node: NodeId::new(rest)?,
            }),
            "telemetry" => Ok(Subject::Telemetry {
                node: NodeId::new(rest)?,
            }),
            "logs" => {
                let parts: Vec<&str> = rest.split('.').collect();
                let [node, workload, stream] = parts[..] else {
                    return Err(unknown());
                };
                let stream = LogStream::parse(stream).ok_or_else(unknown)?;
                Ok(Subject::Logs {
                    node: NodeId::new(node)?,
                    workload: WorkloadId::new(workload)?,
                    stream,
                })
            }
            "cluster" => {
                if let Some(kind) = rest.strip_prefix("evt.") {
                    return Ok(Subject::ClusterEvent {
                        kind: ClusterEventKind::parse(kind).ok_or_else(|| unknown_kind(kind))?,
                    });
                }
                ClusterVerb::parse(rest)
                    .map(Subject::Cluster)
                    .ok_or_else(|| SubjectError::UnknownVerb {
                        subject: subject.to_string(),
                        verb: rest.to_string(),
                    })
            }
            _ => Err(unknown()),
        }
    }
}

#[cfg(test)]
mod tests;
