//! Summaries and comparisons of journals made by hand: five repetitions each, metrics from
//! `metrics.json`, resources from the nodes.

use super::*;
use herd_bus::{fixtures, ResourceSummary, RunId, RunState, TaskResults};

fn task(node: &str, name: &str, rep: u32, metrics: &[(&str, f64)]) -> TaskRecord {
    TaskRecord {
        task_id: format!("{node}::{name}::{rep}"),
        node_id: NodeId::new(node).unwrap(),
        rep,
        status: TaskStatus::Completed,
        workload: None,
        phase: Default::default(),
        attempt: 1,
        attempts: vec![],
        duration_s: Some(1.0 + f64::from(rep) / 10.0),
        resources: Some(ResourceSummary {
            cpu_user_s: 0.5,
            cpu_system_s: 0.25,
            memory_peak_bytes: Some(1 << 20),
            io_write_bytes: 4096,
            ..Default::default()
        }),
        results: Some(TaskResults {
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        }),
        ..fixtures::task_record()
    }
}

fn run(id: &str, tasks: Vec<TaskRecord>) -> RunRecord {
    RunRecord {
        run_id: RunId::new(id).unwrap(),
        state: RunState::Completed,
        spec: fixtures::run_spec(),
        created_at_ms: 0,
        updated_at_ms: 0,
        tasks,
        unconfirmed_nodes: vec![],
        queued_reason: None,
    }
}

/// Five repetitions on node `a` of workload `bench`, reporting `ops` as given.
fn bench(id: &str, ops: [f64; 5]) -> RunRecord {
    let tasks = (1..=5)
        .map(|rep| task("a", "bench", rep, &[("ops", ops[rep as usize - 1])]))
        .collect();
    run(id, tasks)
}

fn row<'a>(c: &'a RunComparison, metric: &str) -> &'a MetricComparison {
    c.rows
        .iter()
        .find(|r| r.metric == metric)
        .unwrap_or_else(|| panic!("no row {metric}: {c:?}"))
}

#[test]
fn a_metric_twice_as_high_is_significant_and_the_same_command_is_not() {
    let a = run_stats(&bench("a", [1000.0, 1012.0, 996.0, 1005.0, 990.0]));
    let b = run_stats(&bench("b", [2010.0, 1985.0, 2002.0, 1999.0, 2020.0]));
    let c = compare(&a, &b, 0.05);
    assert_eq!(
        (c.run_a.as_str(), c.run_b.as_str(), c.alpha),
        ("a", "b", 0.05)
    );
    let ops = row(&c, "ops");
    assert_eq!(
        (ops.workload.as_str(), ops.kind),
        ("bench", FigureKind::Metric)
    );
    assert!(ops.significant, "{ops:?}");
    assert_eq!(ops.test, "welch_t");
    assert!(ops.p_value.unwrap() < 1e-6, "{ops:?}");
    assert!((ops.change.unwrap() - 1.0).abs() < 0.01, "{ops:?}");
    assert_eq!(
        (ops.a.as_ref().unwrap().n, ops.b.as_ref().unwrap().n),
        (5, 5)
    );

    // The same values in another order: a run of the same command.
    let again = run_stats(&bench("c", [996.0, 1005.0, 1000.0, 990.0, 1012.0]));
    let c = compare(&a, &again, 0.05);
    let ops = row(&c, "ops");
    assert!(!ops.significant, "{ops:?}");
    assert_eq!((ops.p_value, ops.change), (Some(1.0), Some(0.0)));
    // Noise of the same size around the same mean: not significant either.
    let noisy = run_stats(&bench("d", [1003.0, 995.0, 1009.0, 992.0, 1001.0]));
    let ops = compare(&a, &noisy, 0.05).rows.remove(0);
    assert!(ops.p_value.unwrap() > 0.5 && !ops.significant, "{ops:?}");
    // Resources are compared too, after the metrics.
    let kinds: Vec<(FigureKind, &str)> =
        c.rows.iter().map(|r| (r.kind, r.metric.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (FigureKind::Metric, "ops"),
            (FigureKind::Resource, "cpu_s"),
            (FigureKind::Resource, "duration_s"),
            (FigureKind::Resource, "io_read_bytes"),
            (FigureKind::Resource, "io_write_bytes"),
            (FigureKind::Resource, "memory_peak_bytes"),
        ]
    );
    let cpu = row(&c, "cpu_s");
    assert_eq!((cpu.p_value, cpu.significant), (Some(1.0), false));
    assert!(cpu.note.as_ref().unwrap().contains("same value"), "{cpu:?}");
}

