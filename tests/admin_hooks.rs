//! Admin plugin hooks against a real plugin: a gRPC `AdminHookService` server the
//! test starts on its own port. A refused change returns the plugin's message
//! and changes nothing; a plugin past its timeout follows its failure policy;
//! changes committed while the plugin is down reach it once it is back, in
//! order and with stable keys, across service restarts; the built-in audit
//! trail records who changed what.
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use association_service::config::{PluginConfig, Settings};
use association_service::hooks::FailurePolicy;
use association_service::proto::admin_config_client::AdminConfigClient;
use association_service::proto::admin_hook_service_server::{
    AdminHookService, AdminHookServiceServer,
};
use association_service::proto::{
    AdminEvent, AssociationCategory, AssociationType, ChangeCommittedRequest,
    ChangeCommittedResponse, CreateLabelRequest, CreateLimitsRequest, CreateLimitsResponse,
    LimitInput, ListAuditEventsRequest, ListAuditEventsResponse, ListLimitsRequest,
    PurgeLimitsRequest, UpdateLimitsRequest, ValidateChangeRequest, ValidateChangeResponse,
};
use common::TestServer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};

const PORTAL: i64 = 7;
/// Upper bound on waiting for a delivery; deliveries normally take well under a second.
const PATIENCE: Duration = Duration::from_secs(60);

/// How the test plugin answers.
#[derive(Default)]
struct Behaviour {
    /// Refuse limits above this value with this message.
    deny_above: Option<(i32, &'static str)>,
    /// Never answer ValidateChange.
    stall: bool,
    /// Fail the first delivery of every change.
    fail_first_delivery: bool,
}

/// One ChangeCommitted call the plugin received.
#[derive(Clone, Debug)]
struct Delivery {
    key: String,
    sequence: i64,
    event: i32,
    attempt: u32,
    /// The user of a high-usage report.
    report_user: Option<i64>,
}

struct Shared {
    behaviour: Behaviour,
    attempts: Mutex<HashMap<String, u32>>,
    deliveries: mpsc::UnboundedSender<Delivery>,
}

#[derive(Clone)]
struct TestPlugin(Arc<Shared>);

#[tonic::async_trait]
impl AdminHookService for TestPlugin {
    async fn validate_change(
        &self,
        request: Request<ValidateChangeRequest>,
    ) -> Result<Response<ValidateChangeResponse>, Status> {
        let behaviour = &self.0.behaviour;
        if behaviour.stall {
            std::future::pending::<()>().await;
        }
        let change = request.into_inner().change.expect("a change");
        let after = change.after.unwrap_or_default();
        if let Some((max, message)) = behaviour.deny_above {
            if after.limits.iter().any(|l| l.max_to_object_ids > max) {
                return Ok(Response::new(ValidateChangeResponse {
                    allow: false,
                    message: message.into(),
                }));
            }
        }
        Ok(Response::new(ValidateChangeResponse {
            allow: true,
            message: String::new(),
        }))
    }

    async fn change_committed(
        &self,
        request: Request<ChangeCommittedRequest>,
    ) -> Result<Response<ChangeCommittedResponse>, Status> {
        let r = request.into_inner();
        let attempt = {
            let mut attempts = self.0.attempts.lock().unwrap();
            let n = attempts.entry(r.idempotency_key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let change = r.change.unwrap_or_default();
        let _ = self.0.deliveries.send(Delivery {
            key: r.idempotency_key,
            sequence: r.sequence,
            event: change.event,
            attempt,
            report_user: change.report.map(|report| report.user_id),
        });
        if self.0.behaviour.fail_first_delivery && attempt == 1 {
            return Err(Status::unavailable("warming up"));
        }
        Ok(Response::new(ChangeCommittedResponse {}))
    }
}

/// Serves the plugin on `listener`; the receiver gets every delivery.
fn serve_plugin(
    listener: TcpListener,
    behaviour: Behaviour,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::UnboundedReceiver<Delivery>,
) {
    let (deliveries, received) = mpsc::unbounded_channel();
    let plugin = TestPlugin(Arc::new(Shared {
        behaviour,
        attempts: Mutex::new(HashMap::new()),
        deliveries,
    }));
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AdminHookServiceServer::new(plugin))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .expect("plugin server");
    });
    (task, received)
}

async fn plugin_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

