//! The NATS connection options shared by herdd and herdctl.

use crate::config::NatsConfig;
use anyhow::Context;
use async_nats::{ConnectOptions, Event};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Connection flags; each has an environment variable, and a flag beats its variable.
#[derive(Debug, Clone, Default, Args)]
pub struct NatsArgs {
    /// NATS server URLs, comma-separated.
    #[arg(
        long = "nats-url",
        env = "HERD_NATS_URL",
        value_delimiter = ',',
        global = true
    )]
    pub urls: Vec<String>,
    /// Subject prefix.
    #[arg(
        id = "nats_prefix",
        long = "prefix",
        env = "HERD_PREFIX",
        global = true
    )]
    pub prefix: Option<String>,
    /// NATS credentials file (JWT + nkey seed).
    #[arg(
        id = "nats_creds",
        long = "nats-creds",
        env = "HERD_NATS_CREDS",
        global = true
    )]
    pub creds_file: Option<PathBuf>,
    /// File holding an nkey seed.
    #[arg(
        id = "nats_nkey",
        long = "nats-nkey",
        env = "HERD_NATS_NKEY",
        global = true
    )]
    pub nkey_seed_file: Option<PathBuf>,
    #[arg(
        id = "nats_user",
        long = "nats-user",
        env = "HERD_NATS_USER",
        global = true
    )]
    pub user: Option<String>,
    #[arg(
        id = "nats_password",
        long = "nats-password",
        env = "HERD_NATS_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<String>,
    #[arg(
        id = "nats_token",
        long = "nats-token",
        env = "HERD_NATS_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) to verify the server.
    #[arg(
        id = "nats_tls_ca",
        long = "nats-tls-ca",
        env = "HERD_NATS_TLS_CA",
        global = true
    )]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(
        id = "nats_tls_cert",
        long = "nats-tls-cert",
        env = "HERD_NATS_TLS_CERT",
        global = true
    )]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(
        id = "nats_tls_key",
        long = "nats-tls-key",
        env = "HERD_NATS_TLS_KEY",
        global = true
    )]
    pub tls_key: Option<PathBuf>,
    /// Require TLS.
    #[arg(
        id = "nats_tls",
        long = "nats-tls",
        env = "HERD_NATS_TLS",
        global = true
    )]
    pub tls_required: bool,
}

impl NatsArgs {
    /// Lays what was given over `config`.
    pub fn apply(&self, config: &mut NatsConfig) {
        if !self.urls.is_empty() {
            config.urls = self
                .urls
                .iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect();
        }
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { config.$f = Some(v.clone()); } )* };
        }
        over!(
            creds_file,
            nkey_seed_file,
            user,
            password,
            token,
            tls_ca,
            tls_cert,
            tls_key
        );
        if let Some(p) = &self.prefix {
            config.prefix = p.clone();
        }
        config.tls_required |= self.tls_required;
    }
}

/// Backoff between reconnect attempts: 100 ms doubling to 5 s.
pub fn reconnect_delay(attempt: usize) -> Duration {
    Duration::from_millis(100u64 << attempt.min(6)).min(Duration::from_secs(5))
}

/// How a connection behaves: a daemon keeps retrying from the start; a CLI fails fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    Daemon,
    Cli,
}

pub async fn connect(
    config: &NatsConfig,
    name: &str,
    persistence: Persistence,
    on_event: impl Fn(&Event) + Send + Sync + 'static,
) -> anyhow::Result<async_nats::Client> {
    config.validate()?;
    let on_event = std::sync::Arc::new(on_event);
    let mut opts = ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let on_event = on_event.clone();
            async move {
                match &event {
                    Event::Connected => tracing::info!("NATS connected"),
                    Event::Disconnected => tracing::warn!("NATS disconnected; reconnecting"),
                    Event::SlowConsumer(sid) => tracing::warn!(sid, "NATS slow consumer"),
                    // Repeats on every failed reconnect; `Disconnected` has said it already.
                    Event::ClientError(e) => tracing::debug!(error = %e, "NATS client error"),
                    // Permission violations, for one: a subject this user may not use.
                    Event::ServerError(e) => tracing::warn!(error = %e, "NATS server error"),
                    other => tracing::info!(event = %other, "NATS event"),
                }
                on_event(&event);
            }
        });
    if persistence == Persistence::Daemon {
        opts = opts.retry_on_initial_connect();
    } else {
        opts = opts.connection_timeout(Duration::from_secs(3));
    }
    if let Some(path) = &config.creds_file {
        opts = opts
            .credentials_file(path)
            .await
            .with_context(|| format!("NATS credentials file {}", path.display()))?;
    }
    if let Some(path) = &config.nkey_seed_file {
        let seed = std::fs::read_to_string(path)
            .with_context(|| format!("NATS nkey seed file {}", path.display()))?;
        opts = opts.nkey(seed.trim().to_string());
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        opts = opts.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        opts = opts.token(token.clone());
    }
    if let Some(ca) = &config.tls_ca {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if config.tls_required {
        opts = opts.require_tls(true);
    }
    let urls: Vec<async_nats::ServerAddr> = config
        .urls
        .iter()
        .map(|u| u.parse().with_context(|| format!("NATS URL '{u}'")))
        .collect::<anyhow::Result<_>>()?;
    opts.connect(urls)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.urls.join(", ")))
}
