//! The HubSpot API version a REST call speaks, read in one place from the
//! prefix its route matched, and the statuses and bodies each version gives
//! batch answers (v3, v4, and the date-versioned 2025-09, 2026-03, 2026-09).
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::GatewayError;
use super::json::BatchResponse;

/// A version of HubSpot's REST API, as a path prefix names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    V3,
    V4,
    /// `…/2025-09/…`.
    Dated2025,
    /// `…/2026-03/…`.
    Dated2026Mar,
    /// `…/2026-09/…`.
    Dated2026Sep,
}

/// What a batch call does, which sets its success status per version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchKind {
    /// Reads and updates: 200, or 207 when some inputs failed.
    Read,
    /// Creates: 201, or 207 when some inputs failed.
    Create,
    /// Archives and purges: 204 with no body before the dated versions.
    Void,
}

/// Each version's path segment.
const SEGMENTS: [(&str, ApiVersion); 5] = [
    ("v3", ApiVersion::V3),
    ("v4", ApiVersion::V4),
    ("2025-09", ApiVersion::Dated2025),
    ("2026-03", ApiVersion::Dated2026Mar),
    ("2026-09", ApiVersion::Dated2026Sep),
];

impl ApiVersion {
    /// The version a route pattern or path names: its second or third
    /// segment (`/crm/v4/…`, `/crm/associations/v4/…`,
    /// `/crm/objects/2026-03/…`, `/crm/limits/2025-09/…`).
    pub fn of_path(path: &str) -> Option<ApiVersion> {
        path.strip_prefix("/crm/")?
            .split('/')
            .take(2)
            .find_map(|segment| {
                SEGMENTS
                    .iter()
                    .find(|(s, _)| *s == segment)
                    .map(|(_, v)| *v)
            })
    }

    /// The path segment that names this version (`v4`, `2026-03`, …).
    pub fn segment(self) -> &'static str {
        SEGMENTS
            .iter()
            .find(|(_, v)| *v == self)
            .map(|(s, _)| *s)
            .expect("every version has a segment")
    }

    /// Where this version's record paths start, for links and `Location`.
    pub fn objects_prefix(self) -> &'static str {
        match self {
            ApiVersion::V3 => "/crm/v3/objects",
            ApiVersion::V4 => "/crm/v4/objects",
            ApiVersion::Dated2025 => "/crm/objects/2025-09",
            ApiVersion::Dated2026Mar => "/crm/objects/2026-03",
            ApiVersion::Dated2026Sep => "/crm/objects/2026-09",
        }
    }

    /// The success status of a batch answer of `kind` (`None`: 204, no body).
    pub fn batch_status(self, kind: BatchKind, has_errors: bool) -> Option<StatusCode> {
        Some(match (self, kind) {
            // 2026-09 answers every batch with 200, errors inside the body.
            (ApiVersion::Dated2026Sep, _) => StatusCode::OK,
            (ApiVersion::V3 | ApiVersion::V4, BatchKind::Void) => return None,
            (_, BatchKind::Void) => StatusCode::OK,
            (_, _) if has_errors => StatusCode::MULTI_STATUS,
            (_, BatchKind::Read) => StatusCode::OK,
            (_, BatchKind::Create) => StatusCode::CREATED,
        })
    }

    /// A batch answer as this version gives it.
    pub fn batch<T: Serialize>(self, kind: BatchKind, response: BatchResponse<T>) -> Response {
        match self.batch_status(kind, response.has_errors()) {
            Some(status) => (status, Json(response)).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ApiVersion, GatewayError> {
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str())
            .unwrap_or_default();
        ApiVersion::of_path(path).ok_or_else(|| GatewayError::NoRoute {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_names_its_version() {
        for (_, pattern, _) in super::super::REST_ROUTES {
            assert!(
                ApiVersion::of_path(pattern).is_some(),
                "{pattern} names no version"
            );
        }
        assert_eq!(
            ApiVersion::of_path("/crm/associations/v4/definitions/configurations/all"),
            Some(ApiVersion::V4)
        );
        assert_eq!(
            ApiVersion::of_path("/crm/limits/2026-09/associations/labels"),
            Some(ApiVersion::Dated2026Sep)
        );
        assert_eq!(
            ApiVersion::of_path("/crm/objects/2025-09/contacts/1"),
            Some(ApiVersion::Dated2025)
        );
        assert_eq!(ApiVersion::of_path("/crm/contacts/list"), None);
    }

    #[test]
    fn batch_statuses_follow_each_version() {
        use ApiVersion::*;
        use BatchKind::*;
        let ok = Some(StatusCode::OK);
        let multi = Some(StatusCode::MULTI_STATUS);
        let created = Some(StatusCode::CREATED);
        for version in [V3, V4, Dated2025, Dated2026Mar] {
            assert_eq!(version.batch_status(Read, false), ok);
            assert_eq!(version.batch_status(Read, true), multi);
            assert_eq!(version.batch_status(Create, false), created);
            assert_eq!(version.batch_status(Create, true), multi);
        }
        for kind in [Read, Create, Void] {
            for errors in [false, true] {
                assert_eq!(Dated2026Sep.batch_status(kind, errors), ok);
            }
        }
        assert_eq!(V3.batch_status(Void, false), None);
        assert_eq!(V4.batch_status(Void, false), None);
        assert_eq!(Dated2025.batch_status(Void, false), ok);
        assert_eq!(Dated2026Mar.batch_status(Void, false), ok);
    }
}
