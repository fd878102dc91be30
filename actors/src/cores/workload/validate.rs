//! Checks a WorkloadSpec against this node before anything starts; every error names the field.

use super::lifecycle::{parse_signal, DEFAULT_KILL_SIGNAL};
use herd_bus::{Driver, ErrorBody, ErrorCode, WorkloadSpec};
use nix::unistd::{Gid, Uid, User};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The PATH a workload gets when its spec sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The smallest memory limit accepted; below it nothing useful runs.
pub const MIN_MEMORY: u64 = 1 << 20;

/// Node policy for exec workloads: `[exec]` in herd.toml.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecPolicy {
    /// The user workloads run as when their spec names none.
    pub default_user: String,
    /// Whether a spec may ask for root.
    pub allow_root: bool,
    /// When not empty, only these commands (names or absolute paths) may run.
    pub allowed_commands: Vec<String>,
}

impl Default for ExecPolicy {
    fn default() -> Self {
        ExecPolicy {
            default_user: "nobody".into(),
            allow_root: false,
            allowed_commands: vec![],
        }
    }
}

/// What validation found out: the program, the user, the signal.
#[derive(Debug, Clone)]
pub struct ResolvedSpec {
    pub program: PathBuf,
    pub user: String,
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
    pub home: PathBuf,
    pub kill_signal: nix::sys::signal::Signal,
    pub path_env: String,
}

fn field(name: &str, message: impl std::fmt::Display) -> ErrorBody {
    ErrorBody {
        code: ErrorCode::BadRequest,
        message: format!("{name}: {message}"),
    }
}

fn is_executable(p: &Path) -> bool {
    p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
}

fn resolve_program(cmd: &str, path_env: &str) -> Result<PathBuf, ErrorBody> {
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        if !p.is_absolute() {
            return Err(field(
                "command",
                format!("'{cmd}' must be an absolute path or a name found in PATH"),
            ));
        }
        if !is_executable(&p) {
            return Err(field(
                "command",
                format!("'{cmd}' does not exist or is not executable"),
            ));
        }
        return Ok(p);
    }
    std::env::split_paths(path_env)
        .map(|d| d.join(cmd))
        .find(|p| is_executable(p))
        .ok_or_else(|| field("command", format!("'{cmd}' not found in PATH ({path_env})")))
}

fn positive(name: &str, v: Option<f64>, allow_zero: bool) -> Result<(), ErrorBody> {
    match v {
        Some(x) if !x.is_finite() => Err(field(name, format!("must be a finite number, got {x}"))),
        Some(x) if x < 0.0 || (!allow_zero && x == 0.0) => Err(field(
            name,
            format!("must be {} 0, got {x}", if allow_zero { "≥" } else { ">" }),
        )),
        _ => Ok(()),
    }
}

/// A validated spec, per driver.
#[derive(Debug, Clone)]
pub enum Resolved {
    Exec(ResolvedSpec),
    Docker {
        kill_signal: nix::sys::signal::Signal,
    },
}

impl Resolved {
    pub fn kill_signal(&self) -> nix::sys::signal::Signal {
        match self {
            Resolved::Exec(r) => r.kill_signal,
            Resolved::Docker { kill_signal } => *kill_signal,
        }
    }
}

/// Validates `spec` for this node (`host_cpus` cores), whichever its driver.
pub fn validate_any(
    spec: &WorkloadSpec,
    policy: &ExecPolicy,
    host_cpus: f64,
) -> Result<Resolved, ErrorBody> {
    match spec.driver {
        Driver::Exec => validate(spec, policy, host_cpus).map(Resolved::Exec),
        Driver::Docker => validate_docker(spec, host_cpus),
    }
}

/// Checks a docker spec: an image, an argv without NUL bytes, and what every driver checks.
/// `cwd` and `user` are the container's, so they are not looked up on this node.
pub fn validate_docker(spec: &WorkloadSpec, host_cpus: f64) -> Result<Resolved, ErrorBody> {
    let image = spec.image.as_deref().unwrap_or("");
    if image.trim().is_empty() {
        return Err(field("image", "a docker workload needs an image"));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(field("image", format!("invalid image reference {image:?}")));
    }
    if spec.command.iter().any(|a| a.contains('\0')) {
        return Err(field("command", "arguments must not contain NUL bytes"));
    }
    if let Some(cwd) = &spec.cwd {
        if !cwd.starts_with('/') {
            return Err(field("cwd", format!("'{cwd}' must be an absolute path")));
        }
    }
    if let Some(user) = &spec.user {
        if user.is_empty() || user.contains('\0') {
            return Err(field("user", format!("invalid user {user:?}")));
        }
    }
    let kill_signal = check_common(spec, host_cpus)?;
    Ok(Resolved::Docker { kill_signal })
}

