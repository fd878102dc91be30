//! What a workload leaves behind on its node: a working directory of its own (default cwd,
//! HOME, TMPDIR) owned by the user it runs as, removed by retention with its record; and what
//! it used, measured from its cgroup when it ended, in its final event, in `workload.get` and
//! in a run's journal. Real tools (stress-ng, fio, sysbench) run as the default user.

use herd_bus::{RunRecord, TaskStatus, WorkloadState};
use herd_tests::{
    announce, connect, eventually, node_call as call, real_cgroup_backend, state_dir,
    wait_for_node, wait_workload_event as wait_event, Fleet, Herdd, HerddOptions, NatsServer,
};
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

struct Node {
    _nats: NatsServer,
    _herdd: Herdd,
    client: Client,
}

/// A client of one node.
struct Client {
    client: async_nats::Client,
    id: String,
}

impl std::ops::Deref for Node {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

async fn node(id: &str, extra: &str) -> Node {
    let nats = NatsServer::start();
    let config = format!(
        "[cgroup]\nroot = \"herdtest-{}-{id}\"\n{extra}",
        std::process::id()
    );
    let herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&config),
        ..HerddOptions::new(id, nats.url())
    });
    let client = connect(&nats.url()).await;
    wait_for_node(&client, id).await;
    real_cgroup_backend(&client, id).await;
    Node {
        _nats: nats,
        _herdd: herdd,
        client: Client {
            client,
            id: id.to_string(),
        },
    }
}

impl Client {
    async fn events(&self) -> async_nats::Subscriber {
        let sub = self
            .client
            .subscribe(format!("herd.v1.evt.{}.workload.*", self.id))
            .await
            .unwrap();
        self.client.flush().await.unwrap();
        sub
    }

    /// Starts `spec`, waits for it to settle; its final event and `workload.get` data.
    async fn run(&self, spec: Value, within: Duration) -> (herd_bus::WorkloadEvent, Value) {
        let mut events = self.events().await;
        let started = call(&self.client, &self.id, "workload.start", spec).await;
        let id = started["data"]["workload_id"]
            .as_str()
            .unwrap_or_else(|| panic!("not started: {started}"))
            .to_string();
        let settled = [
            WorkloadState::Exited,
            WorkloadState::Failed,
            WorkloadState::Killed,
            WorkloadState::OomKilled,
            WorkloadState::TimedOut,
            WorkloadState::Stopped,
            WorkloadState::Lost,
        ];
        let ev = wait_event(&mut events, &id, &settled, within).await;
        let got = call(
            &self.client,
            &self.id,
            "workload.get",
            json!({"workload_id": id}),
        )
        .await;
        (ev, got["data"].clone())
    }
}

fn tool(name: &str) -> &str {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is not installed: scripts/test installs it (apt-get install {name})"
    );
    name
}

