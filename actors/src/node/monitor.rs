//! ProcessMonitor: every telemetry interval, samples every tracked workload's cgroup and
//! publishes one TelemetryBatch. One failing sample is reported in its place; the batch still
//! goes out.

use crate::cores::backoff::Backoff;
use crate::cores::workload::rates::rates;
use crate::cores::workload::resources::GpuUse;
use crate::edges::cgroup::{CgroupError, CgroupSample, ReadBuf, WorkloadCgroup};
use crate::edges::clock::now_ms;
use actix::prelude::*;
use async_nats::jetstream::{self, stream};
use herd_bus::{NodeId, RunId, Subjects, TelemetryBatch, WorkloadId, WorkloadSample};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every this many ticks, a full sample (memory.stat, the limit); counters only in between.
pub const FULL_EVERY: u64 = 5;

struct Tracked {
    cgroup: Arc<dyn WorkloadCgroup>,
    run_id: Option<RunId>,
    started: Instant,
    prev: Option<(f64, CgroupSample)>,
    /// The last cpu % and memory working set, for heartbeats (none before the first tick).
    last: Option<(Option<f64>, u64)>,
}

/// One workload's reading in a tick, as its cgroup files are read.
struct Reading {
    full: bool,
    sample: CgroupSample,
    /// Whether another step follows, or why the reading failed.
    more: Result<bool, CgroupError>,
}

/// The workloads being sampled and their previous readings; no I/O but the cgroup reads.
pub struct Collector {
    node_id: NodeId,
    tracked: BTreeMap<WorkloadId, Tracked>,
    /// Each workload's reading in the tick under way (kept between ticks for its room).
    reads: Vec<Reading>,
    /// Room to read one cgroup file into, reused from file to file and tick to tick.
    buf: Box<ReadBuf>,
    seq: u64,
    epoch: Instant,
    gpus: Option<crate::edges::gpu::Nvml>,
    /// Each tracked workload's GPU use so far, shared with the executor, which puts it in the
    /// workload's resource summary when it ends.
    gpu_use: GpuUseBoard,
}

/// GPU use per workload, written by the monitor each tick and read by the executor at exit.
pub type GpuUseBoard = Arc<std::sync::Mutex<BTreeMap<WorkloadId, GpuUse>>>;

impl Collector {
    pub fn new(node_id: NodeId) -> Collector {
        Collector {
            node_id,
            tracked: BTreeMap::new(),
            reads: Vec::new(),
            buf: Box::default(),
            seq: 0,
            epoch: Instant::now(),
            gpus: None,
            gpu_use: GpuUseBoard::default(),
        }
    }

    /// The board the executor reads each workload's GPU use from.
    pub fn gpu_use(&self) -> GpuUseBoard {
        self.gpu_use.clone()
    }

    /// Adds per-workload GPU use from NVML, when it loaded.
    pub fn with_gpus(mut self, nvml: crate::edges::gpu::Nvml) -> Collector {
        self.gpus = nvml.is_present().then_some(nvml);
        self
    }

    pub fn track(
        &mut self,
        workload_id: WorkloadId,
        run_id: Option<RunId>,
        cgroup: Arc<dyn WorkloadCgroup>,
    ) {
        self.tracked.insert(
            workload_id,
            Tracked {
                cgroup,
                run_id,
                started: Instant::now(),
                prev: None,
                last: None,
            },
        );
    }

    pub fn untrack(&mut self, workload_id: &WorkloadId) {
        self.tracked.remove(workload_id);
        self.gpu_use
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(workload_id);
    }

