//! The coordinator answering one cluster request: each verb of [`ClusterApi`] a few lines
//! around the registry, placement and the run cores.

use super::*;

/// The coordinator serving one request.
pub(super) struct Serving<'a> {
    pub(super) act: &'a mut Coordinator,
    pub(super) ctx: &'a mut Context<Coordinator>,
}

impl ClusterApi for Serving<'_> {
    fn nodes(&mut self, q: NodesQuery) -> Answer<NodeList> {
        Ok(NodeList {
            nodes: self.act.registry.nodes(&q),
            leader: Some(self.act.leadership.clone()),
        })
        .into()
    }

    fn node_get(&mut self, q: NodeGet) -> Answer<NodeRecord> {
        let node = &q.node_id;
        self.act
            .registry
            .get(node)
            .cloned()
            .ok_or_else(|| {
                ErrorBody::not_found(format!("node {node} is not known to the coordinator"))
            })
            .into()
    }

    fn workloads(&mut self, q: WorkloadsQuery) -> Answer<ClusterWorkloadList> {
        Ok(ClusterWorkloadList {
            workloads: self.act.registry.workloads(&q),
        })
        .into()
    }

    fn query(&mut self, q: FitQuery) -> Answer<FitResult> {
        if q.cpu.is_some_and(|c| !c.is_finite() || c <= 0.0) {
            return Err(ErrorBody::bad_request("cpu: must be > 0")).into();
        }
        let act = &mut *self.act;
        act.round_robin = act.round_robin.wrapping_add(1);
        Ok(placement::place_with(
            act.registry.records(),
            &act.pending,
            &q,
            act.round_robin,
        ))
        .into()
    }

    fn run_submit(&mut self, spec: RunSpec) -> Answer<RunSubmitted> {
        self.act.submit(spec, self.ctx).into()
    }

    fn run_stop(&mut self, r: RunRef) -> Answer<RunRecord> {
        if let Err(e) = self.act.run(&r.run_id) {
            return Err(e).into();
        }
        // A queued run is stopped at once: it leaves the queue.
        self.act.queue.remove(&r.run_id);
        self.act
            .on_run(&r.run_id, self.ctx, |j| j.on_stop(now_ms()));
        self.act.run(&r.run_id).map(|j| j.record.clone()).into()
    }

    fn run_get(&mut self, r: RunRef) -> Answer<RunRecord> {
        self.act.run(&r.run_id).map(|j| j.record.clone()).into()
    }

    fn run_list(&mut self, q: RunListQuery) -> Answer<RunList> {
        Ok(run::catalog(self.act.runs.values(), &q)).into()
    }

    fn run_summary(&mut self, r: RunRef) -> Answer<RunStats> {
        self.act
            .run(&r.run_id)
            .map(|j| run::run_stats(&j.record))
            .into()
    }

    fn run_compare(&mut self, q: RunCompare) -> Answer<RunComparison> {
        let compared = || {
            let alpha = run::significance_level(q.alpha).map_err(ErrorBody::bad_request)?;
            let a = run::run_stats(&self.act.run(&q.run_a)?.record);
            let b = run::run_stats(&self.act.run(&q.run_b)?.record);
            Ok(run::compare(&a, &b, alpha))
        };
        compared().into()
    }

    fn run_retry(&mut self, q: RunRetry) -> Answer<RunRetried> {
        self.act.retry(q, self.ctx).into()
    }
}
