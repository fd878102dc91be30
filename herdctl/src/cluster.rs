//! Questions to the coordinator about the fleet: its nodes, one node, who fits a workload.

use crate::ctl::Ctl;
use crate::render::{human_bytes, human_duration, now_ms, out, Table};
use herd_bus::{
    ClusterVerb, FitQuery, FitResult, NodeGet, NodeId, NodeList, NodeLiveness, NodeRecord,
    NodesQuery, PlacementStrategy,
};
use std::process::ExitCode;

pub async fn nodes(
    ctl: &Ctl,
    state: Option<String>,
    labels: Vec<(String, String)>,
) -> anyhow::Result<ExitCode> {
    let state = state
        .map(|s| serde_json::from_value::<NodeLiveness>(serde_json::Value::String(s.clone())))
        .transpose()
        .map_err(|_| anyhow::anyhow!("--state is one of up, stale, lost, left"))?;
    let list: NodeList = ctl
        .cluster(
            ClusterVerb::Nodes,
            &NodesQuery {
                state,
                labels: labels.into_iter().collect(),
            },
        )
        .await?;
    if ctl.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&list.nodes)?));
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    let mut t = Table::new(&[
        "NODE",
        "LIVENESS",
        "STATE",
        "CPUS",
        "CPU%",
        "MEMORY",
        "AVAILABLE",
        "WORKLOADS",
        "SEEN",
        "LABELS",
    ]);
    for r in &list.nodes {
        let hb = r.heartbeat.as_ref();
        t.row(vec![
            r.node_id.to_string(),
            r.liveness.as_str().to_string(),
            hb.map(|h| h.state.as_str().to_string()).unwrap_or_default(),
            hb.map(|h| format!("{}", h.capacity.cpus))
                .unwrap_or_default(),
            hb.map(|h| format!("{:.0}", h.usage.cpu_percent))
                .unwrap_or_default(),
            hb.map(|h| human_bytes(h.capacity.memory))
                .unwrap_or_default(),
            hb.map(|h| human_bytes(h.usage.memory_available))
                .unwrap_or_default(),
            hb.map(|h| h.workloads.len().to_string())
                .unwrap_or_default(),
            format!(
                "{} ago",
                human_duration(now.saturating_sub(r.last_seen_ms) as f64 / 1e3)
            ),
            hb.map(|h| {
                h.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        ]);
    }
    out(&t.render());
    if let Some(l) = &list.leader {
        out(&format!(
            "leader: {} (term {}, for {})\n",
            l.coordinator,
            l.term,
            human_duration(now.saturating_sub(l.since_ms) as f64 / 1e3)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn node(ctl: &Ctl, node: &str) -> anyhow::Result<ExitCode> {
    let record: NodeRecord = ctl
        .cluster(
            ClusterVerb::NodeGet,
            &NodeGet {
                node_id: NodeId::new(node)?,
            },
        )
        .await?;
    out(&format!("{}\n", serde_json::to_string_pretty(&record)?));
    Ok(ExitCode::SUCCESS)
}

pub async fn query(
    ctl: &Ctl,
    cpu: Option<f64>,
    memory: Option<u64>,
    gpus: Option<u32>,
    cpuset_cpus: Option<u32>,
    labels: Vec<(String, String)>,
    strategy: &str,
) -> anyhow::Result<ExitCode> {
    let strategy: PlacementStrategy =
        serde_json::from_value(serde_json::Value::String(strategy.into()))
            .map_err(|_| anyhow::anyhow!("--strategy is one of spread, binpack, round_robin"))?;
    let fit: FitResult = ctl
        .cluster(
            ClusterVerb::Query,
            &FitQuery {
                cpu,
                memory,
                gpus,
                cpuset_cpus,
                labels: labels.into_iter().collect(),
                strategy,
            },
        )
        .await?;
    if ctl.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&fit)?));
    } else {
        let mut t = Table::new(&["CANDIDATE", "SCORE"]);
        for c in &fit.candidates {
            t.row(vec![c.node_id.to_string(), format!("{:.3}", c.score)]);
        }
        out(&t.render());
        for (node, why) in &fit.rejected {
            out(&format!("  not {node}: {why}\n"));
        }
        if let Some(s) = &fit.summary {
            out(&format!("{s}\n"));
        }
    }
    Ok(if fit.candidates.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
