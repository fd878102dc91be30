//! Benchmark campaigns across separate herdd processes on a real nats-server: a run file with
//! inputs, setup, a suite with a matrix, repetitions and teardown, submitted with `herdctl`;
//! a setup failing on one node; stops during setup and during workloads (one node frozen);
//! `herdctl run retry`; bad run files refused before anything starts or is uploaded.

use herd_bus::{RunRecord, RunState, TaskPhase, TaskStatus};
use herd_tests::{announce, eventually, workspace_bin, Fleet};
use nix::sys::signal::Signal;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const HB: f64 = 0.5;

async fn get(f: &Fleet, run: &str) -> RunRecord {
    f.run_record(run).await
}

async fn wait_state(f: &Fleet, run: &str, states: &[RunState], within: Duration) -> RunRecord {
    f.wait_run(run, states, within).await
}

/// A directory every workload user may write to.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("herd-campaign")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    dir
}

/// `herdctl ARGS…` against the fleet: (success, stdout, stderr).
fn herdctl(f: &Fleet, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(workspace_bin("herdctl"))
        .args(["--nats-url", &f.nats.url(), "--wait", "5"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn submit_file(f: &Fleet, dir: &Path, toml: &str, extra: &[&str]) -> String {
    let file = dir.join("run.toml");
    std::fs::write(&file, toml).unwrap();
    let mut args = vec!["run", "submit", "--file", file.to_str().unwrap()];
    args.extend(extra);
    let (ok, out, err) = herdctl(f, &args);
    assert!(ok, "herdctl run submit: {err}\n{out}");
    out.trim().to_string()
}

const BENCH_SH: &str = "#!/bin/sh\n# bench.sh WORDS…: what a benchmark tool would measure; here, what it was given\necho \"$*\" >> \"$CAMPAIGN_LOG/$HERD_NODE.log\"\n";

#[tokio::test]
async fn a_campaign_runs_setup_each_variant_and_rep_then_teardown_on_every_node() {
    let f = Fleet::start("cp", &["a", "b", "c"], HB, 30.0).await;
    let log = shared_dir();
    let inputs = shared_dir();
    std::fs::write(inputs.path().join("bench.sh"), BENCH_SH).unwrap();
    std::fs::set_permissions(
        inputs.path().join("bench.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let data = inputs.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("params.txt"), "threads and sizes\n".repeat(1000)).unwrap();
    let toml = r#"
targets = { nodes = ["cp-a", "cp-b", "cp-c"] }
repetitions = 2

[setup]
command = ["sh", "-c", "set -e; mkdir -p $CAMPAIGN_LOG/bin-$HERD_NODE; cp $HERD_INPUT_DIR/bench.sh $CAMPAIGN_LOG/bin-$HERD_NODE/; cd $HERD_INPUT_DIR && sha256sum bench.sh data/params.txt > $CAMPAIGN_LOG/$HERD_NODE.sums; echo setup >> $CAMPAIGN_LOG/$HERD_NODE.log"]
env = { CAMPAIGN_LOG = "@LOG@" }

[[workloads]]
name = "warm"
command = ["sh", "-c", "$CAMPAIGN_LOG/bin-$HERD_NODE/bench.sh warm rep=$HERD_REP"]
env = { CAMPAIGN_LOG = "@LOG@" }

[[workloads]]
name = "mx"
command = ["sh", "-c", "$CAMPAIGN_LOG/bin-$HERD_NODE/bench.sh mx threads={threads} size={size} env=$HERD_PARAM_THREADS/$HERD_PARAM_SIZE rep=$HERD_REP"]
env = { CAMPAIGN_LOG = "@LOG@" }
matrix = { threads = [1, 2], size = ["1G", "4G"] }

[teardown]
command = ["sh", "-c", "echo teardown >> $CAMPAIGN_LOG/$HERD_NODE.log; rm -rf $CAMPAIGN_LOG/bin-$HERD_NODE"]
env = { CAMPAIGN_LOG = "@LOG@" }
"#
    .replace("@LOG@", log.path().to_str().unwrap());
    let bench = inputs.path().join("bench.sh");
    let run = submit_file(
        &f,
        log.path(),
        &toml,
        &[
            "--input",
            bench.to_str().unwrap(),
            "--input",
            data.to_str().unwrap(),
        ],
    );
    let r = wait_state(
        &f,
        &run,
        &[RunState::Completed, RunState::Failed],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(r.state, RunState::Completed, "{:#?}", r.tasks);
    assert_eq!(r.tasks.len(), 3 * (1 + 2 * 5 + 1));
    let mut want = vec!["setup".to_string()];
    want.extend(["warm rep=1", "warm rep=2"].map(String::from));
    for (size, threads) in [("1G", 1), ("1G", 2), ("4G", 1), ("4G", 2)] {
        for rep in 1..=2 {
            want.push(format!(
                "mx threads={threads} size={size} env={threads}/{size} rep={rep}"
            ));
        }
    }
    want.push("teardown".into());
    let sums = std::process::Command::new("sha256sum")
        .args(["bench.sh", "data/params.txt"])
        .current_dir(inputs.path())
        .output()
        .unwrap();
    for node in ["cp-a", "cp-b", "cp-c"] {
        let seen = std::fs::read_to_string(log.path().join(format!("{node}.log"))).unwrap();
        assert_eq!(seen.lines().collect::<Vec<_>>(), want, "{node}");
        let got = std::fs::read(log.path().join(format!("{node}.sums"))).unwrap();
        assert_eq!(
            got, sums.stdout,
            "{node}: the inputs arrived with their digests"
        );
        // Setup ended before the first task began; teardown began after the last ended.
        let tasks: Vec<_> = r
            .tasks
            .iter()
            .filter(|t| t.node_id.as_str() == node)
            .collect();
        let setup = tasks.iter().find(|t| t.phase == TaskPhase::Setup).unwrap();
        let teardown = tasks
            .iter()
            .find(|t| t.phase == TaskPhase::Teardown)
            .unwrap();
        for t in tasks.iter().filter(|t| t.phase == TaskPhase::Workloads) {
            assert!(
                setup.finished_at_ms.unwrap() <= t.started_at_ms.unwrap(),
                "{t:?}"
            );
            assert!(
                t.finished_at_ms.unwrap() <= teardown.started_at_ms.unwrap(),
                "{t:?}"
            );
        }
    }
    let starts = f.running_events(&run).await;
    assert_eq!(starts.len(), r.tasks.len(), "one start per task");
    assert!(starts.values().all(|n| *n == 1), "{starts:?}");
    let (ok, show, _) = herdctl(&f, &["run", "show", &run, "--summary"]);
    assert!(ok && show.contains("mx[size=4G,threads=2]"), "{show}");
    announce(&format!(
        "campaign on 3 nodes: {} tasks (setup, 2 workloads with a 2 × 2 matrix, 2 reps, teardown) completed in order; inputs digest-checked",
        r.tasks.len()
    ));
}

#[tokio::test]
async fn a_setup_failing_on_one_node_skips_its_tasks_and_every_node_tears_down() {
    let f = Fleet::start("cs", &["a", "b", "c"], HB, 30.0).await;
    let log = shared_dir();
    let toml = r#"
targets = { nodes = ["cs-a", "cs-b", "cs-c"] }
repetitions = 2
[setup]
command = ["sh", "-c", "if [ $HERD_NODE = cs-b ]; then echo no compiler >&2; exit 7; fi"]
[[workloads]]
name = "w"
command = ["true"]
[teardown]
command = ["sh", "-c", "echo torn >> @LOG@/$HERD_NODE.teardown"]
"#
    .replace("@LOG@", log.path().to_str().unwrap());
    let run = submit_file(&f, log.path(), &toml, &[]);
    let r = wait_state(
        &f,
        &run,
        &[RunState::Completed, RunState::Failed],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(r.state, RunState::Failed);
    for t in &r.tasks {
        let want = match (t.node_id.as_str(), t.phase) {
            ("cs-b", TaskPhase::Setup) => TaskStatus::Failed,
            ("cs-b", TaskPhase::Workloads) => TaskStatus::Skipped,
            _ => TaskStatus::Completed,
        };
        assert_eq!(t.status, want, "{t:?}");
        if want == TaskStatus::Skipped {
            let why = t.error.as_deref().unwrap_or_default();
            assert!(why.starts_with("setup failed: "), "{t:?}");
        }
    }
    for node in ["cs-a", "cs-b", "cs-c"] {
        let torn = std::fs::read_to_string(log.path().join(format!("{node}.teardown")));
        assert_eq!(torn.unwrap_or_default(), "torn\n", "{node}: teardown once");
    }
}

/// Waits until every node runs a task of `phase`.
async fn every_node_in(f: &Fleet, run: &str, phase: TaskPhase, nodes: usize) {
    eventually(
        Duration::from_secs(20),
        &format!("{phase:?} running everywhere"),
        || async {
            let r = get(f, run).await;
            (r.tasks
                .iter()
                .filter(|t| {
                    t.phase == phase && t.status == TaskStatus::Running && t.started_at_ms.is_some()
                })
                .count()
                == nodes)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn stops_during_setup_and_during_workloads_tear_down_and_leave_nothing() {
    let f = Fleet::start("ct", &["a", "b", "c"], HB, 30.0).await;
    let log = shared_dir();
    let spec = |setup_s: u32| {
        r#"
targets = { nodes = ["ct-a", "ct-b", "ct-c"] }
repetitions = 3
stop_timeout_s = 3.0
[setup]
command = ["sleep", "SETUP"]
[[workloads]]
name = "w"
command = ["sleep", "60"]
[teardown]
command = ["sh", "-c", "echo torn >> LOG/$HERD_RUN_ID.$HERD_NODE"]
"#
        .replace("SETUP", &setup_s.to_string())
        .replace("LOG", log.path().to_str().unwrap())
    };
    for (phase, setup_s) in [(TaskPhase::Setup, 60), (TaskPhase::Workloads, 0)] {
        let run = submit_file(&f, log.path(), &spec(setup_s), &[]);
        every_node_in(&f, &run, phase, 3).await;
        let (ok, out, err) = herdctl(&f, &["run", "stop", &run]);
        assert!(ok, "{err}\n{out}");
        let r = get(&f, &run).await;
        assert_eq!(r.state, RunState::Stopped, "{:#?}", r.tasks);
        for node in ["ct-a", "ct-b", "ct-c"] {
            let torn = std::fs::read_to_string(log.path().join(format!("{run}.{node}")));
            assert_eq!(torn.unwrap_or_default(), "torn\n", "{node}");
        }
        for t in &r.tasks {
            let want = match t.phase {
                TaskPhase::Teardown => TaskStatus::Completed,
                p if p == phase && t.rep == 1 => TaskStatus::Stopped,
                TaskPhase::Setup => TaskStatus::Completed,
                _ => TaskStatus::Skipped,
            };
            assert_eq!(t.status, want, "stop during {phase:?}: {t:?}");
        }
        f.nothing_left(&run).await;
        announce(&format!(
            "stop during {phase:?}: stopped, teardown ran on 3 nodes"
        ));
    }
    // One node frozen: the others tear down, the verdict names exactly that node.
    let run = submit_file(&f, log.path(), &spec(0), &[]);
    every_node_in(&f, &run, TaskPhase::Workloads, 3).await;
    f.agents[1].signal(Signal::SIGSTOP);
    let (_, out, _) = herdctl(&f, &["run", "stop", &run]);
    let r = wait_state(
        &f,
        &run,
        &[RunState::StopFailed, RunState::Stopped],
        Duration::from_secs(15),
    )
    .await;
    f.agents[1].signal(Signal::SIGCONT);
    assert_eq!(r.state, RunState::StopFailed, "{out}");
    let names: Vec<String> = r.unconfirmed_nodes.iter().map(|n| n.to_string()).collect();
    assert_eq!(names, ["ct-b"]);
    for node in ["ct-a", "ct-c"] {
        let torn = std::fs::read_to_string(log.path().join(format!("{run}.{node}")));
        assert_eq!(torn.unwrap_or_default(), "torn\n", "{node}");
    }
    eventually(
        Duration::from_secs(10),
        "ct-b stopped its task once thawed",
        || async {
            let v = f
                .call(
                    "herd.v1.node.ct-b.workload.list",
                    json!({"run_id": run, "state": "running"}),
                )
                .await;
            (v["data"]["workloads"].as_array().map(|w| w.len()) == Some(0)).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn run_retry_reruns_exactly_the_task_that_failed() {
    let f = Fleet::start("cr", &["a", "b"], HB, 30.0).await;
    let log = shared_dir();
    // Fails on its first attempt of rep 2 on cr-a only.
    let toml = r#"
targets = { nodes = ["cr-a", "cr-b"] }
repetitions = 3
[[workloads]]
name = "w"
command = ["sh", "-c", "if [ $HERD_NODE = cr-a ] && [ $HERD_REP = 2 ] && [ ! -e @LOG@/failed ]; then touch @LOG@/failed; exit 4; fi"]
"#
    .replace("@LOG@", log.path().to_str().unwrap());
    let run = submit_file(&f, log.path(), &toml, &[]);
    let r = wait_state(
        &f,
        &run,
        &[RunState::Completed, RunState::Failed],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.state, RunState::Failed);
    let before = f.running_events(&run).await;
    assert_eq!(before.len(), 6);
    let (ok, out, err) = herdctl(&f, &["run", "retry", &run]);
    assert!(ok, "{err}\n{out}");
    assert!(err.contains("1 task(s) to run again: cr-a::w::2"), "{err}");
    let r = wait_state(
        &f,
        &run,
        &[RunState::Completed, RunState::Failed],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.state, RunState::Completed, "{:#?}", r.tasks);
    let t = r.tasks.iter().find(|t| t.task_id == "cr-a::w::2").unwrap();
    assert_eq!(t.attempt, 2);
    assert_eq!(t.attempts.len(), 1);
    assert_eq!(
        (t.attempts[0].status, t.attempts[0].exit_code),
        (TaskStatus::Failed, Some(4))
    );
    let after = f.running_events(&run).await;
    assert_eq!(after.len(), 7, "exactly one new start");
    assert!(after.values().all(|n| *n == 1));
    assert_eq!(
        after.get(t.workload_id.as_ref().unwrap().as_str()),
        Some(&1)
    );
    let (_, show, _) = herdctl(&f, &["run", "show", &run]);
    assert!(show.contains("COMPLETED (attempt 2)"), "{show}");
    let (ok, _, err) = herdctl(&f, &["run", "retry", &run]);
    assert!(!ok && err.contains("no task to retry"), "{err}");
    // The same run id with another spec: a conflict naming what differs.
    let mut spec = serde_json::to_value(&r.spec).unwrap();
    spec["repetitions"] = json!(4);
    spec["workloads"][0]["retries"] = json!(1);
    let v = f.cluster("run.submit", spec).await;
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.ends_with("a different spec: repetitions, workloads.w.retries differ"),
        "{v}"
    );
}

#[tokio::test]
async fn bad_run_files_are_refused_naming_the_problem_and_nothing_starts_or_uploads() {
    let f = Fleet::start("cb", &["a"], HB, 30.0).await;
    let dir = shared_dir();
    let script = dir.path().join("x.sh");
    std::fs::write(&script, "true\n").unwrap();
    let base = "targets = { nodes = [\"cb-a\"] }\nrepetitions = 1\n";
    let cases: [(&str, &str, &str); 6] = [
        ("[setpu]\ncommand = [\"true\"]\n[[workloads]]\nname = \"w\"\ncommand = [\"true\"]\n", "", "unknown key setpu"),
        ("[[workloads]]\nname = \"w\"\ncommand = [\"true\"]\nmatrix = { threads = [] }\n", "", "workloads.w.matrix.threads: an axis needs at least one value"),
        ("[[workloads]]\nname = \"w\"\ncommand = [\"true\"]\n[[workloads]]\nname = \"w\"\ncommand = [\"true\"]\n", "", "workloads[1].name: 'w' is used twice"),
        ("[[workloads]]\nname = \"w\"\ncommand = [\"echo\", \"{size}\"]\nmatrix = { threads = [1] }\n", "", "placeholder {size} names no matrix axis"),
        ("[[workloads]]\nname = \"w\"\ncommand = [\"true\"]\n", "/does/not/exist", "/does/not/exist"),
        ("[teardown]\ncomand = [\"true\"]\n[[workloads]]\nname = \"w\"\ncommand = [\"true\"]\n", "", "unknown key teardown.comand"),
    ];
    for (body, missing_input, want) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, format!("{base}{body}")).unwrap();
        let mut args = vec![
            "run",
            "submit",
            "--file",
            file.to_str().unwrap(),
            "--input",
            script.to_str().unwrap(),
        ];
        if !missing_input.is_empty() {
            args.extend(["--input", missing_input]);
        }
        let (ok, out, err) = herdctl(&f, &args);
        assert!(!ok, "{body}: {out}");
        assert!(err.contains(want), "{body}: {err}");
    }
    let runs = f.cluster("run.list", json!({})).await;
    assert_eq!(
        runs["data"]["runs"].as_array().map(|r| r.len()),
        Some(0),
        "{runs}"
    );
    // Nothing was uploaded: the inputs bucket holds no object (or does not exist).
    let js = async_nats::jetstream::new(f.client.clone());
    if let Ok(mut s) = js.get_stream(herd_bus::INPUTS_STREAM).await {
        assert_eq!(s.info().await.unwrap().state.messages, 0);
    }
}
