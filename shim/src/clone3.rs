//! `clone3(CLONE_INTO_CGROUP)` (Linux ≥ 5.7): the workload is created inside its cgroup v2
//! directory, so that not one of its instructions runs, and not one page it touches is charged,
//! outside it. The child then does what std's `Command` and the shim's pre-exec hook do for the
//! join-before-exec path ([`crate::spawn`]), with system calls only: everything it needs is
//! prepared before the clone ([`ExecPlan`]), it allocates nothing and takes no lock.

use crate::ShimLaunch;
use crate::SHIM_IGNORES;
use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `CLONE_INTO_CGROUP` from linux/sched.h: `clone_args.cgroup` is a cgroup2 directory.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes), the same on every
/// architecture.
#[repr(C, align(8))]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What the child reports through its CLOEXEC pipe when a step before exec failed: the errno
/// and a marker, as std does.
const REPORT_MARK: &[u8; 4] = b"NOEX";

/// Why no workload runs.
#[derive(Debug)]
pub(crate) enum CloneError {
    /// clone3 made no process and the kernel (or a seccomp filter) does not offer it or
    /// `CLONE_INTO_CGROUP`: joining the cgroup before exec still works.
    Unsupported,
    /// clone3 failed otherwise, or the child could not exec (the errno it reported).
    Failed(std::io::Error),
}

/// The errnos that say clone3 or `CLONE_INTO_CGROUP` is not available here, as opposed to a
/// refusal that joining the cgroup would meet too (EBUSY: controllers enabled in the cgroup;
/// EACCES; ENOENT: a removed cgroup; EAGAIN, ENOMEM, ENOSPC: limits).
/// ENOSYS: before 5.3, or filtered; E2BIG: 5.3–5.6 (clone_args without `cgroup`); EINVAL: an
/// unknown flag; EOPNOTSUPP: a cgroup this clone cannot enter (a threaded one); EPERM: some
/// seccomp sandboxes answer so for any clone3.
fn unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EOPNOTSUPP | libc::EPERM)
    )
}

/// The cgroup2 directory holding `procs` (a `cgroup.procs` file), opened for clone3; None when
/// it is on another filesystem (cgroup v1) or cannot be opened.
pub(crate) fn cgroup2_dir(procs: &Path) -> Option<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(procs.parent()?)
        .ok()?;
    let fs = nix::sys::statfs::fstatfs(&dir).ok()?;
    (fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC).then(|| OwnedFd::from(dir))
}

/// Forks like fork(2) into the cgroup `dir`: Some(pid) in the parent, None in the child.
///
/// # Safety
/// As for fork(2): the child runs on a copy of the caller's memory with only the calling
/// thread, and glibc's per-thread bookkeeping is not updated (it knows nothing of this clone):
/// until exec or `_exit` it may only make raw system calls on memory prepared before.
#[allow(unsafe_code)]
unsafe fn clone_into(dir: BorrowedFd<'_>) -> std::io::Result<Option<libc::pid_t>> {
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 reads `args` (alive, of the size given); with no CLONE_VM and no stack it
    // returns twice like fork, in two separate copies of this memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid as libc::pid_t)),
    }
}

/// Waits for child `pid` to end: its raw wait status.
pub(crate) fn wait(pid: libc::pid_t) -> std::io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into a local.
        #[allow(unsafe_code)]
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            return Ok(status);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether this kernel creates a process in a cgroup2 directory: a child that exits at once
/// is cloned into `dir` and reaped. For `herdd doctor`, on a throwaway cgroup.
pub fn probe(dir: &Path) -> std::io::Result<()> {
    let procs = dir.join("cgroup.procs");
    let Some(fd) = cgroup2_dir(&procs) else {
        return Err(std::io::Error::other(format!(
            "{} is not a cgroup2 directory",
            dir.display()
        )));
    };
    // SAFETY: the child only exits.
    #[allow(unsafe_code)]
    match unsafe { clone_into(fd.as_fd()) }? {
        // SAFETY: _exit is a system call; nothing of the parent's state is touched.
        None => unsafe { libc::_exit(0) },
        Some(pid) => wait(pid).map(|_| ()),
    }
}

/// Everything the child passes to system calls, built before the clone: C strings and the
/// pointer arrays over them (a CString's bytes stay put when the struct moves).
pub(crate) struct ExecPlan {
    program: CString,
    cwd: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    user: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
}

fn c_string(bytes: &[u8]) -> std::io::Result<CString> {
    // The same words as std's Command for the same mistake.
    CString::new(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        )
    })
}

impl ExecPlan {
    pub(crate) fn new(launch: &ShimLaunch) -> std::io::Result<ExecPlan> {
        let argv = std::iter::once(launch.argv0.as_bytes())
            .chain(launch.args.iter().map(|a| a.as_bytes()))
            .map(c_string)
            .collect::<std::io::Result<Vec<_>>>()?;
        let envp = launch
            .env
            .iter()
            .map(|(k, v)| c_string(format!("{k}={v}").as_bytes()))
            .collect::<std::io::Result<Vec<_>>>()?;
        let pointers = |strings: &[CString]| {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(ExecPlan {
            program: c_string(OsStr::as_bytes(launch.program.as_os_str()))?,
            cwd: c_string(OsStr::as_bytes(launch.cwd.as_os_str()))?,
            argv_ptrs: pointers(&argv),
            _argv: argv,
            envp_ptrs: pointers(&envp),
            _envp: envp,
            user: launch.user.clone(),
        })
    }
}

/// The child's standard input, output and error.
pub(crate) struct ChildStdio<'a> {
    pub stdin: BorrowedFd<'a>,
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
}