    /// Each tracked workload's last cpu % and memory working set (those sampled at least once).
    pub fn last_samples(&self) -> BTreeMap<WorkloadId, (Option<f64>, u64)> {
        self.tracked
            .iter()
            .filter_map(|(id, t)| Some((id.clone(), t.last?)))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// Samples every tracked workload once; a failing sample carries its error. The cgroup
    /// files are read one kind at a time over all workloads
    /// ([`WorkloadCgroup::sample_step`]), then each workload's sample is made.
    pub fn collect(&mut self) -> TelemetryBatch {
        let start = Instant::now();
        let gpu_processes = self
            .gpus
            .as_mut()
            .map(|g| g.processes())
            .unwrap_or_default();
        // memory.stat and the limit every FULL_EVERY ticks; the counters every tick.
        let full_tick = self.seq.is_multiple_of(FULL_EVERY);
        let now = self.epoch.elapsed().as_secs_f64();
        let mut reads = std::mem::take(&mut self.reads);
        reads.extend(self.tracked.values().map(|t| match &t.prev {
            Some((_, prev)) if !full_tick => Reading {
                full: false,
                sample: *prev,
                more: Ok(true),
            },
            _ => Reading {
                full: true,
                sample: CgroupSample::default(),
                more: Ok(true),
            },
        }));
        for step in 0.. {
            let mut more = false;
            for (t, r) in self.tracked.values().zip(reads.iter_mut()) {
                if matches!(r.more, Ok(true)) {
                    r.more = t
                        .cgroup
                        .sample_step(step, r.full, &mut r.sample, &mut self.buf);
                    more |= matches!(r.more, Ok(true));
                }
            }
            if !more {
                break;
            }
        }
        let mut samples = Vec::with_capacity(self.tracked.len());
        for ((id, t), read) in self.tracked.iter_mut().zip(reads.drain(..)) {
            let mut sample = WorkloadSample {
                workload_id: id.clone(),
                run_id: t.run_id.clone(),
                cpu_percent: None,
                cpu_usage_us: 0,
                memory_current: 0,
                memory_working_set: 0,
                memory_limit: None,
                pids: 0,
                io_read_bps: None,
                io_write_bps: None,
                uptime_s: t.started.elapsed().as_secs_f64(),
                oom_kills: 0,
                gpus: vec![],
                error: None,
            };
            match read.more.map(|_| read.sample) {
                Ok(raw) => {
                    let r = rates(t.prev.as_ref().map(|(t0, p)| (*t0, p)), (now, &raw));
                    sample.cpu_percent = r.cpu_percent;
                    sample.io_read_bps = r.io_read_bps;
                    sample.io_write_bps = r.io_write_bps;
                    sample.cpu_usage_us = raw.cpu_usage_us;
                    sample.memory_current = raw.memory_current;
                    sample.memory_working_set =
                        raw.memory_current.saturating_sub(raw.memory_inactive_file);
                    sample.memory_limit = raw.memory_limit;
                    sample.pids = raw.pids;
                    sample.oom_kills = raw.oom_kills;
                    if !gpu_processes.is_empty() {
                        sample.gpus =
                            crate::edges::gpu::for_workload(&t.cgroup.pids(), &gpu_processes);
                        self.gpu_use
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(id.clone())
                            .or_default()
                            .add(&sample.gpus);
                    }
                    t.prev = Some((now, raw));
                }
                Err(e) => sample.error = Some(e.to_string()),
            }
            t.last = Some((sample.cpu_percent, sample.memory_working_set));
            samples.push(sample);
        }
        self.reads = reads;
        self.seq += 1;
        let took = start.elapsed();
        crate::edges::metrics::metrics()
            .collection_seconds
            .observe(took.as_secs_f64());
        TelemetryBatch {
            node_id: self.node_id.clone(),
            seq: self.seq,
            ts_ms: now_ms(),
            collection_us: took.as_micros() as u64,
            samples,
        }
    }
}

pub struct ProcessMonitor {
    client: async_nats::Client,
    subjects: Subjects,
    interval: Duration,
    max_age: Duration,
    replicas: usize,
    collector: Collector,
}

impl ProcessMonitor {
    /// Where each workload's GPU use accumulates (for its resource summary).
    pub fn gpu_use(&self) -> GpuUseBoard {
        self.collector.gpu_use()
    }

    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        node_id: NodeId,
        interval: Duration,
        max_age: Duration,
        replicas: usize,
        gpus: crate::edges::gpu::Nvml,
    ) -> ProcessMonitor {
        ProcessMonitor {
            client,
            subjects,
            interval,
            max_age,
            replicas,
            collector: Collector::new(node_id).with_gpus(gpus),
        }
    }

    fn tick(&mut self) {
        if self.collector.is_empty() {
            return;
        }
        let batch = self.collector.collect();
        let subject = self.subjects.telemetry(&batch.node_id);
        crate::edges::nats::publish_msgpack(&self.client, subject, &batch, "telemetry");
    }
}

/// The `HERD_TELEMETRY` stream: every node's batches, kept for `max_age`.
pub fn telemetry_stream_config(
    subjects: &Subjects,
    max_age: Duration,
    replicas: usize,
) -> stream::Config {
    stream::Config {
        name: subjects.telemetry_stream(),
        subjects: vec![subjects.telemetry_all()],
        storage: stream::StorageType::File,
        max_age,
        num_replicas: replicas,
        ..Default::default()
    }
}

