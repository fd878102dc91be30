//! The command line: clap's types and the parsers of its values.

use clap::{Parser, Subcommand};
use herd_bus::{Driver, GpuRequest, PullPolicy, WorkloadSpec};
use herd_nats::NatsArgs;

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
        /// GPUs of its own.
        #[arg(long)]
        gpus: Option<u32>,
        /// Whole CPU cores of its own (a cpuset).
        #[arg(long)]
        cpuset_cpus: Option<u32>,
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
    /// Send a raw request (JSON text, default `{}`) and print the raw reply: any herd subject,
    /// for scripts and debugging.
    Request {
        subject: String,
        #[arg(default_value = "{}")]
        payload: String,
    },
    /// Start a workload: `herdctl run NODE [options] -- CMD ARGS...` (with --attach, follow its
    /// output and exit with its code); or manage runs across nodes: `herdctl run
    /// submit|show|stop|fetch|compare
    /// ...`.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = ATTACH_EXIT_CODES
    )]
    Run {
        #[command(subcommand)]
        command: Option<RunCommand>,
        #[command(flatten)]
        args: Box<RunArgs>,
    },
    /// The run catalog, newest first.
    Runs {
        /// Only runs in this state (queued, pending, running, completed, failed, stopping,
        /// stopped, stop_failed).
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
    /// A workload's stdout and stderr: the history kept in NATS (stream HERD_LOGS_<node>, also
    /// after the workload ended, after herdd restarted, while the node is down), then what it
    /// writes until it ends. stdout lines go to stdout, stderr lines to stderr; lines the
    /// node's rate cap dropped show as "[herd: N lines dropped by the rate cap]".
    Logs {
        node: String,
        workload: String,
        /// Follow until the workload ends (the default; accepted for familiarity).
        #[arg(short, long, conflicts_with = "no_follow")]
        follow: bool,
        /// Print the history kept so far and exit.
        #[arg(long)]
        no_follow: bool,
        /// Only the last N lines of the history.
        #[arg(long, short = 'n', value_name = "N")]
        tail: Option<usize>,
        /// Only the history of this long ago and later: 30s, 10m, 2h, 1d, 1h30m.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Only stdout or stderr.
        #[arg(long, value_name = "stdout|stderr")]
        stream: Option<String>,
    },
    /// A live table of workload telemetry, refreshed at each batch.
    Watch { node: Option<String> },
}

