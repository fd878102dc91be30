//! Connecting to NATS with a `NatsConfig`.

use crate::{NatsConfig, NatsError};
use async_nats::{ConnectOptions, Event};
use std::time::Duration;

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
) -> Result<async_nats::Client, NatsError> {
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
            .map_err(|source| NatsError::Credentials {
                path: path.clone(),
                source,
            })?;
    }
    if let Some(path) = &config.nkey_seed_file {
        let seed = std::fs::read_to_string(path).map_err(|source| NatsError::NkeySeed {
            path: path.clone(),
            source,
        })?;
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
        .map(|u| {
            u.parse().map_err(|source| NatsError::Url {
                url: u.clone(),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    opts.connect(urls)
        .await
        .map_err(|source| NatsError::Connect {
            urls: config.urls.join(", "),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_from_100_ms_to_5_s() {
        assert_eq!(reconnect_delay(0), Duration::from_millis(100));
        assert_eq!(reconnect_delay(3), Duration::from_millis(800));
        assert_eq!(reconnect_delay(6), Duration::from_secs(5));
        assert_eq!(reconnect_delay(1000), Duration::from_secs(5));
    }
}
