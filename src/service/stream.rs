//! The one stream producer: a task that runs a `Scan` chunk by chunk into a
//! bounded channel and stops when the scan ends, fails, or the receiver goes
//! away (even while a chunk is being read), or when the process drains for
//! shutdown. Every server stream uses it.
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::ServiceResult;
use crate::domain::DomainError;

/// Chunks a producer may run ahead of its consumer.
const STREAM_BUFFER: usize = 2;

/// What one step of a scan yields.
pub(super) enum Step<C, S> {
    /// A chunk, and the scan that continues after it.
    More(C, S),
    /// The scan's last chunk.
    Last(C),
    /// Nothing more (the previous chunk was the last).
    End,
}

/// What a chunk counts for the rows-streamed metric.
pub(super) trait Metered {
    /// The stream kind, as the metric labels it.
    const STREAM: &'static str;

    /// Rows in this chunk.
    fn rows(&self) -> usize;

    /// Reports what else a sent chunk tells (the feed's lag).
    fn sent(&self) {}
}

/// A resumable read that yields chunks one step at a time.
pub(super) trait Scan: Sized + Send + 'static {
    type Chunk: Metered + Send + 'static;

    /// Reads the next chunk (waiting for one, if the scan follows live data).
    fn step(self) -> impl Future<Output = ServiceResult<Step<Self::Chunk, Self>>> + Send;

    /// Whether the scan follows live data without end (the change feed), so
    /// a draining process ends it at once rather than at its deadline.
    fn endless(&self) -> bool {
        false
    }
}

/// How far the process is in shutting down, as streams see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Drain {
    /// Serving.
    Serving,
    /// Shutting down: endless streams end now, others may finish.
    Draining,
    /// The grace period is over: every stream ends after its last chunk.
    Stopping,
}

/// Places counted per key (a portal, a caller): at most `per_key` taken
/// at once for one key; a place is given back when its permit drops.
pub struct Places<K> {
    per_key: usize,
    keys: Mutex<HashMap<K, Arc<Semaphore>>>,
}

impl<K: std::hash::Hash + Eq> Places<K> {
    pub fn new(per_key: usize) -> Places<K> {
        Places {
            per_key,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The most places one key may hold.
    pub fn per_key(&self) -> usize {
        self.per_key
    }

    /// One more place for `key`, if it holds fewer than `per_key`.
    pub fn take(&self, key: K) -> Option<OwnedSemaphorePermit> {
        // Taken under the lock, so `forget_idle` never drops a key whose
        // place is being taken.
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let per_key = self.per_key;
        let semaphore = keys
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(per_key)));
        Arc::clone(semaphore).try_acquire_owned().ok()
    }

    /// Forgets the keys that hold no place (bounds memory when keys come
    /// from callers, such as peer addresses).
    pub fn forget_idle(&self) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.retain(|_, semaphore| semaphore.available_permits() < self.per_key);
        keys.shrink_to_fit();
    }

    /// How many keys are remembered.
    pub fn keys(&self) -> usize {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Each portal's open streams, counted against a cap, and where the process
/// is in shutting down, which every stream watches.
pub(super) struct StreamSlots {
    portals: Places<i64>,
    drain: watch::Sender<Drain>,
    /// How long a producer waits for its client to take a chunk.
    stall: Duration,
}

/// One open stream's place (freed when the stream's task ends) and the
/// process's drain state it watches.
pub(super) struct StreamSlot {
    _permit: OwnedSemaphorePermit,
    drain: watch::Receiver<Drain>,
    stall: Duration,
}

impl StreamSlots {
    /// At most `per_portal` open streams for each portal; a stream whose
    /// client takes no chunk for `stall` ends.
    pub(super) fn new(per_portal: u32, stall: Duration) -> StreamSlots {
        StreamSlots {
            portals: Places::new(per_portal as usize),
            drain: watch::channel(Drain::Serving).0,
            stall,
        }
    }

    /// A place for one more stream of `portal`, if fewer than its cap are open.
    pub(super) fn take(&self, portal: i64) -> Result<StreamSlot, DomainError> {
        let permit = self
            .portals
            .take(portal)
            .ok_or(DomainError::TooManyStreams {
                portal,
                limit: self.portals.per_key() as u32,
            })?;
        Ok(StreamSlot {
            _permit: permit,
            drain: self.drain.subscribe(),
            stall: self.stall,
        })
    }

    /// Moves every stream of the process on to `stage` (never back).
    pub(super) fn drain(&self, stage: Drain) {
        self.drain.send_if_modified(|current| {
            let later = stage > *current;
            if later {
                *current = stage;
            }
            later
        });
    }
}

/// Whether a stream should end now, at drain stage `stage`.
fn must_end(stage: Drain, endless: bool) -> bool {
    match stage {
        Drain::Serving => false,
        Drain::Draining => endless,
        Drain::Stopping => true,
    }
}

/// Runs `scan` in its own task, which holds `slot` while it runs; the
/// receiver yields the scan's chunks, then at most one error. A client that
/// takes no chunk for the slot's stall time ends the stream: the scan is
/// dropped at once (so its database connection or read transaction goes
/// back) and `StreamStalled` follows the chunks already queued, in a place
/// kept free for it, so the client learns to resume from its last cursor.
pub(super) fn produce<S: Scan>(
    slot: StreamSlot,
    scan: S,
) -> mpsc::Receiver<ServiceResult<S::Chunk>> {
    // One place more than the buffer, kept for the stream's last word.
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER + 1);
    tokio::spawn(async move {
        let StreamSlot {
            _permit,
            mut drain,
            stall,
        } = slot;
        let Ok(last_word) = sender.clone().try_reserve_owned() else {
            return;
        };
        let mut scan = scan;
        loop {
            let endless = scan.endless();
            let ending = drain.wait_for(|stage| must_end(*stage, endless));
            let step = tokio::select! {
                step = scan.step() => step,
                _ = sender.closed() => return,
                // The last chunk sent carried the cursor to resume from.
                _ = ending => Err(DomainError::ShuttingDown.into()),
            };
            let (chunk, next) = match step {
                Ok(Step::More(chunk, next)) => (chunk, Some(next)),
                Ok(Step::Last(chunk)) => (chunk, None),
                Ok(Step::End) => return,
                Err(err) => {
                    last_word.send(Err(err));
                    return;
                }
            };
            chunk.sent();
            let rows = chunk.rows() as u64;
            // The scan is not polled while its chunk waits, and is dropped
            // if the wait runs out.
            match tokio::time::timeout(stall, sender.send(Ok(chunk))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    drop(next);
                    crate::telemetry::refused("stream_stalled");
                    last_word.send(Err(DomainError::StreamStalled {
                        stall_ms: stall.as_millis() as u64,
                    }
                    .into()));
                    return;
                }
            }
            crate::telemetry::metrics::metrics().rows_streamed(S::Chunk::STREAM, rows);
            match next {
                Some(next) => scan = next,
                None => return,
            }
        }
    });
    receiver
}
