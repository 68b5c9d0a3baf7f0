//! The one table from errors to answers: the gRPC code, the HTTP status and
//! HubSpot's error category of each kind, HubSpot's subCategory and context
//! fields of each refusal (the domain names what went wrong, this table how
//! HubSpot says it), and the subCategory and message of failures that are
//! not the caller's. Every error type reports
//! its kind; both front ends answer through this table.
use crate::domain::{DomainError, ErrorKind, LimitSource};
use crate::store::StoreError;

/// The gRPC status codes the table answers with, numbered as gRPC numbers
/// them (the gRPC front end turns one into its transport's code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcCode {
    InvalidArgument = 3,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// How one kind of error is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusPair {
    pub grpc: GrpcCode,
    pub http: u16,
    /// HubSpot's error `category`.
    pub category: &'static str,
}

/// How each kind of error is answered.
pub fn status_for(kind: ErrorKind) -> StatusPair {
    let (grpc, http, category) = match kind {
        ErrorKind::InvalidArgument => (GrpcCode::InvalidArgument, 400, "VALIDATION_ERROR"),
        ErrorKind::NotFound => (GrpcCode::NotFound, 404, "OBJECT_NOT_FOUND"),
        ErrorKind::Conflict => (GrpcCode::AlreadyExists, 409, "CONFLICT"),
        // HubSpot answers limit violations with 400 VALIDATION_ERROR.
        ErrorKind::LimitExceeded => (GrpcCode::FailedPrecondition, 400, "VALIDATION_ERROR"),
        ErrorKind::Expired => (GrpcCode::OutOfRange, 400, "VALIDATION_ERROR"),
        ErrorKind::Denied => (GrpcCode::PermissionDenied, 403, "VALIDATION_ERROR"),
        // HubSpot's answers to a missing or bad token and to missing scopes.
        ErrorKind::Unauthenticated => (GrpcCode::Unauthenticated, 401, "INVALID_AUTHENTICATION"),
        ErrorKind::PermissionDenied => (GrpcCode::PermissionDenied, 403, "MISSING_SCOPES"),
        ErrorKind::Unavailable => (GrpcCode::Unavailable, 503, "INTERNAL_ERROR"),
        // Safe to try again, so 503 rather than 409.
        ErrorKind::Aborted => (GrpcCode::Aborted, 503, "INTERNAL_ERROR"),
        // HubSpot answers used-up allowances with 429 RATE_LIMITS.
        ErrorKind::ResourceExhausted => (GrpcCode::ResourceExhausted, 429, "RATE_LIMITS"),
        // gRPC's counterpart of an unknown path is an unknown method.
        ErrorKind::NoRoute => (GrpcCode::Unimplemented, 404, "OBJECT_NOT_FOUND"),
        ErrorKind::Internal => (GrpcCode::Internal, 500, "INTERNAL_ERROR"),
    };
    StatusPair {
        grpc,
        http,
        category,
    }
}

/// The subCategory and message of a store failure of `kind` (the store's
/// own text stays in the log, under the answer's correlation id).
fn store_failure_text(kind: ErrorKind) -> (&'static str, &'static str) {
    match kind {
        ErrorKind::Aborted => (
            "crm.associations.WRITE_CONFLICT",
            "the write kept conflicting with concurrent writes to the same records and its retries ran out; try again",
        ),
        ErrorKind::Unavailable => (
            "crm.associations.STORE_UNAVAILABLE",
            "the association store is unavailable, try again",
        ),
        _ => (
            "crm.associations.INTERNAL_ERROR",
            "the association store failed; the log holds this error under its correlation id",
        ),
    }
}

/// How a store failure is answered: status, subCategory and message.
pub fn store_status(err: &StoreError) -> (StatusPair, &'static str, &'static str) {
    let kind = err.kind();
    let (sub_category, message) = store_failure_text(kind);
    (status_for(kind), sub_category, message)
}

