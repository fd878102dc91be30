//! NodeRegistry's tests.

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

/// Nodes are found by hash, yet whatever goes over the fleet still does so by node id:
/// nodes heard out of order, nodes restored beside them, and the changes of a tick.
#[test]
fn the_fleet_is_walked_by_node_id_whatever_the_order_nodes_came_in() {
    let mut r = reg();
    for (i, node) in ["m", "c", "x", "a"].into_iter().enumerate() {
        r.on_heartbeat(hb(node, 1, 0), i as u64);
    }
    let restored = |node: &str| NodeRecord {
        node_id: NodeId::new(node).unwrap(),
        liveness: NodeLiveness::Up,
        first_seen_ms: 0,
        last_seen_ms: 0,
        heartbeat: None,
    };
    r.restore(vec![restored("d"), restored("c"), restored("b")], 10);
    let ids = |r: &NodeRegistry| -> Vec<String> {
        r.records().map(|rec| rec.node_id.to_string()).collect()
    };
    assert_eq!(ids(&r), ["a", "b", "c", "d", "m", "x"]);
    r.on_heartbeat(hb("e", 1, 0), 20);
    assert_eq!(ids(&r), ["a", "b", "c", "d", "e", "m", "x"]);
    let stale: Vec<String> = r
        .tick(100_000)
        .into_iter()
        .map(|c| c.node_id.to_string())
        .collect();
    assert_eq!(stale, ["a", "b", "c", "d", "e", "m", "x"]);
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