#[test]
fn alpha_decides_what_is_significant() {
    let a = run_stats(&bench("a", [10.0, 12.0, 11.0, 9.0, 13.0]));
    let b = run_stats(&bench("b", [12.0, 14.0, 13.0, 11.0, 15.0]));
    let p = row(&compare(&a, &b, 0.05), "ops").p_value.unwrap();
    assert!(p > 0.01 && p < 0.1, "{p}");
    assert!(row(&compare(&a, &b, 0.1), "ops").significant);
    assert!(!row(&compare(&a, &b, 0.01), "ops").significant);
    assert_eq!(significance_level(None), Ok(0.05));
    assert_eq!(significance_level(Some(0.01)), Ok(0.01));
    for bad in [0.0, 1.0, -0.5, 2.0, f64::NAN] {
        let e = significance_level(Some(bad)).unwrap_err();
        assert!(e.starts_with("alpha:"), "{e}");
    }
}

#[test]
fn constant_figures_without_variance_and_single_values_are_explained() {
    let a = run_stats(&bench("a", [5.0; 5]));
    let b = run_stats(&bench("b", [6.0; 5]));
    let ops = row(&compare(&a, &b, 0.05), "ops").clone();
    assert_eq!((ops.p_value, ops.significant), (Some(0.0), true));
    assert!(ops.note.unwrap().contains("no variance"));

    let one = run_stats(&run("one", vec![task("a", "bench", 1, &[("ops", 5.0)])]));
    let ops = row(&compare(&one, &b, 0.05), "ops").clone();
    assert_eq!(
        (ops.p_value, ops.significant, ops.test.as_str()),
        (None, false, "none")
    );
    assert!(ops.note.unwrap().contains("A has 1, B has 5"));
}

#[test]
fn a_figure_of_one_run_only_is_shown_without_a_test() {
    let a = run_stats(&bench("a", [1.0, 2.0, 3.0, 4.0, 5.0]));
    let mut b = bench("b", [1.0, 2.0, 3.0, 4.0, 5.0]);
    for t in &mut b.tasks {
        let m = &mut t.results.as_mut().unwrap().metrics;
        m.insert("latency_ms".into(), 3.0);
    }
    let c = compare(&a, &run_stats(&b), 0.05);
    let latency = row(&c, "latency_ms");
    assert_eq!(
        (latency.a.is_none(), latency.b.as_ref().unwrap().n),
        (true, 5)
    );
    assert_eq!((latency.p_value, latency.significant), (None, false));
    assert_eq!(latency.note.as_deref(), Some("only in run B"));
}

#[test]
fn a_summary_groups_across_nodes_then_per_node_over_completed_tasks() {
    let mut tasks = Vec::new();
    for node in ["n1", "n2"] {
        for rep in 1..=3 {
            let ops = if node == "n1" { 100.0 } else { 200.0 } + f64::from(rep);
            tasks.push(task(node, "bench", rep, &[("ops", ops)]));
        }
    }
    tasks[2].status = TaskStatus::Failed; // n1's third: left out
    tasks[4].results.as_mut().unwrap().metrics_error = Some("expected an object".into());
    tasks[5].results = None; // n2's third: its upload has not come
    let s = run_stats(&run("r", tasks));
    let shape: Vec<(Option<&str>, u32, u32)> = s
        .groups
        .iter()
        .map(|g| {
            (
                g.node_id.as_ref().map(|n| n.as_str()),
                g.completed,
                g.left_out,
            )
        })
        .collect();
    assert_eq!(
        shape,
        [(None, 5, 1), (Some("n1"), 2, 1), (Some("n2"), 3, 0)]
    );
    assert!(s.groups.iter().all(|g| g.workload == "bench"));

    let across = &s.groups[0];
    let ops = &across.metrics["ops"];
    assert_eq!(
        ops.values,
        [101.0, 102.0, 201.0, 202.0],
        "node by node, in rep order"
    );
    assert_eq!(
        (ops.n, ops.min, ops.max, ops.median),
        (4, 101.0, 202.0, 151.5)
    );
    assert_eq!(s.groups[1].metrics["ops"].mean, 101.5);
    assert_eq!(s.groups[2].metrics["ops"].n, 2);
    assert_eq!(across.resources["cpu_s"].mean, 0.75);
    assert_eq!(across.resources["memory_peak_bytes"].max, 1048576.0);
    assert_eq!(across.resources["duration_s"].n, 5);
    assert!(
        !across.resources.contains_key("cpu_mean_pct"),
        "never measured"
    );
    assert_eq!(
        across.notes,
        [
            "n2::bench::2: metrics.json: expected an object",
            "1 of 5 completed tasks have no uploaded results (yet)"
        ]
    );
    assert_eq!(s.groups[2].notes.len(), 2);
    assert!(s.groups[1].notes.is_empty());
}

