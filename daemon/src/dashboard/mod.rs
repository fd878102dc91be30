//! The coordinator's web dashboard (`[dashboard] listen`): server-rendered pages of the fleet,
//! its nodes, workloads, runs and events, live over server-sent events, with actions only when
//! the configuration allows them (docs/dashboard.md). Everything it shows comes from the
//! coordinator's and the nodes' answers and from the NATS streams; it keeps no state of its own.

pub mod actions;
mod feed;
mod html;
mod live;
mod pages;
mod run_pages;
mod source;
mod workload_page;

use actions::{Policy, TOKEN_HEADER};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use herd_actors::edges::clock::now_ms;
use herd_bus::{ErrorBody, ErrorCode, NodeId, RunId, WorkloadId};
use html::{esc, Frame, Section};
use serde::Deserialize;
use source::Source;
use std::sync::Arc;

/// One dashboard: where its data comes from and whether it may act.
pub struct Dashboard {
    source: Source,
    policy: Policy,
    /// Live connections open now (each holds NATS subscriptions): at most [`live::MAX_CLIENTS`].
    clients: std::sync::atomic::AtomicUsize,
}

pub type Shared = Arc<Dashboard>;

impl Dashboard {
    pub fn new(client: async_nats::Client, subjects: herd_bus::Subjects, policy: Policy) -> Shared {
        Arc::new(Dashboard {
            source: Source::new(client, subjects),
            policy,
            clients: Default::default(),
        })
    }

    fn frame<'a>(&self, title: &'a str, section: Section, topics: &'a str) -> Frame<'a> {
        Frame {
            title,
            section,
            topics,
            actions: self.policy.allowed(),
        }
    }
}

/// The dashboard's routes, for an actix-web `App`.
pub fn routes(d: Shared) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(d))
            .route("/", web::get().to(fleet))
            .route("/f/fleet", web::get().to(fleet_fragment))
            .route("/node/{node}", web::get().to(node))
            .route("/f/node/{node}/summary", web::get().to(node_summary))
            .route("/f/node/{node}/workloads", web::get().to(node_workloads))
            .route("/node/{node}/workload/{workload}", web::get().to(workload))
            .route(
                "/f/node/{node}/workload/{workload}/summary",
                web::get().to(workload_summary),
            )
            .route(
                "/f/node/{node}/workload/{workload}/logs",
                web::get().to(workload_logs),
            )
            .route("/runs", web::get().to(runs))
            .route("/f/runs", web::get().to(runs_fragment))
            .route("/run/{run}", web::get().to(run))
            .route("/f/run/{run}", web::get().to(run_fragment))
            .route("/compare", web::get().to(compare))
            .route("/results/{object:.+}", web::get().to(result))
            .route("/events", web::get().to(events))
            .route("/sse", web::get().to(live::sse))
            .route("/static/app.js", web::get().to(app_js))
            .route("/static/style.css", web::get().to(style_css))
            .route("/action/{verb}", web::post().to(action));
    }
}

/// Headers every answer of the dashboard carries.
pub fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("Cache-Control", "no-store"))
}

type Data = web::Data<Dashboard>;

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// A failed question as a page: 404 for what does not exist, 400 for a bad id, 502 when the
/// coordinator or a node did not answer.
fn failed(e: anyhow::Error) -> HttpResponse {
    let code = e.downcast_ref::<ErrorBody>().map(|b| b.code);
    let mut status = match code {
        Some(ErrorCode::NotFound) => HttpResponse::NotFound(),
        Some(ErrorCode::BadRequest) => HttpResponse::BadRequest(),
        _ => HttpResponse::BadGateway(),
    };
    status
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><title>herd</title><link rel=\"stylesheet\" href=\"/static/style.css\">\
             <main><p class=\"error\">{}</p><p><a href=\"/\">Fleet</a></p></main>",
            esc(&format!("{e:#}"))
        ))
}

fn bad_id(e: impl std::fmt::Display) -> HttpResponse {
    failed(anyhow::Error::new(ErrorBody::bad_request(e.to_string())))
}

macro_rules! id {
    ($t:ty, $v:expr) => {
        match <$t>::new($v.as_str()) {
            Ok(id) => id,
            Err(e) => return bad_id(e),
        }
    };
}

macro_rules! ask {
    ($e:expr) => {
        match $e.await {
            Ok(v) => v,
            Err(e) => return failed(e),
        }
    };
}

#[derive(Deserialize)]
struct FleetQuery {
    label: Option<String>,
}

