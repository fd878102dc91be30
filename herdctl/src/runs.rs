//! Runs across nodes: submit (and follow), show, stop, and the catalog.

use crate::args::SubmitArgs;
use crate::ctl::Ctl;
use crate::render::{
    human_duration, now_ms, out, progress, queued_line, state_name, task_table, Table,
};
use anyhow::Context;
use herd_bus::{
    ClusterVerb, NodeId, RunId, RunList, RunListQuery, RunRecord, RunRef, RunRetried, RunRetry,
    RunSpec, RunState, RunSubmitted, TaskStatus,
};
use std::process::ExitCode;
use std::time::Duration;

pub async fn submit(ctl: &Ctl, a: SubmitArgs) -> anyhow::Result<ExitCode> {
    let mut spec: RunSpec = match &a.file {
        Some(path) => read_run_file(path)?,
        None => RunSpec::default(),
    };
    // Read and hashed before anything reaches NATS: a bad --input uploads nothing.
    let local_inputs = crate::inputs::collect(&a.inputs)?;
    if let Some(i) = local_inputs
        .iter()
        .find(|i| spec.inputs.iter().any(|f| f.path == i.file.path))
    {
        anyhow::bail!(
            "--input {}: the run file already lists an input {}",
            i.source.display(),
            i.file.path
        );
    }
    if let Some(id) = a.id {
        spec.run_id = Some(RunId::new(id)?);
    }
    if !a.nodes.is_empty() {
        spec.targets.nodes = a
            .nodes
            .into_iter()
            .map(NodeId::new)
            .collect::<Result<_, _>>()?;
    }
    if a.count.is_some() {
        spec.targets.count = a.count;
    }
    spec.targets.labels.extend(a.labels);
    if let Some(s) = a.strategy {
        spec.targets.strategy = serde_json::from_value(serde_json::Value::String(s))
            .map_err(|_| anyhow::anyhow!("--strategy is one of spread, binpack, round_robin"))?;
    }
    if let Some(r) = a.reps {
        spec.repetitions = r;
    }
    let w = &mut spec.workload;
    if !a.command.is_empty() {
        w.command = a.command;
    }
    w.name = a.name.or(w.name.take());
    a.workload.apply(w);
    w.collect &= !a.no_collect;
    spec.stop_timeout_s = a.stop_timeout.or(spec.stop_timeout_s);
    spec.priority = a.priority.or(spec.priority);
    if a.no_queue {
        spec.queue = Some(false);
    }
    // Checked before any upload: a bad run file sends nothing.
    herd_bus::campaign::check_run_spec(&spec).map_err(|e| match &a.file {
        Some(path) => anyhow::anyhow!("{}: {e}", path.display()),
        None => anyhow::anyhow!("{e}"),
    })?;
    let (inputs, _) = crate::inputs::upload(&ctl.client, &local_inputs, ctl.replicas).await?;
    spec.inputs.extend(inputs);
    let submitted: RunSubmitted = ctl.cluster(ClusterVerb::RunSubmit, &spec).await?;
    if !a.follow {
        out(&format!("{}\n", submitted.run_id));
        if let Ok(run) = get_run(ctl, &submitted.run_id).await {
            if run.state == RunState::Queued {
                eprint!("herdctl: run {} is {}", run.run_id, queued_line(&run));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    follow(ctl, &submitted.run_id).await
}

/// A run file, TOML or JSON (a file starting with `{`): a key that no RunSpec has (a misspelt
/// phase, a workload field that does not exist) is refused, naming it.
fn read_run_file(path: &std::path::Path) -> anyhow::Result<RunSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut unknown = Vec::new();
    let note = |p: serde_ignored::Path| unknown.push(key_path(&p.to_string()));
    let spec: RunSpec = if text.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(&text);
        serde_ignored::deserialize(&mut de, note).with_context(|| format!("{}", path.display()))?
    } else {
        let de = toml::Deserializer::parse(&text).with_context(|| format!("{}", path.display()))?;
        serde_ignored::deserialize(de, note).with_context(|| format!("{}", path.display()))?
    };
    if !unknown.is_empty() {
        anyhow::bail!(
            "{}: unknown key{} {} (see docs/bus.md for a RunSpec's fields)",
            path.display(),
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", ")
        );
    }
    Ok(spec)
}

/// serde_ignored's path as the run file writes it: `teardown.comand` (not `teardown.?.comand`),
/// `workloads[1].comand` (not `workloads.1.comand`).
fn key_path(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('.').filter(|s| *s != "?") {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out += &format!("[{seg}]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out += seg;
        }
    }
    out
}

pub(crate) async fn get_run(ctl: &Ctl, run_id: &RunId) -> anyhow::Result<RunRecord> {
    ctl.cluster(
        ClusterVerb::RunGet,
        &RunRef {
            run_id: run_id.clone(),
        },
    )
    .await
}

