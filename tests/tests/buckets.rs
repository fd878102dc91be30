//! The coordinator's restore of a KV bucket (`open_bucket`) on a real nats-server: every live
//! key once, its last value and the revision a compare-and-set must name, to the stream's
//! end; deleted keys and unreadable records left out; an empty bucket read at once.

use async_nats::jetstream;
use herd_actors::edges::nats::{kv_stream_config, open_bucket};
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_tests::{announce, connect, NatsServer};
use std::collections::BTreeMap;

const KEYS: u32 = 300;

#[tokio::test]
async fn a_restore_reads_every_live_key_once_with_its_last_value_and_revision() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let config = || kv_stream_config("herd-test-restore", "restore test", 1);
    let limits = DecodeLimits::default();

    let (kv, empty) = open_bucket::<String>(client.clone(), config(), limits)
        .await
        .expect("an empty bucket opens");
    assert!(empty.is_empty(), "{} records in a new bucket", empty.len());

    let value = |s: String| codec::encode(&s, Encoding::MsgPack).unwrap().into();
    for i in 0..KEYS {
        kv.put(format!("k{i}"), value(format!("first {i}")))
            .await
            .unwrap();
    }
    // Every third key rewritten, every tenth deleted (some of those rewritten first), one
    // record that is not MessagePack of the type.
    for i in (0..KEYS).step_by(3) {
        kv.put(format!("k{i}"), value(format!("second {i}")))
            .await
            .unwrap();
    }
    for i in (0..KEYS).step_by(10) {
        kv.delete(format!("k{i}")).await.unwrap();
    }
    kv.put("garbage", vec![0xc1u8].into()).await.unwrap();
    // The last entries of the stream are live values: a restore must read to its end.
    for i in 1..=5 {
        kv.put(format!("k{i}"), value(format!("third {i}")))
            .await
            .unwrap();
    }

    let (_, restored) = open_bucket::<String>(client.clone(), config(), limits)
        .await
        .expect("the bucket opens");
    let mut seen = BTreeMap::new();
    for s in restored {
        assert!(
            seen.insert(s.key.clone(), (s.value, s.revision)).is_none(),
            "{} twice",
            s.key
        );
    }
    let js = jetstream::new(client);
    let kv = js.get_key_value("herd-test-restore").await.unwrap();
    let mut live = 0;
    for i in 0..KEYS {
        let key = format!("k{i}");
        if i % 10 == 0 {
            assert!(!seen.contains_key(&key), "{key} was deleted");
            continue;
        }
        live += 1;
        let want = match i {
            1..=5 => "third",
            _ if i % 3 == 0 => "second",
            _ => "first",
        };
        let (got, revision) = seen.get(&key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(got, &format!("{want} {i}"));
        let entry = kv.entry(&key).await.unwrap().unwrap();
        assert_eq!(*revision, entry.revision, "{key}'s revision");
    }
    assert!(
        !seen.contains_key("garbage"),
        "an unreadable record is left out"
    );
    assert_eq!(seen.len(), live, "nothing but the live keys");
    announce(&format!(
        "{live} live keys of {KEYS} restored once each with their revisions; deleted and unreadable ones left out"
    ));
}