fn uid_of(user: &str) -> u32 {
    let out = std::process::Command::new("id")
        .args(["-u", user])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmark_tools_run_as_the_default_user_in_a_directory_of_their_own() {
    let n = node("wd-tools", "[workloads]\nkeep_settled = 1\n").await;
    let stress = tool("stress-ng");
    let (ev, status) = n
        .run(
            json!({"command": [stress, "--cpu", "1", "--timeout", "3s", "--metrics-brief"]}),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        (ev.state, ev.exit_code),
        (WorkloadState::Exited, Some(0)),
        "stress-ng as the default user, no cwd: {status}"
    );
    let work_dir = PathBuf::from(status["work_dir"].as_str().expect("a working directory"));
    let meta = std::fs::metadata(&work_dir).expect("the working directory exists after the run");
    assert_eq!(meta.uid(), uid_of("nobody"), "owned by the user it ran as");
    assert!(work_dir.join("tmp").is_dir(), "TMPDIR is inside it");

    // fio writes its files into the working directory (its cwd), sysbench needs no more.
    let fio = tool("fio");
    let (ev, status) = n
        .run(
            json!({"command": [fio, "--name=w", "--size=4M", "--rw=write", "--bs=64k", "--minimal"]}),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        (ev.state, ev.exit_code),
        (WorkloadState::Exited, Some(0)),
        "fio: {status}"
    );
    let fio_dir = PathBuf::from(status["work_dir"].as_str().unwrap());
    let written = std::fs::read_dir(&fio_dir).unwrap().count();
    assert!(
        written >= 2,
        "fio's file is in its directory ({written} entries)"
    );
    let sysbench = tool("sysbench");
    let (ev, status) = n
        .run(
            json!({"command": [sysbench, "cpu", "--time=1", "run"], "env": {"A": "1"}}),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        (ev.state, ev.exit_code),
        (WorkloadState::Exited, Some(0)),
        "sysbench: {status}"
    );

    // keep_settled = 1: the older workloads are forgotten, their directories removed.
    eventually(
        Duration::from_secs(10),
        "retention removed the directories",
        || async { (!work_dir.exists() && !fio_dir.exists()).then_some(()) },
    )
    .await;
    let newest = status["workload_id"].as_str().unwrap();
    let kept = call(
        &n.client.client,
        &n.id,
        "workload.get",
        json!({"workload_id": newest}),
    )
    .await;
    assert_eq!(
        kept["ok"], true,
        "the newest settled workload is kept: {kept}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_sees_its_directory_as_cwd_home_and_tmpdir() {
    let n = node("wd-env", "").await;
    let (ev, status) = n
        .run(
            json!({"command": ["sh", "-c",
                "test \"$(pwd)\" = \"$HERD_WORK_DIR\" && test \"$HOME\" = \"$HERD_WORK_DIR\" \
                 && test \"$TMPDIR\" = \"$HERD_WORK_DIR/tmp\" && touch \"$TMPDIR/x\" && echo ok > here"]}),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        (ev.state, ev.exit_code),
        (WorkloadState::Exited, Some(0)),
        "{status}"
    );
    let dir = PathBuf::from(status["work_dir"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(dir.join("here")).unwrap(), "ok\n");
    assert!(dir.join("tmp/x").exists());
}

/// CPU figures need the CPU: the tests that measure them run one at a time.
static CPU: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_workload_used_is_measured_from_its_cgroup_when_it_ends() {
    let _cpu = CPU.lock().await;
    let n = node("wd-res", "").await;
    // dd reads 100 MiB of zeros into one buffer: it holds (and touches) 100 MiB at once.
    let (ev, status) = n
        .run(
            json!({"command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
                   "limits": {"memory": 512u64 << 20}}),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(ev.state, WorkloadState::Exited, "{status}");
    let used = ev.resources.expect("the final event carries what it used");
    let peak = used.memory_peak_bytes.expect("peak memory") as f64 / (1u64 << 20) as f64;
    announce(&format!("dd of 100 MiB: peak memory {peak:.1} MiB"));
    assert!(
        (90.0..=110.0).contains(&peak),
        "peak {peak:.1} MiB, not 100 ± 10 %"
    );
    assert_eq!(
        status["resources"]["memory_peak_bytes"].as_u64(),
        used.memory_peak_bytes,
        "workload.get has the same summary"
    );

    // A busy loop limited to half a CPU for 4 s uses 2 CPU seconds.
    let (ev, status) = n
        .run(
            json!({"command": ["timeout", "4", "sh", "-c", "while :; do :; done"],
                   "limits": {"cpu": 0.5}}),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        (ev.state, ev.exit_code),
        (WorkloadState::Exited, Some(124)),
        "timeout(1) ended it: {status}"
    );
    let used = ev.resources.expect("resources");
    let cpu_s = used.cpu_user_s + used.cpu_system_s;
    announce(&format!(
        "busy loop at 0.5 CPU for 4 s: {cpu_s:.2} CPU s, mean {:.1} %",
        used.cpu_mean_pct.unwrap_or(-1.0)
    ));
    assert!((1.7..=2.3).contains(&cpu_s), "{cpu_s} CPU s, not 2 ± 15 %");
    let mean = used.cpu_mean_pct.expect("mean CPU %");
    assert!((40.0..=60.0).contains(&mean), "mean {mean} %");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_journal_keeps_what_each_task_used() {
    let _cpu = CPU.lock().await;
    let f = Fleet::start("wdrun", &["a"], 1.0, 30.0).await;
    let submitted = f
        .cluster(
            "run.submit",
            json!({
                "workload": {"command": ["sh", "-c", "timeout 2 sh -c 'while :; do :; done'; exit 0"],
                             "limits": {"cpu": 0.5}},
                "targets": {"nodes": ["wdrun-a"]},
                "repetitions": 2,
            }),
        )
        .await;
    let run = submitted["data"]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{submitted}"))
        .to_string();
    let record: RunRecord = eventually(Duration::from_secs(60), "the run completed", || async {
        let v = f.cluster("run.get", json!({"run_id": run})).await;
        let r: RunRecord = serde_json::from_value(v["data"].clone()).ok()?;
        (r.tasks
            .iter()
            .all(|t| !matches!(t.status, TaskStatus::Pending | TaskStatus::Running)))
        .then_some(r)
    })
    .await;
    let statuses: Vec<TaskStatus> = record.tasks.iter().map(|t| t.status).collect();
    assert_eq!(statuses, [TaskStatus::Completed; 2], "{record:?}");
    for t in &record.tasks {
        let used = t
            .resources
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no resources", t.task_id));
        let cpu_s = used.cpu_user_s + used.cpu_system_s;
        assert!(
            (0.8..=1.2).contains(&cpu_s),
            "{}: {cpu_s} CPU s for 2 s at 0.5 CPU",
            t.task_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_workloads_stay_answerable_after_a_restart_and_keep_their_directory() {
    let nats = NatsServer::start();
    let state = state_dir();
    let config = format!(
        "[cgroup]\nroot = \"herdtest-{}-wd-restart\"\n",
        std::process::id()
    );
    let start = || {
        Herdd::start_with(HerddOptions {
            config_toml: Some(&config),
            state_dir: Some(state.path()),
            ..HerddOptions::new("wd-restart", nats.url())
        })
    };
    let mut herdd = start();
    let n = Client {
        client: connect(&nats.url()).await,
        id: "wd-restart".into(),
    };
    wait_for_node(&n.client, &n.id).await;
    let (ev, status) = n
        .run(
            json!({"command": ["sh", "-c", "echo kept > result; exit 5"]}),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(ev.exit_code, Some(5));
    let id = status["workload_id"].as_str().unwrap().to_string();
    let dir = PathBuf::from(status["work_dir"].as_str().unwrap());
    herdd.terminate(Duration::from_secs(15));
    let _again = start();
    wait_for_node(&n.client, &n.id).await;
    let got = call(&n.client, &n.id, "workload.get", json!({"workload_id": id})).await;
    assert_eq!(got["data"]["state"], "exited", "{got}");
    assert_eq!(got["data"]["exit_code"], 5);
    let listed = call(
        &n.client,
        &n.id,
        "workload.list",
        json!({"state": "exited"}),
    )
    .await;
    assert_eq!(
        listed["data"]["workloads"].as_array().map(|a| a.len()),
        Some(1)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("result")).unwrap(),
        "kept\n"
    );
}
