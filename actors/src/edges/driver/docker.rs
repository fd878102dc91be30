//! The docker driver: containers through the Docker engine's API (bollard).
//!
//! A container gets the workload's limits (cpu → nano_cpus, memory with no extra swap, pids),
//! the cores and GPUs the node assigned it (`CpusetCpus`; a device request for exactly its GPUs
//! by UUID, with `CUDA_VISIBLE_DEVICES` and `NVIDIA_VISIBLE_DEVICES` naming them),
//! the labels `herd.workload_id`, `herd.run_id`, `herd.node`, and the name
//! `herd-<node>-<workload>`. herd samples the container's own cgroup (found from its init's pid)
//! through the same path as exec workloads, never the stats API. Exit code and OOM kill come
//! from inspecting the container once it has stopped; a container killed by a signal exits with
//! 128 + the signal's number, as Docker reports it. Logs come from the engine's log stream.

use super::{Driver, DriverError, Launch, Recovered, Started};
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum, DeviceRequest, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, RemoveContainerOptions,
};
use bollard::Docker;
use futures::future::{FutureExt, LocalBoxFuture};
use futures::StreamExt;
use herd_bus::{
    ErrorBody, ErrorCode, NodeId, PullPolicy, WorkloadId, WorkloadSpec, WorkloadStatus,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub const LABEL_WORKLOAD: &str = "herd.workload_id";
pub const LABEL_RUN: &str = "herd.run_id";
pub const LABEL_NODE: &str = "herd.node";
/// Where a run task's results directory appears inside its container.
/// Where a container sees its working directory (its default cwd, HOME; a run task's
/// HERD_OUTPUT_DIR is `output/` in it, HERD_INPUT_DIR `inputs/`).
pub const WORK_MOUNT: &str = "/herd/work";
/// The default engine socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// How long to wait for the engine's answer to one request.
const REQUEST_TIMEOUT_S: u64 = 120;
/// How long after sending the start the pid's inspect follows it, so that the start reaches
/// the engine first (an inspect before it is asked again).
const EARLY_INSPECT: std::time::Duration = std::time::Duration::from_millis(5);

/// `[docker]` in herd.toml.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// The engine's API socket (a path, or `unix://` and a path).
    pub socket: String,
    /// When images are pulled, for specs that do not say. `never` suits nodes whose engine
    /// cannot reach a registry: a missing image is then a clear error, not a slow failed pull.
    pub pull_policy: PullPolicy,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            socket: DEFAULT_SOCKET.into(),
            pull_policy: PullPolicy::Never,
        }
    }
}

/// The name of a workload's container: the node is part of it, as several nodes may share an
/// engine (`herdd dev --nodes 3`).
pub fn container_name(node: &NodeId, id: &WorkloadId) -> String {
    format!("herd-{node}-{id}")
}

/// The engine's message for an error response, or the error.
fn describe(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        other => other.to_string(),
    }
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Splits an image reference into what `/images/create` wants: without a tag or digest it
/// would pull every tag, so `latest` is named.
fn pull_reference(image: &str) -> (String, Option<String>) {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        (image.to_string(), None)
    } else {
        (image.to_string(), Some("latest".into()))
    }
}

/// A container of this node, found by its labels.
#[derive(Debug, Clone)]
pub struct Found {
    pub container: String,
    pub workload: String,
    pub running: bool,
}

/// What a restarted herdd does with its containers and its unsettled container records.
#[derive(Debug, Default, PartialEq)]
pub struct AdoptionPlan {
    /// Follow again: the record, the container, whether it still runs.
    pub adopt: Vec<(WorkloadStatus, String, bool)>,
    /// Containers of this node with no unsettled record: removed.
    pub orphans: Vec<String>,
    /// Unsettled records whose container is gone: reported lost.
    pub lost: Vec<WorkloadStatus>,
}

/// Pairs the containers found by label with the unsettled records of docker workloads.
pub fn plan_adoption(records: Vec<WorkloadStatus>, found: Vec<Found>) -> AdoptionPlan {
    let mut records: BTreeMap<String, WorkloadStatus> = records
        .into_iter()
        .filter(|s| s.spec.driver == herd_bus::Driver::Docker && !s.state.is_terminal())
        .map(|s| (s.workload_id.to_string(), s))
        .collect();
    let mut plan = AdoptionPlan::default();
    for f in found {
        match records.remove(&f.workload) {
            Some(status) => plan.adopt.push((status, f.container, f.running)),
            None => plan.orphans.push(f.container),
        }
    }
    plan.lost = records.into_values().collect();
    plan
}

