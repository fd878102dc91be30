//! A memory limit means memory: no swap beyond it unless `limits.swap` asks, read back from the
//! kernel's files (v1 `memory.memsw.limit_in_bytes`, v2 `memory.swap.max`).

use herd_tests::{
    announce, connect, node_call as call, wait_for_node, Herdd, HerddOptions, NatsServer,
};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// The swap file of workload `id`'s cgroup and what it should hold for `memory` + `swap`.
fn swap_file(root: &str, id: &str) -> Option<(PathBuf, bool)> {
    let v1 = PathBuf::from(format!(
        "/sys/fs/cgroup/memory/{root}/wl-{id}/memory.memsw.limit_in_bytes"
    ));
    let v2 = PathBuf::from(format!("/sys/fs/cgroup/{root}/wl-{id}/memory.swap.max"));
    [(v1, true), (v2, false)]
        .into_iter()
        .find(|(p, _)| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limits_leave_no_swap_unless_asked() {
    let nats = NatsServer::start();
    let root = format!("herdtest-{}-swap", std::process::id());
    let config = format!("[cgroup]\nroot = \"{root}\"\n");
    let _herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&config),
        ..HerddOptions::new("swapper", nats.url())
    });
    let client = connect(&nats.url()).await;
    wait_for_node(&client, "swapper").await;
    let mib = 1u64 << 20;
    for (id, limits, memory_and_swap, swap) in [
        ("noswap", json!({"memory": 64 * mib}), 64 * mib, 0),
        (
            "someswap",
            json!({"memory": 64 * mib, "swap": 32 * mib}),
            96 * mib,
            32 * mib,
        ),
    ] {
        let started = call(
            &client,
            "swapper",
            "workload.start",
            json!({"workload_id": id, "command": ["sleep", "30"], "limits": limits}),
        )
        .await;
        assert_eq!(started["ok"], true, "{started}");
        let mut found = None;
        for _ in 0..50 {
            found = swap_file(&root, id);
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (file, v1) = found.unwrap_or_else(|| {
            panic!("no swap accounting file for {id}: this kernel does not account swap per cgroup")
        });
        let text = std::fs::read_to_string(&file).unwrap();
        let want = if v1 { memory_and_swap } else { swap };
        announce(&format!("{}: {}", file.display(), text.trim()));
        assert_eq!(
            text.trim().parse::<u64>().unwrap(),
            want,
            "{}",
            file.display()
        );
        call(
            &client,
            "swapper",
            "workload.stop",
            json!({"workload_id": id, "grace_s": 0}),
        )
        .await;
    }
    let refused = call(
        &client,
        "swapper",
        "workload.start",
        json!({"command": ["true"], "limits": {"swap": mib}}),
    )
    .await;
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limits.swap"));
}
