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

/// Rounds of the pair: a single pair moved by 10 points between runs on this machine kind, a
/// median of paired rounds less. Even, so that each path goes first in half of them: starts get
/// slower as a run goes on (on ext4 without a journal, making a file skips every inode freed in
/// the last minutes, and each start makes and frees a few), which would otherwise count against
/// whichever path always went second.
const ROUNDS: usize = 4;

/// The middle value; with an even count, the mean of the two middle ones.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    }
}

/// Files made by one probe: as many as about 40 starts make.
const PROBE_FILES: usize = 200;

/// What making a file costs now where the starts make theirs (the temporary directory, as herdd's
/// state directory and the driver's are here): the median of [`PROBE_FILES`] atomic writes
/// (`herd_shim::write_atomic`: a temporary file renamed over its target, as herd writes its
/// records and the supervisor its state), in µs.
fn file_creation_us() -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut us = Vec::with_capacity(PROBE_FILES);
    for i in 0..PROBE_FILES {
        let t = Instant::now();
        herd_shim::write_atomic(&dir.path().join(format!("f{i}.json")), b"{}")?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(us))
}

/// Whether the file system of the temporary directory keeps an ext4 journal (a jbd2 entry under
/// /proc/fs/jbd2 for its device); `None` when it is not ext4 or cannot be told.
fn ext4_journal() -> Option<bool> {
    let tmp = std::env::temp_dir();
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let (dev, fstype) = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && tmp.starts_with(f[1])).then(|| (f[1].len(), f[0], f[2]))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, dev, fstype)| (dev.to_string(), fstype.to_string()))?;
    if fstype != "ext4" {
        return None;
    }
    // /dev/mapper/… names a link to /dev/dm-N, the name jbd2 uses.
    let dev = std::fs::canonicalize(&dev).unwrap_or_else(|_| dev.into());
    let name = dev.file_name()?.to_string_lossy().to_string();
    let journals = std::fs::read_dir("/proc/fs/jbd2").ok();
    Some(journals.is_some_and(|d| {
        d.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}-"))
        })
    }))
}

/// Spawn throughput through the bus beside the exec driver's own, same run.
pub(crate) async fn throughput(r: &mut Report) -> Result<()> {
    let probe_before = file_creation_us()?;
    let mut rounds = Vec::with_capacity(ROUNDS);
    let mut backend = String::new();
    for round in 0..ROUNDS {
        let (driver, bus) = if round.is_multiple_of(2) {
            let driver = driver_rate().await?;
            (driver, bus_rate().await?)
        } else {
            let bus = bus_rate().await?;
            (driver_rate().await?, bus)
        };
        backend = driver.1;
        rounds.push((driver.0, bus));
    }
    let probe_after = file_creation_us()?;
    let driver = median(rounds.iter().map(|r| r.0).collect());
    let bus = median(rounds.iter().map(|r| r.1).collect());
    let share = median(rounds.iter().map(|(d, b)| b / d * 100.0).collect());
    r.line("## Spawn throughput\n");
    r.line(format!(
        "{THROUGHPUT} starts of `true` with limits (0.1 CPU, 32 MiB, 16 pids: a cgroup each, \
         backend **{backend}**), {IN_FLIGHT} in flight, each way in the same run; {ROUNDS} \
         rounds, the driver's first in the 1st and 3rd, the bus's first in the others (starts \
         slow down as the run goes on: see the note on file creation below), and the median of \
         each column.\n"
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
    let journal = match ext4_journal() {
        Some(true) => "ext4 with a journal",
        Some(false) => {
            "ext4 without a journal: a new inode skips every inode freed in the last minute or more"
        }
        None => "not ext4",
    };
    r.line(format!(
        "File creation where both paths make their files (the temporary directory; {journal}): an atomic write of a small file (temporary file renamed over its target, as herd writes its records and the supervisor its state) took {probe_before:.0} µs (median of {PROBE_FILES}) before the rounds and {probe_after:.0} µs after them. A start makes about five such files on either path (the supervisor's launch, state and exit files, two logs), about two more through the bus (herdd's record of the workload, rewritten as its state changes).\n"
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
