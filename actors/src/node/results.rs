//! ResultsUploader: uploads what settled run tasks left in their output directories to the
//! `herd-results` bucket (`RUN/NODE/TASK/PATH`), then tells the coordinator with a
//! [`ResultsEvent`] on `evt.<node>.results`.
//!
//! When a task settles, the executor hands its output over ([`ResultsSpool::hand_over`]): the
//! directory is moved (a rename) into a spool under the state directory, so that workload
//! retention cannot remove it, and uploaded from there. The spool entry is removed only once
//! the event is delivered. An upload that NATS refuses is tried again with backoff, for as long
//! as it takes; a restarted herdd resumes every spooled upload.
//!
//! Spool layout: `<state>/results/<run>/<workload>/task.json` (what the task is) and
//! `…/output/` (its output directory).

use crate::cores::backoff::Backoff;
use crate::cores::outbox::OutboxEntry;
use crate::cores::results::{bound, hex, parse_metrics, plan, ResultsPolicy, MAX_METRICS_BYTES};
use crate::edges::clock::now_ms;
use crate::edges::results::{hash_file, list_output, object_digest, open_results_bucket, PutError};
use crate::node::events::{EventPublisher, Flush, Publish};
use actix::prelude::*;
use herd_bus::codec::{self, Encoding};
use herd_bus::{
    result_object_name, NodeId, ResultObject, ResultsEvent, RunId, Subjects, TaskResults,
    WorkloadId, METRICS_FILE,
};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TASK_FILE: &str = "task.json";
const OUTPUT_DIR: &str = "output";
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long one wait for the outbox to deliver the results event lasts.
const FLUSH_WAIT: Duration = Duration::from_secs(10);

/// A settled run task whose output is to be uploaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettledTask {
    pub run_id: RunId,
    pub workload_id: WorkloadId,
    /// Its directory in the bucket: [`herd_bus::result_task_name`].
    pub task: String,
    /// Where the workload wrote its output.
    pub output_dir: PathBuf,
}

/// The executor's side of the uploader: where settled tasks' outputs are spooled.
#[derive(Clone)]
pub struct ResultsSpool {
    dir: PathBuf,
    uploader: Recipient<Spooled>,
}

impl ResultsSpool {
    pub fn new(dir: PathBuf, uploader: Recipient<Spooled>) -> ResultsSpool {
        ResultsSpool { dir, uploader }
    }

    /// Takes a settled task's output over: records the task, moves its output directory into
    /// the spool, and queues its upload. Synchronous, so that nothing removes the directory
    /// first. A directory on another filesystem is uploaded from where it is.
    pub fn hand_over(&self, task: SettledTask) {
        let entry = self
            .dir
            .join(task.run_id.as_str())
            .join(task.workload_id.as_str());
        let spooled = std::fs::create_dir_all(&entry)
            .and_then(|()| {
                let json = serde_json::to_vec_pretty(&task)?;
                herd_shim::write_atomic(&entry.join(TASK_FILE), &json)
            })
            .map_err(|e| format!("cannot spool into {}: {e}", entry.display()));
        if let Err(error) = spooled {
            tracing::error!(workload = %task.workload_id, %error, "the task's results will not be uploaded");
            return;
        }
        match std::fs::rename(&task.output_dir, entry.join(OUTPUT_DIR)) {
            Ok(()) => {}
            // It never started, or left nothing: its results are empty.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(workload = %task.workload_id, dir = %task.output_dir.display(), error = %e, "cannot move the task's output into the results spool; uploading it from where it is")
            }
        }
        self.uploader.do_send(Spooled(entry));
    }
}

/// A spool entry to upload.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Spooled(pub PathBuf);

/// Where one upload job reports to, and what it may use.
#[derive(Clone)]
struct Job {
    client: async_nats::Client,
    subjects: Subjects,
    node_id: NodeId,
    policy: ResultsPolicy,
    events: Addr<EventPublisher>,
    replicas: usize,
}

/// Why a spool entry was not finished.
enum Unfinished {
    /// Try again later (NATS did not answer, a file changed meanwhile).
    Retry(String),
    /// It cannot be uploaded (its record is unreadable): left on disk for an operator.
    Abandon(String),
}

pub struct ResultsUploader {
    job: Job,
    spool: PathBuf,
    queue: VecDeque<PathBuf>,
    busy: bool,
    retry: Backoff,
    failing_since: Option<Instant>,
    /// Chunks of uploads cut short, purged once NATS answers again.
    stale: Vec<String>,
}

