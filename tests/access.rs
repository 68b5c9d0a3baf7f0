//! Who may call what, through the real server with tokens configured: every
//! RPC of the proto's services and every REST endpoint, each tried with no
//! credentials, an unknown token, a token without the role it needs, a
//! token for another portal, the token it needs, and JWTs that are expired,
//! of another issuer or audience, badly signed, of another portal, without
//! the role, or right. The RPCs come from the
//! proto's file descriptor and the endpoints from the gateway's route list,
//! so a new one without an access rule fails here.
mod common;

use association_service::auth::{token_hash, TokenConfig};
use association_service::domain::access::Role;
use association_service::gateway::REST_ROUTES;
use association_service::grpc::auth::{rpc_access, RpcAccess};
use association_service::proto::FILE_DESCRIPTOR_SET;
use common::TestServer;
use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Request};

const PORTAL: i64 = 7;
const OTHER_PORTAL: i64 = 8;

/// (name, portals, roles) of the tokens the server knows; a token's text is
/// `common::token_for(name)`.
const TOKENS: &[(&str, &[i64], &[Role])] = &[
    ("reader", &[PORTAL], &[Role::Read]),
    ("writer", &[PORTAL], &[Role::Write]),
    ("admin", &[PORTAL], &[Role::Admin]),
    (
        "everything",
        &[PORTAL],
        &[Role::Read, Role::Write, Role::Admin],
    ),
    (
        "two-portals",
        &[PORTAL, OTHER_PORTAL],
        &[Role::Read, Role::Write, Role::Admin],
    ),
];

async fn server() -> TestServer {
    TestServer::start("sqlite", |s| {
        common::accept_jwt(s);
        for (name, portals, roles) in TOKENS {
            s.auth.tokens.push(TokenConfig {
                name: name.to_string(),
                sha256: token_hash(&common::token_for(name)),
                portals: portals.to_vec(),
                all_portals: false,
                roles: roles.iter().map(|r| r.name().to_string()).collect(),
            });
        }
    })
    .await
}

/// The token holding only `role`.
fn only(role: Role) -> &'static str {
    match role {
        Role::Read => "reader",
        Role::Write => "writer",
        Role::Admin => "admin",
    }
}

/// A role that is not `role`.
fn without_role(role: Role) -> Role {
    match role {
        Role::Read => Role::Write,
        _ => Role::Read,
    }
}

/// A token that lacks `role`.
fn without(role: Role) -> &'static str {
    only(without_role(role))
}

/// JWTs for the matrix: (case, token, whether a token of the right role
/// and portal would pass, the refusal otherwise).
fn jwt_cases(role: Role, portals: &[i64]) -> Vec<(&'static str, String, bool)> {
    let claims = || common::jwt_claims("jwt-caller", portals, &[role.name()]);
    let mut expired = claims();
    expired["exp"] = serde_json::json!(expired["iat"].as_u64().unwrap() - 60);
    let mut issuer = claims();
    issuer["iss"] = "https://someone-else.test".into();
    let mut audience = claims();
    audience["aud"] = "another-service".into();
    let mut tampered = common::jwt(&claims());
    tampered.insert(tampered.rfind('.').unwrap() + 1, 'A');
    vec![
        ("an expired JWT", common::jwt(&expired), false),
        ("a JWT of another issuer", common::jwt(&issuer), false),
        ("a JWT for another audience", common::jwt(&audience), false),
        ("a JWT with a bad signature", tampered, false),
        ("a JWT with the role", common::jwt(&claims()), true),
    ]
}

/// Any request of this service, as far as access goes: every request names
/// its portal in field 1 (checked against the descriptor below).
#[derive(Clone, PartialEq, Message)]
struct PortalOnly {
    #[prost(int64, tag = "1")]
    portal_id: i64,
}

/// Any answer (its fields are not read).
#[derive(Clone, PartialEq, Message)]
struct Anything {}

/// (case, portal, token, the refusal expected or none).
type RpcCase = (&'static str, i64, Option<String>, Option<Code>);

/// (case, token, the refusal's status and category expected, or none).
type RestCase = (&'static str, Option<String>, Option<(u16, &'static str)>);

struct Rpc {
    path: String,
    client_streaming: bool,
    server_streaming: bool,
}

