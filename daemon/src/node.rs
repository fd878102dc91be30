//! Wiring of one node: NATS connection, actors, readiness, signals and a bounded shutdown.

use crate::config::{Config, OnShutdown};
use crate::systemd;
use actix::prelude::*;
use anyhow::Context;
use herd_actors::coordinator::candidate::CoordinatorFactory;
use herd_actors::coordinator::{Candidate, CandidateConfig, Coordinator, Leave};
use herd_actors::cores::workload::ExecPolicy;
use herd_actors::edges::nats::connected_and_flushed;
use herd_actors::node::bus::OnStateChange;
use herd_actors::node::bus::{Bus, EmitNodeEvent, NodeIdentity};
use herd_actors::node::events::{EventIds, EventPublisher};
use herd_actors::node::executor::{ExecutorConfig, WorkloadExecutor};
use herd_actors::node::heartbeat::HeartbeatActor;
use herd_actors::node::monitor::ProcessMonitor;
use herd_actors::node::results::{ResultsSpool, ResultsUploader};
use herd_actors::node::shutdown::{shut_down, NodeActors, ShutdownPolicy};
use herd_bus::{NodeEventKind, Role, Subjects};
use herd_nats::{self as nats, Persistence};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// File in the state directory holding events not yet acknowledged.
pub const OUTBOX_FILE: &str = "outbox.msgpack";
/// Directory in the state directory holding run task outputs until they are uploaded.
pub const RESULTS_SPOOL_DIR: &str = "results";