impl Actor for ProcessMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let js = jetstream::new(self.client.clone());
        let config = telemetry_stream_config(&self.subjects, self.max_age, self.replicas);
        actix::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
            loop {
                match herd_nats::ensure_stream(&js, config.clone()).await {
                    Ok(_) => return,
                    Err(e) => tracing::debug!(error = %e, "telemetry stream not ready; retrying"),
                }
                tokio::time::sleep(backoff.failed()).await;
            }
        });
        ctx.run_interval(self.interval, |act, _| act.tick());
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Track {
    pub workload_id: WorkloadId,
    pub run_id: Option<RunId>,
    pub cgroup: Arc<dyn WorkloadCgroup>,
}

impl Handler<Track> for ProcessMonitor {
    type Result = ();
    fn handle(&mut self, msg: Track, _: &mut Self::Context) {
        self.collector
            .track(msg.workload_id, msg.run_id, msg.cgroup);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Untrack(pub WorkloadId);

impl Handler<Untrack> for ProcessMonitor {
    type Result = ();
    fn handle(&mut self, msg: Untrack, _: &mut Self::Context) {
        self.collector.untrack(&msg.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edges::cgroup::{CgroupError, CgroupSample};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A stand-in cgroup whose CPU counter advances 0.5 s per reading, or that always fails.
    #[derive(Debug)]
    struct Fake {
        cpu_us: AtomicU64,
        broken: bool,
    }

    impl WorkloadCgroup for Fake {
        fn placement_files(&self) -> Vec<std::path::PathBuf> {
            vec![]
        }
        fn pids(&self) -> Vec<i32> {
            vec![]
        }
        fn sample(&self) -> Result<CgroupSample, CgroupError> {
            if self.broken {
                return Err(CgroupError::Limit("memory.stat: vanished".into()));
            }
            Ok(CgroupSample {
                cpu_usage_us: self.cpu_us.fetch_add(500_000, Ordering::Relaxed),
                memory_current: 10 << 20,
                memory_inactive_file: 2 << 20,
                ..Default::default()
            })
        }
        fn kill_all(&self) -> Result<(), CgroupError> {
            Ok(())
        }
        fn limit_files(&self) -> Vec<(std::path::PathBuf, String)> {
            vec![]
        }
        fn remove(&self) -> Result<(), CgroupError> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_sample_is_reported_and_the_batch_still_goes_out() {
        let mut c = Collector::new(NodeId::new("n").unwrap());
        let good = Arc::new(Fake {
            cpu_us: AtomicU64::new(0),
            broken: false,
        });
        c.track(WorkloadId::new("good").unwrap(), None, good);
        c.track(
            WorkloadId::new("gone").unwrap(),
            None,
            Arc::new(Fake {
                cpu_us: AtomicU64::new(0),
                broken: true,
            }),
        );
        let first = c.collect();
        assert_eq!(first.samples.len(), 2);
        let gone = first
            .samples
            .iter()
            .find(|s| s.workload_id.as_str() == "gone")
            .unwrap();
        assert!(gone.error.as_deref().unwrap().contains("vanished"));
        let good = first
            .samples
            .iter()
            .find(|s| s.workload_id.as_str() == "good")
            .unwrap();
        assert_eq!(good.cpu_percent, None, "no rate from one reading");
        assert_eq!(good.memory_working_set, 8 << 20);
        std::thread::sleep(Duration::from_millis(20));
        let second = c.collect();
        let good = second
            .samples
            .iter()
            .find(|s| s.workload_id.as_str() == "good")
            .unwrap();
        assert!(good.cpu_percent.unwrap() > 100.0, "0.5 s of CPU in ~20 ms");
        assert_eq!(second.seq, 2);
        c.untrack(&WorkloadId::new("gone").unwrap());
        assert_eq!(c.collect().samples.len(), 1);
    }
}

/// Each tracked workload's last cpu % and memory working set.
#[derive(Message)]
#[rtype(result = "BTreeMap<WorkloadId, (Option<f64>, u64)>")]
pub struct LastSamples;

impl Handler<LastSamples> for ProcessMonitor {
    type Result = MessageResult<LastSamples>;
    fn handle(&mut self, _: LastSamples, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.collector.last_samples())
    }
}
