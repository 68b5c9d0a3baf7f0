//! Admission for both front ends: per-portal call rates (each portal may
//! make `per_second` calls a second with bursts of `burst` on each replica,
//! the GCRA of the `governor` crate, and, when set, `per_day` calls a UTC
//! day across every replica, drawn a few at a time from a shared
//! `DailyLedger`; a call past either is refused with the wait after which
//! it would pass, and an admitted one learns what is left, `Allowance`) and
//! the fair share of concurrent calls (`CallPlaces`).
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
    /// The calls a portal may make a UTC day, across every replica.
    daily: Option<DailyQuota>,
}

/// Where every replica draws a portal's calls of a day from, so that a
/// day's quota holds however many replicas serve the portal.
#[async_trait::async_trait]
pub trait DailyLedger: Send + Sync {
    /// Gives out up to `want` of `portal`'s calls of `day` (days since the
    /// epoch, UTC), never past `max` in all: (calls given, the day's calls
    /// given out now, these included).
    async fn draw(&self, portal: i64, day: u64, want: u32, max: u32) -> Result<(u32, u32), String>;
}

/// The daily quota: each portal's calls drawn by this replica and not yet
/// made, per day.
struct DailyQuota {
    max: u32,
    /// Calls drawn at a time: few enough that the calls a replica holds
    /// unused at the end of a day are a small part of the quota.
    lease: u32,
    ledger: Arc<dyn DailyLedger>,
    leases: Mutex<HashMap<i64, Lease>>,
}

/// One portal's calls drawn by this replica for `day`.
#[derive(Clone, Copy, Default)]
struct Lease {
    day: u64,
    /// Drawn and not made yet.
    left: u32,
    /// The day's calls given out across the replicas when last drawn.
    given: u32,
    /// The ledger had none left for the day.
    spent: bool,
}

/// Calls drawn at a time for a quota of `max`: a 64th of it, 1 to 100.
fn lease_size(max: u32) -> u32 {
    (max / 64).clamp(1, 100)
}

impl DailyQuota {
    fn lease(&self, portal: i64, today: u64) -> Lease {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let lease = leases.entry(portal).or_default();
        if lease.day != today {
            *lease = Lease {
                day: today,
                ..Lease::default()
            };
        }
        *lease
    }

    /// What the portal has left of the day, drawing more when this
    /// replica holds none; `None` when the day's quota is spent.
    async fn reserve(&self, portal: i64, today: u64) -> Option<u32> {
        let lease = self.lease(portal, today);
        if lease.left == 0 && !lease.spent {
            let drawn = self.ledger.draw(portal, today, self.lease, self.max).await;
            let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            let lease = leases.entry(portal).or_default();
            match drawn {
                // The day turned meanwhile: the draw was for the old one.
                _ if lease.day != today => {}
                Ok((0, given)) => {
                    lease.spent = true;
                    lease.given = lease.given.max(given);
                }
                Ok((granted, given)) => {
                    lease.left += granted;
                    lease.given = lease.given.max(given);
                }
                // A ledger that cannot answer does not stop the service's
                // calls (they need the store too, and fail on their own).
                Err(err) => {
                    tracing::warn!(
                        "the daily call quota could not be drawn, the call passes: {err}"
                    );
                    return Some(self.max.saturating_sub(lease.given).max(1));
                }
            }
        }
        let lease = self.lease(portal, today);
        (lease.left > 0).then(|| self.max.saturating_sub(lease.given) + lease.left)
    }

    /// Makes one of the calls drawn.
    fn spend(&self, portal: i64, today: u64) {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lease) = leases.get_mut(&portal) {
            if lease.day == today {
                lease.left = lease.left.saturating_sub(1);
            }
        }
    }
}

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
pub fn utc_day() -> (u64, u64) {
    const DAY_MS: u64 = 86_400_000;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    (now_ms / DAY_MS, DAY_MS - now_ms % DAY_MS)
}