#[derive(Clone)]
pub struct DockerDriver {
    socket: String,
    default_pull: PullPolicy,
    node_id: NodeId,
    engine: Arc<tokio::sync::OnceCell<Docker>>,
}

impl DockerDriver {
    pub fn new(config: &DockerConfig, node_id: NodeId) -> DockerDriver {
        DockerDriver {
            socket: config
                .socket
                .strip_prefix("unix://")
                .unwrap_or(&config.socket)
                .to_string(),
            default_pull: config.pull_policy,
            node_id,
            engine: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The socket, as error messages and `herdd doctor` name it.
    pub fn socket_url(&self) -> String {
        format!("unix://{}", self.socket)
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> ErrorBody {
        ErrorBody {
            code: ErrorCode::Unavailable,
            message: format!(
                "driver: cannot reach the Docker engine at {}: {e}",
                self.socket_url()
            ),
        }
    }

    /// The engine, answering: connected once (API version negotiated), then pinged. For
    /// answers given before anything is created (preflight, listing, version).
    pub fn engine(&self) -> LocalBoxFuture<'static, Result<Docker, ErrorBody>> {
        let this = self.clone();
        let client = self.client();
        async move {
            let docker = client.await?;
            docker
                .ping()
                .await
                .map_err(|e| this.unavailable(describe(&e)))?;
            Ok(docker)
        }
        .boxed_local()
    }

    /// The connected client without a ping: a launch right after its preflight learns of a
    /// vanished engine from its first request.
    fn client(&self) -> LocalBoxFuture<'static, Result<Docker, ErrorBody>> {
        let this = self.clone();
        async move {
            let docker = this
                .engine
                .get_or_try_init(|| async {
                    let docker = Docker::connect_with_unix(
                        &this.socket,
                        REQUEST_TIMEOUT_S,
                        bollard::API_DEFAULT_VERSION,
                    )?;
                    docker.negotiate_version().await
                })
                .await
                .map_err(|e| this.unavailable(describe(&e)))?
                .clone();
            Ok(docker)
        }
        .boxed_local()
    }

    /// The engine's version, for logs and tests.
    pub fn version(&self) -> LocalBoxFuture<'static, Result<String, ErrorBody>> {
        let engine = self.engine();
        async move {
            let docker = engine.await?;
            let v = docker.version().await.map_err(|e| ErrorBody {
                code: ErrorCode::Unavailable,
                message: describe(&e),
            })?;
            Ok(v.version.unwrap_or_else(|| "unknown".into()))
        }
        .boxed_local()
    }

    pub fn pull_policy(&self, spec: &WorkloadSpec) -> PullPolicy {
        spec.pull_policy.unwrap_or(self.default_pull)
    }

