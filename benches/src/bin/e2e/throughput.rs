//! Spawn throughput through the bus against herd's exec driver alone, both with 32 starts in
//! flight and limits on every workload, in the same run.

use super::driver::bench_limits;
use super::*;

const IN_FLIGHT: usize = 32;

/// Workloads a second through herd's exec driver without NATS or actors: each launch made
/// like herdd's (cgroup with limits, supervisor, placement, exec), its end awaited and its
/// cgroup released meanwhile, as herdd does.
async fn driver_rate() -> Result<(f64, String)> {
    use herd_actors::edges::driver::Driver;
    let bench = super::driver::BenchDriver::new("tp")?;
    let t = Instant::now();
    let mut last_start = Duration::ZERO;
    let mut runs = futures::stream::iter(0..THROUGHPUT)
        .map(|i| {
            let l = bench.launch(format!("tp{i:04}"));
            let d = &bench.driver;
            async move {
                let started = d.launch(l?).await.map_err(|e| anyhow::anyhow!(e))?;
                let at = t.elapsed();
                let _ = started.exit.await;
                started.handle.release().await;
                Ok::<Duration, anyhow::Error>(at)
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(at) = runs.next().await {
        last_start = last_start.max(at?);
    }
    drop(runs);
    Ok((
        THROUGHPUT as f64 / last_start.as_secs_f64(),
        bench.backend.version().as_str().to_string(),
    ))
}

/// Workloads a second through the bus: `workload.start` requests to a herdd, until every
/// `running` event arrived.
async fn bus_rate() -> Result<f64> {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&node_config(&format!(
            "herd-bench-tpb-{}",
            std::process::id()
        ))),
        env: vec![("HERD_LOG", "warn".into())],
        ..HerddOptions::new("bench", nats.url())
    });
    wait_for_node(&client, "bench").await;
    let mut running = client
        .subscribe(subjects().workload_event(&node_id("bench"), WorkloadState::Running))
        .await?;
    client.flush().await?;
    let limits = DecodeLimits::default();
    let t = Instant::now();
    let mut pending = futures::stream::iter(0..THROUGHPUT)
        .map(|i| {
            let client = client.clone();
            async move {
                let body = serde_json::to_vec(&json!({"workload_id": format!("t{i:04}"),
                    "command": ["true"], "limits": bench_limits()}))
                .expect("a JSON body");
                request(
                    &client,
                    &subjects().node_command(&node_id("bench"), NodeVerb::WorkloadStart),
                    None,
                    body,
                )
                .await
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(reply) = pending.next().await {
        let v: Value = serde_json::from_slice(&reply?.payload)?;
        if v["ok"] != true {
            bail!("workload.start: {v}");
        }
    }
    let mut seen = 0;
    while seen < THROUGHPUT {
        let msg = tokio::time::timeout(Duration::from_secs(30), running.next())
            .await
            .context("running events")?
            .context("closed")?;
        let ev: WorkloadEvent = codec::decode(&msg.payload, Encoding::MsgPack, &limits)?;
        if ev.workload_id.as_str().starts_with('t') {
            seen += 1;
        }
    }
    let rate = THROUGHPUT as f64 / t.elapsed().as_secs_f64();
    drop(herdd);
    Ok(rate)
}

/// Spawn throughput through the bus beside the exec driver's own, same run.
pub(crate) async fn throughput(r: &mut Report) -> Result<()> {
    let (driver, backend) = driver_rate().await?;
    let bus = bus_rate().await?;
    let share = bus / driver * 100.0;
    r.line("## Spawn throughput\n");
    r.line(format!(
        "{THROUGHPUT} starts of `true` with limits (0.1 CPU, 32 MiB, 16 pids: a cgroup each, \
         backend **{backend}**), {IN_FLIGHT} in flight, each way in the same run.\n"
    ));
    r.line("| path | workloads/s |");
    r.line("|---|---|");
    r.line(format!(
        "| through the bus: `workload.start` requests to herdd, until every `running` event arrived | {bus:.0} |"
    ));
    r.line(format!(
        "| herd's exec driver alone (no NATS, no actors), until every pid was answered | {driver:.0} |"
    ));
    r.line(format!("| bus ÷ driver | {share:.0} % |\n"));
    r.target(
        "spawn throughput through the bus ÷ the exec driver's own (32 in flight)",
        format!("{bus:.0}/s = {share:.0} % of {driver:.0}/s"),
        "≥ 60 %",
        share >= 60.0,
    );
    Ok(())
}