/// Per-node progress until the run settles; Ctrl-C once warns, twice stops the run.
async fn follow(ctl: &Ctl, run_id: &RunId) -> anyhow::Result<ExitCode> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut warned = false;
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => {
                if !warned {
                    warned = true;
                    if !tty {
                        eprintln!("herdctl: press Ctrl-C again to stop run {run_id} on every node");
                    }
                    continue;
                }
                eprintln!("\nherdctl: stopping run {run_id}…");
                return stop(ctl, run_id.as_str()).await;
            }
        }
        let run = get_run(ctl, run_id).await?;
        let mut view = progress(&run);
        if warned {
            // Part of the view, so that the next redraw does not wipe it.
            view += "press Ctrl-C again to stop the run on every node\n";
        }
        if tty {
            out(&format!("\x1b[2J\x1b[H{view}"));
        } else if view != last {
            out(&view);
        }
        last = view;
        if settled(run.state) {
            out(&task_table(&run));
            return Ok(exit_for(run.state));
        }
    }
}

pub async fn show(ctl: &Ctl, run_id: &str) -> anyhow::Result<ExitCode> {
    let run = get_run(ctl, &RunId::new(run_id)?).await?;
    if ctl.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&run)?));
    } else {
        // Per node: its progress and what it runs now (setup, which workload, teardown).
        out(&progress(&run));
        out(&task_table(&run));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn stop(ctl: &Ctl, run_id: &str) -> anyhow::Result<ExitCode> {
    let run_id = RunId::new(run_id)?;
    let run: RunRecord = ctl
        .cluster(
            ClusterVerb::RunStop,
            &RunRef {
                run_id: run_id.clone(),
            },
        )
        .await?;
    let wait = Duration::from_secs_f64(run.spec.stop_timeout_s.unwrap_or(30.0) + 5.0);
    let deadline = tokio::time::Instant::now() + wait;
    let mut run = run;
    while !settled(run.state) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        run = get_run(ctl, &run_id).await?;
    }
    out(&format!(
        "run {} is {}\n",
        run.run_id,
        state_name(run.state)
    ));
    if !run.unconfirmed_nodes.is_empty() {
        let names: Vec<String> = run
            .unconfirmed_nodes
            .iter()
            .map(|n| n.to_string())
            .collect();
        out(&format!(
            "no stop confirmation from: {}\n",
            names.join(", ")
        ));
    }
    out(&task_table(&run));
    Ok(exit_for(run.state))
}

pub async fn retry(
    ctl: &Ctl,
    run_id: &str,
    statuses: Vec<String>,
    nodes: Vec<String>,
    workloads: Vec<String>,
    follow_it: bool,
) -> anyhow::Result<ExitCode> {
    let statuses = statuses
        .iter()
        .map(|s| {
            TaskStatus::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
                anyhow::anyhow!("--status {s}: one of failed, stopped, skipped, lost")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let q = RunRetry {
        run_id: RunId::new(run_id)?,
        statuses,
        nodes: nodes
            .into_iter()
            .map(NodeId::new)
            .collect::<Result<_, _>>()?,
        workloads,
    };
    let retried: RunRetried = ctl.cluster(ClusterVerb::RunRetry, &q).await?;
    eprintln!(
        "herdctl: run {}: {} task(s) to run again: {}",
        retried.run_id,
        retried.tasks.len(),
        retried.tasks.join(", ")
    );
    if follow_it {
        return follow(ctl, &retried.run_id).await;
    }
    out(&format!("{}\n", retried.run_id));
    Ok(ExitCode::SUCCESS)
}

pub async fn list(ctl: &Ctl, state: Option<String>, limit: u32) -> anyhow::Result<ExitCode> {
    let state = state
        .map(|s| serde_json::from_value::<RunState>(serde_json::Value::String(s)))
        .transpose()
        .map_err(|_| {
            let names: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
            anyhow::anyhow!("--state is one of {}", names.join(", "))
        })?;
    let list: RunList = ctl
        .cluster(
            ClusterVerb::RunList,
            &RunListQuery {
                state,
                limit: Some(limit),
            },
        )
        .await?;
    if ctl.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&list.runs)?));
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    let mut t = Table::new(&["RUN", "STATE", "AGE", "TASKS"]);
    for r in &list.runs {
        t.row(vec![
            r.run_id.to_string(),
            state_name(r.state),
            human_duration(now.saturating_sub(r.created_at_ms) as f64 / 1e3),
            r.tasks
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    out(&t.render());
    Ok(ExitCode::SUCCESS)
}

fn settled(s: RunState) -> bool {
    matches!(
        s,
        RunState::Completed | RunState::Failed | RunState::Stopped | RunState::StopFailed
    )
}

fn exit_for(s: RunState) -> ExitCode {
    if matches!(s, RunState::Completed | RunState::Stopped) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_keys_are_named_as_the_file_writes_them() {
        assert_eq!(super::key_path("teardown.?.comand"), "teardown.comand");
        assert_eq!(
            super::key_path("workloads.1.limits.cpus"),
            "workloads[1].limits.cpus"
        );
        assert_eq!(super::key_path("setpu"), "setpu");
    }
}
