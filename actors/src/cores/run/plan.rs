//! Planning a run: checking its RunSpec, choosing its nodes, naming its tasks' workloads.

use crate::cores::pending::PendingPlacements;
use crate::cores::placement::{self, Misfit};
use crate::cores::registry::NodeRegistry;
use herd_bus::{FitQuery, NodeId, NodeLiveness, RunId, RunSpec, WorkloadId};
use std::collections::BTreeSet;

/// Why a run cannot start now.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanError {
    /// The spec is wrong, names a node that is unknown or down, or asks more than its nodes
    /// could ever hold: refused.
    Invalid(String),
    /// Its nodes exist but have no room now: it may wait, queued.
    NoRoom(String),
}

impl PlanError {
    /// Why, in words.
    pub fn reason(&self) -> &str {
        match self {
            PlanError::Invalid(why) | PlanError::NoRoom(why) => why,
        }
    }
}

/// Checks a RunSpec and chooses its nodes: explicit `targets.nodes` (each known and up, each
/// with room by its allocation when it reports one), or `targets.count` nodes by placement.
/// `pending` holds what was placed since each node's heartbeat. The error names the problem;
/// nothing has started.
pub fn plan(
    spec: &RunSpec,
    registry: &NodeRegistry,
    pending: &PendingPlacements,
    round_robin: usize,
) -> Result<Vec<NodeId>, PlanError> {
    check(spec).map_err(PlanError::Invalid)?;
    let t = &spec.targets;
    let q = fit_query(spec);
    match t.count {
        None => explicit(&t.nodes, &q, registry, pending),
        Some(count) => {
            let fit = placement::place_with(registry.records(), pending, &q, round_robin);
            if (fit.candidates.len() as u32) >= count {
                return Ok(fit
                    .candidates
                    .into_iter()
                    .take(count as usize)
                    .map(|c| c.node_id)
                    .collect());
            }
            // Nodes that fit, or would with room: enough of them, and the run can wait.
            let mut waiting_for = Vec::new();
            for r in registry.records() {
                if let Some(Misfit::NoRoom(why)) = placement::misfit(r, &q, pending) {
                    waiting_for.push(format!("{}: {why}", r.node_id));
                }
            }
            let could = fit.candidates.len() + waiting_for.len();
            if could as u32 >= count {
                return Err(PlanError::NoRoom(format!(
                    "targets.count: {count} nodes asked, {} with room now — {}",
                    fit.candidates.len(),
                    waiting_for.join("; ")
                )));
            }
            let why: Vec<String> = fit
                .rejected
                .iter()
                .map(|(n, w)| format!("{n}: {w}"))
                .collect();
            Err(PlanError::Invalid(format!(
                "targets.count: {count} nodes asked, {} fit{}{}",
                fit.candidates.len(),
                if why.is_empty() { "" } else { " — " },
                why.join("; ")
            )))
        }
    }
}

/// The spec's own errors ([`herd_bus::campaign::check_run_spec`], which herdctl runs too).
fn check(spec: &RunSpec) -> Result<(), String> {
    herd_bus::campaign::check_run_spec(spec)
}

/// What a node must hold: the most any of its workloads asks, as they run one at a time.
fn fit_query(spec: &RunSpec) -> FitQuery {
    let mut q = FitQuery {
        labels: spec.targets.labels.clone(),
        strategy: spec.targets.strategy,
        ..Default::default()
    };
    for v in herd_bus::campaign::variants(spec) {
        let l = &v.spec.limits;
        q.cpu = match (q.cpu, l.cpu) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        q.memory = q.memory.max(l.memory);
        q.gpus = q.gpus.max(l.gpus.as_ref().map(|g| g.count()));
        q.cpuset_cpus = q.cpuset_cpus.max(l.cpuset_cpus);
    }
    q
}