/// Checks every driver shares: env, limits, timeouts, the stop signal, restarts.
fn check_common(
    spec: &WorkloadSpec,
    host_cpus: f64,
) -> Result<nix::sys::signal::Signal, ErrorBody> {
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(field("env", format!("invalid variable {k:?}")));
        }
    }
    let limits = &spec.limits;
    positive("limits.cpu", limits.cpu, false)?;
    if let Some(cpu) = limits.cpu {
        if cpu < 0.01 {
            return Err(field(
                "limits.cpu",
                format!("must be ≥ 0.01 cores, got {cpu}"),
            ));
        }
        if cpu > host_cpus {
            return Err(field(
                "limits.cpu",
                format!("{cpu} cores exceeds this node's {host_cpus}"),
            ));
        }
    }
    if let Some(m) = limits.memory {
        if m < MIN_MEMORY {
            return Err(field(
                "limits.memory",
                format!("must be ≥ {MIN_MEMORY} bytes, got {m}"),
            ));
        }
    }
    if limits.pids == Some(0) {
        return Err(field("limits.pids", "must be ≥ 1"));
    }
    if limits.swap.is_some() && limits.memory.is_none() {
        return Err(field(
            "limits.swap",
            "needs limits.memory (swap is allowed beyond a memory limit)",
        ));
    }
    if let Some(n) = limits.cpuset_cpus {
        if n == 0 {
            return Err(field("limits.cpuset_cpus", "must be ≥ 1"));
        }
        if n as f64 > host_cpus {
            return Err(field(
                "limits.cpuset_cpus",
                format!("{n} cores exceeds this node's {host_cpus}"),
            ));
        }
        if limits.cpu.is_some_and(|c| c > n as f64) {
            return Err(field(
                "limits.cpu",
                format!("more than its {n} pinned cores (limits.cpuset_cpus)"),
            ));
        }
    }
    if let Some(herd_bus::GpuRequest::Devices(d)) = &limits.gpus {
        if d.is_empty() {
            return Err(field("limits.gpus", "an empty list: give a count or UUIDs"));
        }
        let unique: std::collections::BTreeSet<&String> = d.iter().collect();
        if unique.len() != d.len() {
            return Err(field("limits.gpus", "a UUID is listed twice"));
        }
    }
    if !spec.matrix.is_empty() {
        return Err(field(
            "matrix",
            "a run expands it into variants; workload.start takes one",
        ));
    }
    if let Some(problem) = herd_bus::inputs_problem(&spec.inputs) {
        return Err(field("inputs", problem));
    }
    positive("timeout_s", spec.timeout_s, false)?;
    positive("grace_s", spec.grace_s, true)?;
    if let Some(g) = spec.grace_s {
        Duration::try_from_secs_f64(g).map_err(|e| field("grace_s", e))?;
    }
    if let Some(t) = spec.timeout_s {
        Duration::try_from_secs_f64(t).map_err(|e| field("timeout_s", e))?;
    }
    let signal_text = spec.kill_signal.as_deref().unwrap_or(DEFAULT_KILL_SIGNAL);
    let kill_signal = parse_signal(signal_text)
        .ok_or_else(|| field("kill_signal", format!("unknown signal '{signal_text}'")))?;
    if spec.restart.max > 100 {
        return Err(field(
            "restart.max",
            format!("must be ≤ 100, got {}", spec.restart.max),
        ));
    }
    Ok(kill_signal)
}

