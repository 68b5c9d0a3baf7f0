//! Domain errors and how HubSpot names them (category, subCategory, context).
//! The front ends map `ErrorKind` to their status codes; everything else an
//! error body needs is said here, once.
use super::object_type::ObjectType;
use super::types::TypeKey;

/// Which limit an association write ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSource {
    /// The platform ceiling that applies to every type.
    Platform,
    /// A limit an admin configured.
    User,
}

/// A write that would give a record more associations of a type than allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitViolation {
    pub source: LimitSource,
    pub limit: u32,
    pub portal_id: i64,
    pub from_object_id: i64,
    pub key: TypeKey,
    /// The violated type's machine name (HubSpot's single writes show it).
    pub type_name: String,
}

/// The broad class of an error. Every error type of every layer reports
/// one; `status_table` maps each to its gRPC code, HTTP status and HubSpot
/// category.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    Conflict,
    LimitExceeded,
    /// A position that no longer exists (past retention).
    Expired,
    /// An admin plugin refused the change.
    Denied,
    /// No credentials, or credentials that prove nothing.
    Unauthenticated,
    /// The caller is known but may not make this call on this portal.
    PermissionDenied,
    /// Something the call depends on (the database, an admin plugin) cannot
    /// be reached or is out of resources: try again later.
    Unavailable,
    /// A write lost races to concurrent writes for its whole retry budget:
    /// safe to try again.
    Aborted,
    /// A per-caller or per-portal allowance is used up: try again later.
    ResourceExhausted,
    /// A path or method that is not served.
    NoRoute,
    /// A bug or corrupt data: trying again will not help.
    Internal,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("Unknown object type '{0}': use an object type id (0-1, 2-123) or a name (contacts, companies, deals, tickets, ...)")]
    UnknownObjectType(String),
    #[error("Invalid {field} {value}: ids are positive 64-bit integers")]
    InvalidId { field: &'static str, value: i64 },
    #[error("Invalid portal id {0}: portal ids are positive 64-bit integers")]
    InvalidPortal(i64),
    #[error("Unknown association type: associationCategory {}, associationTypeId {} is not defined from {from} to {to}", key.category, key.type_id)]
    UnknownAssociationType {
        key: TypeKey,
        from: ObjectType,
        to: ObjectType,
    },
    #[error("Exceeded association limit of {} for portalId {}, fromObjectId {}, associationCategory {}, associationTypeId {}", .0.limit, .0.portal_id, .0.from_object_id, .0.key.category, .0.key.type_id)]
    LimitExceeded(LimitViolation),
    #[error("{0}")]
    InvalidLimit(String),
    #[error("Association configuration limits are exceeded in portal {portal_id} when merging {merged_id} into {primary_id} of object type {object_type}")]
    MergeLimitExceeded {
        portal_id: i64,
        object_type: ObjectType,
        primary_id: i64,
        merged_id: i64,
    },
    #[error("A limit is already set for associationCategory {}, associationTypeId {}: update it instead", .0.category, .0.type_id)]
    LimitAlreadySet(TypeKey),
    #[error("No limit is set for associationCategory {}, associationTypeId {}: create it first", .0.category, .0.type_id)]
    LimitNotSet(TypeKey),
    #[error("No label with associationTypeId {type_id} exists between {from} and {to}")]
    LabelNotFound {
        type_id: i32,
        from: ObjectType,
        to: ObjectType,
    },
    #[error("A label named '{0}' already exists between these object types")]
    LabelExists(String),
    /// A custom object name another custom object of the portal has.
    #[error("The custom object name '{name}' already names {object_type}")]
    ObjectNameTaken {
        name: String,
        object_type: ObjectType,
    },
    #[error("{from} and {to} already have {limit} labels, the most one pair of object types may have; delete one first")]
    LabelQuotaReached {
        from: ObjectType,
        to: ObjectType,
        limit: usize,
    },
    #[error(
        "Invalid cursor: it is malformed, was altered, or belongs to another request or portal"
    )]
    InvalidCursor,
    #[error("The change feed no longer holds changes after {0}: they are past retention; restart from the beginning")]
    CursorExpired(i64),
    #[error("portal {portal} has {limit} streams open, the most read.max_streams_per_portal allows; close one or try again later")]
    TooManyStreams { portal: i64, limit: u32 },
    #[error("'{name}' has {limit} streams open, the most read.max_streams_per_caller allows; close one or try again later")]
    TooManyStreamsForCaller { name: String, limit: u32 },
    #[error("You have reached your secondly limit: portal {portal} may make {per_second} calls per second; try again in {retry_after_ms} ms")]
    RateLimited {
        portal: i64,
        per_second: u32,
        retry_after_ms: u64,
    },
    #[error("You have reached your daily limit: portal {portal} may make {per_day} calls a day (UTC); try again in {retry_after_ms} ms")]
    DailyLimited {
        portal: i64,
        per_day: u32,
        retry_after_ms: u64,
    },
    #[error("The service is at its limit of concurrent calls; try again shortly")]
    Overloaded,
    #[error(
        "{holder} has {limit} calls in flight, the most {setting} allows; try again once one ends"
    )]
    TooManyCalls {
        /// Who holds them, in words ("this caller", "portal 7").
        holder: String,
        limit: u32,
        setting: &'static str,
    },
    #[error("The stream was ended because its client read nothing for {stall_ms} ms; call again with the cursor of the last chunk received to resume")]
    StreamStalled { stall_ms: u64 },
    #[error(
        "The request did not arrive in time: its body must arrive whole within {timeout_ms} ms"
    )]
    RequestTooSlow { timeout_ms: u64 },
    #[error("The call took longer than the service allows ({timeout_ms} ms): try again, or in smaller parts")]
    CallTooSlow { timeout_ms: u64 },
    #[error("This replica is shutting down: call again (another replica answers), resuming a stream with the cursor of its last chunk")]
    ShuttingDown,
    #[error("No {} is associated with {} {from_id}.", .to.singular_name(), .from.singular_name())]
    NoAssociations {
        from: ObjectType,
        from_id: i64,
        to: ObjectType,
    },
    #[error("No {} with id {id} holds any association.", .object_type.singular_name())]
    ObjectNotFound { object_type: ObjectType, id: i64 },
    #[error("{message} (refused by plugin {plugin})")]
    ChangeDenied { plugin: String, message: String },
    #[error("The change was refused because admin plugin {plugin} failed ({reason}) and its failure policy is closed; try again")]
    PluginUnavailable { plugin: String, reason: String },
    #[error("Cannot associate {} {id} with itself: an association joins two different records", .object_type.singular_name())]
    SelfAssociation { object_type: ObjectType, id: i64 },
    /// A type named (v3) by a machine name or id the pair does not have.
    #[error("Unknown association type '{name}' from {from} to {to}")]
    UnknownTypeName {
        name: String,
        from: ObjectType,
        to: ObjectType,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("Authentication failed: {0}")]
    Unauthenticated(String),
    #[error("Permission denied: {0}")]
    PermissionDenied(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DomainError::UnknownObjectType(_)
            | DomainError::InvalidId { .. }
            | DomainError::InvalidPortal(_)
            | DomainError::UnknownAssociationType { .. }
            | DomainError::InvalidLimit(_)
            | DomainError::InvalidCursor
            | DomainError::SelfAssociation { .. }
            | DomainError::UnknownTypeName { .. }
            | DomainError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            DomainError::LimitExceeded(_)
            | DomainError::MergeLimitExceeded { .. }
            | DomainError::LabelQuotaReached { .. } => ErrorKind::LimitExceeded,
            DomainError::LimitNotSet(_)
            | DomainError::LabelNotFound { .. }
            | DomainError::NoAssociations { .. }
            | DomainError::ObjectNotFound { .. } => ErrorKind::NotFound,
            DomainError::CursorExpired(_) => ErrorKind::Expired,
            DomainError::TooManyStreams { .. }
            | DomainError::TooManyStreamsForCaller { .. }
            | DomainError::RateLimited { .. }
            | DomainError::DailyLimited { .. }
            | DomainError::TooManyCalls { .. } => ErrorKind::ResourceExhausted,
            DomainError::StreamStalled { .. } => ErrorKind::Aborted,
            DomainError::RequestTooSlow { .. } => ErrorKind::InvalidArgument,
            DomainError::CallTooSlow { .. } => ErrorKind::Unavailable,
            DomainError::Overloaded | DomainError::ShuttingDown => ErrorKind::Unavailable,
            DomainError::LimitAlreadySet(_)
            | DomainError::LabelExists(_)
            | DomainError::ObjectNameTaken { .. } => ErrorKind::Conflict,
            DomainError::ChangeDenied { .. } => ErrorKind::Denied,
            DomainError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            DomainError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            DomainError::PluginUnavailable { .. } => ErrorKind::Unavailable,
            DomainError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Checks that a record id is a positive 64-bit integer.
pub fn check_id(field: &'static str, value: i64) -> Result<i64, DomainError> {
    if value > 0 {
        Ok(value)
    } else {
        Err(DomainError::InvalidId { field, value })
    }
}

/// Checks that an association joins two different records.
pub fn check_distinct(
    from: ObjectType,
    from_id: i64,
    to: ObjectType,
    to_id: i64,
) -> Result<(), DomainError> {
    if from == to && from_id == to_id {
        Err(DomainError::SelfAssociation {
            object_type: from,
            id: from_id,
        })
    } else {
        Ok(())
    }
}

/// Checks that a portal id is positive.
pub fn check_portal(portal_id: i64) -> Result<i64, DomainError> {
    if portal_id > 0 {
        Ok(portal_id)
    } else {
        Err(DomainError::InvalidPortal(portal_id))
    }
}

impl DomainError {
    /// How long a caller should wait before trying again, when the error
    /// says (rate limits, load shedding).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            DomainError::RateLimited { retry_after_ms, .. }
            | DomainError::DailyLimited { retry_after_ms, .. } => {
                Some(std::time::Duration::from_millis(*retry_after_ms))
            }
            DomainError::Overloaded
            | DomainError::ShuttingDown
            | DomainError::TooManyCalls { .. } => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }
}
