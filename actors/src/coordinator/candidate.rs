//! The coordinator role's outer actor: a candidate for the lead. It runs the [`Election`]
//! against key `coordinator` of the `herd-leader` KV bucket (entries expire after the lease) and
//! starts a [`Coordinator`] while this process leads, stopping it the moment it does not. A
//! standby therefore answers no `cluster.*` request and acts on nothing; the leader's
//! coordinator restores the fleet and the runs from the buckets when it starts.

use crate::coordinator::actor::Coordinator;
use crate::coordinator::mandate::{Depose, LeaseGuard, Mandate, Superseded};
use crate::coordinator::standby::{Handover, WarmRegistry};
use crate::cores::election::{
    Election, ElectionConfig, ElectionEffect, Observed, StepDown, WriteRefused,
};
use crate::cores::registry::RegistryConfig;
use crate::edges::clock::now_ms;
use crate::edges::nats::kv_stream_config;
use actix::prelude::*;
use async_nats::jetstream;
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{Leadership, Subjects, LEADER_BUCKET, LEADER_KEY};
use herd_nats::ensure_stream;
use std::time::Duration;

/// Builds this process's coordinator for a leadership it just won.
pub type CoordinatorFactory = Box<dyn Fn(Mandate) -> Coordinator>;

/// What a candidate needs besides its connection.
pub struct CandidateConfig {
    /// This process's name in the key, unique per process (`<node id>:<pid>`).
    pub me: String,
    pub lease: Duration,
    /// Replicas of the leader bucket (and of the coordinator's buckets).
    pub replicas: usize,
    /// For the standby's warm registry.
    pub registry: RegistryConfig,
    pub limits: DecodeLimits,
    pub tick: Duration,
}

pub struct Candidate {
    client: async_nats::Client,
    subjects: Subjects,
    election: Election,
    replicas: usize,
    make: CoordinatorFactory,
    warm: (RegistryConfig, DecodeLimits, Duration),
    /// While standing by: the registry kept warm from heartbeats.
    standby: Option<Addr<WarmRegistry>>,
    /// The leader bucket, once open.
    key: Option<kv::Store>,
    opening: bool,
    open_failures: u32,
    /// While leading: the leadership, and its coordinator once started.
    leadership: Option<Leadership>,
    coordinator: Option<Addr<Coordinator>>,
    guard: LeaseGuard,
}

