//! Two coordinators, each a herdd process, on a real nats-server: one leads through the
//! `herd-leader` KV lease, the other stands by; killed, frozen or shut down, the leader is
//! replaced and the runs go on, each task started once.

use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{ClusterEvent, RunRecord, RunState, TaskStatus, WorkloadState};
use herd_tests::{
    announce, assert_stopped_in_first_rep, eventually, herdctl, wait_ready_lines,
    wait_workloads_events, Fleet, Herdd,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HB: f64 = 0.5;
const LEASE_S: f64 = 2.0;
const COORDINATOR_TOML: &str = "lease_s = 2.0\n";

/// A fleet of `agents` with its coordinator leading, and a standby coordinator `<tag>-standby`
/// that has seen the leader.
async fn fleet_with_standby(tag: &str, agents: &[&str]) -> (Fleet, Herdd) {
    let f = Fleet::start_with(tag, agents, HB, 30.0, "", COORDINATOR_TOML).await;
    let leader = name(&f.coordinator);
    assert_eq!(leads(&f).await.map(|l| l.0), Some(leader.clone()));
    let standby = Fleet::start_coordinator_with(
        &f.nats,
        &format!("{tag}-standby"),
        HB,
        30.0,
        COORDINATOR_TOML,
    );
    standing_by(&standby).await;
    announce(&format!(
        "topology: nats-server {}, leader {leader}, standby {}, agents {:?}, lease {LEASE_S} s",
        f.nats.url(),
        name(&standby),
        f.agents.iter().map(|a| &a.node_id).collect::<Vec<_>>()
    ));
    (f, standby)
}

/// Waits until `standby` has seen the leader (and so stands by, its registry warming).
async fn standing_by(standby: &Herdd) {
    eventually(
        Duration::from_secs(10),
        "the standby to see the leader",
        || async {
            standby
                .log()
                .contains("another coordinator leads")
                .then_some(())
        },
    )
    .await;
}

/// A coordinator's name in the lease: node id and process id.
fn name(h: &Herdd) -> String {
    format!("{}:{}", h.node_id, h.pid())
}

/// The coordinator that answered `cluster.nodes`, and its term. A request sent as the leader
/// dies is lost with it: each try waits a quarter of a second, not the client's 5 s.
async fn leads(f: &Fleet) -> Option<(String, u64)> {
    let ask = f.try_call("herd.v1.cluster.nodes", json!({}));
    let v = tokio::time::timeout(Duration::from_millis(250), ask)
        .await
        .ok()??;
    let l = &v["data"]["leader"];
    Some((l["coordinator"].as_str()?.to_string(), l["term"].as_u64()?))
}

/// Every one of 20 requests is answered by `who`.
async fn only_answers(f: &Fleet, who: &str) {
    for _ in 0..20 {
        let v = f.cluster("nodes", json!({})).await;
        assert_eq!(
            v["data"]["leader"]["coordinator"].as_str(),
            Some(who),
            "{v}"
        );
    }
}

/// A run of `command` on `nodes`, `reps` times each.
fn spec(command: Value, nodes: &[&str], reps: u32) -> Value {
    json!({"workload": {"command": command}, "targets": {"nodes": nodes}, "repetitions": reps})
}

async fn submit(f: &Fleet, spec: Value) -> String {
    let v = f.cluster("run.submit", spec.clone()).await;
    assert_eq!(v["ok"], true, "{spec} → {v}");
    v["data"]["run_id"].as_str().unwrap().to_string()
}

/// Waits until `who` answers `cluster.nodes`; how long that took since `from`.
async fn led_by(f: &Fleet, who: &str, from: Instant) -> (Duration, u64) {
    let term = eventually(
        Duration::from_secs(30),
        &format!("{who} to lead"),
        || async { leads(f).await.filter(|l| l.0 == who).map(|l| l.1) },
    )
    .await;
    (from.elapsed(), term)
}

async fn next_leader_event(sub: &mut async_nats::Subscriber) -> ClusterEvent {
    let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("a coordinator.leader event")
        .unwrap();
    codec::decode(&m.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap()
}

/// Waits up to `within_s` for run `run` to settle; it completed, each task started once.
async fn completes_each_task_started_once(f: &Fleet, run: &str, within_s: u64) -> RunRecord {
    let r = f
        .wait_run(
            run,
            &[RunState::Completed, RunState::Failed],
            Duration::from_secs(within_s),
        )
        .await;
    assert_eq!(r.state, RunState::Completed, "{r:#?}");
    assert_started_once(&f.running_events(run).await, &r);
    r
}

fn assert_started_once(starts: &std::collections::HashMap<String, u32>, r: &RunRecord) {
    assert_eq!(starts.len(), r.tasks.len(), "{starts:?}");
    assert!(starts.values().all(|n| *n == 1), "{starts:?}");
    for t in &r.tasks {
        assert!(
            starts.contains_key(t.workload_id.as_ref().unwrap().as_str()),
            "{t:?}"
        );
    }
}

#[tokio::test]
async fn a_standby_leads_within_two_leases_of_the_leader_s_kill_and_the_run_completes() {
    let (f, standby) = fleet_with_standby("fk", &["a", "b"]).await;
    let (old, old_term) = leads(&f).await.unwrap();
    only_answers(&f, &old).await;
    let mut leader_events = f
        .client
        .subscribe("herd.v1.cluster.evt.coordinator.leader")
        .await
        .unwrap();
    f.client.flush().await.unwrap();
    let run = submit(&f, spec(json!(["sleep", "1"]), &["fk-a", "fk-b"], 3)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    f.coordinator.signal(Signal::SIGKILL);
    let killed = Instant::now();
    announce("failure: SIGKILL of the leading coordinator 1.5 s into a 6-task run");
    let new = name(&standby);
    let (took, term) = led_by(&f, &new, killed).await;
    announce(&format!(
        "the standby answered cluster.nodes as leader {took:.2?} after the kill (lease {LEASE_S} s)"
    ));
    assert!(
        took <= Duration::from_secs_f64(2.0 * LEASE_S),
        "took {took:?}, more than two leases"
    );
    assert!(term > old_term, "term {term} after {old_term}");
    let event = next_leader_event(&mut leader_events).await;
    assert_eq!(
        event.leader.as_ref().map(|l| l.coordinator.as_str()),
        Some(new.as_str())
    );
    assert_eq!(event.leader.as_ref().map(|l| l.term), Some(term));
    let r = completes_each_task_started_once(&f, &run, 40).await;
    assert!(r.tasks.iter().all(|t| t.status == TaskStatus::Completed));
    only_answers(&f, &new).await;
    let (out, _) = herdctl(&f.nats.url(), &["nodes"]).await;
    assert!(
        out.contains(&format!("leader: {new} (term {term},")),
        "{out}"
    );
    let (out, _) = herdctl(&f.nats.url(), &["nodes", "ping"]).await;
    assert!(
        out.contains(&format!("coordinator: {new} leads (term {term})")),
        "{out}"
    );
}

#[tokio::test]
async fn a_leader_killed_mid_stop_leaves_the_run_stopped() {
    let (f, standby) = fleet_with_standby("fs", &["a", "b"]).await;
    let mut ready = f.client.subscribe("herd.v1.logs.*.*.stdout").await.unwrap();
    let mut events = f
        .client
        .subscribe("herd.v1.evt.*.workload.*")
        .await
        .unwrap();
    f.client.flush().await.unwrap();
    // A task that ignores SIGTERM: each node kills it once its 2 s grace is over.
    let run = submit(
        &f,
        json!({
            "workload": {"command": ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"], "grace_s": 2.0},
            "targets": {"nodes": ["fs-a", "fs-b"]},
            "repetitions": 2,
            "stop_timeout_s": 8.0
        }),
    )
    .await;
    let r = f.run_record(&run).await;
    let workloads: Vec<String> = r
        .tasks
        .iter()
        .filter(|t| t.rep == 1)
        .map(|t| t.workload_id.as_ref().unwrap().to_string())
        .collect();
    wait_ready_lines(&mut ready, &workloads, Duration::from_secs(15)).await;
    let v = f.cluster("run.stop", json!({"run_id": run})).await;
    assert_eq!(v["data"]["state"], "stopping", "{v}");
    f.coordinator.signal(Signal::SIGKILL);
    announce("failure: SIGKILL of the leading coordinator right after run.stop");
    let ids: Vec<&str> = workloads.iter().map(String::as_str).collect();
    let killed = wait_workloads_events(
        &mut events,
        &ids,
        &[WorkloadState::Killed],
        Duration::from_secs(6),
    )
    .await;
    assert_eq!(killed.len(), 2);
    led_by(&f, &name(&standby), Instant::now()).await;
    let r = f
        .wait_run(
            &run,
            &[RunState::Stopped, RunState::StopFailed],
            Duration::from_secs(30),
        )
        .await;
    assert_stopped_in_first_rep(&r);
    f.nothing_left(&run).await;
}

#[tokio::test]
async fn a_frozen_leader_is_replaced_and_acts_no_more_once_thawed() {
    let (f, standby) = fleet_with_standby("ff", &["a"]).await;
    let old = name(&f.coordinator);
    f.coordinator.signal(Signal::SIGSTOP);
    let frozen = Instant::now();
    announce("failure: SIGSTOP of the leading coordinator (cut off from everything)");
    let new = name(&standby);
    let (took, _) = led_by(&f, &new, frozen).await;
    announce(&format!("the standby led {took:.2?} after the freeze"));
    assert!(
        took <= Duration::from_secs_f64(2.0 * LEASE_S),
        "took {took:?}"
    );
    let run = submit(&f, spec(json!(["sleep", "0.5"]), &["ff-a"], 2)).await;
    f.coordinator.signal(Signal::SIGCONT);
    announce("healed: SIGCONT of the old leader");
    eventually(
        Duration::from_secs(10),
        "the old leader to step down",
        || async {
            f.coordinator
                .log()
                .contains("no longer leads")
                .then_some(())
        },
    )
    .await;
    completes_each_task_started_once(&f, &run, 30).await;
    only_answers(&f, &new).await;
    assert!(
        !standby.log().contains("no longer leads"),
        "the new leader stood down: {}",
        standby.log()
    );
    assert!(old != new);
}

/// CI once saw a failover take 6.8 s with a 2 s lease on a loaded machine: a write of the lead
/// answered after its timeout had still been stored, and the coordinator waited for its own
/// entry to expire. Here the server stalls (SIGSTOP) for 1 s from half a lease after a renew,
/// so that the next renew is held past its timeout and stored once the server resumes.
#[tokio::test]
async fn a_renew_stored_after_its_timeout_costs_the_leader_neither_its_term_nor_a_lease() {
    let (f, standby) = fleet_with_standby("fs", &["a"]).await;
    let leader = name(&f.coordinator);
    let (_, term) = eventually(Duration::from_secs(10), "the leader's term", || leads(&f)).await;
    let subject = format!("$KV.{}.{}", herd_bus::LEADER_BUCKET, herd_bus::LEADER_KEY);
    let mut renews = f.client.subscribe(subject).await.unwrap();
    f.client.flush().await.unwrap();
    let timed_out = || {
        f.coordinator
            .log()
            .matches("renewing the lead timed out")
            .count()
    };
    let before = timed_out();
    let mut stalls = 0;
    while timed_out() == before {
        stalls += 1;
        assert!(
            stalls <= 10,
            "no renew timed out in 10 stalls of the server"
        );
        // Whatever was queued, then the next renew as it is sent.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, renews.next()).await {}
        tokio::time::timeout(Duration::from_secs(5), renews.next())
            .await
            .expect("the leader renews")
            .unwrap();
        tokio::time::sleep(Duration::from_secs_f64(LEASE_S / 4.0)).await;
        f.nats.signal(Signal::SIGSTOP);
        tokio::time::sleep(Duration::from_secs(1)).await;
        f.nats.signal(Signal::SIGCONT);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    announce(&format!(
        "failure: SIGSTOP of nats-server for 1 s, {stalls} time(s), until a renew of the lead timed out"
    ));
    let again = eventually(
        Duration::from_secs(10),
        "the leader to lead again",
        || async { leads(&f).await.filter(|l| l.0 == leader) },
    )
    .await;
    assert_eq!(
        again.1,
        term,
        "it led again in a new term:\n{}",
        f.coordinator.log()
    );
    assert!(
        f.coordinator.log().contains("claiming it back"),
        "{}",
        f.coordinator.log()
    );
    only_answers(&f, &leader).await;
    assert!(
        !standby.log().contains("this coordinator leads"),
        "the standby led: {}",
        standby.log()
    );
}

#[tokio::test]
async fn a_leader_that_shuts_down_hands_over_without_waiting_for_its_lease() {
    let (mut f, standby) = fleet_with_standby("fh", &["a"]).await;
    let stopping = Instant::now();
    f.coordinator
        .terminate(Duration::from_secs(10))
        .expect("the leader stops");
    let (took, _) = led_by(&f, &name(&standby), stopping).await;
    announce(&format!(
        "SIGTERM of the leader: the standby led {took:.2?} later"
    ));
    assert!(f.coordinator.log().contains("handed the lead over"));
    assert!(
        took < Duration::from_secs_f64(LEASE_S),
        "took {took:?}: it waited for the lease"
    );
}

#[tokio::test]
async fn more_replicas_than_servers_is_said_plainly_and_nothing_is_half_made() {
    let nats = herd_tests::NatsServer::start();
    let mut h = Herdd::start_with(herd_tests::HerddOptions {
        env: vec![("HERD_NATS_REPLICAS", "3".to_string())],
        config_toml: Some("roles = [\"coordinator\"]\n"),
        ..herd_tests::HerddOptions::new("rp-coord", nats.url())
    });
    let line = eventually(Duration::from_secs(15), "the replicas error", || async {
        h.log()
            .lines()
            .find(|l| l.contains("with 3 replicas (nats.replicas)"))
            .map(str::to_string)
    })
    .await;
    announce(&format!("nats.replicas = 3 on one server: {line}"));
    assert!(
        line.contains("a JetStream cluster of at least 3 servers"),
        "{line}"
    );
    assert!(h.is_running(), "herdd keeps trying instead of exiting");
    let client = herd_tests::connect(&nats.url()).await;
    let js = async_nats::jetstream::new(client);
    assert!(
        js.get_stream("KV_herd-leader").await.is_err(),
        "no R1 bucket made instead"
    );
}

#[tokio::test]
async fn a_standby_s_registry_is_warm_the_moment_it_leads() {
    // Heartbeats every 10 s and a 1 s lease: the standby leads long before the next heartbeat,
    // so what it knows of the fleet then, it learnt while standing by.
    let f = Fleet::start_with("fw", &["a"], 10.0, 60.0, "", "lease_s = 1.0\n").await;
    let standby =
        Fleet::start_coordinator_with(&f.nats, "fw-standby", 10.0, 60.0, "lease_s = 1.0\n");
    standing_by(&standby).await;
    let v = herd_tests::node_call(
        &f.client,
        "fw-a",
        "workload.start",
        json!({"command": ["sleep", "60"], "workload_id": "w-warm"}),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    // The node's next heartbeat lists it: the leader and the standby both hear it.
    let leader_sees = || async {
        let v = f.try_call("herd.v1.cluster.workloads", json!({})).await?;
        let listed = v["data"]["workloads"]
            .as_array()?
            .iter()
            .any(|w| w["workload_id"] == "w-warm");
        listed.then_some(())
    };
    eventually(
        Duration::from_secs(25),
        "a heartbeat listing w-warm",
        leader_sees,
    )
    .await;
    f.coordinator.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let new = name(&standby);
    eventually(Duration::from_secs(10), "the standby to lead", || async {
        (leads(&f).await.map(|l| l.0).as_deref() == Some(new.as_str())).then_some(())
    })
    .await;
    let v = f.cluster("workloads", json!({})).await;
    let listed = v["data"]["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["workload_id"] == "w-warm");
    announce(&format!(
        "the standby led {:.2?} after the kill; its first cluster.workloads lists w-warm: {listed}",
        killed.elapsed()
    ));
    assert!(
        listed,
        "the new leader knew nothing of the node's workloads: {v}"
    );
    let log = standby.log();
    let line = log
        .lines()
        .find(|l| l.contains("coordinator starting with the standby's registry"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("nodes=1"), "{line}");
}

#[tokio::test]
async fn a_journal_written_behind_the_leader_s_back_refuses_its_next_write_and_it_steps_down() {
    let (f, _standby) = fleet_with_standby("fc", &["a"]).await;
    let (_, old_term) = leads(&f).await.unwrap();
    let run = submit(&f, spec(json!(["sleep", "1.5"]), &["fc-a"], 2)).await;
    // Another writer (a deposed leader coming back) writes the run's journal: same content, a
    // new revision, so that the leader's next write names a revision that is no longer the last.
    let js = async_nats::jetstream::new(f.client.clone());
    let runs = js.get_key_value("herd-runs").await.unwrap();
    let entry = eventually(
        Duration::from_secs(10),
        "the journal in herd-runs",
        || async { runs.entry(run.as_str()).await.ok().flatten() },
    )
    .await;
    runs.put(run.as_str(), entry.value.clone()).await.unwrap();
    announce("failure: run's journal rewritten in herd-runs behind the leader's back");
    // The first repetition's exit makes the leader save the journal: refused, it steps down.
    eventually(
        Duration::from_secs(15),
        "the leader to step down",
        || async {
            let log = f.coordinator.log();
            (log.contains("a write was refused") && log.contains("no longer leads")).then_some(())
        },
    )
    .await;
    // Whichever coordinator takes the lease next leads in a new term, from the journal as the
    // bucket holds it.
    let (new, term) = eventually(Duration::from_secs(20), "a new leadership", || async {
        leads(&f).await.filter(|l| l.1 > old_term)
    })
    .await;
    announce(&format!("{new} leads in term {term} (was {old_term})"));
    completes_each_task_started_once(&f, &run, 40).await;
    only_answers(&f, &new).await;
}

#[tokio::test]
async fn a_node_lost_while_no_one_leads_loses_its_task_when_the_standby_takes_over() {
    // A 7 s lease and a node lost after 3 s of silence: the standby's registry sees fl-a lost
    // while no coordinator leads, and the change reaches the run once the standby leads.
    let toml = "lease_s = 7.0\n";
    let f = Fleet::start_with("fl", &["a", "b"], HB, 3.0, "", toml).await;
    let standby = Fleet::start_coordinator_with(&f.nats, "fl-standby", HB, 3.0, toml);
    standing_by(&standby).await;
    let run = submit(&f, spec(json!(["sleep", "10"]), &["fl-a", "fl-b"], 1)).await;
    eventually(Duration::from_secs(20), "both tasks running", || async {
        let r = f.run_record(&run).await;
        r.tasks
            .iter()
            .all(|t| t.status == TaskStatus::Running)
            .then_some(())
    })
    .await;
    f.agents[0].signal(Signal::SIGSTOP);
    f.coordinator.signal(Signal::SIGKILL);
    let t0 = Instant::now();
    announce("failure: SIGSTOP of fl-a's herdd and SIGKILL of the leader at once (lease 7 s, lost after 3 s)");
    let (took, _) = led_by(&f, &name(&standby), t0).await;
    announce(&format!("the standby led {took:.2?} later"));
    let r = eventually(Duration::from_secs(5), "fl-a's task lost", || async {
        let r = f.run_record(&run).await;
        let a = r.tasks.iter().find(|t| t.node_id.as_str() == "fl-a")?;
        (a.status == TaskStatus::Lost).then_some(r)
    })
    .await;
    let log = standby.log();
    assert!(
        log.contains("to=\"lost\"") || log.contains("to=lost"),
        "the standby announced no lost node: {log}"
    );
    assert!(
        r.tasks
            .iter()
            .any(|t| t.node_id.as_str() == "fl-b" && t.status != TaskStatus::Lost),
        "{r:#?}"
    );
    f.agents[0].signal(Signal::SIGCONT);
    announce("healed: SIGCONT of fl-a's herdd");
    let r = f
        .wait_run(
            &run,
            &[RunState::Completed, RunState::Failed],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        r.state,
        RunState::Failed,
        "a lost task fails the run: {r:#?}"
    );
    // fl-a's sleep ran on under its supervisor while herdd was frozen; it ends by itself.
    eventually(Duration::from_secs(15), "fl-a's task to end", || async {
        let v = f
            .call(
                "herd.v1.node.fl-a.workload.list",
                json!({"run_id": run, "state": "running"}),
            )
            .await;
        (v["data"]["workloads"].as_array()?.is_empty()).then_some(())
    })
    .await;
    f.nothing_left(&run).await;
}
