//! Runs across nodes: submit (and follow), show, stop, and the catalog.

use crate::args::SubmitArgs;
use crate::ctl::Ctl;
use crate::render::{
    human_duration, now_ms, out, progress, queued_line, state_name, task_table, Table,
};
use anyhow::Context;
use herd_bus::{
    ClusterVerb, NodeId, RunId, RunList, RunListQuery, RunRecord, RunRef, RunSpec, RunState,
    RunSubmitted, RunTargets, WorkloadSpec,
};
use std::process::ExitCode;
use std::time::Duration;

pub async fn submit(ctl: &Ctl, a: SubmitArgs) -> anyhow::Result<ExitCode> {
    let mut spec: RunSpec = match &a.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if text.trim_start().starts_with('{') {
                serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?
            } else {
                toml::from_str(&text).with_context(|| format!("{}", path.display()))?
            }
        }
        None => RunSpec {
            run_id: None,
            workload: WorkloadSpec::default(),
            targets: RunTargets::default(),
            repetitions: 1,
            stop_timeout_s: None,
            queue: None,
            priority: None,
        },
    };
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
        out(&format!(
            "run {} is {}\n",
            run.run_id,
            state_name(run.state)
        ));
        out(&queued_line(&run));
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
