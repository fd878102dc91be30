use super::*;
use herd_bus::{fixtures, Heartbeat, NodeId};

const GIB: u64 = 1 << 30;

fn node(
    id: &str,
    cpu_used_pct: f64,
    mem_avail: u64,
    state: NodeState,
    live: NodeLiveness,
) -> NodeRecord {
    let mut hb: Heartbeat = fixtures::heartbeat(0);
    hb.node_id = NodeId::new(id).unwrap();
    hb.capacity.cpus = 4.0;
    hb.capacity.memory = 16 * GIB;
    hb.usage.cpu_percent = cpu_used_pct;
    hb.usage.memory_available = mem_avail;
    hb.state = state;
    NodeRecord {
        node_id: hb.node_id.clone(),
        liveness: live,
        first_seen_ms: 0,
        last_seen_ms: 0,
        heartbeat: Some(hb),
    }
}

fn fleet() -> Vec<NodeRecord> {
    use NodeLiveness::*;
    vec![
        node("busy", 300.0, 2 * GIB, NodeState::Active, Up),
        node("idle", 10.0, 14 * GIB, NodeState::Active, Up),
        node("half", 200.0, 8 * GIB, NodeState::Active, Up),
        node("drain", 0.0, 16 * GIB, NodeState::Lameduck, Up),
        node("stale", 0.0, 16 * GIB, NodeState::Active, Stale),
        node("lost", 0.0, 16 * GIB, NodeState::Active, Lost),
    ]
}

fn ids(r: &FitResult) -> Vec<&str> {
    r.candidates.iter().map(|c| c.node_id.as_str()).collect()
}

#[test]
fn spread_prefers_the_least_loaded_and_never_unhealthy_nodes() {
    let r = place(&fleet(), &FitQuery::default(), 0);
    assert_eq!(ids(&r), ["idle", "half", "busy"]);
    assert_eq!(r.rejected["drain"], "node is in lameduck");
    assert_eq!(r.rejected["stale"], "node is stale");
    assert_eq!(r.rejected["lost"], "node is lost");
}

#[test]
fn binpack_prefers_the_most_loaded_that_fits() {
    let q = FitQuery {
        strategy: PlacementStrategy::Binpack,
        memory: Some(4 * GIB),
        ..Default::default()
    };
    let r = place(&fleet(), &q, 0);
    assert_eq!(ids(&r), ["half", "idle"]);
    assert!(r.rejected["busy"].contains("available"), "{:?}", r.rejected);
}

#[test]
fn round_robin_rotates() {
    let q = FitQuery {
        strategy: PlacementStrategy::RoundRobin,
        ..Default::default()
    };
    assert_eq!(ids(&place(&fleet(), &q, 0)), ["busy", "half", "idle"]);
    assert_eq!(ids(&place(&fleet(), &q, 1)), ["half", "idle", "busy"]);
    assert_eq!(ids(&place(&fleet(), &q, 5)), ["idle", "busy", "half"]);
}

#[test]
fn too_much_memory_fits_nowhere_and_says_why() {
    let q = FitQuery {
        memory: Some(64 * GIB),
        ..Default::default()
    };
    let r = place(&fleet(), &q, 0);
    assert!(r.candidates.is_empty());
    assert!(r
        .summary
        .as_deref()
        .unwrap()
        .contains("none of 6 nodes fits"));
    assert!(
        r.rejected["idle"].contains("has 16.0 GiB in all"),
        "{:?}",
        r.rejected
    );
    let empty = place(&[], &q, 0);
    assert!(empty.summary.unwrap().contains("no node is known"));
}

#[test]
fn cpu_gpu_and_labels() {
    let q = FitQuery {
        cpu: Some(2.5),
        ..Default::default()
    };
    assert_eq!(ids(&place(&fleet(), &q, 0)), ["idle"]);
    let q = FitQuery {
        gpus: Some(2),
        ..Default::default()
    };
    assert!(place(&fleet(), &q, 0).rejected["idle"].contains("needs 2 GPUs, the node has 1"));
    let q = FitQuery {
        labels: [("rack".to_string(), "r9".to_string())].into(),
        ..Default::default()
    };
    let r = place(&fleet(), &q, 0);
    assert!(r.candidates.is_empty());
    assert!(r.rejected["idle"].contains("rack=r9 does not match (rack=r1)"));
}

// ---------------------------------------------------------------------------------------------
// By allocation

