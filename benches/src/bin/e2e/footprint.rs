//! herdd's own footprint: idle RSS, CPU with workloads, the shims' memory.

use super::*;

/// Medians of herdd's own `collection_us` over `window`, from batches of `n` samples.
async fn collection_median(
    telemetry: &mut async_nats::Subscriber,
    n: usize,
    window: Duration,
) -> Result<(f64, usize)> {
    let limits = DecodeLimits::default();
    let mut us = vec![];
    let t0 = Instant::now();
    while t0.elapsed() < window {
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(3), telemetry.next()).await
        {
            let batch: herd_bus::TelemetryBatch =
                codec::decode(&msg.payload, Encoding::MsgPack, &limits)?;
            if batch.samples.len() == n {
                us.push(batch.collection_us as f64);
            }
        }
    }
    us.sort_by(f64::total_cmp);
    Ok(if us.is_empty() {
        (f64::NAN, 0)
    } else {
        (percentile(&us, 0.5), us.len())
    })
}

/// Starts workloads `f<i>` (`sleep 3600`) on the footprint node, one after another.
async fn start_sleepers(client: &async_nats::Client, ids: std::ops::Range<usize>) -> Result<()> {
    for i in ids {
        let v = node_call(
            client,
            "footprint",
            "workload.start",
            json!({"workload_id": format!("f{i:03}"), "command": ["sleep", "3600"]}),
        )
        .await;
        if v["ok"] != true {
            bail!("workload.start: {v}");
        }
    }
    Ok(())
}

/// herdd's footprint: idle, then with 100 workloads sampled every second, then 1000; herdd's
/// own tick beside criterion's for the same N (`means`, from target/criterion).
pub(crate) async fn footprint(r: &mut Report, means: &BTreeMap<String, f64>) -> Result<()> {
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
    let [idle_anon, idle_file] = status_bytes(herdd.pid(), ["RssAnon:", "RssFile:"])?;
    start_sleepers(&client, 0..100).await?;
    let mut telemetry = client
        .subscribe(subjects().telemetry(&node_id("footprint")))
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (c0, _) = cpu_and_rss(herdd.pid())?;
    let (_, shim_c0, _, _) = shims_usage(&herdd.state_dir)?;
    let t0 = Instant::now();
    let (tick100, ticks100) =
        collection_median(&mut telemetry, 100, Duration::from_secs(60)).await?;
    let (c1, busy_rss) = cpu_and_rss(herdd.pid())?;
    let busy_cpu = (c1 - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let (shims, shim_c1, shim_pss, shim_rss) = shims_usage(&herdd.state_dir)?;
    let shim_cpu = (shim_c1 - shim_c0) / t0.elapsed().as_secs_f64() * 100.0;
    start_sleepers(&client, 100..1000).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (tick1000, ticks1000) =
        collection_median(&mut telemetry, 1000, Duration::from_secs(60)).await?;
    r.line("## Footprint\n");
    r.line("One herdd node (release build) on a real nats-server, telemetry every 1 s.\n");
    r.line("| state | CPU (% of one core) | RSS |");
    r.line("|---|---|---|");
    r.line(format!(
        "| idle, 10 s | {idle_cpu:.2} % | {} |",
        mib(idle_rss)
    ));
    r.line(format!(
        "| idle: of its RSS, anonymous memory (heap, stacks, data written) | | {} |",
        mib(idle_anon)
    ));
    r.line(format!(
        "| idle: of its RSS, pages of the herdd binary and the C libraries mapped from the page cache (clean, shared) | | {} |",
        mib(idle_file)
    ));
    r.line(format!(
        "| 100 workloads (`sleep`), 60 s | {busy_cpu:.2} % | {} |",
        mib(busy_rss)
    ));
    r.line(format!(
        "| their {shims} supervisors (`herd-shim`, one of them the spare waiting for the next start), together, same 60 s | {shim_cpu:.2} % | {} PSS ({} RSS summed) |",
        mib(shim_pss),
        mib(shim_rss)
    ));
    r.line("\nherdd's own tick (`collection_us` in its telemetry batches, median over 60 s) beside criterion's mean for the same N (same run):\n");
    r.line("| N | herdd's tick | criterion | herdd ÷ criterion |");
    r.line("|---|---|---|---|");
    let mut worst: Option<f64> = Some(0.0);
    for (n, tick, ticks) in [(100u32, tick100, ticks100), (1000, tick1000, ticks1000)] {
        let bench = means
            .get(&format!("collection/herd/{n}"))
            .map(|ns| ns / 1e3);
        let ratio = bench.map(|b| tick / b).filter(|r| r.is_finite());
        worst = match (worst, ratio) {
            (Some(w), Some(r)) => Some(w.max(r)),
            _ => None,
        };
        r.line(format!(
            "| {n} | {tick:.0} µs ({ticks} ticks) | {} | {} |",
            bench.map(|b| format!("{b:.0} µs")).unwrap_or("-".into()),
            ratio.map(|r| format!("{r:.2}×")).unwrap_or("-".into())
        ));
    }
    r.line("");
    r.target(
        "herdd's own tick ÷ criterion, N = 100 and 1000",
        worst
            .map(|w| format!("{w:.2}× at worst"))
            .unwrap_or("no criterion or herdd figure".into()),
        "≤ 1.2×",
        worst.is_some_and(|w| w <= 1.2),
    );
    r.target(
        "herdd idle RSS",
        mib(idle_rss),
        "≤ 15 MB",
        idle_rss <= 15_000_000,
    );
    // Less the spare, which waits for the next start.
    let pss_each = shim_pss / (shims.max(2) - 1) as u64;
    r.target(
        "herd-shim PSS per workload",
        format!("{:.0} KiB", pss_each as f64 / 1024.0),
        "≤ 512 KiB (0.30 MiB in the report of 2026-12-01)",
        pss_each <= 512 * 1024,
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

    // With herdd and its workloads gone.
    super::tick::breakdowns(r).await
}
