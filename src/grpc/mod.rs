//! The gRPC front end: thin tonic adapters between the `associations.v1`
//! services and the service layer, one file per gRPC service (`write.rs`,
//! `read.rs`, `admin.rs`); the messages and their conversions live in
//! `crate::proto`, the error table in `status.rs`.
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Response, Status};

use crate::service::{AssociationService, ServiceResult};

mod admin;
pub mod auth;
pub mod convert;
pub mod metrics;
mod read;
pub mod status;
pub mod streams;
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
