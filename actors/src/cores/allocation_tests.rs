use super::*;

const GIB: u64 = 1 << 30;

fn gpu(i: u32) -> GpuInfo {
    GpuInfo {
        index: i,
        name: "declared".into(),
        uuid: format!("GPU-{i}"),
        memory: 80 * GIB,
        mig: None,
    }
}

fn policy(config: ResourcesConfig) -> AllocationPolicy {
    AllocationPolicy {
        config,
        capacity_cpus: 4.0,
        capacity_memory: 8 * GIB,
        cores: vec![0, 1, 2, 3],
        gpus: (0..4).map(gpu).collect(),
    }
}

fn strict() -> ResourcesConfig {
    ResourcesConfig {
        overcommit_cpu: false,
        ..Default::default()
    }
}

fn cpu(c: f64) -> Limits {
    Limits {
        cpu: Some(c),
        ..Default::default()
    }
}

/// Admits each of `asks` in turn, keeping what was admitted live; the outcome of each.
fn admit_all(p: &AllocationPolicy, asks: &[Limits]) -> Vec<Result<Assigned, String>> {
    let mut live: Vec<(Limits, Assigned)> = vec![];
    let mut out = vec![];
    for l in asks {
        let holdings: Vec<Holding> = live
            .iter()
            .map(|(limits, assigned)| Holding { limits, assigned })
            .collect();
        let r = p.admit(l, &holdings);
        if let Ok(a) = &r {
            live.push((l.clone(), a.clone()));
        }
        out.push(r);
    }
    out
}

#[test]
fn starts_fit_until_the_allocatable_cpu_is_handed_out() {
    let p = AllocationPolicy {
        capacity_cpus: 2.0,
        ..policy(strict())
    };
    let r = admit_all(&p, &vec![cpu(0.5); 5]);
    assert!(r[..4].iter().all(Result::is_ok));
    let err = r[4].clone().unwrap_err();
    assert_eq!(err, "cpu: needs 0.5 CPUs, 0.00 of 2 allocatable left");
}

#[test]
fn reserved_capacity_is_never_handed_out() {
    let p = policy(ResourcesConfig {
        reserved_cpu: 1.0,
        reserved_memory: 2 * GIB,
        ..strict()
    });
    assert_eq!(p.allocation(&[]).allocatable_cpus, 3.0);
    assert_eq!(p.allocation(&[]).allocatable_memory, 6 * GIB);
    let r = admit_all(&p, &[cpu(3.0), cpu(0.1)]);
    assert!(r[0].is_ok());
    assert!(r[1].clone().unwrap_err().starts_with("cpu: needs 0.1 CPUs"));
    let big = Limits {
        memory: Some(7 * GIB),
        ..Default::default()
    };
    let err = p.admit(&big, &[]).unwrap_err();
    assert_eq!(
        err,
        "memory: needs 7168 MiB, 6144 MiB of 6144 MiB allocatable left"
    );
}

#[test]
fn overcommit_admits_past_allocatable_and_still_counts() {
    let p = policy(ResourcesConfig::default());
    let r = admit_all(&p, &vec![cpu(3.0); 3]);
    assert!(
        r.iter().all(Result::is_ok),
        "CPU overcommit is on by default"
    );
    let memory = |m| Limits {
        memory: Some(m),
        ..Default::default()
    };
    let r = admit_all(&p, &[memory(6 * GIB), memory(3 * GIB)]);
    assert!(
        r[1].clone().unwrap_err().starts_with("memory:"),
        "memory is not overcommitted by default"
    );
    let lax = policy(ResourcesConfig {
        overcommit_memory: true,
        ..Default::default()
    });
    assert!(admit_all(&lax, &[memory(6 * GIB), memory(3 * GIB)])
        .iter()
        .all(Result::is_ok));
    let (limits, assigned) = (cpu(3.0), Assigned::default());
    let live = [Holding {
        limits: &limits,
        assigned: &assigned,
    }; 2];
    let a = p.allocation(&live);
    assert_eq!((a.allocated_cpus, a.free_cpus()), (6.0, -2.0));
    assert!(a.overcommit_cpu && !a.overcommit_memory);
}

#[test]
fn a_workload_without_limits_counts_as_the_default_request() {
    let p = policy(ResourcesConfig {
        default_cpu: 1.5,
        default_memory: GIB,
        ..strict()
    });
    let none = Limits::default();
    let r = admit_all(&p, &[none.clone(), none.clone(), none]);
    assert!(r[0].is_ok() && r[1].is_ok());
    assert!(r[2]
        .clone()
        .unwrap_err()
        .starts_with("cpu: needs 1.5 CPUs, 1.00 of 4"));
    assert_eq!(
        policy(ResourcesConfig::default()).request_cpus(&Limits::default()),
        0.0
    );
}

