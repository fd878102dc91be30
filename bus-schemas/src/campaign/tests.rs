use super::*;
use crate::messages::{InputFile, RunTargets};
use crate::NodeId;

fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn named(name: &str, args: &[&str]) -> WorkloadSpec {
    WorkloadSpec {
        name: Some(name.into()),
        command: cmd(args),
        ..Default::default()
    }
}

fn suite(workloads: Vec<WorkloadSpec>) -> RunSpec {
    RunSpec {
        workloads,
        setup: Some(named("install", &["sh", "-c", "true"])),
        teardown: Some(named("clean", &["true"])),
        targets: RunTargets {
            nodes: vec![NodeId::new("a").unwrap()],
            ..Default::default()
        },
        repetitions: 2,
        ..Default::default()
    }
}

fn matrix(axes: &[(&str, &[&str])]) -> BTreeMap<String, Vec<ParamValue>> {
    axes.iter()
        .map(|(k, vs)| {
            (
                k.to_string(),
                vs.iter().map(|v| ParamValue::Text(v.to_string())).collect(),
            )
        })
        .collect()
}

#[test]
fn a_suite_expands_into_phases_and_variants_in_order() {
    let mut fio = named(
        "fio",
        &["fio", "--numjobs={threads}", "--size={size}", "${HOME}"],
    );
    fio.matrix = matrix(&[("threads", &["1", "2"]), ("size", &["1G", "4G"])]);
    fio.env.insert("LABEL".into(), "t{threads}-{{x}}".into());
    fio.retries = Some(2);
    let spec = suite(vec![named("warm", &["true"]), fio]);
    assert_eq!(check_run_spec(&spec), Ok(()));
    let v = variants(&spec);
    let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "setup",
            "warm",
            "fio[size=1G,threads=1]",
            "fio[size=1G,threads=2]",
            "fio[size=4G,threads=1]",
            "fio[size=4G,threads=2]",
            "teardown"
        ]
    );
    assert_eq!(v[0].phase, TaskPhase::Setup);
    assert_eq!(v[6].phase, TaskPhase::Teardown);
    let f = &v[3];
    assert_eq!(
        f.spec.command,
        cmd(&["fio", "--numjobs=2", "--size=1G", "${HOME}"])
    );
    assert_eq!(f.spec.env["LABEL"], "t2-{x}");
    assert_eq!(f.spec.env["HERD_PARAM_THREADS"], "2");
    assert_eq!(f.spec.env["HERD_PARAM_SIZE"], "1G");
    assert_eq!(f.spec.name.as_deref(), Some("fio[size=1G,threads=2]"));
    assert!(f.spec.matrix.is_empty() && f.spec.retries.is_none());
    assert_eq!(f.retries, 2);
    // The single form: one workload, named by its name or `task`.
    let single = RunSpec {
        workload: named("bench", &["true"]),
        ..suite(vec![])
    };
    let v = variants(&RunSpec {
        setup: None,
        teardown: None,
        ..single
    });
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].name, "bench");
}

#[test]
fn bad_campaigns_are_refused_naming_the_problem() {
    let err = |spec: RunSpec| check_run_spec(&spec).unwrap_err();
    let dup = err(suite(vec![named("a", &["true"]), named("a", &["true"])]));
    assert_eq!(dup, "workloads[1].name: 'a' is used twice");
    let unnamed = err(suite(vec![WorkloadSpec {
        command: cmd(&["true"]),
        ..Default::default()
    }]));
    assert_eq!(unnamed, "workloads[0].name: a suite's workloads are named");
    assert!(err(suite(vec![named("setup", &["true"])])).contains("names a phase"));
    let mut empty_axis = named("fio", &["fio"]);
    empty_axis.matrix = matrix(&[("threads", &[])]);
    assert_eq!(
        err(suite(vec![empty_axis])),
        "workloads.fio.matrix.threads: an axis needs at least one value"
    );
    let mut stray = named("fio", &["fio", "--size={size}"]);
    stray.matrix = matrix(&[("threads", &["1"])]);
    assert_eq!(
        err(suite(vec![stray])),
        "workloads.fio: placeholder {size} names no matrix axis (axes: threads)"
    );
    let both = RunSpec {
        workload: named("x", &["true"]),
        ..suite(vec![named("a", &["true"])])
    };
    assert!(err(both).contains("not both"));
    let mut bad_setup = suite(vec![named("a", &["true"])]);
    bad_setup.setup = Some(WorkloadSpec::default());
    assert_eq!(err(bad_setup), "setup.command: must not be empty");
    let mut huge = named("h", &["true"]);
    let many: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    huge.matrix = matrix(&[("a", &many), ("b", &many)]);
    assert!(err(suite(vec![huge])).contains("1600 variants, at most 1000"));
    let mut zero = suite(vec![named("a", &["true"])]);
    zero.max_parallel = Some(0);
    assert_eq!(err(zero), "max_parallel: must be ≥ 1");
    let mut input = suite(vec![named("a", &["true"])]);
    input.inputs = vec![InputFile {
        path: "../x".into(),
        digest: "SHA-256=abc".into(),
        size: 1,
        executable: false,
    }];
    assert!(err(input).contains("the path must not contain '..'"));
}

#[test]
fn braces_that_are_no_placeholder_are_kept() {
    let keep = |s: &str| substitute(s, |_| Some("V".into()));
    assert_eq!(keep("awk '{ print $1 }'"), "awk '{ print $1 }'");
    assert_eq!(keep("${x} {x} {{x}} {}"), "${x} V {x} {}");
    assert_eq!(keep("{unclosed"), "{unclosed");
    assert_eq!(placeholders("a{b}c{d_1}"), ["b", "d_1"]);
}
