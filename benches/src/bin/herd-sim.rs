//! `herd-sim`: publishes the heartbeats of synthetic nodes, to load a coordinator (it was
//! `herdctl sim`). scripts/bench runs it through e2e; by hand:
//!
//!   herd-sim --nats-url nats://127.0.0.1:4222 --nodes 1000 --rate 1

use anyhow::bail;
use clap::Parser;
use herd_bus::codec::{self, Encoding};
use herd_bus::{
    Capacity, Heartbeat, NodeId, NodeState, Role, Subjects, Usage, WorkloadId, WorkloadState,
    WorkloadSummary,
};
use herd_nats::{NatsArgs, NatsConfig, Persistence};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Parser)]
#[command(
    name = "herd-sim",
    about = "Publish heartbeats of synthetic nodes, to load a coordinator"
)]
struct Cli {
    #[command(flatten)]
    nats: NatsArgs,
    /// Synthetic nodes, each with a heartbeat of its own.
    #[arg(long, default_value_t = 100)]
    nodes: u32,
    /// Workloads in each heartbeat's inventory.
    #[arg(long, default_value_t = 10)]
    workloads: u32,
    /// Heartbeats per second per node.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    /// Node ids are NODE_PREFIX-00001 … . (Not `--prefix`: that is the subject prefix.)
    #[arg(long = "node-prefix", default_value = "sim")]
    node_prefix: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herd-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herd-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The first heartbeat of each of `nodes` synthetic nodes, `workloads` running workloads each.
fn fleet(
    nodes: u32,
    workloads: u32,
    rate: f64,
    prefix: &str,
    started: u64,
) -> anyhow::Result<Vec<Heartbeat>> {
    (1..=nodes)
        .map(|i| -> anyhow::Result<Heartbeat> {
            Ok(Heartbeat {
                node_id: NodeId::new(format!("{prefix}-{i:05}"))?,
                seq: 0,
                interval_ms: (1000.0 / rate) as u64,
                ts_ms: started,
                started_at_ms: started,
                version: herd_bus::HERD_VERSION.into(),
                uptime_s: 0.0,
                labels: [("sim".to_string(), "true".to_string())].into(),
                roles: vec![Role::Node],
                state: NodeState::Active,
                capacity: Capacity {
                    cpus: 16.0,
                    memory: 64 << 30,
                    gpus: vec![],
                },
                usage: Usage {
                    cpu_percent: (i % 1600) as f64,
                    memory_available: 32 << 30,
                    load_avg: [1.0, 1.0, 1.0],
                },
                // What herdd reports: a simulated node has handed out part of its capacity.
                allocation: Some(herd_bus::Allocation {
                    allocatable_cpus: 16.0,
                    allocatable_memory: 64 << 30,
                    allocated_cpus: (i % 16) as f64,
                    allocated_memory: (i as u64 % 32) << 30,
                    cores_free: 16 - (i % 16),
                    ..Default::default()
                }),
                workloads: (0..workloads)
                    .map(|w| -> anyhow::Result<WorkloadSummary> {
                        Ok(WorkloadSummary {
                            workload_id: WorkloadId::new(format!("w-{i:05}-{w:03}"))?,
                            state: WorkloadState::Running,
                            run_id: None,
                            rep: None,
                            cpu_percent: Some(12.5),
                            memory: Some(256 << 20),
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
            })
        })
        .collect()
}

/// Heartbeats of every node, `rate` times a second, until `--duration` or Ctrl-C.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        nats,
        nodes,
        workloads,
        rate,
        duration,
        node_prefix,
    } = cli;
    if !(rate.is_finite() && rate > 0.0) || nodes == 0 {
        bail!("--rate must be > 0 and --nodes ≥ 1");
    }
    let mut config = NatsConfig::default();
    nats.apply(&mut config);
    let client = herd_nats::connect(&config, "herd-sim", Persistence::Cli, |_| {}).await?;
    let subjects = Subjects::new(&config.prefix)?;
    let started = now_ms();
    let mut beats = fleet(nodes, workloads, rate, &node_prefix, started)?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = duration.map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    let mut sent = 0u64;
    let t0 = std::time::Instant::now();
    eprintln!("herd-sim: {nodes} nodes × {rate}/s with {workloads} workloads each; Ctrl-C to stop");
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        if end.is_some_and(|e| tokio::time::Instant::now() >= e) {
            break;
        }
        let now = now_ms();
        for hb in beats.iter_mut() {
            hb.seq += 1;
            hb.ts_ms = now;
            hb.uptime_s = now.saturating_sub(started) as f64 / 1e3;
            client
                .publish(
                    subjects.heartbeat(&hb.node_id),
                    codec::encode(hb, Encoding::MsgPack)?.into(),
                )
                .await?;
            sent += 1;
        }
        client.flush().await?;
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "herd-sim: sent {sent} heartbeats in {secs:.1} s ({:.0}/s)",
        sent as f64 / secs.max(1e-9)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_synthetic_node_has_its_id_interval_and_workloads() {
        let beats = super::fleet(3, 10, 2.0, "quiet", 1_000).unwrap();
        let ids: Vec<String> = beats.iter().map(|b| b.node_id.to_string()).collect();
        assert_eq!(ids, ["quiet-00001", "quiet-00002", "quiet-00003"]);
        assert!(beats.iter().all(|b| b.workloads.len() == 10));
        assert_eq!(beats[0].interval_ms, 500);
        assert_eq!(beats[2].workloads[9].workload_id.as_str(), "w-00003-009");
    }
}