impl ResultsUploader {
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        node_id: NodeId,
        policy: ResultsPolicy,
        spool: PathBuf,
        events: Addr<EventPublisher>,
        replicas: usize,
    ) -> ResultsUploader {
        ResultsUploader {
            job: Job {
                client,
                subjects,
                node_id,
                policy,
                events,
                replicas,
            },
            spool,
            queue: VecDeque::new(),
            busy: false,
            retry: Backoff::new(RETRY_MIN, RETRY_MAX),
            failing_since: None,
            stale: Vec::new(),
        }
    }

    /// Spool entries an earlier herdd left (`<spool>/<run>/<workload>/task.json`).
    fn spooled(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(runs) = std::fs::read_dir(&self.spool) else {
            return found;
        };
        for run in runs.flatten() {
            let Ok(tasks) = std::fs::read_dir(run.path()) else {
                continue;
            };
            found.extend(
                tasks
                    .flatten()
                    .map(|t| t.path())
                    .filter(|p| p.join(TASK_FILE).is_file()),
            );
        }
        found.sort();
        found
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Some(entry) = self.queue.front().cloned() else {
            return;
        };
        self.busy = true;
        let stale = std::mem::take(&mut self.stale);
        let job = upload(self.job.clone(), entry.clone(), stale);
        ctx.spawn(
            job.into_actor(self)
                .map(move |(outcome, stale), act, ctx| act.finished(entry, outcome, stale, ctx)),
        );
    }

    fn finished(
        &mut self,
        entry: PathBuf,
        outcome: Result<String, Unfinished>,
        stale: Vec<String>,
        ctx: &mut Context<Self>,
    ) {
        self.busy = false;
        self.stale = stale;
        self.queue.retain(|e| *e != entry);
        match outcome {
            Ok(done) => {
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(
                        after_s = since.elapsed().as_secs_f64(),
                        "results uploads resumed"
                    );
                }
                self.retry.succeeded();
                tracing::info!(spool = %entry.display(), "{done}");
                self.pump(ctx);
            }
            Err(Unfinished::Abandon(error)) => {
                tracing::error!(spool = %entry.display(), %error, "a task's results cannot be uploaded; left in the spool");
                self.pump(ctx);
            }
            Err(Unfinished::Retry(error)) => {
                if self.failing_since.is_none() {
                    self.failing_since = Some(Instant::now());
                    tracing::warn!(spool = %entry.display(), %error, "results upload failed; trying again until NATS takes it");
                } else {
                    tracing::debug!(%error, "results upload retry failed");
                }
                // Behind the others: one task's trouble does not hold theirs.
                self.queue.push_back(entry);
                let delay = self.retry.failed();
                ctx.run_later(delay, |act, ctx| act.pump(ctx));
            }
        }
    }
}

impl Actor for ResultsUploader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let spooled = self.spooled();
        if !spooled.is_empty() {
            tracing::info!(
                tasks = spooled.len(),
                "resuming results uploads of an earlier herdd"
            );
        }
        self.queue.extend(spooled);
        self.pump(ctx);
    }
}

impl Handler<Spooled> for ResultsUploader {
    type Result = ();

    fn handle(&mut self, Spooled(entry): Spooled, ctx: &mut Self::Context) {
        if !self.queue.contains(&entry) {
            self.queue.push_back(entry);
        }
        self.pump(ctx);
    }
}

/// Uploads one spool entry, delivers its event, and removes it. Answers what to log, and the
/// stale chunks left to purge.
async fn upload(
    job: Job,
    entry: PathBuf,
    mut stale: Vec<String>,
) -> (Result<String, Unfinished>, Vec<String>) {
    let outcome = upload_entry(&job, &entry, &mut stale).await;
    (outcome, stale)
}

async fn upload_entry(
    job: &Job,
    entry: &Path,
    stale: &mut Vec<String>,
) -> Result<String, Unfinished> {
    let task: SettledTask = std::fs::read(entry.join(TASK_FILE))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| Unfinished::Abandon(format!("{TASK_FILE}: {e}")))?;
    let moved = entry.join(OUTPUT_DIR);
    let dir = if moved.is_dir() {
        moved
    } else {
        task.output_dir.clone()
    };
    let results = upload_files(job, &task, &dir, stale).await?;
    let summary = format!(
        "run {} task {}: {} files ({} bytes) uploaded{}",
        task.run_id,
        task.task,
        results.objects.len(),
        results.bytes,
        if results.truncated {
            ", truncated at the node's cap"
        } else {
            ""
        }
    );
    deliver_event(job, task, results).await?;
    let entry = entry.to_path_buf();
    let removed = tokio::task::spawn_blocking(move || {
        let removed = std::fs::remove_dir_all(&entry);
        if let Some(run) = entry.parent() {
            let _ = std::fs::remove_dir(run); // once its last task is uploaded
        }
        removed
    })
    .await;
    if let Ok(Err(e)) = removed {
        tracing::warn!(error = %e, "cannot remove an uploaded task's spool entry");
    }
    Ok(summary)
}

