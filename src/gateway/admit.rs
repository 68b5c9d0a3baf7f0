//! A REST call's admission, before its handler: the caller authenticated
//! (and, running open, kept to this machine), its place among its caller's
//! calls and its body's time bounded, and HubSpot's rate-limit headers on
//! its answer.
use std::sync::Arc;

use super::*;

/// What the call's portal has left of its rate, filled in when the call is
/// admitted, for HubSpot's rate-limit headers on its answer.
#[derive(Clone, Default)]
pub(super) struct AllowanceSlot(
    pub(super) Arc<std::sync::Mutex<Option<crate::admission::Allowance>>>,
);

/// Whether a route's calls skip the short window: HubSpot's specs mark its
/// batch association operations so (`x-hubspot-rate-limit-exemptions:
/// ["ten-secondly"]`); they still count against a daily quota.
pub(super) fn exempt_from_window(pattern: &str) -> bool {
    pattern.contains("/batch/") && !pattern.contains("/definitions/configurations/")
}

/// HubSpot's rate-limit headers for `left`: the short window's, and the
/// daily quota's when one is set.
fn rate_limit_headers(headers: &mut axum::http::HeaderMap, left: crate::admission::Allowance) {
    let window = left.window.map(|w| {
        [
            ("x-hubspot-ratelimit-max", u64::from(w.max)),
            ("x-hubspot-ratelimit-remaining", u64::from(w.remaining)),
            ("x-hubspot-ratelimit-interval-milliseconds", w.interval_ms),
        ]
    });
    let daily = left.daily.map(|d| {
        [
            ("x-hubspot-ratelimit-daily", u64::from(d.max)),
            (
                "x-hubspot-ratelimit-daily-remaining",
                u64::from(d.remaining),
            ),
        ]
    });
    for (name, value) in window
        .into_iter()
        .flatten()
        .chain(daily.into_iter().flatten())
    {
        headers.insert(name, axum::http::HeaderValue::from(value));
    }
}

/// The `Authorization` header, as text.
pub(super) fn authorization(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("(not text)"))
}

/// What an open service (no credentials, loopback only) asks of a REST
/// call so that a web page open in a browser on the same machine cannot
/// make it: a call a browser sends from another site carries an `Origin`
/// that is not a loopback one, and a cross-site POST a page can send
/// without asking first is not `application/json`.
fn same_machine_only(request: &axum::extract::Request) -> Result<(), DomainError> {
    let headers = request.headers();
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let host = origin
            .to_str()
            .ok()
            .and_then(|o| o.parse::<Uri>().ok())
            .and_then(|uri| uri.host().map(str::to_string));
        let loopback = host.is_some_and(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        });
        if !loopback {
            return Err(DomainError::PermissionDenied(
                "the service runs without authentication, so it refuses calls from web pages of other sites (their Origin is not a loopback address)".into(),
            ));
        }
    }
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if request.method() == Method::POST && !json {
        return Err(DomainError::InvalidArgument(
            "send the body as Content-Type: application/json (the service runs without authentication, and refuses other bodies so that web pages cannot post to it)".into(),
        ));
    }
    Ok(())
}

/// Largest REST request body (axum's JSON default).
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Admits a routed call before anything of it is served: authenticates its
/// caller, gives it a place in the caller's fair share of concurrent calls
/// (an unauthenticated caller counts by its address), then reads its body,
/// which must arrive whole within the body timeout, while holding only
/// that place. The place is held until the answer is ready.
pub(super) async fn admit_call(
    axum::extract::State(state): axum::extract::State<GatewayState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let open = state.access.authenticator.is_open();
    if open {
        if let Err(err) = same_machine_only(&request) {
            return GatewayError::from(err).into_response();
        }
    }
    let principal = match state
        .access
        .authenticator
        .authenticate(authorization(request.headers()))
    {
        Ok(principal) => principal,
        Err(err) => return GatewayError::from(err).into_response(),
    };
    let peer = request.extensions().get::<PeerAddr>().and_then(|p| p.0);
    let caller = CallerKey::of(Some(&principal), open, peer);
    let place = match state.guards.calls.enter(&caller) {
        Ok(place) => place,
        Err(err) => return GatewayError::from(err).into_response(),
    };
    let (parts, body) = request.into_parts();
    let timeout = state.guards.body_timeout;
    let bytes =
        match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(err)) => {
                let too_large = std::error::Error::source(&err)
                    .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
                let (status, message) = match too_large {
                    true => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "the request body is larger than 2 MiB".to_string(),
                    ),
                    false => (
                        StatusCode::BAD_REQUEST,
                        "the request body could not be read in time".to_string(),
                    ),
                };
                return GatewayError::Refused { status, message }.into_response();
            }
            Err(_) => {
                crate::telemetry::refused("body_timeout");
                return GatewayError::from(DomainError::RequestTooSlow {
                    timeout_ms: timeout.as_millis() as u64,
                })
                .into_response();
            }
        };
    let mut request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    request.extensions_mut().insert(principal);
    let slot = AllowanceSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    drop(place);
    let left = *slot.0.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(left) = left {
        rate_limit_headers(response.headers_mut(), left);
    }
    response
}
