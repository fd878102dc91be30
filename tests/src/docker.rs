//! The Docker engine the docker driver's tests need, and the containers herdd left on it.

use crate::announce;
use std::path::Path;
use std::process::Command;

/// The Docker test image (`scripts/test-image` builds it from Debian's busybox-static, with no
/// registry); the engine's version is announced once per test binary. Panics with what is
/// missing when the machine has no usable Docker engine.
pub fn docker_test_image() -> &'static str {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let version = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output();
        let version = match version {
            Ok(out) if out.status.success() => {
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
            Ok(out) => panic!(
                "these tests need a running Docker engine; `docker version` says: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => {
                panic!("these tests need Docker (the docker command and a running engine): {e}")
            }
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-image");
        let status = Command::new(&script)
            .status()
            .expect("run scripts/test-image");
        assert!(status.success(), "{} failed: {status}", script.display());
        let image = "herd-test/busybox:1".to_string();
        announce(&format!(
            "backend Docker engine {version}, test image {image} (local, no registry)"
        ));
        image
    })
}

/// Ids of the containers (running or not) labelled `herd.node=<node>`.
pub fn containers_of(node: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter"])
        .arg(format!("label=herd.node={node}"))
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "docker ps: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
