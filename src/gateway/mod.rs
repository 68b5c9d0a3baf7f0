//! The REST gateway: HubSpot's v3, v4 and date-versioned associations JSON
//! (paths, bodies, status codes, paging, error bodies) over the same
//! service layer as gRPC; `version` reads a call's version from its path.
//! Every endpoint is listed once, with the role it needs (`rest_routes!`);
//! HubSpot paths carry no portal, so a call acts on its token's one portal
//! (or, when the service runs open, on the configured default portal).
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{on, MethodFilter};
use axum::Router;

use admit::{admit_call, authorization, exempt_from_window, AllowanceSlot};

use crate::admission::{Admission, CallPlaces, CallerKey, PortalPlace};
use crate::auth::Authenticator;
use crate::domain::access::{Principal, Role};
use crate::domain::error::check_portal;
use crate::domain::object_type::{shown, split_fully_qualified};
use crate::domain::{DomainError, ObjectType};
use crate::service::{AssociationService, PortalPair};

mod admit;
mod batch;
pub mod error;
mod json;
mod limits;
pub mod openapi;
pub mod probes;
pub mod serve;
mod v3;
mod v4;
mod v4_config;
mod version;

use error::GatewayError;

/// Most inputs of a REST batch read (HubSpot's documented cap).
pub const MAX_READ_INPUTS: usize = 1_000;

/// What the router shares with every call.
#[derive(Clone)]
pub struct GatewayState {
    service: Arc<AssociationService>,
    access: Arc<Access>,
    guards: Guards,
}

/// Who may call and how links name the gateway.
pub struct Access {
    /// The portal of an open service.
    pub default_portal: i64,
    pub authenticator: Arc<Authenticator>,
    /// Where clients reach the gateway, for paging links (none: relative).
    pub public_url: Option<String>,
}

/// What every handler needs: the service, the caller and the portal the
/// call acts on; extracting it authorizes the call (its caller was
/// authenticated by `admit_call`) and takes its place in the portal's share.
#[derive(Clone)]
pub struct Gateway {
    service: Arc<AssociationService>,
    portal: i64,
    principal: Principal,
    _portal_place: Arc<PortalPlace>,
    /// The portal's custom object names, loaded when the call names a
    /// custom object by its fully qualified name.
    object_names: Option<Arc<Vec<(ObjectType, String)>>>,
}

/// The address a REST connection comes from (set per connection).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub Option<IpAddr>);

impl FromRequestParts<GatewayState> for Gateway {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &GatewayState,
    ) -> Result<Gateway, GatewayError> {
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str())
            .unwrap_or_default();
        let role = rest_role(&parts.method, path).ok_or_else(|| {
            DomainError::PermissionDenied(format!("{} {path} has no access rule", parts.method))
        })?;
        let principal = match parts.extensions.get::<Principal>() {
            Some(principal) => principal.clone(),
            None => state
                .access
                .authenticator
                .authenticate(authorization(&parts.headers))?,
        };
        let portal = if state.access.authenticator.is_open() {
            state.access.default_portal
        } else {
            principal.scope.single().ok_or_else(|| {
                DomainError::PermissionDenied(format!(
                    "REST calls act on their token's portal, and '{}' reaches more than one: use a token scoped to one portal",
                    principal.name
                ))
            })?
        };
        crate::telemetry::record_portal(portal);
        principal.authorize(role, portal)?;
        let (left, admitted) = state
            .guards
            .admission
            .admit(portal, exempt_from_window(path))
            .await;
        if let Some(slot) = parts.extensions.get::<AllowanceSlot>() {
            *slot.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(left);
        }
        admitted?;
        let place = state.guards.calls.enter_portal(portal)?;
        let object_names = match names_custom_objects(&parts.uri, portal) {
            true => Some(state.service.names_of(portal).await?),
            false => None,
        };
        Ok(Gateway {
            service: Arc::clone(&state.service),
            portal,
            principal,
            _portal_place: Arc::new(place),
            object_names,
        })
    }
}

/// Where `paging.next.link` points: the configured public URL, or
/// nothing (a link relative to the host the client called). Never built
/// from the request's `Host`, which the client chooses.
pub struct BaseUrl(String);

impl FromRequestParts<GatewayState> for BaseUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        _: &mut Parts,
        state: &GatewayState,
    ) -> Result<Self, Self::Rejection> {
        let base = state.access.public_url.as_deref().unwrap_or_default();
        Ok(BaseUrl(base.trim_end_matches('/').to_string()))
    }
}

