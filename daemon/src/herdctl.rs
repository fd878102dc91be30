//! `herdctl`: the operator's command line. Tables for people, `--json` for scripts.

use crate::config::NatsConfig;
use anyhow::{bail, Context};
use async_nats::HeaderMap;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding, CONTENT_TYPE_HEADER};
use herd_bus::{
    Accepted, Ack, Empty, LogChunk, LogStream, NodeId, NodeInfo, NodeVerb, Reply, RestartPolicy,
    RestartPolicyKind, StopRequest, Subjects, TelemetryBatch, WorkloadFilter, WorkloadGet,
    WorkloadId, WorkloadList, WorkloadSpec, WorkloadStatus,
};
use herd_bus::{
    ClusterVerb, Driver, FitQuery, FitResult, Heartbeat, LameduckRequest, NodeGet, NodeList,
    NodeLiveness, NodeRecord, NodesQuery, PlacementStrategy, PullPolicy,
};
use herd_bus::{
    RunId, RunList, RunListQuery, RunRecord, RunRef, RunSpec, RunState, RunSubmitted, RunTargets,
    TaskStatus,
};
use herd_nats::{self as nats, NatsArgs, Persistence};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(name = "herdctl", version, about = "Operate a herd fleet over NATS")]
pub struct Cli {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for replies.
    #[arg(long = "wait", default_value_t = 2.0, global = true)]
    pub wait: f64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ping one node, or every node when none is named.
    Ping { node: Option<String> },
    /// The fleet as the coordinator sees it (or `nodes ping` to ask every node directly).
    Nodes {
        #[command(subcommand)]
        command: Option<NodesCommand>,
        /// Only nodes in this state: up, stale, lost, left.
        #[arg(long)]
        state: Option<String>,
        /// Only nodes with this label, key=value (repeatable).
        #[arg(long = "label", value_parser = parse_env)]
        labels: Vec<(String, String)>,
    },
    /// One node as the coordinator sees it, with its last heartbeat.
    Node { node: String },
    /// Which nodes fit a workload now, best first, and why the others do not.
    Query {
        /// CPUs (cores).
        #[arg(long)]
        cpu: Option<f64>,
        /// Memory: bytes, or with a K, M, G or T suffix.
        #[arg(long, value_parser = parse_size)]
        memory: Option<u64>,
        #[arg(long)]
        gpus: Option<u32>,
        /// key=value (repeatable).
        #[arg(long = "label", value_parser = parse_env)]
        labels: Vec<(String, String)>,
        /// spread (least loaded first), binpack or round_robin.
        #[arg(long, default_value = "spread")]
        strategy: String,
    },
    /// Put a node in lameduck: it refuses new workloads; with --stop-workloads, it stops its
    /// workloads after --delay seconds. --undo makes it active again.
    Drain {
        node: String,
        #[arg(long, default_value_t = 0.0)]
        delay: f64,
        #[arg(long)]
        stop_workloads: bool,
        #[arg(long)]
        undo: bool,
    },
    /// A live full-screen view of the fleet from heartbeats and telemetry: nodes, CPU and
    /// memory, workloads (q to quit). Without a terminal, prints one snapshot.
    Top,
    /// Publish heartbeats of synthetic nodes, to load a coordinator.
    Sim {
        #[arg(long, default_value_t = 100)]
        nodes: u32,
        /// Workloads in each heartbeat's inventory.
        #[arg(long, default_value_t = 10)]
        workloads: u32,
        /// Heartbeats per second per node.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        duration: Option<f64>,
        /// Node ids are NODE_PREFIX-00001 … . (Not `--prefix`: that is the subject prefix.)
        #[arg(long = "node-prefix", default_value = "sim")]
        prefix: String,
    },
    /// Send a raw request (JSON text, default `{}`) and print the raw reply: any herd subject,
    /// for scripts and debugging.
    Request {
        subject: String,
        #[arg(default_value = "{}")]
        payload: String,
    },
    /// Start a workload: `herdctl run NODE [options] -- CMD ARGS...`; or manage runs across
    /// nodes: `herdctl run submit|show|stop ...`.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Run {
        #[command(subcommand)]
        command: Option<RunCommand>,
        #[command(flatten)]
        args: Box<RunArgs>,
    },
    /// The run catalog, newest first.
    Runs {
        /// Only runs in this state (running, completed, failed, stopping, stopped, stop_failed).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// List workloads of one node, or of every node that answers.
    Ps {
        node: Option<String>,
        /// Include settled workloads (exited, stopped, ...).
        #[arg(long, short)]
        all: bool,
    },
    /// Stop a workload: kill_signal, then SIGKILL after its grace period.
    Stop {
        node: String,
        workload: String,
        /// Signal to send first (default: the workload's kill_signal).
        #[arg(long)]
        signal: Option<String>,
        /// Seconds before SIGKILL (default: the workload's grace_s).
        #[arg(long)]
        grace: Option<f64>,
    },
    /// Follow a workload's stdout and stderr as they are published (herd keeps no history).
    Logs {
        node: String,
        workload: String,
        /// Follow (the default; accepted for familiarity).
        #[arg(short, long)]
        follow: bool,
    },
    /// A live table of workload telemetry, refreshed at each batch.
    Watch { node: Option<String> },
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Submit a run: a workload repeated on a set of nodes (from flags, or a TOML/JSON file).
    Submit(Box<SubmitArgs>),
    /// A run's task table: timings, exit codes, errors.
    Show { run_id: String },
    /// Stop a run on every node and wait for the verdict (stopped or stop_failed).
    Stop { run_id: String },
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// A RunSpec as TOML or JSON (see docs/bus.md); flags below override its fields.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// Explicit nodes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Or: this many nodes, chosen by --label and --strategy.
    #[arg(long)]
    pub count: Option<u32>,
    #[arg(long = "label", value_parser = parse_env)]
    pub labels: Vec<(String, String)>,
    /// spread, binpack or round_robin.
    #[arg(long)]
    pub strategy: Option<String>,
    /// Repetitions on each node (in order).
    #[arg(long)]
    pub reps: Option<u32>,
    /// Run id (default: generated). Submitting the same id and spec again is a no-op.
    #[arg(long)]
    pub id: Option<String>,
    /// Task name, used in task ids (node::name::rep).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub workload: WorkloadFlags,
    /// Seconds to wait for every node to confirm a stop.
    #[arg(long)]
    pub stop_timeout: Option<f64>,
    /// Turn telemetry off for the tasks (when sampling would disturb a measurement).
    #[arg(long)]
    pub no_collect: bool,
    /// Follow the run live; Ctrl-C twice stops it.
    #[arg(long, short)]
    pub follow: bool,
    /// The command and its arguments.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Limits and process settings shared by `run NODE` and `run submit`.
#[derive(Debug, clap::Args)]
pub struct WorkloadFlags {
    /// CPU limit in cores (0.5 = half a core).
    #[arg(long)]
    pub cpu: Option<f64>,
    /// Memory limit: bytes, or with a K, M, G or T suffix (powers of 1024).
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Most processes and threads.
    #[arg(long)]
    pub pids: Option<u64>,
    /// Seconds before the workload is stopped as timed_out.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Seconds between kill_signal and SIGKILL.
    #[arg(long)]
    pub grace: Option<f64>,
    /// User to run as (default: the node's exec.default_user).
    #[arg(long)]
    pub user: Option<String>,
    /// Environment, KEY=VALUE, repeatable.
    #[arg(long = "env", short = 'e', value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Run a Docker container of this image instead of a process (driver docker); the
    /// command, when given, replaces the image's.
    #[arg(long)]
    pub image: Option<String>,
    /// When the node pulls the image: never, if_not_present or always [default: the node's].
    #[arg(long, value_parser = parse_pull_policy)]
    pub pull: Option<PullPolicy>,
}

/// The command, and for a container its image first (`docker:IMAGE CMD`).
fn describe_command(spec: &WorkloadSpec) -> String {
    match (spec.driver, &spec.image) {
        (Driver::Docker, Some(image)) if spec.command.is_empty() => format!("docker:{image}"),
        (Driver::Docker, Some(image)) => format!("docker:{image} {}", spec.command.join(" ")),
        _ => spec.command.join(" "),
    }
}

fn parse_pull_policy(s: &str) -> Result<PullPolicy, String> {
    match s {
        "never" => Ok(PullPolicy::Never),
        "if_not_present" | "if-not-present" => Ok(PullPolicy::IfNotPresent),
        "always" => Ok(PullPolicy::Always),
        _ => Err(format!(
            "'{s}' is not a pull policy (never, if_not_present, always)"
        )),
    }
}

impl WorkloadFlags {
    /// Lays the flags given over `spec`.
    pub fn apply(self, spec: &mut WorkloadSpec) {
        spec.limits.cpu = self.cpu.or(spec.limits.cpu);
        spec.limits.memory = self.memory.or(spec.limits.memory);
        spec.limits.pids = self.pids.or(spec.limits.pids);
        spec.timeout_s = self.timeout.or(spec.timeout_s);
        spec.grace_s = self.grace.or(spec.grace_s);
        spec.user = self.user.or(spec.user.take());
        spec.env.extend(self.env);
        if let Some(image) = self.image {
            spec.driver = Driver::Docker;
            spec.image = Some(image);
        }
        spec.pull_policy = self.pull.or(spec.pull_policy);
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    pub node: Option<String>,
    #[command(flatten)]
    pub workload: WorkloadFlags,
    /// Workload id (default: generated). Repeating a run with the same id and spec is a no-op.
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Restart on failure up to this many times.
    #[arg(long)]
    pub restart: Option<u32>,
    /// The command and its arguments (optional with --image).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `64M` → 67108864. Suffixes are powers of 1024; `B`/`iB` optional.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches(['B', 'b']).trim_end_matches('i');
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        Some('T' | 't') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 512M or 2G"))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("'{s}' is not a size"));
    }
    Ok((n * mult as f64) as u64)
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

/// Prints to stdout; a closed pipe (`herdctl ps | head`) ends the program quietly.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Ping every node and list those that answer within --timeout.
    Ping,
}

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

struct Ctl {
    client: async_nats::Client,
    subjects: Subjects,
    timeout: Duration,
    json: bool,
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = NatsConfig::default();
    cli.nats.apply(&mut config);
    let client = nats::connect(&config, "herdctl", Persistence::Cli, |_| {}).await?;
    let ctl = Ctl {
        client,
        subjects: Subjects::new(&config.prefix)?,
        timeout: Duration::from_secs_f64(cli.wait.max(0.01)),
        json: cli.json,
    };
    match cli.command {
        Command::Ping { node: Some(node) } => ctl.ping(&node).await,
        Command::Ping { node: None }
        | Command::Nodes {
            command: Some(NodesCommand::Ping),
            ..
        } => ctl.ping_all().await,
        Command::Nodes {
            command: None,
            state,
            labels,
        } => ctl.nodes(state, labels).await,
        Command::Node { node } => ctl.node(&node).await,
        Command::Query {
            cpu,
            memory,
            gpus,
            labels,
            strategy,
        } => ctl.query(cpu, memory, gpus, labels, &strategy).await,
        Command::Drain {
            node,
            delay,
            stop_workloads,
            undo,
        } => ctl.drain(&node, delay, stop_workloads, undo).await,
        Command::Top => ctl.top().await,
        Command::Sim {
            nodes,
            workloads,
            rate,
            duration,
            prefix,
        } => ctl.sim(nodes, workloads, rate, duration, &prefix).await,
        Command::Request { subject, payload } => ctl.raw_request(&subject, payload).await,
        Command::Run {
            command: Some(cmd), ..
        } => match cmd {
            RunCommand::Submit(a) => ctl.run_submit(*a).await,
            RunCommand::Show { run_id } => ctl.run_show(&run_id).await,
            RunCommand::Stop { run_id } => ctl.run_stop(&run_id).await,
        },
        // Not `Option<RunArgs>`: clap then read `herdctl --nats-url U run NODE -- CMD` (a
        // global flag or HERD_NATS_URL set) as no arguments at all.
        Command::Run {
            command: None,
            args,
        } if args.node.is_some() && (!args.command.is_empty() || args.workload.image.is_some()) => {
            ctl.run_workload(*args).await
        }
        Command::Run { command: None, .. } => anyhow::bail!(
            "usage: herdctl run NODE -- CMD..., herdctl run NODE --image IMAGE [-- CMD...], \
             or herdctl run submit|show|stop"
        ),
        Command::Runs { state, limit } => ctl.runs(state, limit).await,
        Command::Ps { node, all } => ctl.ps(node, all).await,
        Command::Stop {
            node,
            workload,
            signal,
            grace,
        } => ctl.stop(&node, &workload, signal, grace).await,
        Command::Logs { node, workload, .. } => ctl.logs(&node, &workload).await,
        Command::Watch { node } => ctl.watch(node).await,
    }
}

fn msgpack_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE_HEADER, Encoding::MsgPack.content_type());
    h
}