use crate::cores::pending::PendingPlacements;
use herd_bus::{Allocation, GpuInfo, WorkloadId};

/// A node with 2 allocatable CPUs and 8 GiB, `cpus` and `mem` of them allocated; live usage
/// says it is idle.
fn allotted(id: &str, cpus: f64, mem: u64) -> NodeRecord {
    let mut r = node(id, 0.0, 16 * GIB, NodeState::Active, NodeLiveness::Up);
    let hb = r.heartbeat.as_mut().unwrap();
    hb.allocation = Some(Allocation {
        allocatable_cpus: 2.0,
        allocatable_memory: 8 * GIB,
        allocated_cpus: cpus,
        allocated_memory: mem,
        overcommit_cpu: false,
        overcommit_memory: false,
        cores_free: 2,
        gpus_free: vec!["GPU-5c1d".into()],
    });
    r
}

fn alloc_mut(r: &mut NodeRecord) -> &mut Allocation {
    r.heartbeat.as_mut().unwrap().allocation.as_mut().unwrap()
}

fn cpu(c: f64) -> FitQuery {
    FitQuery {
        cpu: Some(c),
        ..Default::default()
    }
}

fn misfit_of(r: &NodeRecord, q: &FitQuery) -> Option<Misfit> {
    misfit(r, q, &PendingPlacements::default())
}

#[test]
fn cpu_fits_by_what_is_allocated_and_the_refusal_says_what_is_left() {
    let r = allotted("a", 1.75, 0);
    assert_eq!(misfit_of(&r, &cpu(0.25)), None);
    assert_eq!(
        misfit_of(&r, &cpu(0.5)),
        Some(Misfit::NoRoom(
            "cpu: needs 0.5 CPUs, 0.25 of 2 allocatable left".into()
        ))
    );
    assert_eq!(
        misfit_of(&r, &cpu(3.0)),
        Some(Misfit::Never(
            "cpu: needs 3 CPUs, the node has 2 allocatable in all".into()
        ))
    );
    // Live usage does not matter: a node busy by the moment's reading still fits.
    let mut busy = allotted("b", 0.0, 0);
    busy.heartbeat.as_mut().unwrap().usage.cpu_percent = 399.0;
    assert_eq!(misfit_of(&busy, &cpu(1.5)), None);
    // A cpuset's cores count as CPUs.
    let q = FitQuery {
        cpuset_cpus: Some(1),
        ..Default::default()
    };
    assert!(misfit_of(&r, &q)
        .unwrap()
        .reason()
        .starts_with("cpu: needs 1 CPUs"));
}

#[test]
fn overcommit_flags_lift_the_cpu_and_memory_checks() {
    let mut r = allotted("a", 2.0, 8 * GIB);
    let mem = FitQuery {
        memory: Some(GIB),
        ..Default::default()
    };
    assert_eq!(
        misfit_of(&r, &mem),
        Some(Misfit::NoRoom(
            "memory: needs 1.0 GiB, 0 MiB of 8.0 GiB allocatable left".into()
        ))
    );
    assert!(misfit_of(&r, &cpu(1.0)).is_some());
    alloc_mut(&mut r).overcommit_cpu = true;
    assert_eq!(misfit_of(&r, &cpu(1.0)), None);
    assert_eq!(misfit_of(&r, &cpu(64.0)), None, "overcommit: no ceiling");
    assert!(misfit_of(&r, &mem).is_some());
    alloc_mut(&mut r).overcommit_memory = true;
    assert_eq!(misfit_of(&r, &mem), None);
}

#[test]
fn pinned_cores_and_gpus_fit_by_what_is_free() {
    let mut r = allotted("a", 0.0, 0);
    let cores = |n| FitQuery {
        cpuset_cpus: Some(n),
        ..Default::default()
    };
    assert_eq!(misfit_of(&r, &cores(2)), None);
    alloc_mut(&mut r).cores_free = 1;
    assert_eq!(
        misfit_of(&r, &cores(2)),
        Some(Misfit::NoRoom(
            "cpuset_cpus: needs 2 whole cores, 1 free".into()
        ))
    );
    let gpus = |n| FitQuery {
        gpus: Some(n),
        ..Default::default()
    };
    assert_eq!(misfit_of(&r, &gpus(1)), None);
    assert_eq!(
        misfit_of(&r, &gpus(2)),
        Some(Misfit::Never("gpus: needs 2, the node has 1".into()))
    );
    alloc_mut(&mut r).gpus_free.clear();
    assert_eq!(
        misfit_of(&r, &gpus(1)),
        Some(Misfit::NoRoom("gpus: needs 1, 0 free of 1".into()))
    );
    // One placed since the heartbeat holds it too.
    let r = allotted("b", 0.0, 0);
    let held = ResourceRequest {
        gpus: 1,
        cores: 2,
        ..Default::default()
    };
    assert!(misfit_beside(&r, &gpus(1), &held).is_some());
    assert!(misfit_beside(&r, &cores(1), &held).is_some());
}

