//! The election against a key that behaves as a JetStream KV key with `max_age` does: revisions
//! grow across expiry, a create fails on an existing entry, an update fails at a stale revision.

use super::*;

const LEASE: u64 = 3000;

fn config() -> ElectionConfig {
    ElectionConfig { lease_ms: LEASE }
}

/// One key of a bucket with `max_age = LEASE`.
#[derive(Default)]
struct Key {
    /// (holder, term, revision, stored at)
    entry: Option<(String, u64, u64, u64)>,
    last_revision: u64,
}

impl Key {
    fn live(&mut self, now: u64) -> Option<&(String, u64, u64, u64)> {
        if self.entry.as_ref().is_some_and(|e| now >= e.3 + LEASE) {
            self.entry = None;
        }
        self.entry.as_ref()
    }

    fn read(&mut self, now: u64) -> Option<Observed> {
        self.live(now).map(|(holder, term, revision, _)| Observed {
            holder: holder.clone(),
            term: *term,
            revision: *revision,
        })
    }

    fn create(&mut self, holder: &str, now: u64) -> Result<u64, WriteRefused> {
        if self.live(now).is_some() {
            return Err(WriteRefused::Conflict);
        }
        self.last_revision += 1;
        let r = self.last_revision;
        self.entry = Some((holder.into(), r, r, now));
        Ok(r)
    }

    fn update(&mut self, holder: &str, term: u64, at: u64, now: u64) -> Result<u64, WriteRefused> {
        match self.live(now) {
            Some(e) if e.2 == at => {
                self.last_revision += 1;
                let r = self.last_revision;
                self.entry = Some((holder.into(), term, r, now));
                Ok(r)
            }
            _ => Err(WriteRefused::Conflict),
        }
    }
}

/// Ticks `e` at `now` and performs its key operations at once; returns what it announced.
fn step(e: &mut Election, key: &mut Key, now: u64) -> Vec<ElectionEffect> {
    let mut announced = Vec::new();
    let mut todo = e.tick(now);
    while let Some(fx) = todo.pop() {
        let more = match fx {
            ElectionEffect::Read => e.on_read(key.read(now), now),
            ElectionEffect::Create => e.on_created(key.create(e.me(), now), now, now),
            ElectionEffect::Renew { term, revision } => {
                let me = e.me().to_string();
                e.on_renewed(key.update(&me, term, revision, now), now, now)
            }
            other => {
                announced.push(other);
                Vec::new()
            }
        };
        todo.extend(more);
    }
    announced
}

#[test]
fn a_lone_candidate_reads_creates_and_leads_in_the_create_s_revision() {
    let mut e = Election::new("a", config());
    assert_eq!(e.tick(0), vec![ElectionEffect::Read]);
    assert_eq!(e.tick(1), vec![], "one request at a time");
    assert_eq!(e.on_read(None, 2), vec![ElectionEffect::Create]);
    assert_eq!(e.leading(2), None, "not before the create is confirmed");
    assert_eq!(
        e.on_created(Ok(7), 2, 5),
        vec![ElectionEffect::Lead { term: 7 }]
    );
    assert_eq!(e.leading(5), Some(7));
    assert_eq!(e.leader(), Some(("a", 7)));
    assert!(e.admits(7));
}

#[test]
fn a_leader_renews_at_the_revision_it_wrote_and_keeps_leading() {
    let mut key = Key::default();
    let mut e = Election::new("a", config());
    assert_eq!(
        step(&mut e, &mut key, 0),
        vec![ElectionEffect::Lead { term: 1 }]
    );
    assert_eq!(e.tick(LEASE / 3 - 1), vec![]);
    assert_eq!(
        e.tick(LEASE / 3),
        vec![ElectionEffect::Renew {
            term: 1,
            revision: 1
        }]
    );
    assert_eq!(e.on_renewed(Ok(2), LEASE / 3, LEASE / 3), vec![]);
    key.update("a", 1, 1, LEASE / 3).unwrap();
    // Renewed every third of a lease, it leads long past its first lease.
    for now in (LEASE / 3 + 1..10 * LEASE).step_by(100) {
        assert_eq!(step(&mut e, &mut key, now), vec![], "at {now}");
        assert_eq!(e.leading(now), Some(1), "at {now}");
    }
    assert_eq!(key.read(10 * LEASE).unwrap().term, 1, "the term stays");
}

