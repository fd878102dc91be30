//! `herdctl run NODE --attach -- CMD` and `herdctl logs NODE ID`: a workload's output on the
//! terminal, and for attach its end as herdctl's exit code, as `docker run` without `-d` does.

use crate::ctl::Ctl;
use crate::follow::{follow, Ending, Followed, LogQuery, LogSource, OnInterrupt, Settled};
use crate::logs::parse_since;
use herd_bus::{Accepted, LogStream, NodeId, NodeVerb, WorkloadId, WorkloadSpec, WorkloadState};
use std::process::ExitCode;

/// Exit codes of `herdctl run --attach` besides the workload's own (exited: its code; stopped
/// or killed by signal N: 128+N, as a shell reports it). Documented in the README and in
/// `herdctl run --help`.
pub mod code {
    /// timed_out: stopped after its `timeout_s`, as timeout(1) reports it.
    pub const TIMED_OUT: u8 = 124;
    /// failed: it could not start (bad spec, missing command or image, no such user), or
    /// herdctl could not run it (no NATS, no such node), as docker run reports it.
    pub const FAILED_TO_START: u8 = 125;
    /// Detached with a second Ctrl-C while it was stopping (128 + SIGINT).
    pub const DETACHED: u8 = 130;
    /// oom_killed: apart from 137 (a SIGKILL from elsewhere), so that scripts tell them apart.
    pub const OOM_KILLED: u8 = 250;
    /// lost: its node was lost, or herd lost track of it; how it ended is unknown.
    pub const LOST: u8 = 255;
}

/// herdctl's exit code for a workload that ended so.
pub fn exit_code(s: &Settled) -> u8 {
    let by_signal = || s.signal.as_deref().and_then(signal_number).map(|n| 128 + n);
    let own = || s.exit_code.map(|c| u8::try_from(c).unwrap_or(1));
    match s.state {
        WorkloadState::TimedOut => code::TIMED_OUT,
        WorkloadState::Failed => code::FAILED_TO_START,
        WorkloadState::OomKilled => code::OOM_KILLED,
        WorkloadState::Lost => code::LOST,
        // A stop or a kill ends it with its own code when it handled the signal, else with
        // the signal's.
        WorkloadState::Exited | WorkloadState::Stopped | WorkloadState::Killed => own()
            .or_else(by_signal)
            // Neither: an exit herd could not read, or a stop before it ran.
            .unwrap_or(if s.state == WorkloadState::Exited {
                1
            } else {
                128 + 15
            }),
        WorkloadState::Pending | WorkloadState::Starting | WorkloadState::Running => 1,
    }
}

/// `SIGKILL` → 9; also `KILL`, `9`, and `signal 34` (how herd names signals nix does not).
fn signal_number(name: &str) -> Option<u8> {
    use std::str::FromStr;
    let name = name.trim();
    if let Some(n) = name
        .strip_prefix("signal ")
        .or(Some(name))
        .and_then(|n| n.parse::<u8>().ok())
    {
        return Some(n);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&full)
        .ok()
        .and_then(|s| u8::try_from(s as i32).ok())
}

/// Starts `spec` on `node` and prints its output until it settled; answers its exit code.
pub async fn run_attached(ctl: &Ctl, node: NodeId, mut spec: WorkloadSpec) -> ExitCode {
    match attach(ctl, node, &mut spec).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("herdctl: {e:#}");
            ExitCode::from(code::FAILED_TO_START)
        }
    }
}

