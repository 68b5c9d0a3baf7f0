//! The hardening of issue 28, each through the real server or the real
//! authenticator: paging links never built from `Host`, an open service
//! refusing what a web page of another site can send, JWT `nbf` and `crit`,
//! JWT subjects apart from static token names, and an open service on a
//! non-loopback address refused before its store is touched (exit 2).
mod common;

use association_service::auth::{token_hash, Authenticator, TokenConfig};
use association_service::config::Settings;
use association_service::domain::DomainError;
use association_service::proto::association_write_client::AssociationWriteClient;
use common::TestServer;

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
    settings.auth.authenticator().unwrap()
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
