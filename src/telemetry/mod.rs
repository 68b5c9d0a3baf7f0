//! Observability: log lines (text or JSON, colour only on a terminal),
//! traces over OTLP (when `telemetry.otlp_endpoint` is set) with W3C trace
//! context taken from callers and passed on to plugins, the request spans
//! both front ends open, and the Prometheus metrics every layer records
//! into (`metrics`).
use std::io::IsTerminal;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;

use crate::config::{LogFormat, LogSettings, TelemetrySettings};

pub mod metrics;

tokio::task_local! {
    /// The correlation id of the REST call being served, which its log
    /// lines and its error body carry.
    pub static CORRELATION_ID: String;
}

/// What must be flushed before the process exits.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans not yet exported (blocks; call outside async code).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(err) = provider.shutdown() {
                eprintln!("association-service: traces not all exported: {err}");
            }
        }
    }
}

/// Installs the process's log subscriber (on standard error) and, with an
/// OTLP endpoint, the trace exporter; must run inside the Tokio runtime the
/// exporter will use. A filter that does not parse is refused with the reason.
pub fn init(log: &LogSettings, telemetry: &TelemetrySettings) -> Result<Telemetry, String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.filter)
        .map_err(|err| format!("log.filter '{}' is not a valid filter: {err}", log.filter))?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = match &telemetry.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(endpoint, &telemetry.service_name)?),
        None => None,
    };
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("association-service")));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match log.format {
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
        LogFormat::Text => lines.with_ansi(std::io::stderr().is_terminal()).boxed(),
    };
    tracing_subscriber::registry()
        .with(traces)
        .with(lines)
        .with(filter)
        .init();
    Ok(Telemetry { provider })
}

fn tracer_provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|err| format!("telemetry.otlp_endpoint '{endpoint}': {err}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name.to_string())
                .build(),
        )
        .build())
}

/// Makes `span` a child of the W3C trace context in `carrier` (a call's
/// headers, if they hold one) and
/// records its trace id, which every log line inside it then shows (with
/// traces off: the caller's trace id, if it sent one).
pub fn adopt(span: &tracing::Span, carrier: &dyn Extractor) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    let callers = parent.span().span_context().trace_id();
    let _ = span.set_parent(parent);
    let trace_id = match span.context().span().span_context().trace_id() {
        TraceId::INVALID => callers,
        own => own,
    };
    if trace_id != TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// Writes the current span's trace context into an outgoing call's
/// `carrier` (a plugin call's headers), so the callee's spans join the
/// caller's trace.
pub fn inject_current(carrier: &mut dyn Injector) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, carrier));
}

/// Records the portal a call acts on in the current request span.
pub fn record_portal(portal: i64) {
    tracing::Span::current().record("portal", portal);
}

/// Counts a call refused to protect other callers (a guard's, a timeout's or
/// a stalled stream's) and logs it, at most once a second for each reason so
/// a flood does not become a flood of log lines.
pub fn refused(reason: &'static str) {
    static LAST_LOGGED: std::sync::Mutex<Vec<(&'static str, u64)>> =
        std::sync::Mutex::new(Vec::new());
    metrics::metrics().overload_refused(reason);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut last = LAST_LOGGED.lock().unwrap_or_else(|e| e.into_inner());
    let log = match last.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, at)) if *at == now => false,
        Some((_, at)) => {
            *at = now;
            true
        }
        None => {
            last.push((reason, now));
            true
        }
    };
    if log {
        tracing::warn!(
            reason,
            "refused a call to protect other callers (counted in associations_overload_refusals_total)"
        );
    }
}