async fn attach(ctl: &Ctl, node: NodeId, spec: &mut WorkloadSpec) -> anyhow::Result<u8> {
    // Chosen here, so that its output can be followed from its first line.
    let workload = spec
        .workload_id
        .get_or_insert_with(WorkloadId::random)
        .clone();
    let interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let q = LogQuery::all(node.clone(), workload);
    let ending = Ending::subscribe(ctl, &node).await?;
    let source = LogSource::open(ctl, &q, false).await?;
    let accepted: Accepted = ctl.call(&node, NodeVerb::WorkloadStart, &*spec).await?;
    if accepted.existing {
        eprintln!(
            "herdctl: {} was already started with this spec; following it",
            accepted.workload_id
        );
    }
    let followed = follow(
        ctl,
        &q,
        source,
        ending,
        true,
        OnInterrupt::StopWorkload(interrupts),
    )
    .await?;
    Ok(match followed {
        Followed::Settled(s) => exit_code(&s),
        Followed::Detached => code::DETACHED,
        // The node stopped answering right after the start: how it ends is unknown.
        Followed::History => code::LOST,
    })
}

/// `herdctl logs NODE ID`.
pub struct LogsArgs {
    pub node: String,
    pub workload: String,
    pub tail: Option<usize>,
    pub since: Option<String>,
    pub no_follow: bool,
    pub stream: Option<String>,
}

pub async fn logs(ctl: &Ctl, a: LogsArgs) -> anyhow::Result<ExitCode> {
    let stream = match a.stream.as_deref() {
        None => None,
        Some(s) => Some(
            LogStream::parse(s)
                .ok_or_else(|| anyhow::anyhow!("--stream: '{s}' is neither stdout nor stderr"))?,
        ),
    };
    if ctl.json && a.tail.is_some() {
        anyhow::bail!("--tail counts lines and --json prints chunks: use --since with --json");
    }
    let q = LogQuery {
        node: NodeId::new(a.node)?,
        workload: WorkloadId::new(a.workload)?,
        stream,
        tail: a.tail,
        since: a
            .since
            .as_deref()
            .map(parse_since)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--since: {e}"))?,
    };
    let ending = Ending::subscribe(ctl, &q.node).await?;
    let source = LogSource::open(ctl, &q, a.no_follow).await?;
    follow(ctl, &q, source, ending, !a.no_follow, OnInterrupt::Exit).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(state: WorkloadState, exit_code: Option<i32>, signal: Option<&str>) -> u8 {
        super::exit_code(&Settled {
            state,
            exit_code,
            signal: signal.map(str::to_string),
            started: true,
            attempt: 0,
        })
    }

    #[test]
    fn every_ending_has_its_own_code() {
        use WorkloadState::*;
        assert_eq!(ended(Exited, Some(3), None), 3);
        assert_eq!(ended(Exited, Some(0), None), 0);
        assert_eq!(ended(Killed, None, Some("SIGKILL")), 137);
        assert_eq!(ended(Killed, None, Some("SIGSEGV")), 139);
        assert_eq!(ended(Stopped, None, Some("SIGTERM")), 143);
        assert_eq!(ended(Stopped, Some(7), None), 7, "it handled the signal");
        assert_eq!(ended(Stopped, None, Some("signal 40")), 168);
        assert_eq!(ended(TimedOut, None, Some("SIGTERM")), code::TIMED_OUT);
        assert_eq!(ended(OomKilled, None, Some("SIGKILL")), code::OOM_KILLED);
        assert_eq!(ended(Failed, None, None), code::FAILED_TO_START);
        assert_eq!(ended(Lost, None, None), code::LOST);
        let herds = [
            code::TIMED_OUT,
            code::FAILED_TO_START,
            code::DETACHED,
            code::OOM_KILLED,
            code::LOST,
        ];
        let unique: std::collections::BTreeSet<_> = herds.iter().collect();
        assert_eq!(unique.len(), herds.len());
        assert!(
            !herds.contains(&(128 + 9)),
            "an OOM kill is told apart from SIGKILL"
        );
    }

    #[test]
    fn signals_are_numbered_as_on_linux() {
        assert_eq!(signal_number("SIGKILL"), Some(9));
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_number("sigint"), Some(2));
        assert_eq!(signal_number("signal 34"), Some(34));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGNOPE"), None);
    }
}
