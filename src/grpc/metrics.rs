//! Knows the served methods (from the descriptor sets). Serves every gRPC
//! call in a span of its own (a child of the caller's W3C
//! trace context, with its method, portal, status code and trace id, open
//! until its answer ends) and records it in the metrics: its method, its
//! status code (from the trailers, or the headers of a trailers-only
//! answer) and how long it took until its answer ended; a call whose client
//! left counts as `Cancelled`.
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry_http::HeaderExtractor;
use prost::Message;
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
        crate::telemetry::adopt(&span, &HeaderExtractor(request.headers()));
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

/// The path as the metrics name it: a method the server serves, or
/// `unknown`, so callers cannot grow the label set without bound.
fn method_label(path: &str) -> String {
    match served_methods().contains_key(path) {
        true => path.to_string(),
        false => "unknown".into(),
    }
}

/// Whether the method at `path` takes a stream of requests (its body is
/// then bounded message by message, not whole).
pub fn client_streaming(path: &str) -> bool {
    served_methods().get(path).copied().unwrap_or(false)
}

/// Every `/package.Service/Method` path the server serves, and whether it
/// takes a stream of requests, read from the descriptor sets of its
/// services (the API, health and reflection).
pub fn served_methods() -> &'static HashMap<String, bool> {
    static METHODS: OnceLock<HashMap<String, bool>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let sets = [
            crate::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut methods = HashMap::new();
        for bytes in sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let service_name = format!("{package}.{}", service.name.unwrap_or_default());
                    if super::auth::rpc_access(&format!("/{service_name}/")).is_none() {
                        continue;
                    }
                    for method in service.method {
                        methods.insert(
                            format!("/{service_name}/{}", method.name.unwrap_or_default()),
                            method.client_streaming.unwrap_or(false),
                        );
                    }
                }
            }
        }
        methods
    })
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
        let name = format!("{code:?}");
        metrics().grpc_call(&self.method, &name, self.started.elapsed());
    }
}
