//! herdd's configuration: a TOML file, overridden by environment variables, overridden by
//! flags. Unknown keys in the file are errors, so a typo never goes unnoticed.

use anyhow::{bail, Context};
use herd_actors::cores::registry::{RegistryConfig, DEFAULT_HEARTBEAT_INTERVAL_MS};
use herd_actors::cores::results::ResultsPolicy;
use herd_actors::cores::workload::ExecPolicy;
use herd_actors::edges::driver::docker::DockerConfig;
use herd_actors::edges::log_history::LogRetention;
use herd_bus::{DecodeLimits, NodeId, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `[nats]` is the connection configuration herdctl shares.
pub use herd_nats::{NatsConfig, DEFAULT_NATS_URL};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/herd/herd.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/herd";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Defaults to the host name, sanitized to a NATS token.
    pub node_id: Option<String>,
    pub roles: Vec<Role>,
    pub labels: BTreeMap<String, String>,
    pub state_dir: PathBuf,
    pub nats: NatsConfig,
    pub log: LogConfig,
    pub limits: RequestLimits,
    pub events: EventsConfig,
    pub shutdown: ShutdownConfig,
    pub cgroup: CgroupConfig,
    pub exec: ExecPolicy,
    pub workloads: WorkloadsConfig,
    pub docker: DockerConfig,
    pub telemetry: TelemetryConfig,
    pub logs: LogsConfig,
    /// What of a run task's output directory is uploaded to the `herd-results` bucket.
    pub results: ResultsPolicy,
    pub metrics: MetricsConfig,
    /// What this node hands out: capacity, reservations, overcommit, default requests.
    pub resources: herd_actors::cores::allocation::ResourcesConfig,
    /// GPUs declared for a node where NVML is absent.
    pub gpu: herd_actors::edges::gpu::GpuConfig,
    /// The coordinator's web dashboard.
    pub dashboard: DashboardConfig,
    pub heartbeat: HeartbeatConfig,
    pub coordinator: CoordinatorConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Seconds between heartbeats (each one jittered by ±10 %).
    pub interval_s: f64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval_s: DEFAULT_HEARTBEAT_INTERVAL_MS as f64 / 1000.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Missed heartbeat intervals before a node is stale.
    pub stale_after_missed: u32,
    /// Seconds without a heartbeat before a node is lost (its workloads too).
    pub lost_after_s: f64,
    /// The leader's lease, in seconds: a standby coordinator takes over within a lease and a
    /// quarter of the leader's death. The same on every coordinator.
    pub lease_s: f64,
}

/// The leader lease when the configuration names none.
pub const DEFAULT_LEASE_S: f64 = 3.0;

/// The registry's defaults, in the configuration's units.
impl Default for CoordinatorConfig {
    fn default() -> Self {
        let registry = RegistryConfig::default();
        CoordinatorConfig {
            stale_after_missed: registry.stale_after_missed,
            lost_after_s: registry.lost_after_ms as f64 / 1000.0,
            lease_s: DEFAULT_LEASE_S,
        }
    }
}

