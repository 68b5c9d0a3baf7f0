//! The write flows both backends share: each backend supplies its SQL as
//! steps (`WriteSteps`, and `CommonSteps` where the SQL is one text), and
//! the flow decides what to lock, read, plan and write, once for both: the
//! association writes here, the admin flows (names, labels, limits) in
//! `admin.rs`. Locks are taken in one order:
//! the definitions of admin labels a write uses (shared), then every
//! counter it changes in one global key order, before any row changes. A
//! flow reads what it will touch, locks it, reads again, and runs again
//! (`StoreError::Relock`) with a wider lock set if a counter appeared.
use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;

use super::{NewLabel, StoreError, StoreResult, TypeFilter};
use crate::domain::admin::{AdminChange, LimitValue};
use crate::domain::builtin::{allocated_unlabeled, unlabeled_ids_needed};
use crate::domain::feed::ChangeKind;
use crate::domain::labels::{
    check_label_quota, check_labels_unique, label_ids_needed, new_label_definitions,
};
use crate::domain::limits::{apply_limit_changes, LimitChange, LimitMode};
use crate::domain::merge::{self, MergeInto, MergePlan, MergeRequest, MergeSnapshot};
use crate::domain::plan::{
    self, CountKey, CreateItem, DirectedRow, ItemOutcome, PairEdge, Plan, PrimaryLookup, Snapshot,
    WriteContext,
};
use crate::domain::{DomainError, ObjectType, PairCatalog, TypeDef, TypeKey, TypeRole};

mod admin;

pub(crate) use admin::*;

/// The steps whose SQL is one text for both backends: `shared/`
/// implements them once, for either driver's transaction.
#[async_trait]
pub(crate) trait CommonSteps: Send {
    /// Admin limits of these types.
    async fn load_limits(
        &mut self,
        portal: i64,
        keys: &[TypeKey],
    ) -> StoreResult<HashMap<TypeKey, u32>>;
    /// Removes the admin limits of these types; returns those there were.
    async fn delete_limits(
        &mut self,
        portal: i64,
        keys: &[TypeKey],
    ) -> StoreResult<Vec<(TypeKey, u32)>>;
    /// The records among `ids` that were merged away, with their survivors.
    async fn merged_survivors(
        &mut self,
        portal: i64,
        object_type: ObjectType,
        ids: &[i64],
    ) -> StoreResult<Vec<(i64, i64)>>;
    /// Admin limits of the pair `a`, `b` (both directions).
    async fn load_user_limits(
        &mut self,
        portal: i64,
        a: ObjectType,
        b: ObjectType,
    ) -> StoreResult<HashMap<TypeKey, u32>>;
    /// Every row from one record.
    async fn load_rows_from(
        &mut self,
        portal: i64,
        object_type: ObjectType,
        id: i64,
    ) -> StoreResult<Vec<DirectedRow>>;
    /// Records that the merged record resolves to the primary from now
    /// on, and so does every record that resolved to the merged one.
    async fn record_merge(&mut self, req: &MergeRequest) -> StoreResult<()>;
    /// Takes the portal's merge lock (its type-id allocator row): merges of
    /// a portal run one at a time, so none resolves an id another is
    /// merging away.
    async fn lock_merges(&mut self, portal: i64) -> StoreResult<()>;
    /// Reserves `count` consecutive type ids; locks the portal's allocator.
    async fn allocate_type_ids(&mut self, portal: i64, count: i32) -> StoreResult<i32>;
    async fn load_definitions(
        &mut self,
        portal: i64,
        a: ObjectType,
        b: ObjectType,
    ) -> StoreResult<Vec<TypeDef>>;
    async fn insert_definitions(&mut self, portal: i64, defs: &[TypeDef]) -> StoreResult<()>;
    /// Gives each type its new label text.
    async fn rename_types(&mut self, portal: i64, renames: &[(TypeKey, String)])
        -> StoreResult<()>;
    /// The portal's custom object names.
    async fn load_object_names(&mut self, portal: i64) -> StoreResult<Vec<(ObjectType, String)>>;
    /// Gives `object_type` the name `name`, or takes its name (`None`).
    async fn set_object_name(
        &mut self,
        portal: i64,
        object_type: ObjectType,
        name: Option<&str>,
    ) -> StoreResult<()>;
}