impl Admission {
    /// `per_second` calls a second per portal, bursts of `burst`, and
    /// `per_day` calls a UTC day drawn from `ledger`; 0: no such limit.
    pub fn new(
        per_second: u32,
        burst: u32,
        per_day: u32,
        ledger: Arc<dyn DailyLedger>,
    ) -> Admission {
        let rates = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            let quota = Quota::per_second(rate).allow_burst(burst);
            (
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
                per_second,
                burst.get(),
            )
        });
        let daily = (per_day > 0).then(|| DailyQuota {
            max: per_day,
            lease: lease_size(per_day),
            ledger,
            leases: Mutex::new(HashMap::new()),
        });
        Admission { rates, daily }
    }

    /// Counts one call of `portal` (against its short window unless the
    /// call is `exempt` from it, and against its day): what it has left, and
    /// the refusal when one of them is used up (then nothing is counted).
    pub async fn admit(&self, portal: i64, exempt: bool) -> (Allowance, Result<(), DomainError>) {
        let mut allowance = Allowance::default();
        let (today, day_left_ms) = utc_day();
        if let Some(quota) = &self.daily {
            let remaining = quota.reserve(portal, today).await;
            allowance.daily = Some(Daily {
                max: quota.max,
                remaining: remaining.unwrap_or(0),
            });
            if remaining.is_none() {
                let refusal = DomainError::DailyLimited {
                    portal,
                    per_day: quota.max,
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
        if let Some(quota) = &self.daily {
            quota.spend(portal, today);
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
        if let Some(quota) = &self.daily {
            let (today, _) = utc_day();
            let mut leases = quota.leases.lock().unwrap_or_else(|e| e.into_inner());
            leases.retain(|_, lease| lease.day == today);
            leases.shrink_to_fit();
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
            crate::telemetry::refused("total");
            return Err(DomainError::Overloaded);
        };
        let Some(caller_place) = self.callers.take(caller.0.clone()) else {
            crate::telemetry::refused("caller_share");
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
                crate::telemetry::refused("portal_share");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger of one process, as the store's would be for one replica.
    #[derive(Default)]
    struct Counted(
        Mutex<HashMap<(i64, u64), u32>>,
        std::sync::atomic::AtomicU32,
    );

    #[async_trait::async_trait]
    impl DailyLedger for Counted {
        async fn draw(
            &self,
            portal: i64,
            day: u64,
            want: u32,
            max: u32,
        ) -> Result<(u32, u32), String> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut given = self.0.lock().unwrap();
            let n = given.entry((portal, day)).or_default();
            let granted = want.min(max - *n);
            *n += granted;
            Ok((granted, *n))
        }
    }

    fn admission(per_second: u32, burst: u32, per_day: u32) -> Admission {
        Admission::new(per_second, burst, per_day, Arc::new(Counted::default()))
    }

    #[tokio::test]
    async fn a_portal_past_its_burst_waits_and_others_do_not() {
        let admission = admission(1, 3, 0);
        for _ in 0..3 {
            admission.admit(7, false).await.1.unwrap();
        }
        match admission.admit(7, false).await.1 {
            Err(DomainError::RateLimited { retry_after_ms, .. }) => {
                assert!((1..=1000).contains(&retry_after_ms), "{retry_after_ms}")
            }
            other => panic!("the fourth call is refused: {other:?}"),
        }
        // A call exempt from the window still passes.
        admission.admit(7, true).await.1.unwrap();
        admission
            .admit(8, false)
            .await
            .1
            .expect("another portal has its own allowance");
        let open = super::tests::admission(0, 0, 0);
        for _ in 0..10_000 {
            open.admit(7, false).await.1.unwrap();
        }
    }

    #[tokio::test]
    async fn a_portal_past_its_day_waits_for_the_next_and_exempt_calls_count() {
        let admission = admission(0, 0, 3);
        let daily = |a: Allowance| a.daily.map(|d| (d.max, d.remaining));
        assert_eq!(daily(admission.admit(7, false).await.0), Some((3, 2)));
        assert_eq!(daily(admission.admit(7, true).await.0), Some((3, 1)));
        assert_eq!(daily(admission.admit(7, false).await.0), Some((3, 0)));
        let (left, refused) = admission.admit(7, true).await;
        assert_eq!(daily(left), Some((3, 0)));
        match refused {
            Err(DomainError::DailyLimited {
                per_day: 3,
                retry_after_ms,
                ..
            }) => assert!((1..=86_400_000).contains(&retry_after_ms)),
            other => panic!("the fourth call of the day is refused: {other:?}"),
        }
        assert_eq!(daily(admission.admit(8, false).await.0), Some((3, 2)));
        admission.forget_idle();
        assert!(admission.admit(7, false).await.1.is_err(), "still today");
    }

    #[tokio::test]
    async fn replicas_share_the_day_and_draw_a_few_calls_at_a_time() {
        let ledger = Arc::new(Counted::default());
        let replicas: Vec<Admission> = (0..3)
            .map(|_| Admission::new(0, 0, 640, Arc::clone(&ledger) as Arc<dyn DailyLedger>))
            .collect();
        let mut admitted = 0;
        for call in 0..1_000 {
            if replicas[call % 3].admit(7, false).await.1.is_ok() {
                admitted += 1;
            }
        }
        // 640 a day across the three, drawn 10 at a time: 64 draws that
        // give calls, then one per replica that finds the day spent.
        assert_eq!(admitted, 640);
        assert_eq!(ledger.1.load(std::sync::atomic::Ordering::SeqCst), 64 + 3);
        let (left, refused) = replicas[0].admit(7, false).await;
        assert!(refused.is_err());
        assert_eq!(left.daily.map(|d| d.remaining), Some(0));
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