/// Uploads the files of `dir` that fit under the node's caps; reads `metrics.json`.
async fn upload_files(
    job: &Job,
    task: &SettledTask,
    dir: &Path,
    stale: &mut Vec<String>,
) -> Result<TaskResults, Unfinished> {
    let listed = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || list_output(&dir))
            .await
            .map_err(|e| Unfinished::Retry(e.to_string()))?
    };
    let found = match listed {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => {
            return Err(Unfinished::Retry(format!(
                "cannot list {}: {e}",
                dir.display()
            )))
        }
    };
    let plan = plan(found, &job.policy);
    let mut results = TaskResults {
        truncated: plan.truncated,
        skipped: plan.skipped,
        ..TaskResults::default()
    };
    if plan.files.iter().any(|f| f.path == METRICS_FILE) {
        match read_metrics(&dir.join(METRICS_FILE)) {
            Ok(bytes) => (results.metrics, results.metrics_error) = parse_metrics(&bytes),
            Err(e) => results.metrics_error = Some(format!("{METRICS_FILE}: {e}")),
        }
    }
    let bucket = open_results_bucket(job.client.clone(), job.replicas)
        .await
        .map_err(Unfinished::Retry)?;
    for file in plan.files {
        let path = dir.join(&file.path);
        let hashed = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || hash_file(&path))
                .await
                .map_err(|e| Unfinished::Retry(e.to_string()))?
        };
        let (size, sha256) = match hashed {
            Ok(h) => h,
            Err(e) => {
                results
                    .skipped
                    .push(format!("{}: cannot be read ({e})", file.path));
                continue;
            }
        };
        let object = result_object_name(&task.run_id, &job.node_id, &task.task, &file.path);
        let held = bucket.info(&object).await.map_err(Unfinished::Retry)?;
        // Uploaded before a restart or an outage cut the task's upload short.
        let already = held.is_some_and(|i| {
            i.size as u64 == size && i.digest.as_deref() == Some(&object_digest(&sha256))
        });
        if !already {
            match bucket.put_file(&object, &path, sha256, stale).await {
                Ok(()) => {}
                Err(PutError::File(e)) => {
                    results
                        .skipped
                        .push(format!("{}: cannot be read ({e})", file.path));
                    continue;
                }
                Err(PutError::Retry(e)) => return Err(Unfinished::Retry(e)),
            }
        }
        results.bytes += size;
        results.objects.push(ResultObject {
            path: file.path,
            object,
            size,
            sha256: hex(&sha256),
        });
    }
    results.skipped = bound(results.skipped);
    *stale = bucket.purge_chunks(std::mem::take(stale)).await;
    Ok(results)
}

fn read_metrics(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = crate::edges::results::open_regular(path)?;
    let size = file.metadata()?.len();
    if size > MAX_METRICS_BYTES {
        return Err(std::io::Error::other(format!(
            "{size} bytes, more than the {MAX_METRICS_BYTES} read"
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_METRICS_BYTES).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Queues the task's ResultsEvent in the node's outbox and waits until the outbox has
/// delivered it. Its id is the task's, so that one sent again after a restart is stored once.
async fn deliver_event(
    job: &Job,
    task: SettledTask,
    results: TaskResults,
) -> Result<(), Unfinished> {
    let event = ResultsEvent {
        event_id: format!("{}-results-{}", job.node_id, task.workload_id),
        node_id: job.node_id.clone(),
        run_id: task.run_id,
        workload_id: task.workload_id,
        task: task.task,
        ts_ms: now_ms(),
        results,
    };
    let payload = codec::encode(&event, Encoding::MsgPack)
        .map_err(|e| Unfinished::Abandon(format!("cannot encode the results event: {e}")))?;
    job.events.do_send(Publish(OutboxEntry {
        subject: job.subjects.results_event(&job.node_id),
        msg_id: event.event_id,
        payload,
    }));
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    loop {
        match job.events.send(Flush(FLUSH_WAIT)).await {
            Ok(0) => return Ok(()),
            Ok(queued) => {
                tracing::debug!(queued, "waiting for the outbox to deliver a results event")
            }
            Err(e) => return Err(Unfinished::Retry(format!("the event publisher: {e}"))),
        }
        tokio::time::sleep(backoff.failed()).await;
    }
}
