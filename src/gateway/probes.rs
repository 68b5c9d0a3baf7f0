//! The HTTP endpoints for probes and scrapers, open to every caller:
//! `/healthz` (the process serves), `/readyz` (calls should be sent here:
//! the database answers and the process is not shutting down) and
//! `/metrics` (Prometheus, OpenMetrics text). They are served beside the
//! REST API, or on the metrics port of their own.
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::health::Health;
use crate::service::AssociationService;
use crate::telemetry::metrics::metrics;

#[derive(Clone)]
struct Probes {
    health: Arc<Health>,
    service: Arc<AssociationService>,
}

/// `/healthz`, `/readyz`, and `/metrics` when `with_metrics`.
pub fn router(health: Arc<Health>, service: Arc<AssociationService>, with_metrics: bool) -> Router {
    let probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    match with_metrics {
        true => probes.route("/metrics", get(scrape)),
        false => probes,
    }
    .with_state(Probes { health, service })
}

fn probe_answer(ok: bool, what: &str) -> Response {
    let (status, text) = match ok {
        true => (StatusCode::OK, "ok"),
        false => (StatusCode::SERVICE_UNAVAILABLE, what),
    };
    let body = serde_json::json!({ "status": text }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz(State(probes): State<Probes>) -> Response {
    probe_answer(probes.health.live(), "shutting down")
}

async fn readyz(State(probes): State<Probes>) -> Response {
    probe_answer(probes.health.ready(), "not ready")
}

async fn scrape(State(probes): State<Probes>) -> Response {
    let text = metrics().render(probes.service.pool_usage());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Records each REST call in the metrics by its route pattern (never the
/// raw path, so ids do not grow the label set).
pub async fn record_call(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    metrics().http_call(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