async fn fleet(d: Data, q: web::Query<FleetQuery>) -> HttpResponse {
    let label = q.label.as_deref().filter(|l| !l.trim().is_empty());
    let nodes = ask!(d.source.nodes());
    let table = pages::fleet_table(&nodes, label, now_ms());
    html(pages::fleet_page(
        &d.frame("Fleet", Section::Fleet, "fleet"),
        label,
        &table,
    ))
}

async fn fleet_fragment(d: Data, q: web::Query<FleetQuery>) -> HttpResponse {
    let label = q.label.as_deref().filter(|l| !l.trim().is_empty());
    let nodes = ask!(d.source.nodes());
    html(pages::fleet_table(&nodes, label, now_ms()))
}

async fn node(d: Data, path: web::Path<String>) -> HttpResponse {
    let id = id!(NodeId, path);
    let record = ask!(d.source.node(&id));
    let workloads = d.source.workloads(&id).await.unwrap_or_default();
    let topics = format!("node:{id}");
    let frame = d.frame(id.as_str(), Section::Fleet, &topics);
    html(pages::node_page(
        &frame,
        id.as_str(),
        &pages::node_summary(&record, now_ms(), frame.actions),
        &pages::workload_table(id.as_str(), &workloads, frame.actions),
    ))
}

async fn node_summary(d: Data, path: web::Path<String>) -> HttpResponse {
    let id = id!(NodeId, path);
    let record = ask!(d.source.node(&id));
    html(pages::node_summary(&record, now_ms(), d.policy.allowed()))
}

async fn node_workloads(d: Data, path: web::Path<String>) -> HttpResponse {
    let id = id!(NodeId, path);
    let workloads = ask!(d.source.workloads(&id));
    html(pages::workload_table(
        id.as_str(),
        &workloads,
        d.policy.allowed(),
    ))
}

async fn workload(d: Data, path: web::Path<(String, String)>) -> HttpResponse {
    let (n, w) = path.into_inner();
    let (node, wid) = (id!(NodeId, n), id!(WorkloadId, w));
    let status = ask!(d.source.workload(&node, &wid));
    let batches = d.source.telemetry(&node).await.unwrap_or_default();
    let (lines, logs_error) = match d.source.logs(&node, &wid).await {
        Ok(lines) => (lines, None),
        Err(e) => (vec![], Some(format!("{e:#}"))),
    };
    let topics = format!("workload:{node}:{wid}");
    let frame = d.frame(wid.as_str(), Section::Fleet, &topics);
    html(workload_page::page(
        &frame,
        &status,
        &batches,
        &lines,
        logs_error.as_deref(),
        now_ms(),
    ))
}

async fn workload_summary(d: Data, path: web::Path<(String, String)>) -> HttpResponse {
    let (n, w) = path.into_inner();
    let (node, wid) = (id!(NodeId, n), id!(WorkloadId, w));
    let status = ask!(d.source.workload(&node, &wid));
    html(workload_page::summary(
        &status,
        now_ms(),
        d.policy.allowed(),
    ))
}

async fn workload_logs(d: Data, path: web::Path<(String, String)>) -> HttpResponse {
    let (n, w) = path.into_inner();
    let (node, wid) = (id!(NodeId, n), id!(WorkloadId, w));
    let lines = ask!(d.source.logs(&node, &wid));
    html(workload_page::logs(&lines))
}

async fn runs(d: Data) -> HttpResponse {
    let list = ask!(d.source.runs());
    let table = run_pages::catalog(&list, now_ms());
    html(run_pages::catalog_page(
        &d.frame("Runs", Section::Runs, "fleet"),
        &table,
    ))
}

async fn runs_fragment(d: Data) -> HttpResponse {
    let list = ask!(d.source.runs());
    html(run_pages::catalog(&list, now_ms()))
}

async fn run(d: Data, path: web::Path<String>) -> HttpResponse {
    let id = id!(RunId, path);
    let record = ask!(d.source.run(&id));
    let stats = d.source.run_summary(&id).await.ok();
    let body = run_pages::run_body(&record, stats.as_ref(), now_ms(), d.policy.allowed());
    let topics = format!("run:{id}");
    html(run_pages::run_page(
        &d.frame(id.as_str(), Section::Runs, &topics),
        &record,
        &body,
    ))
}

async fn run_fragment(d: Data, path: web::Path<String>) -> HttpResponse {
    let id = id!(RunId, path);
    let record = ask!(d.source.run(&id));
    let stats = d.source.run_summary(&id).await.ok();
    html(run_pages::run_body(
        &record,
        stats.as_ref(),
        now_ms(),
        d.policy.allowed(),
    ))
}

