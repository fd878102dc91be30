//! A RunSpec as a campaign: its own checks (the same in `herdctl`, before anything is uploaded,
//! and in the coordinator), and its expansion into the workloads each node runs — setup, every
//! variant of every workload, teardown.
//!
//! A workload with a `matrix` is run once per combination of its axes' values (a variant,
//! named `name[axis=value,…]`, axes in alphabetical order). Each variant sees its values as
//! `HERD_PARAM_<AXIS>` and as `{axis}` placeholders in its command and env values; `{{` and
//! `}}` stand for literal braces, and `${…}` is left to the shell. A workload without a matrix
//! is taken as written.

use crate::messages::{ParamValue, RunSpec, TaskPhase, WorkloadSpec};
use std::collections::{BTreeMap, BTreeSet};

/// Most variants a workload's matrix may expand into.
pub const MAX_VARIANTS: usize = 1000;
/// Most tasks a run may give one node.
pub const MAX_TASKS_PER_NODE: u64 = 100_000;

/// Names a suite workload may not take: they name the phases.
const RESERVED: [&str; 2] = ["setup", "teardown"];

/// One workload as a node runs it: a phase, or a variant of a suite workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// `setup`, `teardown`, the workload's name, or `name[axis=value,…]`.
    pub name: String,
    pub phase: TaskPhase,
    /// Its spec, placeholders replaced and `HERD_PARAM_*` set; `matrix` and `retries` cleared.
    pub spec: WorkloadSpec,
    /// Automatic retries of a failed task.
    pub retries: u32,
}

/// The spec's own errors, whatever the fleet: the first problem, named by its field.
pub fn check_run_spec(spec: &RunSpec) -> Result<(), String> {
    if spec.repetitions == 0 || spec.repetitions > 10_000 {
        return Err(format!(
            "repetitions: must be between 1 and 10000, got {}",
            spec.repetitions
        ));
    }
    if let Some(t) = spec
        .stop_timeout_s
        .filter(|t| !t.is_finite() || *t <= 0.0 || *t > 3600.0)
    {
        return Err(format!(
            "stop_timeout_s: must be between 0 and 3600, got {t}"
        ));
    }
    if spec.max_parallel == Some(0) {
        return Err("max_parallel: must be ≥ 1".into());
    }
    let t = &spec.targets;
    match (t.nodes.is_empty(), t.count) {
        (true, None) => {
            return Err("targets: give nodes, or count (with labels and a strategy)".into())
        }
        (false, Some(_)) => return Err("targets: give nodes or count, not both".into()),
        (true, Some(0)) => return Err("targets.count: must be ≥ 1".into()),
        _ => {}
    }
    if let Some(problem) = crate::messages::inputs_problem(&spec.inputs) {
        return Err(format!("inputs: {problem}"));
    }
    if spec.workloads.is_empty() {
        if spec.workload.is_unset() {
            return Err(
                "workload.command: must not be empty (give a workload, or a suite in workloads)"
                    .into(),
            );
        }
        check_workload("workload", &spec.workload)?;
    } else {
        if !spec.workload.is_unset() {
            return Err("workload: give one workload, or a suite in workloads, not both".into());
        }
        let mut names = BTreeSet::new();
        for (i, w) in spec.workloads.iter().enumerate() {
            let field = format!("workloads[{i}]");
            let Some(name) = w.name.as_deref() else {
                return Err(format!("{field}.name: a suite's workloads are named"));
            };
            check_name(&format!("{field}.name"), name)?;
            if RESERVED.contains(&name) {
                return Err(format!(
                    "{field}.name: '{name}' names a phase; give setup and teardown as their own keys"
                ));
            }
            if !names.insert(name) {
                return Err(format!("{field}.name: '{name}' is used twice"));
            }
            check_workload(&format!("workloads.{name}"), w)?;
        }
    }
    for (key, phase) in [("setup", &spec.setup), ("teardown", &spec.teardown)] {
        if let Some(w) = phase {
            check_workload(key, w)?;
            if !w.matrix.is_empty() {
                return Err(format!("{key}.matrix: a phase runs once per node"));
            }
            if w.retries.is_some() {
                return Err(format!("{key}.retries: a phase runs once per node"));
            }
        }
    }
    let per_node: u64 = variants(spec)
        .iter()
        .filter(|v| v.phase == TaskPhase::Workloads)
        .count() as u64
        * u64::from(spec.repetitions);
    if per_node > MAX_TASKS_PER_NODE {
        return Err(format!(
            "workloads: {per_node} tasks per node (variants × repetitions), at most {MAX_TASKS_PER_NODE}"
        ));
    }
    Ok(())
}

fn check_name(field: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: '{name}' must be 1–64 letters, digits, '.', '_' or '-'"
        ))
    }
}

