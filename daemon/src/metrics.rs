//! The opt-in metrics endpoint (`metrics.listen`): `GET /metrics` answers every herd metric in
//! the Prometheus text format, served by actix-web like the dashboard (`http.rs` decides whether
//! they share a listener).

use actix::Addr;
use actix_web::{web, HttpResponse};
use herd_actors::edges::metrics::{metrics, StateLabel};
use herd_actors::node::executor::{StateCounts, WorkloadExecutor};
use herd_bus::WorkloadState;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `/metrics`, for an actix-web `App`: GET and HEAD (actix-web answers HEAD without the body).
pub fn routes(executor: Option<Addr<WorkloadExecutor>>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::resource("/metrics")
                .app_data(web::Data::new(executor))
                .route(web::get().to(answer))
                .route(web::head().to(answer))
                .default_service(web::to(|| async {
                    HttpResponse::MethodNotAllowed()
                        .insert_header(("Allow", "GET, HEAD"))
                        .body("use GET\n")
                })),
        );
    }
}

async fn answer(executor: web::Data<Option<Addr<WorkloadExecutor>>>) -> HttpResponse {
    refresh_workload_counts(executor.as_ref().as_ref()).await;
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics().encode())
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