impl Gateway {
    /// Who makes the call, as the audit trail and plugins see it.
    fn actor(&self) -> &str {
        &self.principal.name
    }

    /// The call's portal and the pair a path names.
    fn pair(&self, from: &str, to: &str) -> Result<PortalPair, DomainError> {
        check_portal(self.portal)?;
        Ok(PortalPair {
            portal: self.portal,
            from: self.object_type(from)?,
            to: self.object_type(to)?,
        })
    }

    /// An object type as a REST call names it: an id, a standard name, or
    /// a custom object's fully qualified name in the call's portal.
    fn object_type(&self, text: &str) -> Result<ObjectType, DomainError> {
        match split_fully_qualified(text.trim()) {
            Some((portal, name)) if portal == self.portal => self
                .object_names
                .iter()
                .flat_map(|names| names.iter())
                .find(|(_, n)| *n == name)
                .map(|(t, _)| *t)
                .ok_or_else(|| DomainError::UnknownObjectType(shown(text))),
            _ => ObjectType::parse(text),
        }
    }
}

/// Whether a call names a custom object of `portal` by its fully qualified
/// name, in its path or its query (`associations=p1_cars,companies`).
fn names_custom_objects(uri: &Uri, portal: i64) -> bool {
    let path = uri.path().split('/');
    let query = uri.query().unwrap_or_default().split(['&', '=', ',', '%']);
    path.chain(query)
        .any(|part| split_fully_qualified(part).is_some_and(|(p, _)| p == portal))
}

/// The object type's id (`0-1`) for links.
fn type_id(name: &str) -> String {
    ObjectType::parse(name)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| name.to_string())
}

/// Answers the HTTP layer's own refusals (a body over the size cap, a path
/// that is not UTF-8, …), which come as plain text, with HubSpot's JSON
/// error body like every other error.
async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    let status = response.status();
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // The refusal's own text, bounded; it names what was wrong.
    let text = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match text.is_empty() {
        true => status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_string(),
        false => text,
    };
    GatewayError::Refused { status, message }.into_response()
}

async fn no_route(method: Method, uri: Uri) -> GatewayError {
    GatewayError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

/// The role each method and route pattern needs.
pub fn rest_role(method: &Method, path: &str) -> Option<Role> {
    REST_ROUTES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, role)| *role)
}

fn filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        other => unreachable!("no REST route uses {other}"),
    }
}