fn check_workload(field: &str, w: &WorkloadSpec) -> Result<(), String> {
    if w.command.is_empty() && w.image.is_none() {
        return Err(format!("{field}.command: must not be empty"));
    }
    if w.workload_id.is_some() || w.run_id.is_some() || w.rep.is_some() {
        return Err(format!(
            "{field}: workload_id, run_id and rep are set by the run"
        ));
    }
    if !w.inputs.is_empty() {
        return Err(format!(
            "{field}.inputs: inputs belong to the run (herdctl run submit --input)"
        ));
    }
    if w.retries.is_some_and(|r| r > 100) {
        return Err(format!("{field}.retries: at most 100"));
    }
    let mut count: usize = 1;
    for (axis, values) in &w.matrix {
        let ok = !axis.is_empty()
            && axis.len() <= 32
            && axis.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && axis.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(format!(
                "{field}.matrix: axis '{axis}' must be a letter or '_' then letters, digits or '_'"
            ));
        }
        if values.is_empty() {
            return Err(format!(
                "{field}.matrix.{axis}: an axis needs at least one value"
            ));
        }
        let mut seen = BTreeSet::new();
        for v in values {
            let text = v.to_string();
            if text.is_empty() || text.contains([',', ']', '\n']) {
                return Err(format!(
                    "{field}.matrix.{axis}: '{text}' must be non-empty, without ',', ']' or newlines"
                ));
            }
            if !seen.insert(text.clone()) {
                return Err(format!("{field}.matrix.{axis}: '{text}' is listed twice"));
            }
        }
        count = count.saturating_mul(values.len());
    }
    if count > MAX_VARIANTS {
        return Err(format!(
            "{field}.matrix: {count} variants, at most {MAX_VARIANTS}"
        ));
    }
    if !w.matrix.is_empty() {
        let texts = w.command.iter().chain(w.env.values());
        for text in texts {
            for p in placeholders(text) {
                if !w.matrix.contains_key(&p) {
                    return Err(format!(
                        "{field}: placeholder {{{p}}} names no matrix axis (axes: {})",
                        w.matrix.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The placeholders of `text`: `{name}` not preceded by `$`; `{{`/`}}` are literal braces.
fn placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    substitute(text, |name| {
        found.push(name.to_string());
        Some(String::new())
    });
    found
}

/// `text` with each placeholder replaced by `value(name)`; `None` keeps it as written.
fn substitute(text: &str, mut value: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    let mut prev = '\0';
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                out.push('{');
                prev = '{';
                continue;
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                out.push('}');
                prev = '}';
                continue;
            }
            '{' if prev != '$' => {
                let rest = &text[i + 1..];
                let end = rest.find('}');
                let name = end.map(|e| &rest[..e]);
                let is_name = name.is_some_and(|n| {
                    !n.is_empty()
                        && n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
                if let (true, Some(n), Some(e)) = (is_name, name, end) {
                    match value(n) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(&text[i..i + e + 2]),
                    }
                    for _ in 0..e + 1 {
                        chars.next();
                    }
                    prev = '}';
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
        prev = c;
    }
    out
}

/// What each node runs, in the order of the spec: setup, each workload's variants, teardown.
/// The single-workload form is one workload named by its `name` (default `task`).
pub fn variants(spec: &RunSpec) -> Vec<Variant> {
    let mut out = Vec::new();
    if let Some(w) = &spec.setup {
        out.push(phase("setup", TaskPhase::Setup, w));
    }
    let suite: Vec<&WorkloadSpec> = if spec.workloads.is_empty() {
        vec![&spec.workload]
    } else {
        spec.workloads.iter().collect()
    };
    for w in suite {
        let name = w.name.clone().unwrap_or_else(|| "task".into());
        for params in combinations(&w.matrix) {
            out.push(variant(&name, w, &params));
        }
    }
    if let Some(w) = &spec.teardown {
        out.push(phase("teardown", TaskPhase::Teardown, w));
    }
    out
}

fn phase(name: &str, phase: TaskPhase, w: &WorkloadSpec) -> Variant {
    let mut spec = w.clone();
    spec.name = Some(name.into());
    Variant {
        name: name.into(),
        phase,
        spec,
        retries: 0,
    }
}

/// Every combination of the axes' values, axes in alphabetical order, the last varying fastest.
fn combinations(matrix: &BTreeMap<String, Vec<ParamValue>>) -> Vec<Vec<(String, String)>> {
    let mut combos: Vec<Vec<(String, String)>> = vec![vec![]];
    for (axis, values) in matrix {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((axis.clone(), v.to_string()));
                    c
                })
            })
            .collect();
    }
    combos
}

fn variant(name: &str, w: &WorkloadSpec, params: &[(String, String)]) -> Variant {
    let mut spec = w.clone();
    let retries = spec.retries.take().unwrap_or(0);
    spec.matrix.clear();
    if params.is_empty() {
        return Variant {
            name: name.into(),
            phase: TaskPhase::Workloads,
            spec,
            retries,
        };
    }
    let full = format!(
        "{name}[{}]",
        params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let lookup = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let fill = |s: &String| substitute(s, lookup);
    spec.command = spec.command.iter().map(fill).collect();
    for v in spec.env.values_mut() {
        *v = fill(v);
    }
    for (k, v) in params {
        spec.env
            .insert(format!("HERD_PARAM_{}", k.to_ascii_uppercase()), v.clone());
    }
    spec.name = Some(full.clone());
    Variant {
        name: full,
        phase: TaskPhase::Workloads,
        spec,
        retries,
    }
}

mod diff;
pub use diff::differences;

#[cfg(test)]
mod tests;
