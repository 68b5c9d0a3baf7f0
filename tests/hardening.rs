//! The hardening of issue 28, each through the real server or the real
//! authenticator: paging links never built from `Host`, an open service
//! refusing what a web page of another site can send, JWT `nbf` and `crit`,
//! JWT subjects apart from static token names, an open service on a
//! non-loopback address refused before its store is touched (exit 2),
//! header blocks past their size, streams ended when their JWT expires,
//! and the warning of the default cursor secret.
mod common;

use association_service::auth::{token_hash, Authenticator, TokenConfig};
use association_service::config::Settings;
use association_service::domain::DomainError;
use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{FeedStartPoint, ListDefinitionsRequest, WatchChangesRequest};
use common::TestServer;
use std::time::Duration;
use tokio_stream::StreamExt;

/// Deal 1 with 5 contacts, through gRPC.
async fn deal_with_contacts(server: &TestServer) {
    let mut write = AssociationWriteClient::new(server.channel().await);
    let request = common::deal_with_contacts(1, 1, 1..=5);
    write.create_associations(request).await.unwrap();
}

/// A GET of a first page of 2 with a `Host` the client chose: its
/// `paging.next.link`.
async fn next_link(server: &TestServer, host: &str) -> String {
    let request = format!(
        "GET /crm/v4/objects/deals/1/associations/contacts?limit=2 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let stream = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    let answer = common::http_over(stream, request.as_bytes())
        .await
        .expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    body["paging"]["next"]["link"]
        .as_str()
        .expect("a next link")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_links_never_come_from_the_host_header() {
    let server = TestServer::start("sqlite", |_| {}).await;
    deal_with_contacts(&server).await;
    let link = next_link(&server, "evil.example").await;
    assert!(
        link.starts_with("/crm/v4/objects/0-3/1/associations/0-1?"),
        "{link}"
    );
    server.stop().await;
    let server = TestServer::start("sqlite", |s| {
        s.gateway.public_url = Some("https://crm.example.com/".into());
    })
    .await;
    deal_with_contacts(&server).await;
    let link = next_link(&server, "evil.example").await;
    assert!(
        link.starts_with("https://crm.example.com/crm/v4/objects/0-3/1/associations/0-1?"),
        "{link}"
    );
    server.stop().await;
}

/// A REST call to the open server with extra headers.
async fn call(server: &TestServer, method: &str, headers: &str, body: &str) -> common::HttpAnswer {
    let request = format!(
        "{method} /crm/v4/associations/deals/contacts/batch/read HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let stream = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    common::http_over(stream, request.as_bytes())
        .await
        .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_service_refuses_what_web_pages_of_other_sites_send() {
    let server = TestServer::start("sqlite", |_| {}).await;
    deal_with_contacts(&server).await;
    let body = r#"{"inputs":[{"id":"1"}]}"#;
    let json = "Content-Type: application/json\r\n";
    let cases = [
        // What a page of another site can post without asking first.
        (
            "text/plain",
            "Content-Type: text/plain\r\n".to_string(),
            400,
        ),
        ("no content type", String::new(), 400),
        (
            "another site's Origin",
            format!("{json}Origin: https://evil.example\r\n"),
            403,
        ),
        ("a null Origin", format!("{json}Origin: null\r\n"), 403),
        (
            "a loopback Origin",
            format!("{json}Origin: http://localhost:3000\r\n"),
            200,
        ),
        (
            "an IPv6 loopback Origin",
            format!("{json}Origin: http://[::1]:3000\r\n"),
            200,
        ),
        ("no Origin (curl, clients)", json.to_string(), 200),
    ];
    for (case, headers, expected) in cases {
        let answer = call(&server, "POST", &headers, body).await;
        assert_eq!(answer.status, expected, "{case}: {}", answer.body);
    }
    server.stop().await;
}

fn jwt_authenticator() -> Authenticator {
    let mut settings = Settings::load(None).unwrap();
    common::accept_jwt(&mut settings);
    common::grant(&mut settings, &["sync"], &[7]);
    association_service::auth::Authenticator::from_settings(&settings.auth).unwrap()
}

fn refusal(auth: &Authenticator, token: &str) -> String {
    match auth.authenticate(Some(&format!("Bearer {token}"))) {
        Err(DomainError::Unauthenticated(reason)) => reason,
        other => panic!("refused as unauthenticated: {other:?}"),
    }
}

#[test]
fn jwts_are_checked_for_nbf_and_crit_and_named_apart_from_tokens() {
    let auth = jwt_authenticator();
    // A subject equal to a static token's name is not that token.
    let same_name = common::jwt(&common::jwt_claims("sync", &[7], &["read"]));
    let principal = auth
        .authenticate(Some(&format!("Bearer {same_name}")))
        .unwrap();
    assert_eq!(principal.name, "jwt:sync");
    let token = auth
        .authenticate(Some(&format!("Bearer {}", common::token_for("sync"))))
        .unwrap();
    assert_eq!(token.name, "sync");
    // Not valid before an hour from now.
    let mut later = common::jwt_claims("svc", &[7], &["read"]);
    let now = later["iat"].as_u64().unwrap();
    later["nbf"] = serde_json::json!(now + 3600);
    assert!(refusal(&auth, &common::jwt(&later)).contains("not valid yet"));
    // A critical header extension nobody here understands.
    let claims = common::jwt_claims("svc", &[7], &["read"]);
    let plain = common::jwt(&claims);
    let (_, rest) = plain.split_once('.').unwrap();
    use base64::Engine;
    let crit = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#);
    // The signature no longer matches either; the crit check comes first.
    assert!(refusal(&auth, &format!("{crit}.{rest}")).contains("crit"));
    // Static token names may not take the JWT namespace.
    let squatter = TokenConfig {
        name: "jwt:svc".into(),
        sha256: token_hash("squatter"),
        portals: vec![7],
        all_portals: false,
        roles: vec!["read".into()],
    };
    let err = Authenticator::from_config(&[squatter]).unwrap_err();
    assert!(err.contains("jwt:"), "{err}");
}

#[test]
fn an_open_service_on_a_public_address_exits_2_before_touching_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_association-service"))
        .arg("serve")
        .env("ASSOC__STORE__URL", format!("sqlite://{}", db.display()))
        .env("ASSOC__SERVER__GRPC_ADDR", "0.0.0.0:0")
        .env("ASSOC__GATEWAY__HTTP_ADDR", "127.0.0.1:0")
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("without authentication"), "{stderr}");
    assert!(!db.exists(), "the store was created: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_past_the_configured_size_are_refused() {
    let server = TestServer::start("sqlite", |s| s.server.max_header_bytes = 4_096).await;
    let mut read = AssociationReadClient::new(server.channel().await);
    let call = |padding: usize| {
        let mut request = tonic::Request::new(ListDefinitionsRequest {
            portal_id: 1,
            from_object_type: "deals".into(),
            to_object_type: "contacts".into(),
        });
        request
            .metadata_mut()
            .insert("x-padding", "p".repeat(padding).parse().unwrap());
        request
    };
    read.list_definitions(call(1_000))
        .await
        .expect("headers within the size are served");
    let refused = read
        .list_definitions(call(8_000))
        .await
        .expect_err("headers past the size are refused");
    // HTTP/2 answers 431 (request header fields too large), which gRPC
    // clients see as UNKNOWN.
    assert_eq!(refused.code(), tonic::Code::Unknown, "{refused:?}");
    assert!(refused.message().contains("431"), "{refused:?}");
    // The connection serves its next call.
    read.list_definitions(call(1_000))
        .await
        .expect("the next call is served");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_ends_when_its_jwt_expires() {
    let server = TestServer::start("sqlite", |s| {
        common::accept_jwt(s);
        s.auth.reload_interval_ms = 200;
    })
    .await;
    let channel = server.channel().await;
    let bearer = |claims: &serde_json::Value| format!("Bearer {}", common::jwt(claims));
    let watch = |token: String| {
        let mut request = tonic::Request::new(WatchChangesRequest {
            portal_id: 1,
            cursor: String::new(),
            start: FeedStartPoint::Now as i32,
            stop_at_head: false,
        });
        request
            .metadata_mut()
            .insert("authorization", token.parse().unwrap());
        request
    };
    let mut expiring = common::jwt_claims("svc", &[1], &["read", "write"]);
    let now = expiring["iat"].as_u64().unwrap();
    expiring["exp"] = serde_json::json!(now + 2);
    let lasting = common::jwt_claims("svc", &[1], &["read", "write"]);
    let mut read = AssociationReadClient::new(channel.clone());
    let short = read
        .watch_changes(watch(bearer(&expiring)))
        .await
        .expect("a feed while the JWT holds")
        .into_inner();
    let mut long = read
        .watch_changes(watch(bearer(&lasting)))
        .await
        .expect("a feed")
        .into_inner();
    let status = common::stream_end(short, Duration::from_secs(6))
        .await
        .expect("the expired JWT's stream ends with a status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let expired_at = std::time::UNIX_EPOCH + Duration::from_secs(now + 2);
    assert!(
        std::time::SystemTime::now() >= expired_at,
        "it ended before the JWT expired"
    );
    // The stream of a JWT that still holds goes on: it sees the next change.
    let mut write = AssociationWriteClient::new(channel);
    let mut request = tonic::Request::new(common::deal_with_contacts(1, 1, 1..=1));
    request
        .metadata_mut()
        .insert("authorization", bearer(&lasting).parse().unwrap());
    write.create_associations(request).await.unwrap();
    let changes = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let message = long
                .next()
                .await
                .expect("the lasting stream is open")
                .expect("a message");
            if !message.changes.is_empty() {
                return message.changes.len();
            }
        }
    })
    .await
    .expect("the lasting stream sees the change");
    // One change for each direction of the association.
    assert_eq!(changes, 2);
    server.stop().await;
}

/// The server's log lines when started with `config` on a fresh SQLite file.
/// A tokens file in `dir` granting `sync` read on portal 1.
fn sync_tokens_file(dir: &std::path::Path) -> std::path::PathBuf {
    let tokens = dir.join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\nname = \"sync\"\nsha256 = \"{}\"\nportals = [1]\nroles = [\"read\"]\n",
            token_hash(&common::token_for("sync"))
        ),
    )
    .unwrap();
    tokens
}

