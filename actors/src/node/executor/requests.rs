//! What the rest of herdd asks of the executor: the node verbs (start, stop, list, get) and
//! the shutdown's requests. Each handler is a few lines around the [`WorkloadTable`].
//!
//! [`WorkloadTable`]: crate::cores::workload::table::WorkloadTable

use super::WorkloadExecutor;
use crate::cores::workload::table::Admitted;
use crate::cores::workload::validate::{validate_any, Resolved};
use crate::edges::clock::now_ms;
use actix::prelude::*;
use herd_bus::{
    Accepted, Ack, ErrorBody, StopRequest, WorkloadFilter, WorkloadId, WorkloadList, WorkloadSpec,
    WorkloadState, WorkloadStatus,
};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Message)]
#[rtype(result = "Result<Accepted, ErrorBody>")]
pub struct Start(pub WorkloadSpec);

impl Handler<Start> for WorkloadExecutor {
    type Result = ResponseActFuture<Self, Result<Accepted, ErrorBody>>;
    fn handle(&mut self, msg: Start, ctx: &mut Self::Context) -> Self::Result {
        let spec = msg.0;
        let resolved = match validate_any(&spec, &self.cfg.policy, self.cfg.host_cpus) {
            Ok(r) => r,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        if spec.driver != herd_bus::Driver::Docker || !self.accepting {
            return Box::pin(fut::ready(self.accept(spec, resolved, ctx)));
        }
        // A container needs a reachable engine and, with pull_policy never, its image on the
        // node: both are answered now rather than as a failed workload later.
        let preflight = self.docker.preflight(&spec);
        Box::pin(preflight.into_actor(self).map(move |checked, act, ctx| {
            checked?;
            act.accept(spec, resolved, ctx)
        }))
    }
}

impl WorkloadExecutor {
    /// Takes a validated spec on (or recognises a retry of one already taken).
    pub(super) fn accept(
        &mut self,
        mut spec: WorkloadSpec,
        resolved: Resolved,
        ctx: &mut Context<Self>,
    ) -> Result<Accepted, ErrorBody> {
        if !self.accepting {
            return Err(ErrorBody::unavailable("the node is shutting down"));
        }
        let id = spec.workload_id.clone().unwrap_or_else(WorkloadId::random);
        spec.workload_id = Some(id.clone());
        // A retry of a workload already taken is answered as such, whatever is free now.
        let assigned = match self.table.get(&id) {
            Some(_) => Default::default(),
            None => self.admit(&spec.limits)?,
        };
        let existing = match self.table.admit(id.clone(), spec, resolved, now_ms())? {
            Admitted::New(fx) => {
                if let Some(e) = self.table.get_mut(&id) {
                    e.lc.status.assigned = assigned;
                }
                self.apply(&id, fx, ctx);
                false
            }
            Admitted::Existing => true,
        };
        Ok(Accepted {
            workload_id: id,
            existing,
        })
    }

    /// Whether `limits` fit beside the live workloads, by allocation: the cores and GPUs to
    /// hand out, or `unavailable` naming the resource, the ask and what is left.
    fn admit(&self, limits: &herd_bus::Limits) -> Result<herd_bus::Assigned, ErrorBody> {
        let statuses = self.table.statuses();
        let live = crate::cores::allocation::live(statuses);
        self.cfg
            .allocation
            .admit(limits, &live)
            .map_err(|why| ErrorBody::unavailable(format!("does not fit on this node: {why}")))
    }
}

#[derive(Message)]
#[rtype(result = "Result<Ack, ErrorBody>")]
pub struct Stop(pub StopRequest);

impl Handler<Stop> for WorkloadExecutor {
    type Result = Result<Ack, ErrorBody>;
    fn handle(&mut self, msg: Stop, ctx: &mut Self::Context) -> Self::Result {
        let (effects, message) = self.table.stop(&msg.0, now_ms())?;
        self.apply_all(effects, ctx);
        Ok(Ack {
            message: Some(message),
        })
    }
}

/// Answers like every request to the executor (a Result), though listing cannot fail.
#[derive(Message)]
#[rtype(result = "Result<WorkloadList, ErrorBody>")]
pub struct List(pub WorkloadFilter);

impl Handler<List> for WorkloadExecutor {
    type Result = Result<WorkloadList, ErrorBody>;
    fn handle(&mut self, msg: List, _: &mut Self::Context) -> Self::Result {
        Ok(self.table.list(&msg.0))
    }
}

#[derive(Message)]
#[rtype(result = "Result<WorkloadStatus, ErrorBody>")]
pub struct Get(pub WorkloadId);

impl Handler<Get> for WorkloadExecutor {
    type Result = Result<WorkloadStatus, ErrorBody>;
    fn handle(&mut self, msg: Get, _: &mut Self::Context) -> Self::Result {
        self.table.status(&msg.0)
    }
}

/// Stop every running workload, each with its grace capped at `grace_cap`; at shutdown also
/// refuse new ones (`refuse_new`), poll [`LiveCount`], then send [`KillRemaining`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll {
    pub grace_cap: Duration,
    pub refuse_new: bool,
}

impl Handler<StopAll> for WorkloadExecutor {
    type Result = ();
    fn handle(&mut self, msg: StopAll, ctx: &mut Self::Context) {
        self.accepting &= !msg.refuse_new;
        let effects = self.table.stop_all(msg.grace_cap, now_ms());
        self.apply_all(effects, ctx);
    }
}

/// Refuses new workloads from now on (herdd is stopping and leaves the running ones be).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

impl Handler<StopAccepting> for WorkloadExecutor {
    type Result = ();
    fn handle(&mut self, _: StopAccepting, _: &mut Self::Context) {
        self.accepting = false;
    }
}

/// Kills and removes whatever still has processes; answers how many workloads that was.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct KillRemaining;

impl Handler<KillRemaining> for WorkloadExecutor {
    type Result = ResponseFuture<usize>;
    fn handle(&mut self, _: KillRemaining, _: &mut Self::Context) -> Self::Result {
        let mut releases = vec![];
        for e in self.table.entries_mut() {
            if let Some(r) = e.running.take() {
                r.kill();
                releases.push(r.release());
            }
        }
        let killed = releases.len();
        Box::pin(async move {
            futures::future::join_all(releases).await;
            killed
        })
    }
}

/// How many workloads this executor knows in each state (for the metrics endpoint).
#[derive(Message)]
#[rtype(result = "HashMap<WorkloadState, usize>")]
pub struct StateCounts;

impl Handler<StateCounts> for WorkloadExecutor {
    type Result = MessageResult<StateCounts>;
    fn handle(&mut self, _: StateCounts, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.table.state_counts())
    }
}

/// How many workloads still have processes or a cgroup.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct LiveCount;

impl Handler<LiveCount> for WorkloadExecutor {
    type Result = usize;
    fn handle(&mut self, _: LiveCount, _: &mut Self::Context) -> usize {
        self.table.live_count()
    }
}
