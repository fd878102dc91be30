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

/// `cpuset.cpus` of the cgroup process `pid` is in (v1's cpuset hierarchy, or v2's).
fn cpuset_of(pid: u64) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let dir = cgroups
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            if controllers.split(',').any(|c| c == "cpuset") {
                Some(format!("/sys/fs/cgroup/cpuset{path}"))
            } else if controllers.is_empty() && v2 {
                Some(format!("/sys/fs/cgroup{path}"))
            } else {
                None
            }
        })
        .unwrap_or_else(|| panic!("process {pid} is in no cpuset cgroup: {cgroups}"));
    std::fs::read_to_string(format!("{dir}/cpuset.cpus"))
        .unwrap()
        .trim()
        .to_string()
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
    // Running before herdd stops: one accepted but not yet started would be lost at the
    // restart below (and reported lost), not re-adopted.
    herd_tests::eventually(Duration::from_secs(10), "the new one runs", || async {
        let s = call(&client, node, "workload.get", json!({"workload_id": again})).await;
        (s["data"]["state"] == "running").then_some(())
    })
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

    // Each of four `gpus = 1` workloads sees its own GPU in CUDA_VISIBLE_DEVICES.
    let mut gpus = vec![];
    for _ in 0..4 {
        let v = call(
            &client,
            node,
            "workload.start",
            json!({"command": ["sh", "-c", "echo \"$CUDA_VISIBLE_DEVICES $NVIDIA_VISIBLE_DEVICES\" > \"$HERD_WORK_DIR/gpus\"; exec sleep 300"],
                   "limits": {"gpus": 1}}),
        )
        .await;
        assert_eq!(v["ok"], true, "{v}");
        let id = v["data"]["workload_id"].as_str().unwrap().to_string();
        let (assigned, seen) = herd_tests::eventually(
            Duration::from_secs(10),
            "the workload wrote its GPUs",
            || async {
                let status = call(&client, node, "workload.get", json!({"workload_id": id})).await;
                let dir = status["data"]["work_dir"].as_str()?.to_string();
                // Complete once echo's line is there (the shell creates the file first).
                let seen = std::fs::read_to_string(format!("{dir}/gpus"))
                    .ok()
                    .filter(|s| s.ends_with('\n'))?;
                let assigned = status["data"]["assigned"]["gpus"][0].as_str()?.to_string();
                Some((assigned, seen.trim().to_string()))
            },
        )
        .await;
        assert_eq!(
            seen,
            format!("{assigned} {assigned}"),
            "CUDA_ and NVIDIA_VISIBLE_DEVICES"
        );
        gpus.push(assigned);
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
    assert!(cores >= 1, "a core to pin");
    let mut pinned = vec![];
    for _ in 0..cores {
        let v = start(&client, node, json!({"cpuset_cpus": 1})).await;
        assert_eq!(v["ok"], true, "{v}");
        let id = v["data"]["workload_id"].as_str().unwrap().to_string();
        let status = herd_tests::eventually(Duration::from_secs(10), "it runs", || async {
            let s = call(&client, node, "workload.get", json!({"workload_id": id})).await;
            (s["data"]["state"] == "running").then_some(s)
        })
        .await;
        let core = status["data"]["assigned"]["cores"][0].as_u64().unwrap();
        // The kernel's word: the cpuset the process is in holds exactly that core.
        let pid = status["data"]["pid"].as_u64().unwrap();
        assert_eq!(cpuset_of(pid), core.to_string(), "workload {id}");
        pinned.push(core);
    }
    let distinct: std::collections::BTreeSet<_> = pinned.iter().collect();
    assert_eq!(distinct.len(), pinned.len(), "one core each: {pinned:?}");
    announce(&format!(
        "allocation: {} pinned workloads on cores {pinned:?} (cpuset.cpus read back)",
        pinned.len()
    ));
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

/// The coordinator places by free GPUs: with node a's only GPU taken, a query for one GPU
/// names b alone, and a run asking one GPU lands on b.
#[tokio::test]
async fn placement_goes_where_a_gpu_is_free() {
    let f = herd_tests::Fleet::start_configured(
        "agpu",
        &["a", "b"],
        0.5,
        20.0,
        "[gpu]\ndevices = [{ index = 0, uuid = \"GPU-only\" }]\n",
    )
    .await;
    let (a, b) = (f.agents[0].node_id.clone(), f.agents[1].node_id.clone());
    let v = start(&f.client, &a, json!({"gpus": 1})).await;
    assert_eq!(v["ok"], true, "{v}");
    let fit = herd_tests::eventually(Duration::from_secs(10), "b alone fits one GPU", || async {
        let fit = f.cluster("query", json!({"gpus": 1})).await;
        let names: Vec<String> = fit["data"]["candidates"]
            .as_array()?
            .iter()
            .map(|c| c["node_id"].as_str().unwrap_or("").to_string())
            .collect();
        (names == [b.clone()]).then_some(fit)
    })
    .await;
    let why = fit["data"]["rejected"][&a]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("gpus"), "a is refused naming GPUs: {fit}");
    let run = f
        .cluster(
            "run.submit",
            json!({"workload": {"command": ["true"], "limits": {"gpus": 1}},
                   "targets": {"count": 1}, "repetitions": 1}),
        )
        .await;
    assert_eq!(run["ok"], true, "{run}");
    let id = run["data"]["run_id"].as_str().unwrap().to_string();
    let record = herd_tests::eventually(Duration::from_secs(20), "the run completed", || async {
        let r = f.cluster("run.get", json!({"run_id": id})).await;
        (r["data"]["state"] == "completed").then_some(r)
    })
    .await;
    assert_eq!(record["data"]["tasks"][0]["node_id"], json!(b), "{record}");
    announce(&format!(
        "allocation: with a's GPU taken, query and placement chose {b} ({why})"
    ));
}

