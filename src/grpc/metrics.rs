//! Serves every gRPC call in a span of its own (a child of the caller's W3C
//! trace context, with its method, portal, status code and trace id, open
//! until its answer ends) and records it in the metrics: its method, its
//! status code (from the trailers, or the headers of a trailers-only
//! answer) and how long it took until its answer ended; a call whose client
//! left counts as `Cancelled`.
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::body::Body;
use tonic::codegen::http;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::telemetry::metrics::metrics;

/// The layer that meters calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetricsLayer;

impl<S> Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Metered<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Metered<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let span = tracing::info_span!(
            "grpc.request",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            portal = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        crate::telemetry::adopt(&span, request.headers());
        let answer = span
            .in_scope(|| self.inner.call(request))
            .instrument(span.clone());
        Box::pin(async move {
            let response = answer.await?;
            let code = tonic::Status::from_header_map(response.headers()).map(|s| s.code());
            Ok(response.map(|inner| {
                Body::new(MeteredBody {
                    inner,
                    method,
                    started,
                    code,
                    span,
                })
            }))
        })
    }
}

/// The path as the metrics name it: a served service's method, or
/// `unknown`, so callers cannot grow the label set without bound.
fn method_label(path: &str) -> String {
    let method = path.rsplit('/').next().unwrap_or_default();
    let plain = !method.is_empty()
        && method.len() <= 64
        && method.bytes().all(|b| b.is_ascii_alphanumeric());
    match (super::auth::rpc_access(path), plain) {
        (Some(_), true) => path.to_string(),
        _ => "unknown".into(),
    }
}

/// An answer's body that records its call when it is dropped.
struct MeteredBody {
    inner: Body,
    method: String,
    started: Instant,
    /// The status seen so far (none: the answer has not ended).
    code: Option<Code>,
    /// The call's span, which ends with the answer.
    span: tracing::Span,
}

impl http_body::Body for MeteredBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame {
            if let Some(trailers) = frame.trailers_ref() {
                this.code = tonic::Status::from_header_map(trailers)
                    .map(|s| s.code())
                    .or(Some(Code::Ok));
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        self.span.record("rpc.grpc.status_code", code as i64);
        metrics().grpc_call(&self.method, code, self.started.elapsed());
    }
}