/// The steps of a write transaction, as each backend's SQL does them.
#[async_trait]
pub(crate) trait WriteSteps: CommonSteps {
    /// Removes these types whole: definitions, counters, admin limits and
    /// every row of them, taking locks in the writers' order; returns the
    /// rows removed.
    async fn delete_types(
        &mut self,
        portal: i64,
        keys: &[TypeKey],
    ) -> StoreResult<Vec<DirectedRow>>;
    /// Locks the definitions of these deletable types against deletion until
    /// commit (a shared lock); returns those that still exist.
    async fn lock_types(&mut self, portal: i64, keys: &[TypeKey])
        -> StoreResult<BTreeSet<TypeKey>>;
    /// Every stored row, both directions, that archiving `pairs` with
    /// `filter` removes.
    async fn find_rows(
        &mut self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
        filter: &TypeFilter,
    ) -> StoreResult<Vec<DirectedRow>>;
    /// Locks the counters in the order given (creating missing ones at 0)
    /// and returns them.
    async fn lock_counts(
        &mut self,
        portal: i64,
        keys: &[CountKey],
    ) -> StoreResult<HashMap<CountKey, i64>>;
    async fn load_primaries(
        &mut self,
        portal: i64,
        lookup: &PrimaryLookup,
    ) -> StoreResult<HashMap<i64, i64>>;
    /// Every row between each (from record, to record) pair, that direction.
    async fn load_pair_rows(
        &mut self,
        portal: i64,
        pairs: &[RecordPair],
    ) -> StoreResult<Vec<DirectedRow>>;
    /// What a create plans against once its counters are locked: the
    /// primaries of `lookup`, the existing associations of `pairs`, and the
    /// pair's admin limits.
    async fn load_create_state(
        &mut self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
        lookup: Option<&PrimaryLookup>,
    ) -> StoreResult<CreateState>;
    /// Writes a plan: removes and adds rows, moves counters, appends the
    /// changes to the portal's feed.
    async fn apply_plan(&mut self, portal: i64, write: &PlannedWrite<'_>) -> StoreResult<()>;
    /// Serialises the portal's limit changes until commit.
    async fn lock_limits(&mut self, portal: i64) -> StoreResult<()>;
    /// Stores admin limits of the pair `from -> to`: (type, max).
    async fn set_limits(
        &mut self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        limits: &[(TypeKey, u32)],
    ) -> StoreResult<()>;
    /// Appends an admin change to its portal's log.
    async fn record_admin_change(&mut self, change: &AdminChange) -> StoreResult<()>;
}

/// What a create plans against, read under its counter locks.
pub(crate) struct CreateState {
    pub primaries: HashMap<i64, i64>,
    pub edges: Vec<PairEdge>,
    pub user_limits: HashMap<TypeKey, u32>,
}

/// The rows, counters and feed entries one write changes.
pub(crate) struct PlannedWrite<'a> {
    pub delete: &'a [DirectedRow],
    pub insert: &'a [DirectedRow],
    pub deltas: &'a [(CountKey, i64)],
    pub changes: &'a [(ChangeKind, DirectedRow)],
}

/// A directed pair of records: (from type, from id, to type, to id).
pub(crate) type RecordPair = (ObjectType, i64, ObjectType, i64);

/// Every row of a record, both directions (incoming rows are found through
/// the record's outgoing rows: each association is stored both ways).
async fn load_record_rows(
    steps: &mut dyn WriteSteps,
    req: &MergeRequest,
) -> StoreResult<Vec<DirectedRow>> {
    let (t, id) = (req.object_type, req.merged_id);
    let mut rows = steps.load_rows_from(req.portal_id, t, id).await?;
    let incoming: Vec<RecordPair> = merge::counterparts(req, &rows)
        .into_iter()
        .map(|(ct, cid)| (ct, cid, t, id))
        .collect();
    if !incoming.is_empty() {
        rows.extend(steps.load_pair_rows(req.portal_id, &incoming).await?);
    }
    Ok(rows)
}

/// What a write learnt it must lock on an earlier run of its transaction.
#[derive(Clone, Debug, Default)]
pub(crate) struct LockHint {
    pub counts: BTreeSet<CountKey>,
    pub types: BTreeSet<TypeKey>,
}

