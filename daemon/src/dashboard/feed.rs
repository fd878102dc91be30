//! What a page's live connection carries, without I/O: which NATS subjects a page's topics
//! need, what each message becomes for the page (a server-sent event with a small JSON body),
//! and each client's bounded queue, which drops the oldest telemetry first so that a slow
//! browser never holds up the coordinator.

use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{
    ClusterEvent, Heartbeat, LogChunk, NodeEvent, NodeId, ResultsEvent, RunId, Subject, Subjects,
    TelemetryBatch, WorkloadEvent, WorkloadId,
};
use serde_json::json;
use std::collections::VecDeque;

/// Events a client's queue holds at most before it drops some.
pub const QUEUE_CAP: usize = 256;

/// What a page follows live (`/sse?topics=fleet,node:n1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// Every node's heartbeat, liveness and workload changes.
    Fleet,
    /// One node: its heartbeats, events and telemetry.
    Node(NodeId),
    /// One workload: its events, telemetry and output.
    Workload(NodeId, WorkloadId),
    /// One run: its state changes and its tasks' workload events.
    Run(RunId),
    /// Cluster events and node events of every node.
    Events,
}

impl Topic {
    pub fn parse(s: &str) -> Result<Topic, String> {
        let mut parts = s.split(':');
        let topic = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("fleet"), None, ..) => Topic::Fleet,
            (Some("events"), None, ..) => Topic::Events,
            (Some("node"), Some(n), None, _) => {
                Topic::Node(NodeId::new(n).map_err(|e| e.to_string())?)
            }
            (Some("workload"), Some(n), Some(w), None) => Topic::Workload(
                NodeId::new(n).map_err(|e| e.to_string())?,
                WorkloadId::new(w).map_err(|e| e.to_string())?,
            ),
            (Some("run"), Some(r), None, _) => {
                Topic::Run(RunId::new(r).map_err(|e| e.to_string())?)
            }
            _ => {
                return Err(format!(
                "topic '{s}' is none of fleet, events, node:NODE, workload:NODE:WORKLOAD, run:RUN"
            ))
            }
        };
        Ok(topic)
    }

    /// Comma-separated topics; at most 8.
    pub fn parse_list(s: &str) -> Result<Vec<Topic>, String> {
        let topics = s
            .split(',')
            .filter(|t| !t.is_empty())
            .map(Topic::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if topics.len() > 8 {
            return Err(format!("{} topics: at most 8", topics.len()));
        }
        Ok(topics)
    }

    /// The subjects this topic listens on.
    pub fn subjects(&self, s: &Subjects) -> Vec<String> {
        let cluster_events = s.cluster_events_all();
        match self {
            Topic::Fleet => vec![
                s.heartbeats_all(),
                s.workload_events_all(),
                s.node_events_all(),
                cluster_events,
            ],
            Topic::Node(n) => vec![
                s.heartbeat(n),
                s.workload_events_of(n),
                s.node_events_of(n),
                s.telemetry(n),
                cluster_events,
            ],
            Topic::Workload(n, w) => vec![s.workload_events_of(n), s.telemetry(n), s.logs_of(n, w)],
            Topic::Run(_) => vec![
                s.workload_events_all(),
                s.results_events_all(),
                cluster_events,
            ],
            Topic::Events => vec![s.node_events_all(), cluster_events],
        }
    }
}

/// One server-sent event: `event: <kind>` and one line of JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub kind: &'static str,
    pub data: String,
}

impl Sse {
    fn new(kind: &'static str, data: serde_json::Value) -> Sse {
        Sse {
            kind,
            data: data.to_string(),
        }
    }

    /// The event as it goes on the wire, with its id.
    pub fn frame(&self, id: u64) -> String {
        format!("id: {id}\nevent: {}\ndata: {}\n\n", self.kind, self.data)
    }
}

