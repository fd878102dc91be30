//! A NATS client's side of the tests: connect, request, wait for an answer or an event.

use std::time::{Duration, Instant};

/// A client of the test server at `url`. A connection that fails (refused, reset) is tried
/// again for up to 5 s; the first failure is announced with the server's log as it stands.
pub async fn connect(url: &str) -> async_nats::Client {
    let failures = &std::cell::Cell::new(0u32);
    eventually(
        Duration::from_secs(5),
        &format!("a connection to {url}"),
        move || async move {
            let error = match async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(5))
                .connect(url)
                .await
            {
                Ok(client) => return Some(client),
                Err(e) => e,
            };
            if failures.replace(failures.get() + 1) == 0 {
                let log = url
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .and_then(crate::nats::log_on_port)
                    .unwrap_or_else(|| "(not a server of this test process)".into());
                crate::announce(&format!(
                    "connect to {url}: {error}; trying again for up to 5 s; nats-server's log:\n{log}"
                ));
            }
            None
        },
    )
    .await
}

/// A JSON request on `herd.v1.node.<node>.<verb>`; the JSON reply. Panics without one.
pub async fn node_call(
    client: &async_nats::Client,
    node: &str,
    verb: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let msg = request(
        client,
        &format!("herd.v1.node.{node}.{verb}"),
        None,
        serde_json::to_vec(&body).unwrap(),
    )
    .await
    .unwrap_or_else(|e| panic!("{verb}: {e}"));
    serde_json::from_slice(&msg.payload).unwrap()
}

/// Waits for an event of `workload` in one of `states` on a subscription to workload events;
/// other events are skipped.
pub async fn wait_workload_event(
    sub: &mut async_nats::Subscriber,
    workload: &str,
    states: &[herd_bus::WorkloadState],
    within: Duration,
) -> herd_bus::WorkloadEvent {
    wait_workloads_events(sub, &[workload], states, within)
        .await
        .remove(workload)
        .expect("the event waited for")
}

/// Waits until each of `workloads` has had an event in one of `states`, keeping every event
/// meanwhile (workloads reach their states in any order); answers the first such event of each.
pub async fn wait_workloads_events(
    sub: &mut async_nats::Subscriber,
    workloads: &[&str],
    states: &[herd_bus::WorkloadState],
    within: Duration,
) -> std::collections::HashMap<String, herd_bus::WorkloadEvent> {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = std::collections::HashMap::new();
    while seen.len() < workloads.len() {
        let msg = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{states:?} events within {within:?}: only {:?} of {workloads:?}",
                    seen.keys().collect::<Vec<_>>()
                )
            })
            .unwrap();
        let ev: herd_bus::WorkloadEvent = herd_bus::codec::decode(
            &msg.payload,
            herd_bus::Encoding::MsgPack,
            &herd_bus::DecodeLimits::default(),
        )
        .unwrap();
        let id = ev.workload_id.to_string();
        if workloads.contains(&id.as_str()) && states.contains(&ev.state) {
            seen.entry(id).or_insert(ev);
        }
    }
    seen
}

/// Retries `f` until it returns Some or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request with an optional Content-Type; answers the reply message.
pub async fn request(
    client: &async_nats::Client,
    subject: &str,
    content_type: Option<&str>,
    payload: Vec<u8>,
) -> Result<async_nats::Message, async_nats::RequestError> {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(ct) = content_type {
        headers.insert("Content-Type", ct);
    }
    let req = async_nats::Request::new()
        .payload(payload.into())
        .headers(headers)
        .timeout(Some(Duration::from_secs(5)));
    client.send_request(subject.to_string(), req).await
}

pub fn content_type(msg: &async_nats::Message) -> Option<String> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get("Content-Type"))
        .map(|v| v.as_str().to_string())
}

/// Waits until `node` answers a ping.
pub async fn wait_for_node(client: &async_nats::Client, node: &str) {
    let subject = format!("herd.v1.node.{node}.ping");
    eventually(
        Duration::from_secs(15),
        &format!("{node} to answer"),
        || async { request(client, &subject, None, vec![]).await.ok() },
    )
    .await;
}

/// The cgroup backend node `node` runs its workloads on (its ping says), announced once per
/// test binary; fails unless it is a real v1 or v2 hierarchy.
pub async fn real_cgroup_backend(client: &async_nats::Client, node: &str) -> String {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let ping = node_call(client, node, "ping", serde_json::json!({})).await;
    let backend = ping["data"]["cgroup"].as_str().unwrap_or("?").to_string();
    ONCE.call_once(|| {
        crate::announce(&format!(
            "backend cgroup {backend} (real cgroup filesystem)"
        ))
    });
    assert!(
        backend == "v1" || backend == "v2",
        "these tests need a writable cgroup v1 or v2 hierarchy (run as root); herdd found '{backend}'"
    );
    backend
}