#[derive(Deserialize)]
struct CompareQuery {
    a: String,
    b: String,
}

async fn compare(d: Data, q: web::Query<CompareQuery>) -> HttpResponse {
    let (a, b) = (
        id!(RunId, q.a.trim().to_string()),
        id!(RunId, q.b.trim().to_string()),
    );
    let cmp = ask!(d.source.compare(&a, &b));
    html(run_pages::compare_page(
        &d.frame("Compare", Section::Runs, ""),
        &cmp,
    ))
}

/// A file of a task's results, as uploaded (`herdctl fetch` checks digests; a browser gets the
/// bytes with their length, so a cut download shows as one).
async fn result(d: Data, path: web::Path<String>) -> HttpResponse {
    use tokio::io::AsyncReadExt;
    let name = path.into_inner();
    let object = ask!(d.source.result(&name));
    let size = object.info.size as u64;
    let file = name.rsplit('/').next().unwrap_or("result").replace('"', "");
    let body = futures::stream::unfold(Some(object), |object| async move {
        let mut object = object?;
        let mut buf = vec![0u8; 64 * 1024];
        match object.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(web::Bytes::from(buf)), Some(object)))
            }
            Err(e) => Some((Err(actix_web::error::ErrorBadGateway(e)), None)),
        }
    });
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file}\""),
        ))
        .no_chunking(size)
        .streaming(body)
}

async fn events(d: Data) -> HttpResponse {
    let history = d.source.node_events().await.unwrap_or_default();
    html(pages::events_page(
        &d.frame("Events", Section::Events, "events"),
        &history,
        now_ms(),
    ))
}

async fn app_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("assets/app.js"))
}

async fn style_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(include_str!("assets/style.css"))
}

#[derive(Deserialize)]
struct ActionQuery {
    node: Option<String>,
    workload: Option<String>,
    run: Option<String>,
    #[serde(default)]
    undo: bool,
}

fn plain(status: actix_web::http::StatusCode, text: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(text)
}

/// `POST /action/{stop-workload,stop-run,drain}`: checked by the policy, then asked over NATS
/// like herdctl asks; the answer is the node's or coordinator's message.
async fn action(
    d: Data,
    req: HttpRequest,
    verb: web::Path<String>,
    q: web::Query<ActionQuery>,
) -> HttpResponse {
    let h = |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    let token = req
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    if let Err(refused) = d.policy.check(token, h(header::ORIGIN), h(header::HOST)) {
        let status = actix_web::http::StatusCode::from_u16(refused.status)
            .unwrap_or(actix_web::http::StatusCode::FORBIDDEN);
        tracing::warn!(action = %verb, reason = %refused.message, "dashboard action refused");
        return plain(status, refused.message);
    }
    let need =
        |v: &Option<String>, what: &str| v.clone().ok_or_else(|| format!("{verb} needs ?{what}="));
    let outcome: Result<String, String> = async {
        match verb.as_str() {
            "stop-workload" => {
                let node = NodeId::new(need(&q.node, "node")?).map_err(|e| e.to_string())?;
                let w =
                    WorkloadId::new(need(&q.workload, "workload")?).map_err(|e| e.to_string())?;
                let ack = d
                    .source
                    .stop_workload(&node, &w)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                Ok(ack
                    .message
                    .unwrap_or_else(|| format!("stopping {w} on {node}")))
            }
            "stop-run" => {
                let run = RunId::new(need(&q.run, "run")?).map_err(|e| e.to_string())?;
                let r = d
                    .source
                    .stop_run(&run)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                Ok(format!("run {run} is {}", r.state.as_str()))
            }
            "drain" => {
                let node = NodeId::new(need(&q.node, "node")?).map_err(|e| e.to_string())?;
                let ack = d
                    .source
                    .drain(&node, !q.undo)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                Ok(ack.message.unwrap_or_default())
            }
            other => Err(format!(
                "no action '{other}': stop-workload, stop-run or drain"
            )),
        }
    }
    .await;
    match outcome {
        Ok(message) => {
            tracing::info!(action = %verb, node = ?q.node, workload = ?q.workload, run = ?q.run, "dashboard action taken");
            plain(actix_web::http::StatusCode::OK, message)
        }
        Err(message) => plain(actix_web::http::StatusCode::BAD_REQUEST, message),
    }
}