/// HubSpot's subCategory (`crm.associations.…`) of a refusal.
pub fn sub_category(err: &DomainError) -> &'static str {
    match err {
        DomainError::UnknownObjectType(_) => "crm.associations.INVALID_OBJECT_TYPE",
        DomainError::InvalidId { .. } => "crm.associations.INVALID_OBJECT_ID",
        DomainError::InvalidPortal(_) => "crm.associations.INVALID_PORTAL_ID",
        DomainError::UnknownAssociationType { .. } => "crm.associations.INVALID_ASSOCIATION_TYPE",
        DomainError::LimitExceeded(v) => match v.source {
            LimitSource::Platform => "crm.associations.ASSOCIATION_LIMIT_EXCEEDED",
            LimitSource::User => "crm.associations.ASSOCIATION_USER_CONFIG_LIMIT_EXCEEDED",
        },
        DomainError::MergeLimitExceeded { .. } => {
            "crm.associations.MERGE_ASSOCIATION_LIMIT_EXCEEDED"
        }
        DomainError::InvalidLimit(_) => "crm.associations.INVALID_LIMIT",
        DomainError::LimitAlreadySet(_) => "crm.associations.LIMIT_ALREADY_CONFIGURED",
        DomainError::LimitNotSet(_) => "crm.associations.LIMIT_NOT_CONFIGURED",
        DomainError::LabelNotFound { .. } => "crm.associations.LABEL_NOT_FOUND",
        DomainError::LabelExists(_) => "crm.associations.LABEL_ALREADY_EXISTS",
        DomainError::ObjectNameTaken { .. } => "crm.associations.OBJECT_NAME_ALREADY_EXISTS",
        DomainError::LabelQuotaReached { .. } => "crm.associations.LABEL_LIMIT_REACHED",
        DomainError::InvalidCursor => "crm.associations.INVALID_CURSOR",
        DomainError::CursorExpired(_) => "crm.associations.CURSOR_EXPIRED",
        DomainError::TooManyStreams { .. } | DomainError::TooManyStreamsForCaller { .. } => {
            "crm.associations.TOO_MANY_STREAMS"
        }
        DomainError::RateLimited { .. } | DomainError::DailyLimited { .. } => {
            "crm.associations.RATE_LIMITED"
        }
        DomainError::Overloaded => "crm.associations.OVERLOADED",
        DomainError::TooManyCalls { .. } => "crm.associations.TOO_MANY_CALLS",
        DomainError::StreamStalled { .. } => "crm.associations.STREAM_STALLED",
        DomainError::RequestTooSlow { .. } => "crm.associations.REQUEST_TIMEOUT",
        DomainError::CallTooSlow { .. } => "crm.associations.CALL_TIMEOUT",
        DomainError::ShuttingDown => "crm.associations.SHUTTING_DOWN",
        DomainError::NoAssociations { .. } => "crm.associations.NO_ASSOCIATIONS_FOUND",
        DomainError::ObjectNotFound { .. } => "crm.objects.OBJECT_NOT_FOUND",
        DomainError::ChangeDenied { .. } => "crm.associations.CHANGE_DENIED_BY_PLUGIN",
        DomainError::Unauthenticated(_) => "crm.associations.INVALID_AUTHENTICATION",
        DomainError::PermissionDenied(_) => "crm.associations.MISSING_SCOPES",
        DomainError::PluginUnavailable { .. } => "crm.associations.PLUGIN_UNAVAILABLE",
        DomainError::SelfAssociation { .. } => "crm.associations.SELF_ASSOCIATION",
        DomainError::UnknownTypeName { .. } | DomainError::InvalidArgument(_) => {
            "crm.associations.INVALID_INPUT"
        }
        DomainError::Internal(_) => "crm.associations.INTERNAL_ERROR",
    }
}

