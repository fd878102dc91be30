//! Pinned CPUs and GPUs on a node's real cgroups, through the exec driver itself (a `Launch`
//! with cores and GPUs assigned by hand, as the executor hands them over once the node has
//! admitted a workload): the workload's cpuset cgroup holds exactly its cores, the kernel
//! schedules it only there, it sees its GPUs' UUIDs in `CUDA_VISIBLE_DEVICES` and
//! `NVIDIA_VISIBLE_DEVICES`, and on cgroup v1 it can open only its own `/dev/nvidia<minor>`.

use herd_actors::cores::workload::validate::{validate, Resolved};
use herd_actors::edges::cgroup::{self, CgroupBackend, CgroupVersion};
use herd_actors::edges::driver::{exec::ExecDriver, Driver, Launch, Started, TMP_SUBDIR};
use herd_bus::{Assigned, GpuInfo, Limits, NodeId, WorkloadId, WorkloadSpec};
use herd_tests::{announce, workspace_bin};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Four declared GPUs with made-up UUIDs; `/dev/nvidia<index>` is each one's device file.
fn declared_gpus() -> Vec<GpuInfo> {
    (0..4)
        .map(|i| GpuInfo {
            index: i,
            name: "declared".into(),
            uuid: format!("GPU-0000000{i}-fake-4000-8000-00000000000{i}"),
            memory: 16 << 30,
            mig: None,
        })
        .collect()
}

struct Node {
    backend: Arc<dyn CgroupBackend>,
    driver: ExecDriver,
    _shims: tempfile::TempDir,
}

/// The exec driver on this host's real cgroups, under a root of this test's own.
fn node(test: &str) -> Node {
    let (backend, warning) =
        cgroup::detect("auto", &format!("herd-test-{test}-{}", std::process::id()));
    announce(&format!(
        "{test}: backend cgroup {} ({})",
        backend.version().as_str(),
        backend.describe()
    ));
    assert!(
        backend.version() != CgroupVersion::None,
        "these tests need a writable cgroup v1 or v2 hierarchy (run as root): {warning:?}"
    );
    let shims = tempfile::tempdir().unwrap();
    let driver = ExecDriver::new(
        backend.clone(),
        vec![workspace_bin("herd-shim").into_os_string()],
        shims.path().to_path_buf(),
    )
    .with_gpu_inventory(declared_gpus());
    Node {
        backend,
        driver,
        _shims: shims,
    }
}

/// Starts `script` under `sh -c` with `limits` and `assigned`, in a working directory of its
/// own (made as the executor makes it).
async fn launch(
    node: &Node,
    id: &str,
    script: &str,
    limits: Limits,
    assigned: Assigned,
    work: &Path,
) -> Started {
    std::fs::create_dir_all(work.join(TMP_SUBDIR)).unwrap();
    let mut spec = WorkloadSpec {
        command: vec!["sh".into(), "-c".into(), script.into()],
        limits,
        ..Default::default()
    };
    // herd's assignment must win over the spec's own value.
    spec.env
        .insert("CUDA_VISIBLE_DEVICES".into(), "0,1,2,3".into());
    let resolved = validate(&spec, &Default::default(), 1024.0).expect("a valid spec");
    node.driver
        .launch(Launch {
            workload_id: WorkloadId::new(id).unwrap(),
            node_id: NodeId::new("pinned").unwrap(),
            spec,
            resolved: Resolved::Exec(resolved),
            work_dir: work.to_path_buf(),
            output_dir: None,
            assigned,
        })
        .await
        .unwrap_or_else(|e| panic!("{id} did not start: {e}"))
}

