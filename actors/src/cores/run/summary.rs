//! A run's statistics and the comparison of two runs, from their journals: per workload, over
//! the completed tasks, each metric of the tasks' `metrics.json` and each figure the nodes
//! measured, described ([`stats::describe`]) across nodes and per node; two runs compared figure
//! by figure with Welch's t-test ([`stats::welch`]).

use crate::cores::stats::{self, Welch};
use herd_bus::{
    FigureKind, MetricComparison, MetricStats, NodeId, RunComparison, RunRecord, RunStats,
    StatsGroup, TaskRecord, TaskStatus, DEFAULT_SIGNIFICANCE_LEVEL,
};
use std::collections::BTreeMap;

/// The figures measured by the nodes, by name: wall time, CPU time (user + system), mean CPU
/// (100 = one core), peak memory and processes, bytes read and written, GPU use.
pub fn resource_figures(task: &TaskRecord) -> Vec<(&'static str, f64)> {
    let mut figures = Vec::new();
    if let Some(d) = task.duration_s {
        figures.push(("duration_s", d));
    }
    let Some(r) = &task.resources else {
        return figures;
    };
    figures.push(("cpu_s", r.cpu_user_s + r.cpu_system_s));
    let optional = [
        ("cpu_mean_pct", r.cpu_mean_pct),
        ("memory_peak_bytes", r.memory_peak_bytes.map(|b| b as f64)),
        ("pids_peak", r.pids_peak.map(|p| p as f64)),
        ("gpu_util_mean_pct", r.gpu_util_mean_pct),
        (
            "gpu_memory_peak_bytes",
            r.gpu_memory_peak_bytes.map(|b| b as f64),
        ),
    ];
    figures.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    figures.push(("io_read_bytes", r.io_read_bytes as f64));
    figures.push(("io_write_bytes", r.io_write_bytes as f64));
    figures
}

/// The workload a task belongs to: the `name` of its id `node::name::rep`, else the run's.
fn workload_name(run: &RunRecord, task: &TaskRecord) -> String {
    let from_id = task
        .task_id
        .strip_prefix(task.node_id.as_str())
        .and_then(|rest| rest.strip_prefix("::"))
        .and_then(|rest| rest.strip_suffix(&format!("::{}", task.rep)))
        .filter(|name| !name.is_empty());
    match from_id {
        Some(name) => name.to_string(),
        None => run
            .spec
            .workload
            .name
            .clone()
            .unwrap_or_else(|| "task".into()),
    }
}

/// The values of one group's tasks, before they are described.
#[derive(Default)]
struct Collected {
    completed: u32,
    left_out: u32,
    /// Completed tasks whose node has not uploaded their results (yet).
    without_results: u32,
    metrics: BTreeMap<String, Vec<f64>>,
    resources: BTreeMap<String, Vec<f64>>,
    notes: Vec<String>,
}

impl Collected {
    fn add(&mut self, task: &TaskRecord) {
        if task.status != TaskStatus::Completed {
            self.left_out += 1;
            return;
        }
        self.completed += 1;
        for (name, value) in resource_figures(task) {
            self.resources.entry(name.into()).or_default().push(value);
        }
        match &task.results {
            None => self.without_results += 1,
            Some(results) => {
                for (name, value) in &results.metrics {
                    self.metrics.entry(name.clone()).or_default().push(*value);
                }
                if let Some(e) = &results.metrics_error {
                    self.notes
                        .push(format!("{}: metrics.json: {e}", task.task_id));
                }
            }
        }
    }

    fn describe(mut self, workload: &str, node_id: Option<NodeId>) -> StatsGroup {
        if self.without_results > 0 {
            self.notes.push(format!(
                "{} of {} completed tasks have no uploaded results (yet)",
                self.without_results, self.completed
            ));
        }
        let describe_all = |m: BTreeMap<String, Vec<f64>>| {
            m.into_iter()
                .filter_map(|(k, v)| Some((k, stats::describe(&v)?)))
                .collect()
        };
        StatsGroup {
            workload: workload.to_string(),
            node_id,
            completed: self.completed,
            left_out: self.left_out,
            metrics: describe_all(self.metrics),
            resources: describe_all(self.resources),
            notes: self.notes,
        }
    }
}

/// `cluster.run.summary`: per workload variant (in the order of the journal), its group across
/// nodes, then one per node when it ran on more than one. Setup and teardown are not measured
/// work: their outcomes are in the journal, not here.
pub fn run_stats(run: &RunRecord) -> RunStats {
    let mut workloads: Vec<(String, Vec<&TaskRecord>)> = Vec::new();
    for task in run
        .tasks
        .iter()
        .filter(|t| t.phase == herd_bus::TaskPhase::Workloads)
    {
        let name = task
            .workload
            .clone()
            .unwrap_or_else(|| workload_name(run, task));
        match workloads.iter_mut().find(|(w, _)| *w == name) {
            Some((_, tasks)) => tasks.push(task),
            None => workloads.push((name, vec![task])),
        }
    }
    let mut groups = Vec::new();
    for (workload, tasks) in workloads {
        let mut across = Collected::default();
        let mut nodes: Vec<(NodeId, Collected)> = Vec::new();
        for task in tasks {
            across.add(task);
            let i = match nodes.iter().position(|(n, _)| *n == task.node_id) {
                Some(i) => i,
                None => {
                    nodes.push((task.node_id.clone(), Collected::default()));
                    nodes.len() - 1
                }
            };
            nodes[i].1.add(task);
        }
        groups.push(across.describe(&workload, None));
        if nodes.len() > 1 {
            for (node, collected) in nodes {
                groups.push(collected.describe(&workload, Some(node)));
            }
        }
    }
    RunStats {
        run_id: run.run_id.clone(),
        state: run.state,
        groups,
    }
}

