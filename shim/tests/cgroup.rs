//! The herd-shim binary with real cgroups (root only): on cgroup v2 the workload is created in
//! its cgroup (`clone3(CLONE_INTO_CGROUP)`); on v1, or where a seccomp filter refuses clone3, it
//! joins its cgroup before exec; either way it starts the same and ends the same.

use herd_shim::{
    parse_answer, read_json, write_json, Placement, ShimExit, ShimLaunch, ShimState, EXIT_FILE,
    LAUNCH_FILE, STATE_FILE,
};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn announce(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "herd-shim tests: {line}");
}

/// Mount points of the cgroup2 filesystem and of the first cgroup v1 hierarchy, from
/// /proc/self/mountinfo.
fn mounts() -> (Option<PathBuf>, Option<PathBuf>) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let (mut v2, mut v1) = (None, None);
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let point = left.split(' ').nth(4).map(PathBuf::from);
        match right.split(' ').next() {
            Some("cgroup2") if v2.is_none() => v2 = point,
            Some("cgroup") if v1.is_none() => v1 = point,
            _ => {}
        }
    }
    (v2, v1)
}

/// A cgroup directory made for one test, emptied and removed on drop.
struct TestCgroup {
    dir: PathBuf,
    /// Its path as /proc/<pid>/cgroup shows it.
    name: String,
}

