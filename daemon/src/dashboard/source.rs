//! Where the dashboard's pages get their data: the coordinator's answers (`herd.v1.cluster.*`),
//! the nodes' own (`workload.list`, `workload.get`), and the JetStream streams for history
//! (log chunks, telemetry batches, node events). It asks what herdctl asks, the same way.

use anyhow::Context;
use async_nats::jetstream::{self, consumer, object_store};
use futures::StreamExt;
use herd_actors::edges::clock::now_ms;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{
    Ack, ClusterVerb, LameduckRequest, LogStream, NodeEvent, NodeId, NodeList, NodeRecord,
    NodeVerb, NodesQuery, RunCompare, RunComparison, RunId, RunList, RunListQuery, RunRecord,
    RunRef, RunStats, StopRequest, TelemetryBatch, WorkloadFilter, WorkloadGet, WorkloadId,
    WorkloadList, WorkloadStatus, RESULTS_BUCKET,
};
use herdctl::{Ctl, LogQuery};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Lines of a workload's output a page shows at most (the newest).
pub const LOG_LINES: usize = 2000;
/// How far back charts start.
pub const CHART_SPAN: Duration = Duration::from_secs(5 * 60);
/// Messages read from a stream for one page at most.
const HISTORY_CAP: usize = 1000;

pub struct Source {
    pub ctl: Ctl,
}

impl Source {
    pub fn new(client: async_nats::Client, subjects: herd_bus::Subjects) -> Source {
        Source {
            ctl: Ctl {
                client,
                subjects,
                timeout: Duration::from_secs(3),
                json: false,
                // The dashboard creates no bucket.
                replicas: 1,
            },
        }
    }

    pub async fn nodes(&self) -> anyhow::Result<NodeList> {
        self.ctl
            .cluster(ClusterVerb::Nodes, &NodesQuery::default())
            .await
    }

    pub async fn node(&self, node: &NodeId) -> anyhow::Result<NodeRecord> {
        let q = herd_bus::NodeGet {
            node_id: node.clone(),
        };
        self.ctl.cluster(ClusterVerb::NodeGet, &q).await
    }

    /// What the node itself knows of its workloads, settled ones it keeps included.
    pub async fn workloads(&self, node: &NodeId) -> anyhow::Result<Vec<WorkloadStatus>> {
        let list: WorkloadList = self
            .ctl
            .call(node, NodeVerb::WorkloadList, &WorkloadFilter::default())
            .await?;
        Ok(list.workloads)
    }

    pub async fn workload(
        &self,
        node: &NodeId,
        workload: &WorkloadId,
    ) -> anyhow::Result<WorkloadStatus> {
        let q = WorkloadGet {
            workload_id: workload.clone(),
        };
        self.ctl.call(node, NodeVerb::WorkloadGet, &q).await
    }

    pub async fn runs(&self) -> anyhow::Result<RunList> {
        self.ctl
            .cluster(ClusterVerb::RunList, &RunListQuery::default())
            .await
    }

    pub async fn run(&self, run: &RunId) -> anyhow::Result<RunRecord> {
        let r = RunRef {
            run_id: run.clone(),
        };
        self.ctl.cluster(ClusterVerb::RunGet, &r).await
    }

    pub async fn run_summary(&self, run: &RunId) -> anyhow::Result<RunStats> {
        let r = RunRef {
            run_id: run.clone(),
        };
        self.ctl.cluster(ClusterVerb::RunSummary, &r).await
    }

    /// The workload's kept output, as `herdctl logs --no-follow` prints it (newest lines).
    pub async fn logs(
        &self,
        node: &NodeId,
        workload: &WorkloadId,
    ) -> anyhow::Result<Vec<(LogStream, String)>> {
        let q = LogQuery::all(node.clone(), workload.clone());
        herdctl::log_history(&self.ctl, &q, LOG_LINES).await
    }

    /// The node's telemetry batches of the last [`CHART_SPAN`], oldest first.
    pub async fn telemetry(&self, node: &NodeId) -> anyhow::Result<Vec<TelemetryBatch>> {
        let subjects = &self.ctl.subjects;
        self.recent(
            &subjects.telemetry_stream(),
            subjects.telemetry(node),
            CHART_SPAN,
        )
        .await
    }