#[test]
fn one_node_has_one_group_and_workloads_are_named_from_task_ids() {
    let s = run_stats(&bench("a", [1.0; 5]));
    assert_eq!(s.groups.len(), 1);
    assert_eq!(
        (s.groups[0].workload.as_str(), s.groups[0].node_id.as_ref()),
        ("bench", None)
    );

    // A suite: two workloads, each its own group, compared by name.
    let suite = |id: &str, scale: f64| {
        let mut tasks = Vec::new();
        for rep in 1..=5 {
            let x = f64::from(rep);
            tasks.push(task("a", "read", rep, &[("ops", 100.0 + x)]));
            tasks.push(task("a", "write", rep, &[("ops", scale * (50.0 + x))]));
        }
        run_stats(&run(id, tasks))
    };
    let (a, b) = (suite("a", 1.0), suite("b", 3.0));
    let names: Vec<&str> = a.groups.iter().map(|g| g.workload.as_str()).collect();
    assert_eq!(names, ["read", "write"]);
    let c = compare(&a, &b, 0.05);
    let ops: Vec<(&str, bool)> = c
        .rows
        .iter()
        .filter(|r| r.metric == "ops")
        .map(|r| (r.workload.as_str(), r.significant))
        .collect();
    assert_eq!(ops, [("read", false), ("write", true)]);

    // One workload each, named differently: still compared.
    let mut renamed = bench("r", [1.0, 2.0, 3.0, 4.0, 5.0]);
    for t in &mut renamed.tasks {
        t.task_id = t.task_id.replace("bench", "bench2");
    }
    let c = compare(
        &run_stats(&bench("a", [1.0, 2.0, 3.0, 4.0, 5.0])),
        &run_stats(&renamed),
        0.05,
    );
    assert_eq!(row(&c, "ops").workload, "bench → bench2");
    assert_eq!(row(&c, "ops").p_value, Some(1.0));

    // A task id not of the form node::name::rep: the run's workload name.
    let mut odd = task("a", "x", 1, &[]);
    odd.task_id = "something-else".into();
    let s = run_stats(&run("o", vec![odd]));
    assert_eq!(
        s.groups[0].workload,
        fixtures::run_spec().workload.name.unwrap()
    );
}

#[test]
fn setup_and_teardown_are_left_out_and_variants_are_groups() {
    let mut setup = task("a", "setup", 1, &[]);
    setup.phase = herd_bus::TaskPhase::Setup;
    setup.workload = Some("setup".into());
    let mut teardown = task("a", "teardown", 1, &[]);
    teardown.phase = herd_bus::TaskPhase::Teardown;
    let mut tasks = vec![setup];
    for size in ["1G", "4G"] {
        for rep in 1..=2 {
            let mut t = task("a", &format!("fio[size={size}]"), rep, &[("mbps", 1.0)]);
            t.workload = Some(format!("fio[size={size}]"));
            tasks.push(t);
        }
    }
    tasks.push(teardown);
    let stats = run_stats(&run("v", tasks));
    let names: Vec<&str> = stats.groups.iter().map(|g| g.workload.as_str()).collect();
    assert_eq!(names, ["fio[size=1G]", "fio[size=4G]"]);
}
