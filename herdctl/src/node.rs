//! Commands to one node, or to every node that answers a ping: ping, run, ps, stop, watch,
//! drain, and raw requests (`logs` and `run --attach` are in `attach`).

use crate::args::RunArgs;
use crate::ctl::{decode_reply, msgpack_headers, Ctl};
use crate::render::{describe_command, human_bytes, human_duration, now_ms, out, shorten, Table};
use anyhow::{bail, Context};
use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{
    Accepted, Ack, ClusterVerb, Empty, LameduckRequest, NodeId, NodeInfo, NodeList, NodeLiveness,
    NodeVerb, NodesQuery, RestartPolicy, RestartPolicyKind, StopRequest, TelemetryBatch,
    WorkloadFilter, WorkloadId, WorkloadList, WorkloadSpec, WorkloadStatus,
};
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub async fn ping(ctl: &Ctl, node: &str) -> anyhow::Result<ExitCode> {
    let node = NodeId::new(node)?;
    let subject = ctl.subjects.node_command(&node, NodeVerb::Ping);
    let start = Instant::now();
    let msg = ctl
        .request(subject, codec::encode(&Empty {}, Encoding::MsgPack)?)
        .await
        .with_context(|| format!("is herdd running with node id '{node}'?"))?;
    let rtt = start.elapsed();
    let info: NodeInfo = decode_reply(&msg)?;
    print_nodes(ctl, &[(info, rtt)])?;
    Ok(ExitCode::SUCCESS)
}

pub async fn ping_all(ctl: &Ctl) -> anyhow::Result<ExitCode> {
    // Which coordinator leads, asked while the nodes answer (for the nodes that left only: the
    // reply stays small on a large fleet).
    let few = NodesQuery {
        state: Some(NodeLiveness::Left),
        ..Default::default()
    };
    let leader = ctl.cluster::<_, NodeList>(ClusterVerb::Nodes, &few);
    let (nodes, leader) = futures::join!(ping_every_node(ctl, ctl.timeout), leader);
    let nodes = nodes?;
    print_nodes(ctl, &nodes)?;
    if !ctl.json {
        match leader.ok().and_then(|l| l.leader) {
            Some(l) => out(&format!(
                "coordinator: {} leads (term {})\n",
                l.coordinator, l.term
            )),
            None => out("coordinator: none answered\n"),
        }
    }
    if nodes.is_empty() {
        eprintln!("herdctl: no node answered within {:?}", ctl.timeout);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Publishes one ping to every node and gathers the replies that arrive within `wait`, with
/// their round-trip times, by node id.
async fn ping_every_node(ctl: &Ctl, wait: Duration) -> anyhow::Result<Vec<(NodeInfo, Duration)>> {
    let inbox = ctl.client.new_inbox();
    let mut replies = ctl.client.subscribe(inbox.clone()).await?;
    let start = Instant::now();
    ctl.client
        .publish_with_reply_and_headers(
            ctl.subjects.nodes_ping(),
            inbox,
            msgpack_headers(),
            codec::encode(&Empty {}, Encoding::MsgPack)?.into(),
        )
        .await?;
    ctl.client.flush().await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut nodes = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await {
        match decode_reply::<NodeInfo>(&msg) {
            Ok(info) => nodes.push((info, start.elapsed())),
            Err(e) => eprintln!("herdctl: ignoring a bad reply: {e:#}"),
        }
    }
    nodes.sort_by(|a, b| a.0.node_id.cmp(&b.0.node_id));
    Ok(nodes)
}

pub async fn raw_request(ctl: &Ctl, subject: &str, payload: String) -> anyhow::Result<ExitCode> {
    let req = ctl
        .client
        .request(subject.to_string(), payload.into_bytes().into());
    let msg = match tokio::time::timeout(ctl.timeout, req).await {
        Err(_) => bail!("no reply on {subject} within {:?}", ctl.timeout),
        Ok(r) => r?,
    };
    let text = String::from_utf8_lossy(&msg.payload);
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => out(&format!("{}\n", serde_json::to_string_pretty(&v)?)),
        Err(_) => out(&format!("{text}\n")),
    }
    let ok = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("ok").and_then(|o| o.as_bool()))
        .unwrap_or(false);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_nodes(ctl: &Ctl, nodes: &[(NodeInfo, Duration)]) -> anyhow::Result<()> {
    if ctl.json {
        #[derive(Serialize)]
        struct Row<'a> {
            #[serde(flatten)]
            info: &'a NodeInfo,
            rtt_ms: f64,
        }
        let rows: Vec<Row> = nodes
            .iter()
            .map(|(info, rtt)| Row {
                info,
                rtt_ms: rtt.as_secs_f64() * 1e3,
            })
            .collect();
        out(&format!("{}\n", serde_json::to_string_pretty(&rows)?));
        return Ok(());
    }
    let mut table = Table::new(&[
        "NODE", "STATE", "VERSION", "UPTIME", "ROLES", "LABELS", "RTT",
    ]);
    for (info, rtt) in nodes {
        table.row(vec![
            info.node_id.to_string(),
            info.state.as_str().to_string(),
            info.version.clone(),
            human_duration(info.uptime_s),
            info.roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(","),
            info.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            format!("{:.1}ms", rtt.as_secs_f64() * 1e3),
        ]);
    }
    out(&table.render());
    Ok(())
}

