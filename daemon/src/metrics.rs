//! The opt-in metrics listener (`metrics.listen`): `GET /metrics` answers every herd metric in
//! the Prometheus text format. A plain HTTP/1.1 responder on tokio; one request per connection.

use actix::Addr;
use herd_actors::edges::metrics::{metrics, StateLabel};
use herd_actors::node::executor::{StateCounts, WorkloadExecutor};
use herd_bus::WorkloadState;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A request head longer than this, or slower than READ_WITHIN, is answered 400 / dropped.
const MAX_HEAD: usize = 8 * 1024;
const READ_WITHIN: Duration = Duration::from_secs(5);

/// Binds `listen` (an error names the address) and serves until the process ends.
pub async fn start(
    listen: &str,
    executor: Option<Addr<WorkloadExecutor>>,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("metrics.listen: cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    actix::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    actix::spawn(answer(stream, executor.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(addr)
}

async fn answer(mut stream: TcpStream, executor: Option<Addr<WorkloadExecutor>>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(READ_WITHIN, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() <= MAX_HEAD {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let response = if head.len() > MAX_HEAD {
        plain(400, "Bad Request", "request head too large\n")
    } else if path != "/metrics" && !path.starts_with("/metrics?") {
        plain(404, "Not Found", "herd serves /metrics only\n")
    } else if method != "GET" && method != "HEAD" {
        plain(405, "Method Not Allowed", "use GET\n")
    } else {
        refresh_workload_counts(executor.as_ref()).await;
        let body = metrics().encode();
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        if method == "GET" {
            r.push_str(&body);
        }
        r
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn plain(code: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Workloads by state, as the executor knows them now; every state is present (0 if none).
async fn refresh_workload_counts(executor: Option<&Addr<WorkloadExecutor>>) {
    let Some(executor) = executor else { return };
    let Ok(counts) = executor.send(StateCounts).await else {
        return;
    };
    for state in WorkloadState::ALL {
        let n = counts.get(&state).copied().unwrap_or(0);
        metrics()
            .workloads
            .get_or_create(&StateLabel {
                state: state.as_str().to_string(),
            })
            .set(n as i64);
    }
}