/// Fails with `Relock` (remembering the counters in `hint`) unless every
/// counter in `needed` is among the `locked` ones.
fn require_locked(
    locked: &BTreeSet<CountKey>,
    needed: impl IntoIterator<Item = CountKey>,
    hint: &mut LockHint,
) -> StoreResult<()> {
    let missing: Vec<CountKey> = needed.into_iter().filter(|k| !locked.contains(k)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    hint.counts.extend(missing);
    Err(StoreError::Relock)
}

/// Locks `keys` in the global lock order (`CountKey::lock_order`) and
/// returns their values.
async fn lock_sorted(
    steps: &mut dyn WriteSteps,
    portal: i64,
    keys: &BTreeSet<CountKey>,
) -> StoreResult<HashMap<CountKey, i64>> {
    let mut keys: Vec<CountKey> = keys.iter().copied().collect();
    keys.sort_by_cached_key(CountKey::lock_order);
    steps.lock_counts(portal, &keys).await
}

/// The deletable types of `rows`.
fn deletable_types_of(rows: &[DirectedRow]) -> BTreeSet<TypeKey> {
    rows.iter()
        .map(|r| r.key)
        .filter(TypeKey::is_deletable)
        .collect()
}

/// The survivor's own primary company, read only when a primary row of the
/// merged record moves (its counter is then locked by the flow).
async fn survivor_primary_company(
    steps: &mut dyn WriteSteps,
    req: &MergeRequest,
    merged_rows: &[DirectedRow],
) -> StoreResult<Option<i64>> {
    let (t, a) = (req.object_type, req.primary_id);
    let Some(def) = req.primary_company_type() else {
        return Ok(None);
    };
    let moves = merged_rows
        .iter()
        .any(|r| r.key == def.key && r.from_type == t && r.from_id == req.merged_id);
    if !moves {
        return Ok(None);
    }
    let lookup = PrimaryLookup {
        record_type: t,
        company_type: def.to,
        record_key: def.key,
        record_ids: vec![a],
    };
    Ok(steps
        .load_primaries(req.portal_id, &lookup)
        .await?
        .get(&a)
        .copied())
}

/// The merge flow: read the merged record's rows, lock their label types
/// and every counter the merge may change, read again (running again if new
/// counters appeared), plan with the domain planner, write.
pub(crate) async fn merge_in_transaction(
    steps: &mut dyn WriteSteps,
    req: &MergeRequest,
    ceiling: u32,
    hint: &mut LockHint,
) -> StoreResult<MergePlan> {
    let portal = req.portal_id;
    let seen = load_record_rows(steps, req).await?;
    let mut types = deletable_types_of(&seen);
    types.extend(hint.types.iter().copied());
    if !types.is_empty() {
        let keys: Vec<TypeKey> = types.iter().copied().collect();
        steps.lock_types(portal, &keys).await?;
    }
    let mut locked: BTreeSet<CountKey> = merge::count_keys(req, &seen).into_iter().collect();
    locked.extend(hint.counts.iter().copied());
    let counts = lock_sorted(steps, portal, &locked).await?;
    let merged_rows = load_record_rows(steps, req).await?;
    let new_types: Vec<TypeKey> = deletable_types_of(&merged_rows)
        .into_iter()
        .filter(|t| !types.contains(t))
        .collect();
    if !new_types.is_empty() {
        hint.types.extend(new_types);
        return Err(StoreError::Relock);
    }
    require_locked(&locked, merge::count_keys(req, &merged_rows), hint)?;
    let (t, a) = (req.object_type, req.primary_id);
    let pairs: Vec<RecordPair> = merge::counterparts(req, &merged_rows)
        .into_iter()
        .filter(|&(ct, cid)| !(ct == t && cid == a))
        .flat_map(|(ct, cid)| [(t, a, ct, cid), (ct, cid, t, a)])
        .collect();
    let primary_rows = if pairs.is_empty() {
        Vec::new()
    } else {
        steps.load_pair_rows(portal, &pairs).await?
    };
    let primary_company = survivor_primary_company(steps, req, &merged_rows).await?;
    let keys: Vec<TypeKey> = locked
        .iter()
        .map(|k| k.key)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let user_limits = steps.load_limits(portal, &keys).await?;
    let snapshot = MergeSnapshot {
        merged_rows,
        primary_rows,
        primary_company,
        counts,
        user_limits,
    };
    let plan = merge::plan_merge(req, &snapshot, ceiling)?;
    require_locked(&locked, plan.count_deltas.iter().map(|(k, _)| *k), hint)?;
    let write = PlannedWrite {
        delete: &plan.delete_rows,
        insert: &plan.insert_rows,
        deltas: &plan.count_deltas,
        changes: &plan.changes(req),
    };
    steps.apply_plan(portal, &write).await?;
    steps.record_merge(req).await?;
    Ok(plan)
}

/// A merge as asked: under the portal's merge lock, its ids resolved, then
/// each record merged into the survivor in order, in one transaction.
pub(crate) async fn merges_in_transaction(
    steps: &mut dyn WriteSteps,
    merge: &MergeInto,
    ceiling: u32,
    hint: &mut LockHint,
) -> StoreResult<(i64, Vec<MergePlan>)> {
    let portal = merge.portal_id;
    steps.lock_merges(portal).await?;
    let mut resolved = merge.ids();
    let survivors: HashMap<i64, i64> = steps
        .merged_survivors(portal, merge.object_type, &resolved)
        .await?
        .into_iter()
        .collect();
    for id in resolved.iter_mut() {
        if let Some(survivor) = survivors.get(id) {
            *id = *survivor;
        }
    }
    let reqs = merge.merges(resolved)?;
    let plans = merge_in_order(steps, &reqs, ceiling, hint).await?;
    Ok((resolved[2], plans))
}

/// Merges in order in one transaction, each seeing the ones before it.
async fn merge_in_order(
    steps: &mut dyn WriteSteps,
    reqs: &[MergeRequest],
    ceiling: u32,
    hint: &mut LockHint,
) -> StoreResult<Vec<MergePlan>> {
    // The later merges' counters and label types are locked with the
    // first's, in the one global order, so that no lock is taken after a
    // greater one (a merge seen to need more runs again with them).
    // A later merge sees the rows an earlier one moved: its record's rows
    // to an earlier merged record then name the survivor instead.
    for (n, req) in reqs.iter().enumerate().skip(1) {
        let rows = load_record_rows(steps, req).await?;
        let moved: Vec<DirectedRow> = rows
            .iter()
            .map(|row| {
                let earlier = |t: ObjectType, id: i64| {
                    t == req.object_type && reqs[..n].iter().any(|e| e.merged_id == id)
                };
                let mut row = *row;
                if earlier(row.from_type, row.from_id) {
                    row.from_id = req.primary_id;
                }
                if earlier(row.to_type, row.to_id) {
                    row.to_id = req.primary_id;
                }
                row
            })
            .collect();
        hint.counts.extend(merge::count_keys(req, &rows));
        hint.counts.extend(merge::count_keys(req, &moved));
        hint.types.extend(deletable_types_of(&rows));
    }
    let mut plans = Vec::with_capacity(reqs.len());
    for req in reqs {
        plans.push(merge_in_transaction(steps, req, ceiling, hint).await?);
    }
    Ok(plans)
}

/// The labels the items name, locked (shared): each item naming one that
/// is gone has its refusal, the others are live.
async fn lock_labels(
    steps: &mut dyn WriteSteps,
    ctx: &WriteContext<'_>,
    items: &[CreateItem],
) -> StoreResult<(Vec<Option<ItemOutcome>>, Vec<CreateItem>)> {
    let labels = plan::deletable_types(items);
    let present = if labels.is_empty() {
        BTreeSet::new()
    } else {
        steps.lock_types(ctx.portal_id, &labels).await?
    };
    let gone = |item: &CreateItem| {
        item.types
            .iter()
            .find(|k| k.is_deletable() && !present.contains(k))
            .copied()
    };
    let refusals = items
        .iter()
        .map(|item| {
            gone(item).map(|key| {
                Err(DomainError::UnknownAssociationType {
                    key,
                    from: ctx.from,
                    to: ctx.to,
                })
            })
        })
        .collect();
    let live = items
        .iter()
        .filter(|item| gone(item).is_none())
        .cloned()
        .collect();
    Ok((refusals, live))
}

/// The create flow: lock the label types the items use (items of a label
/// deleted meanwhile fail), lock every counter the plan may change (the
/// current primary companies included), plan with the domain planner, write.
pub(crate) async fn create_in_transaction(
    steps: &mut dyn WriteSteps,
    ctx: &WriteContext<'_>,
    items: &[CreateItem],
    hint: &mut LockHint,
) -> StoreResult<Vec<ItemOutcome>> {
    let portal = ctx.portal_id;
    let (mut outcomes, live) = lock_labels(steps, ctx, items).await?;
    let needs = plan::requirements(ctx, &live);
    let mut locked: BTreeSet<CountKey> = needs.count_keys.iter().copied().collect();
    locked.extend(hint.counts.iter().copied());
    if let Some(lookup) = &needs.primaries {
        // Read before locking, so a primary move's counters join the one ordered lock.
        let seen = steps.load_primaries(portal, lookup).await?;
        locked.extend(plan::primary_move_keys(ctx, &seen));
    }
    let counts = lock_sorted(steps, portal, &locked).await?;
    let CreateState {
        primaries,
        edges,
        user_limits,
    } = steps
        .load_create_state(
            portal,
            ctx.from,
            ctx.to,
            &needs.pairs,
            needs.primaries.as_ref(),
        )
        .await?;
    require_locked(&locked, plan::primary_move_keys(ctx, &primaries), hint)?;
    let snapshot = Snapshot {
        counts,
        edges,
        primaries,
        user_limits,
    };
    let Plan {
        insert_rows,
        delete_rows,
        count_deltas,
        outcomes: planned,
    } = plan::plan_creates(ctx, snapshot, &live);
    require_locked(&locked, count_deltas.iter().map(|(k, _)| *k), hint)?;
    let changes: Vec<(ChangeKind, DirectedRow)> = delete_rows
        .iter()
        .map(|r| (ChangeKind::Archived, *r))
        .chain(insert_rows.iter().map(|r| (ChangeKind::Created, *r)))
        .collect();
    if !changes.is_empty() {
        let write = PlannedWrite {
            delete: &delete_rows,
            insert: &insert_rows,
            deltas: &count_deltas,
            changes: &changes,
        };
        steps.apply_plan(portal, &write).await?;
    }
    let mut planned = planned.into_iter();
    Ok(outcomes
        .iter_mut()
        .map(|o| {
            o.take()
                .or_else(|| planned.next())
                .expect("one planned outcome per live item")
        })
        .collect())
}

/// The archive flow: find the rows, lock their counters in key order, find
/// them again (running again if new counters appeared), and remove exactly
/// those rows.
pub(crate) async fn archive_in_transaction(
    steps: &mut dyn WriteSteps,
    portal: i64,
    from: ObjectType,
    to: ObjectType,
    pairs: &[(i64, i64)],
    filter: &TypeFilter,
    hint: &mut LockHint,
) -> StoreResult<u64> {
    let seen = steps.find_rows(portal, from, to, pairs, filter).await?;
    let mut locked: BTreeSet<CountKey> = count_keys_of(&seen).into_iter().collect();
    locked.extend(hint.counts.iter().copied());
    if locked.is_empty() {
        return Ok(0);
    }
    lock_sorted(steps, portal, &locked).await?;
    let rows: BTreeSet<DirectedRow> = steps
        .find_rows(portal, from, to, pairs, filter)
        .await?
        .into_iter()
        .collect();
    require_locked(&locked, rows.iter().map(DirectedRow::count_key), hint)?;
    let rows: Vec<DirectedRow> = rows.into_iter().collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let write = PlannedWrite {
        delete: &rows,
        insert: &[],
        deltas: &removal_deltas(&rows),
        changes: &archived(&rows),
    };
    steps.apply_plan(portal, &write).await?;
    Ok(rows.len() as u64)
}

/// Marks every removed row as archived, for the feed.
pub(crate) fn archived(rows: &[DirectedRow]) -> Vec<(ChangeKind, DirectedRow)> {
    rows.iter().map(|r| (ChangeKind::Archived, *r)).collect()
}

/// Sums removed rows into (negative) counter changes.
pub(crate) fn removal_deltas(removed: &[DirectedRow]) -> Vec<(CountKey, i64)> {
    let mut deltas: HashMap<CountKey, i64> = HashMap::new();
    for row in removed {
        *deltas.entry(row.count_key()).or_default() -= 1;
    }
    let mut deltas: Vec<_> = deltas.into_iter().collect();
    deltas.sort();
    deltas
}

/// The counters of `rows`, sorted and without repeats.
pub(crate) fn count_keys_of(rows: &[DirectedRow]) -> Vec<CountKey> {
    rows.iter()
        .map(DirectedRow::count_key)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}
