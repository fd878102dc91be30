//! ProcessMonitor: every telemetry interval, samples every tracked workload's cgroup and
//! publishes one TelemetryBatch. One failing sample is reported in its place; the batch still
//! goes out.

use crate::cgroup::{CgroupSample, WorkloadCgroup};
use crate::clock::now_ms;
use crate::workload::rates::rates;
use actix::prelude::*;
use async_nats::jetstream::{self, stream};
use herd_bus::codec::{self, Encoding};
use herd_bus::{NodeId, RunId, Subjects, TelemetryBatch, WorkloadId, WorkloadSample};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Tracked {
    cgroup: Arc<dyn WorkloadCgroup>,
    run_id: Option<RunId>,
    started: Instant,
    prev: Option<(f64, CgroupSample)>,
}

pub struct ProcessMonitor {
    client: async_nats::Client,
    subjects: Subjects,
    node_id: NodeId,
    interval: Duration,
    max_age: Duration,
    tracked: BTreeMap<WorkloadId, Tracked>,
    seq: u64,
    epoch: Instant,
}

impl ProcessMonitor {
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        node_id: NodeId,
        interval: Duration,
        max_age: Duration,
    ) -> ProcessMonitor {
        ProcessMonitor {
            client,
            subjects,
            node_id,
            interval,
            max_age,
            tracked: BTreeMap::new(),
            seq: 0,
            epoch: Instant::now(),
        }
    }

    /// Samples every tracked workload once.
    pub fn collect(&mut self) -> TelemetryBatch {
        let start = Instant::now();
        let mut samples = Vec::with_capacity(self.tracked.len());
        for (id, t) in self.tracked.iter_mut() {
            let now = self.epoch.elapsed().as_secs_f64();
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
            match t.cgroup.sample() {
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
                    t.prev = Some((now, raw));
                }
                Err(e) => sample.error = Some(e.to_string()),
            }
            samples.push(sample);
        }
        self.seq += 1;
        TelemetryBatch {
            node_id: self.node_id.clone(),
            seq: self.seq,
            ts_ms: now_ms(),
            collection_us: start.elapsed().as_micros() as u64,
            samples,
        }
    }

    fn tick(&mut self) {
        if self.tracked.is_empty() {
            return;
        }
        let batch = self.collect();
        match codec::encode(&batch, Encoding::MsgPack) {
            Ok(bytes) => {
                let client = self.client.clone();
                let subject = self.subjects.telemetry(&self.node_id);
                actix::spawn(async move {
                    if let Err(e) = client.publish(subject, bytes.into()).await {
                        tracing::debug!(error = %e, "cannot publish telemetry");
                    }
                });
            }
            Err(e) => tracing::error!(error = %e, "cannot encode telemetry"),
        }
    }
}

/// The `HERD_TELEMETRY` stream: every node's batches, kept for `max_age`.
pub fn telemetry_stream_config(subjects: &Subjects, max_age: Duration) -> stream::Config {
    stream::Config {
        name: subjects.telemetry_stream(),
        subjects: vec![subjects.telemetry_all()],
        storage: stream::StorageType::File,
        max_age,
        ..Default::default()
    }
}

impl Actor for ProcessMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let js = jetstream::new(self.client.clone());
        let config = telemetry_stream_config(&self.subjects, self.max_age);
        actix::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                match js.get_or_create_stream(config.clone()).await {
                    Ok(_) => return,
                    Err(e) => tracing::debug!(error = %e, "telemetry stream not ready; retrying"),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
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
        self.tracked.insert(
            msg.workload_id,
            Tracked {
                cgroup: msg.cgroup,
                run_id: msg.run_id,
                started: Instant::now(),
                prev: None,
            },
        );
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Untrack(pub WorkloadId);

impl Handler<Untrack> for ProcessMonitor {
    type Result = ();
    fn handle(&mut self, msg: Untrack, _: &mut Self::Context) {
        self.tracked.remove(&msg.0);
    }
}
