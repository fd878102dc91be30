//! A run's statistics and two runs compared, end to end: tasks on a real herdd write
//! `metrics.json` into their output directory, the node uploads it, the coordinator folds the
//! metrics into the run's summary, and `cluster.run.compare` (and `herdctl run compare`) tells a
//! metric twice as high from the same command run again.
//!
//! The metrics reach the journal through the node's results upload; without it the first test
//! fails saying so, within a bound, rather than hanging.

use herd_bus::{RunComparison, RunRecord, RunState, RunStats, TaskStatus};
use herd_tests::{eventually, Fleet};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HB: f64 = 0.5;
const REPS: u32 = 5;

/// Each repetition reports `ops` = SCALE × (1000 + 10 × rep), plus 0–2 from the shell's pid so
/// that no two runs are alike to the digit: a run with SCALE 2 does twice the work.
const BENCH: &str = r#"echo "{\"ops\": $((SCALE * (1000 + 10 * HERD_REP) + $$ % 3))}" > "$HERD_OUTPUT_DIR/metrics.json""#;

async fn submit(f: &Fleet, spec: Value) -> String {
    let v = f.cluster("run.submit", spec.clone()).await;
    assert_eq!(v["ok"], true, "{spec} → {v}");
    v["data"]["run_id"].as_str().unwrap().to_string()
}

/// Five repetitions of [`BENCH`] on node `cmp-a` at `scale`.
async fn bench(f: &Fleet, id: &str, scale: u32) -> String {
    submit(
        f,
        json!({
            "run_id": id,
            "workload": {"name": "bench", "command": ["sh", "-c", BENCH], "env": {"SCALE": scale.to_string()}},
            "targets": {"nodes": [f.agents[0].node_id]},
            "repetitions": REPS
        }),
    )
    .await
}

async fn completed(f: &Fleet, run: &str) -> RunRecord {
    let r = eventually(
        Duration::from_secs(60),
        &format!("run {run} to settle"),
        || async {
            let v = f.cluster("run.get", json!({"run_id": run})).await;
            let r: RunRecord = serde_json::from_value(v["data"].clone()).ok()?;
            matches!(r.state, RunState::Completed | RunState::Failed).then_some(r)
        },
    )
    .await;
    assert_eq!(r.state, RunState::Completed, "{:#?}", r.tasks);
    assert!(r.tasks.iter().all(|t| t.status == TaskStatus::Completed));
    r
}

