//! What run tasks leave in their output directories, uploaded to the `herd-results` object
//! store bucket by separate herdd processes on a real nats-server, and brought back by
//! `herdctl run fetch`: byte for byte (SHA-256 sums the tasks wrote themselves), when NATS is
//! down as a task ends (and its herdd restarts meanwhile), truncated past the node's cap, and
//! read by another NATS client (Python's nats-py) by the documented object name.

use herd_bus::{RunRecord, RunState, TaskStatus};
use herd_tests::{announce, eventually, workspace_bin, Fleet};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const HB: f64 = 0.5;
const MIB: u64 = 1024 * 1024;
/// The agents' `results.max_bytes` in these tests: a 50 MiB file fits, 80 MiB do not.
const CAP: u64 = 64 * MIB;

/// A task's output: a 50 MiB file of random bytes (each task's differs), nested small files,
/// `metrics.json`, and `SHA256SUMS` of all of them, made by the task itself.
const WRITE_OUTPUT: &str = r#"set -e
cd "$HERD_OUTPUT_DIR"
mkdir -p data a/b/c
head -c 52428800 /dev/urandom > data/big.bin
echo "rep $HERD_REP on $HERD_NODE" > a/b/c/small.txt
printf 'x%.0s' $(seq 1 1000) > a/b/kilo.txt
printf '{"rep": %s, "score": 1.5}' "$HERD_REP" > metrics.json
find . -type f ! -name SHA256SUMS | sort | xargs sha256sum > SHA256SUMS
"#;

fn agent_config() -> String {
    format!("[results]\nmax_bytes = {CAP}\n")
}

async fn submit(f: &Fleet, spec: Value) -> String {
    let v = f.cluster("run.submit", spec.clone()).await;
    assert_eq!(v["ok"], true, "{spec} → {v}");
    v["data"]["run_id"].as_str().unwrap().to_string()
}

async fn get(f: &Fleet, run: &str) -> RunRecord {
    f.run_record(run).await
}

