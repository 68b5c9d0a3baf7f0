//! Caps the streams each principal holds open at once (beside the service's
//! cap per portal): a stream RPC takes a place when it starts and gives it
//! back when its response body ends or the client goes away.
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::DomainError;

/// Every server-streaming RPC (the access test checks this against the proto).
pub const STREAM_RPCS: &[&str] = &[
    "/associations.v1.AssociationRead/ListAssociations",
    "/associations.v1.AssociationRead/BatchListAssociations",
    "/associations.v1.AssociationRead/ExportAssociations",
    "/associations.v1.AssociationRead/WatchChanges",
    "/associations.v1.AdminConfig/ListAuditEvents",
];

/// The places of each principal's open streams.
pub struct StreamCaps {
    per_principal: usize,
    principals: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One open stream's place, given back when dropped.
pub struct StreamPlace(#[allow(dead_code)] OwnedSemaphorePermit);

impl StreamCaps {
    pub fn new(per_principal: usize) -> StreamCaps {
        StreamCaps {
            per_principal,
            principals: Mutex::new(HashMap::new()),
        }
    }

    /// A place for a call on `path` by `principal`: none needed when the
    /// RPC does not stream, refused when the principal's places are taken.
    pub fn take(&self, principal: &str, path: &str) -> Result<Option<StreamPlace>, DomainError> {
        if !STREAM_RPCS.contains(&path) {
            return Ok(None);
        }
        let semaphore = {
            let mut principals = self.principals.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(
                principals
                    .entry(principal.to_string())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_principal))),
            )
        };
        semaphore
            .try_acquire_owned()
            .map(|permit| Some(StreamPlace(permit)))
            .map_err(|_| DomainError::TooManyStreamsForCaller {
                name: principal.to_string(),
                limit: self.per_principal as u32,
            })
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
