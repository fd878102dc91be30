//! `herdctl`: the operator's command line. Tables for people, `--json` for scripts.

use crate::config::NatsConfig;
use crate::nats::{self, NatsArgs, Persistence};
use anyhow::{bail, Context};
use async_nats::HeaderMap;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use herd_bus::codec::{self, DecodeLimits, Encoding, CONTENT_TYPE_HEADER};
use herd_bus::{Empty, NodeId, NodeInfo, NodeVerb, Reply, Subjects};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(name = "herdctl", version, about = "Operate a herd fleet over NATS")]
pub struct Cli {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for replies.
    #[arg(long, default_value_t = 2.0, global = true)]
    pub timeout: f64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ping one node, or every node when none is named.
    Ping { node: Option<String> },
    /// Fleet-wide commands.
    Nodes {
        #[command(subcommand)]
        command: NodesCommand,
    },
    /// Send a raw request (JSON text, default `{}`) and print the raw reply: any herd subject,
    /// for scripts and debugging.
    Request {
        subject: String,
        #[arg(default_value = "{}")]
        payload: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Ping every node and list those that answer within --timeout.
    Ping,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herdctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herdctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Ctl {
    client: async_nats::Client,
    subjects: Subjects,
    timeout: Duration,
    json: bool,
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = NatsConfig::default();
    cli.nats.apply(&mut config);
    let client = nats::connect(&config, "herdctl", Persistence::Cli, |_| {}).await?;
    let ctl = Ctl {
        client,
        subjects: Subjects::new(&config.prefix)?,
        timeout: Duration::from_secs_f64(cli.timeout.max(0.01)),
        json: cli.json,
    };
    match cli.command {
        Command::Ping { node: Some(node) } => ctl.ping(&node).await,
        Command::Ping { node: None }
        | Command::Nodes {
            command: NodesCommand::Ping,
        } => ctl.ping_all().await,
        Command::Request { subject, payload } => ctl.raw_request(&subject, payload).await,
    }
}

fn msgpack_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE_HEADER, Encoding::MsgPack.content_type());
    h
}

fn decode_reply<T: DeserializeOwned>(msg: &async_nats::Message) -> anyhow::Result<T> {
    let enc = herd_actors::bus::message_encoding(msg);
    let reply: Reply<T> = codec::decode(&msg.payload, enc, &DecodeLimits::default())
        .context("cannot decode the reply")?;
    reply.into_result().map_err(|e| anyhow::anyhow!("{e}"))
}

impl Ctl {
    async fn request(
        &self,
        subject: String,
        payload: Vec<u8>,
    ) -> anyhow::Result<async_nats::Message> {
        let req =
            self.client
                .request_with_headers(subject.clone(), msgpack_headers(), payload.into());
        match tokio::time::timeout(self.timeout, req).await {
            Err(_) => bail!("no reply on {subject} within {:?}", self.timeout),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                bail!("nobody answers on {subject}")
            }
            Ok(r) => Ok(r?),
        }
    }

    async fn ping(&self, node: &str) -> anyhow::Result<ExitCode> {
        let node = NodeId::new(node)?;
        let subject = self.subjects.node_command(&node, NodeVerb::Ping);
        let start = Instant::now();
        let msg = self
            .request(subject, codec::encode(&Empty {}, Encoding::MsgPack)?)
            .await
            .with_context(|| format!("is herdd running with node id '{node}'?"))?;
        let rtt = start.elapsed();
        let info: NodeInfo = decode_reply(&msg)?;
        self.print_nodes(&[(info, rtt)])?;
        Ok(ExitCode::SUCCESS)
    }

    /// Publishes one ping and gathers every reply that arrives within the timeout.
    async fn ping_all(&self) -> anyhow::Result<ExitCode> {
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await?;
        let start = Instant::now();
        self.client
            .publish_with_reply_and_headers(
                self.subjects.nodes_ping(),
                inbox,
                msgpack_headers(),
                codec::encode(&Empty {}, Encoding::MsgPack)?.into(),
            )
            .await?;
        self.client.flush().await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut nodes = Vec::new();
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await {
            match decode_reply::<NodeInfo>(&msg) {
                Ok(info) => nodes.push((info, start.elapsed())),
                Err(e) => eprintln!("herdctl: ignoring a bad reply: {e:#}"),
            }
        }
        nodes.sort_by(|a, b| a.0.node_id.cmp(&b.0.node_id));
        self.print_nodes(&nodes)?;
        if nodes.is_empty() {
            eprintln!("herdctl: no node answered within {:?}", self.timeout);
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn raw_request(&self, subject: &str, payload: String) -> anyhow::Result<ExitCode> {
        let req = self
            .client
            .request(subject.to_string(), payload.into_bytes().into());
        let msg = match tokio::time::timeout(self.timeout, req).await {
            Err(_) => bail!("no reply on {subject} within {:?}", self.timeout),
            Ok(r) => r?,
        };
        let text = String::from_utf8_lossy(&msg.payload);
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            Err(_) => println!("{text}"),
        }
        let ok = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("ok").and_then(|o| o.as_bool()))
            .unwrap_or(false);
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    fn print_nodes(&self, nodes: &[(NodeInfo, Duration)]) -> anyhow::Result<()> {
        if self.json {
            #[derive(Serialize)]
            struct Row<'a> {
                #[serde(flatten)]
                info: &'a NodeInfo,
                rtt_ms: f64,
            }
            let rows: Vec<Row> = nodes
                .iter()
                .map(|(info, rtt)| Row {
                    info,
                    rtt_ms: rtt.as_secs_f64() * 1e3,
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
            return Ok(());
        }
        let mut table = Table::new(&[
            "NODE", "STATE", "VERSION", "UPTIME", "ROLES", "LABELS", "RTT",
        ]);
        for (info, rtt) in nodes {
            table.row(vec![
                info.node_id.to_string(),
                info.state.as_str().to_string(),
                info.version.clone(),
                human_duration(info.uptime_s),
                info.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                info.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                format!("{:.1}ms", rtt.as_secs_f64() * 1e3),
            ]);
        }
        print!("{}", table.render());
        Ok(())
    }
}

/// `3d4h`, `5m12s`, `42s`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// A plain left-aligned text table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ");
            s.truncate(s.trim_end().len());
            s + "\n"
        };
        let mut out = line(&self.header);
        for row in &self.rows {
            out += &line(row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(42.7), "42s");
        assert_eq!(human_duration(312.0), "5m12s");
        assert_eq!(human_duration(3.0 * 3600.0 + 120.0), "3h2m");
        assert_eq!(human_duration(90000.0), "1d1h");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["A", "LONG"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    LONG\nxyz  1\n");
    }
}