/// Starts `plan` inside the cgroup `dir` and waits until it has exec'd: its pid.
pub(crate) fn spawn(
    plan: &ExecPlan,
    dir: BorrowedFd<'_>,
    stdio: &ChildStdio<'_>,
) -> Result<libc::pid_t, CloneError> {
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| CloneError::Failed(e.into()))?;
    let fds = [
        stdio.stdin.as_raw_fd(),
        stdio.stdout.as_raw_fd(),
        stdio.stderr.as_raw_fd(),
    ];
    // SAFETY: the child runs `exec_child` only, which makes raw system calls on `plan`, `fds`
    // and the report pipe, all prepared above, then execs or exits.
    #[allow(unsafe_code)]
    let pid = match unsafe { clone_into(dir) } {
        Ok(None) => exec_child(plan, fds, report_w.as_raw_fd()),
        Ok(Some(pid)) => pid,
        Err(e) if unsupported(&e) => return Err(CloneError::Unsupported),
        Err(e) => return Err(CloneError::Failed(e)),
    };
    drop(report_w);
    // Nothing comes (end of file) once the child has exec'd: CLOEXEC closed its end.
    let mut report = Vec::with_capacity(8);
    let read = std::fs::File::from(report_r).read_to_end(&mut report);
    let failure = match (read, report.len()) {
        (Ok(_), 0) => return Ok(pid),
        (Ok(_), 8) if &report[4..] == REPORT_MARK => {
            let mut errno = [0u8; 4];
            errno.copy_from_slice(&report[..4]);
            std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno))
        }
        (Ok(_), n) => std::io::Error::other(format!("the child reported {n} bytes")),
        (Err(e), _) => e,
    };
    // It did not exec (or, after a report that cannot be read, may have): it is not started.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = wait(pid);
    Err(CloneError::Failed(failure))
}

extern "C" {
    /// The process's environment; execvp looks up PATH in it.
    static mut environ: *const *const libc::c_char;
}

/// The child, between clone and exec: standard streams, working directory, signals back to
/// their defaults and an empty mask, its own session, the workload's user, then exec with
/// the launch's environment (PATH looked up in it, as std does). A failed step reports its
/// errno to the parent and exits.
#[allow(unsafe_code)]
fn exec_child(plan: &ExecPlan, stdio: [RawFd; 3], report: RawFd) -> ! {
    let Err(errno) = exec_steps(plan, stdio);
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&errno.to_ne_bytes());
    msg[4..].copy_from_slice(REPORT_MARK);
    // SAFETY: write and _exit are system calls on a local buffer and our own descriptor.
    unsafe {
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// The child's steps; returns only with the errno of the one that failed.
#[allow(unsafe_code)]
fn exec_steps(plan: &ExecPlan, stdio: [RawFd; 3]) -> Result<std::convert::Infallible, i32> {
    let check = |ret: libc::c_long| -> Result<(), i32> {
        if ret == -1 {
            Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL))
        } else {
            Ok(())
        }
    };
    // SAFETY: every call below is a system call (or glibc's thin wrapper of one, the same
    // ones std makes after fork) on memory `plan` prepared, which outlives the child's use of
    // it; credentials are changed with raw syscalls because glibc's wrappers would try to
    // reach threads that only exist in the parent.
    unsafe {
        for (fd, target) in stdio.into_iter().zip(0..) {
            if fd == target {
                // Already in place: keep it across exec.
                check(libc::fcntl(fd, libc::F_SETFD, 0).into())?;
            } else {
                check(libc::dup2(fd, target).into())?;
            }
        }
        check(libc::chdir(plan.cwd.as_ptr()).into())?;
        let mut none: libc::sigset_t = std::mem::zeroed();
        check(libc::sigemptyset(&mut none).into())?;
        check(libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()).into())?;
        check(libc::setsid().into())?;
        for sig in SHIM_IGNORES {
            if libc::signal(sig as libc::c_int, libc::SIG_DFL) == libc::SIG_ERR {
                check(-1)?;
            }
        }
        if let Some((uid, gid, groups)) = &plan.user {
            check(libc::syscall(
                libc::SYS_setgroups,
                groups.len(),
                groups.as_ptr(),
            ))?;
            check(libc::syscall(libc::SYS_setgid, *gid))?;
            check(libc::syscall(libc::SYS_setuid, *uid))?;
        }
        environ = plan.envp_ptrs.as_ptr();
        libc::execvp(plan.program.as_ptr(), plan.argv_ptrs.as_ptr());
        check(-1)?;
    }
    Err(libc::EINVAL)
}
