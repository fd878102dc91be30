//! Streams herd creates: idempotently, with the replicas asked for.

use async_nats::jetstream::{self, stream};

/// Creates a stream, or finds the one that exists (idempotently), and says plainly when the
/// servers cannot hold the replicas asked for or the one found has fewer.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, String> {
    let (name, replicas) = (config.name.clone(), config.num_replicas.max(1));
    let mut stream = js.get_or_create_stream(config).await.map_err(|e| {
        if replicas > 1 {
            format!(
                "cannot create stream {name} with {replicas} replicas (nats.replicas): {e}; \
                 a JetStream cluster of at least {replicas} servers is needed"
            )
        } else {
            format!("cannot create stream {name}: {e}")
        }
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
