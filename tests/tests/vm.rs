//! The VM lane: herd's package on Debian bookworm booted under QEMU with systemd as PID 1 and
//! cgroup v2, with systemd 252 and with systemd >= 254 (bookworm-backports). `scripts/vm-test`
//! makes and boots the VMs and runs the checks inside them (scripts/vm/herd-vm-check); this test
//! runs it for both variants, so that the lane counts among the suite's tests.

use herd_tests::announce;
use std::path::Path;
use std::process::Command;

fn on_path(tool: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"]
        .iter()
        .any(|dir| Path::new(dir).join(tool).exists())
}

#[test]
fn package_on_debian_vms_with_systemd_252_and_254() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let missing: Vec<&str> = ["qemu-system-x86_64", "debootstrap", "mkfs.ext4"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    assert!(
        missing.is_empty(),
        "the VM lane needs {} (scripts/test installs them: qemu-system-x86, debootstrap, e2fsprogs)",
        missing.join(", ")
    );
    let debs = std::fs::read_dir(repo.join("target/debian"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("herd_"))
                .count()
        })
        .unwrap_or(0);
    assert!(
        debs > 0,
        "the VM lane installs target/debian/herd_*.deb: run scripts/package first"
    );

    // Inherits stdout and stderr: the checks' lines show as they come (cargo test --nocapture),
    // and the summary is read back from the file scripts/vm-test leaves in its cache.
    let status = Command::new(repo.join("scripts/vm-test"))
        .args(["252", "254"])
        .status()
        .expect("scripts/vm-test runs");
    let summary = std::fs::read_to_string(repo.join(".cache/vm/summary.txt")).unwrap_or_default();
    for line in summary.lines() {
        announce(&format!("backend {line}"));
    }
    assert!(
        status.success(),
        "scripts/vm-test failed (its FAIL lines are above; each VM's console log is in .cache/vm/):\n{summary}"
    );
    assert_eq!(
        summary.lines().filter(|l| l.starts_with("vm ")).count(),
        2,
        "one summary line per VM:\n{summary}"
    );
}
