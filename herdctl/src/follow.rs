//! Following a workload's output: its history from the node's log stream (`HERD_LOGS_<node>`),
//! then what it writes next, until it settles and its last lines are in. `herdctl logs` and
//! `herdctl run --attach` both follow this way.
//!
//! The history comes through an ordered consumer, which also delivers what is stored later:
//! no line is printed twice and none falls between the history and the live part. Without a
//! stream (a server without JetStream) the live subjects are followed instead.

use crate::ctl::Ctl;
use crate::logs::{LogPrinter, Tail};
use crate::render::{now_ms, out};
use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding};
use herd_bus::{
    ClusterEvent, ClusterEventKind, ErrorBody, ErrorCode, LogChunk, LogStream, NodeId,
    NodeLiveness, NodeVerb, RestartPolicyKind, StopRequest, WorkloadEvent, WorkloadGet, WorkloadId,
    WorkloadState, WorkloadStatus,
};
use std::time::Duration;
use tokio::time::Instant;

/// After a workload settled, how long its last lines may take to arrive when the end of its
/// output (`eof`) does not come (a node older than this herdctl, or one that died).
const DRAIN_WAIT: Duration = Duration::from_secs(3);
/// How often the workload's state is asked for, in case its terminal event was missed (NATS
/// reconnected meanwhile).
const POLL_EVERY: Duration = Duration::from_secs(5);
/// A failed workload under `restart: on_failure` starts again within 30 s (docs/bus.md), and a
/// little more for the clocks of node and herdctl: past that, a settled status is final even
/// when its terminal event was missed.
const RESTART_DUE_WITHIN: Duration = Duration::from_secs(40);

/// Which output to follow, and from where.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub node: NodeId,
    pub workload: WorkloadId,
    /// One stream, or both.
    pub stream: Option<LogStream>,
    /// Only the last N lines of the history.
    pub tail: Option<usize>,
    /// Only the history since this long ago.
    pub since: Option<Duration>,
}

impl LogQuery {
    pub fn all(node: NodeId, workload: WorkloadId) -> LogQuery {
        LogQuery {
            node,
            workload,
            stream: None,
            tail: None,
            since: None,
        }
    }

    fn streams(&self) -> Vec<LogStream> {
        match self.stream {
            Some(s) => vec![s],
            None => vec![LogStream::Stdout, LogStream::Stderr],
        }
    }
}

/// How a workload ended, as its final event or status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub state: WorkloadState,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    /// Whether it ever started (a process existed that could write).
    pub started: bool,
    /// Which run of it settled (its `restarts`): the output to wait for is that run's.
    pub attempt: u32,
}

impl Settled {
    fn of(status: &WorkloadStatus) -> Settled {
        Settled {
            state: status.state,
            exit_code: status.exit_code,
            signal: status.signal.clone(),
            started: status.started_at_ms.is_some(),
            attempt: status.restarts,
        }
    }

    /// From a terminal event: a workload that failed to start wrote nothing.
    fn of_event(ev: &WorkloadEvent) -> Settled {
        Settled {
            state: ev.state,
            exit_code: ev.exit_code,
            signal: ev.signal.clone(),
            started: ev.state != WorkloadState::Failed,
            attempt: ev.restarts,
        }
    }

    fn lost() -> Settled {
        Settled {
            state: WorkloadState::Lost,
            exit_code: None,
            signal: None,
            started: true,
            attempt: 0,
        }
    }
}

/// Why following ended.
#[derive(Debug)]
pub enum Followed {
    /// The workload settled and its output is printed.
    Settled(Settled),
    /// The history is printed (`--no-follow`, or nothing more can come: the node does not
    /// answer, or no longer knows the workload).
    History,
    /// Ctrl-C twice: left while the workload was stopping.
    Detached,
}

/// Where the chunks come from.
pub enum LogSource {
    Kept {
        messages: Box<consumer::pull::Ordered>,
        /// Whether everything stored so far has been delivered.
        caught_up: bool,
    },
    Live(async_nats::Subscriber),
}