/// Explicit nodes: each known and up. A node reporting its allocation must have room (a node
/// without one, an older herdd, decides when the start comes, as before allocations).
fn explicit(
    nodes: &[NodeId],
    q: &FitQuery,
    registry: &NodeRegistry,
    pending: &PendingPlacements,
) -> Result<Vec<NodeId>, PlanError> {
    let mut seen = BTreeSet::new();
    let mut waiting_for = Vec::new();
    for n in nodes {
        if !seen.insert(n) {
            return Err(PlanError::Invalid(format!(
                "targets.nodes: {n} is listed twice"
            )));
        }
        let r = match registry.get(n) {
            None => {
                return Err(PlanError::Invalid(format!(
                    "targets.nodes: unknown node '{n}'"
                )))
            }
            Some(r) if r.liveness != NodeLiveness::Up => {
                return Err(PlanError::Invalid(format!(
                    "targets.nodes: node '{n}' is {}",
                    r.liveness.as_str()
                )))
            }
            Some(r) => r,
        };
        let Some(hb) = r.heartbeat.as_ref().filter(|hb| hb.allocation.is_some()) else {
            continue;
        };
        if !pending.known(n) {
            waiting_for.push(format!("{n}: {}", placement::UNHEARD));
            continue;
        }
        match placement::room(hb, q, &pending.held(n)) {
            None => {}
            Some(Misfit::Never(why)) => {
                return Err(PlanError::Invalid(format!(
                    "targets.nodes: node '{n}' cannot hold the workload: {why}"
                )))
            }
            Some(Misfit::NoRoom(why)) => waiting_for.push(format!("{n}: {why}")),
        }
    }
    if waiting_for.is_empty() {
        Ok(nodes.to_vec())
    } else {
        Err(PlanError::NoRoom(format!(
            "targets.nodes: no room now on {}",
            waiting_for.join("; ")
        )))
    }
}