fn decode_reply<T: DeserializeOwned>(msg: &async_nats::Message) -> anyhow::Result<T> {
    let enc = herd_actors::bus::message_encoding(msg);
    let reply: Reply<T> = codec::decode(&msg.payload, enc, &DecodeLimits::default())
        .context("cannot decode the reply")?;
    reply.into_result().map_err(|e| anyhow::anyhow!("{e}"))
}

impl Ctl {
    async fn request(
        &self,
        subject: String,
        payload: Vec<u8>,
    ) -> anyhow::Result<async_nats::Message> {
        let req =
            self.client
                .request_with_headers(subject.clone(), msgpack_headers(), payload.into());
        match tokio::time::timeout(self.timeout, req).await {
            Err(_) => bail!("no reply on {subject} within {:?}", self.timeout),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                bail!("nobody answers on {subject}")
            }
            Ok(r) => Ok(r?),
        }
    }

    async fn ping(&self, node: &str) -> anyhow::Result<ExitCode> {
        let node = NodeId::new(node)?;
        let subject = self.subjects.node_command(&node, NodeVerb::Ping);
        let start = Instant::now();
        let msg = self
            .request(subject, codec::encode(&Empty {}, Encoding::MsgPack)?)
            .await
            .with_context(|| format!("is herdd running with node id '{node}'?"))?;
        let rtt = start.elapsed();
        let info: NodeInfo = decode_reply(&msg)?;
        self.print_nodes(&[(info, rtt)])?;
        Ok(ExitCode::SUCCESS)
    }

    /// Publishes one ping and gathers every reply that arrives within the timeout.
    async fn ping_all(&self) -> anyhow::Result<ExitCode> {
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await?;
        let start = Instant::now();
        self.client
            .publish_with_reply_and_headers(
                self.subjects.nodes_ping(),
                inbox,
                msgpack_headers(),
                codec::encode(&Empty {}, Encoding::MsgPack)?.into(),
            )
            .await?;
        self.client.flush().await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut nodes = Vec::new();
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await {
            match decode_reply::<NodeInfo>(&msg) {
                Ok(info) => nodes.push((info, start.elapsed())),
                Err(e) => eprintln!("herdctl: ignoring a bad reply: {e:#}"),
            }
        }
        nodes.sort_by(|a, b| a.0.node_id.cmp(&b.0.node_id));
        self.print_nodes(&nodes)?;
        if nodes.is_empty() {
            eprintln!("herdctl: no node answered within {:?}", self.timeout);
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn raw_request(&self, subject: &str, payload: String) -> anyhow::Result<ExitCode> {
        let req = self
            .client
            .request(subject.to_string(), payload.into_bytes().into());
        let msg = match tokio::time::timeout(self.timeout, req).await {
            Err(_) => bail!("no reply on {subject} within {:?}", self.timeout),
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

    fn print_nodes(&self, nodes: &[(NodeInfo, Duration)]) -> anyhow::Result<()> {
        if self.json {
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

    /// A typed request to a node; `bad_request` and other errors become the command's error.
    async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        node: &NodeId,
        verb: NodeVerb,
        req: &Q,
    ) -> anyhow::Result<R> {
        let subject = self.subjects.node_command(node, verb);
        let msg = self
            .request(subject, codec::encode(req, Encoding::MsgPack)?)
            .await?;
        decode_reply(&msg)
    }

    /// Every node that answers a fleet ping within the timeout.
    async fn fleet(&self) -> anyhow::Result<Vec<NodeId>> {
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await?;
        self.client
            .publish_with_reply_and_headers(
                self.subjects.nodes_ping(),
                inbox,
                msgpack_headers(),
                codec::encode(&Empty {}, Encoding::MsgPack)?.into(),
            )
            .await?;
        let deadline = tokio::time::Instant::now() + self.timeout.min(Duration::from_secs(1));
        let mut nodes = Vec::new();
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await {
            if let Ok(info) = decode_reply::<NodeInfo>(&msg) {
                nodes.push(info.node_id);
            }
        }
        nodes.sort();
        Ok(nodes)
    }

    async fn run_workload(&self, a: RunArgs) -> anyhow::Result<ExitCode> {
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
        let accepted: Accepted = self.call(&node, NodeVerb::WorkloadStart, &spec).await?;
        if self.json {
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

    async fn ps(&self, node: Option<String>, all: bool) -> anyhow::Result<ExitCode> {
        let nodes = match node {
            Some(n) => vec![NodeId::new(n)?],
            None => self.fleet().await?,
        };
        let mut rows: Vec<WorkloadStatus> = Vec::new();
        for node in &nodes {
            match self
                .call::<_, WorkloadList>(node, NodeVerb::WorkloadList, &WorkloadFilter::default())
                .await
            {
                Ok(list) => rows.extend(list.workloads),
                Err(e) => eprintln!("herdctl: {node}: {e:#}"),
            }
        }
        rows.retain(|w| all || !w.state.is_terminal());
        if self.json {
            out(&format!("{}\n", serde_json::to_string_pretty(&rows)?));
            return Ok(ExitCode::SUCCESS);
        }
        let now = herd_bus_now_ms();
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

    async fn stop(
        &self,
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
        let ack: Ack = self.call(&node, NodeVerb::WorkloadStop, &req).await?;
        out(&format!("{}\n", ack.message.unwrap_or_else(|| "ok".into())));
        Ok(ExitCode::SUCCESS)
    }

    async fn logs(&self, node: &str, workload: &str) -> anyhow::Result<ExitCode> {
        let node = NodeId::new(node)?;
        let workload = WorkloadId::new(workload)?;
        let mut sub = self
            .client
            .subscribe(self.subjects.logs_of(&node, &workload))
            .await?;
        // Known workload? Tell the user now rather than waiting silently.
        let status: WorkloadStatus = self
            .call(
                &node,
                NodeVerb::WorkloadGet,
                &WorkloadGet {
                    workload_id: workload.clone(),
                },
            )
            .await?;
        if status.state.is_terminal() {
            eprintln!(
                "herdctl: {workload} is {}; no more output will come",
                status.state.as_str()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let mut expected: std::collections::HashMap<LogStream, u64> = Default::default();
        while let Some(msg) = sub.next().await {
            let Ok(chunk) = codec::decode::<LogChunk>(
                &msg.payload,
                Encoding::MsgPack,
                &DecodeLimits::default(),
            ) else {
                continue;
            };
            let next = expected.entry(chunk.stream).or_insert(chunk.seq);
            if chunk.seq > *next {
                eprintln!(
                    "herdctl: [{} chunks of {} missed]",
                    chunk.seq - *next,
                    chunk.stream.as_str()
                );
            }
            *next = chunk.seq + 1;
            let mut text = String::new();
            for line in &chunk.lines {
                text.push_str(line);
                text.push('\n');
            }
            match chunk.stream {
                LogStream::Stdout => out(&text),
                LogStream::Stderr => eprint!("{text}"),
            }
            if chunk.dropped > 0 {
                eprintln!(
                    "herdctl: [{} lines dropped by the node's rate cap]",
                    chunk.dropped
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn watch(&self, node: Option<String>) -> anyhow::Result<ExitCode> {
        let subject = match node {
            Some(n) => self.subjects.telemetry(&NodeId::new(n)?),
            None => self.subjects.telemetry_all(),
        };
        let mut sub = self.client.subscribe(subject).await?;
        let mut latest: std::collections::BTreeMap<String, TelemetryBatch> = Default::default();
        while let Some(msg) = sub.next().await {
            let Ok(batch) = codec::decode::<TelemetryBatch>(
                &msg.payload,
                Encoding::MsgPack,
                &DecodeLimits::default(),
            ) else {
                continue;
            };
            if self.json {
                out(&format!("{}\n", serde_json::to_string(&batch)?));
                continue;
            }
            latest.insert(batch.node_id.to_string(), batch);
            let mut table = Table::new(&[
                "NODE", "WORKLOAD", "CPU%", "MEMORY", "LIMIT", "PIDS", "READ/s", "WRITE/s",
                "UPTIME",
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
}

impl Ctl {
    async fn cluster<Q: Serialize, R: DeserializeOwned>(
        &self,
        verb: ClusterVerb,
        req: &Q,
    ) -> anyhow::Result<R> {
        let msg = self
            .request(
                self.subjects.cluster(verb),
                codec::encode(req, Encoding::MsgPack)?,
            )
            .await
            .context("is a herdd with roles = [\"coordinator\", ...] running?")?;
        decode_reply(&msg)
    }

    async fn nodes(
        &self,
        state: Option<String>,
        labels: Vec<(String, String)>,
    ) -> anyhow::Result<ExitCode> {
        let state = state
            .map(|s| serde_json::from_value::<NodeLiveness>(serde_json::Value::String(s.clone())))
            .transpose()
            .map_err(|_| anyhow::anyhow!("--state is one of up, stale, lost, left"))?;
        let list: NodeList = self
            .cluster(
                ClusterVerb::Nodes,
                &NodesQuery {
                    state,
                    labels: labels.into_iter().collect(),
                },
            )
            .await?;
        if self.json {
            out(&format!("{}\n", serde_json::to_string_pretty(&list.nodes)?));
            return Ok(ExitCode::SUCCESS);
        }
        let now = herd_bus_now_ms();
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
        Ok(ExitCode::SUCCESS)
    }

    async fn node(&self, node: &str) -> anyhow::Result<ExitCode> {
        let record: NodeRecord = self
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

    async fn query(
        &self,
        cpu: Option<f64>,
        memory: Option<u64>,
        gpus: Option<u32>,
        labels: Vec<(String, String)>,
        strategy: &str,
    ) -> anyhow::Result<ExitCode> {
        let strategy: PlacementStrategy =
            serde_json::from_value(serde_json::Value::String(strategy.into())).map_err(|_| {
                anyhow::anyhow!("--strategy is one of spread, binpack, round_robin")
            })?;
        let fit: FitResult = self
            .cluster(
                ClusterVerb::Query,
                &FitQuery {
                    cpu,
                    memory,
                    gpus,
                    labels: labels.into_iter().collect(),
                    strategy,
                },
            )
            .await?;
        if self.json {
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

    async fn drain(
        &self,
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
        let ack: Ack = self
            .call(&NodeId::new(node)?, NodeVerb::Lameduck, &req)
            .await?;
        out(&format!("{}\n", ack.message.unwrap_or_default()));
        Ok(ExitCode::SUCCESS)
    }

    async fn top(&self) -> anyhow::Result<ExitCode> {
        crate::top::run(
            &self.client,
            &self.subjects,
            self.timeout.max(Duration::from_millis(2500)),
        )
        .await?;
        Ok(ExitCode::SUCCESS)
    }

    /// Heartbeats of `nodes` synthetic nodes, each `rate` times a second.
    async fn sim(
        &self,
        nodes: u32,
        workloads: u32,
        rate: f64,
        duration: Option<f64>,
        prefix: &str,
    ) -> anyhow::Result<ExitCode> {
        if !(rate.is_finite() && rate > 0.0) || nodes == 0 {
            anyhow::bail!("--rate must be > 0 and --nodes ≥ 1");
        }
        let started = herd_bus_now_ms();
        let mut beats: Vec<Heartbeat> = (1..=nodes)
            .map(|i| -> anyhow::Result<Heartbeat> {
                Ok(Heartbeat {
                    node_id: NodeId::new(format!("{prefix}-{i:05}"))?,
                    seq: 0,
                    interval_ms: (1000.0 / rate) as u64,
                    ts_ms: started,
                    started_at_ms: started,
                    version: herd_bus::HERD_VERSION.into(),
                    uptime_s: 0.0,
                    labels: [("sim".to_string(), "true".to_string())].into(),
                    roles: vec![herd_bus::Role::Node],
                    state: herd_bus::NodeState::Active,
                    capacity: herd_bus::Capacity {
                        cpus: 16.0,
                        memory: 64 << 30,
                        gpus: vec![],
                    },
                    usage: herd_bus::Usage {
                        cpu_percent: (i % 1600) as f64,
                        memory_available: 32 << 30,
                        load_avg: [1.0, 1.0, 1.0],
                    },
                    workloads: (0..workloads)
                        .map(|w| -> anyhow::Result<herd_bus::WorkloadSummary> {
                            Ok(herd_bus::WorkloadSummary {
                                workload_id: WorkloadId::new(format!("w-{i:05}-{w:03}"))?,
                                state: herd_bus::WorkloadState::Running,
                                run_id: None,
                                rep: None,
                                cpu_percent: Some(12.5),
                                memory: Some(256 << 20),
                            })
                        })
                        .collect::<anyhow::Result<_>>()?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let period = Duration::from_secs_f64(1.0 / rate);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = duration.map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
        let mut sent = 0u64;
        let t0 = std::time::Instant::now();
        eprintln!(
            "herdctl sim: {nodes} nodes × {rate}/s with {workloads} workloads each; Ctrl-C to stop"
        );
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::signal::ctrl_c() => break,
            }
            if end.is_some_and(|e| tokio::time::Instant::now() >= e) {
                break;
            }
            let now = herd_bus_now_ms();
            for hb in beats.iter_mut() {
                hb.seq += 1;
                hb.ts_ms = now;
                hb.uptime_s = (now - started) as f64 / 1e3;
                let subject = self.subjects.heartbeat(&hb.node_id);
                self.client
                    .publish(subject, codec::encode(hb, Encoding::MsgPack)?.into())
                    .await?;
                sent += 1;
            }
            self.client.flush().await?;
        }
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "herdctl sim: sent {sent} heartbeats in {secs:.1} s ({:.0}/s)",
            sent as f64 / secs.max(1e-9)
        );
        Ok(ExitCode::SUCCESS)
    }
}

impl Ctl {
    async fn run_submit(&self, a: SubmitArgs) -> anyhow::Result<ExitCode> {
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
            spec.targets.strategy =
                serde_json::from_value(serde_json::Value::String(s)).map_err(|_| {
                    anyhow::anyhow!("--strategy is one of spread, binpack, round_robin")
                })?;
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
        let submitted: RunSubmitted = self.cluster(ClusterVerb::RunSubmit, &spec).await?;
        if !a.follow {
            out(&format!("{}\n", submitted.run_id));
            return Ok(ExitCode::SUCCESS);
        }
        self.follow(&submitted.run_id).await
    }

    async fn get_run(&self, run_id: &RunId) -> anyhow::Result<RunRecord> {
        self.cluster(
            ClusterVerb::RunGet,
            &RunRef {
                run_id: run_id.clone(),
            },
        )
        .await
    }

    /// Per-node progress until the run settles; Ctrl-C once warns, twice stops the run.
    async fn follow(&self, run_id: &RunId) -> anyhow::Result<ExitCode> {
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
                    return self.run_stop(run_id.as_str()).await;
                }
            }
            let run = self.get_run(run_id).await?;
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

    async fn run_show(&self, run_id: &str) -> anyhow::Result<ExitCode> {
        let run = self.get_run(&RunId::new(run_id)?).await?;
        if self.json {
            out(&format!("{}\n", serde_json::to_string_pretty(&run)?));
        } else {
            out(&format!(
                "run {} is {}\n",
                run.run_id,
                state_name(run.state)
            ));
            out(&task_table(&run));
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn run_stop(&self, run_id: &str) -> anyhow::Result<ExitCode> {
        let run_id = RunId::new(run_id)?;
        let run: RunRecord = self
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
            run = self.get_run(&run_id).await?;
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

    async fn runs(&self, state: Option<String>, limit: u32) -> anyhow::Result<ExitCode> {
        let state = state
            .map(|s| serde_json::from_value::<RunState>(serde_json::Value::String(s)))
            .transpose()
            .map_err(|_| anyhow::anyhow!("--state is one of pending, running, completed, failed, stopping, stopped, stop_failed"))?;
        let list: RunList = self
            .cluster(
                ClusterVerb::RunList,
                &RunListQuery {
                    state,
                    limit: Some(limit),
                },
            )
            .await?;
        if self.json {
            out(&format!("{}\n", serde_json::to_string_pretty(&list.runs)?));
            return Ok(ExitCode::SUCCESS);
        }
        let now = herd_bus_now_ms();
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

fn state_name<T: Serialize>(s: T) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// One progress bar per node: settled repetitions of all, and what runs now.
pub fn progress(run: &RunRecord) -> String {
    let mut by_node: std::collections::BTreeMap<String, Vec<&herd_bus::TaskRecord>> =
        Default::default();
    for t in &run.tasks {
        by_node.entry(t.node_id.to_string()).or_default().push(t);
    }
    let mut s = format!("run {} — {}\n", run.run_id, state_name(run.state));
    for (node, tasks) in by_node {
        let done = tasks
            .iter()
            .filter(|t| !matches!(t.status, TaskStatus::Pending | TaskStatus::Running))
            .count();
        let total = tasks.len();
        let width = 20;
        let filled = done * width / total.max(1);
        let now = tasks
            .iter()
            .find(|t| t.status == TaskStatus::Running)
            .map(|t| format!("rep {} running", t.rep))
            .unwrap_or_default();
        let failed = tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Failed)
            .count();
        s += &format!(
            "  {node:<20} [{}{}] {done}/{total} {now}{}\n",
            "#".repeat(filled),
            ".".repeat(width - filled),
            if failed > 0 {
                format!(" ({failed} failed)")
            } else {
                String::new()
            }
        );
    }
    s
}

pub fn task_table(run: &RunRecord) -> String {
    let mut t = Table::new(&["TASK", "STATUS", "DURATION", "EXIT", "ERROR"]);
    for task in &run.tasks {
        t.row(vec![
            task.task_id.clone(),
            state_name(task.status),
            task.duration_s
                .map(|d| format!("{d:.2}s"))
                .unwrap_or_default(),
            task.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            task.error.clone().unwrap_or_default(),
        ]);
    }
    t.render()
}

fn herd_bus_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max - 1).collect::<String>() + "…"
    }
}

/// `1.5G`, `64M`, `512K`, `100B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            let v = n as f64 / size as f64;
            return if v >= 10.0 {
                format!("{v:.0}{unit}")
            } else {
                format!("{v:.1}{unit}")
            };
        }
    }
    format!("{n}B")
}

/// `3d4h`, `5m12s`, `42s`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// A plain left-aligned text table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ");
            s.truncate(s.trim_end().len());
            s + "\n"
        };
        let mut out = line(&self.header);
        for row in &self.rows {
            out += &line(row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(42.7), "42s");
        assert_eq!(human_duration(312.0), "5m12s");
        assert_eq!(human_duration(3.0 * 3600.0 + 120.0), "3h2m");
        assert_eq!(human_duration(90000.0), "1d1h");
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1M").is_err());
        assert_eq!(human_bytes(64 << 20), "64M");
        assert_eq!(human_bytes(1536), "1.5K");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["A", "LONG"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    LONG\nxyz  1\n");
    }
}
