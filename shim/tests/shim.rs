//! The herd-shim binary as herdd drives it: a launch file in, an answer line, logs, state and
//! exit files out.

use herd_shim::{
    parse_answer, read_json, write_json, ShimExit, ShimLaunch, ShimState, EXIT_FILE, LAUNCH_FILE,
    STATE_FILE,
};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

fn launch(dir: &Path, program: &str, args: &[&str]) -> ShimLaunch {
    ShimLaunch {
        program: program.into(),
        argv0: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![("GREETING".into(), "hello".into())],
        cwd: dir.to_path_buf(),
        user: None,
        cgroup_procs: vec![],
        oom_before: 0,
    }
}

/// Runs the shim on `dir` to its end: (its answer line, its exit code).
fn run_shim(dir: &Path) -> (String, i32) {
    let mut shim = Command::new(env!("CARGO_BIN_EXE_herd-shim"))
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut answer = String::new();
    shim.stdout
        .take()
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    let status = shim.wait().unwrap();
    (answer, status.code().unwrap())
}

#[test]
fn runs_a_workload_and_records_its_output_and_exit() {
    let dir = tempfile::tempdir().unwrap();
    let l = launch(
        dir.path(),
        "/bin/sh",
        &["-c", "echo $GREETING; echo oops >&2; exit 3"],
    );
    write_json(dir.path(), LAUNCH_FILE, &l).unwrap();
    let (answer, code) = run_shim(dir.path());
    let pid = parse_answer(&answer).expect("started");
    assert_eq!(code, 0, "the shim itself succeeded");
    let state: ShimState = read_json(dir.path(), STATE_FILE).unwrap();
    assert_eq!(state.child_pid, pid);
    assert!(!state.is_running(), "the shim has ended");
    assert_eq!(
        read_json::<ShimExit>(dir.path(), EXIT_FILE),
        Some(ShimExit {
            code: Some(3),
            signal: None
        })
    );
    let log = |name| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(log("stdout.log"), "hello\n");
    assert_eq!(log("stderr.log"), "oops\n");
}

#[test]
fn a_workload_ended_by_a_signal_is_recorded_so() {
    let dir = tempfile::tempdir().unwrap();
    let l = launch(dir.path(), "/bin/sh", &["-c", "kill -TERM $$"]);
    write_json(dir.path(), LAUNCH_FILE, &l).unwrap();
    let (answer, _) = run_shim(dir.path());
    parse_answer(&answer).expect("started");
    // The shim ignores SIGTERM; its child has it back.
    assert_eq!(
        read_json::<ShimExit>(dir.path(), EXIT_FILE),
        Some(ShimExit {
            code: None,
            signal: Some(15)
        })
    );
}

#[test]
fn a_program_that_cannot_start_is_answered_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let l = launch(dir.path(), "/nonexistent/program", &[]);
    write_json(dir.path(), LAUNCH_FILE, &l).unwrap();
    let (answer, code) = run_shim(dir.path());
    let reason = parse_answer(&answer).unwrap_err();
    assert!(
        reason.contains("cannot start /nonexistent/program"),
        "{reason}"
    );
    assert_eq!(code, 1);
    assert!(read_json::<ShimExit>(dir.path(), EXIT_FILE).is_none());
}

#[test]
fn without_a_launch_file_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (answer, code) = run_shim(dir.path());
    assert!(parse_answer(&answer).unwrap_err().contains("cannot read"));
    assert_eq!(code, 1);
}

#[test]
fn a_spare_runs_the_workload_whose_directory_it_is_handed() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let l = launch(dir.path(), "/bin/sh", &["-c", "echo $GREETING; exit 4"]);
    write_json(dir.path(), LAUNCH_FILE, &l).unwrap();
    let mut spare = Command::new(env!("CARGO_BIN_EXE_herd-shim"))
        .args(["--spare", "/nonexistent/workloads"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // It waits: nothing answered, still running.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        spare.try_wait().unwrap().is_none(),
        "a spare waits for its directory"
    );
    let mut stdin = spare.stdin.take().unwrap();
    stdin
        .write_all(dir.path().as_os_str().as_encoded_bytes())
        .unwrap();
    drop(stdin);
    let mut answer = String::new();
    spare
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    assert_eq!(spare.wait().unwrap().code(), Some(0));
    let pid = parse_answer(&answer).expect("started");
    let state: ShimState = read_json(dir.path(), STATE_FILE).unwrap();
    assert_eq!(state.child_pid, pid);
    assert_eq!(
        read_json::<ShimExit>(dir.path(), EXIT_FILE),
        Some(ShimExit {
            code: Some(4),
            signal: None
        })
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("stdout.log")).unwrap(),
        "hello\n"
    );
}

#[test]
fn a_spare_whose_stdin_closes_empty_ends_quietly() {
    let out = Command::new(env!("CARGO_BIN_EXE_herd-shim"))
        .args(["--spare", "/nonexistent/workloads"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}
