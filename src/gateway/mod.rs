//! The REST gateway: HubSpot's v3 and v4 associations JSON (paths, bodies,
//! status codes, paging, error bodies) over the same service layer as gRPC.
//! HubSpot paths carry no portal, so every call acts on the configured
//! default portal.
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::domain::admin::ANONYMOUS;
use crate::domain::{DomainError, ObjectType};
use crate::service::{AssociationService, PortalPair};

mod batch;
pub mod error;
mod json;
mod v3;
mod v4;
mod v4_config;

use error::GatewayError;

/// Most inputs of a REST batch read (HubSpot's documented cap).
pub const MAX_READ_INPUTS: usize = 1_000;

/// What every handler needs: the service and the portal REST acts on.
#[derive(Clone)]
pub struct Gateway {
    service: Arc<AssociationService>,
    portal: i64,
}

/// The scheme and host the client called, for `paging.next.link`.
pub struct BaseUrl(String);

impl<S: Send + Sync> FromRequestParts<S> for BaseUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost");
        Ok(BaseUrl(format!("http://{host}")))
    }
}

/// Who makes an admin call: the `x-actor` header, or "anonymous".
pub struct Actor(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let actor = parts
            .headers
            .get("x-actor")
            .and_then(|h| h.to_str().ok())
            .unwrap_or(ANONYMOUS);
        Ok(Actor(actor.to_string()))
    }
}

impl Gateway {
    /// The configured portal and the pair a path names.
    fn pair(&self, from: &str, to: &str) -> Result<PortalPair, DomainError> {
        PortalPair::parse(self.portal, from, to)
    }
}

/// The object type's id (`0-1`) for links.
fn type_id(name: &str) -> String {
    ObjectType::parse(name)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| name.to_string())
}

async fn no_route(method: Method, uri: Uri) -> GatewayError {
    GatewayError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

/// Association and schema paths, served under both v4 prefixes.
fn v4_associations() -> Router<Gateway> {
    Router::new()
        .route(
            "/{from}/{to}/labels",
            get(v4_config::list_labels)
                .post(v4_config::create_label)
                .put(v4_config::update_label),
        )
        .route(
            "/{from}/{to}/labels/{type_id}",
            delete(v4_config::delete_label),
        )
        .route(
            "/definitions/configurations/all",
            get(v4_config::all_limits),
        )
        .route(
            "/definitions/configurations/{from}/{to}",
            get(v4_config::pair_limits),
        )
        .route(
            "/definitions/configurations/{from}/{to}/batch/create",
            post(v4_config::create_limits),
        )
        .route(
            "/definitions/configurations/{from}/{to}/batch/update",
            post(v4_config::update_limits),
        )
        .route(
            "/definitions/configurations/{from}/{to}/batch/purge",
            post(v4_config::purge_limits),
        )
        .route("/{from}/{to}/batch/read", post(v4::batch_read))
        .route("/{from}/{to}/batch/create", post(v4::batch_create))
        .route(
            "/{from}/{to}/batch/associate/default",
            post(v4::batch_create_default),
        )
        .route("/{from}/{to}/batch/archive", post(v4::batch_archive))
        .route(
            "/{from}/{to}/batch/labels/archive",
            post(v4::batch_archive_labels),
        )
}

/// Every REST endpoint, acting on `portal`.
pub fn router(service: Arc<AssociationService>, portal: i64) -> Router {
    Router::new()
        .nest("/crm/v4/associations", v4_associations())
        .nest("/crm/associations/v4", v4_associations())
        .route(
            "/crm/v4/objects/{object_type}/{id}/associations/{to}",
            get(v4::record_page),
        )
        .route(
            "/crm/v4/objects/{object_type}/{id}/associations/{to}/{to_id}",
            put(v4::create_labelled).delete(v4::archive_pair),
        )
        .route(
            "/crm/v4/objects/{object_type}/{id}/associations/default/{to}/{to_id}",
            put(v4::create_default),
        )
        .route("/crm/v3/objects/{object_type}", get(v3::list_objects))
        .route("/crm/v3/objects/{object_type}/{id}", get(v3::get_object))
        .route("/crm/v3/objects/{object_type}/merge", post(v3::merge))
        .route(
            "/crm/v3/objects/{object_type}/{id}/associations/{to}",
            get(v3::record_page),
        )
        .route(
            "/crm/v3/objects/{object_type}/{id}/associations/{to}/{to_id}/{association_type}",
            put(v3::create_one).delete(v3::archive_one),
        )
        .route(
            "/crm/v3/associations/{from}/{to}/batch/read",
            post(v3::batch_read),
        )
        .route(
            "/crm/v3/associations/{from}/{to}/batch/create",
            post(v3::batch_create),
        )
        .route(
            "/crm/v3/associations/{from}/{to}/batch/archive",
            post(v3::batch_archive),
        )
        .route("/crm/v3/associations/{from}/{to}/types", get(v3::types))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .with_state(Gateway { service, portal })
}
