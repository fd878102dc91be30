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
    /// The same ids in order: whatever goes over the fleet does so by node id.
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
mod tests {
    use super::*;
    use herd_bus::fixtures;
    use NodeLiveness::*;

    fn hb(node: &str, seq: u64, started: u64) -> Heartbeat {
        Heartbeat {
            node_id: NodeId::new(node).unwrap(),
            seq,
            started_at_ms: started,
            interval_ms: 1000,
            ..fixtures::heartbeat(1)
        }
    }

    /// What the registry no longer holds comes back, to decode the next heartbeat into: the
    /// heartbeat replaced, or the one ignored; and the registry serves the new one.
    #[test]
    fn ingest_hands_back_the_heartbeat_it_no_longer_holds() {
        let mut r = reg();
        let mut spare = SpareHeartbeat::default();
        let (_, back) = r.ingest(hb("a", 1, 0), 0);
        assert!(back.is_none());
        let (_, back) = r.ingest(hb("a", 2, 0), 1000);
        assert_eq!(back.map(|h| h.seq), Some(1));
        let (_, back) = r.ingest(hb("a", 2, 0), 1500);
        assert_eq!(
            back.as_ref().map(|h| h.seq),
            Some(2),
            "ignored: handed back itself"
        );
        spare.keep(back);
        let mut next = hb("a", 3, 0);
        next.workloads = (0..4).map(fixtures::workload_summary).collect();
        let bytes = codec::encode(&next, Encoding::MsgPack).unwrap();
        let decoded = spare.decode(&bytes, &DecodeLimits::default()).unwrap();
        assert_eq!(decoded, next);
        r.ingest(decoded, 2000);
        assert_eq!(
            r.get(&NodeId::new("a").unwrap()).unwrap().heartbeat,
            Some(next)
        );
        assert!(spare.decode(b"\xc1", &DecodeLimits::default()).is_err());
    }

    fn reg() -> NodeRegistry {
        NodeRegistry::new(RegistryConfig {
            stale_after_missed: 3,
            lost_after_ms: 10_000,
        })
    }

    fn to(changes: &[Change]) -> Vec<NodeLiveness> {
        changes.iter().map(|c| c.to).collect()
    }

    #[test]
    fn time_the_coordinator_did_not_listen_is_not_a_nodes_silence() {
        let mut r = reg();
        r.on_heartbeat(hb("a", 1, 0), 0);
        r.on_heartbeat(hb("b", 1, 0), 0);
        r.on_heartbeat(hb("b", 2, 0), 2500);
        // Deaf from 2.8 s to 40 s (a slow restore): a stays 2.8 s silent, b 0.3 s, as before.
        r.unheard(2800, 40_000);
        assert!(r.tick(40_000).is_empty(), "no node judged for the gap");
        assert_eq!(
            to(&r.tick(40_200)),
            [Stale],
            "a: 3 intervals of its own missed"
        );
        assert_eq!(to(&r.tick(42_700)), [Stale], "b");
        assert!(r.tick(47_199).is_empty());
        assert_eq!(to(&r.tick(47_200)), [Lost], "a: 10 s of its own silence");
        // A node heard after the gap began keeps its clock.
        let mut r = reg();
        r.on_heartbeat(hb("c", 1, 0), 5000);
        r.unheard(3000, 4000);
        assert_eq!(
            r.get(&NodeId::new("c").unwrap()).unwrap().last_seen_ms,
            5000
        );
    }

    #[test]
    fn up_stale_lost_and_back() {
        let mut r = reg();
        assert_eq!(to(&r.on_heartbeat(hb("a", 1, 0), 0)), [Up]);
        assert_eq!(
            to(&r.on_heartbeat(hb("a", 2, 0), 1000)),
            [] as [NodeLiveness; 0]
        );
        assert!(r.tick(3999).is_empty(), "fewer than 3 intervals missed");
        assert_eq!(to(&r.tick(4000)), [Stale]);
        assert!(r.tick(5000).is_empty(), "stale is announced once");
        assert_eq!(to(&r.tick(11_000)), [Lost]);
        assert!(r.tick(20_000).is_empty());
        assert_eq!(to(&r.on_heartbeat(hb("a", 3, 0), 21_000)), [Up]);
        assert_eq!(r.get(&NodeId::new("a").unwrap()).unwrap().first_seen_ms, 0);
    }

    #[test]
    fn a_standby_s_registry_differs_from_the_records_where_it_learnt_something() {
        let mut warm = reg();
        warm.on_heartbeat(hb("a", 1, 0), 0);
        warm.on_heartbeat(hb("b", 1, 0), 0);
        warm.on_heartbeat(hb("c", 1, 0), 0);
        warm.tick(4000); // a, b and c stale
        warm.on_heartbeat(hb("a", 2, 0), 4000);
        let record = |node: &str, liveness| NodeRecord {
            node_id: NodeId::new(node).unwrap(),
            liveness,
            first_seen_ms: 0,
            last_seen_ms: 0,
            heartbeat: None,
        };
        // a: up on both sides; b: up in the records, stale now; c: unknown to the records.
        let records = [record("a", Up), record("b", Up), record("z", Lost)];
        let mut d = warm.differences(&records);
        d.sort_by(|x, y| x.node_id.cmp(&y.node_id));
        assert_eq!(
            d.iter()
                .map(|c| (c.node_id.as_str(), c.to))
                .collect::<Vec<_>>(),
            [("b", Stale), ("c", Stale)]
        );
        assert!(
            reg().differences(&records).is_empty(),
            "a cold registry learnt nothing"
        );
    }

