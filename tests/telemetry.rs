//! Traces reach a real OTLP receiver: the server binary exports to a tonic
//! TraceService started here (opentelemetry-proto's generated server); a
//! REST call carrying the caller's W3C `traceparent` runs in a span of that
//! trace, with its route, portal and status; the admin plugin the call asks
//! receives the same trace id; the call's log line and its error body share
//! one correlationId, and the log line shows the trace id.
mod common;

use std::sync::{Arc, Mutex};

use association_service::proto::admin_hook_service_server::{
    AdminHookService, AdminHookServiceServer,
};
use association_service::proto::{
    ChangeCommittedRequest, ChangeCommittedResponse, ValidateChangeRequest, ValidateChangeResponse,
};
use common::ServerProcess;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// Every export the receiver got.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A plugin that allows everything and keeps each call's `traceparent`.
#[derive(Clone, Default)]
struct Plugin(Arc<Mutex<Vec<String>>>);

#[tonic::async_trait]
impl AdminHookService for Plugin {
    async fn validate_change(
        &self,
        request: Request<ValidateChangeRequest>,
    ) -> Result<Response<ValidateChangeResponse>, Status> {
        let parent = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(none)")
            .to_string();
        self.0.lock().unwrap().push(parent);
        Ok(Response::new(ValidateChangeResponse {
            allow: true,
            message: String::new(),
        }))
    }

    async fn change_committed(
        &self,
        _: Request<ChangeCommittedRequest>,
    ) -> Result<Response<ChangeCommittedResponse>, Status> {
        Ok(Response::new(ChangeCommittedResponse {}))
    }
}

/// Serves `service` on a port of its own; its address.
async fn serve<S>(service: S) -> String
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

/// One HTTP/1.1 request with a `traceparent`; the answer's status and body.
async fn call(rest: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let addr = rest.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         traceparent: 00-{TRACE_ID}-{PARENT_SPAN}-01\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_call_traces_through_the_service_and_its_plugin() {
    let receiver = Receiver::default();
    let collector = serve(TraceServiceServer::new(receiver.clone())).await;
    let plugin = Plugin::default();
    let plugin_endpoint = serve(AdminHookServiceServer::new(plugin.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[hooks.plugins]]\nname = \"policy\"\nendpoint = \"{plugin_endpoint}\"\n\
             timeout_ms = 5000\nfailure_policy = \"closed\"\n"
        ),
    )
    .unwrap();
    let store = common::fresh_store("sqlite").await;
    let config = config.display().to_string();
    let mut server = ServerProcess::start(
        &store.url,
        &[
            ("ASSOC_CONFIG", config.as_str()),
            ("ASSOC__TELEMETRY__OTLP_ENDPOINT", collector.as_str()),
        ],
    )
    .await;

    // A label created over REST: the plugin is asked inside the call.
    let (status, body) = call(
        &server.rest,
        "POST",
        "/crm/v4/associations/contacts/companies/labels",
        r#"{"label":"Manager","name":"manager"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        plugin
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.get(3..35).unwrap_or(p))
            .collect::<Vec<_>>(),
        vec![TRACE_ID],
        "the plugin call carries the caller's trace"
    );
    // A refused call: its error body's correlationId is its log line's.
    let (status, body) = call(
        &server.rest,
        "POST",
        "/crm/v4/associations/contacts/companies/labels",
        "{",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    let correlation = error["correlationId"].as_str().unwrap().to_string();

    server.terminate();
    let exit = server.child.wait().await.unwrap();
    assert!(exit.success(), "{exit:?}");
    let log = server.log.lock().unwrap().clone();
    let refused = log
        .iter()
        .find(|l| l.contains("REST request refused"))
        .unwrap_or_else(|| panic!("the refusal is logged: {log:?}"));
    assert!(refused.contains(&correlation), "{refused}");
    assert!(
        refused.contains(TRACE_ID),
        "the trace id is on the line: {refused}"
    );

    // The spans arrived before the process exited.
    let exports = receiver.0.lock().unwrap().clone();
    let spans: Vec<_> = exports
        .iter()
        .flat_map(|e| &e.resource_spans)
        .inspect(|r| {
            let resource = r.resource.as_ref().expect("a resource");
            assert!(matches!(
                attribute(&resource.attributes, "service.name"),
                Some(AnyValue::StringValue(name)) if name == "association-service"
            ));
        })
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let ours: Vec<_> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let request = ours
        .iter()
        .find(|s| {
            s.name == "POST /crm/v4/associations/{from}/{to}/labels"
                && hex(&s.parent_span_id) == PARENT_SPAN
                && matches!(
                    attribute(&s.attributes, "http.response.status_code"),
                    Some(AnyValue::IntValue(200))
                )
        })
        .unwrap_or_else(|| panic!("the REST call's span, a child of the caller's: {ours:#?}"));
    assert!(
        matches!(
            attribute(&request.attributes, "portal"),
            Some(AnyValue::IntValue(1))
        ),
        "{request:#?}"
    );
    assert!(
        ours.iter().any(|s| s.name == "store.transaction"),
        "the call's store transaction is in its trace: {ours:#?}"
    );
}

/// With traces off, a call's log lines still name the caller's trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_name_the_callers_trace_with_traces_off() {
    let store = common::fresh_store("sqlite").await;
    let mut server = ServerProcess::start(&store.url, &[]).await;
    let labels = "/crm/v4/associations/contacts/companies/labels";
    let (status, body) = call(&server.rest, "POST", labels, "{").await;
    assert_eq!(status, 400, "{body}");
    server.terminate();
    assert!(server.child.wait().await.unwrap().success());
    let log = server.log.lock().unwrap().clone();
    let refused = log
        .iter()
        .find(|l| l.contains("REST request refused"))
        .unwrap_or_else(|| panic!("the refusal is logged: {log:?}"));
    assert!(
        refused.contains(TRACE_ID),
        "the trace id is on the line: {refused}"
    );
}
