//! A run's figures: its statistics (`run show --summary`) and two runs compared (`run
//! compare`), as tables, `--json` or `--csv`. The coordinator computes; herdctl prints.

use crate::ctl::Ctl;
use crate::render::{human_bytes, out, state_name, Table};
use herd_bus::{
    ClusterVerb, MetricStats, RunCompare, RunComparison, RunId, RunRef, RunStats, StatsGroup,
};
use std::process::ExitCode;

pub async fn summary(ctl: &Ctl, run_id: &str, csv: bool) -> anyhow::Result<ExitCode> {
    if csv && ctl.json {
        anyhow::bail!("--csv and --json: choose one");
    }
    let run_id = RunId::new(run_id)?;
    let stats: RunStats = ctl
        .cluster(ClusterVerb::RunSummary, &RunRef { run_id })
        .await?;
    if ctl.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&stats)?));
    } else if csv {
        out(&summary_csv(&stats));
    } else {
        out(&summary_table(&stats));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn compare(
    ctl: &Ctl,
    run_a: &str,
    run_b: &str,
    alpha: f64,
    csv: bool,
) -> anyhow::Result<ExitCode> {
    if csv && ctl.json {
        anyhow::bail!("--csv and --json: choose one");
    }
    let request = RunCompare {
        run_a: RunId::new(run_a)?,
        run_b: RunId::new(run_b)?,
        alpha: Some(alpha),
    };
    let c: RunComparison = ctl.cluster(ClusterVerb::RunCompare, &request).await?;
    if ctl.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&c)?));
    } else if csv {
        out(&comparison_csv(&c));
    } else {
        out(&comparison_table(&c));
    }
    Ok(ExitCode::SUCCESS)
}

/// Four significant digits, without an exponent for everyday magnitudes.
fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor();
    if !(-3.0..6.0).contains(&magnitude) {
        return format!("{v:.3e}");
    }
    let decimals = (3.0 - magnitude).max(0.0) as usize;
    format!("{v:.decimals$}")
}

/// A figure's value in its unit, known from its name: bytes, seconds, percent.
fn figure(name: &str, v: f64) -> String {
    if name.ends_with("_bytes") && v >= 0.0 {
        human_bytes(v.round() as u64)
    } else if name.ends_with("_s") {
        format!("{}s", number(v))
    } else if name.ends_with("_pct") {
        format!("{}%", number(v))
    } else {
        number(v)
    }
}

fn node_name(g: &StatsGroup) -> String {
    g.node_id
        .as_ref()
        .map_or_else(|| "all".to_string(), |n| n.to_string())
}

/// Every figure of a group: (kind, name, stats), metrics first.
fn figures(g: &StatsGroup) -> impl Iterator<Item = (&'static str, &String, &MetricStats)> {
    let metrics = g.metrics.iter().map(|(k, s)| ("metric", k, s));
    metrics.chain(g.resources.iter().map(|(k, s)| ("resource", k, s)))
}

pub fn summary_table(stats: &RunStats) -> String {
    let mut text = format!("run {} is {}\n", stats.run_id, state_name(stats.state));
    let mut t = Table::new(&[
        "WORKLOAD", "NODE", "FIGURE", "N", "MEAN", "MEDIAN", "STDDEV", "MIN", "MAX", "CV",
    ]);
    let mut notes = Vec::new();
    for g in &stats.groups {
        let node = node_name(g);
        for (_, name, s) in figures(g) {
            let f = |v: f64| figure(name, v);
            t.row(vec![
                g.workload.clone(),
                node.clone(),
                name.clone(),
                s.n.to_string(),
                f(s.mean),
                f(s.median),
                f(s.stddev),
                f(s.min),
                f(s.max),
                s.cv.map(|cv| format!("{:.1}%", cv * 100.0))
                    .unwrap_or_default(),
            ]);
        }
        // The group across nodes holds every task's notes; per-node groups repeat them.
        if g.node_id.is_none() {
            if g.left_out > 0 {
                notes.push(format!(
                    "{}: {} of {} tasks did not complete and are left out",
                    g.workload,
                    g.left_out,
                    g.completed + g.left_out
                ));
            }
            notes.extend(g.notes.iter().map(|n| format!("{}: {n}", g.workload)));
        }
    }
    if stats.groups.iter().all(|g| figures(g).next().is_none()) {
        text += "no figures yet: no task has completed with a measurement\n";
    } else {
        text += &t.render();
    }
    for n in notes {
        text += &format!("note: {n}\n");
    }
    text
}