async fn startup_log(config: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let url = format!("sqlite://{}/store.db", dir.path().display());
    let path = path.display().to_string();
    let server = common::ServerProcess::start(&url, &[("ASSOC_CONFIG", path.as_str())]).await;
    let log = server.log.lock().unwrap().clone();
    drop(server);
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_cursor_secret_is_warned_of_when_authentication_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = sync_tokens_file(dir.path());
    let auth = format!("[auth]\ntokens_file = \"{}\"\n", tokens.display());
    let warned = |log: &[String]| {
        log.iter()
            .any(|l| l.contains("read.cursor_secret is the public default"))
    };
    let log = startup_log(&auth).await;
    assert!(warned(&log), "tokens and the default secret: {log:?}");
    let own = format!("{auth}[read]\ncursor_secret = \"a secret of this deployment\"\n");
    let log = startup_log(&own).await;
    assert!(!warned(&log), "tokens and a secret of its own: {log:?}");
    let log = startup_log("").await;
    assert!(!warned(&log), "open, on loopback: {log:?}");
}

/// The ready line says whether authentication is on and which plugins are
/// registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ready_line_says_whether_authentication_is_on_and_which_plugins_run() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = sync_tokens_file(dir.path());
    let ready = |log: &[String]| {
        log.iter()
            .find_map(|l| {
                l.split("association-service ready: ")
                    .nth(1)
                    .map(str::to_string)
            })
            .expect("a ready line")
    };
    let secured = format!(
        "[auth]\ntokens_file = \"{}\"\n[read]\ncursor_secret = \"a secret of this deployment\"\n\
         [[hooks.plugins]]\nname = \"mailer\"\nendpoint = \"http://127.0.0.1:9\"\n",
        tokens.display()
    );
    let line = ready(&startup_log(&secured).await);
    assert!(line.contains(" auth=on plugins=audit,mailer "), "{line}");
    let line = ready(&startup_log("").await);
    assert!(line.contains(" auth=off plugins=audit "), "{line}");
}

