//! Authentication and authorization of gRPC calls: a tower layer before
//! every service authenticates the `authorization` metadata, checks the role
//! its service needs (`rpc_access`, deny by default) and hands the principal
//! to the handler, which checks the request's portal (`authorize`). The
//! layer also answers a request that is not valid protobuf as the caller's
//! error (`INVALID_ARGUMENT` with `ErrorInfo`), where tonic says `INTERNAL`.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::{Request, Status};
use tower::{Layer, Service};

use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::domain::access::{Principal, Role};
use crate::domain::DomainError;
use crate::grpc::streams::{HeldBody, StreamCaps};

/// What a gRPC path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcAccess {
    /// Served to anyone: health checks (for probes) and reflection.
    Open,
    /// An authenticated principal with this role.
    Role(Role),
}

/// What each gRPC service needs; a service not named here is refused.
pub const SERVICE_ACCESS: &[(&str, RpcAccess)] = &[
    (
        "associations.v1.AssociationWrite",
        RpcAccess::Role(Role::Write),
    ),
    (
        "associations.v1.AssociationRead",
        RpcAccess::Role(Role::Read),
    ),
    ("associations.v1.AdminConfig", RpcAccess::Role(Role::Admin)),
    ("grpc.health.v1.Health", RpcAccess::Open),
    ("grpc.reflection.v1.ServerReflection", RpcAccess::Open),
    ("grpc.reflection.v1alpha.ServerReflection", RpcAccess::Open),
];

/// What the call on `path` (`/package.Service/Method`) needs, if it is served.
pub fn rpc_access(path: &str) -> Option<RpcAccess> {
    let service = path.strip_prefix('/')?.split('/').next()?;
    SERVICE_ACCESS
        .iter()
        .find(|(name, _)| *name == service)
        .map(|(_, access)| *access)
}

/// The layer that guards every gRPC service.
#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
    admission: Arc<Admission>,
    streams: Arc<StreamCaps>,
}

impl AuthLayer {
    pub fn new(
        authenticator: Arc<Authenticator>,
        admission: Arc<Admission>,
        streams: Arc<StreamCaps>,
    ) -> AuthLayer {
        AuthLayer {
            authenticator,
            admission,
            streams,
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            authenticator: Arc::clone(&self.authenticator),
            admission: Arc::clone(&self.admission),
            streams: Arc::clone(&self.streams),
        }
    }
}

/// A gRPC service behind `AuthLayer`.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
    admission: Arc<Admission>,
    streams: Arc<StreamCaps>,
}

/// The principal a call on `path` with these headers acts as (none for an
/// open service such as health).
fn admit(
    authenticator: &Authenticator,
    path: &str,
    headers: &http::HeaderMap,
) -> Result<Option<Principal>, DomainError> {
    let role = match rpc_access(path) {
        Some(RpcAccess::Open) => return Ok(None),
        Some(RpcAccess::Role(role)) => role,
        None => {
            return Err(DomainError::PermissionDenied(format!(
                "{path} has no access rule"
            )))
        }
    };
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let principal = authenticator.authenticate(authorization)?;
    principal.require_role(role)?;
    Ok(Some(principal))
}

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let admitted = admit(&self.authenticator, &path, request.headers()).and_then(|principal| {
            // Streams are capped per principal once callers have names.
            let place = match (&principal, self.authenticator.is_open()) {
                (Some(principal), false) => self.streams.take(&principal.name, &path)?,
                _ => None,
            };
            Ok((principal, place))
        });
        match admitted {
            Ok((principal, place)) => {
                if let Some(principal) = principal {
                    request.extensions_mut().insert(principal);
                    request.extensions_mut().insert(Arc::clone(&self.admission));
                }
                let answer = self.inner.call(request);
                Box::pin(async move {
                    let response = match answer.await.map_err(Into::into) {
                        Ok(response) => response,
                        // Shed by the concurrency limit below this layer.
                        Err(err) if err.is::<tower::load_shed::error::Overloaded>() => {
                            return Ok(Status::from(DomainError::Overloaded).into_http());
                        }
                        Err(err) => return Err(err),
                    };
                    Ok(match (undecodable(&response), place) {
                        (Some(detail), _) => Status::from(DomainError::InvalidArgument(format!(
                            "the request to {path} is not a valid protobuf message: {detail}"
                        )))
                        .into_http(),
                        (None, Some(place)) => {
                            response.map(|inner| tonic::body::Body::new(HeldBody { inner, place }))
                        }
                        (None, None) => response,
                    })
                })
            }
            Err(err) => {
                let status = Status::from(err);
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// The decoder's complaint, when an answer is tonic's refusal of a request
/// that is not valid protobuf.
fn undecodable(response: &http::Response<tonic::body::Body>) -> Option<String> {
    let status = Status::from_header_map(response.headers())?;
    let detail = status
        .message()
        .strip_prefix("failed to decode Protobuf message: ")?;
    (status.code() == tonic::Code::Internal).then(|| detail.to_string())
}

/// Checks that the call's principal may act on `portal` (its role was
/// checked before the call reached the handler).
pub fn authorize<T>(request: &Request<T>, role: Role, portal: i64) -> Result<(), Status> {
    let principal = caller(request)?;
    crate::telemetry::record_portal(portal);
    principal.authorize(role, portal)?;
    match request.extensions().get::<Arc<Admission>>() {
        Some(admission) => admission.admit(portal).map_err(Status::from),
        None => Ok(()),
    }
}

/// The principal the layer admitted.
pub fn caller<T>(request: &Request<T>) -> Result<&Principal, Status> {
    request.extensions().get::<Principal>().ok_or_else(|| {
        Status::from(DomainError::Unauthenticated(
            "the call reached its handler without a principal".into(),
        ))
    })
}
