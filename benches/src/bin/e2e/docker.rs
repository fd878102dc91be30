//! Docker workloads beside the engine's own API, in the same run: herd's docker start (request
//! → `running` event) against what `docker run -d` asks of the engine (create, then start), and
//! herd's telemetry tick over 50 containers against the engine's stats API for the same
//! containers. Without a usable engine the part says so and its targets are missed.

use super::*;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions, StatsOptions};
use bollard::Docker;
use herd_bus::TelemetryBatch;

const DOCKER_STARTS: usize = 100;
const SHORT_STARTS: usize = 30;
const CONTAINERS: usize = 50;
const STATS_ROUNDS: usize = 5;
const TICKS: usize = 10;
const NODE: &str = "bench-docker";
const START_TARGET: &str = "docker start p50: herd ÷ engine create + start";
const STATS_TARGET: &str = "docker telemetry, 50 containers: engine stats API ÷ herd's tick";

pub(crate) async fn docker(r: &mut Report) -> Result<()> {
    r.line("## Docker workloads\n");
    let (engine, image) = match prepare().await {
        Ok(found) => found,
        Err(e) => {
            r.line(format!(
                "**Not measured**: {e:#}. Both Docker targets are marked missed.\n"
            ));
            let figure = "not measured (no usable Docker engine)".to_string();
            r.target(START_TARGET, figure.clone(), "≤ 1.2×", false);
            r.target(STATS_TARGET, figure, "≥ 20×", false);
            return Ok(());
        }
    };
    let _cleanup = Cleanup;
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&node_config(&format!(
            "herd-bench-dk-{}",
            std::process::id()
        ))),
        env: vec![("HERD_LOG", "warn".into())],
        ..HerddOptions::new(NODE, nats.url())
    });
    wait_for_node(&client, NODE).await;
    start(r, &engine, &client, &image).await?;
    telemetry(r, &engine, &client, &image).await?;
    drop(herdd);
    Ok(())
}

/// The engine (API version negotiated, its version in the report's words) and the test image,
/// built by `scripts/test-image` unless it is there.
async fn prepare() -> Result<(Docker, String)> {
    let docker =
        Docker::connect_with_unix("/var/run/docker.sock", 120, bollard::API_DEFAULT_VERSION)
            .context("no Docker engine socket at /var/run/docker.sock")?
            .negotiate_version()
            .await
            .context("the Docker engine at /var/run/docker.sock does not answer")?;
    docker.ping().await.context("the Docker engine's ping")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-image");
    let out = Command::new(&script)
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    let said = String::from_utf8_lossy(&out.stderr);
    eprint!("{said}");
    if !out.status.success() {
        bail!(
            "scripts/test-image failed ({}): {}",
            out.status,
            said.trim()
        );
    }
    let image = std::env::var("HERD_TEST_IMAGE").unwrap_or_else(|_| "herd-test/busybox:1".into());
    docker
        .inspect_image(&image)
        .await
        .with_context(|| format!("the test image {image}"))?;
    Ok((docker, image))
}

/// Removes every container this part made (herd's node's and the baseline's), even when a
/// measurement failed half way.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        for filter in [
            format!("label=herd.node={NODE}"),
            "name=herd-bench-base-".into(),
        ] {
            let Ok(out) = Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .output()
            else {
                continue;
            };
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .stdout(Stdio::null())
                    .status();
            }
        }
    }
}

