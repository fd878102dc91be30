//! Streams herd creates: idempotently, with the replicas asked for.

use async_nats::jetstream::{self, stream};

/// Creates a stream, or finds the one that exists (idempotently), and says plainly when the
/// servers cannot hold the replicas asked for or the one found has fewer.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, String> {
    let (name, replicas) = (config.name.clone(), config.num_replicas.max(1));
    let mut stream = js
        .get_or_create_stream(config)
        .await
        .map_err(|e| match e.kind() {
            // A cluster that lost a server, or is electing a leader, answers late: no hint about
            // its size, which may well be right.
            jetstream::context::CreateStreamErrorKind::TimedOut => {
                format!("cannot create stream {name}: {e}; a JetStream server may be down or busy")
            }
            _ if replicas > 1 => format!(
                "cannot create stream {name} with {replicas} replicas (nats.replicas): {e}; \
                 a JetStream cluster of at least {replicas} servers is needed"
            ),
            _ => format!("cannot create stream {name}: {e}"),
        })?;
    if let Ok(info) = stream.info().await {
        let has = info.config.num_replicas.max(1);
        if has < replicas {
            tracing::warn!(
                stream = %name,
                has,
                wanted = replicas,
                "the stream exists with fewer replicas than nats.replicas; raise them with `nats stream edit {name} --replicas {replicas}`"
            );
        }
    }
    Ok(stream)
}
