//! A coordinator and agents, each a herdd process, on one real nats-server.

use crate::client::{connect, eventually, request, wait_for_node};
use crate::herdd::{Herdd, HerddOptions};
use crate::nats::NatsServer;
use std::path::Path;
use std::time::Duration;

/// A coordinator and agents, each a herdd process, on one real nats-server. Fields drop in
/// order: the daemons stop (and flush their events) before the server goes.
pub struct Fleet {
    pub agents: Vec<Herdd>,
    pub coordinator: Herdd,
    pub client: async_nats::Client,
    pub nats: NatsServer,
    pub heartbeat_s: f64,
    pub lost_after_s: f64,
    tag: String,
    /// Configuration every agent gets besides its heartbeat and cgroup root.
    agent_toml: String,
}

impl Fleet {
    /// `tag-coord` and agents `tag-<name>`, heartbeating every `heartbeat_s`.
    pub async fn start(tag: &str, agents: &[&str], heartbeat_s: f64, lost_after_s: f64) -> Fleet {
        Fleet::start_configured(tag, agents, heartbeat_s, lost_after_s, "").await
    }

    /// Like [`Fleet::start`], with `agent_toml` (whole sections, e.g. `[results]`) in every
    /// agent's configuration.
    pub async fn start_configured(
        tag: &str,
        agents: &[&str],
        heartbeat_s: f64,
        lost_after_s: f64,
        agent_toml: &str,
    ) -> Fleet {
        Fleet::start_with(tag, agents, heartbeat_s, lost_after_s, agent_toml, "").await
    }

    /// Like [`Fleet::start_configured`], with `coordinator_toml` (whole sections, e.g.
    /// `[dashboard]`) in the coordinator's configuration.
    pub async fn start_with(
        tag: &str,
        agents: &[&str],
        heartbeat_s: f64,
        lost_after_s: f64,
        agent_toml: &str,
        coordinator_toml: &str,
    ) -> Fleet {
        let nats = NatsServer::start();
        let coordinator = Fleet::start_coordinator_with(
            &nats,
            &format!("{tag}-coord"),
            heartbeat_s,
            lost_after_s,
            coordinator_toml,
        );
        let agents: Vec<Herdd> = agents
            .iter()
            .map(|n| Fleet::start_agent(&nats, tag, n, heartbeat_s, agent_toml, None))
            .collect();
        let client = connect(&nats.url()).await;
        for a in &agents {
            wait_for_node(&client, &a.node_id).await;
        }
        let fleet = Fleet {
            agents,
            coordinator,
            client,
            nats,
            heartbeat_s,
            lost_after_s,
            tag: tag.to_string(),
            agent_toml: agent_toml.to_string(),
        };
        let n = fleet.agents.len();
        eventually(
            Duration::from_secs(15),
            "every agent up at the coordinator",
            || async {
                let v = fleet
                    .try_call("herd.v1.cluster.nodes", serde_json::json!({"state": "up"}))
                    .await?;
                (v["data"]["nodes"].as_array().map(|a| a.len()) == Some(n)).then_some(())
            },
        )
        .await;
        fleet
    }

    fn start_agent(
        nats: &NatsServer,
        tag: &str,
        name: &str,
        heartbeat_s: f64,
        agent_toml: &str,
        state_dir: Option<&Path>,
    ) -> Herdd {
        let config = format!(
            "[heartbeat]\ninterval_s = {heartbeat_s}\n[cgroup]\nroot = \"{}\"\n{agent_toml}",
            Fleet::cgroup_root(tag, name)
        );
        let mut agent = Herdd::start_with(HerddOptions {
            config_toml: Some(&config),
            state_dir,
            ..HerddOptions::new(&format!("{tag}-{name}"), nats.url())
        });
        agent.cgroup_root = Fleet::cgroup_root(tag, name);
        agent
    }

    /// Stops agent `i` (SIGTERM) and starts it again on the same state directory and
    /// configuration, whether NATS answers or not. Answers the stopped one: it owns that state
    /// directory, so keep it until the fleet is dropped.
    pub fn restart_agent(&mut self, i: usize) -> Herdd {
        let old = &mut self.agents[i];
        old.terminate(Duration::from_secs(30))
            .expect("the agent stops within 30 s");
        let name = old
            .node_id
            .strip_prefix(&format!("{}-", self.tag))
            .expect("an agent of this fleet")
            .to_string();
        let again = Fleet::start_agent(
            &self.nats,
            &self.tag,
            &name,
            self.heartbeat_s,
            &self.agent_toml,
            Some(&old.state_dir.clone()),
        );
        std::mem::replace(&mut self.agents[i], again)
    }

    /// The cgroup root of agent `name` of fleet `tag`.
    fn cgroup_root(tag: &str, name: &str) -> String {
        format!("herdtest-{}-{tag}-{name}", std::process::id())
    }

    pub fn start_coordinator(
        nats: &NatsServer,
        id: &str,
        heartbeat_s: f64,
        lost_after_s: f64,
    ) -> Herdd {
        Fleet::start_coordinator_with(nats, id, heartbeat_s, lost_after_s, "")
    }