/// Every RPC of the service's own proto package.
fn rpcs() -> Vec<Rpc> {
    let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor");
    let mut rpcs = Vec::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            for method in &service.method {
                let input = method.input_type().trim_start_matches('.');
                let message = file
                    .message_type
                    .iter()
                    .find(|m| format!("{package}.{}", m.name()) == input)
                    .unwrap_or_else(|| panic!("{input} is defined in its file"));
                let portal = message.field.iter().find(|f| f.name() == "portal_id");
                // Plugin callbacks (AdminHookService) are served by plugins.
                if service.name() == "AdminHookService" {
                    continue;
                }
                assert_eq!(
                    portal.map(|f| f.number()),
                    Some(1),
                    "{input} names its portal in field 1"
                );
                rpcs.push(Rpc {
                    path: format!("/{package}.{}/{}", service.name(), method.name()),
                    client_streaming: method.client_streaming(),
                    server_streaming: method.server_streaming(),
                });
            }
        }
    }
    // Every RPC of the service contract (plugin callbacks are not ours).
    let contract = include_str!("../proto/associations/v1/associations.proto");
    let declared = contract
        .lines()
        .filter(|l| l.trim_start().starts_with("rpc "))
        .count();
    assert_eq!(rpcs.len(), declared, "every RPC found");
    let mut streaming: Vec<&str> = rpcs
        .iter()
        .filter(|r| r.server_streaming)
        .map(|r| r.path.as_str())
        .collect();
    streaming.sort();
    let mut capped = association_service::grpc::streams::STREAM_RPCS.to_vec();
    capped.sort();
    assert_eq!(streaming, capped, "every stream RPC is capped per caller");
    rpcs
}

