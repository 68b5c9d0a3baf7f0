//! The one table that turns service errors into gRPC statuses: a code per
//! error kind, and a `google.rpc.ErrorInfo` whose reason is HubSpot's
//! subCategory and whose metadata is HubSpot's context plus its category.
use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{one_line, DomainError, ErrorKind, MESSAGE_MOST};
use crate::service::ServiceError;
use crate::status_table::{error_context, status_for, store_status, sub_category, GrpcCode};

/// The ErrorInfo domain of every error this service returns.
pub const ERROR_DOMAIN: &str = "associations.v1";

/// The gRPC code of each kind of domain error (from the shared table).
pub fn code_for(kind: ErrorKind) -> Code {
    transport_code(status_for(kind).grpc)
}

/// The table's gRPC code as tonic's (the same number).
fn transport_code(code: GrpcCode) -> Code {
    Code::from_i32(code as i32)
}

/// The ErrorInfo metadata of a domain error: its context and category.
pub fn error_metadata(err: &DomainError) -> HashMap<String, String> {
    let mut metadata: HashMap<String, String> = error_context(err)
        .into_iter()
        .map(|(k, v)| (k.to_string(), one_line(&v, 256)))
        .collect();
    metadata.insert("category".into(), status_for(err.kind()).category.into());
    metadata
}

/// A refused call's status, with a fresh correlationId in its ErrorInfo,
/// logged once with it (like a REST refusal): info for the caller's
/// mistakes, a warning for the service's own failures.
pub fn domain_status(err: &DomainError) -> Status {
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let mut metadata = error_metadata(err);
    metadata.insert("correlationId".into(), correlation_id.clone());
    let mut details = ErrorDetails::with_error_info(sub_category(err), ERROR_DOMAIN, metadata);
    if let Some(wait) = err.retry_after() {
        details.set_retry_info(Some(wait));
    }
    // Bounded and on one line, like everything an error repeats.
    let message = one_line(&err.to_string(), MESSAGE_MOST);
    let code = code_for(err.kind());
    let reason = sub_category(err);
    if status_for(err.kind()).http >= 500 {
        tracing::warn!(%correlation_id, ?code, reason, "gRPC call failed: {message}");
    } else {
        tracing::info!(%correlation_id, ?code, reason, "gRPC call refused: {message}");
    }
    Status::with_error_details(code, message, details)
}

impl From<DomainError> for Status {
    fn from(err: DomainError) -> Status {
        domain_status(&err)
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Status {
        match err {
            ServiceError::Domain(domain) => domain_status(&domain),
            ServiceError::Store(store) => {
                let (status, reason, message) = store_status(&store);
                let correlation_id = uuid::Uuid::new_v4().to_string();
                tracing::error!(%correlation_id, "store failure: {store}");
                let metadata = HashMap::from([
                    ("category".to_string(), status.category.to_string()),
                    ("correlationId".to_string(), correlation_id),
                ]);
                let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
                Status::with_error_details(transport_code(status.grpc), message, details)
            }
        }
    }
}

#[cfg(test)]
mod transport_codes {
    use super::*;

    #[test]
    fn the_tables_codes_are_grpcs_own() {
        let pairs = [
            (GrpcCode::InvalidArgument, Code::InvalidArgument),
            (GrpcCode::NotFound, Code::NotFound),
            (GrpcCode::AlreadyExists, Code::AlreadyExists),
            (GrpcCode::PermissionDenied, Code::PermissionDenied),
            (GrpcCode::ResourceExhausted, Code::ResourceExhausted),
            (GrpcCode::FailedPrecondition, Code::FailedPrecondition),
            (GrpcCode::Aborted, Code::Aborted),
            (GrpcCode::OutOfRange, Code::OutOfRange),
            (GrpcCode::Unimplemented, Code::Unimplemented),
            (GrpcCode::Internal, Code::Internal),
            (GrpcCode::Unavailable, Code::Unavailable),
            (GrpcCode::Unauthenticated, Code::Unauthenticated),
        ];
        for (ours, tonics) in pairs {
            assert_eq!(transport_code(ours), tonics, "{ours:?}");
        }
    }
}
