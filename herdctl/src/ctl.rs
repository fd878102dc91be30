//! A connected herdctl: typed requests to one node or to the coordinator.

use anyhow::{bail, Context};
use async_nats::HeaderMap;
use herd_bus::codec::{self, DecodeLimits, Encoding, CONTENT_TYPE_HEADER};
use herd_bus::{ClusterVerb, NodeId, NodeVerb, Reply, Subjects};
use herd_nats::{NatsArgs, NatsConfig, Persistence};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

pub struct Ctl {
    pub client: async_nats::Client,
    pub subjects: Subjects,
    /// How long to wait for replies.
    pub timeout: Duration,
    /// Print JSON instead of tables.
    pub json: bool,
    /// Replicas of a bucket herdctl creates (`--nats-replicas`).
    pub replicas: usize,
}

impl Ctl {
    /// Connects with the flags given (no configuration file: a CLI fails fast).
    pub async fn connect(nats: &NatsArgs, wait_s: f64, json: bool) -> anyhow::Result<Ctl> {
        let mut config = NatsConfig::default();
        nats.apply(&mut config);
        let client = herd_nats::connect(&config, "herdctl", Persistence::Cli, |_| {}).await?;
        Ok(Ctl {
            client,
            subjects: Subjects::new(&config.prefix)?,
            timeout: Duration::from_secs_f64(wait_s.max(0.01)),
            json,
            replicas: config.replicas.max(1),
        })
    }

    pub async fn request(
        &self,
        subject: String,
        payload: Vec<u8>,
    ) -> anyhow::Result<async_nats::Message> {
        let req =
            self.client
                .request_with_headers(subject.clone(), msgpack_headers(), payload.into());
        match tokio::time::timeout(self.timeout, req).await {
            Err(_) => bail!("no reply on {subject} within {:?}", self.timeout),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                bail!("nobody answers on {subject}")
            }
            Ok(r) => Ok(r?),
        }
    }

    /// A typed request to a node; `bad_request` and other errors become the command's error.
    pub async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        node: &NodeId,
        verb: NodeVerb,
        req: &Q,
    ) -> anyhow::Result<R> {
        let subject = self.subjects.node_command(node, verb);
        let msg = self
            .request(subject, codec::encode(req, Encoding::MsgPack)?)
            .await?;
        decode_reply(&msg)
    }

    pub async fn cluster<Q: Serialize, R: DeserializeOwned>(
        &self,
        verb: ClusterVerb,
        req: &Q,
    ) -> anyhow::Result<R> {
        let msg = self
            .request(
                self.subjects.cluster(verb),
                codec::encode(req, Encoding::MsgPack)?,
            )
            .await
            .context("is a herdd with roles = [\"coordinator\", ...] running?")?;
        decode_reply(&msg)
    }
}

pub fn msgpack_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE_HEADER, Encoding::MsgPack.content_type());
    h
}

pub fn decode_reply<T: DeserializeOwned>(msg: &async_nats::Message) -> anyhow::Result<T> {
    let enc = Encoding::detect(
        msg.headers
            .as_ref()
            .and_then(|h| h.get(CONTENT_TYPE_HEADER))
            .map(|v| v.as_str()),
        &msg.payload,
    );
    let reply: Reply<T> = codec::decode(&msg.payload, enc, &DecodeLimits::default())
        .context("cannot decode the reply")?;
    // Kept typed, so that a caller can tell `not_found` from no answer at all.
    reply.into_result().map_err(anyhow::Error::new)
}