fn plugin_config(
    name: &str,
    addr: SocketAddr,
    events: &[&str],
    timeout_ms: u64,
    failure_policy: FailurePolicy,
) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        endpoint: format!("http://{addr}"),
        events: events.iter().map(|e| e.to_string()).collect(),
        timeout_ms,
        failure_policy,
    }
}

/// A call made with `actor`'s token (tests that name actors grant them
/// with `common::grant`); its `x-actor` claims someone else, and is ignored.
fn with_actor<T>(message: T, actor: &str) -> Request<T> {
    let mut request = common::with_token(message, actor);
    request
        .metadata_mut()
        .insert("x-actor", "mallory".parse().unwrap());
    request
}

fn limits_request(max: i32) -> CreateLimitsRequest {
    CreateLimitsRequest {
        portal_id: PORTAL,
        from_object_type: "contacts".into(),
        to_object_type: "companies".into(),
        inputs: vec![LimitInput {
            category: AssociationCategory::HubspotDefined as i32,
            type_id: 279,
            max_to_object_ids: max,
        }],
    }
}

fn update_request(max: i32) -> UpdateLimitsRequest {
    let create = limits_request(max);
    UpdateLimitsRequest {
        portal_id: create.portal_id,
        from_object_type: create.from_object_type,
        to_object_type: create.to_object_type,
        inputs: create.inputs,
    }
}

async fn admin(server: &TestServer) -> AdminConfigClient<tonic::transport::Channel> {
    AdminConfigClient::connect(server.endpoint())
        .await
        .expect("connect")
}

async fn create_limit(
    server: &TestServer,
    max: i32,
    actor: &str,
) -> Result<CreateLimitsResponse, Status> {
    let response = admin(server)
        .await
        .create_limits(with_actor(limits_request(max), actor))
        .await?;
    Ok(response.into_inner())
}

/// The admin limit of contact -> company (unlabeled), if set.
async fn user_limit(server: &TestServer) -> Option<i32> {
    let limits = admin(server)
        .await
        .list_limits(with_actor(
            ListLimitsRequest {
                portal_id: PORTAL,
                from_object_type: "contacts".into(),
                to_object_type: "companies".into(),
            },
            "ops",
        ))
        .await
        .expect("list limits")
        .into_inner();
    limits
        .results
        .iter()
        .find(|l| l.type_id == 279)
        .and_then(|l| l.user_enforced_max_to_object_ids)
}

async fn audit_events(server: &TestServer) -> Vec<ListAuditEventsResponse> {
    let mut stream = admin(server)
        .await
        .list_audit_events(with_actor(
            ListAuditEventsRequest {
                portal_id: PORTAL,
                after_sequence: 0,
            },
            "ops",
        ))
        .await
        .expect("list audit events")
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.expect("audit event") {
        events.push(event);
    }
    events
}

