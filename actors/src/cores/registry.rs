//! NodeRegistry: the coordinator's view of the fleet, fed with heartbeats, node events and the
//! clock. Sans-IO: every method takes `now` and returns what changed.
//!
//! up (first heartbeat) → stale (3 intervals without one) → lost (`lost_after` without one);
//! left on a graceful `stopping` event; back to up when heartbeats resume.

use herd_bus::codec::{self, CodecError, DecodeLimits, Encoding};
use herd_bus::{
    ClusterWorkload, Heartbeat, NodeId, NodeLiveness, NodeRecord, NodesQuery, WorkloadState,
    WorkloadsQuery,
};
use std::collections::{BTreeMap, HashMap};

/// The heartbeat interval of herdd, unless configured (`heartbeat.interval_s`); the registry
/// assumes it for a node restored without a heartbeat.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 2_000;

/// The defaults of herdd's `[coordinator]` section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegistryConfig {
    /// Missed intervals before a node is stale.
    pub stale_after_missed: u32,
    pub lost_after_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            stale_after_missed: 3,
            lost_after_ms: 30_000,
        }
    }
}

/// The heartbeat the registry last handed back, kept to decode the next one into: at 20,000
/// nodes a second, allocating each heartbeat's strings and vectors and freeing the ones it
/// replaced (cold by then) was a third of the coordinator's time.
#[derive(Debug, Default)]
pub struct SpareHeartbeat(Option<Heartbeat>);

impl SpareHeartbeat {
    /// Decodes a MessagePack heartbeat, into the spare's buffers when there is one.
    pub fn decode(
        &mut self,
        payload: &[u8],
        limits: &DecodeLimits,
    ) -> Result<Heartbeat, CodecError> {
        match self.0.take() {
            Some(mut hb) => {
                codec::decode_into(payload, Encoding::MsgPack, limits, &mut hb).map(|()| hb)
            }
            None => codec::decode(payload, Encoding::MsgPack, limits),
        }
    }

    /// Keeps what [`NodeRegistry::ingest`] handed back (or a heartbeat not ingested).
    pub fn keep(&mut self, hb: Option<Heartbeat>) {
        if hb.is_some() {
            self.0 = hb;
        }
    }
}

/// A change of a node's liveness, to announce and persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub node_id: NodeId,
    pub to: NodeLiveness,
    /// The node came back with a new daemon instance (seq reset, new start time).
    pub restarted: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    record: NodeRecord,
    interval_ms: u64,
    last_seq: u64,
    started_at_ms: u64,
}

#[derive(Debug, Default)]
pub struct NodeRegistry {
    config: RegistryConfig,
    /// Each heartbeat finds its node by hash: in a tree of 20,000 nodes a lookup compared a
    /// dozen ids, each in a node of the tree no longer in the cache.
    nodes: HashMap<NodeId, Entry>,
    /// The same ids in order: whatever goes over the fleet does so by node id. A node first
    /// heard is inserted in place (once per node); restored ones are sorted in one go.
    order: Vec<NodeId>,
    /// Heartbeats ignored because their seq was not newer.
    pub ignored_heartbeats: u64,
}

impl NodeRegistry {
    pub fn new(config: RegistryConfig) -> NodeRegistry {
        NodeRegistry {
            config,
            nodes: HashMap::new(),
            order: Vec::new(),
            ignored_heartbeats: 0,
        }
    }

    pub fn on_heartbeat(&mut self, hb: Heartbeat, now_ms: u64) -> Vec<Change> {
        self.ingest(hb, now_ms).0
    }

    /// [`Self::on_heartbeat`], also handing back the heartbeat it no longer holds: the one
    /// `hb` replaced, or `hb` itself when it was ignored. The coordinator decodes the next
    /// heartbeat into it ([`herd_bus::codec::decode_into`]) instead of allocating anew.
    pub fn ingest(&mut self, hb: Heartbeat, now_ms: u64) -> (Vec<Change>, Option<Heartbeat>) {
        let interval_ms = hb.interval_ms.max(1);
        // Looked up by the heartbeat's own id: the node id is cloned only for a change.
        match self.nodes.get_mut(&hb.node_id) {
            None => {
                let node_id = hb.node_id.clone();
                let at = self.order.binary_search(&node_id).unwrap_or_else(|at| at);
                self.order.insert(at, node_id.clone());
                self.nodes.insert(
                    node_id.clone(),
                    Entry {
                        interval_ms,
                        last_seq: hb.seq,
                        started_at_ms: hb.started_at_ms,
                        record: NodeRecord {
                            node_id: node_id.clone(),
                            liveness: NodeLiveness::Up,
                            first_seen_ms: now_ms,
                            last_seen_ms: now_ms,
                            heartbeat: Some(hb),
                        },
                    },
                );
                let up = Change {
                    node_id,
                    to: NodeLiveness::Up,
                    restarted: false,
                };
                (vec![up], None)
            }
            Some(e) => {
                let restarted = hb.started_at_ms != e.started_at_ms;
                if !restarted && hb.seq <= e.last_seq && e.record.heartbeat.is_some() {
                    self.ignored_heartbeats += 1;
                    return (vec![], Some(hb));
                }
                e.interval_ms = interval_ms;
                e.last_seq = hb.seq;
                e.started_at_ms = hb.started_at_ms;
                e.record.last_seen_ms = now_ms;
                // The new heartbeat is moved in, the old one handed back: no copy.
                let previous = e.record.heartbeat.replace(hb);
                if e.record.liveness != NodeLiveness::Up || restarted {
                    e.record.liveness = NodeLiveness::Up;
                    let up = Change {
                        node_id: e.record.node_id.clone(),
                        to: NodeLiveness::Up,
                        restarted,
                    };
                    (vec![up], previous)
                } else {
                    (vec![], previous)
                }
            }
        }
    }

