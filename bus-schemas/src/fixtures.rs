//! One sample of every message type. They are the golden vectors (`golden/<version>/`), the
//! examples in docs/bus.md, and handy test data for other crates and benches.

use crate::codec::{self, CodecError, DecodeLimits, Encoding};
use crate::ids::{NodeId, RunId, WorkloadId};
use crate::messages::*;
use crate::reply::{ErrorCode, Reply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;

/// A message type's sample, and how to check old bytes of it.
pub struct Fixture {
    pub name: &'static str,
    /// Where the message travels, for the docs.
    pub travels: &'static str,
    pub msgpack: fn() -> Vec<u8>,
    pub json: fn() -> serde_json::Value,
    /// Decodes bytes (of any version) as this type and returns its JSON form.
    pub decode_msgpack: fn(&[u8]) -> Result<serde_json::Value, CodecError>,
    /// The same for JSON text.
    pub decode_json: fn(&[u8]) -> Result<serde_json::Value, CodecError>,
}

fn to_msgpack<T: Serialize>(v: &T) -> Vec<u8> {
    codec::encode(v, Encoding::MsgPack).expect("fixture encodes")
}

fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("fixture encodes")
}

fn decode_as<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    enc: Encoding,
) -> Result<serde_json::Value, CodecError> {
    let v: T = codec::decode(bytes, enc, &DecodeLimits::default())?;
    Ok(to_json(&v))
}

macro_rules! fixtures {
    ($( $name:literal : $ty:ty = $sample:expr, $travels:literal; )*) => {
        /// Every fixture, in the order docs/bus.md shows them.
        pub fn all() -> Vec<Fixture> {
            vec![$(
                Fixture {
                    name: $name,
                    travels: $travels,
                    msgpack: || to_msgpack::<$ty>(&$sample),
                    json: || to_json::<$ty>(&$sample),
                    decode_msgpack: |b| decode_as::<$ty>(b, Encoding::MsgPack),
                    decode_json: |b| decode_as::<$ty>(b, Encoding::Json),
                },
            )*]
        }
    };
}

const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

pub fn node_id() -> NodeId {
    NodeId::new("node-1").unwrap()
}

pub fn workload_id() -> WorkloadId {
    WorkloadId::new("w-7f3a").unwrap()
}

pub fn run_id() -> RunId {
    RunId::new("bench-42").unwrap()
}

pub fn labels() -> Labels {
    Labels::from([("rack".to_string(), "r1".to_string())])
}

pub fn node_info() -> NodeInfo {
    NodeInfo {
        node_id: node_id(),
        version: "0.1.0".into(),
        api: "v1".into(),
        hostname: "node-1.example".into(),
        started_at_ms: T0,
        uptime_s: 3600.5,
        labels: labels(),
        roles: vec![Role::Node],
        state: NodeState::Active,
        cgroup: Some("v2".into()),
    }
}

pub fn workload_spec() -> WorkloadSpec {
    WorkloadSpec {
        workload_id: Some(workload_id()),
        name: Some("stress".into()),
        run_id: Some(run_id()),
        rep: Some(2),
        driver: Driver::Exec,
        command: vec!["stress-ng".into(), "--cpu".into(), "1".into()],
        image: None,
        pull_policy: None,
        env: BTreeMap::from([("MODE".to_string(), "fast".to_string())]),
        cwd: Some("/tmp".into()),
        user: Some("nobody".into()),
        limits: Limits {
            cpu: Some(0.5),
            memory: Some(64 * 1024 * 1024),
            pids: Some(64),
            swap: None,
            cpuset_cpus: None,
            gpus: None,
        },
        timeout_s: Some(60.0),
        kill_signal: Some("SIGTERM".into()),
        grace_s: Some(5.0),
        restart: RestartPolicy {
            policy: RestartPolicyKind::OnFailure,
            max: 3,
        },
        collect: true,
        labels: labels(),
        inputs: vec![],
        matrix: BTreeMap::new(),
        retries: None,
    }
}