#[test]
fn a_leader_without_confirmed_renews_stops_acting_before_its_entry_can_expire() {
    let mut key = Key::default();
    let mut e = Election::new("a", config());
    step(&mut e, &mut key, 0);
    let mut stepped_down = None;
    for now in (1..LEASE).step_by(10) {
        for fx in e.tick(now) {
            match fx {
                ElectionEffect::Renew { .. } => {
                    assert_eq!(
                        e.on_renewed(Err(WriteRefused::Unreachable), now, now + 5),
                        vec![]
                    )
                }
                ElectionEffect::StepDown { term, why } => {
                    assert_eq!((term, why), (1, StepDown::LeaseRunningOut));
                    stepped_down.get_or_insert(now);
                }
                // A standby again, it tries to read; NATS still does not answer.
                ElectionEffect::Read if stepped_down.is_some() => e.on_read_failed(),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let at = stepped_down.expect("it stepped down");
    assert!(
        at >= config().act_for_ms() && at < LEASE,
        "stepped down at {at}"
    );
    assert_eq!(e.leading(at), None);
    assert!(key.read(at).is_some(), "while its entry still stood");
}

#[test]
fn a_standby_takes_over_within_two_leases_of_the_leader_s_death_in_a_higher_term() {
    let mut key = Key::default();
    let (mut a, mut b) = (Election::new("a", config()), Election::new("b", config()));
    assert_eq!(
        step(&mut a, &mut key, 0),
        vec![ElectionEffect::Lead { term: 1 }]
    );
    let mut now = 0;
    let mut followed = Vec::new();
    while now < 5000 {
        step(&mut a, &mut key, now);
        followed.extend(step(&mut b, &mut key, now));
        now += 50;
    }
    assert_eq!(
        followed,
        vec![ElectionEffect::Follow {
            holder: "a".into(),
            term: 1
        }]
    );
    assert_eq!(b.leader(), Some(("a", 1)));
    // a dies: it ticks no more.
    let killed = now;
    let led = loop {
        let fx = step(&mut b, &mut key, now);
        if let Some(ElectionEffect::Lead { term }) = fx.first() {
            break (now, *term);
        }
        now += 50;
        assert!(now < killed + 10 * LEASE, "b never took over");
    };
    assert!(
        led.0 - killed <= 2 * LEASE,
        "took over after {} ms",
        led.0 - killed
    );
    assert!(led.1 > 1, "a new term: {}", led.1);
    assert_eq!(b.leader(), Some(("b", led.1)));
}

#[test]
fn a_deposed_leader_s_renew_is_refused_and_a_stale_term_is_not_admitted() {
    let mut key = Key::default();
    let (mut a, mut b) = (Election::new("a", config()), Election::new("b", config()));
    step(&mut a, &mut key, 0);
    // a is paused (a long GC, a frozen VM): its lease expires and b takes the key.
    let mut now = 0;
    while b.leading(now).is_none() {
        step(&mut b, &mut key, now);
        now += 50;
    }
    let term_b = b.leading(now).unwrap();
    // a wakes up: by its own clock its lease has run out; even a late renew is refused.
    assert_eq!(
        a.on_renewed(Err(WriteRefused::Conflict), 0, now),
        vec![ElectionEffect::StepDown {
            term: 1,
            why: StepDown::Superseded
        }]
    );
    assert_eq!(a.leading(now), None);
    // A slow answer to an old read is not taken for news.
    assert_eq!(a.on_read(key.read(now), now).len(), 1);
    assert_eq!(a.leader(), Some(("b", term_b)));
    assert_eq!(
        a.on_read(
            Some(Observed {
                holder: "a".into(),
                term: 1,
                revision: 1
            }),
            now
        ),
        vec![]
    );
    assert_eq!(a.leader(), Some(("b", term_b)), "the older term is ignored");
    assert!(!a.admits(1) && a.admits(term_b));
    // b's key moved on; a write at a's old revision fails as a CAS would.
    assert_eq!(key.update("a", 1, 1, now), Err(WriteRefused::Conflict));
}

#[test]
fn of_two_candidates_racing_for_an_empty_key_exactly_one_leads() {
    let mut key = Key::default();
    let (mut a, mut b) = (Election::new("a", config()), Election::new("b", config()));
    // Both read the empty key before either creates it.
    assert_eq!(a.tick(0), vec![ElectionEffect::Read]);
    assert_eq!(b.tick(0), vec![ElectionEffect::Read]);
    assert_eq!(a.on_read(key.read(0), 1), vec![ElectionEffect::Create]);
    assert_eq!(b.on_read(key.read(0), 1), vec![ElectionEffect::Create]);
    let won = b.on_created(key.create("b", 2), 2, 3);
    let lost = a.on_created(key.create("a", 2), 2, 3);
    assert_eq!(won, vec![ElectionEffect::Lead { term: 1 }]);
    assert_eq!(lost, vec![]);
    // The loser reads again at once and follows the winner.
    assert_eq!(
        step(&mut a, &mut key, 4),
        vec![ElectionEffect::Follow {
            holder: "b".into(),
            term: 1
        }]
    );
    for now in (5..20 * LEASE).step_by(37) {
        step(&mut a, &mut key, now);
        step(&mut b, &mut key, now);
        assert!(
            a.leading(now).is_none() && b.leading(now).is_some(),
            "one leader at {now}"
        );
    }
}

#[test]
fn a_leader_cut_off_stops_acting_before_the_other_side_elects_a_new_one() {
    let mut key = Key::default();
    let (mut a, mut b) = (Election::new("a", config()), Election::new("b", config()));
    step(&mut a, &mut key, 0);
    let (mut a_stopped, mut b_led) = (None, None);
    for now in (1..4 * LEASE).step_by(10) {
        // a's requests never reach NATS.
        for fx in a.tick(now) {
            match fx {
                ElectionEffect::Renew { .. } => {
                    a.on_renewed(Err(WriteRefused::Unreachable), now, now);
                }
                ElectionEffect::StepDown { .. } => {
                    a_stopped.get_or_insert(now);
                }
                ElectionEffect::Read => {
                    a.on_read(None, now);
                    // Its create does not reach NATS either.
                    a.on_created(Err(WriteRefused::Unreachable), now, now);
                }
                _ => {}
            }
        }
        if step(&mut b, &mut key, now).contains(&ElectionEffect::Lead { term: 2 }) {
            b_led.get_or_insert(now);
        }
        assert!(
            a.leading(now).is_none() || b.leading(now).is_none(),
            "two leaders at {now}"
        );
    }
    let (a_stopped, b_led) = (a_stopped.unwrap(), b_led.unwrap());
    assert!(
        a_stopped < b_led,
        "a stopped at {a_stopped}, b led at {b_led}"
    );
}

#[test]
fn a_create_confirmed_too_late_to_act_safely_is_not_taken_as_leadership() {
    let mut e = Election::new("a", config());
    e.tick(0);
    e.on_read(None, 0);
    assert_eq!(e.on_created(Ok(3), 0, config().act_for_ms()), vec![]);
    assert_eq!(e.leading(config().act_for_ms()), None);
    assert!(!e.admits(2), "its term is still the highest seen");
}

#[test]
fn a_leader_that_leaves_steps_down_and_asks_for_nothing_more() {
    let mut key = Key::default();
    let mut e = Election::new("a", config());
    step(&mut e, &mut key, 0);
    assert_eq!(e.revision(), Some(1));
    assert_eq!(
        e.leave(),
        vec![ElectionEffect::StepDown {
            term: 1,
            why: StepDown::Leaving
        }]
    );
    assert_eq!(e.tick(LEASE), vec![]);
    assert_eq!(e.leading(LEASE), None);
}

#[test]
fn a_leader_whose_write_was_refused_steps_down_and_waits_for_the_key_to_expire() {
    let mut key = Key::default();
    let mut e = Election::new("a", config());
    step(&mut e, &mut key, 0);
    assert_eq!(
        e.superseded(),
        vec![ElectionEffect::StepDown {
            term: 1,
            why: StepDown::Superseded
        }]
    );
    assert_eq!(e.superseded(), vec![], "once");
    // Its own entry still stands: it does not take it back, it lets it expire.
    let mut now = 1;
    while e.leading(now).is_none() {
        step(&mut e, &mut key, now);
        now += 50;
        assert!(now < 3 * LEASE, "never led again");
    }
    assert!(
        now >= LEASE,
        "led again at {now}, before its old entry expired"
    );
    assert_eq!(e.leading(now), Some(2));
}

#[test]
fn a_create_stored_after_its_answer_timed_out_is_claimed_back_at_once_in_its_term() {
    let mut key = Key::default();
    let mut e = Election::new("a", config());
    assert_eq!(e.tick(0), vec![ElectionEffect::Read]);
    assert_eq!(e.on_read(key.read(0), 0), vec![ElectionEffect::Create]);
    // NATS stores the create, but its answer comes after the candidate stopped waiting.
    let term = key.create("a", 10).unwrap();
    assert_eq!(e.on_created(Err(WriteRefused::Unreachable), 0, 750), vec![]);
    assert_eq!(e.leading(750), None);
    // The next read finds its own entry: it renews it at the revision read.
    assert_eq!(e.tick(800), vec![ElectionEffect::Read]);
    let renew = e.on_read(key.read(800), 800);
    assert_eq!(
        renew,
        vec![ElectionEffect::Renew {
            term,
            revision: term
        }]
    );
    assert_eq!(e.tick(850), vec![], "one request at a time");
    let revision = key.update("a", term, term, 900).unwrap();
    assert_eq!(
        e.on_renewed(Ok(revision), 800, 900),
        vec![ElectionEffect::Lead { term }]
    );
    // It leads from the renew's send time, well before its first entry could have expired.
    assert_eq!(e.leading(900), Some(term));
    assert_eq!(e.acts_until(), Some(800 + config().act_for_ms()));
    assert_eq!(e.leader(), Some(("a", term)));
    // And renews on as any leader does.
    for now in (901..5 * LEASE).step_by(50) {
        assert_eq!(step(&mut e, &mut key, now), vec![], "at {now}");
        assert_eq!(e.leading(now), Some(term), "at {now}");
    }
}

#[test]
fn a_renew_stored_after_its_answer_timed_out_costs_one_step_down_not_a_lease() {
    let mut key = Key::default();
    let mut e = Election::new("a", config());
    step(&mut e, &mut key, 0);
    let renew_at = LEASE / 3;
    assert_eq!(
        e.tick(renew_at),
        vec![ElectionEffect::Renew {
            term: 1,
            revision: 1
        }]
    );
    // Stored, but not answered in time: the leader renews again at the revision it knows.
    key.update("a", 1, 1, renew_at + 10).unwrap();
    assert_eq!(
        e.on_renewed(Err(WriteRefused::Unreachable), renew_at, renew_at + 750),
        vec![]
    );
    let mut now = renew_at + 750;
    let again = e.tick(now);
    assert_eq!(
        again,
        vec![ElectionEffect::Renew {
            term: 1,
            revision: 1
        }]
    );
    // The key moved on (its own write): refused, it steps down at once, as it must not guess.
    assert_eq!(
        e.on_renewed(key.update("a", 1, 1, now), now, now),
        vec![ElectionEffect::StepDown {
            term: 1,
            why: StepDown::Superseded
        }]
    );
    assert_eq!(e.leading(now), None);
    // It reads its own entry and claims it back in the same term, long before it expires.
    let led = loop {
        now += 10;
        if step(&mut e, &mut key, now).contains(&ElectionEffect::Lead { term: 1 }) {
            break now;
        }
        assert!(
            now < renew_at + LEASE,
            "not claimed back before its entry expired"
        );
    };
    assert!(led < renew_at + 750 + LEASE / 3, "led again at {led}");
    assert_eq!(e.leading(led), Some(1));
}

#[test]
fn a_claim_is_a_compare_and_set_that_fails_once_another_coordinator_took_the_key() {
    let mut key = Key::default();
    let (mut a, mut b) = (Election::new("a", config()), Election::new("b", config()));
    assert_eq!(a.tick(0), vec![ElectionEffect::Read]);
    a.on_read(key.read(0), 0);
    key.create("a", 0).unwrap();
    a.on_created(Err(WriteRefused::Unreachable), 0, 750);
    // a reads its own entry just before it expires; b takes the key before a's renew lands.
    assert_eq!(a.tick(LEASE - 1), vec![ElectionEffect::Read]);
    let claim = a.on_read(key.read(LEASE - 1), LEASE - 1);
    assert_eq!(
        claim,
        vec![ElectionEffect::Renew {
            term: 1,
            revision: 1
        }]
    );
    let mut now = LEASE;
    while b.leading(now).is_none() {
        step(&mut b, &mut key, now);
        now += 10;
    }
    let term_b = b.leading(now).unwrap();
    assert_eq!(
        a.on_renewed(key.update("a", 1, 1, now), LEASE - 1, now),
        vec![]
    );
    assert_eq!(a.leading(now), None);
    // Refused, it reads again at once and follows b.
    assert_eq!(
        step(&mut a, &mut key, now),
        vec![ElectionEffect::Follow {
            holder: "b".into(),
            term: term_b
        }]
    );
}

#[test]
fn a_claim_answered_too_late_to_act_safely_is_not_taken_as_leadership() {
    let mut key = Key::default();
    let mut e = Election::new("a", config());
    e.tick(0);
    e.on_read(None, 0);
    key.create("a", 0).unwrap();
    e.on_created(Err(WriteRefused::Unreachable), 0, 750);
    e.tick(800);
    assert_eq!(e.on_read(key.read(800), 800).len(), 1);
    let late = 800 + config().act_for_ms();
    assert_eq!(e.on_renewed(Ok(2), 800, late), vec![]);
    assert_eq!(e.leading(late), None);
}