/// Validates an exec `spec` for this node (`host_cpus` cores).
pub fn validate(
    spec: &WorkloadSpec,
    policy: &ExecPolicy,
    host_cpus: f64,
) -> Result<ResolvedSpec, ErrorBody> {
    if spec.driver == Driver::Docker {
        return Err(field("driver", "not an exec workload"));
    }
    let Some(cmd) = spec.command.first() else {
        return Err(field("command", "must not be empty"));
    };
    if cmd.is_empty() {
        return Err(field("command", "the program name is empty"));
    }
    if spec.command.iter().any(|a| a.contains('\0')) {
        return Err(field("command", "arguments must not contain NUL bytes"));
    }
    let path_env = spec
        .env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let program = resolve_program(cmd, &path_env)?;
    if !policy.allowed_commands.is_empty()
        && !policy
            .allowed_commands
            .iter()
            .any(|a| a == cmd || Path::new(a) == program)
    {
        return Err(field(
            "command",
            format!("'{cmd}' is not in this node's exec.allowed_commands"),
        ));
    }

    let kill_signal = check_common(spec, host_cpus)?;
    if let Some(cwd) = &spec.cwd {
        if !Path::new(cwd).is_absolute() || !Path::new(cwd).is_dir() {
            return Err(field(
                "cwd",
                format!("'{cwd}' is not an existing absolute directory"),
            ));
        }
    }

    let user_name = spec
        .user
        .clone()
        .unwrap_or_else(|| policy.default_user.clone());
    let user = match user_name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(&user_name),
    }
    .map_err(|e| field("user", format!("cannot look up '{user_name}': {e}")))?
    .ok_or_else(|| field("user", format!("no such user '{user_name}' on this node")))?;
    if user.uid.is_root() && !policy.allow_root {
        return Err(field(
            "user",
            "running as root needs exec.allow_root = true in this node's configuration",
        ));
    }
    let me = nix::unistd::Uid::effective();
    if !me.is_root() && user.uid != me {
        return Err(field(
            "user",
            format!(
                "herdd runs as uid {me} and cannot switch to '{}'; run herdd as root, or omit user",
                user.name
            ),
        ));
    }
    let groups = nix::unistd::getgrouplist(
        &std::ffi::CString::new(user.name.clone()).map_err(|e| field("user", e))?,
        user.gid,
    )
    .unwrap_or_else(|_| vec![user.gid]);
    Ok(ResolvedSpec {
        program,
        user: user.name,
        uid: user.uid,
        gid: user.gid,
        groups,
        home: user.dir,
        kill_signal,
        path_env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::Limits;

    fn ok_spec() -> WorkloadSpec {
        WorkloadSpec {
            command: vec!["sleep".into(), "1".into()],
            ..Default::default()
        }
    }

    fn err(spec: WorkloadSpec, policy: &ExecPolicy) -> String {
        validate(&spec, policy, 2.0).unwrap_err().message
    }

    #[test]
    fn a_plain_spec_resolves() {
        let r = validate(&ok_spec(), &ExecPolicy::default(), 2.0).unwrap();
        assert!(r.program.ends_with("sleep"));
        assert_eq!(r.user, "nobody");
        assert_eq!(r.kill_signal, nix::sys::signal::Signal::SIGTERM);
    }

    #[test]
    fn each_bad_field_is_named() {
        let p = ExecPolicy::default();
        let lim = |l: Limits| WorkloadSpec {
            limits: l,
            ..ok_spec()
        };
        let cases = [
            (
                WorkloadSpec {
                    command: vec![],
                    ..ok_spec()
                },
                "command: must not be empty",
            ),
            (
                WorkloadSpec {
                    command: vec!["no-such-binary-xyz".into()],
                    ..ok_spec()
                },
                "command: 'no-such-binary-xyz' not found",
            ),
            (
                WorkloadSpec {
                    command: vec!["/nonexistent/bin".into()],
                    ..ok_spec()
                },
                "command: '/nonexistent/bin' does not exist",
            ),
            (
                WorkloadSpec {
                    command: vec!["./rel".into()],
                    ..ok_spec()
                },
                "command: './rel' must be an absolute path",
            ),
            (
                lim(Limits {
                    cpu: Some(0.0),
                    ..Default::default()
                }),
                "limits.cpu: must be > 0",
            ),
            (
                lim(Limits {
                    cpu: Some(f64::NAN),
                    ..Default::default()
                }),
                "limits.cpu: must be a finite",
            ),
            (
                lim(Limits {
                    cpu: Some(64.0),
                    ..Default::default()
                }),
                "limits.cpu: 64 cores exceeds",
            ),
            (
                lim(Limits {
                    memory: Some(0),
                    ..Default::default()
                }),
                "limits.memory: must be ≥",
            ),
            (
                lim(Limits {
                    pids: Some(0),
                    ..Default::default()
                }),
                "limits.pids: must be ≥ 1",
            ),
            (
                lim(Limits {
                    swap: Some(1 << 20),
                    ..Default::default()
                }),
                "limits.swap: needs limits.memory",
            ),
            (
                lim(Limits {
                    cpuset_cpus: Some(0),
                    ..Default::default()
                }),
                "limits.cpuset_cpus: must be ≥ 1",
            ),
            (
                lim(Limits {
                    cpuset_cpus: Some(64),
                    ..Default::default()
                }),
                "limits.cpuset_cpus: 64 cores exceeds",
            ),
            (
                lim(Limits {
                    cpu: Some(2.0),
                    cpuset_cpus: Some(1),
                    ..Default::default()
                }),
                "limits.cpu: more than its 1 pinned cores",
            ),
            (
                lim(Limits {
                    gpus: Some(herd_bus::GpuRequest::Devices(vec![])),
                    ..Default::default()
                }),
                "limits.gpus: an empty list",
            ),
            (
                lim(Limits {
                    gpus: Some(herd_bus::GpuRequest::Devices(vec![
                        "GPU-1".into(),
                        "GPU-1".into(),
                    ])),
                    ..Default::default()
                }),
                "limits.gpus: a UUID is listed twice",
            ),
            (
                WorkloadSpec {
                    timeout_s: Some(-1.0),
                    ..ok_spec()
                },
                "timeout_s: must be > 0",
            ),
            (
                WorkloadSpec {
                    grace_s: Some(f64::INFINITY),
                    ..ok_spec()
                },
                "grace_s: must be a finite",
            ),
            (
                WorkloadSpec {
                    kill_signal: Some("SIGNOPE".into()),
                    ..ok_spec()
                },
                "kill_signal: unknown signal",
            ),
            (
                WorkloadSpec {
                    user: Some("no-such-user-xyz".into()),
                    ..ok_spec()
                },
                "user: no such user 'no-such-user-xyz'",
            ),
            (
                WorkloadSpec {
                    user: Some("root".into()),
                    ..ok_spec()
                },
                "user: running as root needs exec.allow_root",
            ),
            (
                WorkloadSpec {
                    cwd: Some("/nonexistent".into()),
                    ..ok_spec()
                },
                "cwd: '/nonexistent'",
            ),
            (
                WorkloadSpec {
                    env: [("A=B".to_string(), "x".to_string())].into(),
                    ..ok_spec()
                },
                "env: invalid variable",
            ),
        ];
        for (spec, want) in cases {
            let got = err(spec, &p);
            assert!(got.starts_with(want), "wanted {want:?}, got {got:?}");
        }
    }

    #[test]
    fn allowlist_and_allow_root() {
        let p = ExecPolicy {
            allowed_commands: vec!["sleep".into()],
            allow_root: true,
            ..Default::default()
        };
        assert!(validate(&ok_spec(), &p, 2.0).is_ok());
        let bad = WorkloadSpec {
            command: vec!["true".into()],
            ..ok_spec()
        };
        assert!(err(bad, &p).contains("exec.allowed_commands"));
        let root = WorkloadSpec {
            user: Some("root".into()),
            ..ok_spec()
        };
        assert!(validate(&root, &p, 2.0).unwrap().uid.is_root());
    }

    #[test]
    fn docker_specs_need_an_image_and_share_the_common_checks() {
        let docker = |f: fn(&mut WorkloadSpec)| {
            let mut spec = WorkloadSpec {
                driver: Driver::Docker,
                image: Some("herd-test/busybox:1".into()),
                command: vec![],
                cwd: Some("/work".into()),
                user: Some("1000".into()),
                ..ok_spec()
            };
            f(&mut spec);
            validate_any(&spec, &ExecPolicy::default(), 2.0)
        };
        let ok = docker(|_| {}).unwrap();
        assert_eq!(ok.kill_signal(), nix::sys::signal::Signal::SIGTERM);
        let message = |f| docker(f).unwrap_err().message;
        assert!(message(|s| s.image = None).starts_with("image:"));
        assert!(message(|s| s.image = Some("a b".into())).starts_with("image:"));
        assert!(message(|s| s.cwd = Some("rel".into())).starts_with("cwd:"));
        assert!(message(|s| s.limits.cpu = Some(64.0)).starts_with("limits.cpu:"));
        assert!(message(|s| s.kill_signal = Some("NOPE".into())).starts_with("kill_signal:"));
        assert!(message(|s| s.command = vec!["a\0b".into()]).starts_with("command:"));
        assert_eq!(
            message(|s| {
                s.matrix
                    .insert("size".into(), vec![herd_bus::ParamValue::Int(1)]);
            }),
            "matrix: a run expands it into variants; workload.start takes one"
        );
        assert_eq!(
            message(|s| s.inputs = vec![herd_bus::InputFile {
                path: "../x".into(),
                digest: "SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0=".into(),
                size: 3,
                executable: false,
            }]),
            "inputs: \"../x\": the path must not contain '..'"
        );
    }
}
