//! A telemetry tick taken apart: herd's `Collector::collect` over N idle workloads back to
//! back and once a second, and the kernel's share, file by file (each cgroup file read from
//! offset 0 on a descriptor kept open, as herd reads them).

use super::{percentile, Report};
use herd_actors::edges::cgroup::CgroupVersion;
use herd_actors::node::monitor::{Collector, FULL_EVERY};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// What a tick measured: medians in µs, and per file (name, read every tick, µs per tick).
pub(crate) struct Tick {
    pub hot_us: f64,
    pub paused_us: f64,
    /// A counters tick's reads, each workload's files in turn.
    pub workload_order_us: f64,
    /// A counters tick's reads in herd's order: one kind of file over all workloads, then the
    /// next kind.
    pub herd_order_us: f64,
    pub files: Vec<(&'static str, bool, f64)>,
    pub n: usize,
}

/// The files herd's collector reads per backend: (name, read every tick).
fn files(version: CgroupVersion) -> &'static [(&'static str, bool)] {
    match version {
        CgroupVersion::V1 => &[
            ("cpuacct.usage", true),
            ("memory.usage_in_bytes", true),
            ("pids.current", true),
            ("memory.oom_control", false),
            ("blkio.throttle.io_service_bytes", true),
            ("memory.stat", false),
            ("memory.limit_in_bytes", false),
        ],
        _ => &[
            ("cpu.stat", true),
            ("memory.current", true),
            ("pids.current", true),
            ("memory.events", false),
            ("io.stat", true),
            ("memory.stat", false),
            ("memory.max", false),
        ],
    }
}

fn median_us(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

fn tick_breakdown(n: usize) -> Tick {
    let workloads = herd_benches::IdleWorkloads::start(n);
    let mut collector = Collector::new(herd_bus::NodeId::new("bench").expect("a node id"));
    for (id, cgroup) in workloads.samplers() {
        collector.track(id, None, cgroup);
    }
    let tick = |c: &mut Collector| {
        let t = Instant::now();
        std::hint::black_box(c.collect());
        t.elapsed().as_secs_f64() * 1e6
    };
    let hot_us = median_us((0..50).map(|_| tick(&mut collector)).collect());
    let paused_us = median_us(
        (0..15)
            .map(|_| {
                std::thread::sleep(Duration::from_secs(1));
                tick(&mut collector)
            })
            .collect(),
    );
    // Each file of each workload's cgroup, opened once, read 30 times over all workloads.
    let dirs: Vec<Vec<std::path::PathBuf>> = workloads
        .workloads
        .iter()
        .map(|(_, _, cgroup)| {
            cgroup
                .placement_files()
                .iter()
                .filter_map(|p| p.parent().map(|d| d.to_path_buf()))
                .collect()
        })
        .collect();
    // Every file of every workload opened once, (file, read every tick, one per workload).
    let opened: Vec<(&str, bool, Vec<std::fs::File>)> = files(workloads.version())
        .iter()
        .filter_map(|(name, every_tick)| {
            let open: Vec<std::fs::File> = dirs
                .iter()
                .filter_map(|ds| {
                    ds.iter()
                        .find_map(|d| std::fs::File::open(d.join(name)).ok())
                })
                .collect();
            (open.len() == dirs.len()).then_some((*name, *every_tick, open))
        })
        .collect();
    let mut buf = [0u8; 4096];
    let mut rounds = |read: &mut dyn FnMut(&mut [u8; 4096])| {
        median_us(
            (0..30)
                .map(|_| {
                    let t = Instant::now();
                    read(&mut buf);
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect(),
        )
    };
    // Each kind of file over all workloads, then a counters tick's reads each workload's in
    // turn and in herd's order.
    let mut per_file = vec![];
    for (name, every_tick, open) in &opened {
        let us = rounds(&mut |buf| {
            for f in open {
                let _ = std::hint::black_box(f.read_at(buf, 0));
            }
        });
        per_file.push((*name, *every_tick, us));
    }
    let counters: Vec<&Vec<std::fs::File>> = opened
        .iter()
        .filter(|(_, every_tick, _)| *every_tick)
        .map(|(_, _, open)| open)
        .collect();
    let workload_order_us = rounds(&mut |buf| {
        for w in 0..dirs.len() {
            for open in &counters {
                let _ = std::hint::black_box(open[w].read_at(buf, 0));
            }
        }
    });
    let herd_order_us = rounds(&mut |buf| {
        for open in &counters {
            for f in open.iter() {
                let _ = std::hint::black_box(f.read_at(buf, 0));
            }
        }
    });
    Tick {
        hot_us,
        paused_us,
        workload_order_us,
        herd_order_us,
        files: per_file,
        n: workloads.workloads.len(),
    }
}

/// The tick taken apart at N = 100 and 1000, in this process (with no herdd sampling the same
/// cgroups), added to the report.
pub(crate) async fn breakdowns(r: &mut Report) -> anyhow::Result<()> {
    for n in [100, 1000] {
        let t = tokio::task::spawn_blocking(move || tick_breakdown(n)).await?;
        for line in lines(&t) {
            r.line(line);
        }
    }
    Ok(())
}

/// The tick's breakdown as report lines.
fn lines(t: &Tick) -> Vec<String> {
    let mut out = vec![format!(
        "Breakdown of a tick over {} idle workloads (this process, same run): `Collector::collect` \
         back to back as criterion runs it, median {:.0} µs; once a second as herdd runs it, \
         median {:.0} µs ({:.2}×): a tick a second finds the CPU's caches, TLB and branch \
         predictors cold for this code and the kernel's cgroup files. The kernel's share, each \
         file read on its kept-open descriptor: each kind of file over all workloads, 30 times \
         back to back (one kind's working set stays in the caches), then a counters tick's \
         reads, each workload's files in turn (every kind's working set at once), and in \
         herd's order (one kind over all workloads, then the next):\n",
        t.n,
        t.hot_us,
        t.paused_us,
        t.paused_us / t.hot_us
    )];
    out.push("| file | read | all workloads | per workload |".into());
    out.push("|---|---|---|---|".into());
    let mut per_tick = 0.0;
    for (name, every, us) in &t.files {
        per_tick += if *every { *us } else { us / FULL_EVERY as f64 };
        out.push(format!(
            "| `{name}` | {} | {us:.0} µs | {:.2} µs |",
            if *every {
                "every tick".to_string()
            } else {
                format!("every {FULL_EVERY}th tick")
            },
            us / t.n as f64
        ));
    }
    out.push(format!(
        "| reads, averaged per tick (each kind of file over all workloads) | | {per_tick:.0} µs | {:.2} µs |",
        per_tick / t.n as f64
    ));
    out.push(format!(
        "| a counters tick's reads, each workload's every-tick files in turn | | {:.0} µs | {:.2} µs |",
        t.workload_order_us,
        t.workload_order_us / t.n as f64
    ));
    out.push(format!(
        "| a counters tick's reads in herd's order (one kind of every-tick file over all workloads, then the next) | | {:.0} µs | {:.2} µs |",
        t.herd_order_us,
        t.herd_order_us / t.n as f64
    ));
    out.push(format!(
        "| the rest of a counters tick (the median tick above less the reads in herd's order: rates, samples, the batch) | | {:.0} µs | {:.2} µs |\n",
        (t.hot_us - t.herd_order_us).max(0.0),
        (t.hot_us - t.herd_order_us).max(0.0) / t.n as f64
    ));
    out
}
