//! Lifecycle events reach HERD_EVENTS even when NATS is down while they happen: herdd keeps
//! running, queues them (and saves them across its own restart), and delivers them in order
//! once the server is back.

use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{NodeEvent, NodeEventKind};
use herd_tests::{connect, eventually, wait_for_node, Herdd, HerddOptions, NatsServer};
use std::time::Duration;

async fn events_in_stream(url: &str) -> Vec<(String, NodeEvent)> {
    let client = connect(url).await;
    let js = async_nats::jetstream::new(client);
    let Ok(mut stream) = js.get_stream("HERD_EVENTS").await else {
        return vec![];
    };
    let count = stream.info().await.unwrap().state.messages;
    let mut events = Vec::new();
    for seq in 1..=count {
        let msg = stream.get_raw_message(seq).await.unwrap();
        let event: NodeEvent =
            codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap();
        events.push((msg.subject.to_string(), event));
    }
    events
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