/// Runs the node until SIGTERM or SIGINT. Must be called inside an actix System.
pub async fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let node_id = config.node_id()?;
    let subjects = Subjects::new(&config.nats.prefix)?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state dir {}", config.state_dir.display()))?;
    let identity = NodeIdentity::new(
        node_id.clone(),
        crate::config::hostname(),
        config.labels.clone(),
        config.roles.clone(),
    );
    let urls = config.nats.urls.join(",");
    tracing::info!(
        node = %node_id,
        nats = %urls,
        state_dir = %config.state_dir.display(),
        version = herd_bus::HERD_VERSION,
        "herdd starting"
    );
    if !config.nats.has_credentials() {
        tracing::warn!("connecting to NATS without credentials: any client of this server can command this node; set one of nats.creds_file, nats.nkey_seed_file, nats.user/password or nats.token");
    }
    let serving = format!("serving node {node_id} on {urls}");
    let status_on_event = serving.clone();
    let connected_before = std::sync::atomic::AtomicBool::new(false);
    systemd::status(&format!("connecting to NATS at {urls}"));
    let client = nats::connect(
        &config.nats,
        &format!("herdd-{node_id}"),
        Persistence::Daemon,
        move |event| match event {
            async_nats::Event::Connected => {
                if connected_before.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    herd_actors::edges::metrics::metrics().nats_reconnects.inc();
                }
                systemd::status(&status_on_event)
            }
            async_nats::Event::Disconnected => systemd::status("NATS disconnected; reconnecting"),
            _ => {}
        },
    )
    .await?;

    let publisher = EventPublisher::new(
        client.clone(),
        &subjects,
        config.events.outbox_capacity,
        Duration::from_secs(config.events.max_age_s),
        config.nats.replicas,
        Some(config.state_dir.join(OUTBOX_FILE)),
    )
    .start();
    let ids = EventIds::new(&node_id, identity.started_at_ms);
    let runs_workloads = config.roles.contains(&Role::Node);
    let mut bus = Bus::new(
        client.clone(),
        subjects.clone(),
        identity.clone(),
        config.limits.decode_limits(),
        publisher.clone().recipient(),
        ids.clone(),
    );
    let mut node_actors = None;
    let mut allocation = None;
    if runs_workloads {
        // Only a node that runs workloads touches cgroups (detection creates herd's root).
        let (backend, warning) =
            herd_actors::edges::cgroup::detect(&config.cgroup.backend, &config.cgroup.root);
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        tracing::info!(backend = %backend.describe(), "workload cgroups");
        if let (OnShutdown::Keep, Some(why)) = (
            config.shutdown.on_shutdown,
            backend.keeping_blocks_restart(),
        ) {
            tracing::warn!("shutdown.on_shutdown = keep cannot be honoured here, workloads will be stopped when herdd stops: {why}");
        }
        // Made before the first workload starts: the first chunk of each waits for it.
        let logs_kept = herd_actors::edges::log_history::keep_logs(
            client.clone(),
            herd_actors::edges::log_history::logs_stream_config(
                &subjects,
                &node_id,
                config.logs.retention(),
                config.nats.replicas,
            ),
        );
        let nvml = herd_actors::edges::gpu::Nvml::load();
        let gpus = config.gpu.inventory(nvml.devices());
        let policy = std::sync::Arc::new(herd_actors::edges::host::allocation_policy(
            &config.resources,
            gpus,
        ));
        tracing::info!(
            cpus = policy.capacity_cpus,
            memory = policy.capacity_memory,
            reserved_cpu = config.resources.reserved_cpu,
            reserved_memory = config.resources.reserved_memory,
            gpus = policy.gpus.len(),
            "allocatable resources"
        );
        allocation = Some(policy.clone());
        let monitor = ProcessMonitor::new(
            client.clone(),
            subjects.clone(),
            node_id.clone(),
            Duration::from_secs_f64(config.telemetry.interval_s),
            Duration::from_secs(config.telemetry.max_age_s),
            config.nats.replicas,
            nvml,
        );
        let gpu_use = monitor.gpu_use();
        let monitor = monitor.start();
        let results_spool = config.state_dir.join(RESULTS_SPOOL_DIR);
        let uploader = ResultsUploader::new(
            client.clone(),
            subjects.clone(),
            node_id.clone(),
            config.results.clone(),
            results_spool.clone(),
            publisher.clone(),
            config.nats.replicas,
        )
        .start();
        let executor = WorkloadExecutor::new(
            ExecutorConfig {
                node_id: node_id.clone(),
                subjects: subjects.clone(),
                policy: ExecPolicy {
                    default_user: exec_default_user(&config.exec.default_user),
                    ..config.exec.clone()
                },
                state_dir: config.state_dir.clone(),
                host_cpus: herd_actors::edges::host::cpus(),
                log_lines_per_s: config.logs.max_lines_per_s,
                keep_settled: config.workloads.keep_settled,
                logs_kept,
                docker: config.docker.clone(),
                shim_command: shim_command(),
                allocation: policy,
            },
            backend.clone(),
            client.clone(),
            publisher.clone().recipient(),
            ids.clone(),
            monitor.clone(),
        )
        .with_results(ResultsSpool::new(
            results_spool.clone(),
            uploader.recipient(),
        ))
        .with_gpu_use(gpu_use)
        .start();
        bus = bus.with_executor(executor.clone(), backend.version().as_str());
        node_actors = Some((executor, monitor, backend));
    }
    let bus = bus.start();
    let executor = node_actors.as_ref().map(|(e, _, b)| (e.clone(), b.clone()));
    if let (Some((executor, monitor, _)), Some(allocation)) = (node_actors, allocation) {
        let heartbeat = HeartbeatActor::new(
            client.clone(),
            subjects.clone(),
            identity.clone(),
            Duration::from_secs_f64(config.heartbeat.interval_s),
            allocation,
            bus.clone(),
            executor,
            monitor,
        )
        .start();
        bus.do_send(OnStateChange(heartbeat.recipient()));
    }
    let is_coordinator = config.roles.contains(&Role::Coordinator);
    let mut candidate = None;
    if is_coordinator {
        let registry = config.coordinator.registry();
        let tick = Duration::from_secs_f64((config.heartbeat.interval_s / 4.0).clamp(0.05, 1.0));
        let (client2, subjects2, limits) = (
            client.clone(),
            subjects.clone(),
            config.limits.decode_limits(),
        );
        let make: CoordinatorFactory = Box::new(move |mandate| {
            Coordinator::new(
                client2.clone(),
                subjects2.clone(),
                registry,
                limits,
                tick,
                mandate,
            )
        });
        let candidacy = CandidateConfig {
            me: format!("{node_id}:{}", std::process::id()),
            lease: Duration::from_secs_f64(config.coordinator.lease_s),
            replicas: config.nats.replicas,
            registry,
            limits,
            tick,
        };
        candidate = Some(Candidate::new(client.clone(), subjects.clone(), candidacy, make).start());
        tracing::info!(
            lost_after_s = config.coordinator.lost_after_s,
            lease_s = config.coordinator.lease_s,
            "coordinator role active: standing for the lead"
        );
    }
    bus.do_send(EmitNodeEvent(NodeEventKind::Started, None));
    let metrics_listen = config.metrics.listen.as_deref().map(|listen| {
        let executor = executor.as_ref().map(|(e, _)| e.clone());
        (listen, executor)
    });
    let dashboard = match (&config.dashboard.listen, is_coordinator) {
        (Some(listen), true) => Some((listen.as_str(), dashboard(&config, &client, &subjects)?)),
        (Some(_), false) => {
            tracing::warn!("dashboard.listen is set but this herdd is no coordinator: only a coordinator serves the dashboard");
            None
        }
        (None, _) => None,
    };
    let (metrics_addr, dashboard_addr) = crate::http::start(metrics_listen, dashboard)?;
    if let Some(addr) = metrics_addr {
        tracing::info!(%addr, "serving Prometheus metrics on /metrics");
    }
    if let Some(addr) = dashboard_addr {
        tracing::info!(url = %format!("http://{addr}/"), actions = config.dashboard.allow_actions, "serving the dashboard");
    }

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut ready = std::pin::pin!(connected_and_flushed(&client));
    let mut is_ready = false;
    let mut watchdog = systemd::watchdog_interval().map(|every| {
        tracing::info!(
            every_ms = every.as_millis() as u64,
            "systemd watchdog enabled"
        );
        actix::spawn(systemd::watchdog(every))
    });
    let signal_name = loop {
        tokio::select! {
            _ = &mut ready, if !is_ready => {
                is_ready = true;
                systemd::ready(&serving);
                tracing::info!("ready: {serving}");
            }
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };

    tracing::info!(signal = signal_name, "shutting down");
    if let Some(candidate) = &candidate {
        // Hand the lead over first: a standby takes it at once instead of after the lease.
        let _ = candidate.send(Leave).await;
    }
    systemd::stopping(match config.shutdown.on_shutdown {
        OnShutdown::Keep => "stopping: delivering queued events; workloads keep running",
        OnShutdown::Stop => "stopping: stopping workloads, delivering queued events",
    });
    let policy = ShutdownPolicy {
        keep_workloads: config.shutdown.on_shutdown == OnShutdown::Keep,
        workload_grace_cap: Duration::from_secs_f64(config.shutdown.workload_grace_cap_s),
        flush_timeout: Duration::from_secs_f64(config.shutdown.flush_timeout_s),
        outbox_file: config.state_dir.join(OUTBOX_FILE),
    };
    let node = NodeActors {
        client: client.clone(),
        bus,
        publisher,
        executor,
    };
    shut_down(&node, &policy, signal_name).await;
    if let Some(w) = watchdog.take() {
        w.abort();
    }
    System::current().stop();
    tracing::info!("herdd stopped");
    Ok(())
}