impl LogSource {
    /// The node's log history for `q`; the live subjects when there is none.
    pub async fn open(ctl: &Ctl, q: &LogQuery, quiet: bool) -> anyhow::Result<LogSource> {
        let filter = match q.stream {
            Some(s) => ctl.subjects.logs(&q.node, &q.workload, s),
            None => ctl.subjects.logs_of(&q.node, &q.workload),
        };
        let name = ctl.subjects.logs_stream(&q.node);
        let js = jetstream::new(ctl.client.clone());
        let stream = match js.get_stream(&name).await {
            Ok(stream) => stream,
            Err(e) => {
                if !quiet {
                    eprintln!("herdctl: no log history ({name}: {e}); printing live output only");
                }
                return Ok(LogSource::Live(ctl.client.subscribe(filter).await?));
            }
        };
        let deliver_policy = match (q.tail, q.since) {
            (Some(0), _) => consumer::DeliverPolicy::New,
            (_, Some(since)) => {
                let start = now_ms().saturating_sub(since.as_millis() as u64);
                consumer::DeliverPolicy::ByStartTime {
                    start_time: async_nats::datetime::from_nanos(start as i128 * 1_000_000)
                        .map_err(|e| anyhow::anyhow!("--since: {e}"))?,
                }
            }
            _ => consumer::DeliverPolicy::All,
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter,
                deliver_policy,
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot read {name}"))?;
        let caught_up = consumer.cached_info().num_pending == 0;
        let messages = Box::new(
            consumer
                .messages()
                .await
                .with_context(|| format!("cannot read {name}"))?,
        );
        Ok(LogSource::Kept {
            messages,
            caught_up,
        })
    }

    fn caught_up(&self) -> bool {
        match self {
            LogSource::Kept { caught_up, .. } => *caught_up,
            LogSource::Live(_) => true,
        }
    }

    fn is_kept(&self) -> bool {
        matches!(self, LogSource::Kept { .. })
    }

    /// The next chunk; None when the source closed. Chunks that do not decode are skipped.
    async fn next(&mut self) -> Option<anyhow::Result<LogChunk>> {
        let limits = DecodeLimits::default();
        loop {
            let payload = match self {
                LogSource::Kept {
                    messages,
                    caught_up,
                } => match messages.next().await? {
                    Err(e) => return Some(Err(anyhow::anyhow!("reading the log history: {e}"))),
                    Ok(msg) => {
                        *caught_up = msg.info().map(|i| i.pending == 0).unwrap_or(true);
                        msg.message.payload
                    }
                },
                LogSource::Live(sub) => sub.next().await?.payload,
            };
            if let Ok(chunk) = codec::decode::<LogChunk>(&payload, Encoding::MsgPack, &limits) {
                return Some(Ok(chunk));
            }
        }
    }
}

/// The kept output of `q` as `herdctl logs --no-follow` prints it (markers included), at most
/// the last `keep` lines, without waiting for more: what the dashboard shows.
pub async fn history(
    ctl: &Ctl,
    q: &LogQuery,
    keep: usize,
) -> anyhow::Result<Vec<(LogStream, String)>> {
    let mut source = LogSource::open(ctl, q, true).await?;
    if !source.is_kept() {
        return Err(no_history(ctl, q));
    }
    let mut printer = LogPrinter::default();
    let mut tail = Tail::new(keep);
    while !source.caught_up() {
        match tokio::time::timeout(ctl.timeout, source.next()).await {
            Err(_) => anyhow::bail!("the log history did not arrive within {:?}", ctl.timeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(chunk))) => {
                let lines = printer.lines(&chunk);
                tail.push(chunk.stream, lines);
            }
        }
    }
    Ok(tail.drain().collect())
}

fn no_history(ctl: &Ctl, q: &LogQuery) -> anyhow::Error {
    anyhow::anyhow!(
        "no log history of {} on {} is kept in NATS (stream {})",
        q.workload,
        q.node,
        ctl.subjects.logs_stream(&q.node)
    )
}

/// What is known of the workload's end while following.
enum Watch {
    /// Running (or starting): follow until it settles.
    Running,
    /// Settled: print what is still coming until every stream's output ended, at most until
    /// `until`.
    Settled(Settled, Instant),
    /// Nothing more will come that can be waited for: stop once the history is printed.
    HistoryOnly,
}

/// Writes one chunk's lines on stdout or stderr (`--json`: the chunk, one line of JSON).
fn print(ctl: &Ctl, chunk: &LogChunk, lines: Vec<String>) {
    if ctl.json {
        if let Ok(line) = serde_json::to_string(chunk) {
            out(&format!("{line}\n"));
        }
        return;
    }
    print_lines(chunk.stream, lines);
}

fn print_lines(stream: LogStream, lines: impl IntoIterator<Item = String>) {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    if text.is_empty() {
        return;
    }
    match stream {
        LogStream::Stdout => out(&text),
        LogStream::Stderr => eprint!("{text}"),
    }
}

/// The subscriptions that tell when the workload settles; made before the workload is asked
/// about (or started), so that no event falls in between.
pub struct Ending {
    events: async_nats::Subscriber,
    lost: async_nats::Subscriber,
}