fn remove_options() -> Option<RemoveContainerOptions> {
    Some(RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Start latencies of one command: herd's and the baseline's, with the engine calls herd
/// makes besides create and start, each timed alone.
#[derive(Default)]
struct Starts {
    herd: Vec<Duration>,
    replied: Vec<Duration>,
    base: Vec<Duration>,
    created: Vec<Duration>,
    started: Vec<Duration>,
    inspect: Vec<Duration>,
    image_inspect: Vec<Duration>,
}

/// herd's docker start against the engine's create + start, one of each in turn so both see
/// the same engine and the same load on the machine. Each container is removed (and each herd
/// workload settled) before the next pair, outside the timings.
async fn starts(
    docker: &Docker,
    client: &async_nats::Client,
    image: &str,
    command: &[&str],
    n: usize,
    tag: &str,
) -> Result<Starts> {
    let node = node_id(NODE);
    let mut running = client
        .subscribe(subjects().workload_event(&node, WorkloadState::Running))
        .await?;
    let mut events = client
        .subscribe(subjects().workload_events_of(&node))
        .await?;
    client.flush().await?;
    let limits = DecodeLimits::default();
    let mut s = Starts::default();
    for i in 0..n {
        // The baseline: what `docker run -d IMAGE COMMAND` asks of the engine.
        let name = format!("herd-bench-base-{tag}{i:03}");
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(command.iter().map(|c| c.to_string()).collect()),
            ..Default::default()
        };
        let t = Instant::now();
        let c = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .context("baseline create")?;
        let t_created = t.elapsed();
        docker
            .start_container(&c.id, None)
            .await
            .context("baseline start")?;
        s.base.push(t.elapsed());
        s.created.push(t_created);
        s.started.push(t.elapsed() - t_created);
        // The other engine calls herd's start makes, each alone.
        let t = Instant::now();
        docker.inspect_container(&c.id, None).await?;
        s.inspect.push(t.elapsed());
        let t = Instant::now();
        docker.inspect_image(image).await?;
        s.image_inspect.push(t.elapsed());
        docker.remove_container(&c.id, remove_options()).await?;

        // herd: request → `running` event.
        let id = format!("{tag}{i:03}");
        let body = serde_json::to_vec(&json!({"workload_id": id, "driver": "docker",
            "image": image, "command": command}))?;
        let t = Instant::now();
        let reply = request(
            client,
            &subjects().node_command(&node, NodeVerb::WorkloadStart),
            None,
            body,
        )
        .await?;
        s.replied.push(t.elapsed());
        let v: Value = serde_json::from_slice(&reply.payload)?;
        if v["ok"] != true {
            bail!("workload.start of a container: {v}");
        }
        wait_event(&mut running, &id, &limits, |_| true).await?;
        s.herd.push(t.elapsed());
        let name = format!("herd-{NODE}-{id}");
        let _ = docker.remove_container(&name, remove_options()).await;
        wait_event(&mut events, &id, &limits, |s| s.is_terminal()).await?;
        let t = Instant::now();
        while docker.inspect_container(&name, None).await.is_ok() {
            if t.elapsed() > Duration::from_secs(10) {
                bail!("the container {name} is still there");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(s)
}

async fn start(
    r: &mut Report,
    docker: &Docker,
    client: &async_nats::Client,
    image: &str,
) -> Result<()> {
    let long = starts(
        docker,
        client,
        image,
        &["sleep", "3600"],
        DOCKER_STARTS,
        "d",
    )
    .await?;
    let short = starts(docker, client, image, &["true"], SHORT_STARTS, "e").await?;
    r.line(format!(
        "{DOCKER_STARTS} starts of a container running `sleep 3600` from the local test image \
         `{image}`, one after another; each herd start (a `workload.start` request with \
         `driver: docker`, until the `running` event reaches a subscriber) follows a baseline \
         start in the same loop: the engine's API alone, over its unix socket with the client \
         library herd uses (bollard), doing what `docker run -d {image} sleep 3600` does: create \
         the container, start it, timed until the start request returns (the engine answers it \
         once the container's process has been started; no inspect). Each container is removed \
         (and each herd workload settled) before the next pair, outside the timings. Then \
         {SHORT_STARTS} pairs the same way with `true`, a container that ends at once.\n"
    ));
    r.line("| measurement | p50 | p99 | p50 ÷ baseline p50 |");
    r.line("|---|---|---|---|");
    let (h50, h99) = p50_p99(long.herd.clone());
    let (b50, b99) = p50_p99(long.base.clone());
    for (what, s) in [("`sleep 3600`", &long), ("`true`", &short)] {
        let (b50, _) = p50_p99(s.base.clone());
        let rows = [
            ("herd: request → `running` event", &s.herd),
            ("herd: request → `workload.start` reply", &s.replied),
            ("baseline: engine create + start (`docker run -d`)", &s.base),
            ("engine: create alone", &s.created),
            ("engine: start alone", &s.started),
            (
                "engine: inspect the container right after its start",
                &s.inspect,
            ),
            ("engine: inspect the image", &s.image_inspect),
        ];
        for (row, d) in rows {
            let (p50, p99) = p50_p99(d.clone());
            r.line(format!(
                "| {what}: {row} | {p50:.2} ms | {p99:.2} ms | {:.2}× |",
                p50 / b50
            ));
        }
    }
    r.line("");
    r.line(
        "herd's start makes these engine requests: at `workload.start`, an inspect of the \
         image (pull policy `never`; a ping instead with the other policies) before the reply; \
         then create (a removal and a second create only when a container of an earlier start \
         of the workload holds the name) and start, with the inspect of the container for its \
         init's pid (its cgroup is telemetry's) sent 5 ms after the start so that the engine \
         answers it as soon as the start is done; the log stream and the wait for the exit are \
         opened beside it, not waited on. Asked after the start instead, that inspect waits \
         while the engine handles the exit of a container that ended at once (the `true` \
         rows' inspect).\n",
    );
    r.target(
        START_TARGET,
        format!(
            "{:.2}× ({h50:.1} ms vs {b50:.1} ms; p99 {:.2}×)",
            h50 / b50,
            h99 / b99
        ),
        "≤ 1.2×",
        h50 <= 1.2 * b50,
    );
    Ok(())
}

/// Waits for an event of `id` whose state `want` accepts.
async fn wait_event(
    sub: &mut async_nats::Subscriber,
    id: &str,
    limits: &DecodeLimits,
    want: impl Fn(WorkloadState) -> bool,
) -> Result<()> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .with_context(|| format!("no event of {id}"))?
            .context("subscription closed")?;
        let ev: WorkloadEvent = codec::decode(&msg.payload, Encoding::MsgPack, limits)?;
        if ev.workload_id.as_str() == id && want(ev.state) {
            return Ok(());
        }
    }
}

/// herd's telemetry over 50 containers it started against the engine's stats API for them.
async fn telemetry(
    r: &mut Report,
    docker: &Docker,
    client: &async_nats::Client,
    image: &str,
) -> Result<()> {
    let node = node_id(NODE);
    let limits = DecodeLimits::default();
    let mut running = client
        .subscribe(subjects().workload_event(&node, WorkloadState::Running))
        .await?;
    client.flush().await?;
    let ids: Vec<String> = (0..CONTAINERS).map(|i| format!("t{i:03}")).collect();
    for id in &ids {
        let body = serde_json::to_vec(&json!({"workload_id": id, "driver": "docker",
            "image": image, "command": ["sleep", "3600"]}))?;
        let reply = request(
            client,
            &subjects().node_command(&node, NodeVerb::WorkloadStart),
            None,
            body,
        )
        .await?;
        let v: Value = serde_json::from_slice(&reply.payload)?;
        if v["ok"] != true {
            bail!("workload.start of a container: {v}");
        }
        wait_event(&mut running, id, &limits, |_| true).await?;
    }

    // herdd's own figure: `collection_us` of its batches once all 50 are tracked.
    let mut batches = client.subscribe(subjects().telemetry(&node)).await?;
    client.flush().await?;
    let mut ticks = Vec::with_capacity(TICKS);
    while ticks.len() < TICKS {
        let msg = tokio::time::timeout(Duration::from_secs(10), batches.next())
            .await
            .context("no telemetry batch")?
            .context("closed")?;
        let batch: TelemetryBatch = codec::decode(&msg.payload, Encoding::MsgPack, &limits)?;
        let sampled = batch.samples.iter().filter(|s| s.error.is_none()).count();
        if batch.samples.len() == CONTAINERS && sampled == CONTAINERS {
            ticks.push(Duration::from_micros(batch.collection_us));
        }
    }
    let herd_mean = ticks.iter().sum::<Duration>() / ticks.len() as u32;
    let (t50, t99) = p50_p99(ticks);

    // The engine's stats API for the same containers: a round one container after another (as
    // the issue words it), then rounds with all of them in flight (as `docker stats
    // --no-stream` asks), with the CPU the engine's processes spent on those.
    let names: Vec<String> = ids.iter().map(|id| format!("herd-{NODE}-{id}")).collect();
    let t = Instant::now();
    for name in &names {
        one_shot(docker, name).await?;
    }
    let sequential = ms(t.elapsed());
    let engine_cpu0 = engine_cpu();
    let mut rounds = Vec::with_capacity(STATS_ROUNDS);
    for _ in 0..STATS_ROUNDS {
        let t = Instant::now();
        futures::future::try_join_all(names.iter().map(|name| one_shot(docker, name))).await?;
        rounds.push(t.elapsed());
    }
    let engine_cpu_ms = (engine_cpu() - engine_cpu0) * 1e3 / STATS_ROUNDS as f64;
    let (s50, s99) = p50_p99(rounds);
    let herd_ms = ms(herd_mean);
    let version = docker.version().await?;
    r.line(format!(
        "Telemetry: {CONTAINERS} containers (`sleep 3600`) started by herd. herd's cost per tick is \
         herdd's own `collection_us` in its telemetry batches (one `Collector::collect` over the \
         containers' cgroups, found from each container's init pid; a full sample every {} \
         ticks, counters in between), over {TICKS} ticks with all {CONTAINERS} sampled. The \
         engine's (Docker {} API {}): `GET /containers/{{id}}/stats?stream=false&one-shot=true` \
         for the same containers, timed at the client; one round one container after another, \
         then {STATS_ROUNDS} rounds with all {CONTAINERS} requests in flight (as `docker stats \
         --no-stream` asks). The engine answers a stats request from its collector, which reads \
         every container it is asked about once a second: one-shot only spares the second \
         reading a CPU percentage needs, so a request waits up to a second for the collector's \
         next pass. Engine CPU: user + system seconds of dockerd, containerd and the \
         containerd shims over the concurrent rounds, per round.\n",
        herd_actors::node::monitor::FULL_EVERY,
        version.version.as_deref().unwrap_or("?"),
        version.api_version.as_deref().unwrap_or("?"),
    ));
    r.line("| per tick, 50 containers | p50 | p99 | mean |");
    r.line("|---|---|---|---|");
    r.line(format!(
        "| herd: herdd's `collection_us` | {t50:.3} ms | {t99:.3} ms | {herd_ms:.3} ms |"
    ));
    r.line(format!(
        "| engine: stats API, one-shot, all 50 in flight (wall) | {s50:.1} ms | {s99:.1} ms | |"
    ));
    r.line(format!(
        "| engine: CPU of dockerd, containerd and shims per such round | | | {engine_cpu_ms:.1} ms |"
    ));
    r.line(format!(
        "| engine: stats API, one-shot, one container after another (wall, one round) | | | {sequential:.0} ms |"
    ));
    r.line("");
    let ratio = s50 / herd_ms;
    r.target(
        STATS_TARGET,
        format!(
            "{ratio:.0}× ({s50:.1} ms vs {herd_ms:.3} ms; engine CPU {:.0}×, sequential {:.0}×)",
            engine_cpu_ms / herd_ms,
            sequential / herd_ms
        ),
        "≥ 20×",
        ratio >= 20.0,
    );
    Ok(())
}

/// One stats reading of a container from the engine.
async fn one_shot(docker: &Docker, name: &str) -> Result<()> {
    let options = StatsOptions {
        stream: false,
        one_shot: true,
    };
    let stats = Box::pin(docker.stats(name, Some(options)))
        .next()
        .await
        .context("no stats")?
        .with_context(|| format!("stats of {name}"))?;
    if stats.memory_stats.is_none() {
        bail!("stats of {name} without memory");
    }
    Ok(())
}

/// CPU seconds so far of the engine's processes: dockerd, containerd and its shims.
fn engine_cpu() -> f64 {
    let mut cpu = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if matches!(comm.trim(), "dockerd" | "containerd") || comm.starts_with("containerd-shim") {
            cpu += cpu_and_rss(pid).map(|(c, _)| c).unwrap_or(0.0);
        }
    }
    cpu
}
