//! The verbs a node answers, one typed method each, and the one path from a request's bytes
//! to its handler ([`dispatch`]). A reader finds each verb's handler by its name.

use crate::edges::service::{serve, Answer, Routed};
use herd_bus::codec::{DecodeLimits, Encoding};
use herd_bus::{
    Accepted, Ack, Empty, LameduckRequest, NodeInfo, NodeVerb, StopRequest, WorkloadFilter,
    WorkloadGet, WorkloadList, WorkloadSpec, WorkloadStatus,
};

/// `<prefix>.v1.node.<node>.<verb>` (and `nodes.ping`).
pub trait NodeApi {
    fn ping(&mut self, req: Empty) -> Answer<NodeInfo>;
    fn lameduck(&mut self, req: LameduckRequest) -> Answer<Ack>;
    fn workload_start(&mut self, spec: WorkloadSpec) -> Answer<Accepted>;
    fn workload_stop(&mut self, req: StopRequest) -> Answer<Ack>;
    fn workload_list(&mut self, filter: WorkloadFilter) -> Answer<WorkloadList>;
    fn workload_get(&mut self, req: WorkloadGet) -> Answer<WorkloadStatus>;
}

/// Decodes the request of `verb`, hands it to its method, and encodes the answer.
pub fn dispatch(
    api: &mut impl NodeApi,
    verb: NodeVerb,
    payload: &[u8],
    enc: Encoding,
    limits: &DecodeLimits,
) -> Routed {
    match verb {
        NodeVerb::Ping => serve(payload, enc, limits, |q| api.ping(q)),
        NodeVerb::Lameduck => serve(payload, enc, limits, |q| api.lameduck(q)),
        NodeVerb::WorkloadStart => serve(payload, enc, limits, |q| api.workload_start(q)),
        NodeVerb::WorkloadStop => serve(payload, enc, limits, |q| api.workload_stop(q)),
        NodeVerb::WorkloadList => serve(payload, enc, limits, |q| api.workload_list(q)),
        NodeVerb::WorkloadGet => serve(payload, enc, limits, |q| api.workload_get(q)),
    }
}
