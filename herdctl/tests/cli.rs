//! herdctl's command line, run as the operator runs it.

use std::process::Command;

fn herdctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herdctl"));
    for var in ["HERD_NATS_URL", "HERD_PREFIX"] {
        c.env_remove(var);
    }
    c
}

#[test]
fn herdctl_explains_an_unreachable_server() {
    let out = herdctl()
        .args(["--nats-url", "nats://127.0.0.1:1", "ping", "n1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{err}"
    );
}

#[test]
fn sim_is_no_longer_a_herdctl_command() {
    // The synthetic-heartbeat load generator is `herd-sim`, in herd-benches.
    let out = herdctl().args(["sim", "--nodes", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let help = herdctl().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("run") && help.contains("top"), "{help}");
    assert!(!help.contains("synthetic"), "{help}");
}
