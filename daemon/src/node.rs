//! Wiring of one node: NATS connection, actors, readiness, signals and a bounded shutdown.

use crate::config::Config;
use crate::nats::{self, Persistence};
use crate::systemd;
use actix::prelude::*;
use anyhow::Context;
use herd_actors::bus::{Bus, EmitNodeEvent, NodeIdentity, SetNodeState};
use herd_actors::connection::connected_and_flushed;
use herd_actors::events::{EventPublisher, Flush};
use herd_bus::{NodeEventKind, NodeState, Subjects};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// File in the state directory holding events not yet acknowledged.
pub const OUTBOX_FILE: &str = "outbox.msgpack";

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
    systemd::status(&format!("connecting to NATS at {urls}"));
    let client = nats::connect(
        &config.nats,
        &format!("herdd-{node_id}"),
        Persistence::Daemon,
        move |event| match event {
            async_nats::Event::Connected => systemd::status(&status_on_event),
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
        Some(config.state_dir.join(OUTBOX_FILE)),
    )
    .start();
    let bus = Bus::new(
        client.clone(),
        subjects,
        identity,
        config.limits.decode_limits(),
        publisher.clone().recipient(),
    )
    .start();
    bus.do_send(EmitNodeEvent(NodeEventKind::Started, None));

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
    systemd::stopping("stopping: delivering queued events");
    let flush = Duration::from_secs_f64(config.shutdown.flush_timeout_s);
    let shutdown = async {
        let _ = bus.send(SetNodeState(NodeState::Stopping)).await;
        let _ = bus
            .send(EmitNodeEvent(
                NodeEventKind::Stopping,
                Some(format!("received {signal_name}")),
            ))
            .await;
        let left = publisher.send(Flush(flush)).await.unwrap_or(0);
        if left > 0 {
            tracing::warn!(
                events = left,
                file = %config.state_dir.join(OUTBOX_FILE).display(),
                "events not yet acknowledged are saved and will be sent at the next start"
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
    };
    // Bounded whatever happens: the flush timeout plus a little for the rest.
    if tokio::time::timeout(flush + Duration::from_secs(3), shutdown)
        .await
        .is_err()
    {
        tracing::warn!("shutdown did not finish in time; exiting anyway");
    }
    if let Some(w) = watchdog.take() {
        w.abort();
    }
    System::current().stop();
    tracing::info!("herdd stopped");
    Ok(())
}
