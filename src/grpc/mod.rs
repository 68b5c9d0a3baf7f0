//! The gRPC front end: thin tonic adapters between the `associations.v1`
//! services and the service layer, one file per gRPC service (`write.rs`,
//! `read.rs`, `admin.rs`); the messages and their conversions live in
//! `crate::proto`, the error table in `status.rs`.
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::domain::admin::ANONYMOUS;
use crate::service::{AssociationService, ServiceResult};

mod admin;
mod read;
pub mod status;
mod write;

/// Implements the three gRPC services over one `AssociationService`.
#[derive(Clone)]
pub struct GrpcApi {
    service: Arc<AssociationService>,
}

impl GrpcApi {
    pub fn new(service: Arc<AssociationService>) -> GrpcApi {
        GrpcApi { service }
    }
}

/// Who makes an admin call: its `x-actor` metadata, or "anonymous".
fn actor<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get("x-actor")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(ANONYMOUS)
        .to_string()
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Turns a service stream into a gRPC response stream.
fn respond<T, U, F>(
    receiver: mpsc::Receiver<ServiceResult<T>>,
    convert: F,
) -> Response<ResponseStream<U>>
where
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(T) -> U + Send + 'static,
{
    let stream = ReceiverStream::new(receiver).map(move |chunk| Ok(convert(chunk?)));
    Response::new(Box::pin(stream))
}