pub fn workload_status() -> WorkloadStatus {
    WorkloadStatus {
        workload_id: workload_id(),
        node_id: node_id(),
        state: WorkloadState::Exited,
        spec: workload_spec(),
        pid: Some(4242),
        created_at_ms: T0,
        started_at_ms: Some(T0 + 3),
        finished_at_ms: Some(T0 + 9000),
        exit_code: Some(0),
        signal: None,
        reason: None,
        restarts: 0,
        resources: None,
        work_dir: None,
        assigned: Default::default(),
    }
}

pub fn workload_summary(i: usize) -> WorkloadSummary {
    WorkloadSummary {
        workload_id: WorkloadId::new(format!("w-{i:04}")).unwrap(),
        state: WorkloadState::Running,
        run_id: Some(run_id()),
        rep: Some(1),
        cpu_percent: Some(49.7),
        memory: Some(12_345_678),
    }
}

/// A heartbeat with `workloads` entries in its inventory.
pub fn heartbeat(workloads: usize) -> Heartbeat {
    Heartbeat {
        node_id: node_id(),
        seq: 1801,
        interval_ms: 2000,
        ts_ms: T0 + 3_600_000,
        started_at_ms: T0,
        version: "0.1.0".into(),
        uptime_s: 3600.0,
        labels: labels(),
        roles: vec![Role::Node],
        state: NodeState::Active,
        capacity: Capacity {
            cpus: 2.0,
            memory: 24 << 30,
            gpus: vec![GpuInfo {
                index: 0,
                name: "NVIDIA H200".into(),
                uuid: "GPU-5c1d".into(),
                memory: 141 << 30,
                mig: None,
            }],
        },
        usage: Usage {
            cpu_percent: 87.5,
            memory_available: 20 << 30,
            load_avg: [0.9, 0.7, 0.5],
        },
        workloads: (0..workloads).map(workload_summary).collect(),
        allocation: None,
    }
}

pub fn workload_sample(i: usize) -> WorkloadSample {
    WorkloadSample {
        workload_id: WorkloadId::new(format!("w-{i:04}")).unwrap(),
        run_id: Some(run_id()),
        cpu_percent: Some(50.1),
        cpu_usage_us: 1_234_567,
        memory_current: 40 << 20,
        memory_working_set: 32 << 20,
        memory_limit: Some(64 << 20),
        pids: 3,
        io_read_bps: Some(0.0),
        io_write_bps: Some(4096.0),
        uptime_s: 12.5,
        oom_kills: 0,
        gpus: vec![],
        error: None,
    }
}

/// A telemetry batch with `samples` samples.
pub fn telemetry_batch(samples: usize) -> TelemetryBatch {
    TelemetryBatch {
        node_id: node_id(),
        seq: 77,
        ts_ms: T0 + 77_000,
        collection_us: 850,
        samples: (0..samples).map(workload_sample).collect(),
    }
}

pub fn run_spec() -> RunSpec {
    RunSpec {
        run_id: Some(run_id()),
        workload: WorkloadSpec {
            workload_id: None,
            run_id: None,
            rep: None,
            ..workload_spec()
        },
        targets: RunTargets {
            nodes: vec![],
            count: Some(3),
            labels: labels(),
            strategy: PlacementStrategy::Spread,
        },
        repetitions: 3,
        stop_timeout_s: Some(30.0),
        queue: None,
        priority: None,
        ..Default::default()
    }
}

pub fn task_record() -> TaskRecord {
    TaskRecord {
        task_id: "node-1::w-7f3a::2".into(),
        node_id: node_id(),
        rep: 2,
        status: TaskStatus::Completed,
        workload: None,
        phase: Default::default(),
        attempt: 1,
        attempts: vec![],
        workload_id: Some(workload_id()),
        started_at_ms: Some(T0),
        finished_at_ms: Some(T0 + 9000),
        duration_s: Some(9.0),
        exit_code: Some(0),
        error: None,
        resources: None,
        results: None,
    }
}

