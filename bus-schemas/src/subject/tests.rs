use super::*;
use crate::messages::{NodeLiveness, RunState};

fn node() -> NodeId {
    NodeId::new("n1").unwrap()
}

#[test]
fn every_built_subject_parses_back() {
    let s = Subjects::default();
    let wl = WorkloadId::new("w-1").unwrap();
    for verb in NodeVerb::ALL {
        let subj = s.node_command(&node(), verb);
        assert_eq!(
            s.parse(&subj).unwrap(),
            Subject::NodeCommand { node: node(), verb }
        );
    }
    for verb in ClusterVerb::ALL {
        assert_eq!(s.parse(&s.cluster(verb)).unwrap(), Subject::Cluster(verb));
    }
    assert_eq!(s.parse(&s.nodes_ping()).unwrap(), Subject::NodesPing);
    assert_eq!(
        s.parse(&s.heartbeat(&node())).unwrap(),
        Subject::Heartbeat { node: node() }
    );
    assert_eq!(
        s.parse(&s.telemetry(&node())).unwrap(),
        Subject::Telemetry { node: node() }
    );
    assert_eq!(
        s.parse(&s.logs(&node(), &wl, LogStream::Stderr)).unwrap(),
        Subject::Logs {
            node: node(),
            workload: wl,
            stream: LogStream::Stderr
        }
    );
    assert_eq!(
        s.parse(&s.workload_event(&node(), WorkloadState::OomKilled))
            .unwrap(),
        Subject::WorkloadEvent {
            node: node(),
            state: WorkloadState::OomKilled
        }
    );
    assert_eq!(
        s.parse(&s.node_event(&node(), NodeEventKind::Started))
            .unwrap(),
        Subject::NodeEvent {
            node: node(),
            kind: NodeEventKind::Started
        }
    );
    assert_eq!(
        s.parse(&s.results_event(&node())).unwrap(),
        Subject::Results { node: node() }
    );
    for kind in ClusterEventKind::all() {
        assert_eq!(
            s.parse(&s.cluster_event(kind)).unwrap(),
            Subject::ClusterEvent { kind }
        );
    }
}

#[test]
fn literal_subjects_match_the_design() {
    let s = Subjects::default();
    assert_eq!(
        s.node_command(&node(), NodeVerb::Ping),
        "herd.v1.node.n1.ping"
    );
    assert_eq!(
        s.node_command(&node(), NodeVerb::WorkloadStart),
        "herd.v1.node.n1.workload.start"
    );
    assert_eq!(s.node_commands(&node()), "herd.v1.node.n1.>");
    assert_eq!(s.nodes_ping(), "herd.v1.nodes.ping");
    assert_eq!(
        s.node_event(&node(), NodeEventKind::Stopping),
        "herd.v1.evt.n1.node.stopping"
    );
    assert_eq!(s.results_event(&node()), "herd.v1.evt.n1.results");
    assert_eq!(s.events_all(), "herd.v1.evt.>");
    assert_eq!(s.node_events_all(), "herd.v1.evt.*.node.*");
    assert_eq!(s.workload_events_all(), "herd.v1.evt.*.workload.*");
    assert_eq!(s.events_stream(), "HERD_EVENTS");
    assert_eq!(s.telemetry_stream(), "HERD_TELEMETRY");
    assert_eq!(s.logs_stream(&node()), "HERD_LOGS_n1");
    assert_eq!(s.logs_of_node(&node()), "herd.v1.logs.n1.>");
    assert_eq!(s.workload_events_of(&node()), "herd.v1.evt.n1.workload.*");
    assert_eq!(
        s.cluster(ClusterVerb::RunSubmit),
        "herd.v1.cluster.run.submit"
    );
    assert_eq!(
        s.cluster(ClusterVerb::RunCompare),
        "herd.v1.cluster.run.compare"
    );
    assert_eq!(
        s.parse("herd.v1.cluster.run.summary").unwrap(),
        Subject::Cluster(ClusterVerb::RunSummary)
    );
    assert_eq!(
        s.cluster_event(ClusterEventKind::Node(NodeLiveness::Lost)),
        "herd.v1.cluster.evt.node.lost"
    );
    assert_eq!(
        s.cluster_event(ClusterEventKind::Run(RunState::StopFailed)),
        "herd.v1.cluster.evt.run.stop_failed"
    );
    let custom = Subjects::new("acme.herd").unwrap();
    assert_eq!(custom.nodes_ping(), "acme.herd.v1.nodes.ping");
    assert_eq!(custom.events_stream(), "ACME_HERD_EVENTS");
    assert_eq!(custom.logs_stream(&node()), "ACME_HERD_LOGS_n1");
}

