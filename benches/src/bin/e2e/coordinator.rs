//! A coordinator under herd-sim's synthetic heartbeats.

use super::*;

/// A coordinator under `herd-sim` with [`SIM_NODES`] nodes at 1 Hz, and a few nodes going silent.
pub(crate) async fn coordinator(r: &mut Report) -> Result<()> {
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
    let sim = |nodes: u32, prefix: &str, duration: u32, stderr: Stdio| {
        Command::new(&herd_sim)
            .args(["--nats-url", &nats.url(), "--nodes"])
            .arg(nodes.to_string())
            .args(["--workloads", "10", "--rate", "1", "--duration"])
            .arg(duration.to_string())
            .args(["--node-prefix", prefix])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
    };
    let big = sim(SIM_NODES, "sim", 120, Stdio::piped())?;
    tokio::time::sleep(Duration::from_secs(10)).await; // every node seen, steady state
    let (sim0, _) = cpu_and_rss(big.id())?;
    let measured = Instant::now();
    let (cpu, rss) = usage_over(coord.pid(), Duration::from_secs(20)).await?;
    let (sim1, _) = cpu_and_rss(big.id())?;
    let sim_cpu = (sim1 - sim0) / measured.elapsed().as_secs_f64() * 100.0;
    // A few nodes that go silent: when are they reported stale?
    let mut quiet = sim(5, "quiet", 6, Stdio::null())?;
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
    // Ctrl-C: herd-sim says how many heartbeats it sent, and at what rate.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(big.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let sent = big.wait_with_output()?;
    let sent = String::from_utf8_lossy(&sent.stderr);
    let sim_rate = sent.lines().find_map(|l| {
        l.rsplit_once('(')?
            .1
            .strip_suffix("/s)")?
            .parse::<f64>()
            .ok()
    });
    r.line("## Coordinator under `herd-sim`\n");
    r.line(format!(
        "A coordinator (release herdd, `roles = [\"coordinator\"]`) and `herd-sim --nodes {SIM_NODES} \
         --workloads 10 --rate 1` on the same 2-core machine: {SIM_NODES} heartbeats a second of 10 \
         workloads each. Measured over 20 s after 10 s of warm-up.\n"
    ));
    r.line("| measurement | value |");
    r.line("|---|---|");
    r.line(format!("| coordinator CPU | {cpu:.1} % of one core |"));
    r.line(format!("| coordinator RSS | {} |", mib(rss)));
    r.line(format!(
        "| herd-sim CPU (the load generator, same 20 s) | {sim_cpu:.1} % of one core |"
    ));
    r.line(format!(
        "| herd-sim rate (its whole life, from its summary) | {} |",
        sim_rate.map_or("not reported".into(), |r| format!("{r:.0} heartbeats/s"))
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
    // Below 99 % of the rate asked for, the coordinator was not given the load it is held to.
    let loaded = sim_rate.is_some_and(|r| r >= 0.99 * SIM_NODES as f64);
    r.target(
        "coordinator at 20,000 nodes × 1 Hz (herd-sim keeping the rate)",
        format!(
            "{cpu:.1} % of one core at {} heartbeats/s",
            sim_rate.map_or("?".into(), |r| format!("{r:.0}"))
        ),
        "≤ 10 % of one core",
        cpu <= 10.0 && loaded,
    );
    drop(coord);
    Ok(())
}
