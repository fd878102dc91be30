//! Run inputs on a real nats-server and real herdd processes: `herdctl run submit --input`
//! uploads files and directories to the `herd-inputs` bucket once per content; each node
//! fetches them once into its cache, checks their SHA-256, and materializes them below every
//! task's `HERD_INPUT_DIR` before the task starts; a missing or tampered object fails the start
//! naming the input; a bad `--input` fails the submission before anything is sent.

use herd_bus::{input_object_name, InputFile, RunRecord, RunState, TaskStatus, WorkloadState};
use herd_bus::{INPUTS_BUCKET, INPUTS_STREAM};
use herd_nats::objects::{hash_file, object_digest, ObjectBucket};
use herd_tests::{
    announce, eventually, node_call, wait_workload_event, wait_workloads_events, workspace_bin,
    Fleet,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const HB: f64 = 0.5;

/// What the tasks run: every input as listed in `expected.sha256`, the script executable and
/// the data not.
const CHECK: &str = r#"set -e
cd "$HERD_INPUT_DIR"
sha256sum --check --strict expected.sha256
test -x bench.sh && test ! -x data/a.txt
./bench.sh
"#;

/// `bench.sh` (executable), `data/a.txt`, `data/sub/b.bin` and `expected.sha256` of the first
/// three, as HERD_INPUT_DIR is to hold them, below a fresh directory.
fn inputs_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("data/sub")).unwrap();
    std::fs::write(d.join("bench.sh"), "#!/bin/sh\necho bench ran\n").unwrap();
    std::fs::set_permissions(
        d.join("bench.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(d.join("data/a.txt"), "some data\n").unwrap();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(d.join("data/sub/b.bin"), bytes).unwrap();
    let sums = Command::new("sha256sum")
        .args(["bench.sh", "data/a.txt", "data/sub/b.bin"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(sums.status.success());
    std::fs::write(d.join("expected.sha256"), sums.stdout).unwrap();
    dir
}

/// The InputFile of `root/path`, its content uploaded to the inputs bucket as herdctl does.
async fn store(client: &async_nats::Client, root: &Path, path: &str) -> InputFile {
    let source = root.join(path);
    let (size, sha256) = hash_file(&source).unwrap();
    let file = InputFile {
        path: path.to_string(),
        digest: object_digest(&sha256),
        size,
        executable: path.ends_with(".sh"),
    };
    let bucket = ObjectBucket::open(client.clone(), INPUTS_BUCKET, INPUTS_STREAM, "test", 1)
        .await
        .unwrap();
    bucket
        .put_file(
            &input_object_name(&file.digest),
            &source,
            sha256,
            &mut vec![],
        )
        .await
        .unwrap();
    file
}

/// Starts `spec` on `node` and waits for it to settle; its final event.
async fn run_on(f: &Fleet, node: &str, spec: Value) -> herd_bus::WorkloadEvent {
    let mut sub = f
        .client
        .subscribe(format!("herd.v1.evt.{node}.workload.>"))
        .await
        .unwrap();
    let v = node_call(&f.client, node, "workload.start", spec.clone()).await;
    assert_eq!(v["ok"], true, "{spec} → {v}");
    let id = v["data"]["workload_id"].as_str().unwrap().to_string();
    let terminal: Vec<WorkloadState> = WorkloadState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .collect();
    wait_workload_event(&mut sub, &id, &terminal, Duration::from_secs(60)).await
}

fn cached(f: &Fleet, agent: usize, file: &InputFile) -> PathBuf {
    let hex = herd_actors::cores::workload::inputs::digest_hex(&file.digest).unwrap();
    f.agents[agent]
        .state_dir
        .join("workloads/inputs-cache")
        .join(hex)
}

#[tokio::test]
async fn a_node_materializes_checked_inputs_once_and_fails_a_start_naming_a_bad_one() {
    let f = Fleet::start("ni", &["a", "b"], HB, 30.0).await;
    let tree = inputs_tree();
    let mut inputs = vec![];
    for path in [
        "bench.sh",
        "data/a.txt",
        "data/sub/b.bin",
        "expected.sha256",
    ] {
        inputs.push(store(&f.client, tree.path(), path).await);
    }
    let spec = json!({"command": ["sh", "-c", CHECK], "inputs": inputs});
    let ev = run_on(&f, "ni-a", spec.clone()).await;
    assert_eq!(
        (ev.state, ev.exit_code),
        (WorkloadState::Exited, Some(0)),
        "{ev:?}\n{}",
        f.agents[0].log()
    );
    for file in &inputs {
        assert!(
            cached(&f, 0, file).is_file(),
            "{file:?} in the node's cache"
        );
    }
    // Two workloads at once on a node that holds none of them: one fetches, the other waits
    // for that fetch and copies from the cache.
    let mut sub = f
        .client
        .subscribe("herd.v1.evt.ni-b.workload.>")
        .await
        .unwrap();
    for id in ["twin-1", "twin-2"] {
        let mut spec = spec.clone();
        spec["workload_id"] = id.into();
        let v = node_call(&f.client, "ni-b", "workload.start", spec).await;
        assert_eq!(v["ok"], true, "{v}");
    }
    let terminal: Vec<WorkloadState> = WorkloadState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .collect();
    let evs = wait_workloads_events(
        &mut sub,
        &["twin-1", "twin-2"],
        &terminal,
        Duration::from_secs(60),
    )
    .await;
    for ev in evs.values() {
        assert_eq!(
            (ev.state, ev.exit_code),
            (WorkloadState::Exited, Some(0)),
            "{ev:?}"
        );
    }
    let log = f.agents[1].log();
    let fetched: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("inputs in place"))
        .collect();
    assert_eq!(fetched.len(), 2, "{log}");
    for downloaded in ["downloaded=4", "downloaded=0"] {
        let n = fetched.iter().filter(|l| l.contains(downloaded)).count();
        assert_eq!(n, 1, "{downloaded}: {fetched:#?}");
    }
    // Node b holds them all now: fresh caches for the failures below.
    std::fs::remove_dir_all(f.agents[1].state_dir.join("workloads/inputs-cache")).unwrap();

    // Deleted from the bucket (by another client): the node that holds it starts the workload
    // from its cache; a node that does not fails the start naming the input.
    let store = async_nats::jetstream::new(f.client.clone())
        .get_object_store(INPUTS_BUCKET)
        .await
        .unwrap();
    store
        .delete(input_object_name(&inputs[0].digest))
        .await
        .unwrap();
    let ev = run_on(&f, "ni-a", spec.clone()).await;
    assert_eq!(
        (ev.state, ev.exit_code),
        (WorkloadState::Exited, Some(0)),
        "{ev:?}"
    );
    let ev = run_on(&f, "ni-b", spec.clone()).await;
    assert_eq!(ev.state, WorkloadState::Failed, "{ev:?}");
    let reason = ev.reason.unwrap_or_default();
    assert!(
        reason.starts_with("input bench.sh: ") && reason.contains("not in the herd-inputs bucket"),
        "{reason}"
    );

    // Replaced by other content under the same object name: refused, nothing materialized.
    let evil = tree.path().join("evil");
    std::fs::write(&evil, "not the data\n").unwrap();
    let (_, evil_sha) = hash_file(&evil).unwrap();
    ObjectBucket::open(f.client.clone(), INPUTS_BUCKET, INPUTS_STREAM, "test", 1)
        .await
        .unwrap()
        .put_file(
            &input_object_name(&inputs[1].digest),
            &evil,
            evil_sha,
            &mut vec![],
        )
        .await
        .unwrap();
    let only_data = json!({"command": ["true"], "inputs": [inputs[1]]});
    let ev = run_on(&f, "ni-b", only_data).await;
    assert_eq!(ev.state, WorkloadState::Failed, "{ev:?}");
    let reason = ev.reason.unwrap_or_default();
    assert!(
        reason.starts_with("input data/a.txt: ") && reason.contains(&inputs[1].digest),
        "{reason}"
    );
    assert!(!cached(&f, 1, &inputs[1]).exists());
    announce("inputs: materialized and checked by the workload itself, served from the node's cache once deleted from the bucket, a missing and a tampered object each failing the start naming the input");

    // Refused at the door: a path outside the input directory, a matrix.
    let mut bad = inputs[1].clone();
    bad.path = "../escape".into();
    for (spec, says) in [
        (
            json!({"command": ["true"], "inputs": [bad]}),
            "inputs: \"../escape\": the path must not contain '..'",
        ),
        (
            json!({"command": ["true"], "matrix": {"size": [1, 2]}}),
            "matrix: a run expands it into variants; workload.start takes one",
        ),
    ] {
        let v = node_call(&f.client, "ni-a", "workload.start", spec).await;
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"]["code"], "bad_request", "{v}");
        assert_eq!(v["error"]["message"], says, "{v}");
    }
}

fn herdctl(f: &Fleet, args: &[&str]) -> Output {
    Command::new(workspace_bin("herdctl"))
        .args(["--nats-url", &f.nats.url()])
        .args(args)
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Messages in the inputs bucket's stream; None while it does not exist.
async fn stored_messages(f: &Fleet) -> Option<u64> {
    let mut stream = async_nats::jetstream::new(f.client.clone())
        .get_stream(INPUTS_STREAM)
        .await
        .ok()?;
    Some(stream.info().await.unwrap().state.messages)
}

async fn get(f: &Fleet, run: &str) -> RunRecord {
    f.run_record(run).await
}

async fn settled(f: &Fleet, run: &str) -> RunRecord {
    eventually(Duration::from_secs(90), "the run settled", || async {
        let r = get(f, run).await;
        matches!(r.state, RunState::Completed | RunState::Failed).then_some(r)
    })
    .await
}

/// `herdctl run submit --input bench.sh --input expected.sha256 --input data` of `tree` on the
/// fleet's two nodes, running `command`; its output.
fn submit_with_inputs(f: &Fleet, tree: &Path, nodes: &str, command: &str) -> Output {
    let path = |p: &str| tree.join(p).to_str().unwrap().to_string();
    let (bench, sums, data) = (path("bench.sh"), path("expected.sha256"), path("data"));
    herdctl(
        f,
        &[
            "run", "submit", "--nodes", nodes, "--input", &bench, "--input", &sums, "--input",
            &data, "--", "sh", "-c", command,
        ],
    )
}

#[tokio::test]
async fn submit_uploads_each_content_once_and_a_bad_input_sends_nothing() {
    let f = Fleet::start("si", &["a"], HB, 30.0).await;
    let tree = inputs_tree();

    // A path that does not exist: herdctl names it; no run, nothing uploaded.
    let runs_before = f.cluster("run.list", json!({})).await;
    let good = tree.path().join("bench.sh");
    let out = herdctl(
        &f,
        &[
            "run",
            "submit",
            "--nodes",
            "si-a",
            "--input",
            good.to_str().unwrap(),
            "--input",
            "/does/not/exist",
            "--",
            "true",
        ],
    );
    assert!(!out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--input /does/not/exist"),
        "{}",
        said(&out)
    );
    assert_eq!(f.cluster("run.list", json!({})).await, runs_before);
    assert_eq!(stored_messages(&f).await, None, "nothing was uploaded");

    // Uploaded once: 4 files (two of data/ with the same content would be stored once too).
    let out = submit_with_inputs(&f, tree.path(), "si-a", "true");
    assert!(out.status.success(), "{}", said(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("herdctl: inputs: 4 files, 4 uploaded (")
            && stderr.contains("K), 0 already stored"),
        "{}",
        said(&out)
    );
    let run = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let listed: Vec<String> = get(&f, &run)
        .await
        .spec
        .inputs
        .iter()
        .map(|i| i.path.clone())
        .collect();
    assert_eq!(
        listed,
        [
            "bench.sh",
            "expected.sha256",
            "data/a.txt",
            "data/sub/b.bin"
        ]
    );
    let stored = stored_messages(&f).await.unwrap();

    // The same inputs again, for another run: nothing is sent.
    let out = submit_with_inputs(&f, tree.path(), "si-a", "true");
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("herdctl: inputs: 4 files, 0 uploaded (0B), 4 already stored"),
        "{}",
        said(&out)
    );
    assert_eq!(stored_messages(&f).await, Some(stored));
    announce("inputs: herdctl uploads each content once across runs; a missing --input creates no run and uploads nothing");
}

#[tokio::test]
async fn every_task_of_a_run_finds_its_inputs_and_a_deleted_one_fails_the_task() {
    let f = Fleet::start("ri", &["a", "b"], HB, 30.0).await;
    let tree = inputs_tree();
    let out = submit_with_inputs(&f, tree.path(), "ri-a,ri-b", CHECK);
    assert!(out.status.success(), "{}", said(&out));
    let run = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let r = settled(&f, &run).await;
    assert_eq!(r.state, RunState::Completed, "{:#?}", r.tasks);
    assert_eq!(r.tasks.len(), 2);
    assert!(r.tasks.iter().all(|t| t.status == TaskStatus::Completed));

    // bench.sh deleted from the bucket and from the nodes' caches: the same spec again (no
    // upload: it goes straight to the coordinator) fails its tasks naming the input.
    let (_, sha) = hash_file(&tree.path().join("bench.sh")).unwrap();
    async_nats::jetstream::new(f.client.clone())
        .get_object_store(INPUTS_BUCKET)
        .await
        .unwrap()
        .delete(input_object_name(&object_digest(&sha)))
        .await
        .unwrap();
    for agent in &f.agents {
        let _ = std::fs::remove_dir_all(agent.state_dir.join("workloads/inputs-cache"));
    }
    let mut spec = serde_json::to_value(&r.spec).unwrap();
    spec["run_id"] = Value::Null;
    let v = f.cluster("run.submit", spec).await;
    assert_eq!(v["ok"], true, "{v}");
    let r = settled(&f, v["data"]["run_id"].as_str().unwrap()).await;
    assert_eq!(r.state, RunState::Failed, "{:#?}", r.tasks);
    for t in &r.tasks {
        assert_eq!(t.status, TaskStatus::Failed, "{t:?}");
        let error = t.error.clone().unwrap_or_default();
        assert!(error.contains("input bench.sh: "), "{error}");
    }
}