    /// What `workload.start` checks before accepting a container: the engine answers, and the
    /// image is here unless the pull policy may fetch it. With `never`, looking at the image is
    /// the engine's answer: no ping before it.
    pub fn preflight(&self, spec: &WorkloadSpec) -> LocalBoxFuture<'static, Result<(), ErrorBody>> {
        let this = self.clone();
        let policy = self.pull_policy(spec);
        let image = spec.image.clone().unwrap_or_default();
        async move {
            if policy != PullPolicy::Never {
                return this.engine().await.map(|_| ());
            }
            let docker = this.client().await?;
            match docker.inspect_image(&image).await {
                Ok(_) => Ok(()),
                Err(e) if status_of(&e) == Some(404) => Err(ErrorBody {
                    code: ErrorCode::NotFound,
                    message: format!(
                        "image: '{image}' is not on this node and pull_policy is never; \
                         load or build it there (docker load, docker import), or set \
                         pull_policy to if_not_present"
                    ),
                }),
                Err(e) if status_of(&e).is_none() => Err(this.unavailable(describe(&e))),
                Err(e) => Err(ErrorBody {
                    code: ErrorCode::Unavailable,
                    message: format!("image: cannot inspect '{image}': {}", describe(&e)),
                }),
            }
        }
        .boxed_local()
    }

    fn create_body(&self, l: &Launch) -> ContainerCreateBody {
        let spec = &l.spec;
        let mut env: BTreeMap<String, String> = l.herd_env(WORK_MOUNT).into_iter().collect();
        env.extend(spec.env.clone());
        env.extend(l.gpu_env());
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert(LABEL_WORKLOAD.into(), l.workload_id.to_string());
        labels.insert(LABEL_NODE.into(), self.node_id.to_string());
        if let Some(run) = &spec.run_id {
            labels.insert(LABEL_RUN.into(), run.to_string());
        }
        let memory = spec.limits.memory.map(|m| m.min(i64::MAX as u64) as i64);
        ContainerCreateBody {
            image: spec.image.clone(),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: Some(spec.cwd.clone().unwrap_or_else(|| WORK_MOUNT.into())),
            user: spec.user.clone(),
            labels: Some(labels),
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(HostConfig {
                nano_cpus: spec.limits.cpu.map(|c| (c * 1e9).round() as i64),
                memory,
                // Memory plus the swap allowed beyond it: none unless `limits.swap` asks, as
                // for an exec workload's cgroup.
                memory_swap: spec
                    .limits
                    .memory_and_swap()
                    .map(|m| m.min(i64::MAX as u64) as i64),
                pids_limit: spec.limits.pids.map(|p| p.min(i64::MAX as u64) as i64),
                binds: Some(vec![format!("{}:{WORK_MOUNT}", l.work_dir.display())]),
                cpuset_cpus: (!l.assigned.cores.is_empty())
                    .then(|| crate::edges::cgroup::cpu_list(&l.assigned.cores)),
                device_requests: gpu_request(&l.assigned.gpus).map(|r| vec![r]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Create then start, as `docker run -d` does, and nothing else on the way unless it is
    /// needed: the image is looked at only where a pull may be due (with `never`, the create
    /// says when it is missing), and a container left by an earlier start of this workload (a
    /// restart) is removed only when the create finds its name taken.
    async fn start(&self, l: Launch) -> Result<Started, String> {
        let docker = self.client().await.map_err(|e| e.message)?;
        let image = l.spec.image.clone().unwrap_or_default();
        let policy = self.pull_policy(&l.spec);
        if policy != PullPolicy::Never {
            ensure_image(&docker, &image, policy).await?;
        }
        let name = container_name(&self.node_id, &l.workload_id);
        {
            // The container's user is unknown here: its own directories are open to it.
            use std::os::unix::fs::PermissionsExt;
            let tmp = l.work_dir.join(super::TMP_SUBDIR);
            for dir in [Some(&l.work_dir), Some(&tmp), l.output_dir.as_ref()]
                .into_iter()
                .flatten()
            {
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777));
            }
        }
        let body = self.create_body(&l);
        let create = |body| {
            docker.create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
        };
        let created = match create(body.clone()).await {
            Err(e) if status_of(&e) == Some(409) => {
                remove(&docker, &name).await;
                create(body).await
            }
            other => other,
        };
        let created = created.map_err(|e| match status_of(&e) {
            Some(404) if policy == PullPolicy::Never => {
                format!("image '{image}' is not on this node and pull_policy is never")
            }
            _ => format!("cannot create the container: {}", describe(&e)),
        })?;
        // The inspect for the container's pid goes out while the start runs: the engine holds
        // the container's lock for the start and hands it on in arrival order, so the inspect
        // answers as soon as the start is done. Asked after the start, it would queue behind
        // the engine's handling of the exit of a container that ended at once (~90 ms here).
        let early = async {
            tokio::time::sleep(EARLY_INSPECT).await;
            docker.inspect_container(&created.id, None).await.ok()
        };
        let (started, early) = tokio::join!(docker.start_container(&created.id, None), early);
        if let Err(e) = started {
            remove(&docker, &created.id).await;
            return Err(format!("cannot start the container: {}", describe(&e)));
        }
        // An inspect that came before the start says `created`: asked again by attach.
        let early = early.filter(|info| {
            let status = info.state.as_ref().and_then(|s| s.status);
            status.is_some_and(|s| s != ContainerStateStatusEnum::CREATED)
        });
        attach(docker, created.id, 0, early).await
    }

    /// This node's containers (by label), running or not.
    pub fn list_mine(&self) -> LocalBoxFuture<'static, Result<Vec<Found>, ErrorBody>> {
        let engine = self.engine();
        let node = self.node_id.to_string();
        async move {
            let docker = engine.await?;
            let filters =
                HashMap::from([("label".to_string(), vec![format!("{LABEL_NODE}={node}")])]);
            let list = docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    filters: Some(filters),
                    ..Default::default()
                }))
                .await
                .map_err(|e| ErrorBody {
                    code: ErrorCode::Unavailable,
                    message: describe(&e),
                })?;
            Ok(list
                .into_iter()
                .filter_map(|c| {
                    let workload = c.labels.as_ref()?.get(LABEL_WORKLOAD)?.clone();
                    let running = matches!(
                        c.state,
                        Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                    );
                    Some(Found {
                        container: c.id?,
                        workload,
                        running,
                    })
                })
                .collect())
        }
        .boxed_local()
    }

    /// Removes a container (an orphan of this node found at start).
    pub fn remove(&self, container_id: String) -> LocalBoxFuture<'static, ()> {
        let engine = self.client();
        async move {
            if let Ok(docker) = engine.await {
                remove(&docker, &container_id).await;
            }
        }
        .boxed_local()
    }
}