/// The dashboard of this coordinator, with actions when the configuration allows them.
fn dashboard(
    config: &Config,
    client: &async_nats::Client,
    subjects: &Subjects,
) -> anyhow::Result<crate::dashboard::Shared> {
    use crate::dashboard::actions::Policy;
    let policy = match (&config.dashboard.token_file, config.dashboard.allow_actions) {
        (Some(file), true) => {
            let token = std::fs::read_to_string(file)
                .with_context(|| format!("dashboard.token_file: cannot read {}", file.display()))?;
            Policy::with_token(&token)
                .map_err(|e| anyhow::anyhow!("dashboard.token_file {}: {e}", file.display()))?
        }
        _ => Policy::off(),
    };
    Ok(crate::dashboard::Dashboard::new(
        client.clone(),
        subjects.clone(),
        policy,
    ))
}

/// `herd-shim` beside this herdd (small: starts fast, costs little memory per workload);
/// without it, this herdd binary itself (`/proc/self/exe` runs it even once a package upgrade
/// has replaced its file) with `shim`.
fn shim_command() -> Vec<std::ffi::OsString> {
    if let Ok(me) = std::env::current_exe() {
        let shim = me.with_file_name("herd-shim");
        if shim.is_file() {
            return vec![shim.into_os_string()];
        }
    }
    tracing::warn!("herd-shim is not installed beside herdd; workloads are supervised by `herdd shim`, which costs more memory each");
    vec!["/proc/self/exe".into(), "shim".into()]
}

/// Without root herdd cannot switch users: the shipped default (`nobody`) becomes herdd's own
/// user, so that a developer's node runs workloads at all.
fn exec_default_user(configured: &str) -> String {
    let me = nix::unistd::Uid::effective();
    if me.is_root() || configured != ExecPolicy::default().default_user {
        return configured.to_string();
    }
    let name = nix::unistd::User::from_uid(me)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| me.to_string());
    tracing::info!(user = %name, "not root: workloads run as herdd's own user");
    name
}
