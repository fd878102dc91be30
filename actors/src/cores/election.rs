//! Leader election among coordinators through one key of a JetStream KV bucket whose entries
//! expire after the lease (`max_age`). NATS does the consensus; this core only decides what to
//! ask of the key and what an answer means.
//!
//! - A candidate that finds the key empty creates it (a create fails when the key exists, so
//!   of two racing candidates one wins). The create's revision is the new leadership's term:
//!   revisions only grow, so a later leadership always has a higher term.
//! - The leader renews the key every third of a lease by updating it at the revision it last
//!   wrote (compare-and-set). A renew refused because the key moved on means someone else
//!   leads: it steps down at once.
//! - The leader stops acting on its own when its last confirmed renew is older than
//!   [`ElectionConfig::act_for_ms`], which is shorter than the lease: the server counts the
//!   entry's age from when it stored the renew, which is after this coordinator sent it, so a
//!   leader cut off from NATS has stopped acting before any standby can take the key.
//! - A standby reads the key every quarter of a lease; once the entry has expired it creates
//!   it. A standby therefore leads within a lease and a quarter of the leader's last renew.
//! - A write whose answer did not come in time may still have been stored. A standby that reads
//!   its own entry (its create, or a renew, stored after all) claims it back with a renew at the
//!   revision it read: a compare-and-set, so it succeeds only if no one else took the key
//!   meanwhile, and it leads from that renew's send time as after any renew. Without this a
//!   slow answer cost the fleet a whole lease with no leader. Only an entry of a term whose
//!   coordinator found its own journal writes refused ([`Election::superseded`]) is left to
//!   expire: someone else acted in that term.
//!
//! Time is `now_ms` from a monotonic clock, passed in: tests drive it by hand. Every request
//! asked for is answered, a timeout answering as [`WriteRefused::Unreachable`] (or
//! [`Election::on_read_failed`]): one request is in flight at a time.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionConfig {
    /// The key's time to live: the bucket's `max_age`.
    pub lease_ms: u64,
}

impl ElectionConfig {
    pub fn renew_every_ms(&self) -> u64 {
        (self.lease_ms / 3).max(1)
    }

    pub fn read_every_ms(&self) -> u64 {
        (self.lease_ms / 4).max(1)
    }

    /// How long after sending its last confirmed renew a leader still acts.
    pub fn act_for_ms(&self) -> u64 {
        self.lease_ms * 5 / 6
    }
}

/// What the key holds, as a reader sees it: who leads, since which revision (the term), and
/// the entry's current revision (what a renew must name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub holder: String,
    pub term: u64,
    pub revision: u64,
}

/// What the election asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionEffect {
    /// Read the key, then call [`Election::on_read`].
    Read,
    /// Create the key (failing if it exists) naming this coordinator, then call
    /// [`Election::on_created`] with the send time.
    Create,
    /// Update the key at `revision` naming this coordinator in `term`, then call
    /// [`Election::on_renewed`] with the send time.
    Renew { term: u64, revision: u64 },
    /// This coordinator leads from now on: serve `cluster.*`, act, announce it.
    Lead { term: u64 },
    /// This coordinator no longer leads: stop serving and acting at once.
    StepDown { term: u64, why: StepDown },
    /// Another coordinator leads (a change from what this one last saw).
    Follow { holder: String, term: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDown {
    /// The key moved on: another coordinator took it.
    Superseded,
    /// No renew was confirmed in time (NATS unreachable or too slow).
    LeaseRunningOut,
    /// This coordinator is shutting down.
    Leaving,
}

impl fmt::Display for StepDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StepDown::Superseded => "another coordinator holds the lease",
            StepDown::LeaseRunningOut => "no renew of the lease was confirmed in time",
            StepDown::Leaving => "shutting down",
        })
    }
}

/// Why a create or a renew did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRefused {
    /// The key was not where the write expected it (it exists, or moved on).
    Conflict,
    /// No answer from NATS, or an error other than a conflict.
    Unreachable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Standby,
    Leader {
        term: u64,
        revision: u64,
        /// When the last confirmed renew (or the create) was sent.
        confirmed_sent_ms: u64,
        last_renew_sent_ms: u64,
    },
}

/// One coordinator's view of the election.
#[derive(Debug)]
pub struct Election {
    /// This coordinator's name in the key (unique per process).
    me: String,
    config: ElectionConfig,
    role: Role,
    /// The highest term this coordinator has seen: anything older is history.
    highest_term: u64,
    /// Who leads, as last announced by [`ElectionEffect::Follow`] or `Lead`.
    leader: Option<(String, u64)>,
    in_flight: bool,
    last_read_ms: Option<u64>,
    left: bool,
    /// While standing by: the term of its own entry this coordinator is renewing to claim back.
    claiming: Option<u64>,
    /// A term in which another coordinator acted too: its entry is not claimed back.
    gave_up: Option<u64>,
}