/// What a message on `subject` means to a page following `topics`; nothing when it concerns
/// none of them (another workload's telemetry, another run's events) or does not decode.
pub fn translate(
    subjects: &Subjects,
    topics: &[Topic],
    subject: &str,
    payload: &[u8],
) -> Option<Sse> {
    let limits = DecodeLimits::default();
    let parsed = subjects.parse(subject).ok()?;
    let wants = |f: &dyn Fn(&Topic) -> bool| topics.iter().any(f);
    match parsed {
        Subject::Heartbeat { node } => {
            if !wants(&|t| matches!(t, Topic::Fleet) || matches!(t, Topic::Node(n) if *n == node)) {
                return None;
            }
            let hb: Heartbeat = codec::decode(payload, Encoding::MsgPack, &limits).ok()?;
            let used = hb.capacity.memory.saturating_sub(hb.usage.memory_available);
            Some(Sse::new(
                "hb",
                json!({"node": hb.node_id, "state": hb.state, "ts": hb.ts_ms,
                       "cpu_percent": hb.usage.cpu_percent, "cpus": hb.capacity.cpus,
                       "memory_used": used, "memory": hb.capacity.memory,
                       "workloads": hb.workloads.len()}),
            ))
        }
        Subject::WorkloadEvent { node, .. } => {
            let ev: WorkloadEvent = codec::decode(payload, Encoding::MsgPack, &limits).ok()?;
            let concerns = |t: &Topic| match t {
                Topic::Fleet => true,
                Topic::Node(n) => *n == node,
                Topic::Workload(n, w) => *n == node && *w == ev.workload_id,
                Topic::Run(r) => ev.run_id.as_ref() == Some(r),
                Topic::Events => false,
            };
            if !wants(&concerns) {
                return None;
            }
            Some(Sse::new(
                "workload",
                json!({"node": ev.node_id, "workload": ev.workload_id, "state": ev.state,
                       "ts": ev.ts_ms, "run": ev.run_id, "rep": ev.rep,
                       "exit_code": ev.exit_code, "signal": ev.signal, "reason": ev.reason,
                       "restarts": ev.restarts}),
            ))
        }
        Subject::NodeEvent { node, .. } => {
            let concerns = |t: &Topic| match t {
                Topic::Fleet | Topic::Events => true,
                Topic::Node(n) => *n == node,
                _ => false,
            };
            if !wants(&concerns) {
                return None;
            }
            let ev: NodeEvent = codec::decode(payload, Encoding::MsgPack, &limits).ok()?;
            Some(Sse::new(
                "node",
                json!({"node": ev.node_id, "kind": ev.kind, "ts": ev.ts_ms, "message": ev.message}),
            ))
        }
        Subject::ClusterEvent { .. } => {
            let ev: ClusterEvent = codec::decode(payload, Encoding::MsgPack, &limits).ok()?;
            let concerns = |t: &Topic| match t {
                Topic::Fleet | Topic::Events => true,
                Topic::Node(n) => ev.node_id.as_ref() == Some(n),
                Topic::Run(r) => ev.run_id.as_ref() == Some(r),
                Topic::Workload(..) => false,
            };
            if !wants(&concerns) {
                return None;
            }
            Some(Sse::new(
                "cluster",
                json!({"kind": ev.kind, "ts": ev.ts_ms, "node": ev.node_id, "run": ev.run_id,
                       "nodes": ev.nodes, "message": ev.message}),
            ))
        }
        Subject::Results { .. } => {
            let ev: ResultsEvent = codec::decode(payload, Encoding::MsgPack, &limits).ok()?;
            if !wants(&|t| matches!(t, Topic::Run(r) if *r == ev.run_id)) {
                return None;
            }
            Some(Sse::new(
                "results",
                json!({"node": ev.node_id, "run": ev.run_id, "task": ev.task, "ts": ev.ts_ms}),
            ))
        }
        Subject::Telemetry { node } => {
            let keep = |w: &WorkloadId| {
                topics.iter().any(|t| match t {
                    Topic::Node(n) => *n == node,
                    Topic::Workload(n, ww) => *n == node && ww == w,
                    _ => false,
                })
            };
            let batch: TelemetryBatch = codec::decode(payload, Encoding::MsgPack, &limits).ok()?;
            let samples: Vec<_> = batch
                .samples
                .iter()
                .filter(|s| keep(&s.workload_id) && s.error.is_none())
                .map(|s| {
                    json!({"workload": s.workload_id, "cpu": s.cpu_percent,
                           "memory": s.memory_working_set, "gpu": s.gpus.first().map(|g| g.utilization_percent)})
                })
                .collect();
            if samples.is_empty() {
                return None;
            }
            Some(Sse::new(
                "telemetry",
                json!({"node": batch.node_id, "ts": batch.ts_ms, "samples": samples}),
            ))
        }
        Subject::Logs { node, workload, .. } => {
            if !wants(&|t| matches!(t, Topic::Workload(n, w) if *n == node && *w == workload)) {
                return None;
            }
            let chunk: LogChunk = codec::decode(payload, Encoding::MsgPack, &limits).ok()?;
            Some(Sse::new(
                "log",
                json!({"workload": chunk.workload_id, "stream": chunk.stream, "lines": chunk.lines.len(),
                       "eof": chunk.eof}),
            ))
        }
        _ => None,
    }
}

