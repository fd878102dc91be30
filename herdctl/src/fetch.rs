//! `herdctl run fetch`: every task's uploaded files from the `herd-results` bucket into
//! `DIR/RUN/NODE/TASK/PATH`, each checked against the SHA-256 its journal entry lists, with the
//! journal and a per-task summary beside them as JSON.

use crate::ctl::Ctl;
use crate::render::{human_bytes, out, state_name, Table};
use anyhow::{bail, Context};
use async_nats::jetstream::{self, object_store::ObjectStore};
use herd_bus::{result_task_name, RunId, RunRecord, TaskRecord, TaskStatus, RESULTS_BUCKET};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What became of one task's results.
#[derive(Debug, Default, Serialize)]
struct Fetched {
    files: usize,
    bytes: u64,
    /// Files already there with the right digest (an earlier fetch).
    unchanged: usize,
    /// Why files could not be fetched.
    errors: Vec<String>,
}

/// Where a task's results stand.
#[derive(Debug, PartialEq, Eq)]
enum Awaited {
    Uploaded,
    /// Not yet: the task is running, or its node has not uploaded them (it keeps them until
    /// it can).
    Waiting,
    /// The task never ran: it has none.
    None,
}

fn awaited(t: &TaskRecord) -> Awaited {
    if t.results.is_some() {
        Awaited::Uploaded
    } else if matches!(t.status, TaskStatus::Pending | TaskStatus::Running)
        || t.started_at_ms.is_some()
    {
        Awaited::Waiting
    } else {
        Awaited::None
    }
}

/// `path` as a relative path below a task's directory: no `..`, no root, nothing empty.
fn safe_relative(path: &str) -> anyhow::Result<PathBuf> {
    if let Some(why) = herd_bus::input_path_problem(path) {
        bail!("refusing the path '{path}': not a plain relative path ({why})");
    }
    Ok(PathBuf::from(path))
}

/// One line of `summary.json`: what the journal knows of a task.
#[derive(Debug, Serialize)]
struct TaskSummary<'a> {
    task_id: &'a str,
    node_id: &'a str,
    rep: u32,
    /// Its directory under `NODE/`.
    dir: String,
    status: TaskStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<&'a herd_bus::ResourceSummary>,
    results_uploaded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<&'a std::collections::BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_error: Option<&'a str>,
    files: usize,
    bytes: u64,
    truncated: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    skipped: &'a [String],
}

fn summary<'a>(run: &'a RunRecord) -> serde_json::Value {
    let tasks: Vec<TaskSummary<'a>> = run
        .tasks
        .iter()
        .map(|t| {
            let r = t.results.as_ref();
            TaskSummary {
                task_id: &t.task_id,
                node_id: t.node_id.as_str(),
                rep: t.rep,
                dir: result_task_name(
                    t.workload.as_deref().or(run.spec.workload.name.as_deref()),
                    t.rep,
                ),
                status: t.status,
                exit_code: t.exit_code,
                duration_s: t.duration_s,
                error: t.error.as_deref(),
                resources: t.resources.as_ref(),
                results_uploaded: r.is_some(),
                metrics: r.map(|r| &r.metrics).filter(|m| !m.is_empty()),
                metrics_error: r.and_then(|r| r.metrics_error.as_deref()),
                files: r.map_or(0, |r| r.objects.len()),
                bytes: r.map_or(0, |r| r.bytes),
                truncated: r.is_some_and(|r| r.truncated),
                skipped: r.map_or(&[], |r| &r.skipped),
            }
        })
        .collect();
    serde_json::json!({
        "run_id": run.run_id,
        "state": run.state,
        "created_at_ms": run.created_at_ms,
        "updated_at_ms": run.updated_at_ms,
        "tasks": tasks,
    })
}