/// The run once it has settled and every task's results are in its journal (the coordinator
/// may be reconnecting meanwhile).
async fn settled_with_results(f: &Fleet, run: &str, within: Duration) -> RunRecord {
    eventually(
        within,
        &format!("run {run} settled with results"),
        || async {
            let v = f
                .try_call("herd.v1.cluster.run.get", json!({"run_id": run}))
                .await?;
            let r: RunRecord = serde_json::from_value(v["data"].clone()).ok()?;
            let settled = matches!(r.state, RunState::Completed | RunState::Failed);
            (settled && r.tasks.iter().all(|t| t.results.is_some())).then_some(r)
        },
    )
    .await
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

/// `sha256sum -c SHA256SUMS` in a fetched task's directory: every file the task wrote, as it
/// wrote it.
fn check_sums(dir: &Path) {
    let out = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {}", dir.display(), said(&out));
    let checked = String::from_utf8_lossy(&out.stdout).matches(": OK").count();
    assert_eq!(checked, 4, "{}", said(&out));
}

#[tokio::test]
async fn fetch_reproduces_every_file_of_two_nodes_times_three_reps_and_marks_a_truncated_task() {
    let f = Fleet::start_configured("rf", &["a", "b"], HB, 30.0, &agent_config()).await;
    let run = submit(
        &f,
        json!({
            "workload": {"name": "bench", "command": ["sh", "-c", WRITE_OUTPUT]},
            "targets": {"nodes": ["rf-a", "rf-b"]},
            "repetitions": 3
        }),
    )
    .await;
    let r = settled_with_results(&f, &run, Duration::from_secs(240)).await;
    assert_eq!(r.state, RunState::Completed, "{:#?}", r.tasks);
    for t in &r.tasks {
        let res = t.results.as_ref().unwrap();
        let paths: Vec<&str> = res.objects.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metrics.json",
                "SHA256SUMS",
                "a/b/c/small.txt",
                "a/b/kilo.txt",
                "data/big.bin"
            ],
            "{t:?}"
        );
        let big = &res.objects[4];
        assert_eq!(big.size, 50 * MIB);
        assert_eq!(
            big.object,
            format!("{run}/{}/bench-{}/data/big.bin", t.node_id, t.rep)
        );
        assert_eq!(big.sha256.len(), 64);
        assert_eq!(res.bytes, res.objects.iter().map(|o| o.size).sum::<u64>());
        assert!(!res.truncated && res.skipped.is_empty(), "{res:?}");
        assert_eq!(res.metrics.get("rep"), Some(&(t.rep as f64)), "{res:?}");
        assert_eq!(res.metrics.get("score"), Some(&1.5));
        assert_eq!(res.metrics_error, None);
    }
    // Nothing is left in the nodes' spools once uploaded (the entry goes once the event is
    // acknowledged, just after the coordinator saw it).
    for a in &f.agents {
        let spool = a.state_dir.join("results").join(&run);
        eventually(Duration::from_secs(30), "the spool emptied", || async {
            (!spool.exists()).then_some(())
        })
        .await;
    }

    let to = tempfile::tempdir().unwrap();
    let dest = to.path().to_str().unwrap();
    let out = herdctl(&f, &["run", "fetch", &run, "--to", dest]);
    assert!(out.status.success(), "{}", said(&out));
    let mut digests = std::collections::BTreeSet::new();
    for t in &r.tasks {
        let dir = to
            .path()
            .join(&run)
            .join(t.node_id.as_str())
            .join(format!("bench-{}", t.rep));
        check_sums(&dir);
        assert_eq!(
            std::fs::read_to_string(dir.join("a/b/c/small.txt")).unwrap(),
            format!("rep {} on {}\n", t.rep, t.node_id)
        );
        digests.insert(t.results.as_ref().unwrap().objects[4].sha256.clone());
    }
    assert_eq!(digests.len(), 6, "each task's random file is its own");
    let journal: RunRecord =
        serde_json::from_slice(&std::fs::read(to.path().join(&run).join("journal.json")).unwrap())
            .unwrap();
    assert_eq!(journal.tasks.len(), 6);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(to.path().join(&run).join("summary.json")).unwrap())
            .unwrap();
    let tasks = summary["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 6, "{summary}");
    for t in tasks {
        assert_eq!(t["status"], "COMPLETED", "{t}");
        assert_eq!(t["exit_code"], 0);
        assert_eq!(t["metrics"]["rep"], t["rep"].as_f64().unwrap(), "{t}");
        assert_eq!(t["files"], 5);
        assert_eq!(t["truncated"], false);
    }
    // A second fetch finds every file in place and downloads nothing again.
    let again = herdctl(&f, &["--json", "run", "fetch", &run, "--to", dest]);
    assert!(again.status.success(), "{}", said(&again));
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["files"], 30, "{report}");

    // Another NATS client reads an object by its documented name: RUN/NODE/TASK/PATH.
    let t = &r.tasks[4];
    let big = &t.results.as_ref().unwrap().objects[4];
    let name = format!("{run}/{}/bench-{}/data/big.bin", t.node_id, t.rep);
    nats_py_reads(&f.nats.url(), &name, &big.sha256, big.size);

    // A task that writes past the cap: what fits is kept, the rest named, the task truncated.
    let over = submit(
        &f,
        json!({
            "workload": {"name": "over", "command": ["sh", "-c",
                "cd \"$HERD_OUTPUT_DIR\" && head -c 41943040 /dev/zero > one.bin && head -c 41943040 /dev/zero > two.bin && echo '{\"n\": 2}' > metrics.json"]},
            "targets": {"nodes": ["rf-a"]},
            "repetitions": 1
        }),
    )
    .await;
    let r = settled_with_results(&f, &over, Duration::from_secs(120)).await;
    let res = r.tasks[0].results.as_ref().unwrap();
    assert!(res.truncated, "{res:?}");
    let kept: Vec<&str> = res.objects.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(kept, ["metrics.json", "one.bin"]);
    assert_eq!(res.bytes, 40 * MIB + 9, "one.bin and metrics.json");
    assert_eq!(res.skipped.len(), 1, "{res:?}");
    assert!(
        res.skipped[0].starts_with("two.bin: 41943040 bytes would pass results.max_bytes"),
        "{res:?}"
    );
    assert_eq!(res.metrics.get("n"), Some(&2.0));
    let out = herdctl(&f, &["run", "fetch", &over, "--to", dest]);
    assert!(out.status.success(), "{}", said(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("truncated"), "{stdout}");
    let dir = to.path().join(&over).join("rf-a").join("over-1");
    assert_eq!(
        std::fs::metadata(dir.join("one.bin")).unwrap().len(),
        40 * MIB
    );
    assert!(!dir.join("two.bin").exists());
    announce("results: 2 nodes × 3 reps (50 MiB + nested files each) fetched and checked by sha256sum; a task past a 64 MiB cap truncated; nats-py read a 50 MiB object by name");
}

