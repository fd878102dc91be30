//! The run catalog and a run's page: per-node progress, the task table as `herdctl run show`
//! has it, the statistics of `run show --summary`, and where its results are.

use super::html::{ago, bytes, esc, polled_region, region, secs, url, Frame};
use herd_bus::{RunComparison, RunList, RunRecord, RunStats, TaskStatus};
use std::collections::BTreeMap;

pub fn catalog(list: &RunList, now_ms: u64) -> String {
    let mut rows = String::new();
    for r in &list.runs {
        let tasks: Vec<String> = r.tasks.iter().map(|(s, n)| format!("{n} {s}")).collect();
        rows.push_str(&format!(
            "<tr data-run=\"{id}\" data-state=\"{state}\"><td><a href=\"/run/{href}\">{id}</a></td>\
             <td><span class=\"badge {state}\">{state}</span></td><td>{tasks}</td><td>{created}</td><td>{updated}</td></tr>",
            id = esc(r.run_id.as_str()),
            href = url(r.run_id.as_str()),
            state = r.state.as_str(),
            tasks = esc(&tasks.join(", ")),
            created = ago(r.created_at_ms, now_ms),
            updated = ago(r.updated_at_ms, now_ms),
        ));
    }
    format!(
        "<table class=\"runs\"><thead><tr><th>Run</th><th>State</th><th>Tasks</th><th>Submitted</th><th>Changed</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    )
}

pub fn catalog_page(frame: &Frame, table: &str) -> String {
    frame.render(&format!(
        "<h1>Runs</h1>{}",
        region("runs", "/f/runs", "cluster", table)
    ))
}

fn over(s: herd_bus::RunState) -> bool {
    use herd_bus::RunState::*;
    matches!(s, Completed | Failed | Stopped | StopFailed)
}

fn done(s: TaskStatus) -> bool {
    !matches!(s, TaskStatus::Pending | TaskStatus::Running)
}

/// Per node: tasks done of all, and counts by status.
fn progress(run: &RunRecord) -> String {
    let mut per_node: BTreeMap<&str, BTreeMap<&str, u32>> = BTreeMap::new();
    for t in &run.tasks {
        *per_node
            .entry(t.node_id.as_str())
            .or_default()
            .entry(t.status.as_str())
            .or_default() += 1;
    }
    let mut rows = String::new();
    for (node, counts) in &per_node {
        let total: u32 = counts.values().sum();
        let finished: u32 = run
            .tasks
            .iter()
            .filter(|t| t.node_id.as_str() == *node && done(t.status))
            .count() as u32;
        let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        rows.push_str(&format!(
            "<tr data-progress=\"{id}\" data-done=\"{finished}\" data-total=\"{total}\"><td><a href=\"/node/{href}\">{id}</a></td>\
             <td><progress max=\"{total}\" value=\"{finished}\"></progress> {finished} of {total}</td><td>{counts}</td></tr>",
            id = esc(node),
            href = url(node),
            counts = esc(&counts.join(", ")),
        ));
    }
    format!(
        "<table class=\"progress\"><thead><tr><th>Node</th><th>Progress</th><th>Tasks</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

/// A task's uploaded files, each a link to its bytes (the first 5; the rest counted).
fn results_cell(r: &herd_bus::TaskResults) -> String {
    let mut out = format!("{} files, {}", r.objects.len(), bytes(r.bytes));
    for o in r.objects.iter().take(5) {
        out.push_str(&format!(
            "<br><a href=\"/results/{}\" download>{}</a>",
            o.object.split('/').map(url).collect::<Vec<_>>().join("/"),
            esc(&o.path)
        ));
    }
    if r.objects.len() > 5 {
        out.push_str(&format!("<br>and {} more", r.objects.len() - 5));
    }
    if r.truncated {
        out.push_str("<br><span class=\"error\">truncated</span>");
    }
    out
}

fn tasks(run: &RunRecord) -> String {
    let mut rows = String::new();
    for t in &run.tasks {
        let workload = match &t.workload_id {
            Some(w) => format!(
                "<a href=\"/node/{}/workload/{}\">{}</a>",
                url(t.node_id.as_str()),
                url(w.as_str()),
                esc(w.as_str())
            ),
            None => String::new(),
        };
        let results = t.results.as_ref().map(results_cell).unwrap_or_default();
        rows.push_str(&format!(
            "<tr data-task=\"{id}\" data-status=\"{status}\"><td>{id}</td><td>{node}</td><td class=\"num\">{rep}</td>\
             <td><span class=\"badge {lower}\">{status}</span></td><td>{workload}</td><td class=\"num\">{duration}</td>\
             <td class=\"num\">{exit}</td><td>{error}</td><td>{results}</td></tr>",
            id = esc(&t.task_id),
            node = esc(t.node_id.as_str()),
            rep = t.rep,
            status = t.status.as_str(),
            lower = t.status.as_str().to_lowercase(),
            duration = t.duration_s.map(secs).unwrap_or_default(),
            exit = t.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            error = esc(t.error.as_deref().unwrap_or("")),
        ));
    }
    format!(
        "<table class=\"tasks\"><thead><tr><th>Task</th><th>Node</th><th>Rep</th><th>Status</th><th>Workload</th>\
         <th>Duration</th><th>Exit</th><th>Error</th><th>Results</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

fn summary(stats: &RunStats) -> String {
    let mut rows = String::new();
    for g in &stats.groups {
        let node = g
            .node_id
            .as_ref()
            .map(|n| n.as_str())
            .unwrap_or("all nodes");
        if g.metrics.is_empty() {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td colspan=\"5\"></td></tr>",
                esc(&g.workload),
                esc(node),
                g.completed,
                g.left_out
            ));
        }
        for (metric, m) in &g.metrics {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>\
                 <td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td><td class=\"num\">{}</td></tr>",
                esc(&g.workload),
                esc(node),
                g.completed,
                g.left_out,
                esc(metric),
                m.median,
                m.mean,
                m.stddev,
                m.cv.map(|c| format!("{:.1} %", c * 100.0)).unwrap_or_default()
            ));
        }
    }
    format!(
        "<table class=\"summary\"><thead><tr><th>Workload</th><th>Node</th><th>Completed</th><th>Left out</th>\
         <th>Metric</th><th>Median</th><th>Mean</th><th>Std dev</th><th>CV</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

/// Everything of a run that changes while it goes: one region, fetched again on its events.
pub fn run_body(run: &RunRecord, stats: Option<&RunStats>, now_ms: u64, actions: bool) -> String {
    let id = run.run_id.as_str();
    let stop = if actions && !over(run.state) {
        format!(
            " <button class=\"danger\" data-action=\"stop-run\" data-run=\"{}\">Stop run</button>",
            esc(id)
        )
    } else {
        String::new()
    };
    let queued = match &run.queued_reason {
        Some(why) if run.state == herd_bus::RunState::Queued => {
            format!("<p class=\"queued\">Waiting for room: {}</p>", esc(why))
        }
        _ => String::new(),
    };
    let unconfirmed = if run.unconfirmed_nodes.is_empty() {
        String::new()
    } else {
        let nodes: Vec<&str> = run.unconfirmed_nodes.iter().map(|n| n.as_str()).collect();
        format!(
            "<p class=\"error\">Nodes that did not confirm the stop: {}</p>",
            esc(&nodes.join(", "))
        )
    };
    let results = if run.tasks.iter().any(|t| t.results.is_some()) {
        format!(
            "<h2>Results</h2><p>Every task's files are in the <code>herd-results</code> bucket under <code>{id}/</code> \
             (links in the task table): <code>herdctl run fetch {id} --to DIR</code> brings them all, digests checked.</p>",
            id = esc(id)
        )
    } else {
        String::new()
    };
    let compare = format!(
        "<form class=\"filter\" method=\"get\" action=\"/compare\"><input type=\"hidden\" name=\"a\" value=\"{}\">\
         <label>Compare with run <input name=\"b\" placeholder=\"run id\" required></label><button>Compare</button></form>",
        esc(id)
    );
    format!(
        "<p class=\"run-state\" data-run=\"{eid}\" data-state=\"{state}\" data-settled=\"{settled}\"><span class=\"badge {state}\">{state}</span> \
         submitted {created}, changed {updated}{stop}</p>{queued}{unconfirmed}\
         <h2>Progress</h2>{progress}<h2>Tasks</h2>{tasks}<h2>Summary</h2>{summary}{compare}{results}",
        eid = esc(id),
        state = run.state.as_str(),
        // Over, and its journal unchanged for a minute: nothing more will come in.
        settled = over(run.state) && now_ms.saturating_sub(run.updated_at_ms) > 60_000,
        created = ago(run.created_at_ms, now_ms),
        updated = ago(run.updated_at_ms, now_ms),
        progress = progress(run),
        tasks = tasks(run),
        summary = stats.map(summary).unwrap_or_default(),
    )
}

pub fn run_page(frame: &Frame, run: &RunRecord, body: &str) -> String {
    let line = |w: &herd_bus::WorkloadSpec| {
        w.image
            .iter()
            .chain(w.command.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    };
    // A suite: its workloads' names, with the phases around them.
    let what = if run.spec.workloads.is_empty() {
        line(&run.spec.workload)
    } else {
        let names: Vec<&str> = run
            .spec
            .workloads
            .iter()
            .filter_map(|w| w.name.as_deref())
            .collect();
        format!(
            "{}{}{}",
            if run.spec.setup.is_some() {
                "setup → "
            } else {
                ""
            },
            names.join(", "),
            if run.spec.teardown.is_some() {
                " → teardown"
            } else {
                ""
            }
        )
    };
    frame.render(&format!(
        "<h1>Run {id}</h1><p><code>{cmd}</code> × {reps} repetitions</p>{body}",
        id = esc(run.run_id.as_str()),
        cmd = esc(&what),
        reps = run.spec.repetitions,
        // Results reach the journal after the tasks end: polled until the run has settled.
        body = polled_region(
            "run",
            &format!("/f/run/{}", url(run.run_id.as_str())),
            "workload cluster results",
            2000,
            body
        ),
    ))
}

/// `herdctl run compare A B` as a page: each figure side by side with its change and test.
pub fn compare_page(frame: &Frame, cmp: &RunComparison) -> String {
    let mut rows = String::new();
    let stat = |m: &Option<herd_bus::MetricStats>| {
        m.as_ref()
            .map(|m| format!("{:.4} ± {:.4} (n={})", m.mean, m.stddev, m.n))
            .unwrap_or_else(|| "–".into())
    };
    for r in &cmp.rows {
        rows.push_str(&format!(
            "<tr data-metric=\"{metric}\" data-significant=\"{sig}\"><td>{workload}</td><td>{kind}</td><td>{metric}</td>\
             <td class=\"num\">{a}</td><td class=\"num\">{b}</td><td class=\"num\">{change}</td><td class=\"num\">{p}</td>\
             <td>{verdict}</td><td>{note}</td></tr>",
            workload = esc(&r.workload),
            kind = r.kind.as_str(),
            metric = esc(&r.metric),
            sig = r.significant,
            a = stat(&r.a),
            b = stat(&r.b),
            change = r.change.map(|c| format!("{:+.1} %", c * 100.0)).unwrap_or_default(),
            p = r.p_value.map(|p| format!("{p:.4}")).unwrap_or_default(),
            verdict = if r.significant { "significant" } else { "" },
            note = esc(r.note.as_deref().unwrap_or("")),
        ));
    }
    frame.render(&format!(
        "<h1>Run <a href=\"/run/{ha}\">{a}</a> → <a href=\"/run/{hb}\">{b}</a></h1>\
         <p>Change of the mean from A to B; Welch's t-test, significant at p &lt; {alpha}.</p>\
         <table class=\"compare\"><thead><tr><th>Workload</th><th>Kind</th><th>Figure</th><th>A</th><th>B</th>\
         <th>Change</th><th>p</th><th></th><th>Note</th></tr></thead><tbody>{rows}</tbody></table>",
        a = esc(cmp.run_a.as_str()),
        b = esc(cmp.run_b.as_str()),
        ha = url(cmp.run_a.as_str()),
        hb = url(cmp.run_b.as_str()),
        alpha = cmp.alpha,
    ))
}
