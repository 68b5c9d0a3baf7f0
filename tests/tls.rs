//! TLS and mTLS on both ports with certificates the test makes (rcgen): gRPC
//! through tonic's client and REST through a rustls client, client
//! certificates required once a client CA is configured, and a replaced
//! certificate served to new connections without a restart.
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use association_service::listen::TlsSettings;
use common::TestServer;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls;

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for localhost and 127.0.0.1, or a client one.
    fn issue(&self, name: &str, server: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Writes the server's files into `dir`: (cert, key).
fn write_server(dir: &Path, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert, &leaf.cert).unwrap();
    std::fs::write(&key, &leaf.key).unwrap();
    (cert, key)
}

async fn tls_server(cert: PathBuf, key: PathBuf, client_ca: Option<PathBuf>) -> TestServer {
    TestServer::start("sqlite", move |s| {
        s.tls = Some(TlsSettings {
            cert_file: cert,
            key_file: key,
            client_ca_file: client_ca,
            reload_interval_ms: 0,
            handshake_timeout_ms: 5_000,
        });
    })
    .await
}

/// A gRPC health check over TLS trusting `ca`, with a client certificate
/// if given.
async fn grpc_health(
    server: &TestServer,
    ca: &str,
    identity: Option<&Leaf>,
) -> Result<i32, String> {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    let channel = Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let answer = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .map_err(|e| format!("check: {e:?}"))?;
    Ok(answer.into_inner().status)
}

/// A REST GET over TLS trusting `ca`: the answer and the certificate the
/// server showed, or why it failed.
async fn rest_get(
    server: &TestServer,
    ca: &str,
    identity: Option<&Leaf>,
) -> Result<(common::HttpAnswer, Vec<u8>), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let shown = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let request = "GET /crm/v3/associations/contacts/companies/types HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((
        common::HttpAnswer {
            status,
            headers: Vec::new(),
            body,
        },
        shown,
    ))
}

const SERVING: i32 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ports_speak_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = write_server(dir.path(), &ca.issue("server", true));
    let server = tls_server(cert, key, None).await;
    assert_eq!(grpc_health(&server, &ca.pem(), None).await, Ok(SERVING));
    let (answer, _) = rest_get(&server, &ca.pem(), None).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A client that trusts another CA refuses the server.
    let stranger = Ca::new("another CA");
    // The client refuses the server's certificate: its issuer is unknown.
    let grpc = grpc_health(&server, &stranger.pem(), None).await;
    assert!(
        grpc.as_ref()
            .is_err_and(|e| e.contains("InvalidCertificate(UnknownIssuer)")),
        "{grpc:?}"
    );
    let rest = rest_get(&server, &stranger.pem(), None).await.map(|_| ());
    assert_eq!(
        rest,
        Err("handshake: invalid peer certificate: UnknownIssuer".to_string())
    );
    // Plain HTTP on the TLS port gets no HTTP answer (at most a TLS alert).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut plain = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw).await;
    assert!(
        !raw.starts_with(b"HTTP/"),
        "a plain request is not served over TLS: {:?}",
        String::from_utf8_lossy(&raw)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_its_clients_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = write_server(dir.path(), &ca.issue("server", true));
    let client_ca = Ca::new("client CA");
    let client_ca_file = dir.path().join("clients.pem");
    std::fs::write(&client_ca_file, client_ca.pem()).unwrap();
    let server = tls_server(cert, key, Some(client_ca_file)).await;
    let client = client_ca.issue("crm-sync", false);
    let outsider = Ca::new("outsider CA").issue("outsider", false);

    assert_eq!(
        grpc_health(&server, &ca.pem(), Some(&client)).await,
        Ok(SERVING)
    );
    let (answer, _) = rest_get(&server, &ca.pem(), Some(&client)).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The server refuses the client with the TLS alert that says why.
    for (who, identity, alert) in [
        ("no certificate", None, "CertificateRequired"),
        ("another CA's", Some(&outsider), "UnknownCA"),
    ] {
        let refused = format!("received fatal alert: {alert}");
        // gRPC's client may still be writing its request when the alert
        // arrives, and then sees the connection closed instead (a broken
        // pipe, or hyper cancelling the request on the closed connection):
        // a failed transport either way, never an answer. The REST client
        // below reads the alert itself.
        let grpc = grpc_health(&server, &ca.pem(), identity).await;
        assert!(
            grpc.as_ref().is_err_and(|e| e.starts_with("check: ")
                && ((e.contains("transport error")
                    && (e.contains(&refused) || e.contains("kind: BrokenPipe")))
                    || e.contains(r#"Transport, hyper::Error(Canceled, "connection closed")"#))),
            "gRPC with {who}: {grpc:?}"
        );
        let rest = rest_get(&server, &ca.pem(), identity)
            .await
            .map(|(a, _)| a.status);
        assert_eq!(rest, Err(format!("read: {refused}")), "REST with {who}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let first = ca.issue("first", true);
    let (cert, key) = write_server(dir.path(), &first);
    let server = tls_server(cert, key, None).await;
    let der = |pem: &str| {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    let (_, shown) = rest_get(&server, &ca.pem(), None).await.unwrap();
    assert_eq!(shown, der(&first.cert));

    let second = ca.issue("second", true);
    write_server(dir.path(), &second);
    let (answer, shown) = rest_get(&server, &ca.pem(), None).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        shown,
        der(&second.cert),
        "new connections get the new certificate"
    );
    assert_eq!(grpc_health(&server, &ca.pem(), None).await, Ok(SERVING));

    // A key that does not match the certificate keeps the last good pair.
    std::fs::write(dir.path().join("server.key"), ca.issue("x", true).key).unwrap();
    let (_, shown) = rest_get(&server, &ca.pem(), None).await.unwrap();
    assert_eq!(shown, der(&second.cert));
    server.stop().await;
}
