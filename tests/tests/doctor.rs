//! `herdd doctor` on this machine, against a real nats-server: every check is printed and the
//! node can run (exit 0); with no server at the URL it cannot (exit 1), naming the NATS check.

use herd_tests::{announce, workspace_bin, NatsServer};
use std::process::Command;

fn doctor(url: &str, state: &std::path::Path, config: &std::path::Path) -> (bool, String) {
    let out = Command::new(workspace_bin("herdd"))
        .args(["--config"])
        .arg(config)
        .args(["--nats-url", url, "--state-dir"])
        .arg(state)
        .arg("doctor")
        .env_remove("HERD_DOCKER_SOCKET")
        .output()
        .expect("run herdd doctor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn doctor_passes_here_and_names_nats_when_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    std::fs::write(
        &config,
        format!(
            "[cgroup]\nroot = \"herdtest-doctor-{}\"\n",
            std::process::id()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut nats = NatsServer::start();
    let (passed, text) = doctor(&nats.url(), &state, &config);
    announce(&format!("herdd doctor:\n{text}"));
    assert!(passed, "{text}");
    for check in [
        "state_dir",
        "cgroup",
        "placement",
        "delegation",
        "exec_user",
        "nats ",
        "nats_auth",
        "jetstream",
        "docker",
        "nvml",
    ] {
        assert!(
            text.lines().any(|l| l[5..].starts_with(check)),
            "no {check} line in:\n{text}"
        );
    }
    assert!(!text.contains("FAIL"), "{text}");
    assert!(text.ends_with("this node can run herdd\n"), "{text}");

    let url = nats.url();
    nats.stop();
    let (passed, text) = doctor(&url, &state, &config);
    assert!(!passed, "doctor passed with the server down:\n{text}");
    let nats_line = text
        .lines()
        .find(|l| l.starts_with("FAIL nats "))
        .unwrap_or_else(|| panic!("no failing nats line:\n{text}"));
    assert!(nats_line.contains(&url), "{nats_line}");
    assert!(text.contains("this node cannot run herdd: nats"), "{text}");
}
