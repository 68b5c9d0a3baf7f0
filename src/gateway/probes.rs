//! The HTTP endpoints for probes and scrapers, open to every caller:
//! `/healthz` (the process serves), `/readyz` (calls should be sent here:
//! the database answers and the process is not shutting down) and
//! `/metrics` (Prometheus, OpenMetrics text). They are served beside the
//! REST API, or on the metrics port of their own. Also the layer that
//! traces and meters every REST call.
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use opentelemetry_http::HeaderExtractor;

use crate::health::Health;
use crate::service::AssociationService;
use crate::telemetry::metrics::metrics;
use crate::telemetry::{self, CORRELATION_ID};
use tracing::Instrument;

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

/// Serves each REST call in a span of its own (a child of the caller's W3C
/// trace context, carrying its route, portal, status, trace id and
/// correlation id, which its error body reuses) and records it in the
/// metrics by its route pattern (never the raw path, so ids do not grow the
/// label set).
pub async fn observe_call(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Any token is a method to HTTP: only the standard ones name themselves.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        portal = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        correlation_id = %correlation_id,
    );
    telemetry::adopt(&span, &HeaderExtractor(request.headers()));
    let response = CORRELATION_ID
        .scope(correlation_id, next.run(request).instrument(span.clone()))
        .await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", i64::from(status));
    metrics().http_call(&method, &route, status, started.elapsed());
    response
}
