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
const SIM_NODES: u32 = 5000;

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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok(((utime + stime) / ticks, rss_kb * 1024))
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
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // `herd-shim <dir>`, or `herdd shim <dir>` without it.
        let dir = match args.get(1).map(String::as_str) {
            Some("shim") => args.get(2),
            _ => args.get(1),
        };
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

/// Start latency: request → `running` event, against a bare NATS round trip and a bare
/// fork/exec of the same command.
async fn start_latency(r: &mut Report) -> Result<()> {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;

    // Bare NATS request/reply on the same server.
    let mut echo = client.subscribe("bench.echo").await?;
    let responder = client.clone();
    let echo_task = tokio::spawn(async move {
        while let Some(msg) = echo.next().await {
            if let Some(reply) = msg.reply {
                let _ = responder.publish(reply, msg.payload).await;
            }
        }
    });
    client.flush().await?;
    let payload = serde_json::to_vec(&json!({"command": ["true"]}))?;
    let mut rtt = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let t = Instant::now();
        client
            .request("bench.echo", payload.clone().into())
            .await
            .context("echo")?;
        rtt.push(t.elapsed());
    }
    echo_task.abort();

    // Bare fork/exec: spawn() returns once `true` has exec'd (std waits on a CLOEXEC pipe).
    let mut fork = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let t = Instant::now();
        let mut child = Command::new("true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        fork.push(t.elapsed());
        child.wait()?;
    }

    // herd's exec driver alone: cgroup made with limits, the workload's supervisor (`herdd
    // shim`) started, the child placed in the cgroup and exec'd, its pid answered.
    let mut driver_launch = Vec::with_capacity(STARTS);
    {
        use herd_actors::edges::driver::{exec::ExecDriver, Driver, Launch};
        let (backend, _) = herd_actors::edges::cgroup::detect(
            "auto",
            &format!("herd-bench-drv-{}", std::process::id()),
        );
        let shim_dirs = tempfile::tempdir()?;
        let driver = ExecDriver::new(
            backend.clone(),
            vec![herd_tests::workspace_bin("herd-shim").into_os_string()],
            shim_dirs.path().to_path_buf(),
        );
        let spec = herd_bus::WorkloadSpec {
            command: vec!["true".into()],
            ..Default::default()
        };
        let resolved =
            herd_actors::cores::workload::validate::validate(&spec, &Default::default(), 1024.0)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        for i in 0..STARTS {
            let launch = Launch {
                workload_id: herd_bus::WorkloadId::new(format!("d{i:04}"))?,
                node_id: herd_bus::NodeId::new("bench")?,
                spec: spec.clone(),
                resolved: herd_actors::cores::workload::validate::Resolved::Exec(resolved.clone()),
                output_dir: None,
            };
            let t = Instant::now();
            let started = driver
                .launch(launch)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            driver_launch.push(t.elapsed());
            let _ = started.exit.await;
            started.handle.release().await;
        }
        backend.remove_root_if_empty();
    }

    let herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&node_config(&format!("herd-bench-{}", std::process::id()))),
        env: vec![("HERD_LOG", "warn".into())],
        ..HerddOptions::new("bench", nats.url())
    });
    wait_for_node(&client, "bench").await;
    let mut running = client
        .subscribe(subjects().workload_event(&node_id("bench"), WorkloadState::Running))
        .await?;
    client.flush().await?;
    let limits = DecodeLimits::default();
    let mut herd = Vec::with_capacity(STARTS);
    let mut replied = Vec::with_capacity(STARTS);
    for i in 0..STARTS {
        let id = format!("s{i:04}");
        let body = serde_json::to_vec(&json!({"workload_id": id, "command": ["true"]}))?;
        let t = Instant::now();
        let reply = request(
            &client,
            &subjects().node_command(&node_id("bench"), NodeVerb::WorkloadStart),
            None,
            body,
        )
        .await?;
        replied.push(t.elapsed());
        let v: Value = serde_json::from_slice(&reply.payload)?;
        if v["ok"] != true {
            bail!("workload.start: {v}");
        }
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), running.next())
                .await
                .context("no running event")?
                .context("subscription closed")?;
            let ev: WorkloadEvent = codec::decode(&msg.payload, Encoding::MsgPack, &limits)?;
            if ev.workload_id.as_str() == id {
                break;
            }
        }
        herd.push(t.elapsed());
    }
    let slowest: Vec<String> = {
        let mut idx: Vec<usize> = (0..herd.len()).collect();
        idx.sort_by_key(|i| std::cmp::Reverse(herd[*i]));
        idx.iter()
            .take(12)
            .map(|i| {
                format!(
                    "#{i}: {:.1} ms (reply after {:.1} ms)",
                    herd[*i].as_secs_f64() * 1e3,
                    replied[*i].as_secs_f64() * 1e3
                )
            })
            .collect()
    };
    eprintln!("e2e: slowest starts: {}", slowest.join(", "));
    // Where the slowest starts spent most of their time: before the reply (the synchronous part
    // of workload.start) or after it (the supervisor starting the workload, the event).
    let before_reply = {
        let mut idx: Vec<usize> = (0..herd.len()).collect();
        idx.sort_by_key(|i| std::cmp::Reverse(herd[*i]));
        idx.iter()
            .take(12)
            .filter(|i| replied[**i] * 2 > herd[**i])
            .count()
    };
    let (r50, r99) = p50_p99(replied);
    let (h50, h99) = p50_p99(herd);
    let (n50, n99) = p50_p99(rtt);
    let (f50, f99) = p50_p99(fork);
    let (d50, d99) = p50_p99(driver_launch);
    r.line("## Start latency\n");
    r.line(format!(
        "{STARTS} `workload.start` requests of `true`, one after another, from the request to the \
         `running` event at a subscriber (JSON request, MessagePack event), on loopback; baselines \
         measured in the same run.\n"
    ));
    r.line("| measurement | p50 | p99 | p50 ÷ bare NATS round trip |");
    r.line("|---|---|---|---|");
    r.line(format!(
        "| herd: request → `running` event | {h50:.2} ms | {h99:.2} ms | {:.1}× |",
        h50 / n50
    ));
    r.line(format!(
        "| herd: request → `workload.start` reply (accepted: cgroup made, supervisor spawned) | {r50:.2} ms | {r99:.2} ms | {:.1}× |",
        r50 / n50
    ));
    r.line(format!(
        "| bare NATS request/reply round trip | {n50:.3} ms | {n99:.3} ms | 1.0× |"
    ));
    r.line(format!(
        "| bare fork/exec of `true` (spawn returns after exec) | {f50:.3} ms | {f99:.3} ms | {:.1}× |",
        f50 / n50
    ));
    r.line(format!(
        "| herd's exec driver alone: cgroup with limits + supervisor (`herd-shim`) + placement + fork/exec, until the pid is answered | {d50:.3} ms | {d99:.3} ms | {:.1}× |",
        d50 / n50
    ));
    r.line("");
    r.line(format!(
        "The {} slowest starts: {}. {before_reply} of them spent most of their time before the \
         reply (validation, cgroup creation, spawning the supervisor), the other {} after it (the \
         supervisor placing the workload in its cgroup and exec'ing it, then the `running` \
         event); the exec driver's own p99 above shows the same tail without NATS. On cgroup v1, \
         moving a new process into its cgroups (writing `cgroup.procs`) can wait for an RCU grace \
         period; cgroup v2's `clone3(CLONE_INTO_CGROUP)` would avoid that migration but is not \
         used yet.\n",
        slowest.len(),
        slowest.join(", "),
        slowest.len() - before_reply
    ));
    r.target(
        "start latency p50",
        format!("{h50:.2} ms"),
        "≤ 3 ms",
        h50 <= 3.0,
    );
    r.target(
        "start latency p99",
        format!("{h99:.2} ms"),
        "≤ 10 ms",
        h99 <= 10.0,
    );

    // Spawn throughput: many requests in flight, limits on every workload.
    let mut running_all = client
        .subscribe(subjects().workload_event(&node_id("bench"), WorkloadState::Running))
        .await?;
    client.flush().await?;
    let t = Instant::now();
    let mut pending = futures::stream::iter(0..THROUGHPUT)
        .map(|i| {
            let client = client.clone();
            async move {
                let body = serde_json::to_vec(&json!({"workload_id": format!("t{i:04}"),
                    "command": ["true"], "limits": {"cpu": 0.1, "memory": 33554432u64, "pids": 16}}))
                .unwrap();
                request(&client, &subjects().node_command(&node_id("bench"), NodeVerb::WorkloadStart), None, body).await
            }
        })
        .buffer_unordered(32);
    while let Some(reply) = pending.next().await {
        let v: Value = serde_json::from_slice(&reply?.payload)?;
        if v["ok"] != true {
            bail!("workload.start: {v}");
        }
    }
    let mut seen = 0;
    while seen < THROUGHPUT {
        let msg = tokio::time::timeout(Duration::from_secs(30), running_all.next())
            .await
            .context("running events")?
            .context("closed")?;
        let ev: WorkloadEvent = codec::decode(&msg.payload, Encoding::MsgPack, &limits)?;
        if ev.workload_id.as_str().starts_with('t') {
            seen += 1;
        }
    }
    let took = t.elapsed();
    let rate = THROUGHPUT as f64 / took.as_secs_f64();
    r.line("## Spawn throughput\n");
    r.line(format!(
        "{THROUGHPUT} `workload.start` requests of `true` with limits (0.1 CPU, 32 MiB, 16 pids: a \
         cgroup each), 32 in flight, until every `running` event arrived: **{rate:.0} workloads/s** \
         ({:.2} s in all).\n",
        took.as_secs_f64()
    ));
    drop(herdd);
    Ok(())
}