    /// Node events (started, lameduck, stopping, …) of every node in the last hour.
    pub async fn node_events(&self) -> anyhow::Result<Vec<NodeEvent>> {
        let subjects = &self.ctl.subjects;
        self.recent(
            &subjects.events_stream(),
            subjects.node_events_all(),
            Duration::from_secs(3600),
        )
        .await
    }

    /// `cluster.run.compare`: run B against run A.
    pub async fn compare(&self, a: &RunId, b: &RunId) -> anyhow::Result<RunComparison> {
        let q = RunCompare {
            run_a: a.clone(),
            run_b: b.clone(),
            alpha: None,
        };
        self.ctl.cluster(ClusterVerb::RunCompare, &q).await
    }

    /// One object of the `herd-results` bucket (`RUN/NODE/TASK/PATH`), to read.
    pub async fn result(&self, name: &str) -> anyhow::Result<object_store::Object> {
        let js = jetstream::new(self.ctl.client.clone());
        let store = js
            .get_object_store(RESULTS_BUCKET)
            .await
            .with_context(|| format!("no {RESULTS_BUCKET} bucket"))?;
        store.get(name).await.map_err(|e| match e.kind() {
            object_store::GetErrorKind::NotFound => anyhow::Error::new(
                herd_bus::ErrorBody::not_found(format!("no result {name} in {RESULTS_BUCKET}")),
            ),
            _ => anyhow::anyhow!("cannot read {name} from {RESULTS_BUCKET}: {e}"),
        })
    }

    /// Asks `node` to stop `workload` (its kill signal, then SIGKILL after its grace).
    pub async fn stop_workload(&self, node: &NodeId, workload: &WorkloadId) -> anyhow::Result<Ack> {
        let req = StopRequest {
            workload_id: Some(workload.clone()),
            ..Default::default()
        };
        self.ctl.call(node, NodeVerb::WorkloadStop, &req).await
    }

    pub async fn stop_run(&self, run: &RunId) -> anyhow::Result<RunRecord> {
        let r = RunRef {
            run_id: run.clone(),
        };
        self.ctl.cluster(ClusterVerb::RunStop, &r).await
    }

    /// `herdctl drain NODE` (or `--undo`): lameduck on or off; workloads keep running.
    pub async fn drain(&self, node: &NodeId, enabled: bool) -> anyhow::Result<Ack> {
        let req = LameduckRequest {
            enabled,
            delay_s: None,
            stop_workloads: false,
        };
        self.ctl.call(node, NodeVerb::Lameduck, &req).await
    }

    /// Messages of `stream` on `filter` stored in the last `span`, oldest first, at most
    /// [`HISTORY_CAP`] (the newest are dropped past it: a page asks again for what is new).
    async fn recent<T: DeserializeOwned>(
        &self,
        stream: &str,
        filter: String,
        span: Duration,
    ) -> anyhow::Result<Vec<T>> {
        let js = jetstream::new(self.ctl.client.clone());
        let stream = js
            .get_stream(stream)
            .await
            .with_context(|| format!("no stream {stream}"))?;
        let start = now_ms().saturating_sub(span.as_millis() as u64);
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter,
                deliver_policy: consumer::DeliverPolicy::ByStartTime {
                    start_time: async_nats::datetime::from_nanos(start as i128 * 1_000_000)
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                },
                ..Default::default()
            })
            .await?;
        let mut pending = consumer.cached_info().num_pending;
        let mut out = Vec::new();
        if pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await?;
        let limits = DecodeLimits::default();
        while pending > 0 && out.len() < HISTORY_CAP {
            let next = tokio::time::timeout(self.ctl.timeout, messages.next()).await;
            let Ok(Some(Ok(msg))) = next else { break };
            pending = msg.info().map(|i| i.pending).unwrap_or(0);
            if let Ok(v) = codec::decode::<T>(&msg.message.payload, Encoding::MsgPack, &limits) {
                out.push(v);
            }
        }
        Ok(out)
    }
}
