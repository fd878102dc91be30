//! Readiness of the NATS connection.

use async_nats::connection::State;
use std::time::Duration;

/// Returns once the client is connected and the server has processed everything sent so far
/// (subscriptions included): the moment a node can tell systemd it is ready.
pub async fn connected_and_flushed(client: &async_nats::Client) {
    loop {
        if client.connection_state() == State::Connected {
            match tokio::time::timeout(Duration::from_secs(5), client.flush()).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => tracing::debug!(error = %e, "flush failed; retrying"),
                Err(_) => tracing::debug!("flush timed out; retrying"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
