use super::*;

#[test]
fn pulls_name_a_tag() {
    assert_eq!(
        pull_reference("busybox"),
        ("busybox".into(), Some("latest".into()))
    );
    assert_eq!(
        pull_reference("busybox:1.36"),
        ("busybox:1.36".into(), None)
    );
    assert_eq!(
        pull_reference("registry:5000/team/app"),
        ("registry:5000/team/app".into(), Some("latest".into()))
    );
    assert_eq!(
        pull_reference("app@sha256:abcd"),
        ("app@sha256:abcd".into(), None)
    );
}

#[test]
fn adoption_pairs_containers_with_unsettled_records() {
    let status = |id: &str, driver, state| {
        let mut s = herd_bus::fixtures::workload_status();
        s.workload_id = WorkloadId::new(id).unwrap();
        s.spec.driver = driver;
        s.state = state;
        s
    };
    use herd_bus::{Driver::*, WorkloadState::*};
    let found = |c: &str, w: &str, running| Found {
        container: c.into(),
        workload: w.into(),
        running,
    };
    let plan = plan_adoption(
        vec![
            status("a", Docker, Running),
            status("b", Docker, Running),
            status("c", Docker, Exited),
            status("d", Exec, Running),
        ],
        vec![
            found("ca", "a", true),
            found("cc", "c", false),
            found("cx", "x", true),
        ],
    );
    assert_eq!(plan.adopt.len(), 1);
    assert_eq!((plan.adopt[0].1.as_str(), plan.adopt[0].2), ("ca", true));
    assert_eq!(plan.orphans, ["cc", "cx"], "settled or unknown: removed");
    let lost: Vec<&str> = plan.lost.iter().map(|s| s.workload_id.as_str()).collect();
    assert_eq!(lost, ["b"], "exec records are not the docker driver's");
}

#[test]
fn containers_are_named_by_node_and_workload() {
    let name = container_name(
        &NodeId::new("node-1").unwrap(),
        &WorkloadId::new("w-7f3a").unwrap(),
    );
    assert_eq!(name, "herd-node-1-w-7f3a");
}
