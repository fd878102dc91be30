//! herd's end-to-end measurements against a real nats-server and real herdd processes, each
//! next to a baseline measured in the same run, and the report `docs/BENCHMARKS.md` (with the
//! criterion figures `scripts/bench` produced just before). Run by `scripts/bench`:
//!
//!   e2e --criterion target/criterion --out docs/BENCHMARKS.md --command "scripts/bench"

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{
    fixtures, ClusterVerb, NodeId, NodeList, NodeVerb, Reply, Subjects, WorkloadEvent,
    WorkloadState,
};
use herd_tests::{connect, node_call, request, wait_for_node, Herdd, HerddOptions, NatsServer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STARTS: usize = 1000;

/// Subjects as herd's nodes use them (the default prefix).
fn subjects() -> Subjects {
    Subjects::new("herd").expect("valid prefix")
}

fn node_id(id: &str) -> NodeId {
    NodeId::new(id).expect("valid node id")
}
const THROUGHPUT: usize = 500;
/// The coordinator's fleet under herd-sim (issue 19: 20,000 nodes × 1 Hz).
const SIM_NODES: u32 = 20_000;

/// A target: what, the figure, the limit, met or not.
struct Target {
    what: &'static str,
    figure: String,
    target: &'static str,
    met: bool,
}

struct Report {
    body: String,
    targets: Vec<Target>,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        self.body.push_str(s.as_ref());
        self.body.push('\n');
    }
    fn target(&mut self, what: &'static str, figure: String, target: &'static str, met: bool) {
        eprintln!(
            "e2e: {what}: {figure} (target {target}: {})",
            if met { "met" } else { "MISSED" }
        );
        self.targets.push(Target {
            what,
            figure,
            target,
            met,
        });
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 and p99 of durations, in ms.
fn p50_p99(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let ms: Vec<f64> = d.iter().map(|x| x.as_secs_f64() * 1e3).collect();
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// CPU seconds (user + system) and RSS in bytes of a process, from /proc.
fn cpu_and_rss(pid: u32) -> Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .context("stat")?
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let utime: f64 = fields[11].parse()?;
    let stime: f64 = fields[12].parse()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    // A zombie has no VmRSS: its CPU still counts.
    let [rss] = status_bytes(pid, ["VmRSS:"]).unwrap_or([0]);
    Ok(((utime + stime) / ticks, rss))
}

/// Sizes from /proc/<pid>/status (`VmRSS:`, `RssAnon:`, …; given there in kB), in bytes.
fn status_bytes<const N: usize>(pid: u32, keys: [&str; N]) -> Result<[u64; N]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut out = [0; N];
    for (slot, key) in out.iter_mut().zip(keys) {
        *slot = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .with_context(|| format!("{key} in /proc/{pid}/status"))?
            * 1024;
    }
    Ok(out)
}

/// CPU % of one core and the RSS at the end, over `window`.
async fn usage_over(pid: u32, window: Duration) -> Result<(f64, u64)> {
    let (c0, _) = cpu_and_rss(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let (c1, rss) = cpu_and_rss(pid)?;
    Ok(((c1 - c0) / t0.elapsed().as_secs_f64() * 100.0, rss))
}

/// The supervisors (`herd-shim <state>/workloads/<id>.shim`) of a herdd with this state dir:
/// how many, their CPU seconds together, and their memory together as PSS (shared pages
/// counted once across them) and RSS.
fn shims_usage(state_dir: &std::path::Path) -> Result<(usize, f64, u64, u64)> {
    let needle = state_dir.join("workloads").display().to_string();
    let (mut n, mut cpu, mut pss, mut rss) = (0, 0.0, 0, 0);
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Some(args) = herd_tests::proc_args(pid as i32) else {
            continue;
        };
        // `herd-shim <dir>`, or `herdd shim <dir>` without it; `--spare <workloads dir>`
        // for a spare (waiting, or handed its workload's directory on stdin).
        let mut rest = args.iter().skip(1).map(String::as_str);
        let mut arg = rest.next();
        if arg == Some("shim") {
            arg = rest.next();
        }
        if arg == Some("--spare") {
            arg = rest.next();
        }
        let dir = arg;
        if !dir.is_some_and(|d| d.starts_with(&needle)) {
            continue;
        }
        let Ok((c, r)) = cpu_and_rss(pid) else {
            continue;
        };
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let pss_kb: u64 = rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        n += 1;
        cpu += c;
        rss += r;
        pss += pss_kb * 1024;
    }
    Ok((n, cpu, pss, rss))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn node_config(root: &str) -> String {
    format!(
        "[cgroup]\nroot = \"{root}\"\n[shutdown]\nworkload_grace_cap_s = 2.0\n[telemetry]\ninterval_s = 1.0\n[logs]\nmax_lines_per_s = 1000\n"
    )
}

mod breakdown;
mod coordinator;
mod docker;
mod driver;
mod failover;
mod footprint;
mod report;
mod start;
mod throughput;
mod tick;

use coordinator::coordinator;
use docker::docker;
use failover::failover;
use footprint::footprint;
use report::{criterion_means, criterion_sections, machine};
use start::start_latency;
use throughput::throughput;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut criterion = PathBuf::from("target/criterion");
    let mut out = PathBuf::from("docs/BENCHMARKS.md");
    let mut command = "scripts/bench".to_string();
    let mut only: Option<String> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--criterion" => criterion = args.next().context("--criterion DIR")?.into(),
            "--out" => out = args.next().context("--out FILE")?.into(),
            "--command" => command = args.next().context("--command TEXT")?,
            // For working on one part: start, throughput, footprint, tick, coordinator,
            // failover or docker; no report is written.
            "--only" => only = Some(args.next().context("--only PART")?),
            other => bail!("unknown argument {other}"),
        }
    }
    // herdd and herd-sim next to this binary (target/release).
    let here = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .to_path_buf();
    std::env::set_var("HERD_BIN_DIR", &here);
    let (probe, _) = herd_actors::edges::cgroup::detect("auto", "herd-bench-probe");
    let backend = probe.version().as_str().to_string();
    probe.remove_root_if_empty();

    let mut r = Report {
        body: String::new(),
        targets: vec![],
    };
    if let Some(part) = only {
        match part.as_str() {
            "start" => start_latency(&mut r).await?,
            "throughput" => throughput(&mut r).await?,
            "footprint" => footprint(&mut r, &criterion_means(&criterion)).await?,
            "coordinator" => coordinator(&mut r).await?,
            "docker" => docker(&mut r).await?,
            "failover" => failover(&mut r).await?,
            "tick" => tick::breakdowns(&mut r).await?,
            other => bail!("unknown part {other}"),
        }
        println!("{}", r.body);
        return Ok(());
    }
    let means = criterion_means(&criterion);
    let t0 = Instant::now();
    criterion_sections(&mut r, &means, &backend);
    start_latency(&mut r).await?;
    throughput(&mut r).await?;
    footprint(&mut r, &means).await?;
    coordinator(&mut r).await?;
    failover(&mut r).await?;
    docker(&mut r).await?;

    let mut doc = String::new();
    writeln!(doc, "# Benchmarks\n")?;
    writeln!(
        doc,
        "Generated by `{command}` on {} (UTC); every figure below comes from that one run, each \
         baseline measured in the same run. Regenerate with the same command.\n",
        Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    )?;
    writeln!(doc, "## Machine\n\n{}", machine())?;
    writeln!(doc, "## Targets\n")?;
    writeln!(doc, "| target | measured | limit | |")?;
    writeln!(doc, "|---|---|---|---|")?;
    for t in &r.targets {
        writeln!(
            doc,
            "| {} | {} | {} | {} |",
            t.what,
            t.figure,
            t.target,
            if t.met { "met" } else { "**missed**" }
        )?;
    }
    writeln!(doc)?;
    doc.push_str(&r.body);
    writeln!(
        doc,
        "End-to-end part: {:.0} s. Criterion benches: `cargo bench -p herd-benches` (scripts/bench passes shorter warm-up and measurement times).",
        t0.elapsed().as_secs_f64()
    )?;
    std::fs::write(&out, doc).with_context(|| format!("write {}", out.display()))?;
    let missed = r.targets.iter().filter(|t| !t.met).count();
    eprintln!(
        "e2e: wrote {} ({} targets, {missed} missed)",
        out.display(),
        r.targets.len()
    );
    Ok(())
}
