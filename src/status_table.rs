//! The one table from error kinds to transport statuses: the gRPC code and
//! the HTTP status each front end answers with. Bodies (ErrorInfo details,
//! HubSpot JSON) are built by each front end from the same domain error.
use tonic::Code;

use crate::domain::ErrorKind;
use crate::store::{StoreError, StoreErrorKind};

/// A transport's view of one kind of error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusPair {
    pub grpc: Code,
    pub http: u16,
}

/// How each kind of domain error is answered.
pub fn status_for(kind: ErrorKind) -> StatusPair {
    let (grpc, http) = match kind {
        ErrorKind::InvalidArgument => (Code::InvalidArgument, 400),
        ErrorKind::NotFound => (Code::NotFound, 404),
        ErrorKind::Conflict => (Code::AlreadyExists, 409),
        // HubSpot answers limit violations with 400 VALIDATION_ERROR.
        ErrorKind::LimitExceeded => (Code::FailedPrecondition, 400),
        ErrorKind::Expired => (Code::OutOfRange, 400),
        ErrorKind::Denied => (Code::PermissionDenied, 403),
        ErrorKind::Unavailable => (Code::Unavailable, 503),
        ErrorKind::Internal => (Code::Internal, 500),
    };
    StatusPair { grpc, http }
}

/// How a request for a path or method the REST gateway does not serve is
/// answered (gRPC's counterpart of an unknown method).
pub const NO_ROUTE: StatusPair = StatusPair {
    grpc: Code::Unimplemented,
    http: 404,
};

/// How a store that cannot be reached is answered (retry later).
pub const STORE_UNAVAILABLE: StatusPair = StatusPair {
    grpc: Code::Unavailable,
    http: 503,
};

/// How any other store failure is answered.
pub const STORE_FAILED: StatusPair = StatusPair {
    grpc: Code::Internal,
    http: 500,
};

/// How a write whose retries ran out is answered (safe to try again).
pub const WRITE_CONFLICT: StatusPair = StatusPair {
    grpc: Code::Aborted,
    http: 503,
};

/// How a store failure is answered: status, subCategory and message.
pub fn store_status(err: &StoreError) -> (StatusPair, &'static str, &'static str) {
    match err.kind() {
        StoreErrorKind::Conflict => (
            WRITE_CONFLICT,
            "crm.associations.WRITE_CONFLICT",
            "the write kept conflicting with concurrent writes to the same records and its retries ran out; try again",
        ),
        StoreErrorKind::Unavailable => (
            STORE_UNAVAILABLE,
            "crm.associations.STORE_UNAVAILABLE",
            "the association store is unavailable, try again",
        ),
        StoreErrorKind::Internal => (
            STORE_FAILED,
            "crm.associations.INTERNAL_ERROR",
            "the association store failed; the log holds this error under its correlation id",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(err: StoreError) -> (u16, &'static str) {
        let (status, sub, _) = store_status(&err);
        (status.http, sub)
    }

    #[test]
    fn only_connection_and_pool_failures_are_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let unavailable = (503, "crm.associations.STORE_UNAVAILABLE");
        let internal = (500, "crm.associations.INTERNAL_ERROR");
        assert_eq!(
            answer(StoreError::Database(sqlx::Error::PoolTimedOut)),
            unavailable
        );
        assert_eq!(
            answer(StoreError::Database(sqlx::Error::Io(io))),
            unavailable
        );
        assert_eq!(answer(StoreError::Corrupt("bad row".into())), internal);
        assert_eq!(
            answer(StoreError::Database(sqlx::Error::Protocol(
                "unexpected".into()
            ))),
            internal
        );
        assert_eq!(
            answer(StoreError::Database(sqlx::Error::RowNotFound)),
            internal
        );
        let exhausted = StoreError::RetriesExhausted {
            attempts: 3,
            elapsed_ms: 10,
            last: "deadlock".into(),
        };
        assert_eq!(answer(exhausted), (503, "crm.associations.WRITE_CONFLICT"));
    }
}