impl Election {
    pub fn new(me: impl Into<String>, config: ElectionConfig) -> Election {
        Election {
            me: me.into(),
            config,
            role: Role::Standby,
            highest_term: 0,
            leader: None,
            in_flight: false,
            last_read_ms: None,
            left: false,
            claiming: None,
            gave_up: None,
        }
    }

    pub fn config(&self) -> ElectionConfig {
        self.config
    }

    /// The term this coordinator leads in, if it may act at `now_ms`.
    pub fn leading(&self, now_ms: u64) -> Option<u64> {
        match self.role {
            Role::Leader { term, .. } if self.acts_until().is_some_and(|t| now_ms < t) => {
                Some(term)
            }
            _ => None,
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Until when (`now_ms`) this coordinator may act, if it leads: its last confirmed renew's
    /// send time plus [`ElectionConfig::act_for_ms`].
    pub fn acts_until(&self) -> Option<u64> {
        match self.role {
            Role::Leader {
                confirmed_sent_ms, ..
            } => Some(confirmed_sent_ms + self.config.act_for_ms()),
            Role::Standby => None,
        }
    }

    /// Who leads as far as this coordinator knows: (holder, term); [`Election::me`] when it
    /// leads.
    pub fn leader(&self) -> Option<(&str, u64)> {
        self.leader.as_ref().map(|(h, t)| (h.as_str(), *t))
    }

    /// Whether a write stamped with `term` may still be made: only the highest term seen.
    pub fn admits(&self, term: u64) -> bool {
        term >= self.highest_term && term > 0
    }

    /// Called often (a tenth of a lease is plenty): renews, reads, or steps down on time.
    pub fn tick(&mut self, now_ms: u64) -> Vec<ElectionEffect> {
        if self.left || self.in_flight {
            return self.step_down_if_expired(now_ms);
        }
        match self.role {
            Role::Leader {
                term,
                revision,
                last_renew_sent_ms,
                ..
            } => {
                let mut fx = self.step_down_if_expired(now_ms);
                if fx.is_empty() && now_ms >= last_renew_sent_ms + self.config.renew_every_ms() {
                    self.in_flight = true;
                    if let Role::Leader {
                        last_renew_sent_ms, ..
                    } = &mut self.role
                    {
                        *last_renew_sent_ms = now_ms;
                    }
                    fx.push(ElectionEffect::Renew { term, revision });
                }
                fx
            }
            Role::Standby => {
                let due = self
                    .last_read_ms
                    .is_none_or(|t| now_ms >= t + self.config.read_every_ms());
                if due {
                    self.in_flight = true;
                    self.last_read_ms = Some(now_ms);
                    vec![ElectionEffect::Read]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// What a read found (`None`: no entry, the last lease expired).
    pub fn on_read(&mut self, found: Option<Observed>, _now_ms: u64) -> Vec<ElectionEffect> {
        self.in_flight = false;
        if self.left || matches!(self.role, Role::Leader { .. }) {
            // A leader learns it lost the key from its renew; a read it did not ask for is
            // not news.
            return Vec::new();
        }
        match found {
            None => {
                self.in_flight = true;
                vec![ElectionEffect::Create]
            }
            Some(seen) if seen.term < self.highest_term => Vec::new(),
            // Its own entry, from a write whose answer came too late or never: claimed back
            // with a compare-and-set at the revision read.
            Some(seen) if seen.holder == self.me && self.gave_up != Some(seen.term) => {
                self.highest_term = seen.term;
                self.leader = None;
                self.in_flight = true;
                self.claiming = Some(seen.term);
                vec![ElectionEffect::Renew {
                    term: seen.term,
                    revision: seen.revision,
                }]
            }
            // Its own entry in a term in which someone else acted too: it expires.
            Some(seen) if seen.holder == self.me => {
                self.highest_term = seen.term;
                self.leader = None;
                Vec::new()
            }
            Some(seen) => {
                self.highest_term = seen.term;
                self.follow(seen.holder, seen.term)
            }
        }
    }

    /// A read that failed or timed out: the next tick reads again.
    pub fn on_read_failed(&mut self) {
        self.in_flight = false;
    }

    /// The create's answer: its revision (the term) or why it was refused.
    pub fn on_created(
        &mut self,
        result: Result<u64, WriteRefused>,
        sent_ms: u64,
        now_ms: u64,
    ) -> Vec<ElectionEffect> {
        self.in_flight = false;
        match result {
            Ok(revision) if !self.left && now_ms < sent_ms + self.config.act_for_ms() => {
                self.highest_term = self.highest_term.max(revision);
                self.role = Role::Leader {
                    term: revision,
                    revision,
                    confirmed_sent_ms: sent_ms,
                    last_renew_sent_ms: sent_ms,
                };
                self.leader = Some((self.me.clone(), revision));
                vec![ElectionEffect::Lead { term: revision }]
            }
            // Won too late to act safely (or while leaving): let the entry expire.
            Ok(revision) => {
                self.highest_term = self.highest_term.max(revision);
                Vec::new()
            }
            // Someone else was quicker; the next read says who.
            Err(_) => {
                self.last_read_ms = None;
                Vec::new()
            }
        }
    }

    /// A renew's answer: the entry's new revision, or why it was refused.
    pub fn on_renewed(
        &mut self,
        result: Result<u64, WriteRefused>,
        sent_ms: u64,
        now_ms: u64,
    ) -> Vec<ElectionEffect> {
        self.in_flight = false;
        let Role::Leader { term, .. } = self.role else {
            return self.on_claimed(result, sent_ms, now_ms);
        };
        match result {
            Ok(revision) => {
                if let Role::Leader {
                    revision: r,
                    confirmed_sent_ms,
                    ..
                } = &mut self.role
                {
                    *r = revision;
                    *confirmed_sent_ms = sent_ms.max(*confirmed_sent_ms);
                }
                self.step_down_if_expired(now_ms)
            }
            Err(WriteRefused::Conflict) => self.step_down(term, StepDown::Superseded),
            // Tried again on the next tick, until the lease runs out.
            Err(WriteRefused::Unreachable) => {
                if let Role::Leader {
                    last_renew_sent_ms, ..
                } = &mut self.role
                {
                    *last_renew_sent_ms = 0;
                }
                self.step_down_if_expired(now_ms)
            }
        }
    }

    /// A write of this coordinator's was refused because another one wrote since: whatever
    /// the key says, another coordinator acts, so this one stops, and does not claim this
    /// term's entry back.
    pub fn superseded(&mut self) -> Vec<ElectionEffect> {
        match self.role {
            Role::Leader { term, .. } => {
                self.gave_up = Some(term);
                self.step_down(term, StepDown::Superseded)
            }
            Role::Standby => Vec::new(),
        }
    }

    /// This coordinator is shutting down: a leader steps down (the caller then deletes the key
    /// at the leader's revision so that a standby need not wait for it to expire).
    pub fn leave(&mut self) -> Vec<ElectionEffect> {
        self.left = true;
        match self.role {
            Role::Leader { term, .. } => self.step_down(term, StepDown::Leaving),
            Role::Standby => Vec::new(),
        }
    }

    /// The revision a leader last wrote (what a delete on leaving must name).
    pub fn revision(&self) -> Option<u64> {
        match self.role {
            Role::Leader { revision, .. } => Some(revision),
            Role::Standby => None,
        }
    }

    /// A standby's renew of its own entry: it leads again in that term if the renew was
    /// stored in time to act on it.
    fn on_claimed(
        &mut self,
        result: Result<u64, WriteRefused>,
        sent_ms: u64,
        now_ms: u64,
    ) -> Vec<ElectionEffect> {
        let Some(term) = self.claiming.take() else {
            return Vec::new(); // an answer to a renew sent while it led
        };
        match result {
            Ok(revision) if !self.left && now_ms < sent_ms + self.config.act_for_ms() => {
                self.role = Role::Leader {
                    term,
                    revision,
                    confirmed_sent_ms: sent_ms,
                    last_renew_sent_ms: sent_ms,
                };
                self.leader = Some((self.me.clone(), term));
                vec![ElectionEffect::Lead { term }]
            }
            // Stored too late to act on, or refused: the next read says what the key holds.
            Ok(_) | Err(WriteRefused::Unreachable) => Vec::new(),
            Err(WriteRefused::Conflict) => {
                self.last_read_ms = None;
                Vec::new()
            }
        }
    }

    fn step_down_if_expired(&mut self, now_ms: u64) -> Vec<ElectionEffect> {
        match self.role {
            Role::Leader { term, .. } if self.leading(now_ms).is_none() => {
                self.step_down(term, StepDown::LeaseRunningOut)
            }
            _ => Vec::new(),
        }
    }

    fn step_down(&mut self, term: u64, why: StepDown) -> Vec<ElectionEffect> {
        self.role = Role::Standby;
        self.leader = None;
        self.last_read_ms = None;
        vec![ElectionEffect::StepDown { term, why }]
    }

    fn follow(&mut self, holder: String, term: u64) -> Vec<ElectionEffect> {
        if self.leader.as_ref() == Some(&(holder.clone(), term)) {
            return Vec::new();
        }
        self.leader = Some((holder.clone(), term));
        vec![ElectionEffect::Follow { holder, term }]
    }
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
