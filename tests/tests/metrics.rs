//! The opt-in metrics endpoint (`metrics.listen`): every family the operator guide lists is
//! there, parsed by a Prometheus text parser, with values that follow what the node did.

use herd_tests::{announce, free_port, node_call, wait_for_node, Herdd, HerddOptions, NatsServer};
use prometheus_parse::{Scrape, Value};
use serde_json::json;
use std::io::{Read, Write};
use std::time::Duration;

fn get(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

fn scrape(port: u16) -> Scrape {
    let (head, body) = get(port, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The value of `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.last().map(|b| b.count).unwrap_or(0.0),
            Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test]
async fn metrics_endpoint_serves_every_family_in_prometheus_text_format() {
    let mut nats = NatsServer::start();
    let port = free_port();
    let config = format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\n[telemetry]\ninterval_s = 0.2\n[heartbeat]\ninterval_s = 0.2\n"
    );
    let herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&config),
        ..HerddOptions::new("metered", nats.url())
    });
    let client = herd_tests::connect(&nats.url()).await;
    wait_for_node(&client, "metered").await;

    let reply = node_call(
        &client,
        "metered",
        "workload.start",
        json!({"workload_id": "m1", "command": ["sleep", "60"]}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let reply = node_call(
        &client,
        "metered",
        "workload.start",
        json!({"workload_id": "m2", "command": ["true"]}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    // Two refusals: a bad spec and an unknown workload.
    let bad = node_call(&client, "metered", "workload.start", json!({"command": []})).await;
    assert_eq!(bad["error"]["code"], "bad_request", "{bad}");
    let missing = node_call(
        &client,
        "metered",
        "workload.get",
        json!({"workload_id": "nope"}),
    )
    .await;
    assert_eq!(missing["error"]["code"], "not_found", "{missing}");

    // The NATS server goes away and comes back: herdd reconnects.
    nats.restart();
    wait_for_node(&client, "metered").await;

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let s = loop {
        let s = scrape(port);
        let ready = value(&s, "herd_workloads", &[("state", "running")]) == Some(1.0)
            && value(&s, "herd_workloads", &[("state", "exited")]) == Some(1.0)
            && value(&s, "herd_nats_reconnects_total", &[]).unwrap_or(0.0) >= 1.0
            && value(&s, "herd_telemetry_collection_seconds_count", &[]).unwrap_or(0.0) >= 1.0
            && value(&s, "herd_heartbeat_publish_lag_seconds_count", &[]).unwrap_or(0.0) >= 1.0;
        if ready {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never showed the node's work:\n{}",
            get(port, "/metrics").1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let families: std::collections::BTreeSet<&str> =
        s.samples.iter().map(|x| x.metric.as_str()).collect();
    for want in [
        "herd_workloads",
        "herd_commands_total",
        "herd_outbox_events",
        "herd_nats_reconnects_total",
        "herd_telemetry_collection_seconds_count",
        "herd_telemetry_collection_seconds_sum",
        "herd_heartbeat_publish_lag_seconds_count",
    ] {
        assert!(
            families.contains(want),
            "{want} missing; families: {families:?}"
        );
    }
    for state in herd_bus::WorkloadState::ALL.map(|s| s.as_str()) {
        assert!(
            value(&s, "herd_workloads", &[("state", state)]).is_some(),
            "no herd_workloads{{state={state:?}}}"
        );
    }
    let ok_starts = value(
        &s,
        "herd_commands_total",
        &[("verb", "workload.start"), ("outcome", "ok")],
    );
    assert_eq!(ok_starts, Some(2.0));
    assert_eq!(
        value(
            &s,
            "herd_commands_total",
            &[("verb", "workload.start"), ("outcome", "bad_request")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "herd_commands_total",
            &[("verb", "workload.get"), ("outcome", "not_found")]
        ),
        Some(1.0)
    );
    let outbox = value(&s, "herd_outbox_events", &[]).unwrap();
    assert!(outbox >= 0.0);
    announce(&format!(
        "metrics: {} families parsed; reconnects {}, collections {}, heartbeats {}",
        families.len(),
        value(&s, "herd_nats_reconnects_total", &[]).unwrap(),
        value(&s, "herd_telemetry_collection_seconds_count", &[]).unwrap(),
        value(&s, "herd_heartbeat_publish_lag_seconds_count", &[]).unwrap()
    ));

    // Anything but /metrics is a 404; the listener stays up.
    let (head, _) = get(port, "/");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = get(port, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(herdd);
}

#[test]
fn a_bad_metrics_address_is_a_clear_configuration_error() {
    let nats = NatsServer::start();
    let mut herdd = Herdd::start_with(HerddOptions {
        config_toml: Some("[metrics]\nlisten = \"not-an-address\"\n"),
        ..HerddOptions::new("badmetrics", nats.url())
    });
    let status = herdd.wait_exit(Duration::from_secs(10));
    let log = herdd.log();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
    assert!(log.contains("metrics.listen must be host:port"), "{log}");
}
