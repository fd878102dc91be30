//! The requests the coordinator makes to nodes (`herd.v1.node.<node>.*`), in MessagePack; an
//! error reply, or none in time, is its text.

use crate::edges::nats::{request_msgpack, try_request_msgpack, RequestError};
use herd_bus::{
    Accepted, Ack, NodeId, NodeVerb, RunId, StopRequest, Subjects, WorkloadFilter, WorkloadGet,
    WorkloadId, WorkloadList, WorkloadSpec, WorkloadStatus,
};

#[derive(Clone)]
pub struct NodeClient {
    client: async_nats::Client,
    subjects: Subjects,
}

impl NodeClient {
    pub fn new(client: async_nats::Client, subjects: Subjects) -> NodeClient {
        NodeClient { client, subjects }
    }

    /// `workload.start`: idempotent for the same workload id and spec, so one that got no
    /// answer can be sent again.
    pub async fn start(
        &self,
        node: &NodeId,
        spec: &WorkloadSpec,
    ) -> Result<Accepted, RequestError> {
        let subject = self.subjects.node_command(node, NodeVerb::WorkloadStart);
        try_request_msgpack(&self.client, subject, spec).await
    }

    /// `workload.get`.
    pub async fn get(
        &self,
        node: &NodeId,
        workload: &WorkloadId,
    ) -> Result<WorkloadStatus, String> {
        let subject = self.subjects.node_command(node, NodeVerb::WorkloadGet);
        let req = WorkloadGet {
            workload_id: workload.clone(),
        };
        request_msgpack(&self.client, subject, &req).await
    }

    /// `workload.stop {run_id}`: every workload of the run on that node, each with its own
    /// kill signal and grace.
    pub async fn stop_run(&self, node: &NodeId, run: &RunId) -> Result<Ack, String> {
        let subject = self.subjects.node_command(node, NodeVerb::WorkloadStop);
        let req = StopRequest {
            run_id: Some(run.clone()),
            ..Default::default()
        };
        request_msgpack(&self.client, subject, &req).await
    }

    /// `workload.list {run_id}`: the node's workloads of the run, settled ones included.
    pub async fn list_run(&self, node: &NodeId, run: &RunId) -> Result<WorkloadList, String> {
        let subject = self.subjects.node_command(node, NodeVerb::WorkloadList);
        let req = WorkloadFilter {
            run_id: Some(run.clone()),
            ..Default::default()
        };
        request_msgpack(&self.client, subject, &req).await
    }
}
