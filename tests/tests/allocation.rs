//! A node admits by what it has handed out (issue 16): separate herdd processes, a real
//! nats-server and the real cgroup filesystem. Starts fit until the allocatable CPU is handed
//! out and the next is refused naming CPU; what ends is released; what a restarted herdd
//! re-adopts is still held; pinned cores and declared GPUs go to one workload each; the
//! heartbeat says capacity, allocated and free apart from live usage.

use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::Heartbeat;
use herd_tests::{
    announce, connect, node_call as call, real_cgroup_backend, wait_for_node, Herdd, HerddOptions,
    NatsServer,
};
use serde_json::{json, Value};
use std::time::Duration;

fn root() -> String {
    format!("herdtest-alloc-{}", std::process::id())
}

async fn start(client: &async_nats::Client, node: &str, limits: Value) -> Value {
    call(
        client,
        node,
        "workload.start",
        json!({"command": ["sleep", "300"], "limits": limits}),
    )
    .await
}

/// The node's next heartbeat (published at least every interval).
async fn heartbeat(client: &async_nats::Client, node: &str) -> Heartbeat {
    let mut sub = client
        .subscribe(format!("herd.v1.hb.{node}"))
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a heartbeat within 5 s")
        .unwrap();
    codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap()
}

fn refusal(v: &Value) -> String {
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    v["error"]["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn starts_fit_until_the_allocatable_cpu_is_handed_out() {
    let nats = NatsServer::start();
    let node = "alloc-cpu";
    let config = format!(
        "[cgroup]\nroot = \"{}-cpu\"\n[heartbeat]\ninterval_s = 0.5\n[resources]\ncapacity_cpu = 2.0\novercommit_cpu = false\n",
        root()
    );
    // Kept across the restart below, so that the new herdd re-adopts them.
    let keep = || vec![("HERD_ON_SHUTDOWN", "keep".to_string())];
    let mut herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&config),
        env: keep(),
        ..HerddOptions::new(node, nats.url())
    });
    let client = connect(&nats.url()).await;
    wait_for_node(&client, node).await;
    real_cgroup_backend(&client, node).await;

    let mut ids = vec![];
    for _ in 0..4 {
        let v = start(&client, node, json!({"cpu": 0.5})).await;
        assert_eq!(v["ok"], true, "{v}");
        ids.push(v["data"]["workload_id"].as_str().unwrap().to_string());
    }
    let fifth = refusal(&start(&client, node, json!({"cpu": 0.5})).await);
    assert!(
        fifth.contains("cpu: needs 0.5 CPUs, 0.00 of 2 allocatable left"),
        "{fifth}"
    );
    announce(&format!(
        "allocation: the fifth 0.5-CPU start on 2 allocatable CPUs: {fifth}"
    ));

    let hb = heartbeat(&client, node).await;
    let a = hb.allocation.expect("the heartbeat carries allocations");
    assert_eq!((a.allocatable_cpus, a.allocated_cpus), (2.0, 2.0));
    assert_eq!(hb.capacity.cpus, 2.0, "capacity as configured");
    assert!(!a.overcommit_cpu);

    // What ends is released.
    let v = call(
        &client,
        node,
        "workload.stop",
        json!({"workload_id": ids[0]}),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let again = herd_tests::eventually(
        Duration::from_secs(10),
        "a stopped workload's CPU released",
        || async {
            let v = start(&client, node, json!({"cpu": 0.5})).await;
            v["data"]["workload_id"].as_str().map(str::to_string)
        },
    )
    .await;
    ids[0] = again;

    // A restarted herdd re-adopts the four running ones and still counts them.
    herdd
        .terminate(Duration::from_secs(15))
        .expect("herdd stops");
    let mut again = Herdd::start_with(HerddOptions {
        config_toml: Some(&config),
        state_dir: Some(&herdd.state_dir),
        env: keep(),
        ..HerddOptions::new(node, nats.url())
    });
    wait_for_node(&client, node).await;
    let after = refusal(&start(&client, node, json!({"cpu": 0.5})).await);
    assert!(
        after.starts_with("does not fit on this node: cpu:"),
        "{after}"
    );
    for id in &ids {
        let v = call(&client, node, "workload.stop", json!({"workload_id": id})).await;
        assert_eq!(v["ok"], true, "{v}");
    }
    // Under `keep` herdd leaves its cgroup root; this test removes it once its workloads end.
    herd_tests::eventually(Duration::from_secs(15), "the workloads stopped", || async {
        let v = call(&client, node, "workload.list", json!({"state": "running"})).await;
        (v["data"]["workloads"].as_array().map(Vec::len) == Some(0)).then_some(())
    })
    .await;
    again.terminate(Duration::from_secs(15));
    for dir in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let root = dir.path().join(format!("{}-cpu", root()));
        let _ = std::fs::remove_dir(root.join("workloads"));
        let _ = std::fs::remove_dir(&root);
    }
}

#[tokio::test]
async fn pinned_cores_and_declared_gpus_go_to_one_workload_each() {
    let nats = NatsServer::start();
    let node = "alloc-dev";
    let devices: Vec<String> = (0..4)
        .map(|i| format!("{{ index = {i}, uuid = \"GPU-herdtest-{i}\", name = \"declared\" }}"))
        .collect();
    let config = format!(
        "[cgroup]\nroot = \"{}-dev\"\n[heartbeat]\ninterval_s = 0.5\n[shutdown]\non_shutdown = \"stop\"\n[gpu]\ndevices = [{}]\n",
        root(),
        devices.join(", ")
    );
    let _herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&config),
        ..HerddOptions::new(node, nats.url())
    });
    let client = connect(&nats.url()).await;
    wait_for_node(&client, node).await;

    let mut gpus = vec![];
    for _ in 0..4 {
        let v = start(&client, node, json!({"gpus": 1})).await;
        assert_eq!(v["ok"], true, "{v}");
        let id = v["data"]["workload_id"].as_str().unwrap();
        let status = call(&client, node, "workload.get", json!({"workload_id": id})).await;
        gpus.push(
            status["data"]["assigned"]["gpus"][0]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    gpus.sort();
    assert_eq!(
        gpus,
        [
            "GPU-herdtest-0",
            "GPU-herdtest-1",
            "GPU-herdtest-2",
            "GPU-herdtest-3"
        ]
    );
    let fifth = refusal(&start(&client, node, json!({"gpus": 1})).await);
    assert!(fifth.contains("gpus: needs 1, 0 free of 4"), "{fifth}");

    let cores = heartbeat(&client, node)
        .await
        .allocation
        .unwrap()
        .cores_free;
    let mut pinned = vec![];
    for _ in 0..cores {
        let v = start(&client, node, json!({"cpuset_cpus": 1})).await;
        assert_eq!(v["ok"], true, "{v}");
        let id = v["data"]["workload_id"].as_str().unwrap();
        let status = call(&client, node, "workload.get", json!({"workload_id": id})).await;
        pinned.push(status["data"]["assigned"]["cores"][0].as_u64().unwrap());
    }
    let distinct: std::collections::BTreeSet<_> = pinned.iter().collect();
    assert_eq!(distinct.len(), pinned.len(), "one core each: {pinned:?}");
    let more = refusal(&start(&client, node, json!({"cpuset_cpus": 1})).await);
    assert!(
        more.contains("cpuset_cpus: needs 1 whole cores, 0 free"),
        "{more}"
    );
    let hb = heartbeat(&client, node).await;
    let a = hb.allocation.unwrap();
    assert_eq!((a.cores_free, a.gpus_free.len()), (0, 0));
    assert_eq!(hb.capacity.gpus.len(), 4, "the declared inventory");
}
