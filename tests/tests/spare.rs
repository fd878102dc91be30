//! herdd keeps one workload supervisor started ahead of need (`herd-shim --spare`): starts take
//! it, a new one replaces it, and it never outlives herdd, even killed with SIGKILL.

use herd_tests::{
    announce, connect, eventually, node_call, wait_for_node, Herdd, HerddOptions, NatsServer,
};
use serde_json::json;
use std::time::Duration;

/// Pids of `herd-shim --spare <dir>` processes whose `<dir>` is `workloads`, each with its
/// parent's pid.
fn spares(workloads: &std::path::Path) -> Vec<(i32, i32)> {
    let mut out = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Some(args) = herd_tests::proc_args(pid) else {
            continue;
        };
        if args.get(1).map(String::as_str) != Some("--spare")
            || args.get(2).map(std::path::Path::new) != Some(workloads)
        {
            continue;
        }
        if let Some((state, parent)) = herd_tests::proc_state_and_parent(pid) {
            if state != 'Z' {
                out.push((pid, parent));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_spare_supervisor_takes_each_start_and_ends_with_herdd() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let root = format!("herd-test-spare-{}", std::process::id());
    let mut herdd = Herdd::start_with(HerddOptions {
        config_toml: Some(&format!("[cgroup]\nroot = \"{root}\"\n")),
        ..HerddOptions::new("sparer", nats.url())
    });
    wait_for_node(&client, "sparer").await;
    let workloads = herdd.state_dir.join("workloads");
    let herdd_pid = herdd.pid() as i32;
    let first = eventually(Duration::from_secs(10), "a spare supervisor", || async {
        match spares(&workloads).as_slice() {
            [(pid, ppid)] if *ppid == herdd_pid => Some(*pid),
            _ => None,
        }
    })
    .await;
    announce(&format!(
        "spare supervisor: pid {first}, parent herdd {herdd_pid}"
    ));
    let v = node_call(
        &client,
        "sparer",
        "workload.start",
        json!({"workload_id": "w1", "command": ["sleep", "30"]}),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let pid = eventually(Duration::from_secs(10), "w1 running", || async {
        let r = node_call(
            &client,
            "sparer",
            "workload.get",
            json!({"workload_id": "w1"}),
        )
        .await;
        (r["data"]["state"] == "running").then(|| r["data"]["pid"].as_i64().unwrap() as i32)
    })
    .await;
    // The workload's parent is the spare that was waiting.
    let (_, parent) = herd_tests::proc_state_and_parent(pid).expect("the workload runs");
    assert_eq!(
        parent, first,
        "the waiting spare supervises the started workload"
    );
    // A new spare waits for the next start.
    let second = eventually(Duration::from_secs(10), "a new spare", || async {
        spares(&workloads)
            .into_iter()
            .find(|(p, ppid)| *p != first && *ppid == herdd_pid)
            .map(|(p, _)| p)
    })
    .await;
    announce(&format!("after a start: the new spare is pid {second}"));
    // SIGKILL: herdd cannot clean up; the spare sees its stdin close and ends.
    herdd.signal(nix::sys::signal::Signal::SIGKILL);
    herdd.wait_exit(Duration::from_secs(5));
    eventually(
        Duration::from_secs(5),
        "the spare gone with herdd",
        || async { (!spares(&workloads).iter().any(|(p, _)| *p == second)).then_some(()) },
    )
    .await;
    // The workload's own supervisor (the first spare) keeps it running: stop them by hand.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    );
    remove_cgroups(&root);
}

/// Removes what the killed herdd left of its cgroups: `<root>/wl-w1` and `<root>` in every
/// hierarchy (the killed processes leave them within a moment).
fn remove_cgroups(root: &str) {
    for _ in 0..50 {
        let mut left = 0;
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = h.path().join(root);
            if !dir.exists() {
                continue;
            }
            let _ = std::fs::remove_dir(dir.join("wl-w1"));
            if std::fs::remove_dir(&dir).is_err() {
                left += 1;
            }
        }
        if left == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
