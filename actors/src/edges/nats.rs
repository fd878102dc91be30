//! NATS helpers shared by both roles: readiness, fire-and-forget publishes, replies with
//! service error headers, MessagePack requests, and JetStream KV buckets.

use async_nats::connection::State;
use async_nats::jetstream::{self, kv, stream};
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
    try_request_msgpack(client, subject, req)
        .await
        .map_err(|e| e.to_string())
}

/// Why a request got no result.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// No reply in time, or no one to take the request: it may have been acted on or not.
    NoAnswer(String),
    /// An error reply, or a reply that cannot be read: the request was answered and refused.
    Refused(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::NoAnswer(e) | RequestError::Refused(e) => f.write_str(e),
        }
    }
}

/// Like [`request_msgpack`], telling a request that got no answer from one refused.
pub async fn try_request_msgpack<Q: Serialize, R: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
    req: &Q,
) -> Result<R, RequestError> {
    let payload =
        codec::encode(req, Encoding::MsgPack).map_err(|e| RequestError::Refused(e.to_string()))?;
    let msg = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(subject.clone(), payload.into()),
    )
    .await
    .map_err(|_| RequestError::NoAnswer(format!("no answer on {subject}")))?
    .map_err(|e| RequestError::NoAnswer(format!("{subject}: {e}")))?;
    let reply: Reply<R> = codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default())
        .map_err(|e| RequestError::Refused(e.to_string()))?;
    reply
        .into_result()
        .map_err(|e| RequestError::Refused(e.to_string()))
}

/// A value read from a KV bucket, with the revision a compare-and-set write must name.
pub struct Stored<T> {
    pub key: String,
    pub revision: u64,
    pub value: T,
}

/// The stream of a KV bucket by the KV conventions, history 1. The stream API creates it:
/// async-nats' KV create cannot read nats-server 2.9's reply, the stream call can.
pub fn kv_stream_config(bucket: &str, description: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// How long a JetStream request waits when its caller retries it (opening a bucket, finding a
/// stream's consumer). Short, so that a retry soon gets through: right after a JetStream server
/// is lost, a request to a stream whose leader was on it (or a consumer placed on it) goes
/// unanswered until the timeout, and the new leader is elected within seconds.
pub const RETRIED_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens (or creates) a KV bucket and reads every value in it, with its revision. Each request
/// of the open waits [`RETRIED_REQUEST_TIMEOUT`]; the store returned writes with the connection's
/// request timeout (a write that timed out but was stored would fail its next compare-and-set).
pub async fn open_bucket<T: serde::de::DeserializeOwned>(
    client: async_nats::Client,
    config: stream::Config,
    limits: DecodeLimits,
) -> Result<(kv::Store, Vec<Stored<T>>), String> {
    let js = jetstream::new(client);
    let mut quick = js.clone();
    quick.set_timeout(RETRIED_REQUEST_TIMEOUT);
    let bucket = config.name.trim_start_matches("KV_").to_string();
    herd_nats::ensure_stream(&quick, config).await?;
    let opened = |e: &dyn std::fmt::Display| format!("cannot open the {bucket} bucket: {e}");
    let store = quick.get_key_value(&bucket).await.map_err(|e| opened(&e))?;
    // One consumer delivers the last entry of every key, values included, in stream order (not
    // a listing and a request per key: 20,000 node records took 3.2 s that way). A message
    // that cannot be read, or a pause past the request timeout, fails the whole open (the caller
    // tries again): a restore missing a record would lose a run or a node without a word.
    let unreadable = |e: &dyn std::fmt::Display| format!("cannot read the {bucket} bucket: {e}");
    let mut values = Vec::new();
    // The stream's message count as get_key_value just read it: none, and no entry would come.
    if store.status().await.map_err(|e| unreadable(&e))?.values() > 0 {
        let mut entries = store
            .watch_with_history(">")
            .await
            .map_err(|e| unreadable(&e))?;
        loop {
            let entry = tokio::time::timeout(RETRIED_REQUEST_TIMEOUT, entries.next())
                .await
                .map_err(|_| unreadable(&"no entry within the request timeout"))?
                .ok_or_else(|| unreadable(&"the consumer ended"))?
                .map_err(|e| unreadable(&e))?;
            let last = entry.delta == 0;
            if entry.operation == kv::Operation::Put {
                match codec::decode::<T>(&entry.value, Encoding::MsgPack, &limits) {
                    Ok(value) => values.push(Stored {
                        key: entry.key,
                        revision: entry.revision,
                        value,
                    }),
                    Err(e) => {
                        tracing::warn!(%bucket, key = %entry.key, error = %e, "ignoring an unreadable record")
                    }
                }
            }
            if last {
                break;
            }
        }
    }
    let store = js.get_key_value(&bucket).await.map_err(|e| opened(&e))?;
    Ok((store, values))
}