    /// A node said it is stopping: it left (it did not fail).
    pub fn on_stopping(&mut self, node_id: &NodeId, started_at_ms: u64) -> Vec<Change> {
        match self.nodes.get_mut(node_id) {
            // An old instance's late `stopping` must not mark a running new instance as left.
            Some(e)
                if e.started_at_ms == started_at_ms && e.record.liveness != NodeLiveness::Left =>
            {
                e.record.liveness = NodeLiveness::Left;
                vec![Change {
                    node_id: node_id.clone(),
                    to: NodeLiveness::Left,
                    restarted: false,
                }]
            }
            _ => vec![],
        }
    }

    pub fn tick(&mut self, now_ms: u64) -> Vec<Change> {
        let mut out = Vec::new();
        for (id, e) in self.nodes.iter_mut() {
            let silent = now_ms.saturating_sub(e.record.last_seen_ms);
            let to = match e.record.liveness {
                NodeLiveness::Up | NodeLiveness::Stale if silent >= self.config.lost_after_ms => {
                    NodeLiveness::Lost
                }
                NodeLiveness::Up
                    if silent >= e.interval_ms * self.config.stale_after_missed as u64 =>
                {
                    NodeLiveness::Stale
                }
                _ => continue,
            };
            e.record.liveness = to;
            out.push(Change {
                node_id: id.clone(),
                to,
                restarted: false,
            });
        }
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }

    /// Nodes remembered from before a coordinator restart. Their silence is counted from
    /// `now_ms`, the restart: a live node beats again within an interval, a dead one goes stale
    /// and then lost. Nodes already lost or left stay so.
    pub fn restore(&mut self, records: Vec<NodeRecord>, now_ms: u64) {
        let known = self.order.len();
        for mut record in records {
            if self.nodes.contains_key(&record.node_id) {
                continue;
            }
            let hb = record.heartbeat.clone();
            record.last_seen_ms = record.last_seen_ms.max(now_ms);
            self.order.push(record.node_id.clone());
            self.nodes.insert(
                record.node_id.clone(),
                Entry {
                    interval_ms: hb
                        .as_ref()
                        .map(|h| h.interval_ms.max(1))
                        .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL_MS),
                    last_seq: hb.as_ref().map(|h| h.seq).unwrap_or(0),
                    started_at_ms: hb.as_ref().map(|h| h.started_at_ms).unwrap_or(0),
                    record,
                },
            );
        }
        if self.order.len() > known {
            self.order.sort();
        }
    }

    /// The coordinator heard no heartbeat from `from_ms` to `to_ms` (it was taking over and
    /// restoring its buckets): that time is not the nodes' silence. Each clock moves on by the
    /// gap, so a node that beats on is not judged stale or lost for the coordinator's own
    /// deafness, and one that was already silent keeps the silence it had before.
    pub fn unheard(&mut self, from_ms: u64, to_ms: u64) {
        let gap = to_ms.saturating_sub(from_ms);
        for e in self.nodes.values_mut() {
            let seen = e.record.last_seen_ms;
            e.record.last_seen_ms = (seen + gap).min(to_ms.max(seen));
        }
    }

    /// What this registry knows that `records` (the durable ones) do not: each node whose
    /// liveness differs, or that they lack, as a change to announce and save. A standby's
    /// registry, taken over by a new leader, learnt these while no one could announce them.
    pub fn differences(&self, records: &[NodeRecord]) -> Vec<Change> {
        let known: BTreeMap<&NodeId, NodeLiveness> =
            records.iter().map(|r| (&r.node_id, r.liveness)).collect();
        self.records()
            .filter(|r| known.get(&r.node_id) != Some(&r.liveness))
            .map(|r| Change {
                node_id: r.node_id.clone(),
                to: r.liveness,
                restarted: false,
            })
            .collect()
    }

    pub fn get(&self, node_id: &NodeId) -> Option<&NodeRecord> {
        self.nodes.get(node_id).map(|e| &e.record)
    }

    /// Every node's record, by node id.
    pub fn records(&self) -> impl Iterator<Item = &NodeRecord> {
        self.order
            .iter()
            .filter_map(|id| self.nodes.get(id))
            .map(|e| &e.record)
    }

    pub fn nodes(&self, q: &NodesQuery) -> Vec<NodeRecord> {
        self.records()
            .filter(|r| q.state.is_none_or(|s| r.liveness == s))
            .filter(|r| labels_match(r, &q.labels))
            .cloned()
            .collect()
    }

    /// Workloads from the last heartbeat of each node; a lost node's are `lost`.
    pub fn workloads(&self, q: &WorkloadsQuery) -> Vec<ClusterWorkload> {
        let mut out = Vec::new();
        for r in self.records() {
            if q.node_id.as_ref().is_some_and(|n| *n != r.node_id) || !labels_match(r, &q.labels) {
                continue;
            }
            let Some(hb) = &r.heartbeat else { continue };
            for w in &hb.workloads {
                let mut summary = w.clone();
                if r.liveness == NodeLiveness::Lost {
                    summary.state = WorkloadState::Lost;
                }
                if q.run_id
                    .as_ref()
                    .is_some_and(|run| summary.run_id.as_ref() != Some(run))
                    || q.state.is_some_and(|s| summary.state != s)
                {
                    continue;
                }
                out.push(ClusterWorkload {
                    node_id: r.node_id.clone(),
                    summary,
                });
            }
        }
        out
    }
}

pub fn labels_match(r: &NodeRecord, want: &BTreeMap<String, String>) -> bool {
    let have = r.heartbeat.as_ref().map(|h| &h.labels);
    want.iter()
        .all(|(k, v)| have.and_then(|l| l.get(k)) == Some(v))
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
