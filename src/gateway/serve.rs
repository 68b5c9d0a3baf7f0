//! Serves REST connections: HTTP/1.1 by hyper with a header read timeout,
//! after a check of each connection's first request line, so a line that is
//! too long (414), malformed (400) or too slow to arrive (408) is answered
//! in HubSpot's JSON error body rather than hyper's empty one.
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_stream::StreamExt;

use super::error::GatewayError;
use crate::listen::EdgeStream;

/// Bounds on what a client may send before it is served.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Time for a request's line and headers to arrive.
    pub header_read_timeout: Duration,
    /// Longest request line (method, target, version).
    pub max_request_line: usize,
}

/// Serves every connection of `incoming` with `router` until `shutdown`
/// resolves; then stops accepting, lets in-flight requests finish and
/// returns once every connection is closed.
pub async fn serve(
    mut incoming: impl tokio_stream::Stream<Item = io::Result<EdgeStream>> + Unpin,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(stream)) => stream,
                Some(Err(err)) => {
                    tracing::debug!("REST connection failed before serving: {err}");
                    continue;
                }
                None => break,
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(stream, router.clone(), limits, stopping.clone()));
    }
    drop(incoming);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

async fn connection(
    mut stream: EdgeStream,
    router: Router,
    limits: HttpLimits,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let prefix = match first_line(&mut stream, limits).await {
        Ok(prefix) => prefix,
        Err(None) => return,
        Err(Some((status, message))) => {
            refuse(&mut stream, status, message).await;
            return;
        }
    };
    // Callers without credentials are told apart by their address.
    let peer = super::PeerAddr(stream.peer().map(|a| a.ip()));
    let io = TokioIo::new(Rewind {
        prefix,
        read: 0,
        inner: stream,
    });
    let service = tower::ServiceBuilder::new()
        .map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(peer);
                request
            },
        )
        .service(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    let outcome = tokio::select! {
        outcome = conn.as_mut() => outcome,
        () = async { let _ = stopping.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = outcome {
        tracing::debug!("REST connection ended: {err}");
    }
}

/// Reads up to the end of the first request line: the bytes read (to be
/// served), or the refusal to answer instead (none: the client left).
async fn first_line(
    stream: &mut EdgeStream,
    limits: HttpLimits,
) -> Result<Vec<u8>, Option<(StatusCode, &'static str)>> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            // Empty lines before a request are allowed (RFC 9112 2.2).
            let start = buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            if let Some(end) = buf[start..].iter().position(|&b| b == b'\n') {
                return Ok((start, start + end));
            }
            if buf.len() - start > limits.max_request_line {
                return Err(Some((
                    StatusCode::URI_TOO_LONG,
                    "the request line is too long",
                )));
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let (start, end) = match tokio::time::timeout(limits.header_read_timeout, read).await {
        Ok(found) => found?,
        Err(_) if buf.is_empty() => return Err(None),
        Err(_) => {
            return Err(Some((
                StatusCode::REQUEST_TIMEOUT,
                "the request did not arrive in time",
            )))
        }
    };
    let line = &buf[start..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > limits.max_request_line {
        return Err(Some((
            StatusCode::URI_TOO_LONG,
            "the request line is too long",
        )));
    }
    if !well_formed(line) {
        return Err(Some((
            StatusCode::BAD_REQUEST,
            "the request line is not 'METHOD /path HTTP/1.1'",
        )));
    }
    Ok(buf)
}

/// `METHOD SP request-target SP HTTP/1.x`, the method a token and the target
/// a URI hyper accepts.
fn well_formed(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    !method.is_empty()
        && method.len() <= 32
        && method.iter().all(token)
        // The URI parser hyper itself uses.
        && axum::http::Uri::try_from(target).is_ok()
        && matches!(version, b"HTTP/1.1" | b"HTTP/1.0")
}

/// Answers `status` with HubSpot's JSON error body and closes.
async fn refuse(stream: &mut EdgeStream, status: StatusCode, message: &str) {
    let response = GatewayError::Refused {
        status,
        message: message.to_string(),
    }
    .into_response();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    let mut answer = head.into_bytes();
    answer.extend_from_slice(&body);
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}

/// A stream whose first bytes were already read: they are read again first.
struct Rewind {
    prefix: Vec<u8>,
    read: usize,
    inner: EdgeStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.read);
            buf.put_slice(&this.prefix[this.read..this.read + n]);
            this.read += n;
            if this.read == this.prefix.len() {
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The gateway's HTTP limits from its settings.
impl crate::config::GatewaySettings {
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            max_request_line: self.max_request_line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::well_formed;

    #[test]
    fn request_lines() {
        for good in [
            &b"GET /crm/v3/objects/contacts HTTP/1.1"[..],
            b"POST /x?y=%20 HTTP/1.0",
        ] {
            assert!(well_formed(good), "{}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b""[..],
            b"GET",
            b"GET /x",
            b"GET /x HTTP/2.0",
            b"GET  /x HTTP/1.1",
            b"GET /x y HTTP/1.1",
            b"G\x00T /x HTTP/1.1",
            b"GET /\x01 HTTP/1.1",
            b"\xff\xfe /x HTTP/1.1",
            b"GET /crm/`x HTTP/1.1",
        ] {
            assert!(!well_formed(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