/// The exit codes of `run --attach`, shown by `herdctl run --help` (as in the README).
pub const ATTACH_EXIT_CODES: &str = "\
Exit codes with --attach (otherwise 0 once the node accepted the workload):
  N        exited: the workload's own exit code
  128+N    stopped or killed by signal N (137 SIGKILL, 143 SIGTERM), unless it exited
           with a code of its own on the signal
  124      timed_out (after --timeout), as timeout(1)
  125      failed: it could not start, or herdctl could not start it, as docker run
  130      detached with a second Ctrl-C while it was stopping
  250      oom_killed (apart from 137, a SIGKILL from elsewhere)
  255      lost: its node was lost, or herd lost track of it";

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Submit a run: a workload repeated on a set of nodes (from flags, or a TOML/JSON file).
    Submit(Box<SubmitArgs>),
    /// A run's task table: timings, exit codes, errors, what each task used; or, with
    /// --summary, its statistics per workload across nodes and per node.
    Show {
        run_id: String,
        /// Statistics of every metric (from the tasks' metrics.json) and resource figure over
        /// the completed tasks: n, mean, median, stddev, min, max, CV.
        #[arg(long)]
        summary: bool,
        /// With --summary: CSV instead of a table.
        #[arg(long, requires = "summary")]
        csv: bool,
    },
    /// Compare run B with run A, figure by figure: means, relative change, Welch's t-test
    /// p-value and whether the difference is significant.
    Compare {
        run_a: String,
        run_b: String,
        /// Significance level.
        #[arg(long, default_value_t = herd_bus::DEFAULT_SIGNIFICANCE_LEVEL)]
        alpha: f64,
        /// CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Stop a run on every node and wait for the verdict (stopped or stop_failed).
    Stop { run_id: String },
    /// Run again, in the same run, the tasks that did not complete (FAILED, STOPPED, SKIPPED,
    /// LOST), each as its next attempt; a node concerned runs its setup again first and its
    /// teardown after. The run must have settled.
    Retry {
        run_id: String,
        /// Only tasks in this status (repeatable): failed, stopped, skipped, lost.
        #[arg(long = "status", value_name = "STATUS")]
        statuses: Vec<String>,
        /// Only tasks on this node (repeatable).
        #[arg(long = "node", value_name = "NODE")]
        nodes: Vec<String>,
        /// Only tasks of this workload, or of this one variant `name[axis=value,…]`
        /// (repeatable).
        #[arg(long = "workload", value_name = "NAME")]
        workloads: Vec<String>,
        /// Follow the run until it settles, as `run submit --follow` does.
        #[arg(long)]
        follow: bool,
    },
    /// Download every task's uploaded files into DIR/RUN/NODE/TASK/..., checking each one's
    /// SHA-256, with the run's journal.json and summary.json beside them.
    Fetch {
        run_id: String,
        /// Where the run's directory is made.
        #[arg(long, default_value = ".")]
        to: std::path::PathBuf,
        /// Succeed even when some tasks' results are not uploaded yet (they are listed).
        #[arg(long)]
        partial: bool,
    },
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
    /// Among queued runs, a higher priority starts first (default 0; equal priorities in
    /// submission order).
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i32>,
    /// Fail at once when the run does not fit now, instead of waiting queued for room.
    #[arg(long)]
    pub no_queue: bool,
    /// Turn telemetry off for the tasks (when sampling would disturb a measurement).
    #[arg(long)]
    pub no_collect: bool,
    /// Follow the run live (while it is queued, why it waits); Ctrl-C twice stops it.
    #[arg(long, short)]
    pub follow: bool,
    /// A file or directory every task finds below $HERD_INPUT_DIR (repeatable): a file under
    /// its name, a directory as NAME/... with every regular file below it (symbolic links and
    /// special files are refused). Uploaded to the herd-inputs bucket, each content once across
    /// runs; every node checks its SHA-256 before the task starts.
    #[arg(long = "input", value_name = "PATH")]
    pub inputs: Vec<std::path::PathBuf>,
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
    /// Whole CPU cores of its own (a cpuset the node picks; no core shared with another such
    /// workload).
    #[arg(long)]
    pub cpuset_cpus: Option<u32>,
    /// GPUs of its own: a number, or UUIDs comma-separated (CUDA_VISIBLE_DEVICES is set to them).
    #[arg(long, value_parser = parse_gpus)]
    pub gpus: Option<GpuRequest>,
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

/// `--gpus 2` or `--gpus GPU-aaaa,GPU-bbbb`.
pub fn parse_gpus(s: &str) -> Result<GpuRequest, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u32>() {
        return Ok(GpuRequest::Count(n));
    }
    let uuids: Vec<String> = s
        .split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if uuids.is_empty() {
        return Err(format!("'{s}' is neither a number of GPUs nor GPU UUIDs"));
    }
    Ok(GpuRequest::Devices(uuids))
}

pub fn parse_pull_policy(s: &str) -> Result<PullPolicy, String> {
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
        spec.limits.cpuset_cpus = self.cpuset_cpus.or(spec.limits.cpuset_cpus);
        spec.limits.gpus = self.gpus.or(spec.limits.gpus.take());
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
    /// Print its output as it runs and exit with its exit code (see below); Ctrl-C stops it
    /// (its kill_signal, then SIGKILL after its grace) and still waits for its end.
    #[arg(long, short = 'a')]
    pub attach: bool,
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

pub fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Ping every node and list those that answer within --timeout.
    Ping,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1M").is_err());
    }
}
