//! Admission for both front ends: per-portal call rates (each portal may
//! make `per_second` calls a second with bursts of `burst`, the GCRA of the
//! `governor` crate; a call past it is refused with the wait after which it
//! would pass, and an admitted one learns what is left, `Allowance`) and the
//! fair share of concurrent calls (`CallPlaces`).
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::access::Principal;
use crate::domain::DomainError;
use crate::service::Places;

/// Admits calls by portal.
pub struct Admission {
    /// The limiter, the rate a second and the burst.
    rates: Option<(
        DefaultKeyedRateLimiter<i64, StateInformationMiddleware>,
        u32,
        u32,
    )>,
}

/// What a portal may still call, as HubSpot's rate-limit headers say it:
/// `max` calls (the burst) per `interval_ms` (the time a spent burst takes
/// to come back at the portal's rate), `remaining` of them now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    pub max: u32,
    pub remaining: u32,
    pub interval_ms: u64,
}

impl Admission {
    /// `per_second` calls a second per portal, bursts of `burst`; 0: no limit.
    pub fn new(per_second: u32, burst: u32) -> Admission {
        let rates = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            let quota = Quota::per_second(rate).allow_burst(burst);
            (
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
                per_second,
                burst.get(),
            )
        });
        Admission { rates }
    }

    /// Counts one call of `portal`: its allowance left (none without a
    /// rate), or refused when its rate is used up.
    pub fn admit(&self, portal: i64) -> Result<Option<Allowance>, DomainError> {
        let Some((limiter, per_second, _)) = &self.rates else {
            return Ok(None);
        };
        let checked = limiter
            .check_key(&portal)
            .map(|snapshot| self.allowance(snapshot.remaining_burst_capacity()));
        checked.map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            DomainError::RateLimited {
                portal,
                per_second: *per_second,
                retry_after_ms: (wait.as_millis() as u64).max(1),
            }
        })
    }

    /// A refused portal's allowance (nothing remaining), for the headers of
    /// its refusal; none without a rate.
    pub fn exhausted(&self) -> Option<Allowance> {
        self.allowance(0)
    }

    fn allowance(&self, remaining: u32) -> Option<Allowance> {
        let (_, per_second, burst) = self.rates.as_ref()?;
        Some(Allowance {
            max: *burst,
            remaining,
            interval_ms: u64::from(*burst) * 1_000 / u64::from(*per_second),
        })
    }

    /// Forgets portals whose allowance is full again (bounds memory).
    pub fn forget_idle(&self) {
        if let Some((limiter, _, _)) = &self.rates {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The places of the calls served at once on one port, shared fairly: at
/// most `total` in all, of which one caller (a token's name, a JWT's
/// subject, or an unauthenticated peer's address) holds at most
/// `per_caller` and one portal at most `per_portal`, so a caller or portal
/// at its share leaves the rest to the others. A call takes its caller's
/// place once authenticated, before anything is read of its request, and
/// its portal's place once it names a portal.
pub struct CallPlaces {
    total: Arc<Semaphore>,
    total_limit: usize,
    callers: Places<String>,
    portals: Places<i64>,
}

/// One admitted call's places, given back when dropped.
pub struct CallPlace {
    _caller: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

/// A call's place in its portal's share, given back when dropped.
pub struct PortalPlace(#[allow(dead_code)] OwnedSemaphorePermit);

impl CallPlaces {
    pub fn new(total: usize, per_caller: usize, per_portal: usize) -> CallPlaces {
        CallPlaces {
            total: Arc::new(Semaphore::new(total)),
            total_limit: total,
            callers: Places::new(per_caller.min(total)),
            portals: Places::new(per_portal.min(total)),
        }
    }

    /// A place for one more call of `caller`: refused when the caller holds
    /// its share (`RESOURCE_EXHAUSTED`) or every place is taken
    /// (`UNAVAILABLE`).
    pub fn enter(&self, caller: &CallerKey) -> Result<CallPlace, DomainError> {
        let Ok(total) = Arc::clone(&self.total).try_acquire_owned() else {
            refused("total");
            return Err(DomainError::Overloaded);
        };
        let Some(caller_place) = self.callers.take(caller.0.clone()) else {
            refused("caller_share");
            return Err(DomainError::TooManyCalls {
                holder: "this caller".into(),
                limit: self.callers.per_key() as u32,
                setting: "server.max_concurrent_calls_per_caller",
            });
        };
        Ok(CallPlace {
            _caller: caller_place,
            _total: total,
        })
    }

    /// A place in `portal`'s share for a call already admitted.
    pub fn enter_portal(&self, portal: i64) -> Result<PortalPlace, DomainError> {
        match self.portals.take(portal) {
            Some(place) => Ok(PortalPlace(place)),
            None => {
                refused("portal_share");
                Err(DomainError::TooManyCalls {
                    holder: format!("portal {portal}"),
                    limit: self.portals.per_key() as u32,
                    setting: "server.max_concurrent_calls_per_portal",
                })
            }
        }
    }

    /// Calls served now.
    pub fn in_flight(&self) -> usize {
        self.total_limit - self.total.available_permits()
    }

    /// Forgets callers and portals that hold no place (bounds memory).
    pub fn forget_idle(&self) {
        self.callers.forget_idle();
        self.portals.forget_idle();
    }
}

/// Who a call counts against: an authenticated principal's name (a JWT's
/// is `jwt:` and its subject, which no static token's name may start with),
/// or `peer:` and the address of an unauthenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerKey(String);

impl CallerKey {
    /// The key of a call by `principal` (none, or anyone when the service
    /// runs open: then the peer's address tells callers apart).
    pub fn of(principal: Option<&Principal>, open: bool, peer: Option<IpAddr>) -> CallerKey {
        match principal {
            Some(principal) if !open => CallerKey(principal.name.clone()),
            _ => CallerKey(match peer {
                Some(ip) => format!("peer:{ip}"),
                None => "peer:unknown".into(),
            }),
        }
    }
}

/// Counts a refusal and logs it, at most once a second for each reason so
/// a flood does not become a flood of log lines.
pub fn refused(reason: &'static str) {
    static LAST_LOGGED: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());
    crate::telemetry::metrics::metrics().overload_refused(reason);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut last = LAST_LOGGED.lock().unwrap_or_else(|e| e.into_inner());
    let log = match last.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, at)) if *at == now => false,
        Some((_, at)) => {
            *at = now;
            true
        }
        None => {
            last.push((reason, now));
            true
        }
    };
    if log {
        tracing::warn!(
            reason,
            "refused a call to protect other callers (counted in associations_overload_refusals_total)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_portal_past_its_burst_waits_and_others_do_not() {
        let admission = Admission::new(1, 3);
        for _ in 0..3 {
            admission.admit(7).unwrap();
        }
        match admission.admit(7) {
            Err(DomainError::RateLimited { retry_after_ms, .. }) => {
                assert!((1..=1000).contains(&retry_after_ms), "{retry_after_ms}")
            }
            other => panic!("the fourth call is refused: {other:?}"),
        }
        admission
            .admit(8)
            .expect("another portal has its own allowance");
        let open = Admission::new(0, 0);
        for _ in 0..10_000 {
            open.admit(7).unwrap();
        }
    }

    #[test]
    fn a_caller_at_its_share_leaves_the_rest_to_others() {
        let places = CallPlaces::new(4, 2, 3);
        let (a, b) = (
            CallerKey::of(None, false, Some([127, 0, 0, 1].into())),
            CallerKey::of(None, false, Some([127, 0, 0, 2].into())),
        );
        let held: Vec<_> = (0..2).map(|_| places.enter(&a).unwrap()).collect();
        assert!(matches!(
            places.enter(&a),
            Err(DomainError::TooManyCalls { limit: 2, .. })
        ));
        let other: Vec<_> = (0..2).map(|_| places.enter(&b).unwrap()).collect();
        assert_eq!(places.in_flight(), 4);
        let c = CallerKey::of(None, false, Some([127, 0, 0, 3].into()));
        assert!(matches!(places.enter(&c), Err(DomainError::Overloaded)));
        drop(held);
        places.enter(&a).expect("a place came back");
        let portal: Vec<_> = (0..3).map(|_| places.enter_portal(7).unwrap()).collect();
        assert!(places.enter_portal(7).is_err());
        places
            .enter_portal(8)
            .expect("another portal has its own share");
        drop((other, portal));
        places.forget_idle();
        assert_eq!(places.callers.keys(), 0);
        assert_eq!(places.portals.keys(), 0);
    }
}