impl TestCgroup {
    /// None (and a line saying so) when the test cannot run here.
    fn new(mount: Option<PathBuf>, tag: &str) -> Option<TestCgroup> {
        if !nix::unistd::Uid::effective().is_root() {
            announce(&format!("{tag}: skipped, not root"));
            return None;
        }
        let Some(mount) = mount else {
            announce(&format!("{tag}: skipped, no such cgroup hierarchy here"));
            return None;
        };
        let name = format!("herd-shim-test-{}-{tag}", std::process::id());
        let dir = mount.join(&name);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap();
        Some(TestCgroup {
            dir,
            name: format!("/{name}"),
        })
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.dir.exists() && std::fs::remove_dir(&self.dir).is_err() {
            for pid in std::fs::read_to_string(self.procs())
                .unwrap_or_default()
                .lines()
            {
                if let Ok(pid) = pid.parse() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if Instant::now() > deadline {
                eprintln!("cannot remove {}", self.dir.display());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn launch(dir: &Path, program: &str, args: &[&str], procs: Vec<PathBuf>) -> ShimLaunch {
    ShimLaunch {
        program: program.into(),
        argv0: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("GREETING".into(), "hello".into()),
        ],
        cwd: dir.to_path_buf(),
        user: None,
        cgroup_procs: procs,
        oom_before: 0,
    }
}

/// What a run of the shim left: its answer, its state and exit files, the workload's stdout.
struct Run {
    answer: Result<u32, String>,
    state: Option<ShimState>,
    exit: Option<ShimExit>,
    stdout: String,
}

/// Runs the shim on `l` to its end, the shim started with SIGUSR1 blocked (which the workload
/// must not inherit) and, with `deny_clone3`, under a seccomp filter that answers clone3 with
/// ENOSYS as some container runtimes' do.
fn run(l: &ShimLaunch, deny_clone3: bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    write_json(
        dir.path(),
        LAUNCH_FILE,
        &ShimLaunch {
            cwd: dir.path().to_path_buf(),
            ..l.clone()
        },
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herd-shim"));
    cmd.arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    // SAFETY: between fork and exec only system calls on data made before the fork.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            let mut usr1: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut usr1);
            libc::sigaddset(&mut usr1, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_BLOCK, &usr1, std::ptr::null_mut());
            if deny_clone3 {
                deny_clone3_filter()?;
            }
            Ok(())
        });
    }
    let mut shim = cmd.spawn().unwrap();
    let mut answer = String::new();
    shim.stdout
        .take()
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    shim.wait().unwrap();
    Run {
        answer: parse_answer(&answer),
        state: read_json(dir.path(), STATE_FILE),
        exit: read_json(dir.path(), EXIT_FILE),
        stdout: std::fs::read_to_string(dir.path().join("stdout.log")).unwrap_or_default(),
    }
}

/// seccomp: clone3 fails with ENOSYS, everything else is allowed.
#[allow(unsafe_code)]
fn deny_clone3_filter() -> std::io::Result<()> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let filter = [
        // The syscall number (offset 0 of struct seccomp_data).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_clone3 as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl reads the program, which lives through the call.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The workload's own view of where it is, of its arguments, environment, working directory
/// and session (sh clears its signal mask as it starts: see [`STATUS`]).
const SELF_REPORT: &[&str] = &[
    "-c",
    "cat /proc/self/cgroup; echo $0 $GREETING; test -f launch.json && echo in its directory; \
     cut -d' ' -f6 /proc/$$/stat; echo $$",
];

/// The signals and credentials of the exec'd program itself (grep, found on the launch's PATH).
fn status(l: &ShimLaunch, deny_clone3: bool) -> Vec<String> {
    let r = run(
        &ShimLaunch {
            program: "grep".into(),
            argv0: "grep".into(),
            args: [
                "-E",
                "^(SigBlk|SigIgn|Uid|Gid|Groups):",
                "/proc/self/status",
            ]
            .map(String::from)
            .to_vec(),
            ..l.clone()
        },
        deny_clone3,
    );
    assert_eq!(
        r.exit,
        Some(ShimExit {
            code: Some(0),
            signal: None
        }),
        "{}",
        r.stdout
    );
    r.stdout.lines().map(String::from).collect()
}

/// The workload's report, with the cgroup lines apart.
fn report(run: &Run) -> (Vec<String>, Vec<String>) {
    let lines: Vec<String> = run.stdout.lines().map(String::from).collect();
    let pid = lines.last().cloned().unwrap_or_default();
    let (cgroups, rest): (Vec<_>, Vec<_>) = lines
        .into_iter()
        .map(|l| if l == pid { "<pid>".into() } else { l })
        .partition(|l| l.split(':').count() == 3 && l.contains(":/"));
    (cgroups, rest)
}

#[test]
fn on_cgroup_v2_the_workload_is_born_in_its_cgroup() {
    let Some(cg) = TestCgroup::new(mounts().0, "born") else {
        return;
    };
    announce(&format!("cgroup v2: {}", cg.dir.display()));
    let r = run(
        &launch(
            Path::new("/"),
            "cat",
            &["/proc/self/cgroup"],
            vec![cg.procs()],
        ),
        false,
    );
    let pid = r.answer.expect("started");
    let state = r.state.expect("state.json");
    assert_eq!(state.child_pid, pid);
    assert_eq!(state.placement, Some(Placement::CloneIntoCgroup));
    // cat's own first read: in the cgroup from the start.
    assert!(
        r.stdout.lines().any(|l| l == format!("0::{}", cg.name)),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.exit,
        Some(ShimExit {
            code: Some(0),
            signal: None
        })
    );
}

#[test]
fn born_or_joined_the_workload_starts_and_ends_the_same() {
    let Some(cg) = TestCgroup::new(mounts().0, "same") else {
        return;
    };
    let l = launch(Path::new("/"), "sh", SELF_REPORT, vec![cg.procs()]);
    let born = run(&l, false);
    let joined = run(&l, true);
    let none = run(&launch(Path::new("/"), "sh", SELF_REPORT, vec![]), false);
    let placement = |r: &Run| r.state.and_then(|s| s.placement);
    assert_eq!(placement(&born), Some(Placement::CloneIntoCgroup));
    assert_eq!(placement(&joined), Some(Placement::JoinBeforeExec));
    assert_eq!(placement(&none), Some(Placement::NoCgroup));
    announce("cgroup v2 with clone3 refused by seccomp (ENOSYS): joined before exec");
    let (born_cg, born_rest) = report(&born);
    let (joined_cg, joined_rest) = report(&joined);
    let (_, none_rest) = report(&none);
    let unified = format!("0::{}", cg.name);
    assert!(born_cg.contains(&unified), "{born_cg:?}");
    assert!(joined_cg.contains(&unified), "{joined_cg:?}");
    assert_eq!(born_rest, joined_rest);
    assert_eq!(born_rest, none_rest);
    // argv0 and env, the working directory, its own session.
    assert_eq!(
        born_rest,
        ["sh hello", "in its directory", "<pid>", "<pid>"],
        "{born_rest:?}"
    );
    let born = status(&l, false);
    assert_eq!(born, status(&l, true));
    assert_eq!(
        born,
        status(&launch(Path::new("/"), "sh", &[], vec![]), false)
    );
    // No signal blocked (the shim was started with SIGUSR1 blocked), none of the four the
    // shim ignores ignored (others ignored above the shim stay so, as with any exec).
    assert!(
        born.contains(&"SigBlk:\t0000000000000000".to_string()),
        "{born:?}"
    );
    let ignored = born
        .iter()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .expect("SigIgn");
    let shims = [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE]
        .iter()
        .fold(0u64, |m, s| m | 1 << (s - 1));
    assert_eq!(ignored & shims, 0, "{born:?}");
}

#[test]
fn as_another_user_the_workload_starts_the_same_born_or_joined() {
    let Some(cg) = TestCgroup::new(mounts().0, "user") else {
        return;
    };
    let l = ShimLaunch {
        user: Some((65534, 65534, vec![65534, 100])),
        ..launch(Path::new("/"), "sh", SELF_REPORT, vec![cg.procs()])
    };
    assert_eq!(report(&run(&l, false)).1, report(&run(&l, true)).1);
    let born = status(&l, false);
    assert_eq!(born, status(&l, true));
    for want in [
        "Uid:\t65534\t65534\t65534\t65534",
        "Gid:\t65534\t65534\t65534\t65534",
    ] {
        assert!(born.contains(&want.to_string()), "{born:?}");
    }
    assert!(
        born.iter().any(|l| l.starts_with("Groups:\t100 65534")),
        "{born:?}"
    );
}

#[test]
fn a_missing_program_is_answered_the_same_born_or_joined() {
    let Some(cg) = TestCgroup::new(mounts().0, "missing") else {
        return;
    };
    let l = launch(
        Path::new("/"),
        "/nonexistent/program",
        &[],
        vec![cg.procs()],
    );
    let born = run(&l, false).answer.unwrap_err();
    let joined = run(&l, true).answer.unwrap_err();
    assert_eq!(
        born,
        "cannot start /nonexistent/program: No such file or directory (os error 2)"
    );
    assert_eq!(born, joined);
    // A program not on the launch's PATH, looked up like std's Command does.
    let l = launch(
        Path::new("/"),
        "no-such-program-herd",
        &[],
        vec![cg.procs()],
    );
    assert_eq!(
        run(&l, false).answer.unwrap_err(),
        run(&l, true).answer.unwrap_err()
    );
}

#[test]
fn born_in_its_cgroup_its_exit_code_and_signal_are_recorded() {
    let Some(cg) = TestCgroup::new(mounts().0, "exit") else {
        return;
    };
    let code = run(
        &launch(Path::new("/"), "sh", &["-c", "exit 3"], vec![cg.procs()]),
        false,
    );
    assert_eq!(
        code.exit,
        Some(ShimExit {
            code: Some(3),
            signal: None
        })
    );
    // The shim ignores SIGTERM; the workload has it back.
    let killed = run(
        &launch(
            Path::new("/"),
            "sh",
            &["-c", "kill -TERM $$"],
            vec![cg.procs()],
        ),
        false,
    );
    assert_eq!(
        killed.exit,
        Some(ShimExit {
            code: None,
            signal: Some(15)
        })
    );
    assert_eq!(
        killed.state.and_then(|s| s.placement),
        Some(Placement::CloneIntoCgroup)
    );
}

#[test]
fn on_cgroup_v1_the_workload_joins_its_cgroup_before_exec() {
    let Some(cg) = TestCgroup::new(mounts().1, "v1") else {
        return;
    };
    announce(&format!("cgroup v1: {}", cg.dir.display()));
    let r = run(
        &launch(
            Path::new("/"),
            "cat",
            &["/proc/self/cgroup"],
            vec![cg.procs()],
        ),
        false,
    );
    r.answer.expect("started");
    assert_eq!(
        r.state.and_then(|s| s.placement),
        Some(Placement::JoinBeforeExec)
    );
    assert!(
        r.stdout
            .lines()
            .any(|l| l.ends_with(&format!(":{}", cg.name)) && !l.starts_with("0::")),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.exit,
        Some(ShimExit {
            code: Some(0),
            signal: None
        })
    );
}
