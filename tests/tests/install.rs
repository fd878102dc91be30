//! deploy/install.sh (hosts without dpkg) into a scratch root: binaries, unit, config,
//! completions and man pages land where the package puts them, and an existing configuration
//! is never overwritten.

use herd_tests::workspace_bin;
use std::path::Path;
use std::process::Command;

fn install(root: &Path, dist: &Path, prefix: &str) -> String {
    let bin_dir = workspace_bin("herdd").parent().unwrap().to_path_buf();
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/install.sh"))
        .arg("--root")
        .arg(root)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--dist")
        .arg(dist)
        .args(["--prefix", prefix])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install.sh failed:\n{said}");
    said
}

#[test]
fn install_sh_puts_every_file_in_place_and_keeps_an_existing_config() {
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    let gen = Command::new(workspace_bin("herd-gen"))
        .arg(&dist)
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let root = dir.path().join("root");
    install(&root, &dist, "/usr/local");
    for file in [
        "usr/local/bin/herdd",
        "usr/local/bin/herdctl",
        "usr/local/bin/herd-shim",
        "etc/systemd/system/herdd.service",
        "etc/herd/herd.toml",
        "usr/local/share/bash-completion/completions/herdctl",
        "usr/local/share/zsh/vendor-completions/_herdd",
        "usr/local/share/fish/vendor_completions.d/herdd.fish",
        "usr/local/share/man/man1/herdd.1",
        "usr/local/share/man/man1/herdctl-run.1",
        "var/lib/herd",
    ] {
        assert!(root.join(file).exists(), "{file} was not installed");
    }
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/herdd.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/herdd --config /etc/herd/herd.toml run"),
        "{unit}"
    );
    let installed = std::process::Command::new(root.join("usr/local/bin/herdd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&installed.stdout).starts_with("herdd "));

    // A second install keeps the operator's configuration.
    std::fs::write(root.join("etc/herd/herd.toml"), "node_id = \"mine\"\n").unwrap();
    let said = install(&root, &dist, "/usr/local");
    assert!(
        said.contains("kept the existing /etc/herd/herd.toml"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/herd/herd.toml")).unwrap(),
        "node_id = \"mine\"\n"
    );
    assert!(root.join("etc/herd/herd.toml.new").exists());
}