#[test]
fn a_node_without_allocations_fits_by_live_usage() {
    // fleet()'s nodes report no allocation: "busy" uses 3 of its 4 CPUs right now.
    let busy = &fleet()[0];
    assert_eq!(
        misfit_of(busy, &cpu(1.5)),
        Some(Misfit::NoRoom("needs 1.5 CPUs, 1.00 free".into()))
    );
    assert_eq!(
        misfit_of(busy, &cpu(8.0)),
        Some(Misfit::Never("needs 8 CPUs; the node has 4 in all".into()))
    );
}

#[test]
fn spread_and_binpack_rank_by_free_allocatable_and_spread_breaks_ties_by_live_usage() {
    let mut quiet = allotted("quiet", 0.5, 0);
    quiet.heartbeat.as_mut().unwrap().usage.cpu_percent = 10.0;
    let mut noisy = allotted("noisy", 0.5, 0);
    noisy.heartbeat.as_mut().unwrap().usage.cpu_percent = 300.0;
    let full = allotted("full", 1.5, 4 * GIB);
    let fleet = [full, noisy, quiet];
    let r = place(&fleet, &cpu(0.5), 0);
    assert_eq!(ids(&r), ["quiet", "noisy", "full"]);
    let q = FitQuery {
        strategy: PlacementStrategy::Binpack,
        ..cpu(0.5)
    };
    assert_eq!(ids(&place(&fleet, &q, 0))[0], "full");
}

#[test]
fn a_query_for_gpus_prefers_the_node_with_more_of_them_free() {
    let mut two = allotted("two", 1.0, 0);
    let hb = two.heartbeat.as_mut().unwrap();
    hb.capacity.gpus.push(GpuInfo {
        index: 1,
        uuid: "GPU-2".into(),
        ..hb.capacity.gpus[0].clone()
    });
    alloc_mut(&mut two).gpus_free.push("GPU-2".into());
    let mut one = allotted("one", 1.0, 0);
    let hb = one.heartbeat.as_mut().unwrap();
    hb.capacity.gpus.push(GpuInfo {
        index: 1,
        uuid: "GPU-3".into(),
        ..hb.capacity.gpus[0].clone()
    });
    let fleet = [one, two];
    let q = FitQuery {
        gpus: Some(1),
        ..Default::default()
    };
    assert_eq!(ids(&place(&fleet, &q, 0)), ["two", "one"]);
}

#[test]
fn a_burst_between_two_heartbeats_never_overcommits_a_node() {
    let fleet = [allotted("a", 0.0, 0)];
    let mut pending = PendingPlacements::default();
    let mut placed = 0;
    let mut refusals = Vec::new();
    for i in 0..5 {
        let fit = place_with(&fleet, &pending, &cpu(0.5), 0);
        match fit.candidates.first() {
            Some(c) => {
                let w = WorkloadId::new(format!("w{i}")).unwrap();
                let ask = ResourceRequest {
                    cpu: 0.5,
                    ..Default::default()
                };
                pending.placed(&c.node_id, &w, ask, 2_000, 0);
                placed += 1;
            }
            None => refusals.push(fit.rejected["a"].clone()),
        }
    }
    assert_eq!(placed, 4);
    assert_eq!(
        refusals,
        ["cpu: needs 0.5 CPUs, 0.00 of 2 allocatable left"]
    );
}

#[test]
fn a_node_remembered_across_a_restart_takes_nothing_until_it_beats_again() {
    let fleet = [allotted("a", 0.0, 0)];
    let mut pending = PendingPlacements::default();
    pending.unheard(&NodeId::new("a").unwrap());
    let fit = place_with(&fleet, &pending, &cpu(0.5), 0);
    assert_eq!(fit.rejected["a"], UNHEARD);
    pending.on_heartbeat(fleet[0].heartbeat.as_ref().unwrap());
    assert_eq!(ids(&place_with(&fleet, &pending, &cpu(0.5), 0)), ["a"]);
}
