//! Accepting connections for both front ends: TCP without Nagle delay, then
//! TLS when configured (client certificates required when a client CA is
//! given: mTLS), with certificate files read again when they change and
//! each handshake bounded by a timeout so a silent client holds nothing;
//! a connection with no call in flight for the idle timeout is closed.
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_rustls::rustls;
use tokio_stream::wrappers::ReceiverStream;

use crate::reload::{Loader, Reloading};

/// TLS for both ports (TOML `[tls]`).
#[derive(Clone, Debug, Deserialize)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// With it, clients must present a certificate this CA (PEM) signed.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are looked at for changes.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
    /// How long a client may take to finish its handshake.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

fn default_reload_interval_ms() -> u64 {
    5_000
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

/// What each port speaks over TLS (ALPN).
#[derive(Clone, Copy, Debug)]
pub enum Protocol {
    Grpc,
    Http1,
}

/// Turns accepted TCP connections into the streams a front end serves.
#[derive(Clone)]
pub struct Acceptor {
    tls: Option<Arc<TlsState>>,
    /// Close a connection with no call in flight for this long.
    idle_timeout: Option<Duration>,
}

struct TlsState {
    config: Reloading<rustls::ServerConfig>,
    handshake_timeout: Duration,
}

impl Acceptor {
    /// Plain TCP.
    pub fn plain() -> Acceptor {
        Acceptor {
            tls: None,
            idle_timeout: None,
        }
    }

    /// Connections with no call in flight for `timeout` are closed (the
    /// front end counts calls with `PeerInfo::activity`).
    pub fn with_idle_timeout(self, timeout: Duration) -> Acceptor {
        Acceptor {
            idle_timeout: Some(timeout),
            ..self
        }
    }

    /// TLS from `settings` (files read and checked now; an error names the
    /// file and the reason).
    pub fn tls(settings: &TlsSettings, protocol: Protocol) -> Result<Acceptor, String> {
        let mut paths = vec![settings.cert_file.clone(), settings.key_file.clone()];
        paths.extend(settings.client_ca_file.clone());
        let load: Loader<rustls::ServerConfig> =
            Box::new(move |files| server_config(files, protocol));
        let config = Reloading::new(
            paths,
            Duration::from_millis(settings.reload_interval_ms),
            load,
        )
        .map_err(|e| format!("tls: {e}"))?;
        Ok(Acceptor {
            tls: Some(Arc::new(TlsState {
                config,
                handshake_timeout: Duration::from_millis(settings.handshake_timeout_ms),
            })),
            idle_timeout: None,
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Accepts from `listener` until the returned stream is dropped; each
    /// connection is handed over once its handshake is done (failed or slow
    /// handshakes are dropped and logged at debug level).
    pub fn incoming(self, listener: TcpListener) -> ReceiverStream<io::Result<EdgeStream>> {
        let (ready, incoming) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => {
                            // Out of file descriptors and the like: pause, go on.
                            tracing::warn!("accept failed: {err}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = ready.closed() => return,
                };
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY: {err}");
                }
                let idle_timeout = self.idle_timeout;
                let Some(tls) = &self.tls else {
                    let stream = EdgeStream::new(EdgeIo::Plain(tcp), Some(peer), idle_timeout);
                    if ready.send(Ok(stream)).await.is_err() {
                        return;
                    }
                    continue;
                };
                let (tls, ready) = (Arc::clone(tls), ready.clone());
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.current());
                    match tokio::time::timeout(tls.handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let io = EdgeIo::Tls(Box::new(stream));
                            let stream = EdgeStream::new(io, Some(peer), idle_timeout);
                            let _ = ready.send(Ok(stream)).await;
                        }
                        Ok(Err(err)) => tracing::debug!(%peer, "TLS handshake failed: {err}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(incoming)
    }
}

/// The rustls configuration of the files (cert chain, key, client CA).
fn server_config(files: &[Vec<u8>], protocol: Protocol) -> Result<rustls::ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files[0])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cert_file: {e}"))?;
    if chain.is_empty() {
        return Err("cert_file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&files[1]).map_err(|e| format!("key_file: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match files.get(2) {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| format!("client_ca_file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("client_ca_file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("client_ca_file holds no certificate".into());
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("cert_file and key_file: {e}"))?;
    config.alpn_protocols = match protocol {
        Protocol::Grpc => vec![b"h2".to_vec()],
        Protocol::Http1 => vec![b"http/1.1".to_vec()],
    };
    Ok(config)
}

/// An accepted connection's transport, plain or TLS.
pub enum EdgeIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection: its transport, its peer, the calls in flight on
/// it, and the idle timer that closes it (reads end) once it has had no
/// call in flight for the idle timeout.
pub struct EdgeStream {
    io: EdgeIo,
    info: PeerInfo,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
}

/// What a front end knows of a call's connection (tonic puts it in each
/// request's extensions).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote: Option<SocketAddr>,
    pub activity: Arc<Activity>,
}

/// The calls in flight on one connection.
#[derive(Debug)]
pub struct Activity {
    calls: AtomicUsize,
    /// When the connection last had no call in flight.
    quiet_since: Mutex<Instant>,
}

/// One call in flight on a connection, counted until dropped.
pub struct ActiveCall(Arc<Activity>);

impl Activity {
    fn new() -> Activity {
        Activity {
            calls: AtomicUsize::new(0),
            quiet_since: Mutex::new(Instant::now()),
        }
    }

    /// Counts a call until the returned guard drops.
    pub fn begin(self: &Arc<Activity>) -> ActiveCall {
        self.calls.fetch_add(1, Ordering::SeqCst);
        ActiveCall(Arc::clone(self))
    }

    /// When the connection has had no call in flight since, if it has none.
    fn quiet_since(&self) -> Option<Instant> {
        let since = *self.quiet_since.lock().unwrap_or_else(|e| e.into_inner());
        (self.calls.load(Ordering::SeqCst) == 0).then_some(since)
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        let mut since = self.0.quiet_since.lock().unwrap_or_else(|e| e.into_inner());
        *since = Instant::now();
        self.0.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EdgeStream {
    fn new(io: EdgeIo, remote: Option<SocketAddr>, idle_timeout: Option<Duration>) -> EdgeStream {
        EdgeStream {
            io,
            info: PeerInfo {
                remote,
                activity: Arc::new(Activity::new()),
            },
            idle: idle_timeout.map(|t| (t, Box::pin(tokio::time::sleep(t)))),
        }
    }

    fn tcp(&self) -> &TcpStream {
        match &self.io {
            EdgeIo::Plain(tcp) => tcp,
            EdgeIo::Tls(tls) => tls.get_ref().0,
        }
    }

    /// The peer's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.info.remote
    }

    /// Whether the connection has been idle past its timeout (registers
    /// for the next look otherwise).
    fn idle_past(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((timeout, timer)) = &mut self.idle else {
            return false;
        };
        while timer.as_mut().poll(cx).is_ready() {
            let next = match self.info.activity.quiet_since() {
                Some(since) if since.elapsed() >= *timeout => return true,
                Some(since) => since + *timeout,
                None => Instant::now() + *timeout,
            };
            timer.as_mut().reset(tokio::time::Instant::from_std(next));
        }
        false
    }
}

impl tonic::transport::server::Connected for EdgeStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        let mut info = self.info.clone();
        info.remote = info.remote.or_else(|| self.tcp().peer_addr().ok());
        info
    }
}

impl AsyncRead for EdgeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.idle_past(cx) {
            // The end of the stream: the server closes the connection.
            return Poll::Ready(Ok(()));
        }
        match &mut this.io {
            EdgeIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            EdgeIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for EdgeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            EdgeIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            EdgeIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            EdgeIo::Plain(s) => Pin::new(s).poll_flush(cx),
            EdgeIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            EdgeIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            EdgeIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