fixtures! {
    "NodeInfo": NodeInfo = node_info(), "reply data of node.<node>.ping and nodes.ping";
    "NodeEvent": NodeEvent = NodeEvent {
        event_id: "node-1-1767225600000-1".into(),
        node_id: node_id(),
        kind: NodeEventKind::Started,
        ts_ms: T0,
        version: "0.1.0".into(),
        started_at_ms: T0,
        message: None,
    }, "evt.<node>.node.<kind> (stream HERD_EVENTS)";
    "LameduckRequest": LameduckRequest = LameduckRequest {
        enabled: true,
        delay_s: Some(30.0),
        stop_workloads: true,
    }, "request of node.<node>.lameduck";
    "Ack": Ack = Ack { message: Some("lameduck in 30 s".into()) }, "reply data of commands with nothing else to say";
    "WorkloadSpec": WorkloadSpec = workload_spec(), "request of node.<node>.workload.start";
    "WorkloadSpecDocker": WorkloadSpec = WorkloadSpec {
        driver: Driver::Docker,
        image: Some("herd-test/busybox:1".into()),
        pull_policy: Some(PullPolicy::Never),
        command: vec!["sh".into(), "-c".into(), "echo hello".into()],
        cwd: None,
        user: None,
        ..workload_spec()
    }, "request of node.<node>.workload.start, a container";
    "Accepted": Accepted = Accepted { workload_id: workload_id(), existing: false }, "reply data of node.<node>.workload.start";
    "StopRequest": StopRequest = StopRequest {
        workload_id: Some(workload_id()),
        run_id: None,
        signal: Some("SIGINT".into()),
        grace_s: Some(2.0),
    }, "request of node.<node>.workload.stop";
    "WorkloadGet": WorkloadGet = WorkloadGet { workload_id: workload_id() }, "request of node.<node>.workload.get";
    "WorkloadFilter": WorkloadFilter = WorkloadFilter {
        run_id: Some(run_id()),
        state: Some(WorkloadState::Running),
        labels: labels(),
    }, "request of node.<node>.workload.list";
    "WorkloadStatus": WorkloadStatus = workload_status(), "reply data of node.<node>.workload.get";
    "WorkloadList": WorkloadList = WorkloadList { workloads: vec![workload_status()] }, "reply data of node.<node>.workload.list";
    "WorkloadEvent": WorkloadEvent = WorkloadEvent {
        event_id: "node-1-1767225600000-2".into(),
        node_id: node_id(),
        workload_id: workload_id(),
        state: WorkloadState::Exited,
        ts_ms: T0 + 9000,
        run_id: Some(run_id()),
        rep: Some(2),
        pid: Some(4242),
        exit_code: Some(0),
        signal: None,
        reason: None,
        restarts: 0,
        resources: None,
    }, "evt.<node>.workload.<state> (stream HERD_EVENTS)";
    "Heartbeat": Heartbeat = heartbeat(2), "hb.<node>";
    "TelemetryBatch": TelemetryBatch = telemetry_batch(2), "telemetry.<node> (stream HERD_TELEMETRY)";
    "LogChunk": LogChunk = LogChunk {
        node_id: node_id(),
        workload_id: workload_id(),
        stream: LogStream::Stdout,
        seq: 5,
        ts_ms: T0 + 1000,
        lines: vec!["iteration 1: 1043 ops/s".into(), "iteration 2: 1051 ops/s".into()],
        dropped: 0,
        eof: false,
        attempt: 0,
    }, "logs.<node>.<workload>.<stdout|stderr> (stream HERD_LOGS_<node>)";
    "NodesQuery": NodesQuery = NodesQuery { state: Some(NodeLiveness::Up), labels: labels() }, "request of cluster.nodes";
    "NodeGet": NodeGet = NodeGet { node_id: node_id() }, "request of cluster.node.get";
    "NodeRecord": NodeRecord = NodeRecord {
        node_id: node_id(),
        liveness: NodeLiveness::Up,
        first_seen_ms: T0,
        last_seen_ms: T0 + 3_600_000,
        heartbeat: Some(heartbeat(1)),
    }, "reply data of cluster.node.get";
    "NodeList": NodeList = NodeList { nodes: vec![NodeRecord {
        node_id: node_id(),
        liveness: NodeLiveness::Stale,
        first_seen_ms: T0,
        last_seen_ms: T0 + 3_600_000,
        heartbeat: None,
    }], leader: None }, "reply data of cluster.nodes";
    "Leadership": Leadership = Leadership {
        coordinator: "node-1:4242".into(),
        term: 17,
        since_ms: T0 + 5_000,
    }, "key coordinator of KV bucket herd-leader; NodeList.leader; ClusterEvent.leader";
    "WorkloadsQuery": WorkloadsQuery = WorkloadsQuery {
        node_id: Some(node_id()),
        run_id: None,
        state: Some(WorkloadState::Running),
        labels: Labels::new(),
    }, "request of cluster.workloads";
    "ClusterWorkloadList": ClusterWorkloadList = ClusterWorkloadList { workloads: vec![ClusterWorkload {
        node_id: node_id(),
        summary: workload_summary(0),
    }] }, "reply data of cluster.workloads";
    "FitQuery": FitQuery = FitQuery {
        cpu: Some(1.5),
        memory: Some(8 << 30),
        gpus: Some(1),
        cpuset_cpus: None,
        labels: labels(),
        strategy: PlacementStrategy::Binpack,
    }, "request of cluster.query";
    "FitResult": FitResult = FitResult {
        candidates: vec![Candidate { node_id: node_id(), score: 0.75 }],
        rejected: BTreeMap::from([("node-2".to_string(), "needs 8589934592 bytes of memory, 2147483648 free".to_string())]),
        summary: None,
    }, "reply data of cluster.query";
    "RunSpec": RunSpec = run_spec(), "request of cluster.run.submit";
    "RunSubmitted": RunSubmitted = RunSubmitted { run_id: run_id(), existing: false }, "reply data of cluster.run.submit";
    "RunRef": RunRef = RunRef { run_id: run_id() }, "request of cluster.run.get and cluster.run.stop";
    "RunRecord": RunRecord = RunRecord {
        run_id: run_id(),
        state: RunState::StopFailed,
        spec: run_spec(),
        created_at_ms: T0,
        updated_at_ms: T0 + 60_000,
        tasks: vec![task_record()],
        unconfirmed_nodes: vec![NodeId::new("node-3").unwrap()],
        queued_reason: None,
    }, "reply data of cluster.run.get";
    "RunListQuery": RunListQuery = RunListQuery { state: Some(RunState::Running), limit: Some(20) }, "request of cluster.run.list";
    "RunList": RunList = RunList { runs: vec![RunSummary {
        run_id: run_id(),
        state: RunState::Completed,
        created_at_ms: T0,
        updated_at_ms: T0 + 60_000,
        tasks: BTreeMap::from([("COMPLETED".to_string(), 9)]),
    }] }, "reply data of cluster.run.list";
    "ResultsEvent": ResultsEvent = ResultsEvent {
        event_id: "node-1-results-w-7f3a".into(),
        node_id: node_id(),
        run_id: run_id(),
        workload_id: workload_id(),
        task: "stress-2".into(),
        ts_ms: T0 + 9500,
        results: TaskResults {
            objects: vec![
                ResultObject {
                    path: "metrics.json".into(),
                    object: "bench-42/node-1/stress-2/metrics.json".into(),
                    size: 31,
                    sha256: "5e0f3c8a0c1b8f6d2f1a4e3b7c9d0a1b2c3d4e5f60718293a4b5c6d7e8f90123".into(),
                },
                ResultObject {
                    path: "out/latency.csv".into(),
                    object: "bench-42/node-1/stress-2/out/latency.csv".into(),
                    size: 1_048_576,
                    sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                },
            ],
            bytes: 1_048_607,
            truncated: true,
            skipped: vec!["out/trace.bin: 300000000 bytes would pass results.max_bytes (268435456)".into()],
            metrics: [("ops_per_s".to_string(), 52000.0), ("p99_ms".to_string(), 4.2)].into(),
            metrics_error: None,
        },
    }, "evt.<node>.results (stream HERD_EVENTS)";
    "ClusterEvent": ClusterEvent = ClusterEvent {
        kind: "run.stop_failed".into(),
        ts_ms: T0 + 60_000,
        node_id: None,
        run_id: Some(run_id()),
        nodes: vec![NodeId::new("node-3").unwrap()],
        message: Some("node-3 did not confirm within 30 s".into()),
        leader: None,
    }, "cluster.evt.<kind>";
    "ReplyOk": Reply<NodeInfo> = Reply::ok(node_info()), "every reply: success";
    "ReplyError": Reply<Empty> = Reply::<Empty>::err(ErrorCode::BadRequest, "invalid JSON at `limits.memory`: invalid value: integer `-5`, expected u64"), "every reply: failure";
}
