//! One telemetry tick (`Collector::collect`) over N = 10, 100, 1000 idle workloads in real
//! cgroups (or the no-cgroup backend where there are none, said in the output), against the
//! `sysinfo` crate refreshing the same processes (cpu and memory) in the same bench.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use herd_actors::node::monitor::Collector;
use herd_benches::IdleWorkloads;
use herd_bus::NodeId;
use std::hint::black_box;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

fn collection(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("collection");
    for n in [10usize, 100, 1000] {
        let workloads = IdleWorkloads::start(n);
        eprintln!(
            "collection: {n} workloads, cgroup backend {}",
            workloads.version().as_str()
        );
        let mut collector = Collector::new(NodeId::new("bench").unwrap());
        for (id, cgroup) in workloads.samplers() {
            collector.track(id, None, cgroup);
        }
        let batch = collector.collect();
        assert_eq!(batch.samples.len(), n);
        assert!(batch.samples.iter().all(|s| s.error.is_none()), "{batch:?}");
        group.bench_with_input(BenchmarkId::new("herd", n), &n, |b, _| {
            b.iter(|| black_box(collector.collect()))
        });

        let pids: Vec<Pid> = workloads.pids().into_iter().map(Pid::from_u32).collect();
        let mut sys = System::new().expect("sysinfo supports this system");
        let kind = ProcessRefreshKind::nothing().with_cpu().with_memory();
        let found = sys.refresh_processes_specifics(ProcessesToUpdate::Some(&pids), true, kind);
        assert_eq!(found, n, "sysinfo sees every process");
        group.bench_with_input(BenchmarkId::new("sysinfo", n), &n, |b, _| {
            b.iter(|| {
                black_box(sys.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&pids),
                    true,
                    kind,
                ))
            })
        });
        drop(workloads);
    }
    group.finish();
}

criterion_group!(benches, collection);
criterion_main!(benches);
