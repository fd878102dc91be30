//! What a workload writes is kept in NATS (the node's stream HERD_LOGS_<node>) and read with
//! `herdctl` as an operator would: `logs` prints the whole history in order after the workload
//! ended, after herdd restarted and with the node SIGKILLed, and follows a running one to its
//! end; `run --attach` prints the output live and exits with the workload's code (its own, or
//! herd's documented ones for oom_killed, timed_out, failed); Ctrl-C stops the workload and
//! still waits for its code; lines past the rate cap are a marker line, never silence.

use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{LogChunk, LogStream, WorkloadState};
use herd_tests::{
    announce, connect, node_call, state_dir, wait_for_node, wait_workload_event, workspace_bin,
    Herdd, HerddOptions, NatsServer,
};
use serde_json::json;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// herd's cgroup root for this test binary, apart from a real installation's.
fn root() -> String {
    format!("herdtest-logs-{}", std::process::id())
}

fn start_herdd(nats: &NatsServer, node: &str, state: &Path, logs: &str) -> Herdd {
    let config = format!(
        "[cgroup]\nroot = \"{}\"\n[shutdown]\nworkload_grace_cap_s = 2.0\n[logs]\n{logs}\n",
        root()
    );
    Herdd::start_with(HerddOptions {
        state_dir: Some(state),
        config_toml: Some(&config),
        ..HerddOptions::new(node, nats.url())
    })
}

/// A node with a rate cap of `lines_per_s`, its NATS server and a client. Fields drop in
/// order: herdd stops while NATS still answers, and the cgroup root goes last.
struct Node {
    herdd: Herdd,
    nats: NatsServer,
    client: async_nats::Client,
    id: &'static str,
    state: tempfile::TempDir,
    _root: CgroupRoot,
}

/// Removes this binary's cgroup root once empty: the last node of the binary to stop removes
/// it, even when a test SIGKILLed its herdd.
struct CgroupRoot;

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(hierarchy.path().join(root()));
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(root()));
    }
}

async fn node(id: &'static str, lines_per_s: u32) -> Node {
    let nats = NatsServer::start();
    let state = state_dir();
    let herdd = start_herdd(
        &nats,
        id,
        state.path(),
        &format!("max_lines_per_s = {lines_per_s}"),
    );
    let client = connect(&nats.url()).await;
    wait_for_node(&client, id).await;
    Node {
        herdd,
        nats,
        client,
        id,
        state,
        _root: CgroupRoot,
    }
}

