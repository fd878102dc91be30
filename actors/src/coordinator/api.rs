//! The cluster API (`herd.v1.cluster.<verb>`): one method per verb, from a decoded request to a
//! typed answer, and the one dispatch from a verb's bytes to its method through
//! [`service::serve`] (decoding under limits, encoding in the request's encoding).

use crate::edges::service::{self, Answer, Routed};
use herd_bus::codec::{DecodeLimits, Encoding};
use herd_bus::{
    ClusterVerb, ClusterWorkloadList, ErrorBody, FitQuery, FitResult, NodeGet, NodeList,
    NodeRecord, NodesQuery, RunCompare, RunComparison, RunList, RunListQuery, RunRecord, RunRef,
    RunRetried, RunRetry, RunSpec, RunStats, RunSubmitted, SubjectError, WorkloadsQuery,
};

/// What the coordinator answers.
pub trait ClusterApi {
    /// `cluster.nodes`: the fleet, optionally one liveness only.
    fn nodes(&mut self, q: NodesQuery) -> Answer<NodeList>;
    /// `cluster.node.get`: one node with its last heartbeat.
    fn node_get(&mut self, q: NodeGet) -> Answer<NodeRecord>;
    /// `cluster.workloads`: workloads from the last heartbeat of each node.
    fn workloads(&mut self, q: WorkloadsQuery) -> Answer<ClusterWorkloadList>;
    /// `cluster.query`: the nodes that fit, ranked.
    fn query(&mut self, q: FitQuery) -> Answer<FitResult>;
    /// `cluster.run.submit`: checks, places and starts a run.
    fn run_submit(&mut self, spec: RunSpec) -> Answer<RunSubmitted>;
    /// `cluster.run.stop`: the run as it starts stopping.
    fn run_stop(&mut self, r: RunRef) -> Answer<RunRecord>;
    /// `cluster.run.get`: a run's journal.
    fn run_get(&mut self, r: RunRef) -> Answer<RunRecord>;
    /// `cluster.run.list`: the run catalog, newest first.
    fn run_list(&mut self, q: RunListQuery) -> Answer<RunList>;
    /// `cluster.run.summary`: a run's statistics per workload, across nodes and per node.
    fn run_summary(&mut self, r: RunRef) -> Answer<RunStats>;
    /// `cluster.run.compare`: two runs' figures side by side, with a test of each difference.
    fn run_compare(&mut self, q: RunCompare) -> Answer<RunComparison>;
    /// `cluster.run.retry`: runs again, in the same run, the tasks that did not complete.
    fn run_retry(&mut self, q: RunRetry) -> Answer<RunRetried>;
}

/// Decodes a verb's request, hands it to `api`, encodes the answer.
pub fn dispatch(
    api: &mut impl ClusterApi,
    verb: ClusterVerb,
    payload: &[u8],
    enc: Encoding,
    limits: &DecodeLimits,
) -> Routed {
    use service::serve;
    match verb {
        ClusterVerb::Nodes => serve(payload, enc, limits, |q| api.nodes(q)),
        ClusterVerb::NodeGet => serve(payload, enc, limits, |q| api.node_get(q)),
        ClusterVerb::Workloads => serve(payload, enc, limits, |q| api.workloads(q)),
        ClusterVerb::Query => serve(payload, enc, limits, |q| api.query(q)),
        ClusterVerb::RunSubmit => serve(payload, enc, limits, |q| api.run_submit(q)),
        ClusterVerb::RunStop => serve(payload, enc, limits, |q| api.run_stop(q)),
        ClusterVerb::RunGet => serve(payload, enc, limits, |q| api.run_get(q)),
        ClusterVerb::RunList => serve(payload, enc, limits, |q| api.run_list(q)),
        ClusterVerb::RunSummary => serve(payload, enc, limits, |q| api.run_summary(q)),
        ClusterVerb::RunCompare => serve(payload, enc, limits, |q| api.run_compare(q)),
        ClusterVerb::RunRetry => serve(payload, enc, limits, |q| api.run_retry(q)),
    }
}

