//! The fleet, node and events pages: what the coordinator and the nodes answer, as HTML. Pure
//! functions of the data; the handlers in `serve` ask for it.

use super::html::{ago, bytes, chart, esc, region, throttled_region, url, Frame};
use herd_bus::{NodeEvent, NodeList, NodeRecord, WorkloadStatus};

/// Whether a node has `label` (`key=value`, or a bare key).
fn has_label(node: &NodeRecord, label: &str) -> bool {
    let labels = node.heartbeat.as_ref().map(|h| &h.labels);
    match (labels, label.split_once('=')) {
        (None, _) => false,
        (Some(l), Some((k, v))) => l.get(k).is_some_and(|have| have == v),
        (Some(l), None) => l.contains_key(label),
    }
}

/// The fleet's table: one row per node (`label` keeps only the nodes that have it).
pub fn fleet_table(nodes: &NodeList, label: Option<&str>, now_ms: u64) -> String {
    let mut rows = String::new();
    let shown: Vec<_> = nodes
        .nodes
        .iter()
        .filter(|n| label.is_none_or(|l| has_label(n, l)))
        .collect();
    for n in &shown {
        let hb = n.heartbeat.as_ref();
        let state = hb.map(|h| h.state.as_str()).unwrap_or("?");
        let allocated = hb
            .and_then(|h| h.allocation.as_ref())
            .map(|a| {
                format!(
                    "{:.1} of {} CPUs{}, {} of {}",
                    a.allocated_cpus,
                    a.allocatable_cpus,
                    if a.overcommit_cpu {
                        " (overcommit)"
                    } else {
                        ""
                    },
                    bytes(a.allocated_memory),
                    bytes(a.allocatable_memory)
                )
            })
            .unwrap_or_else(|| "–".to_string());
        let (cpu, memory, gpus, workloads, labels) = match hb {
            None => Default::default(),
            Some(h) => {
                let running = h
                    .workloads
                    .iter()
                    .filter(|w| !w.state.is_terminal())
                    .count();
                let used = h.capacity.memory.saturating_sub(h.usage.memory_available);
                let labels: Vec<String> = h
                    .labels
                    .iter()
                    .map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v)))
                    .collect();
                (
                    format!(
                        "<meter min=\"0\" max=\"{max}\" value=\"{v:.1}\"></meter> {v:.0} % of {cpus} CPUs",
                        max = h.capacity.cpus * 100.0,
                        v = h.usage.cpu_percent,
                        cpus = h.capacity.cpus
                    ),
                    format!("{} of {}", bytes(used), bytes(h.capacity.memory)),
                    match (&h.allocation, h.capacity.gpus.len()) {
                        (_, 0) => "–".to_string(),
                        (Some(a), n) => format!("{} free of {n}", a.gpus_free.len()),
                        (None, n) => n.to_string(),
                    },
                    format!("{running} running, {} known", h.workloads.len()),
                    labels.join(" "),
                )
            }
        };
        rows.push_str(&format!(
            "<tr data-node=\"{id}\" data-liveness=\"{live}\" data-state=\"{state}\">\
             <td><a href=\"/node/{href}\">{id}</a></td>\
             <td><span class=\"badge {live}\">{live}</span></td><td>{state}</td>\
             <td>{allocated}</td><td>{cpu}</td><td>{memory}</td><td>{gpus}</td><td>{workloads}</td><td>{labels}</td>\
             <td>{seen}</td></tr>",
            id = esc(n.node_id.as_str()),
            href = url(n.node_id.as_str()),
            live = n.liveness.as_str(),
            seen = ago(n.last_seen_ms, now_ms),
        ));
    }
    let up = shown
        .iter()
        .filter(|n| n.liveness == herd_bus::NodeLiveness::Up)
        .count();
    format!(
        "<p class=\"counts\"><span id=\"nodes-up\">{up}</span> of {} nodes up</p>\
         <table class=\"nodes\"><thead><tr><th>Node</th><th>Liveness</th><th>State</th><th>Allocated</th><th>CPU used</th>\
         <th>Memory used</th><th>GPUs</th><th>Workloads</th><th>Labels</th><th>Last seen</th></tr></thead>\
         <tbody>{rows}</tbody></table>",
        shown.len()
    )
}

pub fn fleet_page(frame: &Frame, label: Option<&str>, table: &str) -> String {
    let fragment = match label {
        Some(l) => format!("/f/fleet?label={}", url(l)),
        None => "/f/fleet".to_string(),
    };
    frame.render(&format!(
        "<h1>Fleet</h1><form class=\"filter\" method=\"get\" action=\"/\">\
         <label>Label <input name=\"label\" placeholder=\"key=value\" value=\"{}\"></label>\
         <button>Filter</button></form>{}",
        esc(label.unwrap_or("")),
        // Every heartbeat of every node would refresh it: once a second at most.
        throttled_region("fleet", &fragment, "hb cluster node", 1000, table)
    ))
}

