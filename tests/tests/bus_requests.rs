//! herdd answers requests on a real nats-server: JSON in, JSON out; MessagePack in,
//! MessagePack out; and a clear bad_request for every kind of malformed input, after which it
//! keeps answering.

use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{Empty, ErrorCode, NodeInfo, Reply};
use herd_tests::{connect, content_type, request, wait_for_node, Herdd, NatsServer};

async fn setup(node: &str) -> (NatsServer, Herdd, async_nats::Client) {
    let nats = NatsServer::start();
    let herdd = Herdd::start(node, nats.url());
    let client = connect(&nats.url()).await;
    wait_for_node(&client, node).await;
    (nats, herdd, client)
}

fn decode_reply<T: serde::de::DeserializeOwned>(
    msg: &async_nats::Message,
    enc: Encoding,
) -> Reply<T> {
    codec::decode(&msg.payload, enc, &DecodeLimits::default()).unwrap_or_else(|e| {
        panic!(
            "reply is not {enc:?}: {e}: {:?}",
            String::from_utf8_lossy(&msg.payload)
        )
    })
}

#[tokio::test]
async fn json_ping_gets_a_json_reply() {
    let (_nats, _herdd, client) = setup("json-node").await;
    // Exactly what `nats req herd.v1.node.json-node.ping '{}'` sends: no header.
    let msg = request(&client, "herd.v1.node.json-node.ping", None, b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(content_type(&msg).as_deref(), Some("application/json"));
    let value: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(value["ok"], true);
    assert_eq!(value["data"]["node_id"], "json-node");
    assert_eq!(value["data"]["state"], "active");
    assert_eq!(value["data"]["api"], "v1");
    assert!(value["data"]["uptime_s"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn msgpack_ping_gets_a_msgpack_reply() {
    let (_nats, _herdd, client) = setup("mp-node").await;
    let payload = codec::encode(&Empty {}, Encoding::MsgPack).unwrap();
    let msg = request(
        &client,
        "herd.v1.node.mp-node.ping",
        Some("application/msgpack"),
        payload,
    )
    .await
    .unwrap();
    assert_eq!(content_type(&msg).as_deref(), Some("application/msgpack"));
    assert_ne!(msg.payload.first(), Some(&b'{'), "not JSON");
    let info: NodeInfo = decode_reply::<NodeInfo>(&msg, Encoding::MsgPack)
        .into_result()
        .unwrap();
    assert_eq!(info.node_id.as_str(), "mp-node");
    assert_eq!(info.version, herd_bus::HERD_VERSION);
    // An empty payload is a valid ping too.
    let msg = request(&client, "herd.v1.node.mp-node.ping", None, vec![])
        .await
        .unwrap();
    assert!(decode_reply::<NodeInfo>(&msg, Encoding::MsgPack).ok);
}

#[tokio::test]
async fn nodes_ping_reaches_every_node() {
    let nats = NatsServer::start();
    let _a = Herdd::start("fleet-a", nats.url());
    let _b = Herdd::start("fleet-b", nats.url());
    let client = connect(&nats.url()).await;
    wait_for_node(&client, "fleet-a").await;
    wait_for_node(&client, "fleet-b").await;

    let out = tokio::process::Command::new(herd_tests::workspace_bin("herdctl"))
        .args([
            "--nats-url",
            &nats.url(),
            "--json",
            "--wait",
            "1",
            "nodes",
            "ping",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fleet-a", "fleet-b"]);

    let out = tokio::process::Command::new(herd_tests::workspace_bin("herdctl"))
        .args(["--nats-url", &nats.url(), "ping", "fleet-b"])
        .output()
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(table.starts_with("NODE"), "{table}");
    assert!(table.contains("fleet-b  active"), "{table}");

    let out = tokio::process::Command::new(herd_tests::workspace_bin("herdctl"))
        .args(["--nats-url", &nats.url(), "ping", "nobody"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody answers"));
}

struct Case {
    what: &'static str,
    verb: &'static str,
    content_type: Option<&'static str>,
    payload: Vec<u8>,
    /// The reply is in this encoding...
    reply: Encoding,
    /// ...and its message says this.
    says: &'static str,
}

fn mp<T: serde::Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap()
}

fn cases() -> Vec<Case> {
    use serde_json::json;
    let deep_json = format!("{{\"x\":{}{}}}", "[".repeat(100), "]".repeat(100));
    let mut deep_mp = vec![0x81, 0xa1, b'x'];
    deep_mp.extend(std::iter::repeat_n(0x91, 100));
    deep_mp.push(0xc0);
    let mut trailing = mp(&json!({}));
    trailing.extend_from_slice(b"junk");
    // Deterministic "random" bytes that start with a MessagePack-ish byte.
    let noise = |n: usize| -> Vec<u8> {
        let mut x: u32 = 0x9e37_79b9;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if i == 0 {
                    0xde
                } else {
                    x as u8
                }
            })
            .collect()
    };
    let c = |what, verb, content_type, payload, reply, says| Case {
        what,
        verb,
        content_type,
        payload,
        reply,
        says,
    };
    use Encoding::{Json, MsgPack};
    vec![
        c(
            "random bytes",
            "ping",
            None,
            noise(64),
            MsgPack,
            "MessagePack",
        ),
        c(
            "4 KiB of random bytes",
            "ping",
            None,
            noise(4096),
            MsgPack,
            "MessagePack",
        ),
        c(
            "reserved MessagePack marker",
            "ping",
            None,
            vec![0xc1],
            MsgPack,
            "MessagePack",
        ),
        c(
            "truncated MessagePack map",
            "lameduck",
            None,
            vec![0x82, 0xa7, b'e', b'n'],
            MsgPack,
            "MessagePack",
        ),
        c(
            "truncated MessagePack string",
            "ping",
            None,
            vec![0x81, 0xd9, 0xff, b'a', b'b'],
            MsgPack,
            "MessagePack",
        ),
        c(
            "MessagePack nested past the limit",
            "ping",
            None,
            deep_mp,
            MsgPack,
            "deeper than the limit",
        ),
        c(
            "JSON nested past the limit",
            "ping",
            None,
            deep_json.into_bytes(),
            Json,
            "deeper than the limit",
        ),
        c(
            "truncated JSON",
            "lameduck",
            None,
            b"{\"enabled\": tr".to_vec(),
            Json,
            "invalid JSON",
        ),
        c(
            "JSON with bare keys",
            "lameduck",
            None,
            b"{enabled: true}".to_vec(),
            Json,
            "invalid JSON",
        ),
        c(
            "JSON with trailing garbage",
            "ping",
            None,
            b"{} trailing".to_vec(),
            Json,
            "trailing",
        ),
        c(
            "MessagePack with trailing bytes",
            "ping",
            None,
            trailing,
            MsgPack,
            "trailing bytes",
        ),
        c(
            "JSON string for a boolean",
            "lameduck",
            None,
            br#"{"enabled":"yes"}"#.to_vec(),
            Json,
            "`enabled`",
        ),
        c(
            "MessagePack integer for a boolean",
            "lameduck",
            None,
            mp(&json!({"enabled": 5})),
            MsgPack,
            "`enabled`",
        ),
        c(
            "JSON null for a boolean",
            "lameduck",
            None,
            br#"{"enabled":null}"#.to_vec(),
            Json,
            "`enabled`",
        ),
        c(
            "JSON string for a number",
            "lameduck",
            None,
            br#"{"enabled":true,"delay_s":"soon"}"#.to_vec(),
            Json,
            "`delay_s`",
        ),
        c(
            "negative delay",
            "lameduck",
            None,
            br#"{"enabled":true,"delay_s":-1}"#.to_vec(),
            Json,
            "delay_s",
        ),
        c(
            "missing required field",
            "lameduck",
            None,
            b"{}".to_vec(),
            Json,
            "enabled",
        ),
        c(
            "MessagePack integer where a map belongs",
            "ping",
            None,
            vec![0x05],
            MsgPack,
            "invalid type",
        ),
        c(
            "string for an argv",
            "workload.start",
            None,
            br#"{"command":"sleep 5"}"#.to_vec(),
            Json,
            "`command`",
        ),
        c(
            "negative memory",
            "workload.start",
            None,
            br#"{"command":["x"],"limits":{"memory":-1}}"#.to_vec(),
            Json,
            "`limits.memory`",
        ),
        c(
            "unknown driver",
            "workload.start",
            None,
            br#"{"command":["x"],"driver":"vm"}"#.to_vec(),
            Json,
            "`driver`",
        ),
        c(
            "workload id that is not a token",
            "workload.get",
            None,
            br#"{"workload_id":"a.b"}"#.to_vec(),
            Json,
            "may contain only",
        ),
        c(
            "workload.get without an id",
            "workload.get",
            None,
            b"{}".to_vec(),
            Json,
            "workload_id",
        ),
        c(
            "wrong type in a stop request",
            "workload.stop",
            None,
            mp(&json!({"grace_s": [1]})),
            MsgPack,
            "`grace_s`",
        ),
        c(
            "JSON header on a MessagePack body",
            "ping",
            Some("application/json"),
            mp(&json!({"a": 1})),
            Json,
            "invalid JSON",
        ),
        c(
            "MessagePack header on a JSON body",
            "ping",
            Some("application/msgpack"),
            b"{\"a\":1}".to_vec(),
            MsgPack,
            "MessagePack",
        ),
        c(
            "payload near the server's limit",
            "ping",
            None,
            vec![b'x'; 1024 * 1024 - 64],
            MsgPack,
            "MessagePack",
        ),
        c(
            "payload past herdd's cap",
            "ping",
            None,
            vec![b' '; 2 * 1024 * 1024],
            MsgPack,
            "exceeds the limit",
        ),
        c(
            "unknown verb",
            "reboot",
            None,
            b"{}".to_vec(),
            Json,
            "unknown verb 'reboot'",
        ),
        c(
            "unknown workload verb",
            "workload.explode",
            None,
            vec![],
            MsgPack,
            "unknown verb 'workload.explode'",
        ),
    ]
}

#[tokio::test]
async fn malformed_requests_get_bad_request_and_the_node_keeps_answering() {
    let (_nats, mut herdd, client) = setup("bad-input").await;
    let cases = cases();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in &cases {
        let subject = format!("herd.v1.node.bad-input.{}", case.verb);
        let msg = match request(&client, &subject, case.content_type, case.payload.clone()).await {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: no reply ({e})", case.what));
                continue;
            }
        };
        let ct = content_type(&msg);
        if ct.as_deref() != Some(case.reply.content_type()) {
            failures.push(format!("{}: reply content type {ct:?}", case.what));
            continue;
        }
        let reply: Reply<Empty> = decode_reply(&msg, case.reply);
        let error = reply
            .error
            .clone()
            .unwrap_or_else(|| panic!("{}: no error", case.what));
        if reply.ok || error.code != ErrorCode::BadRequest || !error.message.contains(case.says) {
            failures.push(format!(
                "{}: got {} {:?}, wanted bad_request saying {:?}",
                case.what, error.code, error.message, case.says
            ));
        }
        let headers = msg.headers.as_ref().unwrap();
        if headers.get("Nats-Service-Error-Code").map(|v| v.as_str()) != Some("400") {
            failures.push(format!("{}: no service error header", case.what));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The fleet-wide subject validates its payload too.
    let msg = request(&client, "herd.v1.nodes.ping", None, vec![0xc1])
        .await
        .unwrap();
    let reply: Reply<Empty> = decode_reply(&msg, Encoding::MsgPack);
    assert_eq!(reply.error.unwrap().code, ErrorCode::BadRequest);

    // Still alive and answering.
    assert!(herdd.is_running());
    let msg = request(&client, "herd.v1.node.bad-input.ping", None, b"{}".to_vec())
        .await
        .unwrap();
    let reply: Reply<NodeInfo> = decode_reply(&msg, Encoding::Json);
    assert!(reply.ok);
}

#[tokio::test]
async fn lameduck_is_reported_by_ping() {
    let (_nats, _herdd, client) = setup("drainer").await;
    let msg = request(
        &client,
        "herd.v1.node.drainer.lameduck",
        None,
        br#"{"enabled":true}"#.to_vec(),
    )
    .await
    .unwrap();
    assert!(decode_reply::<serde_json::Value>(&msg, Encoding::Json).ok);
    let msg = request(&client, "herd.v1.node.drainer.ping", None, b"{}".to_vec())
        .await
        .unwrap();
    let info = decode_reply::<NodeInfo>(&msg, Encoding::Json)
        .into_result()
        .unwrap();
    assert_eq!(info.state, herd_bus::NodeState::Lameduck);
}
