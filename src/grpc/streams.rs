//! The bodies of guarded calls: caps the streams each principal holds open
//! at once (beside the service's cap per portal; a stream RPC takes a place
//! when it starts and gives it back when its response body ends or the
//! client goes away), ends a stream whose credentials stop holding, and
//! bounds the time a request body may take to arrive.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use tonic::Status;

use crate::auth::Authenticator;
use crate::domain::DomainError;
use crate::listen::ActiveCall;
use crate::service::Places;

/// Every server-streaming RPC (the access test checks this against the proto).
pub const STREAM_RPCS: &[&str] = &[
    "/associations.v1.AssociationRead/ListAssociations",
    "/associations.v1.AssociationRead/BatchListAssociations",
    "/associations.v1.AssociationRead/ExportAssociations",
    "/associations.v1.AssociationRead/WatchChanges",
    "/associations.v1.AdminConfig/ListAuditEvents",
    "/associations.v1.AdminConfig/ListRecordsNearLimit",
    "/associations.v1.AssociationWrite/ImportAssociationBatches",
];

/// The places of each principal's open streams.
pub struct StreamCaps {
    principals: Places<String>,
}

/// One open stream's place, given back when dropped.
pub struct StreamPlace(#[allow(dead_code)] OwnedSemaphorePermit);

impl StreamCaps {
    pub fn new(per_principal: usize) -> StreamCaps {
        StreamCaps {
            principals: Places::new(per_principal),
        }
    }

    /// A place for a call on `path` by `principal`: none needed when the
    /// RPC does not stream, refused when the principal's places are taken.
    pub fn take(&self, principal: &str, path: &str) -> Result<Option<StreamPlace>, DomainError> {
        if !STREAM_RPCS.contains(&path) {
            return Ok(None);
        }
        match self.principals.take(principal.to_string()) {
            Some(permit) => Ok(Some(StreamPlace(permit))),
            None => Err(DomainError::TooManyStreamsForCaller {
                name: principal.to_string(),
                limit: self.principals.per_key() as u32,
            }),
        }
    }
}

/// A stream's credentials, checked again every `every`: once they no
/// longer prove a principal (a static token removed, a JWT expired), the
/// stream ends with `UNAUTHENTICATED`.
pub struct Recheck {
    authenticator: Arc<Authenticator>,
    authorization: Option<String>,
    timer: Pin<Box<Sleep>>,
    every: Duration,
}

impl Recheck {
    pub fn new(
        authenticator: Arc<Authenticator>,
        authorization: Option<String>,
        every: Duration,
    ) -> Recheck {
        Recheck {
            authenticator,
            authorization,
            timer: Box::pin(tokio::time::sleep(every)),
            every,
        }
    }

    /// Why the stream must end now, once a check fails (registers for the
    /// next check otherwise).
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Option<DomainError> {
        while self.timer.as_mut().poll(cx).is_ready() {
            if let Err(err) = self
                .authenticator
                .authenticate(self.authorization.as_deref())
            {
                return Some(err);
            }
            let next = tokio::time::Instant::now() + self.every;
            self.timer.as_mut().reset(next);
        }
        None
    }
}

/// A stream's response body: holds its stream's place until it is dropped,
/// and ends the stream with `UNAUTHENTICATED` once its credentials do not
/// hold any more.
pub struct HeldBody {
    pub inner: tonic::body::Body,
    pub _place: Option<StreamPlace>,
    pub recheck: Option<Recheck>,
    /// The call, counted on its connection until its answer ends.
    pub _active: Option<ActiveCall>,
}

impl http_body::Body for HeldBody {
    type Data = <tonic::body::Body as http_body::Body>::Data;
    type Error = <tonic::body::Body as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(recheck) = &mut this.recheck {
            if let Some(err) = recheck.poll_refusal(cx) {
                this.recheck = None;
                crate::telemetry::refused("credentials_ended");
                // The status as the stream's trailers; the body ends there.
                let answer = Status::from(err).into_http::<tonic::body::Body>();
                let mut trailers = tonic::codegen::http::HeaderMap::new();
                for (name, value) in answer.headers() {
                    if name.as_str().starts_with("grpc-") {
                        trailers.insert(name.clone(), value.clone());
                    }
                }
                this.inner = tonic::body::Body::empty();
                return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
            }
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that must arrive in time: whole within `timeout` of the
/// call's start, or, for a client stream, each part within `timeout` of the
/// one before. Past it the call fails `RequestTooSlow`, so a client that
/// never sends its body holds its call's place no longer than that.
pub struct Arriving {
    inner: tonic::body::Body,
    timer: Pin<Box<Sleep>>,
    timeout: Duration,
    /// Each part restarts the timer (client streams).
    per_part: bool,
    done: bool,
}

impl Arriving {
    pub fn new(inner: tonic::body::Body, timeout: Duration, per_part: bool) -> Arriving {
        Arriving {
            inner,
            timer: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            per_part,
            done: false,
        }
    }
}

impl http_body::Body for Arriving {
    type Data = <tonic::body::Body as http_body::Body>::Data;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.per_part {
                    let next = tokio::time::Instant::now() + this.timeout;
                    this.timer.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err))),
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.done = true;
                    crate::telemetry::refused("body_timeout");
                    Poll::Ready(Some(Err(Status::from(DomainError::RequestTooSlow {
                        timeout_ms: this.timeout.as_millis() as u64,
                    }))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
