//! Which nodes fit a workload now, ranked by a strategy. Sans-IO: pure functions of the
//! registry's records. Stale, lost, left and lameduck nodes are never candidates.

use herd_bus::{
    Candidate, FitQuery, FitResult, NodeLiveness, NodeRecord, NodeState, PlacementStrategy,
};

/// Free CPU (cores) and memory (bytes) of a node from its last heartbeat.
fn free(r: &NodeRecord) -> Option<(f64, u64, f64, u64)> {
    let hb = r.heartbeat.as_ref()?;
    let cpus = hb.capacity.cpus;
    let free_cpu = (cpus - hb.usage.cpu_percent / 100.0).max(0.0);
    Some((
        free_cpu,
        hb.usage.memory_available,
        cpus,
        hb.capacity.memory,
    ))
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Why `r` cannot take `q`, or None when it fits.
pub fn unfit(r: &NodeRecord, q: &FitQuery) -> Option<String> {
    match r.liveness {
        NodeLiveness::Up => {}
        other => return Some(format!("node is {}", other.as_str())),
    }
    let Some(hb) = &r.heartbeat else {
        return Some("no heartbeat yet".into());
    };
    if hb.state != NodeState::Active {
        return Some(format!("node is in {}", hb.state.as_str()));
    }
    for (k, v) in &q.labels {
        if hb.labels.get(k) != Some(v) {
            return Some(format!(
                "label {k}={v} does not match ({k}={})",
                hb.labels.get(k).map(String::as_str).unwrap_or("unset")
            ));
        }
    }
    let (free_cpu, free_mem, _, total_mem) = free(r)?;
    if let Some(m) = q.memory {
        if m > total_mem {
            return Some(format!(
                "needs {} of memory; the node has {} in all",
                gib(m),
                gib(total_mem)
            ));
        }
        if m > free_mem {
            return Some(format!(
                "needs {} of memory, {} available",
                gib(m),
                gib(free_mem)
            ));
        }
    }
    if let Some(c) = q.cpu {
        if c > free_cpu {
            return Some(format!("needs {c} CPUs, {free_cpu:.2} free"));
        }
    }
    if let Some(g) = q.gpus {
        let have = hb.capacity.gpus.len() as u32;
        if g > have {
            return Some(format!("needs {g} GPUs, the node has {have}"));
        }
    }
    None
}

/// Candidates best first, and a reason for every node left out. `round_robin_start` rotates
/// the round-robin order between calls.
pub fn place<'a>(
    records: impl IntoIterator<Item = &'a NodeRecord>,
    q: &FitQuery,
    round_robin_start: usize,
) -> FitResult {
    let mut result = FitResult::default();
    let mut fits: Vec<&NodeRecord> = Vec::new();
    for r in records {
        match unfit(r, q) {
            None => fits.push(r),
            Some(why) => {
                result.rejected.insert(r.node_id.to_string(), why);
            }
        }
    }
    fits.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let n = fits.len();
    let mut scored: Vec<Candidate> = fits
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (free_cpu, free_mem, cpus, mem) = free(r).unwrap_or((0.0, 0, 1.0, 1));
            let free_frac =
                0.5 * (free_cpu / cpus.max(1e-9)) + 0.5 * (free_mem as f64 / mem.max(1) as f64);
            let score = match q.strategy {
                PlacementStrategy::Spread => free_frac,
                PlacementStrategy::Binpack => 1.0 - free_frac,
                // Position after rotating by the cursor: first gets the highest score.
                PlacementStrategy::RoundRobin => {
                    (n - ((i + n - round_robin_start % n.max(1)) % n)) as f64
                }
            };
            Candidate {
                node_id: r.node_id.clone(),
                score,
            }
        })
        .collect();
    scored.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.node_id.cmp(&b.node_id))
    });
    result.candidates = scored;
    if result.candidates.is_empty() {
        result.summary = Some(if result.rejected.is_empty() {
            "no node is known to the coordinator yet".into()
        } else {
            format!("none of {} nodes fits; see rejected", result.rejected.len())
        });
    }
    result
}

#[cfg(test)]
mod tests {
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
}