/// `herdctl --nats-url URL ARGS...`, as an operator types it.
async fn herdctl(nats: &NatsServer, args: &[&str]) -> Output {
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(workspace_bin("herdctl"))
            .arg("--nats-url")
            .arg(nats.url())
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("herdctl {args:?} did not end within 60 s"))
    .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn numbers(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

/// Asserts that `herdctl logs --no-follow` prints exactly 1..=10000 on stdout.
async fn history_is_complete(n: &Node, when: &str) {
    let out = herdctl(&n.nats, &["logs", n.id, "big", "--no-follow"]).await;
    assert!(out.status.success(), "{when}: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text == numbers(10_000),
        "{when}: {} lines, first {:?}, last {:?}",
        text.lines().count(),
        text.lines().next(),
        text.lines().last()
    );
}

#[tokio::test]
async fn ten_thousand_lines_are_kept_in_order_after_the_end_a_restart_and_a_sigkilled_node() {
    let mut n = node("logkeeper", 100_000).await;
    let mut events = n
        .client
        .subscribe(format!("herd.v1.evt.{}.workload.*", n.id))
        .await
        .unwrap();
    n.client.flush().await.unwrap();
    let started = herdctl(
        &n.nats,
        &[
            "run",
            n.id,
            "--id",
            "big",
            "--",
            "sh",
            "-c",
            "echo on-stderr >&2; sleep 0.5; seq 1 10000",
        ],
    )
    .await;
    assert!(started.status.success(), "{}", stderr(&started));
    wait_workload_event(
        &mut events,
        "big",
        &[WorkloadState::Exited],
        Duration::from_secs(30),
    )
    .await;

    // Following an ended workload prints its whole output and ends by itself.
    let out = herdctl(&n.nats, &["logs", "-f", n.id, "big"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out) == numbers(10_000),
        "{} lines",
        stdout(&out).lines().count()
    );
    assert_eq!(stderr(&out), "on-stderr\n", "stderr lines go to stderr");
    history_is_complete(&n, "after the workload ended").await;

    // The last lines of both streams together: the stderr line came long before them.
    let out = herdctl(
        &n.nats,
        &["logs", n.id, "big", "--no-follow", "--tail", "3"],
    )
    .await;
    assert_eq!(stdout(&out), "9998\n9999\n10000\n");
    assert_eq!(stderr(&out), "");
    let out = herdctl(
        &n.nats,
        &["logs", n.id, "big", "--no-follow", "--stream", "stderr"],
    )
    .await;
    assert_eq!(
        (stdout(&out).as_str(), stderr(&out).as_str()),
        ("", "on-stderr\n")
    );
    let out = herdctl(
        &n.nats,
        &["logs", n.id, "big", "--no-follow", "--since", "1h"],
    )
    .await;
    assert_eq!(stdout(&out).lines().count(), 10_000);

    // herdd restarted, with other limits: the history stays, the stream takes the new ones.
    assert!(n.herdd.terminate(Duration::from_secs(15)).is_some());
    n.herdd = start_herdd(
        &n.nats,
        n.id,
        n.state.path(),
        "max_lines_per_s = 100000\nmax_age_s = 7200\nmax_bytes = 67108864",
    );
    wait_for_node(&n.client, n.id).await;
    let js = async_nats::jetstream::new(n.client.clone());
    let limits = herd_tests::eventually(
        Duration::from_secs(10),
        "the new limits on HERD_LOGS_logkeeper",
        || async {
            let mut stream = js.get_stream("HERD_LOGS_logkeeper").await.ok()?;
            let config = stream.info().await.ok()?.config.clone();
            (config.max_age == Duration::from_secs(7200)).then_some(config)
        },
    )
    .await;
    assert_eq!(limits.max_bytes, 64 << 20);
    assert_eq!(limits.subjects, ["herd.v1.logs.logkeeper.>"]);
    history_is_complete(&n, "after herdd restarted").await;

    // The node is gone: the history is in NATS, not on the node.
    n.herdd.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(n.herdd.wait_exit(Duration::from_secs(10)).is_some());
    history_is_complete(&n, "with herdd SIGKILLed").await;
    let out = herdctl(&n.nats, &["logs", n.id, "big"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 10_000);
    assert!(stderr(&out).contains("does not answer"), "{}", stderr(&out));
    // A workload of which nothing is kept is an error, not an empty success.
    let out = herdctl(&n.nats, &["logs", n.id, "never-ran", "--no-follow"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no log history of never-ran"),
        "{}",
        stderr(&out)
    );
    announce("logs: 10000 lines in order from HERD_LOGS after the end, a restart and a SIGKILL");
}

#[tokio::test]
async fn logs_follows_a_running_workload_until_it_ends() {
    let n = node("logfollower", 1000).await;
    let reply = node_call(
        &n.client,
        n.id,
        "workload.start",
        json!({"workload_id": "slow", "command": ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done; exit 2"]}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let out = herdctl(&n.nats, &["logs", n.id, "slow"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "line 1\nline 2\nline 3\nline 4\nline 5\n",
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn attach_prints_the_output_and_exits_with_the_workloads_code() {
    let n = node("attacher", 1000).await;
    let out = herdctl(
        &n.nats,
        &["run", n.id, "--attach", "--", "sh", "-c", "echo hi; exit 3"],
    )
    .await;
    assert_eq!(stdout(&out), "hi\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    let out = herdctl(
        &n.nats,
        &["run", n.id, "-a", "--", "sh", "-c", "echo oops >&2"],
    )
    .await;
    assert_eq!(
        (stdout(&out).as_str(), stderr(&out).as_str()),
        ("", "oops\n")
    );
    assert_eq!(out.status.code(), Some(0));

    // Under a restart policy, attach follows every attempt and ends with the last.
    let out = herdctl(
        &n.nats,
        &[
            "run",
            n.id,
            "-a",
            "--restart",
            "1",
            "--",
            "sh",
            "-c",
            "echo try; exit 1",
        ],
    )
    .await;
    assert_eq!(stdout(&out), "try\ntry\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1));

    // Killed by a signal: 128 + N, as a shell says it.
    let out = herdctl(
        &n.nats,
        &["run", n.id, "-a", "--", "sh", "-c", "kill -SEGV $$"],
    )
    .await;
    assert_eq!(out.status.code(), Some(128 + 11), "{}", stderr(&out));
}

#[tokio::test]
async fn attached_oom_timed_out_and_unstartable_workloads_exit_with_their_documented_codes() {
    let n = node("attachends", 1000).await;
    // tail keeps the whole "line" of /dev/zero in memory: it grows until the limit.
    let oom = herdctl(
        &n.nats,
        &[
            "run",
            n.id,
            "-a",
            "--memory",
            "64M",
            "--",
            "tail",
            "/dev/zero",
        ],
    )
    .await;
    assert_eq!(oom.status.code(), Some(250), "oom_killed: {}", stderr(&oom));
    let timed_out = herdctl(
        &n.nats,
        &[
            "run",
            n.id,
            "-a",
            "--timeout",
            "1",
            "--grace",
            "1",
            "--",
            "sleep",
            "30",
        ],
    )
    .await;
    assert_eq!(
        timed_out.status.code(),
        Some(124),
        "timed_out: {}",
        stderr(&timed_out)
    );
    let failed = herdctl(&n.nats, &["run", n.id, "-a", "--", "/no/such/command"]).await;
    assert_eq!(failed.status.code(), Some(125), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("/no/such/command"),
        "{}",
        stderr(&failed)
    );
    let help = herdctl(&n.nats, &["run", "--help"]).await;
    for documented in ["124", "125", "128+N", "250", "255"] {
        assert!(stdout(&help).contains(documented), "{}", stdout(&help));
    }
}

#[tokio::test]
async fn ctrl_c_during_attach_stops_the_workload_and_exits_with_its_final_code() {
    let n = node("interrupter", 1000).await;
    let mut herdctl = tokio::process::Command::new(workspace_bin("herdctl"))
        .arg("--nats-url")
        .arg(n.nats.url())
        .args([
            "run", n.id, "--attach", "--id", "trapper", "--grace", "10", "--",
        ])
        .args([
            "sh",
            "-c",
            "trap 'echo stopping; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(herdctl.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the workload's first line within 20 s")
        .unwrap();
    assert_eq!(first.as_deref(), Some("ready"));
    herd_tests::signal(herdctl.id().unwrap(), nix::sys::signal::Signal::SIGINT);
    let rest = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("more output after Ctrl-C")
        .unwrap();
    assert_eq!(
        rest.as_deref(),
        Some("stopping"),
        "its trap ran: SIGTERM was sent"
    );
    let status = tokio::time::timeout(Duration::from_secs(20), herdctl.wait())
        .await
        .expect("herdctl ends once the workload stopped")
        .unwrap();
    assert_eq!(status.code(), Some(7), "the workload's own final code");
    let got = node_call(
        &n.client,
        n.id,
        "workload.get",
        json!({"workload_id": "trapper"}),
    )
    .await;
    assert_eq!(got["data"]["state"], "stopped", "{got}");
}

#[tokio::test]
async fn lines_past_the_rate_cap_are_a_marker_line_live_and_in_the_history() {
    let n = node("capped", 100).await;
    let mut chunks = n
        .client
        .subscribe(format!("herd.v1.logs.{}.burst.stdout", n.id))
        .await
        .unwrap();
    n.client.flush().await.unwrap();
    let live = herdctl(
        &n.nats,
        &["run", n.id, "-a", "--id", "burst", "--", "seq", "1", "1000"],
    )
    .await;
    assert_eq!(live.status.code(), Some(0), "{}", stderr(&live));
    let text = stdout(&live);
    let marker = dropped_by_markers(&text);
    let kept = text.lines().filter(|l| !l.starts_with("[herd:")).count() as u64;
    assert!(marker > 0, "a marker line says lines were dropped:\n{text}");
    assert_eq!(
        kept + marker,
        1000,
        "every line is printed or counted:\n{text}"
    );
    // The chunks on the wire say the same.
    let mut wire_dropped = 0;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), chunks.next())
            .await
            .expect("the chunks up to the end of the output")
            .unwrap();
        let chunk: LogChunk =
            codec::decode(&msg.payload, Encoding::MsgPack, &DecodeLimits::default()).unwrap();
        assert_eq!(chunk.stream, LogStream::Stdout);
        wire_dropped += chunk.dropped;
        if chunk.eof {
            break;
        }
    }
    assert_eq!(wire_dropped, marker);
    let history = herdctl(&n.nats, &["logs", n.id, "burst", "--no-follow"]).await;
    assert_eq!(
        stdout(&history),
        text,
        "the history prints what was printed live"
    );
}

/// The lines the markers of `text` say were dropped, all together.
fn dropped_by_markers(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            l.strip_prefix("[herd: ")?
                .strip_suffix(" lines dropped by the rate cap]")?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