/// Declares every endpoint once: its method, path, handler and role. The
/// router and `REST_ROUTES` both come from this list, so no endpoint exists
/// without an access rule. `v4` paths are served under every prefix of
/// HubSpot's v4 batch endpoints (`/crm/v4/associations`, the
/// spec's `/crm/associations/v4`, and the date-versioned
/// `/crm/associations/2025-09`, `2026-03`, `2026-09`, which carry the same
/// shapes); `schema` paths (labels, limit configurations) under the same
/// prefixes but 2025-09, which HubSpot does not publish; `objects` paths under `/crm/v4/objects` and the date-versioned
/// `/crm/objects/2025-09`, `2026-03`, `2026-09`; `record_reads` (one
/// record's associations) under the same but 2026-09, which publishes it
/// only as 2026-09-beta; `records` (objects, their
/// lists and merges) under `/crm/v3/objects` and the same dated prefixes;
/// `limits` (Limits Tracking)
/// under `/crm/v3/limits/associations` and the date-versioned
/// `/crm/limits/2025-09/associations`, `2026-03`, `2026-09`.
macro_rules! rest_routes {
    (
        v4 { $($v4m:ident $v4p:literal => $v4h:path, $v4r:ident;)* }
        schema { $($sm:ident $sp:literal => $sh:path, $sr:ident;)* }
        objects { $($om:ident $op:literal => $oh:path, $or:ident;)* }
        record_reads { $($pm:ident $pp:literal => $ph:path, $pr:ident;)* }
        records { $($rm:ident $rp:literal => $rh:path, $rr:ident;)* }
        limits { $($lm:ident $lp:literal => $lh:path, $lr:ident;)* }
        rest { $($m:ident $p:literal => $h:path, $r:ident;)* }
    ) => {
        /// (method, route pattern, role) of every REST endpoint.
        pub const REST_ROUTES: &[(&str, &str, Role)] = &[
            $(
                (stringify!($v4m), concat!("/crm/v4/associations", $v4p), Role::$v4r),
                (stringify!($v4m), concat!("/crm/associations/v4", $v4p), Role::$v4r),
                (stringify!($v4m), concat!("/crm/associations/2025-09", $v4p), Role::$v4r),
                (stringify!($v4m), concat!("/crm/associations/2026-03", $v4p), Role::$v4r),
                (stringify!($v4m), concat!("/crm/associations/2026-09", $v4p), Role::$v4r),
            )*
            $(
                (stringify!($sm), concat!("/crm/v4/associations", $sp), Role::$sr),
                (stringify!($sm), concat!("/crm/associations/v4", $sp), Role::$sr),
                (stringify!($sm), concat!("/crm/associations/2026-03", $sp), Role::$sr),
                (stringify!($sm), concat!("/crm/associations/2026-09", $sp), Role::$sr),
            )*
            $(
                (stringify!($om), concat!("/crm/v4/objects", $op), Role::$or),
                (stringify!($om), concat!("/crm/objects/2025-09", $op), Role::$or),
                (stringify!($om), concat!("/crm/objects/2026-03", $op), Role::$or),
                (stringify!($om), concat!("/crm/objects/2026-09", $op), Role::$or),
            )*
            $(
                (stringify!($pm), concat!("/crm/v4/objects", $pp), Role::$pr),
                (stringify!($pm), concat!("/crm/objects/2025-09", $pp), Role::$pr),
                (stringify!($pm), concat!("/crm/objects/2026-03", $pp), Role::$pr),
            )*
            $(
                (stringify!($rm), concat!("/crm/v3/objects", $rp), Role::$rr),
                (stringify!($rm), concat!("/crm/objects/2025-09", $rp), Role::$rr),
                (stringify!($rm), concat!("/crm/objects/2026-03", $rp), Role::$rr),
                (stringify!($rm), concat!("/crm/objects/2026-09", $rp), Role::$rr),
            )*
            $(
                (stringify!($lm), concat!("/crm/v3/limits/associations", $lp), Role::$lr),
                (stringify!($lm), concat!("/crm/limits/2025-09/associations", $lp), Role::$lr),
                (stringify!($lm), concat!("/crm/limits/2026-03/associations", $lp), Role::$lr),
                (stringify!($lm), concat!("/crm/limits/2026-09/associations", $lp), Role::$lr),
            )*
            $((stringify!($m), $p, Role::$r),)*
        ];

        /// (method, route pattern, handler) of every REST endpoint, in the
        /// order of `REST_ROUTES`: what `openapi` describes each by.
        pub const REST_HANDLERS: &[(&str, &str, &str)] = &[
            $(
                (stringify!($v4m), concat!("/crm/v4/associations", $v4p), stringify!($v4h)),
                (stringify!($v4m), concat!("/crm/associations/v4", $v4p), stringify!($v4h)),
                (stringify!($v4m), concat!("/crm/associations/2025-09", $v4p), stringify!($v4h)),
                (stringify!($v4m), concat!("/crm/associations/2026-03", $v4p), stringify!($v4h)),
                (stringify!($v4m), concat!("/crm/associations/2026-09", $v4p), stringify!($v4h)),
            )*
            $(
                (stringify!($sm), concat!("/crm/v4/associations", $sp), stringify!($sh)),
                (stringify!($sm), concat!("/crm/associations/v4", $sp), stringify!($sh)),
                (stringify!($sm), concat!("/crm/associations/2026-03", $sp), stringify!($sh)),
                (stringify!($sm), concat!("/crm/associations/2026-09", $sp), stringify!($sh)),
            )*
            $(
                (stringify!($om), concat!("/crm/v4/objects", $op), stringify!($oh)),
                (stringify!($om), concat!("/crm/objects/2025-09", $op), stringify!($oh)),
                (stringify!($om), concat!("/crm/objects/2026-03", $op), stringify!($oh)),
                (stringify!($om), concat!("/crm/objects/2026-09", $op), stringify!($oh)),
            )*
            $(
                (stringify!($pm), concat!("/crm/v4/objects", $pp), stringify!($ph)),
                (stringify!($pm), concat!("/crm/objects/2025-09", $pp), stringify!($ph)),
                (stringify!($pm), concat!("/crm/objects/2026-03", $pp), stringify!($ph)),
            )*
            $(
                (stringify!($rm), concat!("/crm/v3/objects", $rp), stringify!($rh)),
                (stringify!($rm), concat!("/crm/objects/2025-09", $rp), stringify!($rh)),
                (stringify!($rm), concat!("/crm/objects/2026-03", $rp), stringify!($rh)),
                (stringify!($rm), concat!("/crm/objects/2026-09", $rp), stringify!($rh)),
            )*
            $(
                (stringify!($lm), concat!("/crm/v3/limits/associations", $lp), stringify!($lh)),
                (stringify!($lm), concat!("/crm/limits/2025-09/associations", $lp), stringify!($lh)),
                (stringify!($lm), concat!("/crm/limits/2026-03/associations", $lp), stringify!($lh)),
                (stringify!($lm), concat!("/crm/limits/2026-09/associations", $lp), stringify!($lh)),
            )*
            $((stringify!($m), $p, stringify!($h)),)*
        ];

        fn endpoints() -> Router<GatewayState> {
            let mut router = Router::new();
            for (method, pattern, _) in REST_ROUTES {
                router = route(router, method, pattern);
            }
            router
        }

        /// Adds the handler of one (method, pattern) of `REST_ROUTES`.
        fn route(router: Router<GatewayState>, method: &str, pattern: &'static str) -> Router<GatewayState> {
            $(if method == stringify!($v4m) && pattern.ends_with($v4p) && is_v4_prefix(&pattern[..pattern.len() - $v4p.len()]) {
                return router.route(pattern, on(filter(method), $v4h));
            })*
            $(if method == stringify!($sm) && pattern.ends_with($sp) && SCHEMA_PREFIXES.contains(&&pattern[..pattern.len() - $sp.len()]) {
                return router.route(pattern, on(filter(method), $sh));
            })*
            $(if method == stringify!($om) && pattern.ends_with($op) && is_objects_prefix(&pattern[..pattern.len() - $op.len()]) {
                return router.route(pattern, on(filter(method), $oh));
            })*
            $(if method == stringify!($pm) && pattern.ends_with($pp) && RECORD_READ_PREFIXES.contains(&&pattern[..pattern.len() - $pp.len()]) {
                return router.route(pattern, on(filter(method), $ph));
            })*
            $(if method == stringify!($rm) && pattern.ends_with($rp) && RECORDS_PREFIXES.contains(&&pattern[..pattern.len() - $rp.len()]) {
                return router.route(pattern, on(filter(method), $rh));
            })*
            $(if method == stringify!($lm) && pattern.ends_with($lp) && LIMITS_PREFIXES.contains(&&pattern[..pattern.len() - $lp.len()]) {
                return router.route(pattern, on(filter(method), $lh));
            })*
            $(if method == stringify!($m) && pattern == $p {
                return router.route(pattern, on(filter(method), $h));
            })*
            unreachable!("every listed route has a handler: {method} {pattern}")
        }
    };
}

