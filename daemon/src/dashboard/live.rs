//! `GET /sse?topics=…`: one browser's live connection. Its own NATS subscriptions feed its own
//! bounded queue ([`ClientQueue`]); the response drains the queue. A browser that reads slowly
//! loses telemetry points, never holds up NATS or the coordinator; one that leaves ends its
//! subscriptions.

use super::feed::{translate, ClientQueue, Topic, QUEUE_CAP};
use super::Data;
use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use futures::StreamExt;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Live connections one dashboard serves at once; past it, 503 (the browser tries again).
pub const MAX_CLIENTS: usize = 64;
/// A comment line this often keeps proxies and the browser from closing an idle connection.
const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub struct TopicsQuery {
    #[serde(default)]
    topics: String,
}

/// The pump from NATS into the queue, stopped when the response is dropped (the browser left).
struct Pump {
    /// Counts this connection among the dashboard's until it ends.
    _client: Client,
    queue: Arc<Mutex<ClientQueue>>,
    ready: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
    next_id: u64,
    reported_drops: u64,
}

/// One open live connection, counted in [`super::Dashboard`]'s `clients` while it lasts.
struct Client(Data);

impl Client {
    fn enter(d: &Data) -> Option<Client> {
        let n = d.clients.fetch_add(1, Ordering::SeqCst);
        let client = Client(d.clone());
        (n < MAX_CLIENTS).then_some(client)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn sse(d: Data, q: web::Query<TopicsQuery>) -> HttpResponse {
    let topics = match Topic::parse_list(&q.topics) {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => return HttpResponse::BadRequest().body("give ?topics="),
        Err(e) => return HttpResponse::BadRequest().body(e),
    };
    let Some(client) = Client::enter(&d) else {
        return HttpResponse::ServiceUnavailable().body(format!(
            "{MAX_CLIENTS} live connections are open: the most this dashboard serves"
        ));
    };
    let ctl = &d.source.ctl;
    let mut subscriptions = vec![];
    let mut subjects: Vec<String> = topics
        .iter()
        .flat_map(|t| t.subjects(&ctl.subjects))
        .collect();
    subjects.sort();
    subjects.dedup();
    for subject in subjects {
        match ctl.client.subscribe(subject.clone()).await {
            Ok(s) => subscriptions.push(s),
            Err(e) => {
                return HttpResponse::BadGateway()
                    .body(format!("cannot subscribe to {subject}: {e}"))
            }
        }
    }
    // Subscribed before the browser hears it is connected: what happens next reaches it.
    let _ = ctl.client.flush().await;
    let queue = Arc::new(Mutex::new(ClientQueue::new(QUEUE_CAP)));
    let ready = Arc::new(Notify::new());
    let task = {
        let (queue, ready, subjects) = (queue.clone(), ready.clone(), ctl.subjects.clone());
        let mut messages = futures::stream::select_all(subscriptions);
        tokio::spawn(async move {
            while let Some(msg) = messages.next().await {
                if let Some(ev) = translate(&subjects, &topics, &msg.subject, &msg.payload) {
                    queue.lock().unwrap_or_else(|e| e.into_inner()).push(ev);
                    ready.notify_one();
                }
            }
        })
    };
    let pump = Pump {
        _client: client,
        queue,
        ready,
        task,
        next_id: 0,
        reported_drops: 0,
    };
    let hello = futures::stream::once(async {
        Ok::<_, actix_web::Error>(Bytes::from_static(b"retry: 1000\n: connected\n\n"))
    });
    let events = futures::stream::unfold(pump, |mut pump| async move {
        loop {
            let (next, dropped) = {
                let mut q = pump.queue.lock().unwrap_or_else(|e| e.into_inner());
                (q.pop(), q.dropped)
            };
            if dropped > pump.reported_drops {
                // The page fetches its regions again: what the lost events said is in them.
                let n = dropped - pump.reported_drops;
                pump.reported_drops = dropped;
                let frame = format!("event: dropped\ndata: {n}\n\n");
                return Some((Ok(Bytes::from(frame)), pump));
            }
            if let Some(ev) = next {
                pump.next_id += 1;
                let frame = ev.frame(pump.next_id);
                return Some((Ok(Bytes::from(frame)), pump));
            }
            tokio::select! {
                _ = pump.ready.notified() => {}
                _ = tokio::time::sleep(KEEPALIVE) => {
                    return Some((Ok(Bytes::from_static(b": keepalive\n\n")), pump));
                }
            }
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(hello.chain(events))
}
