//! Coordinator failover: two coordinators on one nats-server with the default lease; the
//! leader is killed (SIGKILL) ten times, and each time the clock runs from the kill until the
//! standby answers `cluster.nodes` as the leader. A new standby replaces the killed one.

use super::*;

const KILLS: usize = 10;
/// The shipped default (`coordinator.lease_s`, deploy/herd.toml).
const LEASE_S: f64 = 3.0;

fn coordinator_process(nats: &NatsServer, i: usize) -> Herdd {
    Herdd::start_with(HerddOptions {
        config_toml: Some(&format!(
            "roles = [\"coordinator\"]\n[coordinator]\nlease_s = {LEASE_S}\n"
        )),
        env: vec![("HERD_LOG", "info".into())],
        ..HerddOptions::new(&format!("coord-{i}"), nats.url())
    })
}

/// Who answers `cluster.nodes` as the leader, asking with a short timeout (a request that
/// reaches the leader as it dies is lost with it).
async fn leader(client: &async_nats::Client) -> Option<String> {
    let subject = subjects().cluster(ClusterVerb::Nodes);
    let ask = request(client, &subject, Some("application/json"), b"{}".to_vec());
    let msg = tokio::time::timeout(Duration::from_millis(200), ask)
        .await
        .ok()?
        .ok()?;
    let v: Value = serde_json::from_slice(&msg.payload).ok()?;
    v["data"]["leader"]["coordinator"]
        .as_str()
        .map(str::to_string)
}

async fn until_led_by(client: &async_nats::Client, who: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while leader(client).await.as_deref() != Some(who) {
        if Instant::now() > deadline {
            bail!("{who} did not lead within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn until_standing_by(h: &Herdd) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !h.log().contains("another coordinator leads") {
        if Instant::now() > deadline {
            bail!("{} never saw the leader", h.node_id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn name(h: &Herdd) -> String {
    format!("{}:{}", h.node_id, h.pid())
}

pub(crate) async fn failover(r: &mut Report) -> Result<()> {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let mut leading = coordinator_process(&nats, 0);
    until_led_by(&client, &name(&leading), Duration::from_secs(30)).await?;
    let mut standby = coordinator_process(&nats, 1);
    until_standing_by(&standby).await?;
    let mut took = Vec::with_capacity(KILLS);
    for i in 0..KILLS {
        // Some time as leader first: the kill falls anywhere within a renew period.
        tokio::time::sleep(Duration::from_millis(500 + 137 * i as u64)).await;
        leading.signal(nix::sys::signal::Signal::SIGKILL);
        let killed = Instant::now();
        until_led_by(&client, &name(&standby), Duration::from_secs(30)).await?;
        took.push(killed.elapsed());
        let _ = leading.wait_exit(Duration::from_secs(5));
        leading = std::mem::replace(&mut standby, coordinator_process(&nats, i + 2));
        until_standing_by(&standby).await?;
    }
    took.sort();
    let s: Vec<f64> = took.iter().map(Duration::as_secs_f64).collect();
    let median = percentile(&s, 0.5);
    let max = s[s.len() - 1];
    r.line("## Coordinator failover\n");
    r.line(format!(
        "Two coordinators on one nats-server, lease {LEASE_S} s (the default). The leader is \
         killed with SIGKILL {KILLS} times, 0.5–1.7 s into its leadership; each time the clock \
         runs from the kill until the standby answers `cluster.nodes` naming itself as the \
         leader (asked every 10 ms, each request given 200 ms). The standby takes the key once \
         the dead leader's entry expires (at most one lease after its last renew, renewed every \
         third of a lease), reads it every quarter of a lease, then restores the buckets and \
         subscribes.\n"
    ));
    r.line("| kills | min | median | max | median ÷ lease |");
    r.line("|---|---|---|---|---|");
    r.line(format!(
        "| {KILLS} | {:.2} s | {median:.2} s | {max:.2} s | {:.2}× |\n",
        s[0],
        median / LEASE_S
    ));
    r.target(
        "coordinator failover: SIGKILL of the leader → the standby answering `cluster.nodes`, median of 10",
        format!("{median:.2} s = {:.2}× the lease ({LEASE_S} s); max {max:.2} s", median / LEASE_S),
        "≤ 2 leases",
        max <= 2.0 * LEASE_S,
    );
    Ok(())
}
