//! Encode and decode of a Heartbeat with 100 workloads and a TelemetryBatch with 100 samples,
//! MessagePack (named fields) against JSON. Sizes are printed once.

use criterion::{criterion_group, criterion_main, Criterion};
use herd_bus::codec::{decode, encode, DecodeLimits, Encoding};
use herd_bus::fixtures;
use herd_bus::{Heartbeat, TelemetryBatch};
use std::hint::black_box;

fn bench_type<T>(c: &mut Criterion, name: &str, value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group(name);
    for (label, enc) in [("msgpack", Encoding::MsgPack), ("json", Encoding::Json)] {
        let bytes = encode(value, enc).unwrap();
        eprintln!("{name} {label}: {} bytes", bytes.len());
        group.bench_function(format!("encode/{label}"), |b| {
            b.iter(|| encode(black_box(value), enc).unwrap())
        });
        group.bench_function(format!("decode/{label}"), |b| {
            b.iter(|| decode::<T>(black_box(&bytes), enc, &limits).unwrap())
        });
    }
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_type::<Heartbeat>(c, "heartbeat_100_workloads", &fixtures::heartbeat(100));
    bench_type::<TelemetryBatch>(c, "telemetry_100_samples", &fixtures::telemetry_batch(100));
}

criterion_group!(benches, codec);
criterion_main!(benches);