/// A refused gRPC call is logged once, with the correlationId its
/// ErrorInfo carries (as REST refusals are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_grpc_call_is_logged_with_its_correlation_id() {
    use tonic_types::StatusExt;
    let dir = tempfile::tempdir().unwrap();
    let tokens = sync_tokens_file(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\ntokens_file = \"{}\"\n[read]\ncursor_secret = \"a secret of this deployment\"\n",
            tokens.display()
        ),
    )
    .unwrap();
    let url = format!("sqlite://{}/store.db", dir.path().display());
    let config = config.display().to_string();
    let server = common::ServerProcess::start(&url, &[("ASSOC_CONFIG", config.as_str())]).await;
    let channel = tonic::transport::Endpoint::from_shared(server.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = AssociationReadClient::new(channel)
        .list_definitions(ListDefinitionsRequest {
            portal_id: 1,
            from_object_type: "contacts".into(),
            to_object_type: "companies".into(),
        })
        .await
        .expect_err("no token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let correlation_id = status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get("correlationId").cloned())
        .expect("a correlationId in ErrorInfo");
    // The log line is written before the answer leaves; wait for the
    // child's stderr to be read, boundedly.
    let logged = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let found: Vec<String> = server
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(&correlation_id))
                .cloned()
                .collect();
            if !found.is_empty() {
                return found;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the refusal is logged");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0].contains("gRPC call refused") && logged[0].contains("Unauthenticated"),
        "{logged:?}"
    );
}
