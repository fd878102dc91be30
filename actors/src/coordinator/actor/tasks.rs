//! Starting a run's tasks on their nodes. A start refused fails its task; what to do about one
//! that got no answer, the journal decides ([`UnansweredStart`]).

use super::*;
use crate::cores::run::UnansweredStart;
use crate::edges::nats::RequestError;
use herd_bus::WorkloadId;

const START_AGAIN_AFTER: Duration = Duration::from_secs(1);

impl Coordinator {
    pub(super) fn start_task(
        &mut self,
        run_id: &RunId,
        node: NodeId,
        spec: WorkloadSpec,
        ctx: &mut Context<Self>,
    ) {
        self.send_start(run_id.clone(), node, spec, 0, ctx);
    }

    /// Sends the start; `unanswered`: how many before it an up node left unanswered.
    fn send_start(
        &mut self,
        run: RunId,
        node: NodeId,
        spec: WorkloadSpec,
        unanswered: u32,
        ctx: &mut Context<Self>,
    ) {
        let Some(workload) = spec.workload_id.clone() else {
            return;
        };
        let nodes = self.nodes.clone();
        let start = async move { (nodes.start(&node, &spec).await, node, spec) };
        ctx.spawn(
            start
                .into_actor(self)
                .map(move |(res, node, spec), act, ctx| match res {
                    Ok(_) => {}
                    Err(RequestError::Refused(error)) => {
                        act.start_failed(&run, &node, &workload, error, ctx)
                    }
                    Err(RequestError::NoAnswer(error)) => {
                        let up = act
                            .registry
                            .get(&node)
                            .is_some_and(|r| r.liveness == NodeLiveness::Up);
                        let next = act.runs.get(&run).map_or(UnansweredStart::Leave, |j| {
                            j.on_start_unanswered(&node, &workload, up, unanswered)
                        });
                        match next {
                            UnansweredStart::Leave => {
                                tracing::info!(%run, %node, %error, "a start got no answer; its task is left to the node's events and liveness");
                            }
                            UnansweredStart::Fail { unanswered } => {
                                let error = format!("{error} ({unanswered} times, the node up)");
                                act.start_failed(&run, &node, &workload, error, ctx);
                            }
                            UnansweredStart::Again { unanswered } => {
                                tracing::warn!(%run, %node, %error, "a start got no answer; sending it again");
                                ctx.run_later(START_AGAIN_AFTER, move |act, ctx| {
                                    if act.wants_start(&run, &node, &workload) {
                                        act.send_start(run, node, spec, unanswered, ctx);
                                    }
                                });
                            }
                        }
                    }
                }),
        );
    }

    fn wants_start(&self, run: &RunId, node: &NodeId, workload: &WorkloadId) -> bool {
        self.runs
            .get(run)
            .is_some_and(|j| j.wants_start(node, workload))
    }

    fn start_failed(
        &mut self,
        run: &RunId,
        node: &NodeId,
        workload: &WorkloadId,
        error: String,
        ctx: &mut Context<Self>,
    ) {
        tracing::warn!(%run, %node, %error, "a task did not start");
        self.pending.forget(node, workload);
        self.on_run(run, ctx, |j| {
            j.on_start_failed(node, workload, error, now_ms())
        });
    }

    /// After a restart: a task settled meanwhile is recorded, one still running will send
    /// its events, one its node never got is started (idempotently).
    pub(super) fn reconcile_task(
        &mut self,
        run_id: &RunId,
        node: NodeId,
        spec: WorkloadSpec,
        ctx: &mut Context<Self>,
    ) {
        let Some(workload) = spec.workload_id.clone() else {
            return;
        };
        let nodes = self.nodes.clone();
        let get = async move { (nodes.get(&node, &workload).await, node) };
        let run = run_id.clone();
        ctx.spawn(
            get.into_actor(self)
                .map(move |(res, node), act, ctx| match res {
                    Ok(status) if status.state.is_terminal() => {
                        act.on_run(&run, ctx, |j| j.on_task_status(&node, &status, now_ms()));
                    }
                    Ok(_) => {}
                    Err(_) => act.start_task(&run, node, spec, ctx),
                }),
        );
    }
}