/// NATS wildcard matching, enough to check which subjects a subscription gets.
fn matches(pattern: &str, subject: &str) -> bool {
    let (p, s): (Vec<&str>, Vec<&str>) =
        (pattern.split('.').collect(), subject.split('.').collect());
    for (i, tok) in p.iter().enumerate() {
        match *tok {
            ">" => return s.len() > i,
            "*" if i < s.len() => {}
            t if s.get(i) == Some(&t) => {}
            _ => return false,
        }
    }
    p.len() == s.len()
}

#[test]
fn cluster_requests_cover_every_verb_and_no_event() {
    let s = Subjects::default();
    let subs = s.cluster_requests();
    for verb in ClusterVerb::ALL {
        assert!(
            subs.iter().any(|p| matches(p, &s.cluster(verb))),
            "{verb:?}"
        );
    }
    for kind in ClusterEventKind::all() {
        assert!(
            !subs.iter().any(|p| matches(p, &s.cluster_event(kind))),
            "{kind}"
        );
    }
    let w = WorkloadId::new("w").unwrap();
    assert!(matches(
        &s.workload_events_all(),
        &s.workload_event(&node(), WorkloadState::Exited)
    ));
    assert!(!matches(
        &s.workload_events_all(),
        &s.node_event(&node(), NodeEventKind::Started)
    ));
    assert!(matches(
        &s.node_events_all(),
        &s.node_event(&node(), NodeEventKind::Stopping)
    ));
    // Results events travel in the events stream, apart from node and workload events.
    assert!(matches(&s.events_all(), &s.results_event(&node())));
    assert!(!matches(&s.node_events_all(), &s.results_event(&node())));
    assert!(!matches(
        &s.workload_events_all(),
        &s.results_event(&node())
    ));
    assert!(!matches(
        &s.events_all(),
        &s.logs(&node(), &w, LogStream::Stdout)
    ));
    assert!(matches(
        &s.logs_of_node(&node()),
        &s.logs(&node(), &w, LogStream::Stderr)
    ));
    let other = NodeId::new("n2").unwrap();
    assert!(!matches(
        &s.logs_of_node(&other),
        &s.logs(&node(), &w, LogStream::Stdout)
    ));
    assert!(matches(
        &s.workload_events_of(&node()),
        &s.workload_event(&node(), WorkloadState::Exited)
    ));
    assert!(!matches(
        &s.workload_events_of(&other),
        &s.workload_event(&node(), WorkloadState::Exited)
    ));
}

#[test]
fn bad_subjects_are_explained() {
    let s = Subjects::default();
    assert!(matches!(
        s.parse("herd.v1.node.n1.reboot"),
        Err(SubjectError::UnknownVerb { verb, .. }) if verb == "reboot"
    ));
    assert!(matches!(
        s.parse("herd.v1.node.n1.workload.explode"),
        Err(SubjectError::UnknownVerb { .. })
    ));
    assert!(matches!(
        s.parse("other.v1.node.n1.ping"),
        Err(SubjectError::ForeignPrefix(..))
    ));
    assert!(matches!(
        s.parse("herd.v1.node"),
        Err(SubjectError::Unknown(_))
    ));
    assert!(matches!(
        s.parse("herd.v1.bogus.x"),
        Err(SubjectError::Unknown(_))
    ));
    assert!(matches!(
        s.parse("herd.v1.logs.n1.w1.stdin"),
        Err(SubjectError::Unknown(_))
    ));
    for subject in ["herd.v1.evt.n1.results.x", "herd.v1.evt.n1.workload"] {
        assert!(
            matches!(s.parse(subject), Err(SubjectError::Unknown(_))),
            "{subject}"
        );
    }
    for (subject, bad_kind) in [
        ("herd.v1.evt.n1.node.rebooted", "rebooted"),
        ("herd.v1.evt.n1.workload.queued", "queued"),
        ("herd.v1.evt.n1.workload.exited.x", "exited.x"),
        ("herd.v1.cluster.evt.node.gone", "node.gone"),
        ("herd.v1.cluster.evt.run.waiting", "run.waiting"),
    ] {
        assert_eq!(
            s.parse(subject),
            Err(SubjectError::UnknownEventKind {
                subject: subject.to_string(),
                kind: bad_kind.to_string()
            }),
            "{subject}"
        );
    }
    assert!(Subjects::new("bad prefix").is_err());
    assert!(Subjects::new("a..b").is_err());
}
