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

/// Rounds of the pair, one way then the other: a single pair moved by 10 points between runs on
/// this machine kind, a median of paired rounds less.
const ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Spawn throughput through the bus beside the exec driver's own, same run.
pub(crate) async fn throughput(r: &mut Report) -> Result<()> {
    let mut rounds = Vec::with_capacity(ROUNDS);
    let mut backend = String::new();
    for _ in 0..ROUNDS {
        let (driver, b) = driver_rate().await?;
        backend = b;
        rounds.push((driver, bus_rate().await?));
    }
    let driver = median(rounds.iter().map(|r| r.0).collect());
    let bus = median(rounds.iter().map(|r| r.1).collect());
    let share = median(rounds.iter().map(|(d, b)| b / d * 100.0).collect());
    r.line("## Spawn throughput\n");
    r.line(format!(
        "{THROUGHPUT} starts of `true` with limits (0.1 CPU, 32 MiB, 16 pids: a cgroup each, \
         backend **{backend}**), {IN_FLIGHT} in flight, each way in the same run; {ROUNDS} \
         rounds, each the driver's then the bus's, and the median of each column.\n"
    ));
    r.line("| path | workloads/s | rounds |");
    r.line("|---|---|---|");
    let each =
        |f: &dyn Fn(&(f64, f64)) -> String| rounds.iter().map(f).collect::<Vec<_>>().join(", ");
    r.line(format!(
        "| through the bus: `workload.start` requests to herdd, until every `running` event arrived | {bus:.0} | {} |",
        each(&|(_, b)| format!("{b:.0}"))
    ));
    r.line(format!(
        "| herd's exec driver alone (no NATS, no actors), until every pid was answered | {driver:.0} | {} |",
        each(&|(d, _)| format!("{d:.0}"))
    ));
    r.line(format!(
        "| bus ÷ driver (median of the rounds' ratios) | {share:.1} % | {} |\n",
        each(&|(d, b)| format!("{:.0} %", b / d * 100.0))
    ));
    r.target(
        "spawn throughput through the bus ÷ the exec driver's own (32 in flight)",
        format!(
            "{share:.1} %, the median of {ROUNDS} paired rounds ({}); medians {bus:.0}/s and {driver:.0}/s",
            each(&|(d, b)| format!("{:.0}/s ÷ {d:.0}/s", b))
        ),
        "≥ 60 %",
        share >= 60.0,
    );
    Ok(())
}