/// The answer to a request on a subject that is no cluster verb.
pub fn not_a_verb(subject: Result<herd_bus::Subject, SubjectError>) -> Routed {
    let message = match subject {
        Ok(other) => format!("{other:?} is not a cluster request"),
        Err(e) => format!(
            "{e}; the coordinator answers: {}",
            ClusterVerb::ALL.map(ClusterVerb::as_str).join(", ")
        ),
    };
    Routed::Now(Err(ErrorBody::bad_request(message)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::ErrorCode;

    /// Answers every verb with a conflict naming the verb, and counts the calls.
    #[derive(Default)]
    struct Named(usize);

    impl Named {
        fn answer<T>(&mut self, verb: ClusterVerb) -> Answer<T> {
            self.0 += 1;
            Err(ErrorBody::conflict(verb.as_str())).into()
        }
    }

    impl ClusterApi for Named {
        fn nodes(&mut self, _: NodesQuery) -> Answer<NodeList> {
            self.answer(ClusterVerb::Nodes)
        }
        fn node_get(&mut self, _: NodeGet) -> Answer<NodeRecord> {
            self.answer(ClusterVerb::NodeGet)
        }
        fn workloads(&mut self, _: WorkloadsQuery) -> Answer<ClusterWorkloadList> {
            self.answer(ClusterVerb::Workloads)
        }
        fn query(&mut self, _: FitQuery) -> Answer<FitResult> {
            self.answer(ClusterVerb::Query)
        }
        fn run_submit(&mut self, _: RunSpec) -> Answer<RunSubmitted> {
            self.answer(ClusterVerb::RunSubmit)
        }
        fn run_stop(&mut self, _: RunRef) -> Answer<RunRecord> {
            self.answer(ClusterVerb::RunStop)
        }
        fn run_get(&mut self, _: RunRef) -> Answer<RunRecord> {
            self.answer(ClusterVerb::RunGet)
        }
        fn run_list(&mut self, _: RunListQuery) -> Answer<RunList> {
            self.answer(ClusterVerb::RunList)
        }
        fn run_summary(&mut self, _: RunRef) -> Answer<RunStats> {
            self.answer(ClusterVerb::RunSummary)
        }
        fn run_compare(&mut self, _: RunCompare) -> Answer<RunComparison> {
            self.answer(ClusterVerb::RunCompare)
        }
        fn run_retry(&mut self, _: RunRetry) -> Answer<RunRetried> {
            self.answer(ClusterVerb::RunRetry)
        }
    }

    fn error(api: &mut Named, verb: ClusterVerb, body: &str) -> ErrorBody {
        let routed = dispatch(
            api,
            verb,
            body.as_bytes(),
            Encoding::Json,
            &DecodeLimits::default(),
        );
        match routed {
            Routed::Now(Err(e)) => e,
            _ => panic!("{verb:?}: an error now"),
        }
    }

    #[test]
    fn each_verb_reaches_its_own_method_and_bad_requests_none() {
        let mut api = Named::default();
        let spec =
            r#"{"workload": {"command": ["true"]}, "targets": {"nodes": ["a"]}, "repetitions": 1}"#;
        for (verb, body) in [
            (ClusterVerb::Nodes, ""),
            (ClusterVerb::NodeGet, r#"{"node_id": "a"}"#),
            (ClusterVerb::Workloads, "{}"),
            (ClusterVerb::Query, r#"{"cpu": 1}"#),
            (ClusterVerb::RunSubmit, spec),
            (ClusterVerb::RunStop, r#"{"run_id": "r"}"#),
            (ClusterVerb::RunGet, r#"{"run_id": "r"}"#),
            (ClusterVerb::RunList, ""),
            (ClusterVerb::RunSummary, r#"{"run_id": "r"}"#),
            (ClusterVerb::RunCompare, r#"{"run_a": "r", "run_b": "s"}"#),
            (ClusterVerb::RunRetry, r#"{"run_id": "r"}"#),
        ] {
            let e = error(&mut api, verb, body);
            assert_eq!(
                (e.code, e.message.as_str()),
                (ErrorCode::Conflict, verb.as_str())
            );
        }
        assert_eq!(api.0, ClusterVerb::ALL.len());
        // A reference without its id, or a field of the wrong type, never reaches the API.
        for (verb, body) in [
            (ClusterVerb::NodeGet, ""),
            (ClusterVerb::RunGet, "{}"),
            (ClusterVerb::RunSubmit, "{}"),
            (ClusterVerb::Nodes, r#"{"state": 7}"#),
            (ClusterVerb::RunSummary, ""),
            (ClusterVerb::RunCompare, r#"{"run_a": "r"}"#),
            (
                ClusterVerb::RunCompare,
                r#"{"run_a": "r", "run_b": "s", "alpha": "x"}"#,
            ),
        ] {
            assert_eq!(
                error(&mut api, verb, body).code,
                ErrorCode::BadRequest,
                "{verb:?}"
            );
        }
        assert_eq!(api.0, ClusterVerb::ALL.len());
        let Routed::Now(Err(e)) =
            not_a_verb(Err(SubjectError::Unknown("herd.v1.cluster.x".into())))
        else {
            panic!()
        };
        assert!(e.message.contains("run.submit"), "{}", e.message);
    }
}
