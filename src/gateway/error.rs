//! Gateway errors and HubSpot's JSON error bodies: the HTTP status comes from
//! the shared status table, the category, subCategory, message and context
//! from the domain error; every body carries a fresh correlationId, which is
//! also logged.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::error::{LimitSource, LimitViolation};
use crate::domain::ErrorKind;
use crate::domain::{one_line, DomainError, MESSAGE_MOST};
use crate::service::ServiceError;
use crate::status_table::{error_context, status_for, store_status, sub_category, StatusPair};

/// Where a path HubSpot publishes under other versions only is found:
/// the labels and limit configurations have no 2025-09 version, and the
/// read of one record's associations no 2026-09 one (only 2026-09-beta).
fn unpublished_hint(path: &str) -> &'static str {
    if let Some(rest) = path.strip_prefix("/crm/objects/2026-09/") {
        let parts: Vec<&str> = rest.split('/').collect();
        return match parts.len() == 4 && parts[2] == "associations" {
            true => "; HubSpot publishes this read in 2026-09 only as 2026-09-beta: use /crm/objects/2026-03/… or POST /crm/associations/2026-09/{from}/{to}/batch/read",
            false => "",
        };
    }
    let Some(rest) = path.strip_prefix("/crm/associations/2025-09/") else {
        return "";
    };
    let schema =
        rest.starts_with("definitions/") || rest.split('/').nth(2).is_some_and(|s| s == "labels");
    match schema {
        true => "; HubSpot publishes no 2025-09 version of the association labels and limit configurations: they are under /crm/associations/2026-03/",
        false => "",
    }
}

/// Why a REST call failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A single-association write ran into a limit: HubSpot answers these
    /// with its "One or more associations are invalid" body.
    #[error("One or more associations are invalid")]
    SingleLimit(LimitViolation),
    #[error(
        "Unable to route {method} {path}: no such endpoint{}",
        unpublished_hint(path)
    )]
    NoRoute { method: String, path: String },
    /// Input the gateway cannot read, in a field it can name (a path
    /// parameter, a query parameter, or where in the JSON body).
    #[error("{message}")]
    InvalidField {
        field: String,
        message: String,
        /// HubSpot's subCategory, from the domain's error table.
        sub_category: &'static str,
    },
    /// A request the HTTP layer refused before any handler (a body over the
    /// size cap, a path that is not UTF-8): its status, HubSpot's body.
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
}

impl GatewayError {
    /// The kind of this failure, which the status table answers.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GatewayError::Service(err) => err.kind(),
            GatewayError::SingleLimit(_) => ErrorKind::LimitExceeded,
            GatewayError::NoRoute { .. } => ErrorKind::NoRoute,
            GatewayError::InvalidField { .. } => ErrorKind::InvalidArgument,
            GatewayError::Refused { .. } => ErrorKind::InvalidArgument,
        }
    }

    /// A single-association write's failure: limit violations get the
    /// body that names the type, as in HubSpot's changelog.
    pub fn single_write(err: DomainError) -> GatewayError {
        match err {
            DomainError::LimitExceeded(v) if !v.type_name.is_empty() => {
                GatewayError::SingleLimit(v)
            }
            other => other.into(),
        }
    }
}

impl From<DomainError> for GatewayError {
    fn from(err: DomainError) -> GatewayError {
        GatewayError::Service(ServiceError::Domain(err))
    }
}

pub type GatewayResult<T> = Result<T, GatewayError>;

/// A 400 VALIDATION_ERROR for input the gateway cannot read.
pub fn invalid(message: impl Into<String>) -> GatewayError {
    DomainError::InvalidArgument(message.into()).into()
}

/// A 400 VALIDATION_ERROR for input the gateway cannot read in `field`,
/// which the body names in its `errors` (`in`).
pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidField {
        field: field.into(),
        message: message.into(),
        sub_category: sub_category(&DomainError::InvalidArgument(String::new())),
    }
}

/// `invalid_field` for a record id that is not one (HubSpot's
/// `INVALID_OBJECT_ID`, as the domain names a bad id).
pub fn invalid_id(field: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidField {
        field: field.into(),
        message: message.into(),
        sub_category: sub_category(&DomainError::InvalidId { field, value: 0 }),
    }
}