impl CoordinatorConfig {
    /// The node registry's settings.
    pub fn registry(&self) -> RegistryConfig {
        RegistryConfig {
            stale_after_missed: self.stale_after_missed,
            lost_after_ms: (self.lost_after_s * 1000.0) as u64,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: None,
            roles: vec![Role::Node],
            labels: BTreeMap::new(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            nats: NatsConfig::default(),
            log: LogConfig::default(),
            limits: RequestLimits::default(),
            events: EventsConfig::default(),
            shutdown: ShutdownConfig::default(),
            cgroup: CgroupConfig::default(),
            exec: ExecPolicy::default(),
            workloads: WorkloadsConfig::default(),
            docker: DockerConfig::default(),
            telemetry: TelemetryConfig::default(),
            logs: LogsConfig::default(),
            results: ResultsPolicy::default(),
            metrics: MetricsConfig::default(),
            resources: Default::default(),
            gpu: Default::default(),
            dashboard: DashboardConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            coordinator: CoordinatorConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupConfig {
    /// auto | v2 | v1 | none.
    pub backend: String,
    /// herd's cgroup under each hierarchy, when herdd's own cgroup is not delegated to it.
    pub root: String,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            backend: "auto".into(),
            root: "herd".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Seconds between two samples of every workload.
    pub interval_s: f64,
    /// Retention of the HERD_TELEMETRY stream, when herdd creates it.
    pub max_age_s: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            interval_s: 1.0,
            max_age_s: 3600,
        }
    }
}

/// The opt-in Prometheus endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` to serve `GET /metrics` on (e.g. `127.0.0.1:9464`); unset: no listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// The coordinator's opt-in web dashboard (docs/dashboard.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// `host:port` to serve the dashboard on (e.g. `127.0.0.1:8080`); unset: no dashboard.
    /// Only a herdd with the coordinator role serves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Whether the pages may stop workloads and runs and drain nodes (each needs the token).
    pub allow_actions: bool,
    /// File holding the token that actions must present; required when `allow_actions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadsConfig {
    /// Settled workloads kept for `workload.get`/`list`, with their records and working
    /// directories; the oldest beyond this are forgotten and their directories removed.
    pub keep_settled: usize,
}

impl Default for WorkloadsConfig {
    fn default() -> Self {
        WorkloadsConfig {
            keep_settled: herd_actors::cores::workload::table::KEEP_SETTLED,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Lines per second and stream published for one workload; the rest are counted as dropped.
    pub max_lines_per_s: u32,
    /// Seconds this node's log history (stream HERD_LOGS_<node>) is kept.
    pub max_age_s: u64,
    /// Bytes of log history kept for this node, all its workloads together; the oldest chunks
    /// go first.
    pub max_bytes: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            max_lines_per_s: 1000,
            max_age_s: 24 * 3600,
            max_bytes: 1 << 30,
        }
    }
}

impl LogsConfig {
    pub fn retention(&self) -> LogRetention {
        LogRetention {
            max_age: std::time::Duration::from_secs(self.max_age_s),
            max_bytes: self.max_bytes,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter (`info`, `herd_actors=debug,info`); `HERD_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestLimits {
    /// Requests larger than this are refused before decoding.
    pub max_payload_bytes: usize,
    /// Deepest nesting of arrays and maps accepted.
    pub max_depth: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_payload_bytes: DecodeLimits::DEFAULT_MAX_BYTES,
            max_depth: DecodeLimits::DEFAULT_MAX_DEPTH,
        }
    }
}

impl RequestLimits {
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_bytes: self.max_payload_bytes,
            max_depth: self.max_depth,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Events kept while NATS is unreachable; beyond that the oldest are dropped (and counted).
    pub outbox_capacity: usize,
    /// How long the HERD_EVENTS stream keeps events, when herdd creates it.
    pub max_age_s: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            outbox_capacity: 10_000,
            max_age_s: 7 * 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// What herdd does with running workloads when it stops (SIGTERM, `systemctl stop` or
    /// `restart`): `keep` leaves them running under their supervisors, to be re-adopted by the
    /// next herdd; `stop` stops each with its kill signal and grace period first.
    pub on_shutdown: OnShutdown,
    /// Longest wait for queued events to be acknowledged at shutdown; what is left is saved in
    /// the state directory and sent at the next start.
    pub flush_timeout_s: f64,
    /// At shutdown, workloads are stopped with their grace period, but never longer than this.
    pub workload_grace_cap_s: f64,
}

/// What happens to running workloads when herdd stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnShutdown {
    /// Leave them running; the next herdd re-adopts them.
    Keep,
    /// Stop them (kill signal, then SIGKILL after their grace period).
    Stop,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            on_shutdown: OnShutdown::Keep,
            flush_timeout_s: 5.0,
            workload_grace_cap_s: 10.0,
        }
    }
}

impl Config {
    /// Reads `path`. A missing file is an error only when the path was asked for explicitly.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(text)?)
    }

    /// The node id: configured, or derived from the host name.
    pub fn node_id(&self) -> anyhow::Result<NodeId> {
        match &self.node_id {
            Some(id) => NodeId::new(id.clone()).context("node_id"),
            None => Ok(NodeId::from_hostname(&hostname())),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.docker.socket.trim().is_empty() {
            bail!("docker.socket must not be empty");
        }
        self.node_id()?;
        self.nats.validate()?;
        if self.roles.is_empty() {
            bail!("roles is empty: give at least `node`");
        }
        if self.limits.max_depth == 0 || self.limits.max_payload_bytes == 0 {
            bail!("limits.max_depth and limits.max_payload_bytes must be > 0");
        }
        for (name, v) in [
            ("shutdown.flush_timeout_s", self.shutdown.flush_timeout_s),
            (
                "shutdown.workload_grace_cap_s",
                self.shutdown.workload_grace_cap_s,
            ),
        ] {
            if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
                bail!("{name} must be between 0 and 3600 seconds, got {v}");
            }
        }
        if !["auto", "v2", "v1", "none"].contains(&self.cgroup.backend.as_str()) {
            bail!(
                "cgroup.backend must be auto, v2, v1 or none, got '{}'",
                self.cgroup.backend
            );
        }
        herd_bus::ids::validate_token("cgroup.root", &self.cgroup.root)?;
        let t = self.telemetry.interval_s;
        if !(t.is_finite() && (0.05..=3600.0).contains(&t)) {
            bail!("telemetry.interval_s must be between 0.05 and 3600, got {t}");
        }
        let hb = self.heartbeat.interval_s;
        if !(hb.is_finite() && (0.05..=600.0).contains(&hb)) {
            bail!("heartbeat.interval_s must be between 0.05 and 600, got {hb}");
        }
        let lease = self.coordinator.lease_s;
        if !(lease.is_finite() && (0.3..=600.0).contains(&lease)) {
            bail!("coordinator.lease_s ({lease}) must be between 0.3 and 600 seconds");
        }
        if !(1..=5).contains(&self.nats.replicas) {
            bail!(
                "nats.replicas ({}) must be between 1 and 5 (JetStream's limit)",
                self.nats.replicas
            );
        }
        if self.coordinator.stale_after_missed == 0 {
            bail!("coordinator.stale_after_missed must be ≥ 1");
        }
        let lost = self.coordinator.lost_after_s;
        if !(lost.is_finite() && lost >= hb * self.coordinator.stale_after_missed as f64) {
            bail!("coordinator.lost_after_s ({lost}) must be ≥ stale_after_missed × heartbeat.interval_s");
        }
        if let Some(listen) = &self.metrics.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                bail!("metrics.listen must be host:port with an IP address (127.0.0.1:9464, [::]:9464), got {listen:?}");
            }
        }
        if let Some(listen) = &self.dashboard.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                bail!("dashboard.listen must be host:port with an IP address (127.0.0.1:8080), got {listen:?}");
            }
        }
        self.resources.validate().map_err(|e| anyhow::anyhow!(e))?;
        self.gpu.validate().map_err(|e| anyhow::anyhow!(e))?;
        if self.dashboard.allow_actions && self.dashboard.token_file.is_none() {
            bail!("dashboard.allow_actions needs dashboard.token_file: actions are taken only with its token");
        }
        if self.logs.max_lines_per_s == 0 {
            bail!("logs.max_lines_per_s must be > 0");
        }
        if self.logs.max_age_s == 0 {
            bail!("logs.max_age_s must be > 0");
        }
        // Below a few chunks the history would hold nothing useful.
        if self.logs.max_bytes < 1 << 20 {
            bail!(
                "logs.max_bytes must be at least 1048576 (1 MiB), got {}",
                self.logs.max_bytes
            );
        }
        Ok(())
    }

    /// The configuration as TOML, with secrets hidden.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for secret in [&mut shown.nats.password, &mut shown.nats.token] {
            if secret.is_some() {
                *secret = Some("<redacted>".into());
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sane() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.nats.urls, vec![DEFAULT_NATS_URL]);
        assert_eq!(c.roles, vec![Role::Node]);
    }

    #[test]
    fn parses_a_full_file() {
        let c = Config::parse(
            r#"
            node_id = "n1"
            roles = ["node", "coordinator"]
            labels = { rack = "r1" }
            state_dir = "/tmp/herd"
            [nats]
            urls = ["nats://a:4222", "nats://b:4222"]
            user = "u"
            password = "p"
            [log]
            format = "json"
            [results]
            max_bytes = 1048576
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.roles, vec![Role::Node, Role::Coordinator]);
        assert_eq!(c.nats.urls.len(), 2);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.results.max_bytes, 1024 * 1024);
        assert_eq!(c.results.max_files, ResultsPolicy::default().max_files);
        assert!(!c.to_redacted_toml().contains("\"p\""));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let err = Config::parse("node_idd = \"x\"").unwrap_err();
        assert!(format!("{err:#}").contains("node_idd"), "{err:#}");
        let c = Config::parse("node_id = \"a.b\"").unwrap();
        assert!(c.validate().is_err());
        let c = Config::parse("[nats]\nuser = \"u\"").unwrap();
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("password"));
        let c = Config::parse("[nats]\ntoken = \"t\"\ncreds_file = \"/x\"").unwrap();
        assert!(c.validate().is_err());
        let c = Config::parse("[logs]\nmax_bytes = 1000").unwrap();
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("logs.max_bytes"));
        let c = Config::parse("[logs]\nmax_age_s = 0").unwrap();
        assert!(c.validate().is_err());
        let c = Config::parse("[coordinator]\nlease_s = 0.1").unwrap();
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("coordinator.lease_s"));
        let c = Config::parse("[nats]\nreplicas = 0").unwrap();
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("nats.replicas"));
        let c = Config::parse("[nats]\nreplicas = 3\n[coordinator]\nlease_s = 5").unwrap();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn missing_default_file_is_fine_but_missing_explicit_file_is_not() {
        assert!(Config::load(Some(Path::new("/nonexistent/herd.toml"))).is_err());
    }
}

#[cfg(test)]
mod example_file {
    /// deploy/herd.toml shows the defaults: it must parse to exactly `Config::default()`.
    #[test]
    fn the_shipped_example_is_the_default() {
        let text = include_str!("../../deploy/herd.toml");
        assert_eq!(
            super::Config::parse(text).unwrap(),
            super::Config::default()
        );
    }
}