pub async fn fetch(ctl: &Ctl, run_id: &str, to: &Path, partial: bool) -> anyhow::Result<ExitCode> {
    let run = crate::runs::get_run(ctl, &RunId::new(run_id)?).await?;
    let root = to.join(run.run_id.as_str());
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut bucket: Option<ObjectStore> = None;
    let mut table = Table::new(&["NODE", "TASK", "STATUS", "FILES", "BYTES", "NOTE"]);
    let (mut files, mut bytes, mut failed) = (0usize, 0u64, 0usize);
    let mut waiting = Vec::new();
    for t in &run.tasks {
        let dir = result_task_name(
            t.workload.as_deref().or(run.spec.workload.name.as_deref()),
            t.rep,
        );
        let (fetched, note) = match (awaited(t), &t.results) {
            (Awaited::Uploaded, Some(results)) => {
                let store = match &bucket {
                    Some(b) => b.clone(),
                    None => {
                        let b = open_bucket(ctl).await?;
                        bucket = Some(b.clone());
                        b
                    }
                };
                let task_root = root.join(t.node_id.as_str()).join(&dir);
                let mut f = Fetched::default();
                for o in &results.objects {
                    let got = match safe_relative(&o.path) {
                        Ok(rel) => {
                            download(&store, &o.object, &task_root.join(rel), &o.sha256).await
                        }
                        Err(e) => Err(e),
                    };
                    match got {
                        Ok(unchanged) => {
                            f.files += 1;
                            f.bytes += o.size;
                            f.unchanged += usize::from(unchanged);
                        }
                        Err(e) => f.errors.push(format!("{}: {e:#}", o.object)),
                    }
                }
                let mut notes = Vec::new();
                if results.truncated {
                    notes.push("truncated at the node's cap".to_string());
                }
                if !f.errors.is_empty() {
                    notes.push(format!("{} failed", f.errors.len()));
                }
                (Some(f), notes.join("; "))
            }
            (Awaited::Waiting, _) => {
                waiting.push(format!("{}::{dir} ({})", t.node_id, state_name(t.status)));
                (None, "results not uploaded yet".to_string())
            }
            _ => (None, "never ran: no results".to_string()),
        };
        if let Some(f) = &fetched {
            files += f.files;
            bytes += f.bytes;
            failed += f.errors.len();
            for e in &f.errors {
                eprintln!("herdctl: {e}");
            }
        }
        table.row(vec![
            t.node_id.to_string(),
            dir,
            state_name(t.status),
            fetched
                .as_ref()
                .map(|f| f.files.to_string())
                .unwrap_or_default(),
            fetched
                .as_ref()
                .map(|f| human_bytes(f.bytes))
                .unwrap_or_default(),
            note,
        ]);
    }
    write_json(&root.join("journal.json"), &run)?;
    write_json(&root.join("summary.json"), &summary(&run))?;
    if ctl.json {
        let report = serde_json::json!({
            "dir": root, "files": files, "bytes": bytes, "failed": failed, "waiting": waiting,
        });
        out(&format!("{}\n", serde_json::to_string_pretty(&report)?));
    } else {
        out(&table.render());
        out(&format!(
            "{files} files ({}) of run {} in {}, with journal.json and summary.json\n",
            human_bytes(bytes),
            run.run_id,
            root.display()
        ));
    }
    if failed > 0 {
        eprintln!("herdctl: {failed} files could not be fetched or did not match their digest");
        return Ok(ExitCode::FAILURE);
    }
    if !waiting.is_empty() {
        eprintln!(
            "herdctl: results not uploaded yet for {} tasks: {}{}",
            waiting.len(),
            waiting.join(", "),
            if partial {
                ""
            } else {
                " (try again later, or --partial to accept what is there)"
            }
        );
        if !partial {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn open_bucket(ctl: &Ctl) -> anyhow::Result<ObjectStore> {
    jetstream::new(ctl.client.clone())
        .get_object_store(RESULTS_BUCKET)
        .await
        .with_context(|| format!("cannot open the {RESULTS_BUCKET} object store bucket"))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Lowercase hex SHA-256 of a file, None when it is not there.
async fn file_sha256(path: &Path) -> Option<String> {
    let mut file = tokio::fs::File::open(path).await.ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf).await.ok()? {
            0 => return Some(hex(&hasher.finalize())),
            n => hasher.update(&buf[..n]),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads `object` to `dest` (through a temporary file beside it) and checks its digest.
/// Answers true when `dest` already held it.
async fn download(
    bucket: &ObjectStore,
    object: &str,
    dest: &Path,
    sha256: &str,
) -> anyhow::Result<bool> {
    if file_sha256(dest).await.as_deref() == Some(sha256) {
        return Ok(true);
    }
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut reader = bucket.get(object).await.context("not in the bucket")?;
    let part = dest.with_file_name(format!(
        ".{}.part",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut file = tokio::fs::File::create(&part)
        .await
        .with_context(|| format!("cannot create {}", part.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).await.context("download")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).await?;
    }
    file.flush().await?;
    drop(file);
    let got = hex(&hasher.finalize());
    if got != sha256 {
        let _ = tokio::fs::remove_file(&part).await;
        bail!("its SHA-256 is {got}, the journal lists {sha256}");
    }
    tokio::fs::rename(&part, dest)
        .await
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_bus::{NodeId, TaskResults};

    #[test]
    fn only_plain_relative_paths_are_written() {
        assert_eq!(
            safe_relative("a/b/c.bin").unwrap(),
            PathBuf::from("a/b/c.bin")
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "./a",
            "a//b",
            "a/",
        ] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }

    fn task(status: TaskStatus, started: bool, results: bool) -> TaskRecord {
        TaskRecord {
            task_id: "a::t::1".into(),
            node_id: NodeId::new("a").unwrap(),
            rep: 1,
            status,
            workload: None,
            phase: Default::default(),
            attempt: 1,
            attempts: vec![],
            workload_id: None,
            started_at_ms: started.then_some(1),
            finished_at_ms: None,
            duration_s: None,
            exit_code: None,
            error: None,
            resources: None,
            results: results.then(TaskResults::default),
        }
    }

    #[test]
    fn tasks_that_ran_are_awaited_until_their_results_arrive() {
        use TaskStatus::*;
        assert_eq!(awaited(&task(Completed, true, true)), Awaited::Uploaded);
        assert_eq!(awaited(&task(Completed, true, false)), Awaited::Waiting);
        assert_eq!(awaited(&task(Lost, true, false)), Awaited::Waiting);
        assert_eq!(awaited(&task(Running, false, false)), Awaited::Waiting);
        assert_eq!(awaited(&task(Pending, false, false)), Awaited::Waiting);
        // Skipped, or refused by its node: nothing ran, nothing will come.
        assert_eq!(awaited(&task(Skipped, false, false)), Awaited::None);
        assert_eq!(awaited(&task(Failed, false, false)), Awaited::None);
    }
}