/// FNV-1a, for short deterministic workload ids.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The workload id of a task's attempt: the same on every resend and after a coordinator
/// restart, so that starting it again is a no-op on the node; a new attempt has a new one.
pub fn task_workload_id(run: &RunId, task_id: &str, attempt: u32) -> WorkloadId {
    WorkloadId::new(format!(
        "r-{:016x}",
        fnv1a(&[run.as_str(), task_id, &attempt.to_string()])
    ))
    .expect("valid id")
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::{RunTargets, WorkloadSpec};

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn spec(reps: u32) -> RunSpec {
        RunSpec {
            run_id: None,
            workload: WorkloadSpec {
                command: vec!["true".into()],
                ..Default::default()
            },
            targets: RunTargets::default(),
            repetitions: reps,
            stop_timeout_s: Some(10.0),
            queue: None,
            priority: None,
            ..Default::default()
        }
    }

    fn registry(up: &[&str], stale: &[&str]) -> NodeRegistry {
        use crate::cores::registry::RegistryConfig;
        let mut r = NodeRegistry::new(RegistryConfig {
            stale_after_missed: 3,
            lost_after_ms: 60_000,
        });
        for (i, name) in up.iter().chain(stale).enumerate() {
            let mut hb = herd_bus::fixtures::heartbeat(0);
            hb.node_id = n(name);
            hb.interval_ms = 1000;
            let seen = if i < up.len() { 10_000 } else { 0 };
            r.on_heartbeat(hb, seen);
        }
        r.tick(10_000); // the `stale` ones have been silent 10 s
        r
    }

    fn none() -> PendingPlacements {
        PendingPlacements::default()
    }

    fn targets(nodes: &[&str], count: Option<u32>) -> RunSpec {
        RunSpec {
            targets: RunTargets {
                nodes: nodes.iter().map(|s| n(s)).collect(),
                count,
                ..Default::default()
            },
            ..spec(1)
        }
    }

    #[test]
    fn plan_chooses_nodes_or_says_what_is_wrong() {
        let reg = registry(&["a", "b"], &["s"]);
        assert_eq!(
            plan(&targets(&["b", "a"], None), &reg, &none(), 0),
            Ok(vec![n("b"), n("a")])
        );
        assert_eq!(
            plan(&targets(&[], Some(2)), &reg, &none(), 0)
                .unwrap()
                .len(),
            2
        );
        let err = |spec: RunSpec| match plan(&spec, &reg, &none(), 0) {
            Err(PlanError::Invalid(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(err(RunSpec {
            repetitions: 0,
            ..targets(&["a"], None)
        })
        .starts_with("repetitions:"));
        assert!(err(targets(&[], None)).starts_with("targets: give nodes"));
        assert!(err(targets(&["a"], Some(1))).contains("not both"));
        assert!(err(targets(&["a", "a"], None)).contains("listed twice"));
        assert_eq!(
            err(targets(&["zz"], None)),
            "targets.nodes: unknown node 'zz'"
        );
        assert_eq!(
            err(targets(&["s"], None)),
            "targets.nodes: node 's' is stale"
        );
        assert!(err(targets(&[], Some(0))).contains("must be ≥ 1"));
        let too_many = err(targets(&[], Some(3)));
        assert!(
            too_many.starts_with("targets.count: 3 nodes asked, 2 fit — s: node is stale"),
            "{too_many}"
        );
        let mut no_cmd = targets(&["a"], None);
        no_cmd.workload.command.clear();
        assert!(err(no_cmd).starts_with("workload.command"));
        let mut preset = targets(&["a"], None);
        preset.workload.rep = Some(1);
        assert!(err(preset).starts_with("workload:"));
        assert!(err(RunSpec {
            stop_timeout_s: Some(f64::NAN),
            ..targets(&["a"], None)
        })
        .starts_with("stop_timeout_s"));
    }

    /// Up nodes with 2 allocatable CPUs, `allocated` of them handed out.
    fn allotted(nodes: &[(&str, f64)]) -> NodeRegistry {
        let mut r = NodeRegistry::new(Default::default());
        for (name, allocated) in nodes {
            let mut hb = herd_bus::fixtures::heartbeat(0);
            hb.node_id = n(name);
            hb.allocation = Some(herd_bus::Allocation {
                allocatable_cpus: 2.0,
                allocatable_memory: 1 << 30,
                allocated_cpus: *allocated,
                ..Default::default()
            });
            r.on_heartbeat(hb, 0);
        }
        r
    }

    fn with_cpu(mut spec: RunSpec, cpu: f64) -> RunSpec {
        spec.workload.limits.cpu = Some(cpu);
        spec
    }

    #[test]
    fn no_room_now_is_told_apart_from_never() {
        let reg = allotted(&[("a", 1.5), ("b", 0.0)]);
        let plan = |spec: RunSpec| plan(&spec, &reg, &none(), 0);
        assert_eq!(plan(with_cpu(targets(&["b"], None), 1.0)), Ok(vec![n("b")]));
        assert_eq!(
            plan(with_cpu(targets(&["a", "b"], None), 1.0)),
            Err(PlanError::NoRoom(
                "targets.nodes: no room now on a: cpu: needs 1 CPUs, 0.50 of 2 allocatable left"
                    .into()
            ))
        );
        assert_eq!(
            plan(with_cpu(targets(&["b"], None), 4.0)),
            Err(PlanError::Invalid(
                "targets.nodes: node 'b' cannot hold the workload: cpu: needs 4 CPUs, the node \
                 has 2 allocatable in all"
                    .into()
            ))
        );
        assert_eq!(plan(with_cpu(targets(&[], Some(1)), 1.0)), Ok(vec![n("b")]));
        let two = plan(with_cpu(targets(&[], Some(2)), 1.0)).unwrap_err();
        assert_eq!(
            two,
            PlanError::NoRoom(
                "targets.count: 2 nodes asked, 1 with room now — a: cpu: needs 1 CPUs, 0.50 of \
                 2 allocatable left"
                    .into()
            )
        );
        assert!(matches!(
            plan(with_cpu(targets(&[], Some(3)), 1.0)),
            Err(PlanError::Invalid(why)) if why.starts_with("targets.count: 3 nodes asked, 1 fit")
        ));
        // What was placed since the heartbeat counts: b is taken by a run before this one.
        let mut pending = none();
        let ask = crate::cores::pending::ResourceRequest {
            cpu: 1.5,
            ..Default::default()
        };
        pending.placed(&n("b"), &WorkloadId::new("w1").unwrap(), ask, 1_000, 0);
        assert!(matches!(
            super::plan(&with_cpu(targets(&["b"], None), 1.0), &reg, &pending, 0),
            Err(PlanError::NoRoom(_))
        ));
    }

    #[test]
    fn task_workload_ids_are_stable_and_distinct_per_rep() {
        let x = RunId::new("x").unwrap();
        assert_eq!(
            task_workload_id(&x, "a::t::1", 1),
            task_workload_id(&x, "a::t::1", 1)
        );
        assert_ne!(
            task_workload_id(&x, "a::t::1", 1),
            task_workload_id(&x, "a::t::2", 1)
        );
        assert_ne!(
            task_workload_id(&x, "a::t::1", 1),
            task_workload_id(&x, "a::t::1", 2)
        );
    }
}