/// The prefixes of HubSpot's v4 association paths.
const V4_PREFIXES: [&str; 5] = [
    "/crm/v4/associations",
    "/crm/associations/v4",
    "/crm/associations/2025-09",
    "/crm/associations/2026-03",
    "/crm/associations/2026-09",
];
/// The prefixes of HubSpot's association schema paths (labels and limit
/// configurations): HubSpot publishes no 2025-09 version of them.
const SCHEMA_PREFIXES: [&str; 4] = [
    "/crm/v4/associations",
    "/crm/associations/v4",
    "/crm/associations/2026-03",
    "/crm/associations/2026-09",
];
/// The prefixes of HubSpot's v4 record association paths.
const OBJECTS_PREFIXES: [&str; 4] = [
    "/crm/v4/objects",
    "/crm/objects/2025-09",
    "/crm/objects/2026-03",
    "/crm/objects/2026-09",
];

/// The prefixes of HubSpot's read of one record's associations: 2026-09
/// publishes it only as 2026-09-beta.
const RECORD_READ_PREFIXES: [&str; 3] = [
    "/crm/v4/objects",
    "/crm/objects/2025-09",
    "/crm/objects/2026-03",
];

/// The prefixes of HubSpot's objects paths (records, their lists, merges).
const RECORDS_PREFIXES: [&str; 4] = [
    "/crm/v3/objects",
    "/crm/objects/2025-09",
    "/crm/objects/2026-03",
    "/crm/objects/2026-09",
];

/// The prefixes of HubSpot's Limits Tracking paths for associations.
const LIMITS_PREFIXES: [&str; 4] = [
    "/crm/v3/limits/associations",
    "/crm/limits/2025-09/associations",
    "/crm/limits/2026-03/associations",
    "/crm/limits/2026-09/associations",
];

