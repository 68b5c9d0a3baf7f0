//! The pair catalogs a service process keeps, so a write does not read the
//! definitions each time: loaded once per portal and pair, dropped when
//! this process changes a label of the portal, reloaded after a time to
//! live so other replicas' label changes arrive. A label another replica
//! deleted is refused inside the write transaction whatever the cache says.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{ObjectType, PairCatalog};

type PairKey = (i64, ObjectType, ObjectType);

/// Cached catalogs with their load times, and a generation per portal that
/// label changes bump (a load that raced a change is not kept).
pub struct CatalogCache {
    ttl: Duration,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<PairKey, (Instant, PairCatalog)>,
    generations: HashMap<i64, u64>,
}

impl CatalogCache {
    pub fn new(ttl: Duration) -> CatalogCache {
        CatalogCache {
            ttl,
            state: Mutex::new(CacheState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh catalog of the pair, or the portal's generation to load one under.
    pub fn get(&self, portal: i64, from: ObjectType, to: ObjectType) -> Result<PairCatalog, u64> {
        let state = self.lock();
        match state.entries.get(&(portal, from, to)) {
            Some((loaded, catalog)) if loaded.elapsed() < self.ttl => Ok(catalog.clone()),
            _ => Err(state.generations.get(&portal).copied().unwrap_or(0)),
        }
    }

    /// Keeps a catalog loaded under `generation`, unless a label changed since.
    pub fn put(&self, portal: i64, generation: u64, catalog: &PairCatalog) {
        let mut state = self.lock();
        if state.generations.get(&portal).copied().unwrap_or(0) == generation {
            state.entries.insert(
                (portal, catalog.a, catalog.b),
                (Instant::now(), catalog.clone()),
            );
        }
    }

    /// Drops every catalog of a portal (its labels changed).
    pub fn forget_portal(&self, portal: i64) {
        let mut state = self.lock();
        *state.generations.entry(portal).or_default() += 1;
        state.entries.retain(|(p, _, _), _| *p != portal);
    }
}
