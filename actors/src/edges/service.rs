//! Serving typed requests: one path from a request's bytes to a typed request, from a
//! handler's typed answer to the reply's bytes in the request's encoding, and onto NATS with
//! the service error headers. Both roles' APIs (`NodeApi`, `ClusterApi`) go through it, so a
//! verb's handler only ever sees a decoded request and returns a typed result.

use crate::edges::nats::{reply_message, Handled};
use futures::future::LocalBoxFuture;
use herd_bus::codec::{self, CodecError, DecodeLimits, Encoding};
use herd_bus::{
    Empty, ErrorBody, FitQuery, LameduckRequest, NodeGet, NodesQuery, Reply, RunCompare,
    RunListQuery, RunRef, RunSpec, StopRequest, WorkloadFilter, WorkloadGet, WorkloadSpec,
    WorkloadsQuery,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A request type of some verb. Queries may come with an empty body (all defaults); the
/// others must name what they are about.
pub trait Request: DeserializeOwned {
    fn from_bytes(
        payload: &[u8],
        enc: Encoding,
        limits: &DecodeLimits,
    ) -> Result<Self, CodecError> {
        codec::decode(payload, enc, limits)
    }
}

/// Requests whose empty body means "all defaults".
macro_rules! query {
    ($($t:ty),*) => {$(
        impl Request for $t {
            fn from_bytes(payload: &[u8], enc: Encoding, limits: &DecodeLimits) -> Result<Self, CodecError> {
                codec::decode_request(payload, enc, limits)
            }
        }
    )*};
}

query!(
    Empty,
    LameduckRequest,
    WorkloadSpec,
    StopRequest,
    WorkloadFilter,
    NodesQuery,
    WorkloadsQuery,
    FitQuery,
    RunListQuery
);
impl Request for WorkloadGet {}
impl Request for NodeGet {}
impl Request for RunSpec {}
impl Request for RunRef {}
impl Request for RunCompare {}
impl Request for herd_bus::RunRetry {}

/// A handler's answer: now, or once another actor has answered.
pub enum Answer<T> {
    Now(Result<T, ErrorBody>),
    Later(LocalBoxFuture<'static, Result<T, ErrorBody>>),
}

impl<T> From<Result<T, ErrorBody>> for Answer<T> {
    fn from(r: Result<T, ErrorBody>) -> Answer<T> {
        Answer::Now(r)
    }
}

/// The encoded reply, now or later.
pub enum Routed {
    Now(Handled),
    Later(LocalBoxFuture<'static, Handled>),
}

impl From<Handled> for Routed {
    fn from(h: Handled) -> Routed {
        Routed::Now(h)
    }
}

impl Routed {
    pub async fn resolve(self) -> Handled {
        match self {
            Routed::Now(h) => h,
            Routed::Later(f) => f.await,
        }
    }
}

/// Decodes a request under `limits`; malformed input is a `bad_request` naming the problem.
pub fn decode<Q: Request>(
    payload: &[u8],
    enc: Encoding,
    limits: &DecodeLimits,
) -> Result<Q, ErrorBody> {
    Q::from_bytes(payload, enc, limits).map_err(ErrorBody::bad_request)
}

/// `{ok: true, data}` in `enc`.
pub fn encode_ok<T: Serialize>(data: &T, enc: Encoding) -> Handled {
    codec::encode(&Reply::ok(data), enc).map_err(ErrorBody::internal)
}

/// Decode → handle → encode for one verb.
pub fn serve<Q: Request, R: Serialize + 'static>(
    payload: &[u8],
    enc: Encoding,
    limits: &DecodeLimits,
    handle: impl FnOnce(Q) -> Answer<R>,
) -> Routed {
    let request = match decode::<Q>(payload, enc, limits) {
        Ok(q) => q,
        Err(e) => return Routed::Now(Err(e)),
    };
    match handle(request) {
        Answer::Now(result) => Routed::Now(result.and_then(|data| encode_ok(&data, enc))),
        Answer::Later(answer) => {
            Routed::Later(Box::pin(async move { encode_ok(&answer.await?, enc) }))
        }
    }
}

/// Sends the reply once it is known; `done` sees the outcome first (metrics, logs).
pub fn respond(
    client: &async_nats::Client,
    reply_to: async_nats::Subject,
    routed: Routed,
    enc: Encoding,
    done: impl FnOnce(&Handled) + 'static,
) {
    let client = client.clone();
    actix::spawn(async move {
        let handled = routed.resolve().await;
        done(&handled);
        let (headers, payload) = reply_message(handled, enc);
        if let Err(e) = client
            .publish_with_headers(reply_to, headers, payload.into())
            .await
        {
            tracing::warn!(error = %e, "cannot send a reply");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::ErrorCode;

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    fn reply(h: Handled) -> serde_json::Value {
        serde_json::from_slice(&h.unwrap()).unwrap()
    }

    #[test]
    fn a_query_may_be_empty_a_reference_may_not() {
        let ok = serve::<WorkloadFilter, _>(b"", Encoding::Json, &limits(), |f| {
            Answer::Now(Ok(f.run_id.is_none()))
        });
        let Routed::Now(h) = ok else { panic!() };
        assert_eq!(reply(h)["data"], true);
        let refused = serve::<WorkloadGet, bool>(b"", Encoding::Json, &limits(), |_| {
            panic!("a bad request never reaches the handler")
        });
        let Routed::Now(Err(e)) = refused else {
            panic!()
        };
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn malformed_bytes_are_a_bad_request_and_errors_pass_through() {
        let Routed::Now(Err(e)) =
            serve::<StopRequest, bool>(b"{\"workload_id\": 7}", Encoding::Json, &limits(), |_| {
                panic!("not reached")
            })
        else {
            panic!()
        };
        assert_eq!(e.code, ErrorCode::BadRequest);
        let Routed::Now(Err(e)) = serve::<Empty, bool>(b"{}", Encoding::Json, &limits(), |_| {
            Answer::Now(Err(ErrorBody::conflict("no")))
        }) else {
            panic!()
        };
        assert_eq!(e.code, ErrorCode::Conflict);
    }

    #[actix_rt::test]
    async fn a_later_answer_is_encoded_when_it_comes() {
        let routed = serve::<Empty, u32>(b"", Encoding::MsgPack, &limits(), |_| {
            Answer::Later(Box::pin(async { Ok(7) }))
        });
        let bytes = routed.resolve().await.unwrap();
        let r: Reply<u32> =
            codec::decode(&bytes, Encoding::MsgPack, &DecodeLimits::default()).unwrap();
        assert_eq!(r.data, Some(7));
    }
}
