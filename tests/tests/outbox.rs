//! Lifecycle events reach HERD_EVENTS even when NATS is down while they happen: herdd keeps
//! running, queues them (and saves them across its own restart), and delivers them in order
//! once the server is back.

use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{NodeEvent, NodeEventKind, WorkloadEvent, WorkloadState};
use herd_tests::{
    announce, connect, eventually, node_call, wait_for_node, Herdd, HerddOptions, NatsServer,
};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Every message in HERD_EVENTS whose subject contains `part` ("" for all), in stream order: its subject and
/// its payload decoded as `T`.
async fn stream_events<T: serde::de::DeserializeOwned>(url: &str, part: &str) -> Vec<(String, T)> {
    let client = connect(url).await;
    let js = async_nats::jetstream::new(client);
    let Ok(mut stream) = js.get_stream("HERD_EVENTS").await else {
        return vec![];
    };
    let count = stream.info().await.unwrap().state.messages;
    let mut events = Vec::new();
    for seq in 1..=count {
        let msg = stream.get_raw_message(seq).await.unwrap();
        if msg.subject.contains(part) {
            let event: T =
                codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap();
            events.push((msg.subject.to_string(), event));
        }
    }
    events
}

async fn events_in_stream(url: &str) -> Vec<(String, NodeEvent)> {
    stream_events(url, "").await
}

#[tokio::test]
async fn events_published_while_nats_is_down_arrive_after_it_returns() {
    let mut nats = NatsServer::start();
    let config = "[shutdown]\nflush_timeout_s = 1.0\n";
    let state = tempfile::tempdir().unwrap();
    let url = nats.url();
    let opts = || HerddOptions {
        state_dir: Some(state.path()),
        config_toml: Some(config),
        ..HerddOptions::new("outbox-node", url.clone())
    };
    let mut first = Herdd::start_with(opts());
    let client = connect(&nats.url()).await;
    wait_for_node(&client, "outbox-node").await;
    eventually(Duration::from_secs(10), "the started event", || async {
        (events_in_stream(&url).await.len() == 1).then_some(())
    })
    .await;
    drop(client);

    nats.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(first.is_running(), "herdd must survive NATS going away");

    // Stopped while NATS is down: the stopping event cannot be delivered now.
    let status = first
        .terminate(Duration::from_secs(10))
        .expect("bounded shutdown");
    assert!(status.success(), "{status:?}\n{}", first.log());
    assert!(
        state.path().join("outbox.msgpack").exists(),
        "undelivered events are saved in the state dir"
    );

    // Started again, still without NATS: it runs, and queues its own started event.
    let mut second = Herdd::start_with(opts());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(second.is_running(), "{}", second.log());

    nats.restart();
    let events = eventually(Duration::from_secs(20), "the queued events", || async {
        let e = events_in_stream(&url).await;
        (e.len() >= 3).then_some(e)
    })
    .await;
    let kinds: Vec<NodeEventKind> = events.iter().map(|(_, e)| e.kind).collect();
    assert_eq!(
        kinds,
        [
            NodeEventKind::Started,
            NodeEventKind::Stopping,
            NodeEventKind::Started
        ],
        "{events:#?}"
    );
    let (first_start, second_start) = (events[0].1.started_at_ms, events[2].1.started_at_ms);
    assert_ne!(first_start, second_start, "two daemon instances");
    assert_eq!(
        events[1].1.started_at_ms, first_start,
        "stopping belongs to the first"
    );
    assert_eq!(events[1].0, "herd.v1.evt.outbox-node.node.stopping");

    // And the node serves requests again after the reconnect.
    let client = connect(&url).await;
    wait_for_node(&client, "outbox-node").await;
    let status = second.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success());
    let events = events_in_stream(&url).await;
    assert_eq!(events.len(), 4, "{events:#?}");
    assert_eq!(events[3].1.kind, NodeEventKind::Stopping);
    assert!(
        !state.path().join("outbox.msgpack").exists(),
        "nothing left to send"
    );
}

/// Workload events in HERD_EVENTS, in stream order.
async fn workload_events_in_stream(url: &str) -> Vec<WorkloadEvent> {
    let events = stream_events(url, ".workload.").await;
    events.into_iter().map(|(_, e)| e).collect()
}

/// A burst of starts makes events faster than JetStream acknowledges them: each must still land
/// once, every workload's events in the order they happened.
#[tokio::test]
async fn a_burst_of_starts_lands_once_each_in_lifecycle_order() {
    let nats = NatsServer::start();
    let url = nats.url();
    let mut herdd = Herdd::start_with(HerddOptions::new("burst-node", url.clone()));
    let client = connect(&url).await;
    wait_for_node(&client, "burst-node").await;
    let n = 48;
    let replies = futures::future::join_all((0..n).map(|i| {
        node_call(
            &client,
            "burst-node",
            "workload.start",
            json!({"workload_id": format!("b{i:02}"), "command": ["true"]}),
        )
    }))
    .await;
    for r in &replies {
        assert_eq!(r["ok"], true, "{r}");
    }
    let events = eventually(
        Duration::from_secs(30),
        "every exit in the stream",
        || async {
            let e = workload_events_in_stream(&url).await;
            (e.iter()
                .filter(|e| e.state == WorkloadState::Exited)
                .count()
                == n)
                .then_some(e)
        },
    )
    .await;

    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "an event stored twice");
    let mut per_workload: HashMap<String, Vec<WorkloadState>> = HashMap::new();
    for e in &events {
        per_workload
            .entry(e.workload_id.to_string())
            .or_default()
            .push(e.state);
    }
    assert_eq!(per_workload.len(), n);
    let lifecycle = [
        WorkloadState::Pending,
        WorkloadState::Starting,
        WorkloadState::Running,
        WorkloadState::Exited,
    ];
    for (workload, states) in &per_workload {
        assert_eq!(states, &lifecycle, "{workload}'s events in stream order");
    }
    announce(&format!(
        "{} workload events of {n} concurrent starts stored once each, in lifecycle order",
        events.len()
    ));
    assert!(herdd.terminate(Duration::from_secs(10)).unwrap().success());
}
