//! Admission for both front ends: per-portal call rates (each portal may
//! make `per_second` calls a second with bursts of `burst`, the GCRA of the
//! `governor` crate, and, when set, `per_day` calls a UTC day; a call past
//! either is refused with the wait after which it would pass, and an
//! admitted one learns what is left, `Allowance`) and the fair share of
//! concurrent calls (`CallPlaces`).
use std::collections::HashMap;
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
    /// The calls a portal may make a UTC day, and what each portal spent.
    daily: Option<(u32, Mutex<DaysSpent>)>,
}

/// Each portal's calls of the UTC day it last called on: (day, calls).
type DaysSpent = HashMap<i64, (u64, u32)>;

/// What a portal may still call, as HubSpot's rate-limit headers say it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allowance {
    /// The short window: none without a rate, or for a call exempt from it.
    pub window: Option<Window>,
    /// The daily quota: none without one.
    pub daily: Option<Daily>,
}

/// `max` calls (the burst) per `interval_ms` (the time a spent burst takes
/// to come back at the portal's rate), `remaining` of them now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub max: u32,
    pub remaining: u32,
    pub interval_ms: u64,
}

/// `max` calls a UTC day, `remaining` of them today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Daily {
    pub max: u32,
    pub remaining: u32,
}

/// Today's number (days since the Unix epoch, UTC) and the milliseconds
/// left of it.
fn utc_day() -> (u64, u64) {
    const DAY_MS: u64 = 86_400_000;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    (now_ms / DAY_MS, DAY_MS - now_ms % DAY_MS)
}

impl Admission {
    /// `per_second` calls a second per portal, bursts of `burst`, and
    /// `per_day` calls a UTC day; 0: no such limit.
    pub fn new(per_second: u32, burst: u32, per_day: u32) -> Admission {
        let rates = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            let quota = Quota::per_second(rate).allow_burst(burst);
            (
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
                per_second,
                burst.get(),
            )
        });
        let daily = (per_day > 0).then(|| (per_day, Mutex::new(HashMap::new())));
        Admission { rates, daily }
    }

    /// Counts one call of `portal` (against its short window unless the
    /// call is `exempt` from it, and against its day): what it has left, and
    /// the refusal when one of them is used up (then nothing is counted).
    pub fn admit(&self, portal: i64, exempt: bool) -> (Allowance, Result<(), DomainError>) {
        let mut allowance = Allowance::default();
        let (today, day_left_ms) = utc_day();
        let mut days = self
            .daily
            .as_ref()
            .map(|(max, used)| (*max, used.lock().unwrap_or_else(|e| e.into_inner())));
        if let Some((max, used)) = days.as_mut() {
            let spent = match used.get(&portal) {
                Some((day, n)) if *day == today => *n,
                _ => 0,
            };
            allowance.daily = Some(Daily {
                max: *max,
                remaining: max.saturating_sub(spent),
            });
            if spent >= *max {
                let refusal = DomainError::DailyLimited {
                    portal,
                    per_day: *max,
                    retry_after_ms: day_left_ms.max(1),
                };
                return (allowance, Err(refusal));
            }
        }
        if let (Some((limiter, per_second, burst)), false) = (&self.rates, exempt) {
            let window = |remaining| Window {
                max: *burst,
                remaining,
                interval_ms: u64::from(*burst) * 1_000 / u64::from(*per_second),
            };
            match limiter.check_key(&portal) {
                Ok(snapshot) => {
                    allowance.window = Some(window(snapshot.remaining_burst_capacity()))
                }
                Err(not_until) => {
                    allowance.window = Some(window(0));
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    let refusal = DomainError::RateLimited {
                        portal,
                        per_second: *per_second,
                        retry_after_ms: (wait.as_millis() as u64).max(1),
                    };
                    return (allowance, Err(refusal));
                }
            }
        }
        if let Some((_, used)) = days.as_mut() {
            let entry = used.entry(portal).or_insert((today, 0));
            if entry.0 != today {
                *entry = (today, 0);
            }
            entry.1 += 1;
            if let Some(daily) = allowance.daily.as_mut() {
                daily.remaining = daily.remaining.saturating_sub(1);
            }
        }
        (allowance, Ok(()))
    }

    /// Forgets portals whose allowance is full again (bounds memory).
    pub fn forget_idle(&self) {
        if let Some((limiter, _, _)) = &self.rates {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some((_, used)) = &self.daily {
            let (today, _) = utc_day();
            let mut used = used.lock().unwrap_or_else(|e| e.into_inner());
            used.retain(|_, (day, _)| *day == today);
            used.shrink_to_fit();
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
        let admission = Admission::new(1, 3, 0);
        for _ in 0..3 {
            admission.admit(7, false).1.unwrap();
        }
        match admission.admit(7, false).1 {
            Err(DomainError::RateLimited { retry_after_ms, .. }) => {
                assert!((1..=1000).contains(&retry_after_ms), "{retry_after_ms}")
            }
            other => panic!("the fourth call is refused: {other:?}"),
        }
        // A call exempt from the window still passes.
        admission.admit(7, true).1.unwrap();
        admission
            .admit(8, false)
            .1
            .expect("another portal has its own allowance");
        let open = Admission::new(0, 0, 0);
        for _ in 0..10_000 {
            open.admit(7, false).1.unwrap();
        }
    }

    #[test]
    fn a_portal_past_its_day_waits_for_the_next_and_exempt_calls_count() {
        let admission = Admission::new(0, 0, 3);
        let daily = |a: Allowance| a.daily.map(|d| (d.max, d.remaining));
        assert_eq!(daily(admission.admit(7, false).0), Some((3, 2)));
        assert_eq!(daily(admission.admit(7, true).0), Some((3, 1)));
        assert_eq!(daily(admission.admit(7, false).0), Some((3, 0)));
        let (left, refused) = admission.admit(7, true);
        assert_eq!(daily(left), Some((3, 0)));
        match refused {
            Err(DomainError::DailyLimited {
                per_day: 3,
                retry_after_ms,
                ..
            }) => assert!((1..=86_400_000).contains(&retry_after_ms)),
            other => panic!("the fourth call of the day is refused: {other:?}"),
        }
        assert_eq!(daily(admission.admit(8, false).0), Some((3, 2)));
        admission.forget_idle();
        assert!(admission.admit(7, false).1.is_err(), "still today");
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
