//! herdd's command line: configuration precedence (file < environment < flags) and clear errors
//! for bad configuration. (herdctl's are in herdctl/tests.)

use std::process::Command;

fn herdd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herdd"));
    for var in [
        "HERD_NATS_URL",
        "HERD_NODE_ID",
        "HERD_ROLES",
        "HERD_STATE_DIR",
        "HERD_CONFIG",
        "HERD_LABELS",
    ] {
        c.env_remove(var);
    }
    c
}

fn effective(cmd: &mut Command) -> toml::Value {
    let out = cmd.arg("config").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

#[test]
fn flags_beat_environment_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herd.toml");
    std::fs::write(
        &file,
        "node_id = \"from-file\"\nstate_dir = \"/file/state\"\nlabels = { zone = \"a\" }\n\
         [nats]\nurls = [\"nats://file:4222\"]\ntoken = \"s3cret\"\n",
    )
    .unwrap();

    let only_file = effective(herdd().arg("--config").arg(&file));
    assert_eq!(only_file["node_id"].as_str(), Some("from-file"));
    assert_eq!(
        only_file["nats"]["urls"][0].as_str(),
        Some("nats://file:4222")
    );
    assert_eq!(only_file["nats"]["token"].as_str(), Some("<redacted>"));

    let env = effective(
        herdd()
            .arg("--config")
            .arg(&file)
            .env("HERD_NODE_ID", "from-env")
            .env("HERD_NATS_URL", "nats://env1:4222,nats://env2:4222")
            .env("HERD_STATE_DIR", "/env/state"),
    );
    assert_eq!(env["node_id"].as_str(), Some("from-env"));
    assert_eq!(env["nats"]["urls"].as_array().unwrap().len(), 2);
    assert_eq!(env["state_dir"].as_str(), Some("/env/state"));

    // Every documented connection flag is accepted (a clap id once renamed one silently).
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let all_flags = effective(
        herdd()
            .arg("--config")
            .arg(&empty)
            .args([
                "--prefix",
                "acme",
                "--nats-url",
                "nats://x:1",
                "--nats-user",
                "u",
                "--nats-password",
                "p",
                "--nats-tls-ca",
                "/ca.pem",
                "--nats-tls-cert",
                "/c.pem",
                "--nats-tls-key",
                "/k.pem",
                "--nats-tls",
            ])
            .env_remove("HERD_NATS_TOKEN"),
    );
    assert_eq!(all_flags["nats"]["prefix"].as_str(), Some("acme"));
    assert_eq!(all_flags["nats"]["tls_required"].as_bool(), Some(true));
    assert_eq!(all_flags["nats"]["tls_key"].as_str(), Some("/k.pem"));

    let flags = effective(
        herdd()
            .arg("--config")
            .arg(&file)
            .env("HERD_NODE_ID", "from-env")
            .env("HERD_STATE_DIR", "/env/state")
            .args([
                "--node-id",
                "from-flag",
                "--label",
                "rack=r9",
                "--roles",
                "node,coordinator",
            ]),
    );
    assert_eq!(flags["node_id"].as_str(), Some("from-flag"));
    assert_eq!(flags["state_dir"].as_str(), Some("/env/state"));
    assert_eq!(flags["labels"]["zone"].as_str(), Some("a"));
    assert_eq!(flags["labels"]["rack"].as_str(), Some("r9"));
    assert_eq!(flags["roles"].as_array().unwrap().len(), 2);
}

#[test]
fn node_id_defaults_to_the_sanitized_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let out = herdd()
        .arg("--config")
        .arg(&empty)
        .arg("config")
        .output()
        .unwrap();
    assert!(out.status.success());
    // Unset in the config: herdd derives it when it starts; the printed config leaves it out.
    let v: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert!(v.get("node_id").is_none());
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herd.toml");
    for (text, says) in [
        ("node_idd = \"x\"", "unknown field `node_idd`"),
        ("node_id = \"a.b\"", "may contain only"),
        ("[nats]\nuser = \"u\"", "user and password go together"),
        ("[nats]\nurls = []", "nats.urls is empty"),
        ("roles = [\"boss\"]", "unknown variant `boss`"),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = herdd()
            .arg("--config")
            .arg(&file)
            .arg("config")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(says), "{text}: {err}");
    }
    let out = herdd()
        .args(["--config", "/nonexistent/herd.toml", "config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/herd.toml"));
    let out = herdd()
        .args(["--node-id", "bad id", "config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
