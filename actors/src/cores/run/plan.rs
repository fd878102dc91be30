//! Planning a run: checking its RunSpec, choosing its nodes, naming its tasks' workloads.

use crate::cores::placement;
use crate::cores::registry::NodeRegistry;
use herd_bus::{FitQuery, NodeId, NodeLiveness, RunId, RunSpec, WorkloadId};
use std::collections::BTreeSet;

/// Checks a RunSpec and chooses its nodes: explicit `targets.nodes` (each known and up), or
/// `targets.count` nodes by placement. The error names the problem; nothing has started.
pub fn plan(
    spec: &RunSpec,
    registry: &NodeRegistry,
    round_robin: usize,
) -> Result<Vec<NodeId>, String> {
    if spec.repetitions == 0 || spec.repetitions > 10_000 {
        return Err(format!(
            "repetitions: must be between 1 and 10000, got {}",
            spec.repetitions
        ));
    }
    if spec.workload.command.is_empty() && spec.workload.image.is_none() {
        return Err("workload.command: must not be empty".into());
    }
    if let Some(t) = spec
        .stop_timeout_s
        .filter(|t| !t.is_finite() || *t <= 0.0 || *t > 3600.0)
    {
        return Err(format!(
            "stop_timeout_s: must be between 0 and 3600, got {t}"
        ));
    }
    let w = &spec.workload;
    if w.workload_id.is_some() || w.run_id.is_some() || w.rep.is_some() {
        return Err("workload: workload_id, run_id and rep are set by the run".into());
    }
    let t = &spec.targets;
    match (t.nodes.is_empty(), t.count) {
        (true, None) => Err("targets: give nodes, or count (with labels and a strategy)".into()),
        (false, Some(_)) => Err("targets: give nodes or count, not both".into()),
        (false, None) => {
            let mut seen = BTreeSet::new();
            for n in &t.nodes {
                if !seen.insert(n) {
                    return Err(format!("targets.nodes: {n} is listed twice"));
                }
                match registry.get(n) {
                    None => return Err(format!("targets.nodes: unknown node '{n}'")),
                    Some(r) if r.liveness != NodeLiveness::Up => {
                        return Err(format!(
                            "targets.nodes: node '{n}' is {}",
                            r.liveness.as_str()
                        ))
                    }
                    Some(_) => {}
                }
            }
            Ok(t.nodes.clone())
        }
        (true, Some(0)) => Err("targets.count: must be ≥ 1".into()),
        (true, Some(count)) => {
            let q = FitQuery {
                cpu: w.limits.cpu,
                memory: w.limits.memory,
                gpus: w.limits.gpus.as_ref().map(|g| g.count()),
                cpuset_cpus: w.limits.cpuset_cpus,
                labels: t.labels.clone(),
                strategy: t.strategy,
            };
            let fit = placement::place(registry.records(), &q, round_robin);
            if (fit.candidates.len() as u32) < count {
                let why: Vec<String> = fit
                    .rejected
                    .iter()
                    .map(|(n, w)| format!("{n}: {w}"))
                    .collect();
                return Err(format!(
                    "targets.count: {count} nodes asked, {} fit{}{}",
                    fit.candidates.len(),
                    if why.is_empty() { "" } else { " — " },
                    why.join("; ")
                ));
            }
            Ok(fit
                .candidates
                .into_iter()
                .take(count as usize)
                .map(|c| c.node_id)
                .collect())
        }
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

/// The workload id of a task: the same on every retry and after a coordinator restart, so that
/// starting it again is a no-op on the node.
pub fn task_workload_id(run: &RunId, node: &NodeId, rep: u32) -> WorkloadId {
    WorkloadId::new(format!(
        "r-{:016x}",
        fnv1a(&[run.as_str(), node.as_str(), &rep.to_string()])
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
            plan(&targets(&["b", "a"], None), &reg, 0),
            Ok(vec![n("b"), n("a")])
        );
        assert_eq!(plan(&targets(&[], Some(2)), &reg, 0).unwrap().len(), 2);
        let err = |spec: RunSpec| plan(&spec, &reg, 0).unwrap_err();
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

    #[test]
    fn task_workload_ids_are_stable_and_distinct_per_rep() {
        let x = RunId::new("x").unwrap();
        assert_eq!(
            task_workload_id(&x, &n("a"), 1),
            task_workload_id(&x, &n("a"), 1)
        );
        assert_ne!(
            task_workload_id(&x, &n("a"), 1),
            task_workload_id(&x, &n("a"), 2)
        );
    }
}