impl Candidate {
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        config: CandidateConfig,
        make: CoordinatorFactory,
    ) -> Candidate {
        let election = ElectionConfig {
            lease_ms: config.lease.as_millis().max(1) as u64,
        };
        Candidate {
            client,
            subjects,
            election: Election::new(config.me, election),
            replicas: config.replicas,
            make,
            warm: (config.registry, config.limits, config.tick),
            standby: None,
            key: None,
            opening: false,
            open_failures: 0,
            leadership: None,
            coordinator: None,
            guard: LeaseGuard::new(),
        }
    }

    /// Monotonic milliseconds for the election (the wall clock may jump).
    fn now(&self) -> u64 {
        self.guard.now_ms()
    }

    /// How long a request to the key may take before it counts as unanswered.
    fn request_timeout(&self) -> Duration {
        Duration::from_millis((self.election.config().lease_ms / 4).max(50))
    }

    fn perform(&mut self, effects: Vec<ElectionEffect>, ctx: &mut Context<Self>) {
        self.guard.set(self.election.acts_until());
        for effect in effects {
            match effect {
                ElectionEffect::Read => self.read(ctx),
                ElectionEffect::Create => self.create(ctx),
                ElectionEffect::Renew { term, revision } => self.renew(term, revision, ctx),
                ElectionEffect::Lead { term } => self.lead(term, ctx),
                ElectionEffect::StepDown { term, why } => self.step_down(term, why),
                ElectionEffect::Follow { holder, term } => {
                    tracing::info!(leader = %holder, term, "another coordinator leads; standing by")
                }
            }
        }
    }

    fn read(&mut self, ctx: &mut Context<Self>) {
        let Some(key) = self.key.clone() else {
            self.election.on_read_failed();
            return;
        };
        let timeout = self.request_timeout();
        let read = async move { tokio::time::timeout(timeout, key.entry(LEADER_KEY)).await };
        ctx.spawn(read.into_actor(self).map(|res, act, ctx| {
            let now = act.now();
            let fx = match res {
                Ok(Ok(Some(entry))) if entry.operation == kv::Operation::Put => {
                    match codec::decode::<Leadership>(
                        &entry.value,
                        Encoding::MsgPack,
                        &DecodeLimits::default(),
                    ) {
                        Ok(l) => act.election.on_read(
                            Some(Observed {
                                term: l.term_at(entry.revision),
                                holder: l.coordinator,
                                revision: entry.revision,
                            }),
                            now,
                        ),
                        Err(e) => {
                            // Not herd's: left to expire rather than overwritten.
                            tracing::warn!(error = %e, "the leader key holds something unreadable");
                            act.election.on_read_failed();
                            Vec::new()
                        }
                    }
                }
                // Expired, or deleted by a leader that left.
                Ok(Ok(_)) => act.election.on_read(None, now),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot read the leader key");
                    act.election.on_read_failed();
                    Vec::new()
                }
                Err(_) => {
                    act.election.on_read_failed();
                    Vec::new()
                }
            };
            act.perform(fx, ctx);
        }));
    }

    fn lease_value(&self, term: u64) -> bytes::Bytes {
        let value = Leadership {
            coordinator: self.election.me().to_string(),
            term,
            since_ms: self.leadership.as_ref().map_or_else(now_ms, |l| l.since_ms),
        };
        codec::encode(&value, Encoding::MsgPack)
            .expect("a Leadership encodes")
            .into()
    }

    fn create(&mut self, ctx: &mut Context<Self>) {
        let Some(key) = self.key.clone() else {
            let now = self.now();
            let fx = self
                .election
                .on_created(Err(WriteRefused::Unreachable), now, now);
            return self.perform(fx, ctx);
        };
        let (value, sent, timeout) = (self.lease_value(0), self.now(), self.request_timeout());
        let create =
            async move { tokio::time::timeout(timeout, key.create(LEADER_KEY, value)).await };
        ctx.spawn(create.into_actor(self).map(move |res, act, ctx| {
            let res = match res {
                Ok(Ok(revision)) => Ok(revision),
                Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => {
                    Err(WriteRefused::Conflict)
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot create the leader key");
                    Err(WriteRefused::Unreachable)
                }
                Err(_) => {
                    tracing::info!(
                        ?timeout,
                        "creating the leader key timed out; the next read tells if it was stored"
                    );
                    Err(WriteRefused::Unreachable)
                }
            };
            let fx = act.election.on_created(res, sent, act.now());
            act.perform(fx, ctx);
        }));
    }

    fn renew(&mut self, term: u64, revision: u64, ctx: &mut Context<Self>) {
        let Some(key) = self.key.clone() else {
            let now = self.now();
            let fx = self
                .election
                .on_renewed(Err(WriteRefused::Unreachable), now, now);
            return self.perform(fx, ctx);
        };
        if self.leadership.is_none() {
            tracing::info!(
                term,
                revision,
                "the leader key holds this coordinator's own entry (a write answered too late); claiming it back"
            );
        }
        let (value, sent, timeout) = (self.lease_value(term), self.now(), self.request_timeout());
        let update = async move {
            tokio::time::timeout(timeout, key.update(LEADER_KEY, value, revision)).await
        };
        ctx.spawn(update.into_actor(self).map(move |res, act, ctx| {
            let res = match res {
                Ok(Ok(revision)) => Ok(revision),
                Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    Err(WriteRefused::Conflict)
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot renew the lead");
                    Err(WriteRefused::Unreachable)
                }
                Err(_) => {
                    tracing::warn!(?timeout, "renewing the lead timed out");
                    Err(WriteRefused::Unreachable)
                }
            };
            let fx = act.election.on_renewed(res, sent, act.now());
            act.perform(fx, ctx);
        }));
    }

    fn lead(&mut self, term: u64, ctx: &mut Context<Self>) {
        let leadership = Leadership {
            coordinator: self.election.me().to_string(),
            term,
            since_ms: now_ms(),
        };
        tracing::info!(term, "this coordinator leads");
        self.leadership = Some(leadership.clone());
        // The standby's warm registry goes to the coordinator.
        let handover = self.standby.take().map(|s| s.send(Handover));
        let warm = async move {
            match handover {
                Some(h) => h.await.ok().flatten(),
                None => None,
            }
        };
        ctx.spawn(warm.into_actor(self).map(move |warm, act, ctx| {
            if act.leadership.as_ref().map(|l| l.term) != Some(term) {
                return; // stepped down meanwhile
            }
            let known = warm.as_ref().map_or(0, |r| r.records().count());
            tracing::info!(
                term,
                nodes = known,
                "coordinator starting with the standby's registry"
            );
            let mandate = Mandate {
                leadership,
                superseded: ctx.address().recipient(),
                guard: act.guard.clone(),
                replicas: act.replicas,
                warm,
            };
            act.coordinator = Some((act.make)(mandate).start());
        }));
    }

    fn step_down(&mut self, term: u64, why: StepDown) {
        tracing::warn!(term, %why, "this coordinator no longer leads; standing by");
        self.leadership = None;
        // The deposed coordinator keeps a guard that holds no more, whatever comes next: it
        // cannot act while its Depose waits in its mailbox, even if this process leads again
        // (in this term, when it claims its own entry back).
        self.guard.set(None);
        self.guard = self.guard.fresh();
        if let Some(coordinator) = self.coordinator.take() {
            coordinator.do_send(Depose);
        }
        if why != StepDown::Leaving {
            self.stand_by();
        }
    }

    /// Keeps a registry warm from heartbeats while another coordinator leads.
    fn stand_by(&mut self) {
        if self.standby.is_none() {
            let (config, limits, tick) = self.warm;
            self.standby = Some(
                WarmRegistry::new(
                    self.client.clone(),
                    self.subjects.clone(),
                    config,
                    limits,
                    tick,
                )
                .start(),
            );
        }
    }
}