/// herdd's footprint: idle, then with 100 workloads sampled every second.
async fn footprint(r: &mut Report) -> Result<()> {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&node_config(&format!(
            "herd-bench-fp-{}",
            std::process::id()
        ))),
        env: vec![("HERD_LOG", "warn".into())],
        ..HerddOptions::new("footprint", nats.url())
    });
    wait_for_node(&client, "footprint").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle_cpu, idle_rss) = usage_over(herdd.pid(), Duration::from_secs(10)).await?;
    for i in 0..100 {
        let v = node_call(
            &client,
            "footprint",
            "workload.start",
            json!({"workload_id": format!("f{i:03}"), "command": ["sleep", "3600"]}),
        )
        .await;
        if v["ok"] != true {
            bail!("workload.start: {v}");
        }
    }
    let mut telemetry = client
        .subscribe(subjects().telemetry(&node_id("footprint")))
        .await?;
    let limits = DecodeLimits::default();
    let mut collection_us = vec![];
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (c0, _) = cpu_and_rss(herdd.pid())?;
    let (_, shim_c0, _, _) = shims_usage(&herdd.state_dir)?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(3), telemetry.next()).await
        {
            let batch: herd_bus::TelemetryBatch =
                codec::decode(&msg.payload, Encoding::MsgPack, &limits)?;
            if batch.samples.len() == 100 {
                collection_us.push(batch.collection_us as f64);
            }
        }
    }
    let (c1, busy_rss) = cpu_and_rss(herdd.pid())?;
    let busy_cpu = (c1 - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let (shims, shim_c1, shim_pss, shim_rss) = shims_usage(&herdd.state_dir)?;
    let shim_cpu = (shim_c1 - shim_c0) / t0.elapsed().as_secs_f64() * 100.0;
    collection_us.sort_by(f64::total_cmp);
    let tick = if collection_us.is_empty() {
        "no batch of 100 samples".to_string()
    } else {
        format!(
            "median {:.0} µs per tick ({} ticks, as herdd measured it in `collection_us`)",
            percentile(&collection_us, 0.5),
            collection_us.len()
        )
    };
    r.line("## Footprint\n");
    r.line("One herdd node (release build) on a real nats-server, telemetry every 1 s.\n");
    r.line("| state | CPU (% of one core) | RSS |");
    r.line("|---|---|---|");
    r.line(format!(
        "| idle, 10 s | {idle_cpu:.2} % | {} |",
        mib(idle_rss)
    ));
    r.line(format!(
        "| 100 workloads (`sleep`), 20 s | {busy_cpu:.2} % | {} |",
        mib(busy_rss)
    ));
    r.line(format!(
        "| their {shims} supervisors (`herd-shim`), together, same 20 s | {shim_cpu:.2} % | {} PSS ({} RSS summed) |",
        mib(shim_pss),
        mib(shim_rss)
    ));
    r.line(format!("\nCollection with 100 workloads: {tick}.\n"));
    r.target(
        "herdd idle RSS",
        mib(idle_rss),
        "≤ 15 MB",
        idle_rss <= 15_000_000,
    );
    r.target(
        "herdd CPU, 100 workloads at 1 s telemetry",
        format!("{busy_cpu:.2} % of one core"),
        "≤ 1 %",
        busy_cpu <= 1.0,
    );
    let v = node_call(&client, "footprint", "workload.list", json!({})).await;
    let n = v["data"]["workloads"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    eprintln!("e2e: stopping {n} workloads");
    drop(herdd); // SIGTERM: it stops its workloads.
    Ok(())
}

/// A coordinator under `herd-sim` with 5,000 nodes at 1 Hz, and a few nodes going silent.
async fn coordinator(r: &mut Report) -> Result<()> {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let config =
        "roles = [\"coordinator\"]\n[coordinator]\nstale_after_missed = 3\nlost_after_s = 60.0\n";
    let coord = Herdd::start_with(HerddOptions {
        config_toml: Some(config),
        env: vec![("HERD_LOG", "warn".into())],
        ..HerddOptions::new("coord", nats.url())
    });
    // The coordinator answers once it is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = request(
            &client,
            &subjects().cluster(ClusterVerb::Nodes),
            None,
            b"{\"state\":\"stale\"}".to_vec(),
        )
        .await
        .is_ok();
        if ok {
            break;
        }
        if Instant::now() > deadline {
            bail!("the coordinator does not answer");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let herd_sim = herd_tests::workspace_bin("herd-sim");
    let sim = |nodes: u32, prefix: &str, duration: u32| {
        Command::new(&herd_sim)
            .args(["--nats-url", &nats.url(), "--nodes"])
            .arg(nodes.to_string())
            .args(["--workloads", "10", "--rate", "1", "--duration"])
            .arg(duration.to_string())
            .args(["--node-prefix", prefix])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    let mut big = sim(SIM_NODES, "sim", 50)?;
    tokio::time::sleep(Duration::from_secs(10)).await; // every node seen, steady state
    let (cpu, rss) = usage_over(coord.pid(), Duration::from_secs(20)).await?;
    let sim_cpu = cpu_and_rss(big.id()).map(|(c, _)| c).unwrap_or(0.0);
    // A few nodes that go silent: when are they reported stale?
    let mut quiet = sim(5, "quiet", 6)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quiet_status = quiet.wait()?;
    let silent_since = Instant::now(); // their last heartbeat went at most 1 s before
    let window = 3.0; // stale_after_missed × 1 s interval
    let mut detected = None;
    while silent_since.elapsed() < Duration::from_secs(15) {
        let msg = request(
            &client,
            &subjects().cluster(ClusterVerb::Nodes),
            None,
            b"{\"state\":\"stale\"}".to_vec(),
        )
        .await?;
        let reply: Reply<NodeList> =
            codec::decode(&msg.payload, Encoding::Json, &DecodeLimits::default()).or_else(
                |_| codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()),
            )?;
        let stale: Vec<String> = reply
            .data
            .map(|d| d.nodes.into_iter().map(|n| n.node_id.to_string()).collect())
            .unwrap_or_default();
        let quiet_stale = stale.iter().filter(|n| n.starts_with("quiet")).count();
        let others = stale.len() - quiet_stale;
        if quiet_stale == 5 {
            detected = Some((silent_since.elapsed(), others));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = big.kill();
    let _ = big.wait();
    r.line("## Coordinator under `herd-sim`\n");
    r.line(format!(
        "A coordinator (release herdd, `roles = [\"coordinator\"]`) and `herd-sim --nodes {SIM_NODES} \
         --workloads 10 --rate 1` on the same 2-core machine: {} heartbeats a second of 10 workloads each. \
         Measured over 20 s after 10 s of warm-up.\n",
        SIM_NODES
    ));
    r.line("| measurement | value |");
    r.line("|---|---|");
    r.line(format!("| coordinator CPU | {cpu:.1} % of one core |"));
    r.line(format!("| coordinator RSS | {} |", mib(rss)));
    r.line(format!(
        "| herd-sim CPU (the load generator, whole life) | {sim_cpu:.1} s |"
    ));
    match detected {
        Some((after, others)) => {
            let secs = after.as_secs_f64();
            r.line(format!(
                "| 5 nodes gone silent (sim exited: {quiet_status}) reported stale | {secs:.2} s after their sender exited (window {window:.0} s after the last heartbeat, checked every 100 ms; their last heartbeat left ≤ 1 s before the exit) |"
            ));
            r.line(format!(
                "| other nodes reported stale meanwhile | {others} |"
            ));
            r.target(
                "stale nodes detected within the window",
                format!("{secs:.2} s after the sender exited"),
                "≤ 3 s after the last heartbeat (+1 s interval, +0.25 s tick)",
                secs <= window + 0.25 + 0.5 && others == 0,
            );
        }
        None => {
            r.line("| 5 nodes gone silent | not reported stale within 15 s |");
            r.target(
                "stale nodes detected within the window",
                "not detected in 15 s".into(),
                "≤ 3 s",
                false,
            );
        }
    }
    r.line("");
    r.target(
        "coordinator at 5,000 nodes × 1 Hz",
        format!("{cpu:.1} % of one core"),
        "≤ 10 % of one core",
        cpu <= 10.0,
    );
    drop(coord);
    Ok(())
}

/// Criterion's mean estimates (ns) by full bench id, from `target/criterion`.
fn criterion_means(dir: &Path) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    let bench = std::fs::read(p.join("benchmark.json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                    let est = std::fs::read(p.join("estimates.json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                    if let (Some(b), Some(e)) = (bench, est) {
                        if let (Some(id), Some(mean)) =
                            (b["full_id"].as_str(), e["mean"]["point_estimate"].as_f64())
                        {
                            out.insert(id.to_string(), mean);
                        }
                    }
                } else {
                    stack.push(p);
                }
            }
        }
    }
    out
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn criterion_sections(r: &mut Report, means: &BTreeMap<String, f64>, backend: &str) {
    let get = |id: &str| means.get(id).copied();
    r.line("## Codec (criterion `benches/benches/codec.rs`)\n");
    r.line("| message | encoding | bytes | encode | decode |");
    r.line("|---|---|---|---|---|");
    let hb = fixtures::heartbeat(100);
    let tb = fixtures::telemetry_batch(100);
    let sizes = [
        (
            "heartbeat_100_workloads",
            codec::encode(&hb, Encoding::MsgPack)
                .map(|b| b.len())
                .unwrap_or(0),
            codec::encode(&hb, Encoding::Json)
                .map(|b| b.len())
                .unwrap_or(0),
        ),
        (
            "telemetry_100_samples",
            codec::encode(&tb, Encoding::MsgPack)
                .map(|b| b.len())
                .unwrap_or(0),
            codec::encode(&tb, Encoding::Json)
                .map(|b| b.len())
                .unwrap_or(0),
        ),
    ];
    for (name, mp, js) in sizes {
        for (enc, bytes) in [("msgpack", mp), ("json", js)] {
            let e = get(&format!("{name}/encode/{enc}"));
            let d = get(&format!("{name}/decode/{enc}"));
            r.line(format!(
                "| {name} | {enc} | {bytes} | {} | {} |",
                e.map(fmt_ns).unwrap_or("-".into()),
                d.map(fmt_ns).unwrap_or("-".into())
            ));
        }
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}×", b / a),
            _ => "-".into(),
        };
        r.line(format!(
            "| {name} | JSON ÷ MessagePack | {:.2}× | {} | {} |",
            js as f64 / mp as f64,
            ratio(
                get(&format!("{name}/encode/msgpack")),
                get(&format!("{name}/encode/json"))
            ),
            ratio(
                get(&format!("{name}/decode/msgpack")),
                get(&format!("{name}/decode/json"))
            )
        ));
    }
    r.line("");
    r.target(
        "heartbeat with 100 workloads, MessagePack",
        format!("{} bytes", sizes[0].1),
        "≤ 12 KB",
        sizes[0].1 <= 12_000,
    );

    r.line("## Collection (criterion `benches/benches/collection.rs`)\n");
    r.line(format!(
        "One telemetry tick (`Collector::collect`) over N idle workloads started by herd's exec \
         driver, each in its own real cgroup (backend **{backend}**), against the `sysinfo` crate \
         refreshing the same processes (cpu and memory) in the same bench. Mean of criterion's \
         samples; a tick re-reads memory.stat and the limit every 5th time (counters every \
         time), so the mean covers both kinds of tick.\n"
    ));
    r.line("| N | herd per tick | per workload | sysinfo per refresh | sysinfo ÷ herd |");
    r.line("|---|---|---|---|---|");
    let mut per_workload = vec![];
    for n in [10u32, 100, 1000] {
        let h = get(&format!("collection/herd/{n}"));
        let s = get(&format!("collection/sysinfo/{n}"));
        if let Some(h) = h {
            per_workload.push((n, h / n as f64));
        }
        r.line(format!(
            "| {n} | {} | {} | {} | {} |",
            h.map(fmt_ns).unwrap_or("-".into()),
            h.map(|h| fmt_ns(h / n as f64)).unwrap_or("-".into()),
            s.map(fmt_ns).unwrap_or("-".into()),
            match (h, s) {
                (Some(h), Some(s)) => format!("{:.1}×", s / h),
                _ => "-".into(),
            }
        ));
    }
    r.line("");
    r.line(growth("collection", &per_workload, "workload"));
    if let (Some(h), Some(s)) = (get("collection/herd/100"), get("collection/sysinfo/100")) {
        r.target(
            "collection, 100 workloads",
            fmt_ns(h),
            "≤ 2 ms per tick",
            h <= 2e6,
        );
        r.target(
            "collection vs sysinfo, 100 workloads",
            format!("{:.1}× faster", s / h),
            "≥ 3× faster",
            s / h >= 3.0,
        );
    }

    r.line("## Coordinator (criterion `benches/benches/coordinator.rs`)\n");
    r.line("NodeRegistry ingest of one heartbeat of 10 workloads into a registry of N nodes (a round over the fleet), alone and with the MessagePack decode before it; a placement query (1 CPU, 8 GiB) over 5,000 nodes.\n");
    r.line("| N nodes | ingest per heartbeat | decode + ingest | decode + ingest, N heartbeats a second (share of one core) |");
    r.line("|---|---|---|---|");
    let mut per_node = vec![];
    for n in [1000u32, 5000, 20000] {
        let i = get(&format!("ingest/heartbeat/{n}"));
        let d = get(&format!("ingest/decode+heartbeat/{n}"));
        if let Some(d) = d {
            per_node.push((n, d));
        }
        r.line(format!(
            "| {n} | {} | {} | {} |",
            i.map(fmt_ns).unwrap_or("-".into()),
            d.map(fmt_ns).unwrap_or("-".into()),
            d.map(|d| format!("{:.1} %", d * n as f64 / 1e9 * 100.0))
                .unwrap_or("-".into())
        ));
    }
    r.line("");
    r.line(growth("ingest", &per_node, "heartbeat"));
    if let Some(p) = get("placement/5000") {
        r.line(format!(
            "Placement query over 5,000 nodes: {}.\n",
            fmt_ns(p)
        ));
    }
}