/// Every node that answers a ping within the timeout (a second at most).
async fn fleet(ctl: &Ctl) -> anyhow::Result<Vec<NodeId>> {
    let wait = ctl.timeout.min(Duration::from_secs(1));
    let nodes = ping_every_node(ctl, wait).await?;
    Ok(nodes.into_iter().map(|(info, _)| info.node_id).collect())
}

pub async fn run_workload(ctl: &Ctl, a: RunArgs) -> anyhow::Result<ExitCode> {
    let node = NodeId::new(a.node.clone().unwrap_or_default())?;
    let mut spec = WorkloadSpec {
        workload_id: a.id.map(WorkloadId::new).transpose()?,
        name: a.name,
        command: a.command,
        restart: match a.restart {
            Some(max) => RestartPolicy {
                policy: RestartPolicyKind::OnFailure,
                max,
            },
            None => RestartPolicy::default(),
        },
        ..Default::default()
    };
    a.workload.apply(&mut spec);
    if a.attach {
        return Ok(crate::attach::run_attached(ctl, node, spec).await);
    }
    let accepted: Accepted = ctl.call(&node, NodeVerb::WorkloadStart, &spec).await?;
    if ctl.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&accepted)?));
    } else if accepted.existing {
        out(&format!(
            "{} (already running with this spec)\n",
            accepted.workload_id
        ));
    } else {
        out(&format!("{}\n", accepted.workload_id));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn ps(ctl: &Ctl, node: Option<String>, all: bool) -> anyhow::Result<ExitCode> {
    let nodes = match node {
        Some(n) => vec![NodeId::new(n)?],
        None => fleet(ctl).await?,
    };
    let mut rows: Vec<WorkloadStatus> = Vec::new();
    for node in &nodes {
        match ctl
            .call::<_, WorkloadList>(node, NodeVerb::WorkloadList, &WorkloadFilter::default())
            .await
        {
            Ok(list) => rows.extend(list.workloads),
            Err(e) => eprintln!("herdctl: {node}: {e:#}"),
        }
    }
    rows.retain(|w| all || !w.state.is_terminal());
    if ctl.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&rows)?));
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    let mut table = Table::new(&[
        "NODE", "WORKLOAD", "STATE", "PID", "AGE", "RESTARTS", "EXIT", "COMMAND",
    ]);
    for w in rows {
        let exit = match (w.exit_code, &w.signal, &w.reason) {
            (Some(c), _, _) => c.to_string(),
            (None, Some(s), _) => s.clone(),
            (None, None, Some(r)) => r.clone(),
            _ => String::new(),
        };
        table.row(vec![
            w.node_id.to_string(),
            w.workload_id.to_string(),
            w.state.as_str().to_string(),
            w.pid.map(|p| p.to_string()).unwrap_or_default(),
            human_duration(now.saturating_sub(w.created_at_ms) as f64 / 1e3),
            w.restarts.to_string(),
            exit,
            shorten(&describe_command(&w.spec), 40),
        ]);
    }
    out(&table.render());
    Ok(ExitCode::SUCCESS)
}