impl Actor for Candidate {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.stand_by();
        self.open(ctx);
        let every = Duration::from_millis((self.election.config().lease_ms / 10).max(10));
        ctx.run_interval(every, |act, ctx| {
            if act.key.is_none() {
                // No election until the bucket is open: a standby that cannot read the key
                // cannot know that it is free.
                return act.open(ctx);
            }
            let fx = act.election.tick(act.now());
            act.perform(fx, ctx);
        });
    }
}

impl Candidate {
    /// Opens (or creates) the leader bucket with this lease; tried again on each tick until it
    /// succeeds.
    fn open(&mut self, ctx: &mut Context<Self>) {
        if self.opening {
            return;
        }
        self.opening = true;
        let js = jetstream::new(self.client.clone());
        let mut config = kv_stream_config(
            LEADER_BUCKET,
            "herd coordinators: which one leads (the entry expires after the lease)",
            self.replicas,
        );
        config.max_age = Duration::from_millis(self.election.config().lease_ms);
        let within = self.open_timeout();
        let open = async move {
            let stream = ensure_stream(&js, config.clone()).await?;
            let found = stream.cached_info().config.max_age;
            if found != config.max_age {
                // Another lease was configured before: this one holds from now on.
                tracing::warn!(?found, wanted = ?config.max_age, "changing the leader bucket's lease");
                js.update_stream(config)
                    .await
                    .map_err(|e| format!("cannot change the {LEADER_BUCKET} bucket: {e}"))?;
            }
            js.get_key_value(LEADER_BUCKET)
                .await
                .map_err(|e| format!("cannot open the {LEADER_BUCKET} bucket: {e}"))
        };
        let open = async move {
            tokio::time::timeout(within, open)
                .await
                .unwrap_or_else(|_| Err(format!("no answer from JetStream within {within:?}")))
        };
        ctx.spawn(open.into_actor(self).map(|res, act, _| {
            act.opening = false;
            match res {
                Ok(key) => act.key = Some(key),
                Err(e) => {
                    act.open_failures += 1;
                    // The first failure and then every power of two: it is retried each tick.
                    if act.open_failures.is_power_of_two() {
                        tracing::warn!(error = %e, tries = act.open_failures, "leader bucket not ready; retrying");
                    }
                }
            }
        }));
    }
}

impl Candidate {
    /// How long one try to open the leader bucket may take: a lease (at least a second) at
    /// first, a lease more after each failure, at most 10 s. A request JetStream never answers
    /// (it was still electing its leaders when a cluster started under load) otherwise held
    /// the standby unable to read the key for 10 s, its client's timeouts.
    fn open_timeout(&self) -> Duration {
        let lease =
            Duration::from_millis(self.election.config().lease_ms).max(Duration::from_secs(1));
        (lease * (self.open_failures + 1)).min(Duration::from_secs(10))
    }
}

impl Handler<Superseded> for Candidate {
    type Result = ();
    fn handle(&mut self, Superseded(why): Superseded, ctx: &mut Self::Context) {
        tracing::warn!(%why, "a write was refused");
        let fx = self.election.superseded();
        self.perform(fx, ctx);
    }
}

/// This herdd is shutting down: a leader steps down and deletes its key, so that a standby
/// takes over without waiting for the lease to expire.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

impl Handler<Leave> for Candidate {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Leave, ctx: &mut Self::Context) -> Self::Result {
        let revision = self.election.revision();
        let fx = self.election.leave();
        self.perform(fx, ctx);
        let (key, timeout) = (self.key.clone(), self.request_timeout());
        Box::pin(async move {
            if let (Some(key), Some(revision)) = (key, revision) {
                let delete = key.delete_expect_revision(LEADER_KEY, Some(revision));
                match tokio::time::timeout(timeout, delete).await {
                    Ok(Ok(())) => tracing::info!("handed the lead over"),
                    _ => tracing::warn!(
                        "could not delete the leader key; a standby takes over once it expires"
                    ),
                }
            }
        })
    }
}