/// Python's nats-py reads object `name` of the bucket and checks its SHA-256.
fn nats_py_reads(url: &str, name: &str, sha256: &str, size: u64) {
    let probe = Command::new("python3")
        .args(["-c", "import nats"])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "nats-py is missing: `python3 -m pip install nats-py` (scripts/test installs it)\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let script = r#"
import asyncio, hashlib, sys
import nats

async def main(url, name):
    nc = await nats.connect(url)
    obs = await nc.jetstream().object_store("herd-results")
    got = await obs.get(name)
    await nc.close()
    print(len(got.data), hashlib.sha256(got.data).hexdigest())

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;
    let out = Command::new("python3")
        .args(["-c", script, url, name])
        .output()
        .unwrap();
    assert!(out.status.success(), "nats-py: {}", said(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{size} {sha256}")
    );
}

#[tokio::test]
async fn files_of_a_task_that_ends_while_nats_is_down_arrive_once_it_is_back() {
    let mut f = Fleet::start_configured("rn", &["a"], HB, 120.0, &agent_config()).await;
    // The task waits for the test's word before it writes and ends.
    let gate = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        gate.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let go = gate.path().join("go");
    let command = format!(
        "while [ ! -e {go} ]; do sleep 0.1; done\n{WRITE_OUTPUT}",
        go = go.display()
    );
    let run = submit(
        &f,
        json!({
            "workload": {"name": "late", "command": ["sh", "-c", command]},
            "targets": {"nodes": ["rn-a"]},
            "repetitions": 1
        }),
    )
    .await;
    eventually(Duration::from_secs(30), "the task running", || async {
        let r = get(&f, &run).await;
        (r.tasks[0].started_at_ms.is_some()).then_some(())
    })
    .await;

    f.nats.stop();
    std::fs::write(&go, b"").unwrap();
    // The task ends and its output waits in the node's spool, since NATS is down.
    let spool = f.agents[0].state_dir.join("results").join(&run);
    let sums = eventually(Duration::from_secs(60), "the output spooled", || async {
        let entry = std::fs::read_dir(&spool).ok()?.flatten().next()?.path();
        let sums = entry.join("output").join("SHA256SUMS");
        sums.is_file().then_some(sums)
    })
    .await;
    // herdd restarts meanwhile: the next one resumes the upload.
    let _stopped = f.restart_agent(0);
    assert!(sums.is_file(), "the spool outlives herdd");
    f.nats.restart();

    let r = settled_with_results(&f, &run, Duration::from_secs(120)).await;
    assert_eq!(r.tasks[0].status, TaskStatus::Completed, "{r:?}");
    let res = r.tasks[0].results.as_ref().unwrap();
    assert_eq!(res.objects.len(), 5, "{res:?}");
    assert!(!res.truncated);
    eventually(Duration::from_secs(30), "the spool emptied", || async {
        (!spool.exists()).then_some(())
    })
    .await;
    let to = tempfile::tempdir().unwrap();
    let out = herdctl(
        &f,
        &["run", "fetch", &run, "--to", to.path().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", said(&out));
    check_sums(&to.path().join(&run).join("rn-a").join("late-1"));
    announce("results: a task that ended while NATS was down (its herdd restarted meanwhile) had its files uploaded once NATS was back, byte for byte");
}

#[tokio::test]
async fn fetch_says_which_tasks_have_not_uploaded_yet() {
    let f = Fleet::start("rw", &["a"], HB, 30.0).await;
    let run = submit(
        &f,
        json!({
            "workload": {"command": ["sleep", "30"]},
            "targets": {"nodes": ["rw-a"]},
            "repetitions": 2
        }),
    )
    .await;
    let to = tempfile::tempdir().unwrap();
    let dest = to.path().to_str().unwrap();
    let out = herdctl(&f, &["run", "fetch", &run, "--to", dest]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("results not uploaded yet for 2 tasks: rw-a::task-1"),
        "{stderr}"
    );
    let out = herdctl(&f, &["run", "fetch", &run, "--to", dest, "--partial"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(to.path().join(&run).join("summary.json").is_file());
    // A run that does not exist is a clear error.
    let out = herdctl(&f, &["run", "fetch", "no-such-run", "--to", dest]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no run no-such-run"),
        "{}",
        said(&out)
    );
}