#[test]
fn pinned_cores_are_whole_distinct_and_off_the_reserved_ones() {
    let p = policy(ResourcesConfig {
        reserved_cpu: 0.5,
        ..ResourcesConfig::default()
    });
    let pin = |n| Limits {
        cpuset_cpus: Some(n),
        ..Default::default()
    };
    let r = admit_all(&p, &[pin(1), pin(1), pin(1), pin(1)]);
    assert_eq!(
        r[0].clone().unwrap().cores,
        vec![1],
        "core 0 holds the reserved 0.5"
    );
    assert_eq!(r[1].clone().unwrap().cores, vec![2]);
    assert_eq!(r[2].clone().unwrap().cores, vec![3]);
    assert_eq!(
        r[3].clone().unwrap_err(),
        "cpuset_cpus: needs 1 whole cores, 0 free of 3 that can be pinned"
    );
    assert_eq!(p.request_cpus(&pin(2)), 2.0, "a cpuset counts as its cores");
}

#[test]
fn gpus_are_exclusive_unless_overcommitted() {
    let p = policy(ResourcesConfig::default());
    let gpus = |r: GpuRequest| Limits {
        gpus: Some(r),
        ..Default::default()
    };
    let one = gpus(GpuRequest::Count(1));
    let r = admit_all(&p, &vec![one.clone(); 5]);
    let given: Vec<Vec<String>> = r[..4].iter().map(|a| a.clone().unwrap().gpus).collect();
    assert_eq!(given, [["GPU-0"], ["GPU-1"], ["GPU-2"], ["GPU-3"]]);
    assert_eq!(r[4].clone().unwrap_err(), "gpus: needs 1, 0 free of 4");
    let named = gpus(GpuRequest::Devices(vec!["GPU-2".into()]));
    let r = admit_all(&p, &[named.clone(), named]);
    assert_eq!(r[0].clone().unwrap().gpus, ["GPU-2"]);
    assert_eq!(
        r[1].clone().unwrap_err(),
        "gpus: GPU-2 is another workload's"
    );
    let unknown = gpus(GpuRequest::Devices(vec!["GPU-9".into()]));
    assert_eq!(
        p.admit(&unknown, &[]).unwrap_err(),
        "gpus: this node has no GPU GPU-9"
    );
    let shared = policy(ResourcesConfig {
        overcommit_gpus: true,
        ..Default::default()
    });
    let r = admit_all(&shared, &vec![one; 6]);
    assert!(r.iter().all(Result::is_ok));
    assert_eq!(
        r[4].clone().unwrap().gpus,
        ["GPU-0"],
        "the least shared first"
    );
}

#[test]
fn what_ended_is_released_and_what_was_adopted_is_held() {
    // Allocation is a function of the live workloads: one that settles is no longer passed,
    // and one re-adopted after a restart is passed with the cores and GPUs it was assigned.
    let p = policy(ResourcesConfig::default());
    let limits = Limits {
        cpuset_cpus: Some(2),
        gpus: Some(GpuRequest::Count(1)),
        ..Default::default()
    };
    let adopted = Assigned {
        cores: vec![0, 1],
        gpus: vec!["GPU-0".into()],
    };
    let live = [Holding {
        limits: &limits,
        assigned: &adopted,
    }];
    let next = p.admit(&limits, &live).unwrap();
    assert_eq!(next.cores, vec![2, 3]);
    assert_eq!(next.gpus, ["GPU-1"]);
    let a = p.allocation(&live);
    assert_eq!((a.cores_free, a.gpus_free.len()), (2, 3));
    let released = p.allocation(&[]);
    assert_eq!(
        (
            released.cores_free,
            released.gpus_free.len(),
            released.allocated_cpus
        ),
        (4, 4, 0.0)
    );
}

#[test]
fn bad_configurations_are_named() {
    let bad = ResourcesConfig {
        reserved_cpu: -1.0,
        ..Default::default()
    };
    assert!(bad.validate().unwrap_err().contains("reserved_cpu"));
    let bad = ResourcesConfig {
        capacity_cpu: Some(0.0),
        ..Default::default()
    };
    assert!(bad.validate().unwrap_err().contains("capacity_cpu"));
    assert!(ResourcesConfig::default().validate().is_ok());
}

#[test]
fn only_pending_starting_and_running_workloads_hold_anything() {
    use herd_bus::WorkloadState;
    let p = policy(strict());
    let status = |state| WorkloadStatus {
        state,
        spec: herd_bus::WorkloadSpec {
            limits: Limits {
                cpu: Some(1.0),
                cpuset_cpus: Some(1),
                ..Default::default()
            },
            ..Default::default()
        },
        assigned: Assigned {
            cores: vec![3],
            gpus: vec!["GPU-0".into()],
        },
        ..herd_bus::fixtures::workload_status()
    };
    let all: Vec<WorkloadStatus> = WorkloadState::ALL.into_iter().map(status).collect();
    let live = live(&all);
    assert_eq!(live.len(), 3, "pending, starting, running");
    let a = p.allocation(&live);
    assert_eq!(a.allocated_cpus, 3.0);
    for settled in WorkloadState::ALL.into_iter().filter(|s| s.is_terminal()) {
        let one = [status(settled)];
        let a = p.allocation(&super::live(&one));
        assert_eq!(
            (a.allocated_cpus, a.cores_free, a.gpus_free.len()),
            (0.0, 4, 4),
            "{settled:?} holds nothing"
        );
    }
}
