//! Running store transactions again: the retry policy for lost races
//! (deadlocks, serialization failures, a busy database) and the
//! `transaction!` macro every backend's write flows run in.
use std::time::Duration;

use super::{StoreError, StoreResult};

/// How often one write may run again because it found a counter it had not
/// locked (each run locks more, so this is never reached in practice).
pub(crate) const MAX_RELOCKS: u32 = 16;

/// How a transaction that lost a race (deadlock, serialization failure,
/// busy database) is run again: jittered exponential backoff from
/// `initial_backoff`, until `budget` is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub budget: Duration,
    pub initial_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            budget: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: a random point in the upper
    /// half of `initial_backoff * 2^(attempt-1)`, capped at one second.
    pub fn backoff(&self, attempt: u32) -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(Duration::from_secs(1));
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let half = ceiling / 2;
        half + Duration::from_nanos(random % (half.as_nanos() as u64 + 1))
    }
}

impl RetryPolicy {
    /// After attempt `attempt` (begun at `started`) lost a race with `err`:
    /// the wait before the next attempt, or the error that says the budget
    /// is spent.
    pub(crate) fn after_lost_race(
        &self,
        attempt: u32,
        started: std::time::Instant,
        err: StoreError,
    ) -> Result<Duration, StoreError> {
        let wait = self.backoff(attempt);
        if started.elapsed() + wait > self.budget {
            return Err(StoreError::RetriesExhausted {
                attempts: attempt,
                elapsed_ms: started.elapsed().as_millis() as u64,
                last: err.to_string(),
            });
        }
        tracing::debug!(attempt, "write lost a race, running it again: {err}");
        crate::telemetry::metrics::metrics().store_retried();
        Ok(wait)
    }

    /// Runs `call` (one statement, its own transaction) until it succeeds,
    /// fails for good, or lost races (`retryable`) spend the budget.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        retryable: fn(&StoreError) -> bool,
        mut call: F,
    ) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        let started = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            match call().await {
                Err(err) if retryable(&err) => {
                    tokio::time::sleep(self.after_lost_race(attempt, started, err)?).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// What a store needs besides its URL.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub retry: RetryPolicy,
    /// Longest wait for a pooled connection (or a new one, when the
    /// database does not answer) before a call fails as unavailable.
    pub acquire_timeout: std::time::Duration,
    /// Longest a statement of a call may run (PostgreSQL; zero: no limit).
    /// Streams' statements are not bounded: they run as long as their
    /// client reads.
    pub statement_timeout: std::time::Duration,
    /// Whether an embedded store's file is made when missing (`verify`
    /// opens only what exists).
    pub create_if_missing: bool,
    /// On a Citus coordinator: a portal's one-call writes and streams go to
    /// the node holding its shard group (`postgres::route`).
    pub route_to_workers: bool,
}

/// Runs `$body` (which evaluates to a `StoreResult`) with `$conn` bound to a
/// transaction begun by `$begin`, and commits. A lost race (`$retryable`) is
/// run again after a jittered backoff while the policy's budget lasts; a
/// `Relock` is run again at once (the flow has widened its lock set).
macro_rules! transaction {
    ($policy:expr, $begin:expr, $retryable:expr, |$conn:ident| $body:block) => {{
        let policy: $crate::store::RetryPolicy = $policy;
        let started = std::time::Instant::now();
        let (mut attempt, mut relocks) = (1u32, 0u32);
        loop {
            let result: $crate::store::StoreResult<_> = tracing::Instrument::instrument(
                async {
                    let mut tx = $begin.await?;
                    let value = {
                        let $conn = &mut *tx;
                        let body: $crate::store::StoreResult<_> = async { $body }.await;
                        body?
                    };
                    tx.commit().await?;
                    Ok(value)
                },
                tracing::info_span!("store.transaction", attempt),
            )
            .await;
            match result {
                Err($crate::store::StoreError::Relock) if relocks < $crate::store::MAX_RELOCKS => {
                    relocks += 1;
                }
                Err(err) if $retryable(&err) => match policy.after_lost_race(attempt, started, err)
                {
                    Ok(wait) => {
                        attempt += 1;
                        tokio::time::sleep(wait).await;
                    }
                    Err(exhausted) => break Err(exhausted),
                },
                other => break other,
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn backoff_doubles_from_the_initial_wait_with_jitter_and_stops_at_one_second() {
        let policy = RetryPolicy {
            budget: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(8),
        };
        for attempt in 1..=12u32 {
            let ceiling = Duration::from_millis(8 << (attempt - 1)).min(Duration::from_secs(1));
            for _ in 0..50 {
                let wait = policy.backoff(attempt);
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "attempt {attempt}: {wait:?} outside {:?}..={ceiling:?}",
                    ceiling / 2
                );
            }
        }
        let waits: BTreeSet<Duration> = (0..50).map(|_| policy.backoff(4)).collect();
        assert!(waits.len() > 1, "the wait is jittered");
    }
}