/// `mean±stddev (n)`, or `-` when the run has no such figure.
fn mean_of(name: &str, s: Option<&MetricStats>) -> String {
    match s {
        Some(s) => format!(
            "{}±{} ({})",
            figure(name, s.mean),
            figure(name, s.stddev),
            s.n
        ),
        None => "-".into(),
    }
}

fn p_value(p: f64) -> String {
    if p == 0.0 {
        "0".into()
    } else if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

pub fn comparison_table(c: &RunComparison) -> String {
    let mut text = format!(
        "A = run {}, B = run {}; significant: p < {} (Welch's t-test)\n",
        c.run_a, c.run_b, c.alpha
    );
    let with_notes = c.rows.iter().any(|r| r.note.is_some());
    let mut header = vec![
        "WORKLOAD",
        "KIND",
        "FIGURE",
        "A",
        "B",
        "CHANGE",
        "P",
        "SIGNIFICANT",
    ];
    if with_notes {
        header.push("NOTE");
    }
    let mut t = Table::new(&header);
    for r in &c.rows {
        let mut cells = vec![
            r.workload.clone(),
            r.kind.as_str().into(),
            r.metric.clone(),
            mean_of(&r.metric, r.a.as_ref()),
            mean_of(&r.metric, r.b.as_ref()),
            r.change
                .map(|c| format!("{:+.1}%", c * 100.0))
                .unwrap_or_default(),
            r.p_value.map(p_value).unwrap_or_default(),
            if r.significant { "yes" } else { "no" }.into(),
        ];
        if with_notes {
            cells.push(r.note.clone().unwrap_or_default());
        }
        t.row(cells);
    }
    if c.rows.is_empty() {
        text += "no figures to compare: neither run has a completed task with a measurement\n";
    } else {
        text += &t.render();
    }
    text
}

/// One CSV field: quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_line(fields: &[String]) -> String {
    let fields: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    fields.join(",") + "\n"
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

pub fn summary_csv(stats: &RunStats) -> String {
    let mut text = csv_line(
        &[
            "run", "workload", "node", "kind", "figure", "n", "mean", "median", "stddev", "min",
            "max", "cv",
        ]
        .map(String::from),
    );
    for g in &stats.groups {
        for (kind, name, s) in figures(g) {
            text += &csv_line(&[
                stats.run_id.to_string(),
                g.workload.clone(),
                node_name(g),
                kind.into(),
                name.clone(),
                s.n.to_string(),
                s.mean.to_string(),
                s.median.to_string(),
                s.stddev.to_string(),
                s.min.to_string(),
                s.max.to_string(),
                opt(s.cv),
            ]);
        }
    }
    text
}

pub fn comparison_csv(c: &RunComparison) -> String {
    let mut text = csv_line(
        &[
            "run_a",
            "run_b",
            "workload",
            "kind",
            "figure",
            "a_n",
            "a_mean",
            "a_stddev",
            "b_n",
            "b_mean",
            "b_stddev",
            "change",
            "p_value",
            "significant",
            "test",
            "note",
        ]
        .map(String::from),
    );
    let side = |s: &Option<MetricStats>| match s {
        Some(s) => [s.n.to_string(), s.mean.to_string(), s.stddev.to_string()],
        None => Default::default(),
    };
    for r in &c.rows {
        let mut fields = vec![
            c.run_a.to_string(),
            c.run_b.to_string(),
            r.workload.clone(),
            r.kind.as_str().into(),
            r.metric.clone(),
        ];
        fields.extend(side(&r.a));
        fields.extend(side(&r.b));
        fields.extend([
            opt(r.change),
            opt(r.p_value),
            r.significant.to_string(),
            r.test.clone(),
            r.note.clone().unwrap_or_default(),
        ]);
        text += &csv_line(&fields);
    }
    text
}

#[cfg(test)]
mod tests;