async fn summary(f: &Fleet, run: &str) -> RunStats {
    let v = f.cluster("run.summary", json!({"run_id": run})).await;
    serde_json::from_value(v["data"].clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// The run's summary once every repetition's `ops` is in; a clear failure after 30 s.
async fn with_metrics(f: &Fleet, run: &str) -> RunStats {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = summary(f, run).await;
        let n = s
            .groups
            .first()
            .and_then(|g| g.metrics.get("ops"))
            .map(|m| m.n);
        if n == Some(REPS) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "run {run}: the tasks' metrics.json never reached the run's summary within 30 s \
             ({n:?} of {REPS} values of ops). They travel through the node's results upload \
             (ResultsEvent → the journal's results). Summary: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn compare(f: &Fleet, a: &str, b: &str) -> RunComparison {
    let v = f
        .cluster("run.compare", json!({"run_a": a, "run_b": b}))
        .await;
    serde_json::from_value(v["data"].clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

async fn herdctl(f: &Fleet, args: &[&str]) -> String {
    herd_tests::herdctl(&f.nats.url(), args).await.0
}

#[tokio::test]
async fn a_metric_twice_as_high_is_significant_and_the_same_command_again_is_not() {
    let f = Fleet::start("cmp", &["a"], HB, 30.0).await;
    let (base, double, again) = (
        bench(&f, "cmp-base", 1).await,
        bench(&f, "cmp-double", 2).await,
        bench(&f, "cmp-again", 1).await,
    );
    for run in [&base, &double, &again] {
        completed(&f, run).await;
    }
    let stats = with_metrics(&f, &base).await;
    let ops = &stats.groups[0].metrics["ops"];
    assert_eq!(stats.groups.len(), 1, "one node: one group");
    assert_eq!(stats.groups[0].workload, "bench");
    assert!(ops.min >= 1010.0 && ops.max <= 1052.0, "{ops:?}");
    assert_eq!(stats.groups[0].resources["duration_s"].n, REPS);
    with_metrics(&f, &double).await;
    with_metrics(&f, &again).await;

    let c = compare(&f, &base, &double).await;
    let row = c.rows.iter().find(|r| r.metric == "ops").unwrap();
    assert!(row.significant, "{row:#?}");
    assert_eq!(row.test, "welch_t");
    let p = row.p_value.unwrap();
    assert!(p < 0.001, "{row:#?}");
    assert!((row.change.unwrap() - 1.0).abs() < 0.01, "{row:#?}");

    let c = compare(&f, &base, &again).await;
    let row = c.rows.iter().find(|r| r.metric == "ops").unwrap();
    assert!(!row.significant, "{row:#?}");
    assert!(row.p_value.unwrap() > 0.5, "{row:#?}");

    // The same through herdctl: a table, CSV and JSON.
    let table = herdctl(&f, &["run", "compare", &base, &double]).await;
    let line = table
        .lines()
        .find(|l| l.contains(" ops "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.trim_end().ends_with("yes"), "{table}");
    let change: f64 = line
        .split_whitespace()
        .find_map(|c| c.strip_prefix('+')?.strip_suffix('%')?.parse().ok())
        .unwrap_or_else(|| panic!("no change in {line}"));
    assert!((95.0..=105.0).contains(&change), "about +100 %: {table}");
    let csv = herdctl(&f, &["run", "compare", &base, &again, "--csv"]).await;
    let ops_csv = csv
        .lines()
        .find(|l| l.contains(",metric,ops,"))
        .unwrap_or_else(|| panic!("{csv}"));
    assert!(ops_csv.contains(",false,welch_t,"), "{csv}");
    let json = herdctl(&f, &["--json", "run", "compare", &base, &double]).await;
    let parsed: RunComparison = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.run_b.as_str(), double);
    let shown = herdctl(&f, &["run", "show", &base, "--summary"]).await;
    assert!(shown.contains("bench     all   ops"), "{shown}");
}

#[tokio::test]
async fn summaries_and_comparisons_of_durations_and_bad_requests() {
    let f = Fleet::start("cmd", &["a"], HB, 30.0).await;
    let node = f.agents[0].node_id.clone();
    let sleeps = |id: &str, secs: &str| {
        json!({
            "run_id": id,
            "workload": {"name": "nap", "command": ["sleep", secs]},
            "targets": {"nodes": [node]},
            "repetitions": REPS
        })
    };
    let long = submit(&f, sleeps("cmd-long", "0.8")).await;
    let short = submit(&f, sleeps("cmd-short", "0.05")).await;
    completed(&f, &long).await;
    completed(&f, &short).await;

    // Durations are measured without any upload: the coordinator has them from the events.
    let s = summary(&f, &long).await;
    let d = &s.groups[0].resources["duration_s"];
    assert_eq!((s.groups[0].completed, d.n), (REPS, REPS));
    assert!(d.min >= 0.7 && d.max < 10.0, "{d:?}");
    let c = compare(&f, &short, &long).await;
    let row = c.rows.iter().find(|r| r.metric == "duration_s").unwrap();
    assert!(row.significant && row.change.unwrap() > 3.0, "{row:#?}");
    let itself = compare(&f, &long, &long).await;
    assert!(itself
        .rows
        .iter()
        .all(|r| !r.significant && r.p_value == Some(1.0)));

    // herdctl prints the same: the summary, the comparison as a table and as CSV.
    let shown = herdctl(&f, &["run", "show", &long, "--summary"]).await;
    let line = shown
        .lines()
        .find(|l| l.starts_with("nap ") && l.contains(" duration_s "))
        .unwrap_or_else(|| panic!("{shown}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[..4], ["nap", "all", "duration_s", "5"], "{shown}");
    let table = herdctl(&f, &["run", "compare", &short, &long]).await;
    let line = table
        .lines()
        .find(|l| l.contains(" duration_s "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.trim_end().ends_with("yes"), "{table}");
    let csv = herdctl(&f, &["run", "compare", &long, &long, "--csv"]).await;
    assert!(
        csv.lines()
            .any(|l| l.contains(",resource,duration_s,5,") && l.contains(",1,false,welch_t,")),
        "{csv}"
    );

    for (verb, body, code) in [
        ("run.summary", json!({"run_id": "nope"}), "not_found"),
        ("run.summary", json!({}), "bad_request"),
        (
            "run.compare",
            json!({"run_a": long, "run_b": "nope"}),
            "not_found",
        ),
        (
            "run.compare",
            json!({"run_a": long, "run_b": short, "alpha": 2}),
            "bad_request",
        ),
        ("run.compare", json!({"run_a": long}), "bad_request"),
    ] {
        let v = f.cluster(verb, body.clone()).await;
        assert_eq!(v["error"]["code"], code, "{verb} {body} → {v}");
    }
    let v = f
        .cluster(
            "run.compare",
            json!({"run_a": long, "run_b": short, "alpha": 0}),
        )
        .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("alpha:"),
        "{v}"
    );
}