/// A domain error's message as REST shows it: an unknown type name also
/// says where the pair's names are listed.
pub fn rest_message(err: &DomainError) -> String {
    match err {
        DomainError::UnknownTypeName { from, to, .. } => {
            format!("{err}: use a name or id from GET /crm/v3/associations/{from}/{to}/types")
        }
        other => other.to_string(),
    }
}

/// HubSpot's `context`: every value is a list of strings (each bounded,
/// on one line).
pub fn context(pairs: Vec<(&str, String)>) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(k, v)| {
            let v = one_line(&v, CONTEXT_MOST);
            (k.to_string(), Value::Array(vec![Value::String(v)]))
        })
        .collect()
}

/// Most characters of a context value.
const CONTEXT_MOST: usize = 256;

/// A field-level detail of an error (`ErrorDetail` in HubSpot's specs).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    /// Where: the parameter, or the path into the JSON body.
    #[serde(rename = "in")]
    pub field: String,
}

/// HubSpot's error body (`Error` in its specs).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub status: &'static str,
    pub message: String,
    pub correlation_id: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
    pub category: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_category: Option<String>,
    /// Field-level details, when the failure is in fields the gateway
    /// can name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorDetail>,
    /// HubSpot's rate-limit fields, on a 429 of the per-portal call rate:
    /// `RATE_LIMIT` and the policy (`SECONDLY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<&'static str>,
}

/// One failed input of a batch (`StandardError` inside a 207), with every
/// field HubSpot's schema requires: `errors` (no field-level details are
/// known for an input) and `links` (none) are always there, empty.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemError {
    pub status: &'static str,
    pub category: &'static str,
    pub sub_category: &'static str,
    pub message: String,
    pub context: Map<String, Value>,
    pub errors: [Value; 0],
    pub links: Map<String, Value>,
}

impl ItemError {
    pub fn new(err: &DomainError) -> ItemError {
        ItemError {
            status: "error",
            category: status_for(err.kind()).category,
            sub_category: sub_category(err),
            message: rest_message(err),
            context: context(error_context(err)),
            errors: [],
            links: Map::new(),
        }
    }
}

fn limit_key(source: LimitSource) -> &'static str {
    match source {
        LimitSource::User => "ASSOCIATION_USER_CONFIG_LIMIT_EXCEEDED",
        LimitSource::Platform => "ASSOCIATION_LIMIT_EXCEEDED",
    }
}

/// HubSpot's message when a secondly limit is reached.
const SECONDLY_MESSAGE: &str = "You have reached your secondly limit.";
/// HubSpot's message when a daily limit is reached.
const DAILY_MESSAGE: &str = "You have reached your daily limit.";

