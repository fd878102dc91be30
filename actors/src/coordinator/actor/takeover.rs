//! A coordinator taking over: what the buckets held becomes its registry and its run journals,
//! what its standby registry learnt meanwhile is announced, and lifecycle events follow.

use super::*;

impl Coordinator {
    /// Takes what the buckets held, resumes the runs, and follows lifecycle events.
    pub(super) fn restored(&mut self, restored: Restored, ctx: &mut Context<Self>) {
        let Restored { store, nodes, runs } = restored;
        tracing::info!(
            nodes = nodes.len(),
            runs = runs.len(),
            "coordinator restored its records"
        );
        for r in &nodes {
            self.pending.unheard(&r.node_id);
        }
        // Each record written once at the revision read, so that a deposed leader's write at
        // a revision it read before cannot land any more.
        for r in &nodes {
            self.save_node(&store, r);
        }
        let learnt = self.registry.differences(&nodes);
        let now = now_ms();
        self.registry.restore(nodes, now);
        // Opening the buckets can take long after a NATS server died; the nodes were not
        // silent for that, this coordinator was deaf.
        let deaf_ms = now.saturating_sub(self.deaf_since_ms);
        if deaf_ms >= 5000 {
            tracing::info!(
                deaf_ms,
                "the buckets took long to open; the nodes' silence is counted from now"
            );
        }
        self.registry.unheard(self.deaf_since_ms, now);
        self.store = Some(store);
        for record in runs {
            let id = record.run_id.clone();
            let (journal, fx) = RunJournal::resume(record, now_ms());
            if matches!(journal.state(), RunState::Running | RunState::Stopping) {
                tracing::info!(run = %id, "resuming run");
            }
            self.runs.insert(id.clone(), journal);
            self.apply_run(&id, fx, ctx);
            let _ = self.save_run(&id, ctx);
        }
        // What the registry learnt while standing by is announced and saved now, the runs in
        // place: a node lost meanwhile loses its tasks.
        self.apply(learnt, ctx);
        // So does a node a former leader announced lost without its journals' writes landing.
        let lost: Vec<NodeId> = self
            .registry
            .records()
            .filter(|r| r.liveness == NodeLiveness::Lost)
            .map(|r| r.node_id.clone())
            .collect();
        for node in lost {
            self.each_run(ctx, |j| j.on_node_lost(&node, now_ms()));
        }
        self.queue.restore(self.runs.values().map(|j| &j.record));
        if !self.queue.is_empty() {
            tracing::info!(queued = self.queue.len(), "runs still queued");
        }
        let addr = ctx.address();
        let (guard, stopped) = tokio::sync::oneshot::channel();
        self._events = Some(guard);
        actix::spawn(store::follow_events(
            self.client.clone(),
            self.subjects.clone(),
            stopped,
            move |m| {
                addr.do_send(LifecycleEvent(m));
                addr.connected()
            },
        ));
    }
}
