//! Per-portal call rates for both front ends: each portal may make
//! `per_second` calls a second with bursts of `burst` (the GCRA of the
//! `governor` crate, keyed by portal); a call past it is refused with the
//! wait after which it would pass.
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::DomainError;

/// Admits calls by portal.
pub struct Admission {
    rates: Option<(DefaultKeyedRateLimiter<i64>, u32)>,
}

impl Admission {
    /// `per_second` calls a second per portal, bursts of `burst`; 0: no limit.
    pub fn new(per_second: u32, burst: u32) -> Admission {
        let rates = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            let quota = Quota::per_second(rate).allow_burst(burst);
            (RateLimiter::keyed(quota), per_second)
        });
        Admission { rates }
    }

    /// Counts one call of `portal`; refused when its rate is used up.
    pub fn admit(&self, portal: i64) -> Result<(), DomainError> {
        let Some((limiter, per_second)) = &self.rates else {
            return Ok(());
        };
        limiter.check_key(&portal).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            DomainError::RateLimited {
                portal,
                per_second: *per_second,
                retry_after_ms: (wait.as_millis() as u64).max(1),
            }
        })
    }

    /// Forgets portals whose allowance is full again (bounds memory).
    pub fn forget_idle(&self) {
        if let Some((limiter, _)) = &self.rates {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
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
}