impl Ending {
    pub async fn subscribe(ctl: &Ctl, node: &NodeId) -> anyhow::Result<Ending> {
        let events = ctl
            .client
            .subscribe(ctl.subjects.workload_events_of(node))
            .await?;
        let lost = ctl
            .client
            .subscribe(
                ctl.subjects
                    .cluster_event(ClusterEventKind::Node(NodeLiveness::Lost)),
            )
            .await?;
        ctl.client.flush().await?;
        Ok(Ending { events, lost })
    }
}

/// How follow treats Ctrl-C.
pub enum OnInterrupt {
    /// The default: herdctl ends.
    Exit,
    /// Stop the workload (its kill_signal and grace) and go on until it settled; a second
    /// Ctrl-C detaches.
    StopWorkload(tokio::signal::unix::Signal),
}

/// Prints the workload's output per `q`: the history, then (with `follow`) what comes until it
/// settled and its output ended.
pub async fn follow(
    ctl: &Ctl,
    q: &LogQuery,
    mut source: LogSource,
    mut ending: Ending,
    follow: bool,
    mut interrupt: OnInterrupt,
) -> anyhow::Result<Followed> {
    let limits = DecodeLimits::default();
    let streams = q.streams();
    // The `restarts` of the attempt running now, once known.
    let mut attempt = None;
    let mut watch = if follow {
        first_look(ctl, q, &mut attempt).await
    } else {
        Watch::HistoryOnly
    };
    if matches!(watch, Watch::HistoryOnly) && !source.is_kept() {
        return Err(no_history(ctl, q));
    }
    let mut printer = LogPrinter::default();
    let mut tail = q.tail.filter(|n| *n > 0).map(Tail::new);
    let mut printed_any = false;
    let mut stops = 0;
    let mut poll = tokio::time::interval_at(Instant::now() + POLL_EVERY, POLL_EVERY);
    loop {
        if source.caught_up() {
            if let Some(mut t) = tail.take() {
                for (stream, line) in t.drain() {
                    print_lines(stream, [line]);
                }
            }
            match &watch {
                Watch::HistoryOnly if printed_any => return Ok(Followed::History),
                Watch::HistoryOnly => return nothing_kept(ctl, q).await,
                Watch::Settled(s, until)
                    if !s.started
                        || printer.ended(&streams, s.attempt)
                        || Instant::now() >= *until =>
                {
                    return Ok(Followed::Settled(s.clone()));
                }
                _ => {}
            }
        }
        let drain_until = match &watch {
            Watch::Settled(_, until) => Some(*until),
            _ => None,
        };
        tokio::select! {
            item = source.next() => match item {
                None => anyhow::bail!("the log source closed"),
                Some(Err(e)) => eprintln!("herdctl: {e:#}"),
                Some(Ok(chunk)) => {
                    printed_any = true;
                    let lines = printer.lines(&chunk);
                    match &mut tail {
                        Some(t) => t.push(chunk.stream, lines),
                        None => print(ctl, &chunk, lines),
                    }
                }
            },
            Some(msg) = ending.events.next(), if matches!(watch, Watch::Running) => {
                let Ok(ev) = codec::decode::<WorkloadEvent>(&msg.payload, Encoding::MsgPack, &limits) else {
                    continue;
                };
                if ev.workload_id != q.workload {
                    continue;
                }
                if !ev.state.is_terminal() {
                    attempt = Some(ev.restarts);
                } else if let Some(settled) = settled_after(ctl, q, &ev, attempt).await {
                    watch = settling(settled, now_ms());
                }
            }
            Some(msg) = ending.lost.next(), if matches!(watch, Watch::Running) => {
                let lost = codec::decode::<ClusterEvent>(&msg.payload, Encoding::MsgPack, &limits)
                    .is_ok_and(|ev| ev.node_id.as_ref() == Some(&q.node));
                if lost {
                    eprintln!("herdctl: node {} is lost", q.node);
                    watch = Watch::Settled(Settled::lost(), Instant::now());
                }
            }
            _ = poll.tick(), if matches!(watch, Watch::Running) => {
                if let Ok(status) = get(ctl, q).await {
                    if settled_for_good(&status) {
                        watch = settling(Settled::of(&status), status.finished_at_ms.unwrap_or_else(now_ms));
                    }
                }
            }
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => {}
            _ = interrupted(&mut interrupt) => {
                stops += 1;
                if stops > 1 {
                    eprintln!("herdctl: detached; {} is still stopping on {}", q.workload, q.node);
                    return Ok(Followed::Detached);
                }
                eprintln!("herdctl: stopping {} (its kill_signal, then SIGKILL after its grace period); Ctrl-C again to detach", q.workload);
                let req = StopRequest {
                    workload_id: Some(q.workload.clone()),
                    ..Default::default()
                };
                if let Err(e) = ctl.call::<_, herd_bus::Ack>(&q.node, NodeVerb::WorkloadStop, &req).await {
                    eprintln!("herdctl: cannot stop {}: {e:#}", q.workload);
                }
            }
        }
    }
}