/// A docker workload's create request carries exactly its GPUs and cores, as the engine
/// receives it: herdd talks to the real engine through a recording proxy on its socket. (On this
/// machine the engine has no NVIDIA runtime, so the container cannot start: the request is what
/// is checked, and the engine's refusal names the device request.)
#[tokio::test]
async fn a_containers_create_request_carries_exactly_its_devices() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let image = herd_tests::docker_test_image();
    let dir = tempfile::tempdir().unwrap();
    let proxy = dir.path().join("docker.sock");
    let listener = tokio::net::UnixListener::bind(&proxy).unwrap();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let recorded = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let Ok(mut engine) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
                else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut er, mut ew) = engine.split();
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        recorded.lock().unwrap().extend_from_slice(&buf[..n]);
                        if ew.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = ew.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut er, &mut cw).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    let nats = NatsServer::start();
    let node = "alloc-docker";
    let config = format!(
        "[cgroup]\nroot = \"{}-docker\"\n[docker]\nsocket = \"{}\"\n[gpu]\ndevices = [{{ index = 0, uuid = \"GPU-herdtest-a\" }}, {{ index = 1, uuid = \"GPU-herdtest-b\" }}]\n",
        root(),
        proxy.display()
    );
    let _herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&config),
        ..HerddOptions::new(node, nats.url())
    });
    let client = connect(&nats.url()).await;
    wait_for_node(&client, node).await;
    let v = call(
        &client,
        node,
        "workload.start",
        json!({"driver": "docker", "image": image, "command": ["true"],
               "limits": {"gpus": ["GPU-herdtest-b"], "cpuset_cpus": 1}}),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let id = v["data"]["workload_id"].as_str().unwrap().to_string();
    let status =
        herd_tests::eventually(Duration::from_secs(30), "the container settled", || async {
            let s = call(&client, node, "workload.get", json!({"workload_id": id})).await;
            matches!(s["data"]["state"].as_str(), Some("failed" | "exited")).then_some(s)
        })
        .await;
    let bytes = sent.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&bytes);
    let at = text
        .find("/containers/create")
        .expect("a create request reached the engine");
    let head_end = at + text[at..].find("\r\n\r\n").unwrap() + 4;
    let length: usize = text[at..head_end]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a Content-Length");
    let body: Value = serde_json::from_slice(&bytes[head_end..head_end + length]).unwrap();
    let host = &body["HostConfig"];
    let core = status["data"]["assigned"]["cores"][0].as_u64().unwrap();
    assert_eq!(
        host["DeviceRequests"],
        json!([{"Driver": "nvidia", "DeviceIDs": ["GPU-herdtest-b"], "Capabilities": [["gpu"]]}]),
        "{host}"
    );
    assert_eq!(host["CpusetCpus"], json!(core.to_string()));
    let env: Vec<&str> = body["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"CUDA_VISIBLE_DEVICES=GPU-herdtest-b"),
        "{env:?}"
    );
    announce(&format!(
        "allocation: docker create carried DeviceRequests {} and CpusetCpus {}; the engine then said: {}",
        host["DeviceRequests"], host["CpusetCpus"], status["data"]["reason"]
    ));
}
