//! herdd's HTTP listeners, both opt-in and both actix-web: the metrics endpoint
//! (`metrics.listen`) and the coordinator's dashboard (`dashboard.listen`). Configured to the
//! same address they share one listener; apart, each has its own. Parsing, limits and timeouts
//! are actix-web's; herdd's own signals stop it, not actix-web's.

use crate::dashboard::{self, Shared};
use actix::Addr;
use actix_web::{App, HttpResponse, HttpServer};
use herd_actors::node::executor::WorkloadExecutor;
use std::net::SocketAddr;
use std::time::Duration;

/// What one listener serves.
#[derive(Clone)]
struct Serves {
    metrics: Option<Option<Addr<WorkloadExecutor>>>,
    dashboard: Option<Shared>,
}

/// Starts the listeners asked for; returns the address each of `metrics` and `dashboard` got.
pub fn start(
    metrics: Option<(&str, Option<Addr<WorkloadExecutor>>)>,
    dashboard: Option<(&str, Shared)>,
) -> anyhow::Result<(Option<SocketAddr>, Option<SocketAddr>)> {
    match (metrics, dashboard) {
        (Some((m, ex)), Some((d, dash))) if m == d => {
            let addr = listen(
                m,
                "metrics.listen and dashboard.listen",
                Serves {
                    metrics: Some(ex),
                    dashboard: Some(dash),
                },
            )?;
            Ok((Some(addr), Some(addr)))
        }
        (metrics, dashboard) => {
            let m = match metrics {
                Some((m, ex)) => Some(listen(
                    m,
                    "metrics.listen",
                    Serves {
                        metrics: Some(ex),
                        dashboard: None,
                    },
                )?),
                None => None,
            };
            let d = match dashboard {
                Some((d, dash)) => Some(listen(
                    d,
                    "dashboard.listen",
                    Serves {
                        metrics: None,
                        dashboard: Some(dash),
                    },
                )?),
                None => None,
            };
            Ok((m, d))
        }
    }
}

fn listen(addr: &str, key: &str, serves: Serves) -> anyhow::Result<SocketAddr> {
    let server = HttpServer::new(move || {
        let serves = serves.clone();
        App::new()
            .wrap(dashboard::security_headers())
            .configure(|cfg| {
                if let Some(executor) = serves.metrics {
                    crate::metrics::routes(executor)(cfg);
                }
                if let Some(d) = serves.dashboard {
                    dashboard::routes(d)(cfg);
                }
            })
            .default_service(actix_web::web::to(|| async {
                HttpResponse::NotFound().body("not found\n")
            }))
    })
    .workers(1)
    .disable_signals()
    .client_request_timeout(Duration::from_secs(5))
    .client_disconnect_timeout(Duration::from_secs(1))
    .shutdown_timeout(1)
    .bind(addr)
    .map_err(|e| anyhow::anyhow!("{key}: cannot listen on {addr}: {e}"))?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("{key}: bound to no address"))?;
    actix::spawn(async move {
        if let Err(e) = server.run().await {
            tracing::error!(error = %e, "HTTP listener ended");
        }
    });
    Ok(bound)
}