/// A node's workloads as the node knows them, newest first.
pub fn workload_table(node: &str, workloads: &[WorkloadStatus], actions: bool) -> String {
    let mut sorted: Vec<_> = workloads.iter().collect();
    sorted.sort_by_key(|w| std::cmp::Reverse(w.created_at_ms));
    let mut rows = String::new();
    for w in sorted {
        let id = w.workload_id.as_str();
        let what = match &w.spec.image {
            Some(image) => format!("{} {}", image, w.spec.command.join(" ")),
            None => w.spec.command.join(" "),
        };
        let ended = match (w.exit_code, &w.signal, &w.reason) {
            (Some(c), _, _) => format!("exit {c}"),
            (None, Some(s), _) => s.clone(),
            (None, None, Some(r)) => r.clone(),
            _ => String::new(),
        };
        let stop = if actions && !w.state.is_terminal() {
            format!(
                "<button class=\"danger\" data-action=\"stop-workload\" data-node=\"{}\" data-workload=\"{}\">Stop</button>",
                esc(node),
                esc(id)
            )
        } else {
            String::new()
        };
        rows.push_str(&format!(
            "<tr data-workload=\"{id}\" data-state=\"{state}\"><td><a href=\"/node/{nhref}/workload/{href}\">{id}</a></td>\
             <td><span class=\"badge {state}\">{state}</span></td><td><code>{what}</code></td>\
             <td class=\"num\" data-cpu=\"{id}\"></td><td class=\"num\" data-memory=\"{id}\"></td>\
             <td>{run}</td><td>{ended}</td><td>{stop}</td></tr>",
            id = esc(id),
            href = url(id),
            nhref = url(node),
            state = w.state.as_str(),
            what = esc(&what),
            run = w
                .spec
                .run_id
                .as_ref()
                .map(|r| format!("<a href=\"/run/{}\">{}</a>", url(r.as_str()), esc(r.as_str())))
                .unwrap_or_default(),
            ended = esc(&ended),
        ));
    }
    format!(
        "<table class=\"workloads\"><thead><tr><th>Workload</th><th>State</th><th>Command</th>\
         <th>CPU %</th><th>Memory</th><th>Run</th><th>Ended</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

pub fn node_summary(n: &NodeRecord, now_ms: u64, actions: bool) -> String {
    let mut out = format!(
        "<dl class=\"facts\" data-node=\"{id}\" data-liveness=\"{live}\"><dt>Liveness</dt><dd><span class=\"badge {live}\">{live}</span></dd>\
         <dt>Last seen</dt><dd>{seen}</dd>",
        id = esc(n.node_id.as_str()),
        live = n.liveness.as_str(),
        seen = ago(n.last_seen_ms, now_ms)
    );
    if let Some(h) = &n.heartbeat {
        let used = h.capacity.memory.saturating_sub(h.usage.memory_available);
        out.push_str(&format!(
            "<dt>State</dt><dd>{}</dd><dt>Version</dt><dd>{}</dd><dt>CPU</dt><dd>{:.0} % of {} CPUs (load {:.2})</dd>\
             <dt>Memory</dt><dd>{} of {}</dd><dt>Roles</dt><dd>{}</dd>",
            h.state.as_str(),
            esc(&h.version),
            h.usage.cpu_percent,
            h.capacity.cpus,
            h.usage.load_avg[0],
            bytes(used),
            bytes(h.capacity.memory),
            h.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
        ));
        for g in &h.capacity.gpus {
            out.push_str(&format!(
                "<dt>GPU {}</dt><dd>{} ({}, {})</dd>",
                g.index,
                esc(&g.name),
                esc(&g.uuid),
                bytes(g.memory)
            ));
        }
        if actions {
            let (label, undo) = match h.state {
                herd_bus::NodeState::Active => ("Drain", false),
                _ => ("Undrain", true),
            };
            out.push_str(&format!(
                "<dt>Actions</dt><dd><button data-action=\"drain\" data-node=\"{}\" data-undo=\"{undo}\">{label}</button></dd>",
                esc(n.node_id.as_str())
            ));
        }
    }
    out.push_str("</dl>");
    out
}

pub fn node_page(frame: &Frame, node: &str, summary: &str, workloads: &str) -> String {
    let n = url(node);
    frame.render(&format!(
        "<h1>Node {id}</h1>{summary}\
         <div class=\"charts\">{cpu}{mem}</div>\
         <h2>Workloads</h2>{workloads}\
         <h2>Events</h2><ol class=\"feed\" id=\"feed\" data-feed=\"node workload cluster\"></ol>",
        id = esc(node),
        summary = region(
            "summary",
            &format!("/f/node/{n}/summary"),
            "hb cluster node",
            summary
        ),
        cpu = chart("cpu", "node", "%", &[]),
        mem = chart("memory", "node", "MiB", &[]),
        workloads = region(
            "workloads",
            &format!("/f/node/{n}/workloads"),
            "workload",
            workloads
        ),
    ))
}

/// Node events, newest first, as the events page starts (cluster events follow live).
pub fn events_page(frame: &Frame, history: &[NodeEvent], now_ms: u64) -> String {
    let mut items = String::new();
    for ev in history.iter().rev().take(200) {
        items.push_str(&format!(
            "<li data-kind=\"node.{kind}\">{when} <a href=\"/node/{href}\">{node}</a> node {kind} {msg}</li>",
            when = ago(ev.ts_ms, now_ms),
            href = url(ev.node_id.as_str()),
            node = esc(ev.node_id.as_str()),
            kind = ev.kind.as_str(),
            msg = esc(ev.message.as_deref().unwrap_or("")),
        ));
    }
    frame.render(&format!(
        "<h1>Events</h1><p>Node liveness, run state and node events as they happen (the last hour of node events first).</p>\
         <ol class=\"feed\" id=\"feed\" data-feed=\"cluster node\">{items}</ol>"
    ))
}