/// The file the workload writes last, once written.
fn wait_for(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with("done\n") {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The workload's cgroup directory for `controller` (`""`: the unified one), from its leader's
/// /proc/<pid>/cgroup.
fn cgroup_dir(pid: u32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let info = cgroup::MountInfo::read().unwrap();
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let mount = if controller.is_empty() {
            (controllers.is_empty()).then(|| info.unified())??
        } else {
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| info.v1_controller(controller))??
        };
        Some(mount.mount_point.join(path.trim_start_matches('/')))
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Kills and releases it; its cgroup directories must be gone then.
async fn end(started: Started, dirs: &[PathBuf]) {
    started.handle.kill();
    let _ = started.exit.await;
    started.handle.release().await;
    for dir in dirs {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}

#[tokio::test]
async fn a_workload_pinned_to_a_core_runs_only_there() {
    let node = node("pin-core");
    let work = tempfile::tempdir().unwrap();
    let started = launch(
        &node,
        "core1",
        "grep Cpus_allowed_list /proc/self/status > $HERD_WORK_DIR/cpus; echo done >> $HERD_WORK_DIR/cpus; exec sleep 60",
        Limits {
            cpu: Some(0.5),
            cpuset_cpus: Some(1),
            ..Default::default()
        },
        Assigned {
            cores: vec![1],
            gpus: vec![],
        },
        work.path(),
    )
    .await;
    let seen = wait_for(&work.path().join("cpus"));
    assert!(
        seen.starts_with("Cpus_allowed_list:\t1\n"),
        "the kernel runs it on core 1 only: {seen:?}"
    );
    let (cpuset, cpu) = match node.backend.version() {
        CgroupVersion::V1 => {
            let cpuset = cgroup_dir(started.pid, "cpuset").expect("in a cpuset cgroup");
            assert_eq!(read(&cpuset.join("cpuset.cpus")), "1");
            assert_eq!(
                read(&cpuset.join("cpuset.mems")),
                read(&cpuset.parent().unwrap().join("cpuset.mems")),
                "herd's memory nodes"
            );
            // Both limits apply: the quota too.
            let cpu = cgroup_dir(started.pid, "cpu").unwrap();
            assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
            // No GPUs: no devices cgroup of its own.
            let devices = cgroup_dir(started.pid, "devices").unwrap();
            assert!(
                !devices.ends_with("wl-core1"),
                "a devices cgroup for a workload without GPUs: {}",
                devices.display()
            );
            (cpuset, cpu)
        }
        _ => {
            let dir = cgroup_dir(started.pid, "").expect("in a cgroup2 cgroup");
            assert_eq!(read(&dir.join("cpuset.cpus")), "1");
            assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
            (dir.clone(), dir)
        }
    };
    announce(&format!(
        "pin-core: {} holds cpuset.cpus = 1",
        cpuset.display()
    ));
    end(started, &[cpuset.clone(), cpu]).await;
    node.backend.remove_root_if_empty();
    assert!(
        !cpuset.parent().unwrap().exists(),
        "herd's cpuset root is left behind: {}",
        cpuset.parent().unwrap().display()
    );
}

/// Device files `/dev/nvidia<minor>` stand-ins: the same major and minors in a directory of
/// the test's (opening one with no driver behind it fails with ENXIO where the cgroup allows
/// it, EPERM where it does not).
fn fake_device_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for minor in [0, 1, 2, 3, 255] {
        let path = dir.path().join(format!("nvidia{minor}"));
        nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(195, minor),
        )
        .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    dir
}

#[tokio::test]
async fn a_workload_with_a_gpu_sees_only_that_gpu() {
    let node = node("pin-gpu");
    let devices = fake_device_files();
    let work = tempfile::tempdir().unwrap();
    let gpus = declared_gpus();
    let script = format!(
        "echo \"$CUDA_VISIBLE_DEVICES\" > $HERD_WORK_DIR/gpus; \
         echo \"$NVIDIA_VISIBLE_DEVICES\" >> $HERD_WORK_DIR/gpus; \
         for m in 0 1 2 3 255; do cat {}/nvidia$m 2>&1 | sed 's/^.*: //'; done >> $HERD_WORK_DIR/gpus; \
         echo done >> $HERD_WORK_DIR/gpus; exec sleep 60",
        devices.path().display()
    );
    let started = launch(
        &node,
        "gpu1",
        &script,
        Limits::default(),
        Assigned {
            cores: vec![],
            gpus: vec![gpus[1].uuid.clone()],
        },
        work.path(),
    )
    .await;
    let seen = wait_for(&work.path().join("gpus"));
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(
        lines[0], gpus[1].uuid,
        "CUDA_VISIBLE_DEVICES, over the spec's own"
    );
    assert_eq!(lines[1], gpus[1].uuid, "NVIDIA_VISIBLE_DEVICES");
    let mut dirs = vec![];
    match node.backend.version() {
        CgroupVersion::V1
            if cgroup::MountInfo::read()
                .unwrap()
                .v1_controller("devices")
                .is_some() =>
        {
            let dir = cgroup_dir(started.pid, "devices").unwrap();
            assert!(
                dir.ends_with("wl-gpu1"),
                "its own devices cgroup: {}",
                dir.display()
            );
            let enxio = "No such device or address";
            let eperm = "Operation not permitted";
            assert_eq!(
                lines[2..7],
                [eperm, enxio, eperm, eperm, enxio],
                "nvidia0..3 then nvidiactl: only its own GPU (minor 1) and nvidiactl may be opened"
            );
            announce(&format!(
                "pin-gpu: cgroup v1 devices {} (devices.list: {:?}) lets it open /dev/nvidia1 and nvidiactl only",
                dir.display(),
                read(&dir.join("devices.list"))
            ));
            dirs.push(dir);
        }
        v => announce(&format!(
            "pin-gpu: cgroup {}: no device limits checked (v1 devices hierarchy only)",
            v.as_str()
        )),
    }
    assert!(
        cgroup_dir(started.pid, "cpuset").is_none_or(|d| !d.ends_with("wl-gpu1")),
        "no cores assigned: no cpuset cgroup"
    );
    end(started, &dirs).await;
    node.backend.remove_root_if_empty();
}

#[tokio::test]
async fn a_gpu_missing_from_the_inventory_is_refused_by_name() {
    let node = node("pin-unknown");
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join(TMP_SUBDIR)).unwrap();
    let spec = WorkloadSpec {
        command: vec!["true".into()],
        ..Default::default()
    };
    let resolved = validate(&spec, &Default::default(), 1024.0).unwrap();
    let result = node
        .driver
        .launch(Launch {
            workload_id: WorkloadId::new("gpux").unwrap(),
            node_id: NodeId::new("pinned").unwrap(),
            spec,
            resolved: Resolved::Exec(resolved),
            work_dir: work.path().to_path_buf(),
            output_dir: None,
            assigned: Assigned {
                cores: vec![],
                gpus: vec!["GPU-not-here".into()],
            },
        })
        .await;
    let e = result.err().expect("refused").to_string();
    assert!(
        e.starts_with("GPU GPU-not-here is assigned to the workload but not in this node's GPU inventory (GPU-00000000-fake"),
        "{e}"
    );
    node.backend.remove_root_if_empty();
}

/// A container with GPUs is created with a device request for exactly them. The UUIDs are made
/// up, so the engine refuses to start it: without NVIDIA's runtime (`could not select device
/// driver "nvidia"`), or with it (an unknown device). Either way the request reached the engine.
#[tokio::test]
async fn a_container_asks_the_engine_for_exactly_its_gpus() {
    use herd_actors::edges::driver::docker::{DockerConfig, DockerDriver};
    let image = herd_tests::docker_test_image();
    let node_id = format!("pinned-docker-{}", std::process::id());
    let driver = DockerDriver::new(&DockerConfig::default(), NodeId::new(&node_id).unwrap());
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join(TMP_SUBDIR)).unwrap();
    let spec = WorkloadSpec {
        driver: herd_bus::Driver::Docker,
        image: Some(image.into()),
        command: vec!["true".into()],
        ..Default::default()
    };
    let gpus = declared_gpus();
    let result = driver
        .launch(Launch {
            workload_id: WorkloadId::new("gpu-container").unwrap(),
            node_id: NodeId::new(&node_id).unwrap(),
            resolved: herd_actors::cores::workload::validate::validate_docker(&spec, 1024.0)
                .unwrap(),
            spec,
            work_dir: work.path().to_path_buf(),
            output_dir: None,
            assigned: Assigned {
                cores: vec![1],
                gpus: vec![gpus[0].uuid.clone(), gpus[2].uuid.clone()],
            },
        })
        .await;
    let e = result
        .err()
        .expect("no start with made-up GPUs")
        .to_string();
    announce(&format!("gpu container: {e}"));
    assert!(
        e.starts_with("cannot start the container: ") && e.contains("nvidia"),
        "{e}"
    );
    assert_eq!(
        herd_tests::containers_of(&node_id),
        Vec::<String>::new(),
        "the container that did not start is removed"
    );
}