impl Driver for DockerDriver {
    fn launch(&self, launch: Launch) -> LocalBoxFuture<'static, Result<Started, DriverError>> {
        let this = self.clone();
        async move { this.start(launch).await.map_err(DriverError::Launch) }.boxed_local()
    }

    /// Takes this node's containers (found by label) back: running ones are followed again,
    /// ended ones report their exit; containers with no unsettled record are removed.
    fn recover(
        &self,
        records: Vec<WorkloadStatus>,
    ) -> LocalBoxFuture<'static, Vec<(WorkloadStatus, Recovered)>> {
        let this = self.clone();
        async move {
            let any = !records.is_empty();
            let found = match this.list_mine().await {
                Ok(found) => found,
                Err(e) if !any => {
                    tracing::debug!(error = %e.message, "no containers to adopt");
                    return vec![];
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "cannot look for this node's containers; their workloads stay unknown");
                    return vec![];
                }
            };
            let plan = plan_adoption(records, found);
            for container in plan.orphans {
                tracing::warn!(%container, "removing a container of this node that herd has no unsettled record of");
                this.remove(container).await;
            }
            let mut recovered = Vec::new();
            for (status, container, running) in plan.adopt {
                tracing::info!(workload = %status.workload_id, %container, running, "adopting a container after a restart");
                let since = crate::edges::clock::now_ms() / 1000;
                let found = match this.client().await {
                    Ok(docker) => attach(docker, container, since as i32, None).await,
                    Err(e) => Err(e.message),
                };
                recovered.push(match found {
                    Ok(started) => (status, Recovered::Found(started)),
                    Err(reason) => (status, Recovered::Lost(reason)),
                });
            }
            for status in plan.lost {
                let reason = "its container was gone when herdd restarted".to_string();
                recovered.push((status, Recovered::Lost(reason)));
            }
            recovered
        }
        .boxed_local()
    }
}

/// Makes sure `image` is on the node as `policy` says, pulling it if allowed.
async fn ensure_image(docker: &Docker, image: &str, policy: PullPolicy) -> Result<(), String> {
    let present = match docker.inspect_image(image).await {
        Ok(_) => true,
        Err(e) if status_of(&e) == Some(404) => false,
        Err(e) => return Err(format!("cannot inspect image '{image}': {}", describe(&e))),
    };
    match (policy, present) {
        (PullPolicy::Never, false) => Err(format!(
            "image '{image}' is not on this node and pull_policy is never"
        )),
        (PullPolicy::Never | PullPolicy::IfNotPresent, true) => Ok(()),
        (PullPolicy::IfNotPresent | PullPolicy::Always, _) => {
            let (from_image, tag) = pull_reference(image);
            tracing::info!(image, "pulling image");
            let mut pull = docker.create_image(
                Some(CreateImageOptions {
                    from_image: Some(from_image),
                    tag,
                    ..Default::default()
                }),
                None,
                None,
            );
            while let Some(step) = pull.next().await {
                if let Err(e) = step {
                    return Err(format!("cannot pull image '{image}': {}", describe(&e)));
                }
            }
            Ok(())
        }
    }
}

/// Removes a container, whatever its state; a missing one is fine.
async fn remove(docker: &Docker, container: &str) {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(container, Some(options)).await {
        Ok(()) => {}
        Err(e) if status_of(&e) == Some(404) => {}
        // 409: removal already in progress.
        Err(e) if status_of(&e) == Some(409) => {}
        Err(e) => tracing::warn!(container, error = %describe(&e), "cannot remove the container"),
    }
}

mod container;

use container::attach;

/// The engine's device request for exactly `uuids` (NVIDIA's runtime, the `gpu` capability);
/// None without GPUs. Where the engine has no NVIDIA runtime, such a container is created but
/// does not start ("could not select device driver \"nvidia\"").
fn gpu_request(uuids: &[String]) -> Option<DeviceRequest> {
    (!uuids.is_empty()).then(|| DeviceRequest {
        driver: Some("nvidia".into()),
        device_ids: Some(uuids.to_vec()),
        capabilities: Some(vec![vec!["gpu".into()]]),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests;
