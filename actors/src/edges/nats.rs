//! NATS helpers shared by both roles: readiness, fire-and-forget publishes, replies with
//! service error headers, MessagePack requests, and JetStream KV buckets.

use async_nats::connection::State;
use async_nats::jetstream::{self, kv};
use async_nats::{HeaderMap, Message as NatsMessage};
use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding, CONTENT_TYPE_HEADER};
use herd_bus::reply::{SERVICE_ERROR_CODE_HEADER, SERVICE_ERROR_HEADER};
use herd_bus::{Empty, ErrorBody, Reply};
use serde::Serialize;
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

/// A reply's payload, or the error to reply with.
pub type Handled = Result<Vec<u8>, ErrorBody>;

/// Encodes `value` as MessagePack and publishes it without waiting (heartbeats, telemetry,
/// cluster events: the next one supersedes a lost one). Failures are logged with `what`.
pub fn publish_msgpack<T: Serialize>(
    client: &async_nats::Client,
    subject: String,
    value: &T,
    what: &'static str,
) {
    match codec::encode(value, Encoding::MsgPack) {
        Ok(bytes) => {
            let client = client.clone();
            actix::spawn(async move {
                if let Err(e) = client.publish(subject, bytes.into()).await {
                    tracing::debug!(error = %e, "cannot publish {what}");
                }
            });
        }
        Err(e) => tracing::error!(error = %e, "cannot encode {what}"),
    }
}

/// The encoding of a NATS message: its `Content-Type` header, else what its payload looks like.
pub fn message_encoding(msg: &NatsMessage) -> Encoding {
    let content_type = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(CONTENT_TYPE_HEADER))
        .map(|v| v.as_str());
    Encoding::detect(content_type, &msg.payload)
}

/// Builds the reply payload and headers for a handled request.
pub fn reply_message(handled: Handled, enc: Encoding) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE_HEADER, enc.content_type());
    let payload = match handled {
        Ok(payload) => payload,
        Err(error) => {
            // Header values cannot hold line breaks.
            let one_line: String = error
                .message
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(512)
                .collect();
            headers.insert(SERVICE_ERROR_HEADER, one_line.as_str());
            headers.insert(
                SERVICE_ERROR_CODE_HEADER,
                error.code.status().to_string().as_str(),
            );
            let reply = Reply::<Empty> {
                ok: false,
                data: None,
                error: Some(error),
            };
            codec::encode(&reply, enc).unwrap_or_else(|_| b"{\"ok\":false}".to_vec())
        }
    };
    (headers, payload)
}

/// A MessagePack request to a node; an error reply becomes its text.
pub async fn request_msgpack<Q: Serialize, R: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
    req: &Q,
) -> Result<R, String> {
    let payload = codec::encode(req, Encoding::MsgPack).map_err(|e| e.to_string())?;
    let msg = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(subject.clone(), payload.into()),
    )
    .await
    .map_err(|_| format!("no answer on {subject}"))?
    .map_err(|e| format!("{subject}: {e}"))?;
    let reply: Reply<R> = codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default())
        .map_err(|e| e.to_string())?;
    reply.into_result().map_err(|e| e.to_string())
}

/// Opens (or creates) a KV bucket and reads every value in it. The bucket's stream is created
/// through the stream API with the KV conventions: async-nats' KV create cannot read nats-server
/// 2.9's reply, the stream call can.
pub async fn open_bucket<T: serde::de::DeserializeOwned>(
    client: async_nats::Client,
    bucket: &str,
    description: &str,
    limits: DecodeLimits,
) -> Result<(kv::Store, Vec<T>), String> {
    let js = jetstream::new(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create the {bucket} bucket: {e}"))?;
    let store = js
        .get_key_value(bucket)
        .await
        .map_err(|e| format!("cannot open the {bucket} bucket: {e}"))?;
    let mut values = Vec::new();
    let mut keys = store.keys().await.map_err(|e| e.to_string())?;
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        if let Ok(Some(bytes)) = store.get(&key).await {
            match codec::decode::<T>(&bytes, Encoding::MsgPack, &limits) {
                Ok(v) => values.push(v),
                Err(e) => {
                    tracing::warn!(%bucket, %key, error = %e, "ignoring an unreadable record")
                }
            }
        }
    }
    Ok((store, values))
}
