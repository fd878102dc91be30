//! The coordinator's hot paths: NodeRegistry ingest of one heartbeat (10 workloads) into
//! registries of 1,000 / 5,000 / 20,000 nodes, with and without decoding the MessagePack
//! payload first, and a placement query over 5,000 nodes. 5,000 nodes at 1 Hz cost 5,000 ×
//! the per-heartbeat time each second (scripts/bench turns it into a share of a core).
//!
//! The baseline: the same heartbeats decoded by bare `rmp_serde::from_slice` (no limits, no
//! error paths), and by herd's `codec::decode` alone; decode + ingest is held to ≤ 2× the bare
//! decode.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use herd_actors::cores::placement::place;
use herd_actors::cores::registry::{NodeRegistry, RegistryConfig, SpareHeartbeat};
use herd_bus::codec::{decode, encode, DecodeLimits, Encoding};
use herd_bus::{fixtures, FitQuery, Heartbeat, NodeId};
use std::hint::black_box;

const T0: u64 = 1_767_225_600_000;

/// Heartbeat `seq` of node `i`, with 10 workloads, like herd-sim's (benches/src/bin/herd-sim.rs).
fn beat(i: usize, seq: u64) -> Heartbeat {
    let mut hb = fixtures::heartbeat(10);
    hb.node_id = NodeId::new(format!("sim-{i:05}")).unwrap();
    hb.seq = seq;
    hb.interval_ms = 1000;
    hb.ts_ms = T0 + seq * 1000;
    hb.started_at_ms = T0;
    hb.usage.cpu_percent = (i % 200) as f64;
    hb
}

struct Feed {
    nodes: usize,
    i: usize,
    seq: u64,
}

impl Feed {
    fn next(&mut self) -> Heartbeat {
        self.i = (self.i + 1) % self.nodes;
        if self.i == 0 {
            self.seq += 1;
        }
        beat(self.i, self.seq)
    }
}

fn registry(nodes: usize) -> NodeRegistry {
    let mut r = NodeRegistry::new(RegistryConfig::default());
    for i in 0..nodes {
        r.on_heartbeat(beat(i, 1), T0 + 1000);
    }
    r
}

fn coordinator(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group("heartbeat_decode");
    let mut feed = Feed {
        nodes: 20_000,
        i: 0,
        seq: 2,
    };
    group.bench_function("bare_rmp_serde", |b| {
        b.iter_batched(
            || encode(&feed.next(), Encoding::MsgPack).unwrap(),
            |bytes| black_box(rmp_serde::from_slice::<Heartbeat>(&bytes).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("herd_codec", |b| {
        b.iter_batched(
            || encode(&feed.next(), Encoding::MsgPack).unwrap(),
            |bytes| black_box(decode::<Heartbeat>(&bytes, Encoding::MsgPack, &limits).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("ingest");
    for nodes in [1_000usize, 5_000, 20_000] {
        let mut r = registry(nodes);
        // Each iteration: the next node's next heartbeat (rounds over the fleet, seq rising).
        let mut feed = Feed {
            nodes,
            i: 0,
            seq: 2,
        };
        group.bench_with_input(BenchmarkId::new("heartbeat", nodes), &nodes, |b, _| {
            b.iter_batched(
                || feed.next(),
                |hb| {
                    let now = hb.ts_ms;
                    black_box(r.on_heartbeat(hb, now))
                },
                BatchSize::SmallInput,
            )
        });
        // As the coordinator does it: into the heartbeat the registry last handed back.
        let mut spare = SpareHeartbeat::default();
        group.bench_with_input(
            BenchmarkId::new("decode+heartbeat", nodes),
            &nodes,
            |b, _| {
                b.iter_batched(
                    || encode(&feed.next(), Encoding::MsgPack).unwrap(),
                    |bytes| {
                        let hb = spare.decode(&bytes, &limits).unwrap();
                        let now = hb.ts_ms;
                        let (changes, previous) = r.ingest(hb, now);
                        spare.keep(previous);
                        black_box(changes)
                    },
                    BatchSize::SmallInput,
                )
            },
        );
        assert_eq!(r.ignored_heartbeats, 0, "every heartbeat was newer");
    }
    group.finish();

    let r = registry(5_000);
    let query = FitQuery {
        cpu: Some(1.0),
        memory: Some(8 << 30),
        ..Default::default()
    };
    let fit = place(r.records(), &query, 0);
    eprintln!(
        "placement over 5000 nodes: {} candidates, {} rejected",
        fit.candidates.len(),
        fit.rejected.len()
    );
    c.bench_function("placement/5000", |b| {
        b.iter(|| black_box(place(r.records(), black_box(&query), 0)))
    });
}

criterion_group!(benches, coordinator);
criterion_main!(benches);