/// A sentence on how cost per item moves with N.
fn growth(what: &str, per_item: &[(u32, f64)], item: &str) -> String {
    match (per_item.first(), per_item.last()) {
        (Some((n0, c0)), Some((n1, c1))) if n1 > n0 => {
            let ratio = c1 / c0;
            let shape = if ratio < 1.25 {
                "linear in N (the cost per item stays flat)"
            } else {
                "worse than linear"
            };
            format!(
                "Cost growth ({what}): {} per {item} at N = {n0}, {} at N = {n1} ({ratio:.2}×): {shape}.\n",
                fmt_ns(*c0),
                fmt_ns(*c1)
            )
        }
        _ => String::new(),
    }
}

fn machine() -> String {
    let sh = |cmd: &str| {
        Command::new("sh")
            .args(["-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "- CPU: {} ({} cores online); memory {}\n- kernel {}; cgroups: {}\n- {}; rustc {}\n",
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'"),
        sh("nproc"),
        sh("free -h | awk '/^Mem/ {print $2}'"),
        sh("uname -r"),
        sh("if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo v2; elif [ -d /sys/fs/cgroup/memory ]; then echo 'v1/hybrid'; else echo none; fi"),
        herd_tests::nats_version(),
        sh("rustc --version | cut -d' ' -f2"),
    )
}

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
            // For working on one part: start, footprint or coordinator; no report is written.
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
            "footprint" => footprint(&mut r).await?,
            "coordinator" => coordinator(&mut r).await?,
            other => bail!("unknown part {other}"),
        }
        println!("{}", r.body);
        return Ok(());
    }
    let means = criterion_means(&criterion);
    let t0 = Instant::now();
    criterion_sections(&mut r, &means, &backend);
    start_latency(&mut r).await?;
    footprint(&mut r).await?;
    coordinator(&mut r).await?;

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