/// An empty history: fine for a workload the node knows (it wrote nothing yet), an error for
/// one it does not know, or when it cannot be asked.
async fn nothing_kept(ctl: &Ctl, q: &LogQuery) -> anyhow::Result<Followed> {
    match get(ctl, q).await {
        Ok(_) => Ok(Followed::History),
        Err(e) => Err(e.context(format!(
            "no log history of {} on {} is kept in NATS",
            q.workload, q.node
        ))),
    }
}

async fn interrupted(on: &mut OnInterrupt) {
    match on {
        OnInterrupt::Exit => std::future::pending().await,
        OnInterrupt::StopWorkload(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending().await
            }
        }
    }
}

async fn get(ctl: &Ctl, q: &LogQuery) -> anyhow::Result<WorkloadStatus> {
    ctl.call(
        &q.node,
        NodeVerb::WorkloadGet,
        &WorkloadGet {
            workload_id: q.workload.clone(),
        },
    )
    .await
}

/// Where following starts: the workload's state now, or why only its history can be printed.
async fn first_look(ctl: &Ctl, q: &LogQuery, attempt: &mut Option<u32>) -> Watch {
    match get(ctl, q).await {
        Ok(status) if !status.state.is_terminal() => {
            *attempt = Some(status.restarts);
            Watch::Running
        }
        Ok(status) if settled_for_good(&status) => settling(
            Settled::of(&status),
            status.finished_at_ms.unwrap_or_else(now_ms),
        ),
        // Running, or ended with a restart perhaps due: events tell (see `settled_after`).
        Ok(_) => Watch::Running,
        Err(e) => {
            let unknown = e
                .downcast_ref::<ErrorBody>()
                .is_some_and(|b| b.code == ErrorCode::NotFound);
            if unknown {
                eprintln!(
                    "herdctl: {} does not know {}; printing its kept log history",
                    q.node, q.workload
                );
            } else {
                eprintln!(
                    "herdctl: {} does not answer ({e:#}); printing the log history kept in NATS",
                    q.node
                );
            }
            Watch::HistoryOnly
        }
    }
}

/// Settled at `finished_at_ms` (the node's clock): its last lines are waited for until
/// [`DRAIN_WAIT`] after that, so that a workload that ended long ago is not waited for.
fn settling(settled: Settled, finished_at_ms: u64) -> Watch {
    let age = Duration::from_millis(now_ms().saturating_sub(finished_at_ms));
    Watch::Settled(settled, Instant::now() + DRAIN_WAIT.saturating_sub(age))
}

/// After a terminal event: settled for good, or about to start again (restart policy)? The
/// node counts a due restart in `restarts` before it publishes the terminal event, so an event
/// whose `restarts` went past the attempt's (from its `starting`/`running` event or status)
/// announces a restart. Without the attempt's count, the status decides.
async fn settled_after(
    ctl: &Ctl,
    q: &LogQuery,
    ev: &WorkloadEvent,
    attempt: Option<u32>,
) -> Option<Settled> {
    match attempt {
        Some(restarts) if ev.restarts > restarts => None,
        Some(_) => Some(Settled::of_event(ev)),
        None => match get(ctl, q).await {
            Ok(status) if settled_for_good(&status) => Some(Settled::of(&status)),
            Ok(_) => None,
            Err(_) => Some(Settled::of_event(ev)),
        },
    }
}

/// Whether a status is the workload's end: terminal, and no restart can be due any more (a
/// status alone cannot tell a failure's last restart from one that is due; events tell, see
/// [`settled_after`]).
fn settled_for_good(status: &WorkloadStatus) -> bool {
    let finished_at = status.finished_at_ms.unwrap_or_else(now_ms);
    let since = Duration::from_millis(now_ms().saturating_sub(finished_at));
    status.state.is_terminal() && (!may_restart(status) || since > RESTART_DUE_WITHIN)
}

/// Whether a settled status may still be followed by a restart: only a failure under
/// `on_failure` may.
fn may_restart(status: &WorkloadStatus) -> bool {
    let failed = match status.state {
        WorkloadState::Exited => status.exit_code != Some(0),
        WorkloadState::Killed | WorkloadState::OomKilled | WorkloadState::Failed => true,
        _ => false,
    };
    failed && status.spec.restart.policy == RestartPolicyKind::OnFailure
}