/// A client's events not yet written to it. Full, it drops the oldest telemetry (a chart
/// misses a point) before anything else, and counts what it dropped.
#[derive(Debug)]
pub struct ClientQueue {
    items: VecDeque<Sse>,
    cap: usize,
    pub dropped: u64,
}

impl ClientQueue {
    pub fn new(cap: usize) -> ClientQueue {
        ClientQueue {
            items: VecDeque::with_capacity(cap.min(64)),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    pub fn push(&mut self, ev: Sse) {
        if self.items.len() >= self.cap {
            let victim = self
                .items
                .iter()
                .position(|e| e.kind == "telemetry")
                .unwrap_or(0);
            self.items.remove(victim);
            self.dropped += 1;
        }
        self.items.push_back(ev);
    }

    pub fn pop(&mut self) -> Option<Sse> {
        self.items.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::{WorkloadSample, WorkloadState};

    fn sse(kind: &'static str, n: u32) -> Sse {
        Sse {
            kind,
            data: n.to_string(),
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_telemetry_first() {
        let mut q = ClientQueue::new(3);
        q.push(sse("workload", 1));
        q.push(sse("telemetry", 2));
        q.push(sse("telemetry", 3));
        q.push(sse("workload", 4));
        assert_eq!(q.dropped, 1);
        let kept: Vec<_> = std::iter::from_fn(|| q.pop()).map(|e| e.data).collect();
        assert_eq!(kept, ["1", "3", "4"]);
        let mut q = ClientQueue::new(2);
        for n in 0..5 {
            q.push(sse("workload", n));
        }
        assert_eq!(q.dropped, 3, "without telemetry the oldest goes");
        let kept: Vec<_> = std::iter::from_fn(|| q.pop()).map(|e| e.data).collect();
        assert_eq!(kept, ["3", "4"]);
    }

    #[test]
    fn topics_parse_or_say_what_they_can_be() {
        assert_eq!(
            Topic::parse_list("fleet,node:n1").unwrap(),
            vec![Topic::Fleet, Topic::Node(NodeId::new("n1").unwrap())]
        );
        assert!(Topic::parse("workload:n1")
            .unwrap_err()
            .contains("workload:NODE:WORKLOAD"));
        assert!(Topic::parse("node:a b").is_err());
        assert!(Topic::parse_list(&["fleet"; 9].join(",")).is_err());
    }

    fn batch() -> Vec<u8> {
        let sample = |w: &str, cpu: f64| WorkloadSample {
            workload_id: WorkloadId::new(w).unwrap(),
            run_id: None,
            cpu_percent: Some(cpu),
            cpu_usage_us: 0,
            memory_current: 0,
            memory_working_set: 1 << 20,
            memory_limit: None,
            pids: 1,
            io_read_bps: None,
            io_write_bps: None,
            uptime_s: 1.0,
            oom_kills: 0,
            gpus: vec![],
            error: None,
        };
        let b = TelemetryBatch {
            node_id: NodeId::new("n1").unwrap(),
            seq: 1,
            ts_ms: 5,
            collection_us: 1,
            samples: vec![sample("w1", 50.0), sample("w2", 10.0)],
        };
        codec::encode(&b, Encoding::MsgPack).unwrap()
    }

    #[test]
    fn telemetry_reaches_only_the_pages_that_show_it() {
        let s = Subjects::default();
        let subject = s.telemetry(&NodeId::new("n1").unwrap());
        let w1 = [Topic::parse("workload:n1:w1").unwrap()];
        let ev = translate(&s, &w1, &subject, &batch()).unwrap();
        assert_eq!(ev.kind, "telemetry");
        assert!(
            ev.data.contains("\"w1\"") && !ev.data.contains("\"w2\""),
            "{}",
            ev.data
        );
        let node = [Topic::parse("node:n1").unwrap()];
        assert!(translate(&s, &node, &subject, &batch())
            .unwrap()
            .data
            .contains("\"w2\""));
        let other = [Topic::parse("node:n2").unwrap(), Topic::Fleet];
        assert_eq!(translate(&s, &other, &subject, &batch()), None);
        assert_eq!(translate(&s, &w1, &subject, b"not msgpack"), None);
    }

    #[test]
    fn a_workload_event_reaches_its_node_its_run_and_the_fleet() {
        let s = Subjects::default();
        let ev = WorkloadEvent {
            event_id: "e".into(),
            node_id: NodeId::new("n1").unwrap(),
            workload_id: WorkloadId::new("w1").unwrap(),
            state: WorkloadState::Running,
            ts_ms: 1,
            run_id: Some(RunId::new("r1").unwrap()),
            rep: Some(0),
            pid: None,
            exit_code: None,
            signal: None,
            reason: None,
            restarts: 0,
            resources: None,
        };
        let payload = codec::encode(&ev, Encoding::MsgPack).unwrap();
        let subject = s.workload_event(&ev.node_id, WorkloadState::Running);
        for t in ["fleet", "node:n1", "workload:n1:w1", "run:r1"] {
            let got = translate(&s, &[Topic::parse(t).unwrap()], &subject, &payload);
            assert!(got.unwrap().data.contains("\"running\""), "{t}");
        }
        for t in ["node:n2", "workload:n1:w2", "run:r2", "events"] {
            assert_eq!(
                translate(&s, &[Topic::parse(t).unwrap()], &subject, &payload),
                None,
                "{t}"
            );
        }
    }

    #[test]
    fn a_results_event_reaches_its_runs_page_only() {
        let s = Subjects::default();
        let ev = ResultsEvent {
            event_id: "e".into(),
            node_id: NodeId::new("n1").unwrap(),
            run_id: RunId::new("r1").unwrap(),
            workload_id: WorkloadId::new("w1").unwrap(),
            task: "task-1".into(),
            ts_ms: 1,
            results: Default::default(),
        };
        let payload = codec::encode(&ev, Encoding::MsgPack).unwrap();
        let subject = s.results_event(&ev.node_id);
        let run = [Topic::parse("run:r1").unwrap()];
        assert_eq!(
            translate(&s, &run, &subject, &payload).unwrap().kind,
            "results"
        );
        assert!(Topic::Run(RunId::new("r1").unwrap())
            .subjects(&s)
            .contains(&s.results_events_all()));
        for t in ["run:r2", "fleet", "node:n1"] {
            assert_eq!(
                translate(&s, &[Topic::parse(t).unwrap()], &subject, &payload),
                None,
                "{t}"
            );
        }
    }
}
