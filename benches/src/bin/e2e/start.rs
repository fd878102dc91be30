//! Start latency and spawn throughput through the bus, each beside its floor.

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
    {
        use herd_actors::edges::driver::{exec::ExecDriver, Driver, Launch};
        let (backend, _) = herd_actors::edges::cgroup::detect(
            "auto",
            &format!("herd-bench-drv-{}", std::process::id()),
        );
        let shim_dirs = tempfile::tempdir()?;
        // What the executor makes before a launch: the working directory and its tmp/.
        std::fs::create_dir_all(
            shim_dirs
                .path()
                .join(herd_actors::edges::driver::TMP_SUBDIR),
        )?;
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
                work_dir: shim_dirs.path().to_path_buf(),
                output_dir: None,
                assigned: Default::default(),
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
