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

fn docker_launch(assigned: herd_bus::Assigned) -> Launch {
    let mut spec = WorkloadSpec {
        driver: herd_bus::Driver::Docker,
        image: Some("herd-test/busybox:1".into()),
        command: vec!["true".into()],
        ..Default::default()
    };
    spec.env
        .insert("CUDA_VISIBLE_DEVICES".into(), "0,1,2,3".into());
    spec.env.insert("KEEP".into(), "1".into());
    Launch {
        workload_id: WorkloadId::new("w1").unwrap(),
        node_id: NodeId::new("n1").unwrap(),
        spec,
        resolved: crate::cores::workload::validate::Resolved::Docker {
            kill_signal: nix::sys::signal::Signal::SIGTERM,
        },
        work_dir: "/var/lib/herd/work/w1".into(),
        output_dir: None,
        assigned,
    }
}

fn env_of(body: &ContainerCreateBody, name: &str) -> Option<String> {
    body.env
        .as_ref()
        .unwrap()
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{name}=")).map(String::from))
}

#[test]
fn a_container_gets_exactly_its_gpus_and_cores() {
    let driver = DockerDriver::new(&DockerConfig::default(), NodeId::new("n1").unwrap());
    let body = driver.create_body(&docker_launch(herd_bus::Assigned {
        cores: vec![1, 3],
        gpus: vec!["GPU-aaaa".into(), "GPU-cccc".into()],
    }));
    let host = body.host_config.as_ref().unwrap();
    assert_eq!(host.cpuset_cpus.as_deref(), Some("1,3"));
    assert_eq!(
        host.device_requests,
        Some(vec![DeviceRequest {
            driver: Some("nvidia".into()),
            count: None,
            device_ids: Some(vec!["GPU-aaaa".into(), "GPU-cccc".into()]),
            capabilities: Some(vec![vec!["gpu".into()]]),
            options: None,
        }])
    );
    // herd's assignment wins over the spec's own value; the rest of the spec's env stays.
    assert_eq!(
        env_of(&body, "CUDA_VISIBLE_DEVICES").as_deref(),
        Some("GPU-aaaa,GPU-cccc")
    );
    assert_eq!(
        env_of(&body, "NVIDIA_VISIBLE_DEVICES").as_deref(),
        Some("GPU-aaaa,GPU-cccc")
    );
    assert_eq!(env_of(&body, "KEEP").as_deref(), Some("1"));
    let names: Vec<&str> = body
        .env
        .as_ref()
        .unwrap()
        .iter()
        .filter(|e| e.starts_with("CUDA_VISIBLE_DEVICES="))
        .map(String::as_str)
        .collect();
    assert_eq!(names.len(), 1, "one value per name: {names:?}");
    // As the engine gets it.
    let json = serde_json::to_value(&body).unwrap();
    assert_eq!(
        json["HostConfig"]["DeviceRequests"],
        serde_json::json!([{"Driver": "nvidia", "DeviceIDs": ["GPU-aaaa", "GPU-cccc"], "Capabilities": [["gpu"]]}])
    );
}

#[test]
fn a_container_without_assignments_is_left_as_its_spec_says() {
    let driver = DockerDriver::new(&DockerConfig::default(), NodeId::new("n1").unwrap());
    let body = driver.create_body(&docker_launch(Default::default()));
    let host = body.host_config.as_ref().unwrap();
    assert_eq!(host.cpuset_cpus, None);
    assert_eq!(host.device_requests, None);
    assert_eq!(
        env_of(&body, "CUDA_VISIBLE_DEVICES").as_deref(),
        Some("0,1,2,3")
    );
    assert_eq!(env_of(&body, "NVIDIA_VISIBLE_DEVICES"), None);
}

#[test]
fn a_container_sees_its_inputs_where_its_work_dir_is_mounted() {
    let driver = DockerDriver::new(&DockerConfig::default(), NodeId::new("n1").unwrap());
    let mut launch = docker_launch(Default::default());
    let body = driver.create_body(&launch);
    assert_eq!(
        env_of(&body, "HERD_INPUT_DIR"),
        None,
        "no inputs, no variable"
    );
    launch.spec.inputs = vec![herd_bus::InputFile {
        path: "bench.sh".into(),
        digest: "SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0=".into(),
        size: 3,
        executable: true,
    }];
    let body = driver.create_body(&launch);
    assert_eq!(
        env_of(&body, "HERD_INPUT_DIR").as_deref(),
        Some("/herd/work/inputs")
    );
}
