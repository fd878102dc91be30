//! `herdd`: the node daemon's command line.

use crate::config::{Config, LogFormat};
use crate::{dev, logging, node};
use anyhow::Context;
use clap::{Parser, Subcommand};
use herd_bus::Role;
use herd_nats::NatsArgs;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "herdd",
    version,
    about = "herd's node daemon: runs and watches workloads, driven over NATS"
)]
pub struct Cli {
    /// Configuration file [default: /etc/herd/herd.toml, if present].
    #[arg(long, short, env = "HERD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Node id [default: the host name, sanitized].
    #[arg(long, env = "HERD_NODE_ID", global = true)]
    pub node_id: Option<String>,
    /// Roles, comma-separated: node, coordinator.
    #[arg(long, env = "HERD_ROLES", value_delimiter = ',', global = true)]
    pub roles: Vec<RoleArg>,
    /// State directory [default: /var/lib/herd].
    #[arg(long, env = "HERD_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Labels as key=value, comma-separated or repeated.
    #[arg(long = "label", env = "HERD_LABELS", value_delimiter = ',', value_parser = parse_label, global = true)]
    pub labels: Vec<(String, String)>,
    /// Log format on stderr.
    #[arg(long, env = "HERD_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// The Docker engine's socket, for docker workloads [default: /var/run/docker.sock].
    #[arg(long, env = "HERD_DOCKER_SOCKET", global = true)]
    pub docker_socket: Option<String>,
    /// What to do with running workloads when herdd stops [default: keep].
    #[arg(long, env = "HERD_ON_SHUTDOWN", global = true)]
    pub on_shutdown: Option<crate::config::OnShutdown>,
    /// Serve Prometheus metrics on host:port (`GET /metrics`) [default: off].
    #[arg(long, env = "HERD_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<String>,
    /// Serve the web dashboard on host:port (a coordinator only) [default: off; `herdd dev`
    /// turns it on].
    #[arg(long, env = "HERD_DASHBOARD_LISTEN", global = true)]
    pub dashboard_listen: Option<String>,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node (the default).
    Run,
    /// Run a node for development: starts its own nats-server when none answers at the
    /// configured URL, and keeps state in a temporary directory unless --state-dir is given.
    /// With --nodes N, this process is a coordinator and starts N node processes
    /// (`<node-id>-1` …), each with its own state directory and cgroup root.
    Dev {
        #[arg(long, default_value_t = 0)]
        nodes: u32,
    },
    /// Print the effective configuration (file, then environment, then flags) as TOML.
    Config,
    /// Check this node: state dir, cgroups and delegation, the exec user, NATS and its
    /// credentials, JetStream, the Docker engine, NVML. One line per check with what to do
    /// when it fails; exits 0 when the node can run herdd, 1 when it cannot.
    Doctor,
}

impl clap::ValueEnum for RoleArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[RoleArg(Role::Node), RoleArg(Role::Coordinator)]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.as_str()))
    }
}

/// clap adapter for [`Role`].
#[derive(Debug, Clone, Copy)]
pub struct RoleArg(pub Role);

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label '{s}' is not key=value"))?;
    if k.trim().is_empty() {
        return Err(format!("label '{s}' has an empty key"));
    }
    Ok((k.trim().to_string(), v.trim().to_string()))
}

impl Cli {
    /// The file, then the environment and flags (clap has already put flags over variables).
    pub fn effective_config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(id) = &self.node_id {
            config.node_id = Some(id.clone());
        }
        if !self.roles.is_empty() {
            config.roles = self.roles.iter().map(|r| r.0).collect();
        }
        if let Some(dir) = &self.state_dir {
            config.state_dir = dir.clone();
        }
        config.labels.extend(self.labels.iter().cloned());
        if let Some(f) = self.log_format {
            config.log.format = f;
        }
        if let Some(socket) = &self.docker_socket {
            config.docker.socket = socket.clone();
        }
        if let Some(o) = self.on_shutdown {
            config.shutdown.on_shutdown = o;
        }
        if let Some(listen) = &self.metrics_listen {
            config.metrics.listen = Some(listen.clone());
        }
        if let Some(listen) = &self.dashboard_listen {
            config.dashboard.listen = Some(listen.clone());
        }
        self.nats.apply(&mut config.nats);
        config.validate()?;
        Ok(config)
    }
}

pub fn main() -> ExitCode {
    // `herdd shim <dir>`: an exec workload's supervisor, started by herdd itself; it reads no
    // configuration and is not part of the command line operators use.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == "shim" {
        let code = herd_shim::main(std::path::Path::new(&args[2]));
        return ExitCode::from(code as u8);
    }
    if args.len() == 4 && args[1] == "shim" && args[2] == "--spare" {
        return ExitCode::from(herd_shim::spare_main() as u8);
    }
    let cli = Cli::parse();
    let config = match cli.effective_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herdd: configuration error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Config => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Doctor => return crate::doctor::main(&config),
        Command::Run => {
            logging::init(&config.log);
            actix_rt::System::new().block_on(node::run(config))
        }
        Command::Dev { nodes } => {
            logging::init(&config.log);
            run_dev(config, cli.state_dir.is_some(), nodes)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("herdd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_dev(mut config: Config, state_dir_given: bool, nodes: u32) -> anyhow::Result<()> {
    let url = config.nats.urls[0].clone();
    let _nats = if dev::nats_answers(&url) {
        tracing::info!(%url, "using the NATS server that answers there");
        None
    } else {
        let nats = dev::start_nats().context("herdd dev needs a NATS server")?;
        tracing::info!(url = %nats.url, "started nats-server with JetStream for development");
        config.nats.urls = vec![nats.url.clone()];
        Some(nats)
    };
    let _state = if state_dir_given {
        None
    } else {
        let dir = dev::temp_state_dir()?;
        config.state_dir = dir.path().to_path_buf();
        // The state dies with this process: nothing could re-adopt a kept workload.
        config.shutdown.on_shutdown = crate::config::OnShutdown::Stop;
        Some(dir)
    };
    let fleet = if nodes > 0 {
        config.roles = vec![Role::Coordinator];
        let fleet = dev::start_fleet(&config, nodes)?;
        let dashboard = config
            .dashboard
            .listen
            .get_or_insert_with(dev::dashboard_listen)
            .clone();
        eprintln!("{}", fleet.banner(&config.nats.urls[0]));
        eprintln!("Dashboard: http://{dashboard}/\n");
        Some(fleet)
    } else {
        eprintln!(
            "{}",
            dev::banner(
                &config.node_id()?,
                &config.nats.urls[0],
                &herd_bus::Subjects::new(&config.nats.prefix)?,
                &config.state_dir
            )
        );
        None
    };
    let result = actix_rt::System::new().block_on(node::run(config));
    if let Some(fleet) = fleet {
        fleet.stop();
    }
    result
}
