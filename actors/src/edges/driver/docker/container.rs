//! Following a started container: its output from the engine's log stream, its exit, its
//! cgroup for telemetry, and signals, kills and removal.

use super::{describe, remove, status_of};
use crate::cores::workload::lifecycle::Exit;
use crate::edges::cgroup::WorkloadCgroup;
use crate::edges::driver::{Output, Running, Started};
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{KillContainerOptions, LogsOptions};
use bollard::Docker;
use futures::future::{FutureExt, LocalBoxFuture};
use futures::StreamExt;
use herd_bus::LogStream;
use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Follows a started container: its pid and cgroup (from `info`, or inspected now), its logs
/// from `since` (0: all), its exit.
pub(super) async fn attach(
    docker: Docker,
    id: String,
    since: i32,
    info: Option<ContainerInspectResponse>,
) -> Result<Started, String> {
    let info = match info {
        Some(info) => info,
        None => docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| format!("cannot inspect the container: {}", describe(&e)))?,
    };
    let pid = info
        .state
        .as_ref()
        .and_then(|s| s.pid)
        .filter(|p| *p > 0)
        .map(|p| p as u32)
        .unwrap_or(0);
    // pid 0: the container has already ended; its exit is read below.
    let sampler = if pid > 0 {
        match crate::edges::cgroup::of_process(pid) {
            Ok(cg) => Some(cg),
            // A container that has already ended has no cgroup left to read.
            Err(e) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => {
                tracing::debug!(container = %id, error = %e, "the container ended at once");
                None
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "no telemetry for the container");
                None
            }
        }
    } else {
        None
    };

    let (out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (err_w, err_r) = tokio::io::duplex(64 * 1024);
    let (logs_done, logs_finished) = tokio::sync::oneshot::channel::<()>();
    let mut logs = Box::pin(docker.logs(
        &id,
        Some(LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            since,
            ..Default::default()
        }),
    ));
    actix::spawn(async move {
        let (mut out_w, mut err_w) = (out_w, err_w);
        while let Some(item) = logs.next().await {
            let result = match item {
                Ok(bollard::container::LogOutput::StdOut { message })
                | Ok(bollard::container::LogOutput::Console { message }) => {
                    out_w.write_all(&message).await
                }
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    err_w.write_all(&message).await
                }
                Ok(bollard::container::LogOutput::StdIn { .. }) => Ok(()),
                Err(e) => {
                    tracing::debug!(error = %describe(&e), "container log stream ended");
                    break;
                }
            };
            if result.is_err() {
                break;
            }
        }
        let _ = logs_done.send(());
    });

    let exited = Arc::new(AtomicBool::new(false));
    let exit = {
        let docker = docker.clone();
        let id = id.clone();
        let exited = exited.clone();
        async move {
            let outcome = wait_for_exit(&docker, &id).await;
            exited.store(true, Ordering::Relaxed);
            // The log stream ends with the container; its last lines go out before the event.
            let _ = tokio::time::timeout(Duration::from_secs(2), logs_finished).await;
            Ok(outcome)
        }
    };
    let output: Vec<(LogStream, Output)> = vec![
        (LogStream::Stdout, Box::new(out_r)),
        (LogStream::Stderr, Box::new(err_r)),
    ];
    Ok(Started {
        pid,
        handle: Arc::new(Container {
            docker,
            id,
            exited,
            sampler,
        }),
        exit: exit.boxed_local(),
        output,
    })
}

/// Waits until the container has stopped, then reads its exit code and OOM kill. A broken
/// wait (the engine restarting) is retried; after a minute without an engine the exit is
/// unknown (-1).
async fn wait_for_exit(docker: &Docker, id: &str) -> Exit {
    let mut failures = 0;
    loop {
        let _ = Box::pin(docker.wait_container(id, None)).next().await;
        match docker.inspect_container(id, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                if state.running != Some(true) {
                    let code = state.exit_code.unwrap_or(-1) as i32;
                    return Exit::code(code).oom_killed(state.oom_killed.unwrap_or(false));
                }
            }
            Err(e) if status_of(&e) == Some(404) => {
                tracing::warn!(
                    container = id,
                    "the container vanished; its exit code is unknown"
                );
                return Exit::code(-1);
            }
            Err(e) => {
                failures += 1;
                if failures >= 60 {
                    tracing::error!(container = id, error = %describe(&e), "lost the Docker engine; the container's exit is unknown");
                    return Exit::code(-1);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A container of herd's.
struct Container {
    docker: Docker,
    id: String,
    exited: Arc<AtomicBool>,
    sampler: Option<Arc<dyn WorkloadCgroup>>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container").field("id", &self.id).finish()
    }
}

impl Container {
    fn send(&self, signal: Signal) {
        if self.exited.load(Ordering::Relaxed) {
            return;
        }
        let (docker, id) = (self.docker.clone(), self.id.clone());
        actix::spawn(async move {
            let options = KillContainerOptions {
                signal: signal.as_str().to_string(),
            };
            match docker.kill_container(&id, Some(options)).await {
                Ok(()) => {}
                // 409: not running (any more); 404: gone.
                Err(e) if matches!(status_of(&e), Some(404 | 409)) => {}
                Err(e) => {
                    tracing::warn!(container = %id, signal = signal.as_str(), error = %describe(&e), "cannot signal the container")
                }
            }
        });
    }
}

impl Running for Container {
    fn signal(&self, signal: Signal) {
        self.send(signal);
    }

    fn kill(&self) {
        self.send(Signal::SIGKILL);
    }

    fn sampler(&self) -> Option<Arc<dyn WorkloadCgroup>> {
        self.sampler.clone()
    }

    fn release(&self) -> LocalBoxFuture<'static, ()> {
        let (docker, id) = (self.docker.clone(), self.id.clone());
        async move { remove(&docker, &id).await }.boxed_local()
    }
}