fn is_v4_prefix(prefix: &str) -> bool {
    V4_PREFIXES.contains(&prefix)
}

fn is_objects_prefix(prefix: &str) -> bool {
    OBJECTS_PREFIXES.contains(&prefix)
}

rest_routes! {
    v4 {
        POST "/{from}/{to}/batch/read" => v4::batch_read, Read;
        POST "/{from}/{to}/batch/create" => v4::batch_create, Write;
        POST "/{from}/{to}/batch/associate/default" => v4::batch_create_default, Write;
        POST "/{from}/{to}/batch/archive" => v4::batch_archive, Write;
        POST "/{from}/{to}/batch/labels/archive" => v4::batch_archive_labels, Write;
        POST "/usage/high-usage-report/{user_id}" => limits::high_usage_report, Admin;
    }
    schema {
        // Reading the labels is a read, like gRPC's ListDefinitions.
        GET "/{from}/{to}/labels" => v4_config::list_labels, Read;
        POST "/{from}/{to}/labels" => v4_config::create_label, Admin;
        PUT "/{from}/{to}/labels" => v4_config::update_label, Admin;
        DELETE "/{from}/{to}/labels/{type_id}" => v4_config::delete_label, Admin;
        GET "/definitions/configurations/all" => v4_config::all_limits, Admin;
        GET "/definitions/configurations/{from}/{to}" => v4_config::pair_limits, Admin;
        POST "/definitions/configurations/{from}/{to}/batch/create" => v4_config::create_limits, Admin;
        POST "/definitions/configurations/{from}/{to}/batch/update" => v4_config::update_limits, Admin;
        POST "/definitions/configurations/{from}/{to}/batch/purge" => v4_config::purge_limits, Admin;
    }
    objects {
        PUT "/{object_type}/{id}/associations/{to}/{to_id}" => v4::create_labelled, Write;
        DELETE "/{object_type}/{id}/associations/{to}/{to_id}" => v4::archive_pair, Write;
        PUT "/{object_type}/{id}/associations/default/{to}/{to_id}" => v4::create_default, Write;
    }
    record_reads {
        GET "/{object_type}/{id}/associations/{to}" => v4::record_page, Read;
    }
    records {
        GET "/{object_type}" => v3::list_objects, Read;
        GET "/{object_type}/{id}" => v3::get_object, Read;
        POST "/{object_type}/merge" => v3::merge, Write;
    }
    limits {
        GET "/records/from" => limits::records_from, Read;
        GET "/records/{from}/to" => limits::records_to, Read;
        GET "/records/{from}/{to}" => limits::records_of_pair, Read;
        GET "/labels" => limits::labels, Read;
    }
    rest {
        GET "/crm/v3/objects/{object_type}/{id}/associations/{to}" => v3::record_page, Read;
        PUT "/crm/v3/objects/{object_type}/{id}/associations/{to}/{to_id}/{association_type}" => v3::create_one, Write;
        DELETE "/crm/v3/objects/{object_type}/{id}/associations/{to}/{to_id}/{association_type}" => v3::archive_one, Write;
        POST "/crm/v3/associations/{from}/{to}/batch/read" => v3::batch_read, Read;
        POST "/crm/v3/associations/{from}/{to}/batch/create" => v3::batch_create, Write;
        POST "/crm/v3/associations/{from}/{to}/batch/archive" => v3::batch_archive, Write;
        GET "/crm/v3/associations/{from}/{to}/types" => v3::types, Read;
    }
}

/// How the gateway guards itself: the call rates of each portal, the fair
/// share of calls served at once, and how long a call and its body may take.
#[derive(Clone)]
pub struct Guards {
    pub admission: Arc<Admission>,
    pub calls: Arc<CallPlaces>,
    pub request_timeout: Duration,
    /// Longest wait for the next part of a body.
    pub body_read_timeout: Duration,
    /// Time a body has to arrive whole.
    pub body_timeout: Duration,
}

/// Every REST endpoint; without tokens, calls act on `default_portal`.
pub fn router(service: Arc<AssociationService>, access: Access, guards: Guards) -> Router {
    let state = GatewayState {
        service,
        access: Arc::new(access),
        guards: guards.clone(),
    };
    let bounded = tower::ServiceBuilder::new()
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            guards.request_timeout,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            guards.body_read_timeout,
        ));
    endpoints()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admit_call,
        ))
        .route("/openapi.json", axum::routing::get(openapi::serve))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(bounded)
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn(probes::observe_call))
        .with_state(state)
}
