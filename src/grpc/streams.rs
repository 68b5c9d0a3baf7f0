//! Caps the streams each principal holds open at once (beside the service's
//! cap per portal): a stream RPC takes a place when it starts and gives it
//! back when its response body ends or the client goes away.
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::OwnedSemaphorePermit;

use crate::domain::DomainError;
use crate::service::Places;

/// Every server-streaming RPC (the access test checks this against the proto).
pub const STREAM_RPCS: &[&str] = &[
    "/associations.v1.AssociationRead/ListAssociations",
    "/associations.v1.AssociationRead/BatchListAssociations",
    "/associations.v1.AssociationRead/ExportAssociations",
    "/associations.v1.AssociationRead/WatchChanges",
    "/associations.v1.AdminConfig/ListAuditEvents",
    "/associations.v1.AdminConfig/ListRecordsNearLimit",
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

/// A response body that holds its stream's place until it is dropped.
pub struct HeldBody {
    pub inner: tonic::body::Body,
    pub place: StreamPlace,
}

impl http_body::Body for HeldBody {
    type Data = <tonic::body::Body as http_body::Body>::Data;
    type Error = <tonic::body::Body as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