/// Calls `rpc` on `portal` with `token` (if any): the call's code.
async fn call(server: &TestServer, rpc: &Rpc, portal: i64, token: Option<&str>) -> Code {
    let channel = server.channel().await;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = PathAndQuery::try_from(rpc.path.as_str()).unwrap();
    let codec = tonic_prost::ProstCodec::<PortalOnly, Anything>::default();
    let message = PortalOnly { portal_id: portal };
    let authorize = |metadata: &mut tonic::metadata::MetadataMap| {
        if let Some(token) = token {
            metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
    };
    let result = if rpc.client_streaming {
        let mut request = Request::new(tokio_stream::iter(vec![message]));
        authorize(request.metadata_mut());
        grpc.client_streaming(request, path, codec)
            .await
            .map(|_| ())
    } else if rpc.server_streaming {
        let mut request = Request::new(message);
        authorize(request.metadata_mut());
        match grpc.server_streaming(request, path, codec).await {
            Ok(response) => response.into_inner().message().await.map(|_| ()),
            Err(status) => Err(status),
        }
    } else {
        let mut request = Request::new(message);
        authorize(request.metadata_mut());
        grpc.unary(request, path, codec).await.map(|_| ())
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_needs_its_role_and_its_portal() {
    let server = server().await;
    let refused = [Code::Unauthenticated, Code::PermissionDenied];
    for rpc in rpcs() {
        let role = match rpc_access(&rpc.path) {
            Some(RpcAccess::Role(role)) => role,
            other => panic!("{} has no role rule: {other:?}", rpc.path),
        };
        let token = |name: &str| common::token_for(name);
        let cases: [RpcCase; 6] = [
            ("no credentials", PORTAL, None, Some(Code::Unauthenticated)),
            (
                "an unknown token",
                PORTAL,
                Some("nope".into()),
                Some(Code::Unauthenticated),
            ),
            (
                "a token without the role",
                PORTAL,
                Some(token(without(role))),
                Some(Code::PermissionDenied),
            ),
            (
                "another portal",
                OTHER_PORTAL,
                Some(token("everything")),
                Some(Code::PermissionDenied),
            ),
            ("the role's token", PORTAL, Some(token(only(role))), None),
            ("every role", PORTAL, Some(token("everything")), None),
        ];
        let mut cases = cases.to_vec();
        for (case, jwt, passes) in jwt_cases(role, &[PORTAL]) {
            cases.push((
                case,
                PORTAL,
                Some(jwt),
                (!passes).then_some(Code::Unauthenticated),
            ));
        }
        let other_portal = common::jwt(&common::jwt_claims(
            "jwt-elsewhere",
            &[OTHER_PORTAL],
            &[role.name()],
        ));
        cases.push((
            "a JWT of another portal",
            PORTAL,
            Some(other_portal),
            Some(Code::PermissionDenied),
        ));
        let wrong_role = common::jwt(&common::jwt_claims(
            "jwt-wrong-role",
            &[PORTAL],
            &[without_role(role).name()],
        ));
        cases.push((
            "a JWT without the role",
            PORTAL,
            Some(wrong_role),
            Some(Code::PermissionDenied),
        ));
        // Every credential that may make the call gets the one answer the
        // call itself earns (the same request each time), never a refusal
        // or a failure of the service.
        let mut allowed: Option<(&str, Code)> = None;
        for (case, portal, token, expected) in cases {
            let code = call(&server, &rpc, portal, token.as_deref()).await;
            match expected {
                Some(expected) => assert_eq!(code, expected, "{} with {case}", rpc.path),
                None => {
                    assert!(
                        !refused.contains(&code)
                            && ![Code::Internal, Code::Unknown, Code::Unimplemented]
                                .contains(&code),
                        "{} with {case} was refused: {code:?}",
                        rpc.path
                    );
                    let (first, same) = *allowed.get_or_insert((case, code));
                    assert_eq!(code, same, "{} with {case}, and with {first}", rpc.path);
                }
            }
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_stays_open_for_probes() {
    let server = server().await;
    let channel = server.channel().await;
    let answer = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without credentials");
    assert_eq!(
        answer.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    server.stop().await;
}

/// The policy, stated apart from the route list: the label and limit
/// configuration and the high-usage report need admin (reading labels is a
/// read, like gRPC's ListDefinitions), reads need read, everything else
/// writes.
fn policy(method: &str, pattern: &str) -> Role {
    let reading = method == "GET" || pattern.ends_with("/batch/read");
    let label_change = pattern.contains("/labels") && !pattern.contains("/batch/labels/");
    let admin_only =
        pattern.contains("/definitions/configurations") || pattern.contains("/high-usage-report/");
    if admin_only || (label_change && !reading) {
        Role::Admin
    } else if reading {
        Role::Read
    } else {
        Role::Write
    }
}

#[test]
fn the_route_list_follows_the_policy() {
    for (method, pattern, role) in REST_ROUTES {
        assert_eq!(*role, policy(method, pattern), "{method} {pattern}");
    }
    for (service, role) in [
        ("AssociationRead", Role::Read),
        ("AssociationWrite", Role::Write),
        ("AdminConfig", Role::Admin),
    ] {
        let path = format!("/associations.v1.{service}/AnyMethod");
        assert_eq!(rpc_access(&path), Some(RpcAccess::Role(role)), "{service}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rest_endpoint_needs_its_role_and_one_portal() {
    let server = server().await;
    for (method, pattern, role) in REST_ROUTES {
        let path = common::concrete_path(pattern);
        let body = matches!(*method, "POST" | "PUT").then_some("{}");
        let token = |name: &str| common::token_for(name);
        let cases: [RestCase; 6] = [
            (
                "no credentials",
                None,
                Some((401, "INVALID_AUTHENTICATION")),
            ),
            (
                "an unknown token",
                Some("nope".into()),
                Some((401, "INVALID_AUTHENTICATION")),
            ),
            (
                "a token without the role",
                Some(token(without(*role))),
                Some((403, "MISSING_SCOPES")),
            ),
            (
                "a token of two portals",
                Some(token("two-portals")),
                Some((403, "MISSING_SCOPES")),
            ),
            ("the role's token", Some(token(only(*role))), None),
            ("every role", Some(token("everything")), None),
        ];
        let mut cases = cases.to_vec();
        for (case, jwt, passes) in jwt_cases(*role, &[PORTAL]) {
            cases.push((
                case,
                Some(jwt),
                (!passes).then_some((401, "INVALID_AUTHENTICATION")),
            ));
        }
        // Every credential that may make the call gets the one answer the
        // call itself earns.
        let mut allowed: Option<(&str, u16)> = None;
        for (case, token, expected) in cases {
            let answer =
                common::http_as(server.http_addr, method, &path, body, token.as_deref()).await;
            match expected {
                Some((status, category)) => {
                    assert_eq!(
                        answer.status, status,
                        "{method} {path} with {case}: {}",
                        answer.body
                    );
                    let json: serde_json::Value =
                        serde_json::from_str(&answer.body).expect("a JSON error body");
                    assert_eq!(json["category"], category, "{method} {path} with {case}");
                    assert!(json["correlationId"].is_string(), "{method} {path}: {json}");
                }
                None => {
                    assert!(
                        ![401, 403].contains(&answer.status) && answer.status < 500,
                        "{method} {path} with {case} was refused: {} {}",
                        answer.status,
                        answer.body
                    );
                    let (first, same) = *allowed.get_or_insert((case, answer.status));
                    assert_eq!(
                        answer.status, same,
                        "{method} {path} with {case}, and with {first}: {}",
                        answer.body
                    );
                }
            }
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_names_the_token_not_a_header() {
    let server = server().await;
    let answer = common::http_as(
        server.http_addr,
        "POST",
        "/crm/v4/associations/definitions/configurations/contacts/companies/batch/create",
        Some(r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":279,"maxToObjectIds":9}]}"#),
        Some(&common::token_for("admin")),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let store = common::open(&server.store).await;
    let events = store.audit_events(PORTAL, 0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1.actor, "admin");
    server.stop().await;
}

/// Refusals made before any handler answers in HubSpot's JSON error body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_at_the_edge_are_json() {
    let server = server().await;
    let token = common::token_for("everything");
    let big = format!(r#"{{"inputs":[{}]}}"#, r#"{"id":"1"},"#.repeat(300_000));
    let cases = [
        (
            "POST",
            "/crm/v4/associations/contacts/companies/batch/read".to_string(),
            Some(big),
            413,
        ),
        (
            "GET",
            "/crm/v3/objects/contacts/%FF%FE".to_string(),
            None,
            400,
        ),
        (
            "GET",
            format!(
                "/crm/v3/objects/contacts?associations={}",
                "a".repeat(100_000)
            ),
            None,
            414,
        ),
        (
            "GET",
            "/crm/v3/objects/contacts extra".to_string(),
            None,
            400,
        ),
        ("G\u{1}T", "/crm/v3/objects/contacts".to_string(), None, 400),
    ];
    for (method, path, body, status) in cases {
        let answer = common::http_as(
            server.http_addr,
            method,
            &path,
            body.as_deref(),
            Some(&token),
        )
        .await;
        let path = &path[..path.len().min(80)];
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        let json: serde_json::Value = serde_json::from_str(&answer.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", answer.body));
        assert_eq!(json["status"], "error", "{json}");
        assert!(json["correlationId"].is_string(), "{json}");
        assert!(
            !json["message"].as_str().unwrap_or_default().is_empty(),
            "{json}"
        );
    }
    server.stop().await;
}

/// A client that sends its request slowly is cut off: a request line that
/// does not arrive in time is answered `408` in the JSON error body, and
/// headers that do not arrive in time close the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_are_cut_off() {
    let server = TestServer::start("sqlite", |s| s.gateway.header_read_timeout_ms = 300).await;
    let started = std::time::Instant::now();
    let stream = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    let answer = common::http_over(stream, b"GET /crm/v3/objects/con")
        .await
        .expect("an answer to the partial request line");
    assert_eq!(answer.status, 408, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
    assert!(json["correlationId"].is_string(), "{json}");

    let stream = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    let partial =
        b"GET /crm/v3/associations/contacts/companies/types HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    // hyper closes the connection (with or without a 408 of its own).
    if let Some(answer) = common::http_over(stream, partial).await {
        assert_eq!(answer.status, 408, "{}", answer.body);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "both connections were closed by the header timeout, not held: {:?}",
        started.elapsed()
    );
    // A whole request on a fresh connection is still served.
    let answer = common::http(
        server.http_addr,
        "GET",
        "/crm/v3/associations/contacts/companies/types",
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    server.stop().await;
}

/// A request whose field 1 has the wrong wire type for an int64.
#[derive(Clone, PartialEq, Message)]
struct WrongWireType {
    #[prost(string, tag = "1")]
    portal_id: String,
}

/// A request that is not valid protobuf is the caller's error, with
/// ErrorInfo, not an internal one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_request_is_invalid_argument() {
    use tonic_types::StatusExt;
    let server = server().await;
    let channel = server.channel().await;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = Request::new(WrongWireType {
        portal_id: "seven".into(),
    });
    let bearer = format!("Bearer {}", common::token_for("everything"));
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    let path = PathAndQuery::from_static("/associations.v1.AssociationRead/ListDefinitions");
    let codec = tonic_prost::ProstCodec::<WrongWireType, Anything>::default();
    let status = grpc.unary(request, path, codec).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.get_details_error_info().is_some(),
        "ErrorInfo: {status:?}"
    );
    server.stop().await;
}

/// Tokens from a file of their own (a mounted Secret) work like configured
/// ones; a file that cannot be read or parsed is named in the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_a_mounted_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    let hash = token_hash(&common::token_for("from-file"));
    std::fs::write(
        &path,
        format!("[[tokens]]\nname = \"from-file\"\nsha256 = \"{hash}\"\nportals = [{PORTAL}]\nroles = [\"read\"]\n"),
    )
    .unwrap();
    let file = path.clone();
    let server = TestServer::start("sqlite", move |s| s.auth.tokens_file = Some(file)).await;
    let types = "/crm/v3/associations/contacts/companies/types";
    let token = common::token_for("from-file");
    let answer = common::http_as(server.http_addr, "GET", types, None, Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = common::http_as(server.http_addr, "GET", types, None, None).await;
    assert_eq!(
        answer.status, 401,
        "the file's tokens turn authentication on"
    );
    server.stop().await;

    let mut settings = association_service::config::Settings::load(None).unwrap();
    for (content, what) in [
        (None, "missing"),
        (Some("[[tokens]]\nname = 3\n"), "malformed"),
    ] {
        let broken = dir.path().join(format!("{what}.toml"));
        if let Some(content) = content {
            std::fs::write(&broken, content).unwrap();
        }
        settings.auth.tokens_file = Some(broken.clone());
        let err = association_service::auth::Authenticator::from_settings(&settings.auth)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&broken.display().to_string()), "{what}: {err}");
    }
}

// ------------------------------------------------------------ isolation

/// Each tenant's principal and portal.
const TENANTS: [(&str, i64); 3] = [("tenant-a", 21), ("tenant-b", 22), ("tenant-c", 23)];

/// Several tenants issue random operations, a fifth of them on another
/// tenant's portal. Every cross-portal attempt is refused, and afterwards
/// each portal's export, lists, change feed, audit trail and counters hold
/// only what its own tenant did. `ISOLATION_SEED=n` replays a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_only_ever_see_their_own_portal() {
    use association_service::proto::admin_config_client::AdminConfigClient;
    use association_service::proto::association_read_client::AssociationReadClient;
    use association_service::proto::association_write_client::AssociationWriteClient;
    use association_service::proto::*;
    use std::collections::BTreeSet;

    let (mut rng, seed) = common::Rng::from_env("ISOLATION_SEED");
    eprintln!("isolation: ISOLATION_SEED={seed}");
    let server = TestServer::start("sqlite", |s| {
        for (tenant, portal) in TENANTS {
            s.auth.tokens.push(TokenConfig {
                name: tenant.into(),
                sha256: token_hash(&common::token_for(tenant)),
                portals: vec![portal],
                all_portals: false,
                roles: vec!["read".into(), "write".into(), "admin".into()],
            });
        }
    })
    .await;
    let channel = server.channel().await;
    let mut write = AssociationWriteClient::new(channel.clone());
    let mut read = AssociationReadClient::new(channel.clone());
    let mut admin = AdminConfigClient::new(channel);
    // What each tenant holds: (contact, company) pairs, and every pair it
    // ever created.
    let mut held: Vec<BTreeSet<(i64, i64)>> = vec![BTreeSet::new(); TENANTS.len()];
    let mut ever: Vec<BTreeSet<(i64, i64)>> = vec![BTreeSet::new(); TENANTS.len()];
    let context = |n: usize| format!("ISOLATION_SEED={seed}, operation {n}");
    for n in 0..150 {
        let actor = rng.below(TENANTS.len() as u64) as usize;
        let target = if rng.below(5) == 0 {
            (actor + 1 + rng.below(TENANTS.len() as u64 - 1) as usize) % TENANTS.len()
        } else {
            actor
        };
        let (tenant, _) = TENANTS[actor];
        let portal = TENANTS[target].1;
        let (from_id, to_id) = (1 + rng.below(4) as i64, 100 + rng.below(4) as i64);
        let code = match rng.below(5) {
            0 | 1 => write
                .create_associations(common::with_token(
                    CreateAssociationsRequest {
                        portal_id: portal,
                        from_object_type: "contacts".into(),
                        to_object_type: "companies".into(),
                        inputs: vec![AssociationInput {
                            from_id,
                            to_id,
                            types: vec![],
                        }],
                    },
                    tenant,
                ))
                .await
                .map(|r| {
                    if r.into_inner().errors.is_empty() && target == actor {
                        held[actor].insert((from_id, to_id));
                        ever[actor].insert((from_id, to_id));
                    }
                })
                .err(),
            2 => write
                .archive_associations(common::with_token(
                    ArchiveAssociationsRequest {
                        portal_id: portal,
                        from_object_type: "contacts".into(),
                        to_object_type: "companies".into(),
                        inputs: vec![ArchiveInput {
                            from_id,
                            to_ids: vec![to_id],
                        }],
                    },
                    tenant,
                ))
                .await
                .map(|_| {
                    if target == actor {
                        held[actor].remove(&(from_id, to_id));
                    }
                })
                .err(),
            3 => admin
                .create_limits(common::with_token(
                    CreateLimitsRequest {
                        portal_id: portal,
                        from_object_type: "contacts".into(),
                        to_object_type: "companies".into(),
                        inputs: vec![LimitInput {
                            category: AssociationCategory::HubspotDefined as i32,
                            type_id: 279,
                            max_to_object_ids: 50,
                        }],
                    },
                    tenant,
                ))
                .await
                .map(|_| ())
                .err(),
            _ => read
                .export_associations(common::with_token(
                    ExportAssociationsRequest {
                        portal_id: portal,
                        ..Default::default()
                    },
                    tenant,
                ))
                .await
                .map(|_| ())
                .err(),
        };
        if target != actor {
            assert_eq!(
                code.map(|s| s.code()),
                Some(Code::PermissionDenied),
                "{}: {tenant} reached portal {portal}",
                context(n)
            );
        } else if let Some(status) = code {
            assert!(
                ![Code::PermissionDenied, Code::Unauthenticated].contains(&status.code()),
                "{}: {tenant} was refused its own portal: {status:?}",
                context(n)
            );
        }
    }
    let store = common::open(&server.store).await;
    for (i, (tenant, portal)) in TENANTS.into_iter().enumerate() {
        let context = format!("ISOLATION_SEED={seed}, {tenant}");
        let mut exported = BTreeSet::new();
        let mut stream = read
            .export_associations(common::with_token(
                ExportAssociationsRequest {
                    portal_id: portal,
                    ..Default::default()
                },
                tenant,
            ))
            .await
            .expect("export")
            .into_inner();
        while let Some(chunk) = stream.message().await.expect("chunk") {
            for row in chunk.rows {
                if row.from_object_type_id == "0-1" {
                    exported.insert((row.from_object_id, row.to_object_id));
                }
            }
        }
        assert_eq!(exported, held[i], "{context}: the export");
        for contact in 1..=4 {
            let mut listed = BTreeSet::new();
            let mut stream = read
                .list_associations(common::with_token(
                    ListAssociationsRequest {
                        portal_id: portal,
                        object_type: "contacts".into(),
                        object_id: contact,
                        ..Default::default()
                    },
                    tenant,
                ))
                .await
                .expect("list")
                .into_inner();
            while let Some(chunk) = stream.message().await.expect("chunk") {
                listed.extend(chunk.results.iter().map(|r| (contact, r.to_object_id)));
            }
            let own: BTreeSet<_> = held[i].iter().filter(|p| p.0 == contact).copied().collect();
            assert_eq!(listed, own, "{context}: contact {contact}'s list");
        }
        for change in store.changes_after(portal, 0, 10_000).await.unwrap() {
            let row = change.row;
            let pair = if row.from_type.to_string() == "0-1" {
                (row.from_id, row.to_id)
            } else {
                (row.to_id, row.from_id)
            };
            assert!(
                ever[i].contains(&pair),
                "{context}: a foreign change {change:?}"
            );
        }
        for (_, event) in store.audit_events(portal, 0, 10_000).await.unwrap() {
            assert_eq!(event.actor, tenant, "{context}: the audit trail");
        }
        assert_eq!(
            store.counter_drift(portal).await.unwrap(),
            0,
            "{context}: counters"
        );
    }
    server.stop().await;
}

/// An ES256 key pair made for the test: (private key PEM, public key PEM,
/// the public key as a JWK with `kid`).
fn ec_key(kid: &str) -> (String, String, serde_json::Value) {
    use base64::Engine;
    let pair = rcgen::KeyPair::generate().expect("an EC P-256 key");
    let raw = pair.public_key_raw();
    assert_eq!((raw.len(), raw[0]), (65, 4), "an uncompressed P-256 point");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64(&raw[1..33]), "y": b64(&raw[33..]),
    });
    (pair.serialize_pem(), pair.public_key_pem(), jwk)
}

fn signed(algorithm: jsonwebtoken::Algorithm, kid: Option<&str>, key: &[u8]) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(key),
        _ => EncodingKey::from_ec_pem(key),
    }
    .expect("a signing key");
    let claims = common::jwt_claims("rotating", &[PORTAL], &["read"]);
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

/// Keys and tokens change without a restart: RS256 and ES256 keys from PEM
/// and JWKS files, rotated by rewriting the file; a static token revoked by
/// removing it from the tokens file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_and_tokens_are_revoked_without_a_restart() {
    use jsonwebtoken::Algorithm::{ES256, RS256};
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let tokens = dir.path().join("tokens.toml");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rsa_private = std::fs::read(fixtures.join("jwt-rsa-private.pem")).unwrap();
    let rsa_jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("jwt-rsa-public.jwks.json")).unwrap())
            .unwrap();
    let (old_private, old_public, _) = ec_key("old");
    let (new_private, _, new_jwk) = ec_key("new");
    std::fs::write(&keys, &old_public).unwrap();
    let token_line = |name: &str| {
        format!(
            "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nportals = [{PORTAL}]\nroles = [\"read\"]\n",
            token_hash(&common::token_for(name))
        )
    };
    std::fs::write(&tokens, token_line("kept") + &token_line("revoked")).unwrap();
    let (key_file, tokens_file) = (keys.clone(), tokens.clone());
    let server = TestServer::start("sqlite", move |s| {
        s.auth.reload_interval_ms = 0;
        s.auth.tokens_file = Some(tokens_file);
        s.auth.jwt = Some(association_service::auth::JwtSettings {
            issuer: common::JWT_ISSUER.into(),
            audience: common::JWT_AUDIENCE.into(),
            keys_file: Some(key_file),
            secret_file: None,
            leeway_seconds: 0,
        });
    })
    .await;
    let labels = "/crm/v4/associations/contacts/companies/labels";
    let status = |token: String| {
        let addr = server.http_addr;
        async move {
            common::http_as(addr, "GET", labels, None, Some(&token))
                .await
                .status
        }
    };
    let old_es = signed(ES256, None, old_private.as_bytes());
    let new_es = signed(ES256, Some("new"), new_private.as_bytes());
    let rs = signed(RS256, Some("rsa-1"), &rsa_private);
    assert_eq!(status(old_es.clone()).await, 200, "the PEM key signs");
    assert_eq!(status(new_es.clone()).await, 401, "not configured yet");
    assert_eq!(status(rs.clone()).await, 401, "not configured yet");
    assert_eq!(status(common::token_for("revoked")).await, 200);

    // Rotate: a JWKS of the RSA key and the new EC key replaces the PEM key.
    let mut jwks = rsa_jwks.clone();
    jwks["keys"].as_array_mut().unwrap().push(new_jwk);
    std::fs::write(&keys, serde_json::to_vec(&jwks).unwrap()).unwrap();
    std::fs::write(&tokens, token_line("kept")).unwrap();
    assert_eq!(status(new_es.clone()).await, 200, "the new EC key signs");
    assert_eq!(status(rs.clone()).await, 200, "the RSA key signs");
    assert_eq!(status(old_es).await, 401, "the old key is rotated out");
    assert_eq!(status(common::token_for("kept")).await, 200);
    assert_eq!(
        status(common::token_for("revoked")).await,
        401,
        "removed from the file: revoked"
    );

    // A broken key file keeps the keys in force.
    std::fs::write(&keys, "{ not json").unwrap();
    assert_eq!(status(new_es).await, 200, "the last good keys stay");
    assert_eq!(status(rs).await, 200);
    server.stop().await;
}

/// Reflection answers every caller while on, and is not served when off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_follows_its_setting() {
    let rpc = Rpc {
        path: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".into(),
        client_streaming: true,
        server_streaming: true,
    };
    for on in [true, false] {
        let server = TestServer::start("sqlite", |s| {
            s.server.reflection = on;
            common::grant(s, &["someone"], &[PORTAL]);
        })
        .await;
        let code = call(&server, &rpc, PORTAL, None).await;
        assert_eq!(
            code == Code::Unimplemented,
            !on,
            "reflection {on}: {code:?}"
        );
        assert_ne!(code, Code::Unauthenticated, "reflection needs no token");
        server.stop().await;
    }
}
