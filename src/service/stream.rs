//! The one stream producer: a task that runs a `Scan` chunk by chunk into a
//! bounded channel and stops when the scan ends, fails, or the receiver goes
//! away (even while a chunk is being read). Every server stream uses it.
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

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

/// A resumable read that yields chunks one step at a time.
pub(super) trait Scan: Sized + Send + 'static {
    type Chunk: Send + 'static;

    /// Reads the next chunk (waiting for one, if the scan follows live data).
    fn step(self) -> impl Future<Output = ServiceResult<Step<Self::Chunk, Self>>> + Send;
}

/// Each portal's open streams, counted against a cap.
#[derive(Default)]
pub(super) struct StreamSlots {
    portals: Mutex<HashMap<i64, Arc<Semaphore>>>,
}

/// One open stream's place; freed when the stream's task ends.
pub(super) struct StreamSlot(#[allow(dead_code)] OwnedSemaphorePermit);

impl StreamSlots {
    /// A place for one more stream of `portal`, if fewer than `limit` are open.
    pub(super) fn take(&self, portal: i64, limit: u32) -> Result<StreamSlot, DomainError> {
        let semaphore = {
            let mut portals = self.portals.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(
                portals
                    .entry(portal)
                    .or_insert_with(|| Arc::new(Semaphore::new(limit as usize))),
            )
        };
        semaphore
            .try_acquire_owned()
            .map(StreamSlot)
            .map_err(|_| DomainError::TooManyStreams { portal, limit })
    }
}

/// Runs `scan` in its own task, which holds `slot` while it runs; the
/// receiver yields the scan's chunks, then at most one error.
pub(super) fn produce<S: Scan>(
    slot: StreamSlot,
    scan: S,
) -> mpsc::Receiver<ServiceResult<S::Chunk>> {
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
        let mut scan = scan;
        loop {
            let step = tokio::select! {
                step = scan.step() => step,
                _ = sender.closed() => return,
            };
            let (chunk, next) = match step {
                Ok(Step::More(chunk, next)) => (Ok(chunk), Some(next)),
                Ok(Step::Last(chunk)) => (Ok(chunk), None),
                Ok(Step::End) => return,
                Err(err) => (Err(err), None),
            };
            if sender.send(chunk).await.is_err() {
                return;
            }
            match next {
                Some(next) => scan = next,
                None => return,
            }
        }
    });
    receiver
}