/// HubSpot's context fields of a refusal, in the order HubSpot writes
/// them.
pub fn error_context(err: &DomainError) -> Vec<(&'static str, String)> {
    match err {
        DomainError::LimitExceeded(v) => {
            let spec = format!(
                "associationCategory {}, associationTypeId {}",
                v.key.category, v.key.type_id
            );
            vec![
                ("associationSpec", spec),
                (
                    "associationTypeIdThatExceededLimit",
                    v.key.type_id.to_string(),
                ),
                ("portalId", v.portal_id.to_string()),
                ("limit", v.limit.to_string()),
                ("fromObjectId", v.from_object_id.to_string()),
                (
                    "associationCategoryThatExceededLimit",
                    v.key.category.to_string(),
                ),
            ]
        }
        DomainError::UnknownAssociationType { key, from, to } => vec![
            ("associationCategory", key.category.to_string()),
            ("associationTypeId", key.type_id.to_string()),
            ("fromObjectType", from.to_string()),
            ("toObjectType", to.to_string()),
        ],
        DomainError::UnknownObjectType(t) => vec![("objectType", t.clone())],
        DomainError::ObjectNameTaken { name, object_type } => vec![
            ("name", name.clone()),
            ("objectType", object_type.to_string()),
        ],
        DomainError::NoAssociations { from, from_id, to } => vec![
            ("fromObjectId", from_id.to_string()),
            ("fromObjectType", from.singular_name()),
            ("toObjectType", to.singular_name()),
        ],
        DomainError::ObjectNotFound { object_type, id } => vec![
            ("objectType", object_type.to_string()),
            ("objectId", id.to_string()),
        ],
        DomainError::InvalidId { field, value } => vec![(field, value.to_string())],
        DomainError::SelfAssociation { object_type, id } => vec![
            ("objectType", object_type.to_string()),
            ("objectId", id.to_string()),
        ],
        DomainError::ChangeDenied { plugin, .. }
        | DomainError::PluginUnavailable { plugin, .. } => vec![("plugin", plugin.clone())],
        DomainError::RateLimited {
            portal,
            retry_after_ms,
            ..
        }
        | DomainError::DailyLimited {
            portal,
            retry_after_ms,
            ..
        } => vec![
            ("portalId", portal.to_string()),
            ("retryAfterMs", retry_after_ms.to_string()),
        ],
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(err: StoreError) -> (u16, &'static str) {
        let (status, sub, _) = store_status(&err);
        (status.http, sub)
    }

    /// Asserts each refusal's context, field by field, in order.
    fn assert_contexts(cases: Vec<(DomainError, Vec<(&str, &str)>)>) {
        for (err, expected) in cases {
            let context = error_context(&err);
            let context: Vec<(&str, &str)> =
                context.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(context, expected, "{err:?}");
        }
    }

    /// Each refusal about records and types names its context as HubSpot
    /// writes it (a limit's is held by the gateway's golden test).
    #[test]
    fn each_record_refusal_names_its_context() {
        use crate::domain::{Category, ObjectType, TypeKey};
        let (contact, deal) = (ObjectType::CONTACT, ObjectType::DEAL);
        let key = TypeKey {
            category: Category::UserDefined,
            type_id: 1042,
        };
        assert_contexts(vec![
            (
                DomainError::UnknownAssociationType {
                    key,
                    from: contact,
                    to: deal,
                },
                vec![
                    ("associationCategory", "USER_DEFINED"),
                    ("associationTypeId", "1042"),
                    ("fromObjectType", "0-1"),
                    ("toObjectType", "0-3"),
                ],
            ),
            (
                DomainError::UnknownObjectType("widgets".into()),
                vec![("objectType", "widgets")],
            ),
            (
                DomainError::ObjectNameTaken {
                    name: "cars".into(),
                    object_type: contact,
                },
                vec![("name", "cars"), ("objectType", "0-1")],
            ),
            (
                DomainError::NoAssociations {
                    from: contact,
                    from_id: 7,
                    to: deal,
                },
                vec![
                    ("fromObjectId", "7"),
                    ("fromObjectType", "contact"),
                    ("toObjectType", "deal"),
                ],
            ),
            (
                DomainError::ObjectNotFound {
                    object_type: deal,
                    id: 8,
                },
                vec![("objectType", "0-3"), ("objectId", "8")],
            ),
            (
                DomainError::InvalidId {
                    field: "toObjectId",
                    value: -1,
                },
                vec![("toObjectId", "-1")],
            ),
            (
                DomainError::SelfAssociation {
                    object_type: contact,
                    id: 9,
                },
                vec![("objectType", "0-1"), ("objectId", "9")],
            ),
        ]);
    }

    /// Plugins' and rate limits' refusals name theirs; a bad cursor has none.
    #[test]
    fn each_plugin_and_rate_refusal_names_its_context() {
        assert_contexts(vec![
            (
                DomainError::ChangeDenied {
                    plugin: "policy".into(),
                    message: "no".into(),
                },
                vec![("plugin", "policy")],
            ),
            (
                DomainError::PluginUnavailable {
                    plugin: "policy".into(),
                    reason: "down".into(),
                },
                vec![("plugin", "policy")],
            ),
            (
                DomainError::RateLimited {
                    portal: 3,
                    per_second: 10,
                    retry_after_ms: 250,
                },
                vec![("portalId", "3"), ("retryAfterMs", "250")],
            ),
            (
                DomainError::DailyLimited {
                    portal: 4,
                    per_day: 100,
                    retry_after_ms: 9000,
                },
                vec![("portalId", "4"), ("retryAfterMs", "9000")],
            ),
            (DomainError::InvalidCursor, vec![]),
        ]);
    }

    #[test]
    fn a_store_failure_is_answered_by_its_kind() {
        let unavailable = StoreError::Unreachable("pool timed out".into());
        assert_eq!(
            answer(unavailable),
            (503, "crm.associations.STORE_UNAVAILABLE")
        );
        let corrupt = StoreError::Corrupt("bad row".into());
        assert_eq!(answer(corrupt), (500, "crm.associations.INTERNAL_ERROR"));
        let exhausted = StoreError::RetriesExhausted {
            attempts: 3,
            elapsed_ms: 10,
            last: "deadlock".into(),
        };
        assert_eq!(answer(exhausted), (503, "crm.associations.WRITE_CONFLICT"));
        let stopped = StoreError::ReaderStopped("panicked".into());
        assert_eq!(answer(stopped), (500, "crm.associations.INTERNAL_ERROR"));
    }

    #[test]
    fn every_kind_has_one_answer() {
        let rows = [
            (ErrorKind::InvalidArgument, GrpcCode::InvalidArgument, 400),
            (ErrorKind::NotFound, GrpcCode::NotFound, 404),
            (ErrorKind::Conflict, GrpcCode::AlreadyExists, 409),
            (ErrorKind::LimitExceeded, GrpcCode::FailedPrecondition, 400),
            (ErrorKind::Expired, GrpcCode::OutOfRange, 400),
            (ErrorKind::Denied, GrpcCode::PermissionDenied, 403),
            (ErrorKind::Unavailable, GrpcCode::Unavailable, 503),
            (ErrorKind::Aborted, GrpcCode::Aborted, 503),
            (
                ErrorKind::ResourceExhausted,
                GrpcCode::ResourceExhausted,
                429,
            ),
            (ErrorKind::NoRoute, GrpcCode::Unimplemented, 404),
            (ErrorKind::Internal, GrpcCode::Internal, 500),
        ];
        for (kind, grpc, http) in rows {
            let status = status_for(kind);
            assert_eq!((status.grpc, status.http), (grpc, http), "{kind:?}");
            assert!(!status.category.is_empty());
        }
    }

    #[test]
    fn errors_of_every_layer_report_their_kind() {
        use crate::domain::DomainError;
        use crate::service::ServiceError;
        let refused = StoreError::Rejected(DomainError::InvalidCursor);
        assert_eq!(refused.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            ServiceError::from(StoreError::Corrupt("bad row".into())).kind(),
            ErrorKind::Internal
        );
        assert_eq!(
            ServiceError::from(StoreError::Unreachable("pool timed out".into())).kind(),
            ErrorKind::Unavailable
        );
        let timeout = crate::hooks::HookError::Timeout(std::time::Duration::from_secs(1));
        assert_eq!(timeout.kind(), ErrorKind::Unavailable);
        let config = crate::config::ConfigError::Invalid("bad".into());
        assert_eq!(config.kind(), ErrorKind::InvalidArgument);
    }
}
