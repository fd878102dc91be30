//! Start latency and spawn throughput through the bus, each beside its floor.

use super::breakdown::{breakdown, Window};
use super::driver::bench_limits;
use super::*;

/// Start latency: request → `running` event, against a bare NATS round trip and a bare
/// fork/exec of the same command.
pub(crate) async fn start_latency(r: &mut Report) -> Result<()> {
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
    let backend_name: String;
    {
        use herd_actors::edges::driver::Driver;
        let bench = super::driver::BenchDriver::new("drv")?;
        backend_name = bench.backend.version().as_str().to_string();
        for i in 0..STARTS {
            let launch = bench.launch(format!("d{i:04}"))?;
            let t = Instant::now();
            let started = bench
                .driver
                .launch(launch)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            driver_launch.push(t.elapsed());
            let _ = started.exit.await;
            started.handle.release().await;
        }
    }

    // herdd and its shims mark each stage of a start in this file (see breakdown.rs).
    let trace_dir = tempfile::tempdir()?;
    let trace = trace_dir.path().join("start-trace");
    let herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&node_config(&format!("herd-bench-{}", std::process::id()))),
        env: vec![
            ("HERD_LOG", "warn".into()),
            (
                herd_shim::stage::START_TRACE_ENV,
                trace.display().to_string(),
            ),
        ],
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
    let mut windows = Vec::with_capacity(STARTS);
    for i in 0..STARTS {
        let id = format!("s{i:04}");
        let body = serde_json::to_vec(
            &json!({"workload_id": id, "command": ["true"], "limits": bench_limits()}),
        )?;
        let sent_ns = herd_shim::stage::now_ns();
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
        windows.push(Window {
            sent_ns,
            received_ns: herd_shim::stage::now_ns(),
        });
    }
    // The trace holds the sequential starts above; the throughput run below is not traced.
    let marks = herd_shim::stage::read_trace(&std::fs::read_to_string(&trace).unwrap_or_default());
    let (stages, traced) = breakdown(&marks, &windows);
    let (r50, r99) = p50_p99(replied);
    let (h50, h99) = p50_p99(herd);
    let (n50, n99) = p50_p99(rtt);
    let (f50, f99) = p50_p99(fork);
    let (d50, d99) = p50_p99(driver_launch);
    let (floor50, floor99) = (n50 + f50, n99 + f99);
    r.line("## Start latency\n");
    r.line(format!(
        "{STARTS} `workload.start` requests of `true` with limits (0.1 CPU, 32 MiB, 16 pids: a \
         cgroup each, backend **{backend}**), one after another, from the request to the \
         `running` event at a subscriber (JSON request, MessagePack event), on loopback; the \
         floor is a bare NATS round trip plus a bare fork/exec of the same command, same \
         percentile, measured in the same run.\n",
        backend = backend_name
    ));
    r.line("| measurement | p50 | p99 | ÷ floor (p50, p99) |");
    r.line("|---|---|---|---|");
    let row = |r: &mut Report, what: &str, p50: f64, p99: f64| {
        r.line(format!(
            "| {what} | {p50:.3} ms | {p99:.3} ms | {:.1}×, {:.1}× |",
            p50 / floor50,
            p99 / floor99
        ))
    };
    row(r, "herd: request → `running` event", h50, h99);
    row(
        r,
        "herd: request → `workload.start` reply (accepted: cgroup made, supervisor started)",
        r50,
        r99,
    );
    row(
        r,
        "herd's exec driver alone (no NATS): cgroup with limits + supervisor (`herd-shim`) + placement + fork/exec, until the pid is answered",
        d50,
        d99,
    );
    row(
        r,
        "floor: bare NATS round trip + bare fork/exec",
        floor50,
        floor99,
    );
    row(r, "bare NATS request/reply round trip", n50, n99);
    row(
        r,
        "bare fork/exec of `true` (spawn returns after exec)",
        f50,
        f99,
    );
    r.line("");
    r.line(format!(
        "Breakdown of a start (median and p90 of each stage over the {traced} of {STARTS} \
         sequential starts whose every stage was traced; herdd and its shims mark the stages in \
         `HERD_START_TRACE`, this bench marks the request and the event's arrival on the same \
         clock):\n"
    ));
    r.line("| stage | median | p90 |");
    r.line("|---|---|---|");
    let mut sum = 0.0;
    for (what, p50, p90) in &stages {
        sum += p50;
        r.line(format!("| {what} | {p50:.3} ms | {p90:.3} ms |"));
    }
    r.line(format!("| sum of the medians | {sum:.3} ms | |\n"));
    if backend_name == "v1" {
        r.line(
            "On cgroup v1 the workload joins its cgroups between fork and exec by writing `0` to \
             each hierarchy's `tasks` (the `shim_spawned` stage; a write to `cgroup.procs` would \
             take the kernel's global lock, whose write side waits for an RCU grace period). On \
             cgroup v2 herd-shim creates it inside its cgroup with `clone3(CLONE_INTO_CGROUP)` instead; \
             this script measures on the machine it runs on, so that figure needs a cgroup v2 \
             host (the VM lane's guests run under TCG emulation, too slow for a latency \
             figure).\n",
        );
    }
    r.target(
        "start latency p50 (exec, limits) ÷ floor",
        format!(
            "{h50:.2} ms = {:.1}× the floor ({floor50:.2} ms)",
            h50 / floor50
        ),
        "≤ 4×",
        h50 <= 4.0 * floor50,
    );
    r.target(
        "start latency p99 (exec, limits) ÷ floor",
        format!(
            "{h99:.2} ms = {:.1}× the floor ({floor99:.2} ms)",
            h99 / floor99
        ),
        "≤ 6×",
        h99 <= 6.0 * floor99,
    );
    drop(herdd);
    Ok(())
}