async fn next_delivery(received: &mut mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(PATIENCE, received.recv())
        .await
        .expect("a delivery within the patience bound")
        .expect("the plugin is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_returns_the_plugins_message_and_changes_nothing() {
    let (listener, addr) = plugin_listener().await;
    let message = "limits above 5 need approval from ops";
    let (_plugin, mut received) = serve_plugin(
        listener,
        Behaviour {
            deny_above: Some((5, message)),
            ..Behaviour::default()
        },
    );
    let server = TestServer::start("sqlite", |s| {
        common::grant(s, &["alice", "ops"], &[PORTAL]);
        s.hooks.plugins = vec![plugin_config(
            "policy",
            addr,
            &["LIMITS_CREATED", "LIMITS_UPDATED"],
            2_000,
            FailurePolicy::Closed,
        )];
    })
    .await;

    let refused = create_limit(&server, 10, "alice").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains(message),
        "the admin sees the plugin's message: {}",
        refused.message()
    );
    assert_eq!(user_limit(&server).await, None, "nothing changed");
    assert!(audit_events(&server).await.is_empty(), "nothing to audit");

    // Over REST (the gateway's portal), the same refusal is a 403 with the message.
    let answer = common::http_as(
        server.http_addr,
        "POST",
        "/crm/v4/associations/definitions/configurations/contacts/companies/batch/create",
        Some(r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":279,"maxToObjectIds":9}]}"#),
        Some(&common::token_for("alice")),
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains(message), "{}", answer.body);

    let allowed = create_limit(&server, 3, "alice").await.expect("allowed");
    assert_eq!(allowed.results[0].user_enforced_max_to_object_ids, Some(3));
    let events = audit_events(&server).await;
    assert_eq!(events.len(), 1);
    let change = events[0].change.clone().unwrap();
    assert_eq!(
        (change.actor.as_str(), change.event),
        ("alice", AdminEvent::LimitsCreated as i32)
    );
    assert!(change.before.unwrap().limits.is_empty());
    assert_eq!(change.after.unwrap().limits[0].max_to_object_ids, 3);

    let delivery = next_delivery(&mut received).await;
    assert_eq!(
        (delivery.key.as_str(), delivery.sequence),
        ("7:1", 1),
        "the committed change reaches the plugin"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_usage_report_reaches_the_plugins_registered_for_it() {
    let (listener, addr) = plugin_listener().await;
    let (_plugin, mut received) = serve_plugin(listener, Behaviour::default());
    let server = TestServer::start("sqlite", |s| {
        common::grant(s, &["alice", "ops"], &[PORTAL]);
        s.hooks.plugins = vec![plugin_config(
            "mailer",
            addr,
            &["HIGH_USAGE_REPORT"],
            2_000,
            FailurePolicy::Open,
        )];
    })
    .await;
    create_limit(&server, 1, "alice").await.expect("limit");
    let token = common::token_for("alice");
    let made = common::http_as(
        server.http_addr,
        "POST",
        "/crm/v4/associations/contacts/companies/batch/associate/default",
        Some(r#"{"inputs":[{"from":{"id":"1"},"to":{"id":"2"}}]}"#),
        Some(&token),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let answer = common::http_as(
        server.http_addr,
        "POST",
        "/crm/associations/2026-03/usage/high-usage-report/42",
        None,
        Some(&token),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        (&body["userId"], &body["userEmail"]),
        (&42.into(), &"".into())
    );
    let enqueued = body["enqueueTime"].as_str().expect("enqueueTime");
    assert!(humantime::parse_rfc3339(enqueued).is_ok(), "{enqueued}");

    // The plugin receives the report (and not the limit change, which it
    // did not ask for); an admin reads it over gRPC.
    let delivery = next_delivery(&mut received).await;
    assert_eq!(
        (delivery.event, delivery.report_user, delivery.key.as_str()),
        (AdminEvent::HighUsageReport as i32, Some(42), "7:2")
    );
    let events = audit_events(&server).await;
    let report = events[1]
        .change
        .clone()
        .and_then(|c| c.report)
        .expect("the audit trail keeps the report");
    let at_limit: Vec<(String, i32, u64, Vec<i64>)> = report
        .types
        .iter()
        .map(|t| {
            let def = t.definition.clone().unwrap_or_default();
            (
                def.from_object_type_id,
                def.type_id,
                t.records_at_limit,
                t.at_limit_samples.iter().map(|s| s.object_id).collect(),
            )
        })
        .collect();
    assert_eq!(at_limit, vec![("0-1".to_string(), 279, 1, vec![1])]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_past_its_timeout_follows_its_failure_policy() {
    let (listener, addr) = plugin_listener().await;
    let (_plugin, _received) = serve_plugin(
        listener,
        Behaviour {
            stall: true,
            ..Behaviour::default()
        },
    );
    let server = TestServer::start("sqlite", |s| {
        s.hooks.plugins = vec![
            plugin_config(
                "strict",
                addr,
                &["LIMITS_CREATED"],
                300,
                FailurePolicy::Closed,
            ),
            plugin_config(
                "lenient",
                addr,
                &["LABEL_CREATED"],
                300,
                FailurePolicy::Open,
            ),
        ];
    })
    .await;

    let refused = create_limit(&server, 3, "bob").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("strict"),
        "{}",
        refused.message()
    );
    assert_eq!(
        user_limit(&server).await,
        None,
        "fail closed: nothing changed"
    );

    let label = admin(&server)
        .await
        .create_label(with_actor(
            CreateLabelRequest {
                portal_id: PORTAL,
                from_object_type: "contacts".into(),
                to_object_type: "companies".into(),
                label: "Partner".into(),
                name: "partner".into(),
                inverse_label: None,
            },
            "bob",
        ))
        .await
        .expect("fail open: the label is created")
        .into_inner();
    assert_eq!(label.definitions[0].label.as_deref(), Some("Partner"));
    server.stop().await;
}

/// Changes made while the plugin is down (its port accepts nothing) all
/// arrive once it serves, in order, each under one key, although the plugin
/// fails every first delivery and the service restarts in between; after
/// another restart, acknowledged changes are not sent again.
async fn changes_reach_a_plugin_that_was_down_across_restarts(backend: &str) {
    let (listener, addr) = plugin_listener().await;
    let configure = move |s: &mut Settings| {
        // Long enough for a loaded machine's answers (a timed-out answer is
        // rightly sent again, at least once, which this does not test), short
        // enough that attempts on the silent port end soon.
        common::grant(s, &["ops"], &[]);
        s.hooks.plugins = vec![plugin_config("sink", addr, &[], 1_000, FailurePolicy::Open)];
        s.hooks.retry_initial_ms = 50;
        s.hooks.retry_max_ms = 400;
        s.hooks.poll_interval_ms = 200;
    };
    let server = TestServer::start(backend, configure).await;
    create_limit(&server, 4, "ops").await.expect("create");
    admin(&server)
        .await
        .update_limits(with_actor(update_request(3), "ops"))
        .await
        .expect("update");
    admin(&server)
        .await
        .create_label(with_actor(
            CreateLabelRequest {
                portal_id: PORTAL,
                from_object_type: "contacts".into(),
                to_object_type: "companies".into(),
                label: "Billing".into(),
                name: "billing".into(),
                inverse_label: None,
            },
            "ops",
        ))
        .await
        .expect("label");
    let store = server.stop_keeping_store().await;

    let server = TestServer::start_on(store, configure).await;
    admin(&server)
        .await
        .purge_limits(with_actor(
            PurgeLimitsRequest {
                portal_id: PORTAL,
                from_object_type: "contacts".into(),
                to_object_type: "companies".into(),
                inputs: vec![AssociationType {
                    category: AssociationCategory::HubspotDefined as i32,
                    type_id: 279,
                }],
            },
            "ops",
        ))
        .await
        .expect("purge");

    let (_plugin, mut received) = serve_plugin(
        listener,
        Behaviour {
            fail_first_delivery: true,
            ..Behaviour::default()
        },
    );
    // Every change answered (the plugin answers from the second attempt on);
    // on a loaded machine a change may be tried more often, at least once
    // is the promise.
    let mut deliveries: Vec<Delivery> = Vec::new();
    let answered = |deliveries: &[Delivery], seq: i64| {
        deliveries
            .iter()
            .any(|d| d.sequence == seq && d.attempt >= 2)
    };
    while !(1..=4).all(|seq| answered(&deliveries, seq)) {
        deliveries.push(next_delivery(&mut received).await);
    }
    for d in &deliveries {
        assert_eq!(
            d.key,
            format!("{PORTAL}:{}", d.sequence),
            "one key per change"
        );
    }
    let sequences: Vec<i64> = deliveries.iter().map(|d| d.sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[0] <= w[1]),
        "in order, never ahead of an unacknowledged change: {sequences:?}"
    );
    let mut acknowledged: Vec<(i64, i32)> = deliveries
        .iter()
        .filter(|d| d.attempt >= 2)
        .map(|d| (d.sequence, d.event))
        .collect();
    acknowledged.dedup();
    assert_eq!(
        acknowledged,
        vec![
            (1, AdminEvent::LimitsCreated as i32),
            (2, AdminEvent::LimitsUpdated as i32),
            (3, AdminEvent::LabelCreated as i32),
            (4, AdminEvent::LimitsPurged as i32),
        ]
    );
    let audit: Vec<(i64, String)> = audit_events(&server)
        .await
        .into_iter()
        .map(|e| (e.sequence, e.change.unwrap().actor))
        .collect();
    assert_eq!(
        audit,
        (1..=4).map(|s| (s, "ops".to_string())).collect::<Vec<_>>()
    );
    let store = server.stop_keeping_store().await;

    let server = TestServer::start_on(store, configure).await;
    create_limit(&server, 2, "ops").await.expect("create again");
    let next = next_delivery(&mut received).await;
    assert_eq!(
        (next.key.as_str(), next.attempt),
        ("7:5", 1),
        "acknowledged changes are not sent again after a restart"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_changes_reach_a_plugin_that_was_down_across_restarts() {
    changes_reach_a_plugin_that_was_down_across_restarts("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_reach_a_plugin_that_was_down_across_restarts() {
    changes_reach_a_plugin_that_was_down_across_restarts("postgres").await;
}