    /// A coordinator with `extra_toml` (whole sections) in its configuration.
    pub fn start_coordinator_with(
        nats: &NatsServer,
        id: &str,
        heartbeat_s: f64,
        lost_after_s: f64,
        extra_toml: &str,
    ) -> Herdd {
        let config = format!(
            "roles = [\"coordinator\"]\n[heartbeat]\ninterval_s = {heartbeat_s}\n[coordinator]\nlost_after_s = {lost_after_s}\n{extra_toml}"
        );
        Herdd::start_with(HerddOptions {
            config_toml: Some(&config),
            ..HerddOptions::new(id, nats.url())
        })
    }

    /// A JSON request on `herd.v1.cluster.<verb>`; the JSON reply.
    pub async fn cluster(&self, verb: &str, body: serde_json::Value) -> serde_json::Value {
        self.call(&format!("herd.v1.cluster.{verb}"), body).await
    }

    /// Like [`Fleet::call`], but None while nobody answers (a coordinator starting up).
    pub async fn try_call(
        &self,
        subject: &str,
        body: serde_json::Value,
    ) -> Option<serde_json::Value> {
        let body = serde_json::to_vec(&body).unwrap();
        let msg = request(&self.client, subject, None, body).await.ok()?;
        serde_json::from_slice(&msg.payload).ok()
    }

    /// A JSON request on any subject; the JSON reply.
    pub async fn call(&self, subject: &str, body: serde_json::Value) -> serde_json::Value {
        let msg = request(
            &self.client,
            subject,
            None,
            serde_json::to_vec(&body).unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
        serde_json::from_slice(&msg.payload).unwrap()
    }

    /// Run `run`'s journal (`cluster.run.get`).
    pub async fn run_record(&self, run: &str) -> herd_bus::RunRecord {
        let v = self
            .cluster("run.get", serde_json::json!({"run_id": run}))
            .await;
        serde_json::from_value(v["data"].clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
    }

    /// Run `run`'s journal once its state is one of `states`.
    pub async fn wait_run(
        &self,
        run: &str,
        states: &[herd_bus::RunState],
        within: Duration,
    ) -> herd_bus::RunRecord {
        eventually(within, &format!("run {run} in {states:?}"), || async {
            let r = self.run_record(run).await;
            states.contains(&r.state).then_some(r)
        })
        .await
    }

    /// Fails the test when anything of run `run` is still running, starting or pending on
    /// any agent.
    pub async fn nothing_left(&self, run: &str) {
        for a in &self.agents {
            for state in ["running", "starting", "pending"] {
                let v = self
                    .call(
                        &format!("herd.v1.node.{}.workload.list", a.node_id),
                        serde_json::json!({"run_id": run, "state": state}),
                    )
                    .await;
                assert_eq!(
                    v["data"]["workloads"].as_array().map(|w| w.len()),
                    Some(0),
                    "{}: {v}",
                    a.node_id
                );
            }
        }
    }

    /// How many `running` events each workload of run `run` has in `HERD_EVENTS`: a task
    /// started once has one.
    pub async fn running_events(&self, run: &str) -> std::collections::HashMap<String, u32> {
        running_events(&self.client, run).await
    }
}

impl Drop for Fleet {
    /// Stops the agents, then removes their cgroup roots: one killed by a test (SIGKILL) could
    /// not remove its own.
    fn drop(&mut self) {
        let roots: Vec<String> = self.agents.iter().map(|a| a.cgroup_root.clone()).collect();
        self.agents.clear();
        for root in roots {
            for dir in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::remove_dir(dir.path().join(&root));
            }
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&root));
        }
    }
}

/// How many `running` events each workload of run `run` has in `HERD_EVENTS`: a task started
/// once has one.
pub async fn running_events(
    client: &async_nats::Client,
    run: &str,
) -> std::collections::HashMap<String, u32> {
    let mut starts = std::collections::HashMap::new();
    for ev in run_events(client, run).await {
        if ev.state == herd_bus::WorkloadState::Running {
            *starts.entry(ev.workload_id.to_string()).or_default() += 1;
        }
    }
    starts
}

/// Every workload event of run `run` in `HERD_EVENTS`, in the stream's order.
pub async fn run_events(client: &async_nats::Client, run: &str) -> Vec<herd_bus::WorkloadEvent> {
    use herd_bus::codec::{self, DecodeLimits, Encoding};
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream("HERD_EVENTS").await.unwrap();
    let info = stream.info().await.unwrap();
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut events = Vec::new();
    for seq in first..=last {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        let decoded = codec::decode::<herd_bus::WorkloadEvent>(
            &m.payload,
            Encoding::MsgPack,
            &DecodeLimits::default(),
        );
        if let Ok(ev) = decoded {
            if ev.run_id.as_ref().map(|r| r.as_str()) == Some(run) {
                events.push(ev);
            }
        }
    }
    events
}
