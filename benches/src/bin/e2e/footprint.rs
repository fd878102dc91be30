//! herdd's own footprint: idle RSS, CPU with workloads, the shims' memory.

use super::*;

/// herdd's footprint: idle, then with 100 workloads sampled every second.
pub(crate) async fn footprint(r: &mut Report) -> Result<()> {
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
