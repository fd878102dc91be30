//! The coordinator admitting runs: a submission starts, waits queued or is refused, and the
//! queued runs start when their nodes have room ([`RunQueue`]).

use super::*;
use crate::cores::run::Admission;

impl Coordinator {
    /// Checks a RunSpec, places it, and starts its journal — or queues it when its nodes have
    /// no room now. Nothing starts on a bad spec.
    pub(super) fn submit(
        &mut self,
        mut spec: RunSpec,
        ctx: &mut Context<Self>,
    ) -> Result<RunSubmitted, ErrorBody> {
        if let Some(id) = &spec.run_id {
            if let Some(j) = self.runs.get(id) {
                return if j.record.spec == spec {
                    Ok(RunSubmitted {
                        run_id: id.clone(),
                        existing: true,
                    })
                } else {
                    Err(ErrorBody::conflict(format!(
                        "run {id} exists with a different spec: {} differ",
                        herd_bus::campaign::differences(&j.record.spec, &spec).join(", ")
                    )))
                };
            }
        }
        self.round_robin = self.round_robin.wrapping_add(1);
        let admission =
            self.queue
                .admission(&spec, &self.registry, &self.pending, self.round_robin);
        let run_id = spec.run_id.clone().unwrap_or_else(RunId::random);
        spec.run_id = Some(run_id.clone());
        let priority = spec.priority.unwrap_or(0);
        let (journal, fx) = match admission {
            Admission::Refuse(e) => return Err(e),
            Admission::Start(nodes) => {
                let (journal, fx) = RunJournal::new(run_id.clone(), spec, &nodes, now_ms());
                tracing::info!(run = %run_id, nodes = nodes.len(), tasks = journal.record.tasks.len(), "run submitted");
                (journal, fx)
            }
            Admission::Queue(reason) => {
                tracing::info!(run = %run_id, %reason, "run queued");
                self.queue.push(run_id.clone(), priority);
                RunJournal::queued(run_id.clone(), spec, reason, now_ms())
            }
        };
        self.runs.insert(run_id.clone(), journal);
        self.apply_run(&run_id, fx, ctx);
        Ok(RunSubmitted {
            run_id,
            existing: false,
        })
    }

    /// `cluster.run.retry`: the run's tasks that did not complete run again, on nodes that are
    /// up; the run goes back to `running`.
    pub(super) fn retry(
        &mut self,
        q: RunRetry,
        ctx: &mut Context<Self>,
    ) -> Result<RunRetried, ErrorBody> {
        let registry = &self.registry;
        let up = |n: &NodeId| {
            registry
                .get(n)
                .is_some_and(|r| r.liveness == NodeLiveness::Up)
        };
        let j = self
            .runs
            .get_mut(&q.run_id)
            .ok_or_else(|| ErrorBody::not_found(format!("run {} is not known", q.run_id)))?;
        let (tasks, fx) = j.retry(&q, up, now_ms()).map_err(ErrorBody::conflict)?;
        tracing::info!(run = %q.run_id, tasks = tasks.len(), "run retried");
        self.apply_run(&q.run_id, fx, ctx);
        Ok(RunRetried {
            run_id: q.run_id,
            tasks,
        })
    }

    /// Starts the queued runs that fit now, in order (on each tick).
    pub(super) fn admit_queued(&mut self, ctx: &mut Context<Self>) {
        if self.queue.is_empty() {
            return;
        }
        self.round_robin = self.round_robin.wrapping_add(1);
        let admitted = self.queue.admit(
            &mut self.runs,
            &self.registry,
            &mut self.pending,
            self.round_robin,
            now_ms(),
        );
        for (run_id, fx) in admitted {
            if let Some(j) = self
                .runs
                .get(&run_id)
                .filter(|j| j.state() != RunState::Queued)
            {
                tracing::info!(run = %run_id, tasks = j.record.tasks.len(), "queued run starts");
            }
            self.apply_run(&run_id, fx, ctx);
        }
    }
}
