//! Test support, one module per service the integration tests drive, as wasmCloud's
//! `tests/common/` has it: a real `nats-server -js` on a free port with a temporary store
//! ([`NatsServer`]), herdd processes ([`Herdd`]), a coordinator with agents ([`Fleet`]), the
//! Docker engine and its test image, and a NATS client's requests and waits. Servers and daemons
//! are stopped on drop. Each test binary prints which backends it exercised.

mod browser;
mod client;
mod cluster;
mod docker;
mod fleet;
mod herdd;
mod nats;
mod process;
mod runs;

pub use browser::Browser;
pub use client::{
    connect, content_type, eventually, node_call, real_cgroup_backend, request, wait_for_node,
    wait_workload_event, wait_workloads_events,
};
pub use cluster::{docker, Cluster, CLUSTER_TEST_IMAGE};
pub use docker::{containers_of, docker_test_image};
pub use fleet::Fleet;
pub use fleet::{run_events, running_events};
pub use herd_bus;
pub use herdd::{state_dir, Herdd, HerddOptions};
pub use nats::{nats_version, NatsServer, TEST_MAX_PAYLOAD};
pub use process::{herdctl, proc_args, proc_state_and_parent, signal, workspace_bin};
pub use runs::{assert_stopped_in_first_rep, wait_ready_lines};

use std::io::Write;
use std::net::TcpListener;

/// Prints a line past the test harness's capture, so CI logs show which real components ran.
pub fn announce(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "herd-tests: {line}");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