    #[test]
    fn older_heartbeats_are_ignored_and_restarts_recognised() {
        let mut r = reg();
        r.on_heartbeat(hb("a", 5, 100), 0);
        assert!(r.on_heartbeat(hb("a", 4, 100), 10).is_empty());
        assert!(r.on_heartbeat(hb("a", 5, 100), 10).is_empty());
        assert_eq!(r.ignored_heartbeats, 2);
        assert_eq!(r.get(&NodeId::new("a").unwrap()).unwrap().last_seen_ms, 0);
        // New daemon instance: seq starts again at 1.
        let c = r.on_heartbeat(hb("a", 1, 200), 20);
        assert_eq!(
            c,
            vec![Change {
                node_id: NodeId::new("a").unwrap(),
                to: Up,
                restarted: true
            }]
        );
        assert_eq!(r.get(&NodeId::new("a").unwrap()).unwrap().last_seen_ms, 20);
    }

    #[test]
    fn stopping_means_left_but_not_for_an_old_instance() {
        let mut r = reg();
        r.on_heartbeat(hb("a", 1, 100), 0);
        assert!(
            r.on_stopping(&NodeId::new("a").unwrap(), 99).is_empty(),
            "another instance"
        );
        assert_eq!(to(&r.on_stopping(&NodeId::new("a").unwrap(), 100)), [Left]);
        assert!(r.tick(60_000).is_empty(), "a left node is not lost");
        assert!(
            r.on_stopping(&NodeId::new("zz").unwrap(), 1).is_empty(),
            "unknown node"
        );
        assert_eq!(to(&r.on_heartbeat(hb("a", 1, 300), 70_000)), [Up]);
    }

    #[test]
    fn stale_to_lost_directly_when_ticks_are_sparse() {
        let mut r = reg();
        r.on_heartbeat(hb("a", 1, 0), 0);
        assert_eq!(to(&r.tick(50_000)), [Lost]);
    }

    #[test]
    fn restored_nodes_get_a_fresh_window_and_dead_ones_end_lost() {
        let mut r = reg();
        r.on_heartbeat(hb("a", 1, 0), 0);
        r.on_heartbeat(hb("b", 1, 0), 0);
        r.on_heartbeat(hb("gone", 1, 0), 0);
        r.tick(20_000);
        let saved: Vec<NodeRecord> = r.records().cloned().collect();
        // The coordinator restarts at t = 100 s.
        let mut again = reg();
        again.restore(saved, 100_000);
        assert_eq!(
            again.get(&NodeId::new("a").unwrap()).unwrap().liveness,
            Lost,
            "was lost before"
        );
        again.on_heartbeat(hb("a", 2, 0), 100_500);
        again.on_heartbeat(hb("b", 2, 0), 100_500);
        let changes = again.tick(102_000);
        // "gone" was already lost; a and b beat again; nothing else changes.
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(again.get(&NodeId::new("a").unwrap()).unwrap().liveness, Up);

        let mut fresh = reg();
        let up_record = NodeRecord {
            node_id: NodeId::new("c").unwrap(),
            liveness: Up,
            first_seen_ms: 5,
            last_seen_ms: 10,
            heartbeat: Some(hb("c", 9, 0)),
        };
        fresh.restore(vec![up_record], 100_000);
        assert_eq!(to(&fresh.tick(103_000)), [Stale]);
        assert_eq!(
            to(&fresh.tick(110_000)),
            [Lost],
            "died while the coordinator was down"
        );
        assert_eq!(
            fresh.get(&NodeId::new("c").unwrap()).unwrap().first_seen_ms,
            5,
            "kept"
        );
    }

    #[test]
    fn queries_filter_and_lost_nodes_workloads_are_lost() {
        let mut r = reg();
        r.on_heartbeat(
            Heartbeat {
                workloads: vec![fixtures::workload_summary(1)],
                ..hb("a", 1, 0)
            },
            0,
        );
        let mut b = hb("b", 1, 0);
        b.labels.insert("rack".into(), "r2".into());
        b.workloads = vec![fixtures::workload_summary(2)];
        r.on_heartbeat(b, 8_000);
        r.tick(12_000);
        let rack = |v: &str| NodesQuery {
            state: None,
            labels: [("rack".to_string(), v.to_string())].into(),
        };
        assert_eq!(r.nodes(&rack("r2")).len(), 1);
        assert_eq!(
            r.nodes(&NodesQuery {
                state: Some(Lost),
                ..Default::default()
            })
            .len(),
            1
        );
        let all = r.workloads(&WorkloadsQuery::default());
        assert_eq!(all.len(), 2);
        let lost = r.workloads(&WorkloadsQuery {
            state: Some(WorkloadState::Lost),
            ..Default::default()
        });
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].node_id.as_str(), "a");
        let on_b = r.workloads(&WorkloadsQuery {
            node_id: Some(NodeId::new("b").unwrap()),
            ..Default::default()
        });
        assert_eq!(on_b[0].summary.state, WorkloadState::Running);
    }
}
