//! Authentication, authorization and admission of gRPC calls: a tower layer
//! before every service authenticates the `authorization` metadata, checks
//! the role its service needs (`rpc_access`, deny by default), and only
//! then gives the call a place in its caller's fair share of concurrent
//! calls (and a stream place), bounds the time its request body may take,
//! and hands the principal to the handler, which checks the request's
//! portal and takes the portal's share (`authorize`). The layer also
//! answers a request that is not valid protobuf as the caller's error
//! (`INVALID_ARGUMENT` with `ErrorInfo`), where tonic says `INTERNAL`.
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::http;
use tonic::{Request, Status};
use tower::{Layer, Service};

use crate::admission::{Admission, CallPlaces, CallerKey, PortalPlace};
use crate::auth::Authenticator;
use crate::domain::access::{Principal, Role};
use crate::domain::DomainError;
use crate::grpc::metrics::client_streaming;
use crate::grpc::streams::{Arriving, HeldBody, Recheck, StreamCaps};
use crate::listen::PeerInfo;

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
    guard: Arc<Guard>,
}

/// What the layer checks calls against.
pub struct Guard {
    pub authenticator: Arc<Authenticator>,
    pub admission: Arc<Admission>,
    pub streams: Arc<StreamCaps>,
    pub calls: Arc<CallPlaces>,
    /// Time a request body has to arrive whole (a client stream: each message).
    pub body_timeout: Duration,
    /// How often an open stream's credentials are checked again.
    pub recheck: Duration,
    /// Longest time to a call's answer, except for calls that take a stream
    /// of requests (an import), which are bounded by their progress: each
    /// message within `body_timeout` of the one before.
    pub request_timeout: Duration,
}

impl AuthLayer {
    pub fn new(guard: Guard) -> AuthLayer {
        AuthLayer {
            guard: Arc::new(guard),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            guard: Arc::clone(&self.guard),
        }
    }
}

impl Guard {
    /// The request as the service sees it: its body held to the body
    /// timeout, and in its extensions what the handlers read (the portal
    /// slot, the call places, the principal and admission).
    fn prepare(
        &self,
        request: http::Request<Body>,
        path: &str,
        portal_slot: &PortalSlot,
        principal: Option<Principal>,
    ) -> http::Request<Body> {
        let streaming = client_streaming(path);
        let mut request =
            request.map(|body| Body::new(Arriving::new(body, self.body_timeout, streaming)));
        let extensions = request.extensions_mut();
        extensions.insert(portal_slot.clone());
        extensions.insert(Arc::clone(&self.calls));
        if let Some(principal) = principal {
            extensions.insert(principal);
            extensions.insert(Arc::clone(&self.admission));
        }
        request
    }
}

/// A gRPC service behind `AuthLayer`.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: Arc<Guard>,
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
            return Err(DomainError::PermissionDenied(
                "this gRPC service has no access rule".into(),
            ))
        }
    };
    let principal = authenticator.authenticate(authorization(headers))?;
    principal.require_role(role)?;
    Ok(Some(principal))
}

/// The `authorization` metadata, as text.
fn authorization(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("(not text)"))
}

/// A call's place in its portal's share, filled in by `authorize` once the
/// request names its portal and held until the call's answer is ready.
#[derive(Clone, Default)]
pub struct PortalSlot(Arc<Mutex<Option<PortalPlace>>>);

impl<S> Service<http::Request<Body>> for Guarded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let guard = Arc::clone(&self.guard);
        let path = request.uri().path().to_string();
        let connection = request.extensions().get::<PeerInfo>().cloned();
        let peer = connection
            .as_ref()
            .and_then(|info| info.remote)
            .map(|addr| addr.ip());
        let active = connection.map(|info| info.activity.begin());
        let open = guard.authenticator.is_open();
        // Who calls is known before the call holds anything shared.
        let admitted =
            admit(&guard.authenticator, &path, request.headers()).and_then(|principal| {
                let caller = CallerKey::of(principal.as_ref(), open, peer);
                let call = guard.calls.enter(&caller)?;
                // Streams are capped per principal once callers have names.
                let place = match (&principal, open) {
                    (Some(principal), false) => guard.streams.take(&principal.name, &path)?,
                    _ => None,
                };
                Ok((principal, call, place))
            });
        let (principal, call, place) = match admitted {
            Ok(admitted) => admitted,
            Err(err) => {
                let status = Status::from(err);
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        };
        // A named caller's stream is ended when its credentials are.
        let recheck = match (&principal, place.is_some()) {
            (Some(_), true) => Some(Recheck::new(
                Arc::clone(&guard.authenticator),
                authorization(request.headers()).map(str::to_string),
                guard.recheck,
            )),
            _ => None,
        };
        let portal_slot = PortalSlot::default();
        let request = guard.prepare(request, &path, &portal_slot, principal);
        let answer = self.inner.call(request);
        let deadline = (!client_streaming(&path)).then_some(guard.request_timeout);
        Box::pin(async move {
            let answer = match deadline {
                Some(deadline) => match tokio::time::timeout(deadline, answer).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        crate::telemetry::refused("call_timeout");
                        let timeout_ms = deadline.as_millis() as u64;
                        return Ok(
                            Status::from(DomainError::CallTooSlow { timeout_ms }).into_http()
                        );
                    }
                },
                None => answer.await,
            };
            let response = answer.map_err(Into::into)?;
            drop((call, portal_slot));
            if let Some(detail) = undecodable(&response) {
                return Ok(Status::from(DomainError::InvalidArgument(format!(
                    "the request to {path} is not a valid protobuf message: {detail}"
                )))
                .into_http());
            }
            Ok(response.map(|inner| {
                Body::new(HeldBody {
                    inner,
                    _place: place,
                    recheck,
                    _active: active,
                })
            }))
        })
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
/// checked before the call reached the handler); awaiting the answer
/// admits the call against the portal's rates and takes its place in the
/// portal's share: `authorize(&request, role, portal)?.await?`.
pub fn authorize<T>(request: &Request<T>, role: Role, portal: i64) -> Result<Admitting, Status> {
    let principal = caller(request)?;
    crate::telemetry::record_portal(portal);
    principal.authorize(role, portal)?;
    let extensions = request.extensions();
    Ok(Admitting {
        portal,
        admission: extensions.get::<Arc<Admission>>().cloned(),
        calls: extensions.get::<Arc<CallPlaces>>().cloned(),
        slot: extensions.get::<PortalSlot>().cloned(),
    })
}

/// An authorized call on its way to admission.
pub struct Admitting {
    portal: i64,
    admission: Option<Arc<Admission>>,
    calls: Option<Arc<CallPlaces>>,
    slot: Option<PortalSlot>,
}

impl std::future::IntoFuture for Admitting {
    type Output = Result<(), Status>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            if let Some(admission) = &self.admission {
                admission.admit(self.portal, false).await.1?;
            }
            // The call's place in its portal's share (a call that names
            // portals twice keeps its first place).
            if let (Some(calls), Some(slot)) = (&self.calls, &self.slot) {
                let mut held = slot.0.lock().unwrap_or_else(|e| e.into_inner());
                if held.is_none() {
                    *held = Some(calls.enter_portal(self.portal)?);
                }
            }
            Ok(())
        })
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