pub async fn stop(
    ctl: &Ctl,
    node: &str,
    workload: &str,
    signal: Option<String>,
    grace: Option<f64>,
) -> anyhow::Result<ExitCode> {
    let node = NodeId::new(node)?;
    let req = StopRequest {
        workload_id: Some(WorkloadId::new(workload)?),
        run_id: None,
        signal,
        grace_s: grace,
    };
    let ack: Ack = ctl.call(&node, NodeVerb::WorkloadStop, &req).await?;
    out(&format!("{}\n", ack.message.unwrap_or_else(|| "ok".into())));
    Ok(ExitCode::SUCCESS)
}

pub async fn watch(ctl: &Ctl, node: Option<String>) -> anyhow::Result<ExitCode> {
    let subject = match node {
        Some(n) => ctl.subjects.telemetry(&NodeId::new(n)?),
        None => ctl.subjects.telemetry_all(),
    };
    let mut sub = ctl.client.subscribe(subject).await?;
    let mut latest: std::collections::BTreeMap<String, TelemetryBatch> = Default::default();
    while let Some(msg) = sub.next().await {
        let Ok(batch) = codec::decode::<TelemetryBatch>(
            &msg.payload,
            Encoding::MsgPack,
            &DecodeLimits::default(),
        ) else {
            continue;
        };
        if ctl.json {
            out(&format!("{}\n", serde_json::to_string(&batch)?));
            continue;
        }
        latest.insert(batch.node_id.to_string(), batch);
        let mut table = Table::new(&[
            "NODE", "WORKLOAD", "CPU%", "MEMORY", "LIMIT", "PIDS", "READ/s", "WRITE/s", "UPTIME",
        ]);
        for b in latest.values() {
            for s in &b.samples {
                table.row(vec![
                    b.node_id.to_string(),
                    s.workload_id.to_string(),
                    s.cpu_percent
                        .map(|c| format!("{c:.1}"))
                        .unwrap_or_else(|| "-".into()),
                    human_bytes(s.memory_working_set),
                    s.memory_limit
                        .map(human_bytes)
                        .unwrap_or_else(|| "-".into()),
                    s.pids.to_string(),
                    s.io_read_bps
                        .map(|b| human_bytes(b as u64))
                        .unwrap_or_else(|| "-".into()),
                    s.io_write_bps
                        .map(|b| human_bytes(b as u64))
                        .unwrap_or_else(|| "-".into()),
                    s.error
                        .clone()
                        .unwrap_or_else(|| human_duration(s.uptime_s)),
                ]);
            }
        }
        let footer: Vec<String> = latest
            .values()
            .map(|b| {
                format!(
                    "{}: {} workloads sampled in {} µs",
                    b.node_id,
                    b.samples.len(),
                    b.collection_us
                )
            })
            .collect();
        // Clear the screen and redraw.
        out(&format!(
            "\x1b[2J\x1b[H{}\n{}\n",
            table.render(),
            footer.join("\n")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn drain(
    ctl: &Ctl,
    node: &str,
    delay: f64,
    stop_workloads: bool,
    undo: bool,
) -> anyhow::Result<ExitCode> {
    let req = LameduckRequest {
        enabled: !undo,
        delay_s: (delay > 0.0).then_some(delay),
        stop_workloads,
    };
    let ack: Ack = ctl
        .call(&NodeId::new(node)?, NodeVerb::Lameduck, &req)
        .await?;
    out(&format!("{}\n", ack.message.unwrap_or_default()));
    Ok(ExitCode::SUCCESS)
}