/// A rate refusal's HubSpot policy, message and quota (its context key and
/// value); none for other errors.
fn rate_policy(err: &DomainError) -> Option<(&'static str, &'static str, (&'static str, u32))> {
    match err {
        DomainError::DailyLimited { per_day, .. } => {
            Some(("DAILY", DAILY_MESSAGE, ("callsPerDay", *per_day)))
        }
        DomainError::RateLimited { per_second, .. } => Some((
            "SECONDLY",
            SECONDLY_MESSAGE,
            ("callsPerSecond", *per_second),
        )),
        _ => None,
    }
}

/// The context of a single create's limit refusal: which limit, as HubSpot
/// words it, and the type and category that exceeded it.
fn single_limit_context(v: &LimitViolation) -> Map<String, Value> {
    let type_name = v.type_name.to_ascii_uppercase();
    let detail = format!(
        "Exceeded association limit of {} for portalId {}, fromObjectId {}, associationType {type_name}",
        v.limit, v.portal_id, v.from_object_id
    );
    context(vec![
        (limit_key(v.source), detail),
        (
            "associationTypeIdThatExceededLimit",
            v.key.type_id.to_string(),
        ),
        ("limit", v.limit.to_string()),
        (
            "associationCategoryThatExceededLimit",
            v.key.category.to_string(),
        ),
    ])
}

impl GatewayError {
    fn status_and_body(&self) -> (StatusPair, ErrorBody) {
        let status = status_for(self.kind());
        let body = |message: String, sub: Option<&str>, ctx| ErrorBody {
            status: "error",
            // Bounded and on one line, like everything an error repeats.
            message: one_line(&message, MESSAGE_MOST),
            // The call's own id (its log lines carry it), or a fresh one
            // for refusals made before a call is served.
            correlation_id: crate::telemetry::CORRELATION_ID
                .try_with(String::clone)
                .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string()),
            context: ctx,
            category: status.category.to_string(),
            sub_category: sub.map(str::to_string),
            errors: Vec::new(),
            error_type: None,
            policy_name: None,
        };
        match self {
            // HubSpot's 429s, word for word: a per-second policy's, which
            // its clients recognise and retry (the Node client waits a second
            // per attempt), and the daily quota's, which they do not (the
            // wait is until the next UTC day); the portal, its quota and the
            // wait are in context.
            GatewayError::Service(ServiceError::Domain(err)) if rate_policy(err).is_some() => {
                let (policy, message, quota) = rate_policy(err).unwrap_or_default();
                let mut ctx = error_context(err);
                ctx.push((quota.0, quota.1.to_string()));
                let answer = ErrorBody {
                    error_type: Some("RATE_LIMIT"),
                    policy_name: Some(policy),
                    ..body(message.into(), Some(sub_category(err)), context(ctx))
                };
                (status, answer)
            }
            GatewayError::Service(ServiceError::Domain(err)) => (
                status,
                body(
                    rest_message(err),
                    Some(sub_category(err)),
                    context(error_context(err)),
                ),
            ),
            GatewayError::Service(ServiceError::Store(store)) => {
                let (status, sub, message) = store_status(store);
                let answer = body(message.into(), Some(sub), Map::new());
                let correlation_id = &answer.correlation_id;
                tracing::error!(%correlation_id, "store failure: {store}");
                (status, answer)
            }
            GatewayError::SingleLimit(v) => {
                // The subCategory a batch item of the same refusal carries.
                let sub = sub_category(&DomainError::LimitExceeded(v.clone()));
                let ctx = single_limit_context(v);
                (status, body(self.to_string(), Some(sub), ctx))
            }
            GatewayError::NoRoute { .. } => (status, body(self.to_string(), None, Map::new())),
            GatewayError::InvalidField {
                field,
                message,
                sub_category: sub,
            } => {
                let answer = ErrorBody {
                    errors: vec![ErrorDetail {
                        message: one_line(message, MESSAGE_MOST),
                        field: one_line(field, CONTEXT_MOST),
                    }],
                    ..body(message.clone(), Some(sub), Map::new())
                };
                (status, answer)
            }
            GatewayError::Refused { status: code, .. } => {
                let status = StatusPair {
                    http: code.as_u16(),
                    ..status
                };
                (status, body(self.to_string(), None, Map::new()))
            }
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (status, body) = self.status_and_body();
        // A client's mistake (4xx) is its own business: info, not a warning.
        if status.http >= 500 {
            tracing::warn!(
                correlation_id = %body.correlation_id,
                status = status.http,
                category = %body.category,
                "REST request failed: {}",
                body.message
            );
        } else {
            tracing::info!(
                correlation_id = %body.correlation_id,
                status = status.http,
                category = %body.category,
                "REST request refused: {}",
                body.message
            );
        }
        let code = StatusCode::from_u16(status.http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = match &self {
            GatewayError::Service(ServiceError::Domain(err)) => err.retry_after(),
            // The database did not answer: worth trying again shortly.
            GatewayError::Service(err) if err.kind() == ErrorKind::Unavailable => {
                Some(std::time::Duration::from_secs(1))
            }
            _ => None,
        };
        let mut response = (code, axum::Json(body)).into_response();
        if let Some(wait) = retry_after {
            // Whole seconds, rounded up: a client never retries too early.
            let seconds = wait.as_millis().div_ceil(1000).max(1);
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds as u64),
            );
        }
        response
    }
}