/// The significance level a comparison asked for, or the default; it must lie in (0, 1).
pub fn significance_level(alpha: Option<f64>) -> Result<f64, String> {
    match alpha {
        None => Ok(DEFAULT_SIGNIFICANCE_LEVEL),
        Some(a) if a > 0.0 && a < 1.0 => Ok(a),
        Some(a) => Err(format!("alpha: must lie between 0 and 1, got {a}")),
    }
}

/// `cluster.run.compare`: run B against run A, per workload across nodes, every figure either
/// has (metrics first, then resources, each by name). Two runs of one workload each are
/// compared whatever their workloads are named.
pub fn compare(a: &RunStats, b: &RunStats, alpha: f64) -> RunComparison {
    let across = |s: &'_ RunStats| -> Vec<StatsGroup> {
        s.groups
            .iter()
            .filter(|g| g.node_id.is_none())
            .cloned()
            .collect()
    };
    let (groups_a, groups_b) = (across(a), across(b));
    let mut pairs: Vec<(String, Option<StatsGroup>, Option<StatsGroup>)> = Vec::new();
    if let ([ga], [gb]) = (&groups_a[..], &groups_b[..]) {
        let name = if ga.workload == gb.workload {
            ga.workload.clone()
        } else {
            format!("{} → {}", ga.workload, gb.workload)
        };
        pairs.push((name, Some(ga.clone()), Some(gb.clone())));
    } else {
        for ga in &groups_a {
            let gb = groups_b.iter().find(|g| g.workload == ga.workload);
            pairs.push((ga.workload.clone(), Some(ga.clone()), gb.cloned()));
        }
        for gb in groups_b
            .iter()
            .filter(|gb| !groups_a.iter().any(|ga| ga.workload == gb.workload))
        {
            pairs.push((gb.workload.clone(), None, Some(gb.clone())));
        }
    }
    let mut rows = Vec::new();
    for (workload, ga, gb) in pairs {
        for kind in [FigureKind::Metric, FigureKind::Resource] {
            let figures = |g: &Option<StatsGroup>| -> BTreeMap<String, MetricStats> {
                g.as_ref()
                    .map(|g| match kind {
                        FigureKind::Metric => g.metrics.clone(),
                        FigureKind::Resource => g.resources.clone(),
                    })
                    .unwrap_or_default()
            };
            let (mut fa, mut fb) = (figures(&ga), figures(&gb));
            let mut names: Vec<String> = fa.keys().chain(fb.keys()).cloned().collect();
            names.sort();
            names.dedup();
            for metric in names {
                let (sa, sb) = (fa.remove(&metric), fb.remove(&metric));
                rows.push(compare_figure(&workload, kind, metric, sa, sb, alpha));
            }
        }
    }
    RunComparison {
        run_a: a.run_id.clone(),
        run_b: b.run_id.clone(),
        alpha,
        rows,
    }
}

fn compare_figure(
    workload: &str,
    kind: FigureKind,
    metric: String,
    a: Option<MetricStats>,
    b: Option<MetricStats>,
    alpha: f64,
) -> MetricComparison {
    let mut row = MetricComparison {
        workload: workload.to_string(),
        kind,
        metric,
        a: None,
        b: None,
        change: None,
        p_value: None,
        significant: false,
        test: "none".into(),
        note: None,
    };
    let (sa, sb) = match (a, b) {
        (Some(sa), Some(sb)) => (sa, sb),
        (a, b) => {
            row.note = Some(format!(
                "only in run {}",
                if a.is_some() { "A" } else { "B" }
            ));
            row.a = a;
            row.b = b;
            return row;
        }
    };
    row.change = (sa.mean != 0.0).then(|| (sb.mean - sa.mean) / sa.mean.abs());
    let outcome = stats::welch(&sa, &sb);
    match outcome {
        Welch::Tested { p, .. } => {
            row.test = "welch_t".into();
            row.p_value = Some(p);
        }
        Welch::NoVariance { p } => {
            row.test = "welch_t".into();
            row.p_value = Some(p);
            row.note = Some(
                if p == 1.0 {
                    "every repetition of both runs gave this same value"
                } else {
                    "no variance: each run gave one value every repetition, and they differ"
                }
                .into(),
            );
        }
        Welch::TooFew => {
            row.note = Some(format!(
                "a test needs 2 or more values in each run (A has {}, B has {})",
                sa.n, sb.n
            ));
        }
        Welch::Failed(e) => row.note = Some(e.to_string()),
    }
    row.significant = row.p_value.is_some_and(|p| p < alpha);
    row.a = Some(sa);
    row.b = Some(sb);
    row
}

#[cfg(test)]
mod tests;
