//! Group commit for creates: create calls on the same portal and object
//! pair that arrive while a create transaction of that pair is running wait
//! for it to end and then go together, in arrival order, as the next one —
//! one lock round and one commit for all. Each call's items are planned as
//! if the calls had run one after another. Nothing waits on a timer: a call
//! that finds its pair idle is written at once. When a transaction fails
//! because the database cannot be reached, its calls and those queued
//! behind it are all answered so at once, instead of each waiting out the
//! pool's acquire timeout in turn.
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::domain::plan::{CreateItem, ItemOutcome, WriteContext};
use crate::domain::{DomainError, ErrorKind, ObjectType, PairCatalog};
use crate::store::{Store, StoreError, StoreResult};

type PairKey = (i64, ObjectType, ObjectType);

/// One waiting create call.
struct Pending {
    catalog: PairCatalog,
    items: Vec<CreateItem>,
    reply: oneshot::Sender<StoreResult<Vec<ItemOutcome>>>,
}

/// The calls of each pair that wait for its running transaction; a pair is
/// present while a writer task of it runs.
type Queues = HashMap<PairKey, Vec<Pending>>;

/// Joins concurrent create calls of one pair into shared transactions.
pub struct CreateCombiner {
    store: Arc<dyn Store>,
    /// The most items one shared transaction takes (a call is never split).
    max_items: usize,
    queues: Arc<Mutex<Queues>>,
    /// Store transactions begun, for measuring how well calls combine.
    transactions: Arc<AtomicU64>,
}

impl CreateCombiner {
    pub fn new(store: Arc<dyn Store>, max_items: usize) -> CreateCombiner {
        CreateCombiner {
            store,
            max_items,
            queues: Arc::new(Mutex::new(Queues::default())),
            transactions: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many create transactions (shared or not) have begun.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// How many calls of the pair wait for the running transaction to end.
    pub fn waiting(&self, portal: i64, from: ObjectType, to: ObjectType) -> usize {
        lock(&self.queues)
            .get(&(portal, from, to))
            .map_or(0, Vec::len)
    }

    /// Creates `items` like `Store::create_associations`, possibly in one
    /// transaction with other calls of the same pair.
    pub async fn create(
        &self,
        portal: i64,
        catalog: &PairCatalog,
        from: ObjectType,
        to: ObjectType,
        ceiling: u32,
        items: Vec<CreateItem>,
    ) -> StoreResult<Vec<ItemOutcome>> {
        let (reply, outcome) = oneshot::channel();
        let key = (portal, from, to);
        let pending = Pending {
            catalog: catalog.clone(),
            items,
            reply,
        };
        let start_writer = {
            let mut queues = lock(&self.queues);
            // Present (even empty) while a writer runs: it takes the call.
            match queues.entry(key) {
                Entry::Occupied(mut queue) => {
                    queue.get_mut().push(pending);
                    false
                }
                Entry::Vacant(slot) => {
                    slot.insert(vec![pending]);
                    true
                }
            }
        };
        if start_writer {
            // The writer runs apart from any caller, so a caller that goes
            // away does not take the others' writes with it.
            let writer = Writer {
                store: Arc::clone(&self.store),
                queues: Arc::clone(&self.queues),
                key,
                ceiling,
                max_items: self.max_items,
                transactions: Arc::clone(&self.transactions),
                done: false,
            };
            tokio::spawn(writer.run());
        }
        outcome.await.unwrap_or_else(|_| {
            Err(StoreError::Rejected(DomainError::Internal(
                "the create failed before it was written".into(),
            )))
        })
    }
}

fn lock(queues: &Mutex<Queues>) -> std::sync::MutexGuard<'_, Queues> {
    queues
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes the queued calls of one pair until none is left.
struct Writer {
    store: Arc<dyn Store>,
    queues: Arc<Mutex<Queues>>,
    key: PairKey,
    ceiling: u32,
    max_items: usize,
    transactions: Arc<AtomicU64>,
    /// Set when the queue was found empty and removed.
    done: bool,
}

impl Drop for Writer {
    /// A writer that stopped early (it panicked) drops its pair's queue, so
    /// the waiting calls fail instead of waiting for ever and the next call
    /// starts a new writer.
    fn drop(&mut self) {
        if !self.done {
            lock(&self.queues).remove(&self.key);
        }
    }
}

impl Writer {
    async fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            self.write(batch).await;
        }
        self.done = true;
    }

    /// The calls of the next transaction: the oldest waiting one, and those
    /// after it with the same catalog while the items fit; none ends the
    /// writer (under the queue lock, so a new call starts a new one).
    fn next_batch(&self) -> Option<Vec<Pending>> {
        let mut queues = lock(&self.queues);
        let queue = queues.get_mut(&self.key)?;
        if queue.is_empty() {
            queues.remove(&self.key);
            return None;
        }
        let mut taken = 1;
        let mut items = queue[0].items.len();
        while let Some(next) = queue.get(taken) {
            if next.catalog != queue[0].catalog || items + next.items.len() > self.max_items {
                break;
            }
            items += next.items.len();
            taken += 1;
        }
        Some(queue.drain(..taken).collect())
    }

    fn context<'a>(&self, catalog: &'a PairCatalog) -> WriteContext<'a> {
        let (portal_id, from, to) = self.key;
        WriteContext {
            portal_id,
            from,
            to,
            catalog,
            ceiling: self.ceiling,
        }
    }

    /// Writes one call alone and answers it.
    async fn write_alone(&self, call: Pending) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        let ctx = self.context(&call.catalog);
        let outcome = self.store.create_associations(&ctx, &call.items).await;
        let unreachable = unreachable(&outcome);
        // A caller that went away has nobody to tell.
        let _ = call.reply.send(outcome);
        if let Some(why) = unreachable {
            self.fail_waiting(&why);
        }
    }

    /// Answers every call queued now: the database cannot be reached.
    fn fail_waiting(&self, why: &str) {
        let waiting: Vec<Pending> = lock(&self.queues)
            .get_mut(&self.key)
            .map(std::mem::take)
            .unwrap_or_default();
        for call in waiting {
            let _ = call
                .reply
                .send(Err(StoreError::Unreachable(why.to_string())));
        }
    }

    async fn write(&self, mut batch: Vec<Pending>) {
        if batch.len() == 1 {
            return self.write_alone(batch.remove(0)).await;
        }
        let items: Vec<CreateItem> = batch.iter().flat_map(|p| p.items.clone()).collect();
        let ctx = self.context(&batch[0].catalog);
        self.transactions.fetch_add(1, Ordering::Relaxed);
        match self.store.create_associations(&ctx, &items).await {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for call in batch {
                    let mine: Vec<ItemOutcome> = outcomes.by_ref().take(call.items.len()).collect();
                    let _ = call.reply.send(Ok(mine));
                }
            }
            Err(err) if err.kind() == ErrorKind::Unavailable => {
                let why = err.to_string();
                for call in batch {
                    let _ = call.reply.send(Err(StoreError::Unreachable(why.clone())));
                }
                self.fail_waiting(&why);
            }
            Err(_) => {
                // The shared transaction failed as a whole: each call runs
                // alone, so each gets its own answer.
                for call in batch {
                    self.write_alone(call).await;
                }
            }
        }
    }
}

/// Why an outcome says the database cannot be reached, if it does.
fn unreachable<T>(outcome: &StoreResult<T>) -> Option<String> {
    match outcome {
        Err(err) if err.kind() == ErrorKind::Unavailable => Some(err.to_string()),
        _ => None,
    }
}
