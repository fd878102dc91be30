//! What `run show --summary` and `run compare` print, from replies made by hand.

use super::*;
use herd_bus::{fixtures, FigureKind, MetricComparison, NodeId, RunState};
use std::collections::BTreeMap;

fn stats(values: &[f64]) -> MetricStats {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    MetricStats {
        n: values.len() as u32,
        mean,
        median: mean,
        stddev: 10.0,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        cv: Some(10.0 / mean),
        values: values.to_vec(),
    }
}

fn run_stats() -> RunStats {
    let group = |node: Option<&str>| StatsGroup {
        workload: "bench".into(),
        node_id: node.map(|n| NodeId::new(n).unwrap()),
        completed: 4,
        left_out: 1,
        metrics: BTreeMap::from([("ops".to_string(), stats(&[990.0, 1000.0, 1010.0, 1000.0]))]),
        resources: BTreeMap::from([(
            "memory_peak_bytes".to_string(),
            stats(&[64.0 * 1048576.0; 4]),
        )]),
        notes: vec!["a::bench::5: metrics.json: expected an object".into()],
    };
    RunStats {
        run_id: fixtures::run_id(),
        state: RunState::Failed,
        groups: vec![group(None), group(Some("a")), group(Some("b"))],
    }
}

#[test]
fn a_summary_prints_one_line_per_group_and_figure_and_its_notes_once() {
    let text = summary_table(&run_stats());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "run bench-42 is failed");
    assert!(lines[1].starts_with("WORKLOAD  NODE  FIGURE"), "{text}");
    assert_eq!(lines.len(), 2 + 6 + 2, "{text}");
    let ops: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        ops,
        ["bench", "all", "ops", "4", "1000", "1000", "10.00", "990.0", "1010", "1.0%"]
    );
    assert!(lines[3].contains("memory_peak_bytes  4  64M"), "{text}");
    assert!(lines[4].starts_with("bench     a "), "{text}");
    assert_eq!(
        &lines[8..],
        [
            "note: bench: 1 of 5 tasks did not complete and are left out",
            "note: bench: a::bench::5: metrics.json: expected an object"
        ]
    );

    let empty = RunStats {
        groups: vec![StatsGroup {
            workload: "bench".into(),
            ..Default::default()
        }],
        ..run_stats()
    };
    assert!(summary_table(&empty).contains("no figures yet"));

    let csv = summary_csv(&run_stats());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "run,workload,node,kind,figure,n,mean,median,stddev,min,max,cv"
    );
    assert_eq!(
        lines[1],
        "bench-42,bench,all,metric,ops,4,1000,1000,10,990,1010,0.01"
    );
    assert_eq!(lines.len(), 7);
}

fn comparison() -> RunComparison {
    let row = |metric: &str, kind, b: Option<MetricStats>, p: Option<f64>, note: Option<&str>| {
        MetricComparison {
            workload: "bench".into(),
            kind,
            metric: metric.into(),
            a: Some(stats(&[1000.0; 5])),
            change: b.as_ref().map(|b| (b.mean - 1000.0) / 1000.0),
            b,
            p_value: p,
            significant: p.is_some_and(|p| p < 0.05),
            test: if p.is_some() { "welch_t" } else { "none" }.into(),
            note: note.map(String::from),
        }
    };
    RunComparison {
        run_a: RunId::new("base").unwrap(),
        run_b: RunId::new("new").unwrap(),
        alpha: 0.05,
        rows: vec![
            row(
                "ops",
                FigureKind::Metric,
                Some(stats(&[2000.0; 5])),
                Some(3.2e-9),
                None,
            ),
            row(
                "duration_s",
                FigureKind::Resource,
                Some(stats(&[1003.0; 5])),
                Some(0.71),
                None,
            ),
            row(
                "latency, p99",
                FigureKind::Metric,
                None,
                None,
                Some("only in run A"),
            ),
        ],
    }
}

#[test]
fn a_comparison_prints_means_change_p_and_verdict() {
    let text = comparison_table(&comparison());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "A = run base, B = run new; significant: p < 0.05 (Welch's t-test)"
    );
    assert!(lines[1].starts_with("WORKLOAD  KIND"), "{text}");
    assert!(lines[1].ends_with("SIGNIFICANT  NOTE"), "{text}");
    let ops: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        ops,
        [
            "bench",
            "metric",
            "ops",
            "1000±10.00",
            "(5)",
            "2000±10.00",
            "(5)",
            "+100.0%",
            "3.2e-9",
            "yes"
        ]
    );
    let duration: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        &duration[3..],
        [
            "1000s±10.00s",
            "(5)",
            "1003s±10.00s",
            "(5)",
            "+0.3%",
            "0.710",
            "no"
        ]
    );
    let latency: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(&latency[5..], ["(5)", "-", "no", "only", "in", "run", "A"]);

    let csv = comparison_csv(&comparison());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "run_a,run_b,workload,kind,figure,a_n,a_mean,a_stddev,b_n,b_mean,b_stddev,change,p_value,significant,test,note"
    );
    assert_eq!(
        lines[1],
        "base,new,bench,metric,ops,5,1000,10,5,2000,10,1,0.0000000032,true,welch_t,"
    );
    // A field with a comma is quoted; a missing side is empty.
    assert_eq!(
        lines[3],
        "base,new,bench,metric,\"latency, p99\",5,1000,10,,,,,,false,none,only in run A"
    );
}

#[test]
fn numbers_keep_four_significant_digits_in_their_unit() {
    assert_eq!(number(1003.24), "1003");
    assert_eq!(number(12.345), "12.35");
    assert_eq!(number(0.012345), "0.01235");
    assert_eq!(number(0.0), "0");
    assert_eq!(number(2.5e7), "2.500e7");
    assert_eq!(number(-4.2e-5), "-4.200e-5");
    assert_eq!(figure("cpu_s", 1.5), "1.500s");
    assert_eq!(figure("cpu_mean_pct", 98.25), "98.25%");
    assert_eq!(figure("io_read_bytes", 1536.0), "1.5K");
    assert_eq!(p_value(0.0734), "0.073");
    assert_eq!(p_value(0.0), "0");
}
