//! Merged-away records resolve to their survivors: every read and write
//! that names records passes their ids through `resolve_ids`, which asks the
//! store only for portals that have merged records (known per process for
//! the catalog time to live, and at once after a merge made here).
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;

/// Whether each portal has merged records, and since when that is known.
pub struct MergedPortals {
    ttl: Duration,
    known: Mutex<HashMap<i64, (Instant, bool)>>,
}

/// Portals remembered before the stale ones are dropped (bounds memory).
const MOST_REMEMBERED: usize = 100_000;

impl MergedPortals {
    pub fn new(ttl: Duration) -> MergedPortals {
        MergedPortals {
            ttl,
            known: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, portal: i64) -> Option<bool> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match known.get(&portal) {
            Some((at, has)) if at.elapsed() < self.ttl => Some(*has),
            _ => None,
        }
    }

    fn put(&self, portal: i64, has: bool) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= MOST_REMEMBERED {
            let ttl = self.ttl;
            known.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        known.insert(portal, (Instant::now(), has));
    }
}

impl AssociationService {
    /// `ids` of `object_type` with each merged-away record replaced by the
    /// record it resolves to.
    pub(super) async fn resolve_ids(
        &self,
        portal: i64,
        object_type: ObjectType,
        ids: &mut [i64],
    ) -> ServiceResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let has = match self.merged_portals.get(portal) {
            Some(has) => has,
            None => {
                let has = self.store.has_merged_records(portal).await?;
                self.merged_portals.put(portal, has);
                has
            }
        };
        if !has {
            return Ok(());
        }
        let mut asked: Vec<i64> = ids.to_vec();
        asked.sort_unstable();
        asked.dedup();
        let survivors: HashMap<i64, i64> = self
            .store
            .merged_survivors(portal, object_type, &asked)
            .await?
            .into_iter()
            .collect();
        for id in ids.iter_mut() {
            if let Some(survivor) = survivors.get(id) {
                *id = *survivor;
            }
        }
        Ok(())
    }

    /// One record's id, resolved.
    pub(super) async fn resolve_id(
        &self,
        portal: i64,
        object_type: ObjectType,
        id: i64,
    ) -> ServiceResult<i64> {
        let mut ids = [id];
        self.resolve_ids(portal, object_type, &mut ids).await?;
        Ok(ids[0])
    }

    /// Remembers that `portal` has merged records now.
    pub(super) fn merged_in(&self, portal: i64) {
        self.merged_portals.put(portal, true);
    }

    /// The inputs' from- and to-records, resolved.
    pub(super) async fn resolve_inputs(
        &self,
        pair: PortalPair,
        inputs: &[AssociationInput],
    ) -> ServiceResult<Vec<AssociationInput>> {
        let mut from: Vec<i64> = inputs.iter().map(|i| i.from_id).collect();
        let mut to: Vec<i64> = inputs.iter().map(|i| i.to_id).collect();
        self.resolve_ids(pair.portal, pair.from, &mut from).await?;
        self.resolve_ids(pair.portal, pair.to, &mut to).await?;
        Ok(inputs
            .iter()
            .zip(from.into_iter().zip(to))
            .map(|(input, (from_id, to_id))| AssociationInput {
                from_id,
                to_id,
                types: input.types.clone(),
            })
            .collect())
    }
}
