//! `herdctl`: the operator's command line. Tables for people, `--json` for scripts.
//!
//! `args` is the command line; `node` (one node, or every node that answers), `cluster` (the
//! coordinator's view), `runs`, `fetch` (a run's uploaded results), `report` (a run's
//! statistics, two runs compared) and `attach` (a workload's output: `logs`, `run --attach`)
//! are the commands; `ctl` makes their requests and `render` prints; `follow` reads a
//! workload's output from NATS and `logs` decides what of it to print; `top` is the live fleet
//! view. Commands use `ctl` and `render`, never the reverse.

pub mod args;
mod attach;
mod cluster;
mod ctl;
mod fetch;
mod follow;
mod inputs;
mod logs;
mod node;
mod render;
mod report;
mod runs;
mod top;

pub use args::Cli;
/// For herdd's dashboard, which asks what herdctl asks and shows a workload's output as
/// `herdctl logs --no-follow` prints it.
pub use ctl::Ctl;
pub use follow::{history as log_history, LogQuery};

use args::{Command, NodesCommand, RunCommand};
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herdctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herdctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctl = &Ctl::connect(&cli.nats, cli.wait, cli.json).await?;
    match cli.command {
        Command::Ping { node: Some(node) } => node::ping(ctl, &node).await,
        Command::Ping { node: None }
        | Command::Nodes {
            command: Some(NodesCommand::Ping),
            ..
        } => node::ping_all(ctl).await,
        Command::Nodes {
            command: None,
            state,
            labels,
        } => cluster::nodes(ctl, state, labels).await,
        Command::Node { node } => cluster::node(ctl, &node).await,
        Command::Query {
            cpu,
            memory,
            gpus,
            cpuset_cpus,
            labels,
            strategy,
        } => cluster::query(ctl, cpu, memory, gpus, cpuset_cpus, labels, &strategy).await,
        Command::Drain {
            node,
            delay,
            stop_workloads,
            undo,
        } => node::drain(ctl, &node, delay, stop_workloads, undo).await,
        Command::Top => {
            let settle = ctl.timeout.max(Duration::from_millis(2500));
            top::run(&ctl.client, &ctl.subjects, settle).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Request { subject, payload } => node::raw_request(ctl, &subject, payload).await,
        Command::Run {
            command: Some(cmd), ..
        } => match cmd {
            RunCommand::Submit(a) => runs::submit(ctl, *a).await,
            RunCommand::Show {
                run_id,
                summary: false,
                ..
            } => runs::show(ctl, &run_id).await,
            RunCommand::Show {
                run_id,
                summary: true,
                csv,
            } => report::summary(ctl, &run_id, csv).await,
            RunCommand::Compare {
                run_a,
                run_b,
                alpha,
                csv,
            } => report::compare(ctl, &run_a, &run_b, alpha, csv).await,
            RunCommand::Stop { run_id } => runs::stop(ctl, &run_id).await,
            RunCommand::Retry {
                run_id,
                statuses,
                nodes,
                workloads,
                follow,
            } => runs::retry(ctl, &run_id, statuses, nodes, workloads, follow).await,
            RunCommand::Fetch {
                run_id,
                to,
                partial,
            } => fetch::fetch(ctl, &run_id, &to, partial).await,
        },
        // Not `Option<RunArgs>`: clap then read `herdctl --nats-url U run NODE -- CMD` (a
        // global flag or HERD_NATS_URL set) as no arguments at all.
        Command::Run {
            command: None,
            args,
        } if args.node.is_some() && (!args.command.is_empty() || args.workload.image.is_some()) => {
            node::run_workload(ctl, *args).await
        }
        Command::Run { command: None, .. } => anyhow::bail!(
            "usage: herdctl run NODE -- CMD..., herdctl run NODE --image IMAGE [-- CMD...], \
             or herdctl run submit|show|stop|fetch|compare"
        ),
        Command::Runs { state, limit } => runs::list(ctl, state, limit).await,
        Command::Ps { node, all } => node::ps(ctl, node, all).await,
        Command::Stop {
            node,
            workload,
            signal,
            grace,
        } => node::stop(ctl, &node, &workload, signal, grace).await,
        Command::Logs {
            node,
            workload,
            follow: _,
            no_follow,
            tail,
            since,
            stream,
        } => {
            let a = attach::LogsArgs {
                node,
                workload,
                tail,
                since,
                no_follow,
                stream,
            };
            attach::logs(ctl, a).await
        }
        Command::Watch { node } => node::watch(ctl, node).await,
    }
}
