//! Persistence: the `Store` trait, its PostgreSQL (production) and SQLite
//! (embedded default) implementations, and the write transaction flows both
//! share. All SQL of the service lives below this module.
//!
//! Lock order, the same in every write: the definitions of the labels it
//! writes (shared), then every counter it will change, in one global key
//! order, before any association row changes. A flow reads what it will
//! touch, locks it, reads again and, if a counter appeared that it had not
//! locked, runs again with that counter locked from the start.
//!
//! Every write transaction also appends its row changes to the portal's
//! change feed, in the same transaction. Numbers are gap-free per portal and
//! a reader never sees number n+1 before n, so no change is skipped even when
//! transactions commit out of their start order: PostgreSQL numbers changes
//! on read, only once committed; SQLite's single writer numbers them as it
//! commits.
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::admin::AdminChange;
pub(crate) use crate::domain::admin::LimitValue;
use crate::domain::feed::{Change, ChangeKind};
use crate::domain::limits::{LimitChange, LimitMode};
use crate::domain::merge::{self, MergePlan, MergeRequest, MergeSnapshot};
use crate::domain::plan::{
    self, CountKey, CreateItem, DirectedRow, ItemOutcome, PairEdge, Plan, PrimaryLookup, Snapshot,
    WriteContext,
};
use crate::domain::types::{
    allocated_unlabeled, check_labels_unique, label_ids_needed, new_label_definitions,
};
use crate::domain::{Category, DomainError, ObjectType, PairCatalog, TypeDef, TypeKey, TypeRole};

/// How often one write may run again because it found a counter it had not
/// locked (each run locks more, so this is never reached in practice).
const MAX_RELOCKS: u32 = 16;

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

/// What a store needs besides its URL.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub retry: RetryPolicy,
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
            let result: $crate::store::StoreResult<_> = async {
                let mut tx = $begin.await?;
                let value = {
                    let $conn = &mut *tx;
                    let body: $crate::store::StoreResult<_> = async { $body }.await;
                    body?
                };
                tx.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err($crate::store::StoreError::Relock) if relocks < $crate::store::MAX_RELOCKS => {
                    relocks += 1;
                }
                Err(err) if $retryable(&err) => {
                    let wait = policy.backoff(attempt);
                    if started.elapsed() + wait > policy.budget {
                        break Err($crate::store::StoreError::RetriesExhausted {
                            attempts: attempt,
                            elapsed_ms: started.elapsed().as_millis() as u64,
                            last: err.to_string(),
                        });
                    }
                    tracing::debug!(attempt, "transaction lost a race, running it again: {err}");
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
                other => break other,
            }
        }
    }};
}

pub mod postgres;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A domain rule refused the change (checked inside the transaction).
    #[error(transparent)]
    Rejected(#[from] DomainError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("unsupported store url '{0}': use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
    /// The write kept losing races with concurrent writers for the whole
    /// retry budget (`store.retry_budget_ms`).
    #[error("the write kept conflicting with concurrent writes and was given up after {attempts} attempts in {elapsed_ms} ms (store.retry_budget_ms); try again: {last}")]
    RetriesExhausted {
        attempts: u32,
        elapsed_ms: u64,
        last: String,
    },
    /// A flow found a counter it had not locked and must run again with it
    /// locked from the start (handled inside the store, never returned).
    #[error("the transaction must run again with more counters locked")]
    Relock,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which types an archive removes between each pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeFilter {
    /// Every type, both directions.
    All,
    /// These types from -> to, and their inverses to -> from.
    Only {
        forward: Vec<TypeKey>,
        inverse: Vec<TypeKey>,
    },
}

/// An admin limit as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLimit {
    pub from: ObjectType,
    pub to: ObjectType,
    pub key: TypeKey,
    pub max_to_object_ids: u32,
}

/// A new admin label.
#[derive(Clone, Debug)]
pub struct NewLabel {
    pub from: ObjectType,
    pub to: ObjectType,
    pub label: String,
    pub name: String,
    pub inverse_label: Option<String>,
}

/// One row of a record's associations: (to type, to id, type).
pub type RecordRow = (ObjectType, i64, TypeKey);

/// A record that holds associations, with the times (µs since the epoch) of
/// its oldest and newest association.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSummary {
    pub id: i64,
    pub first_created_us: i64,
    pub last_created_us: i64,
}

/// Which records `Store::records` returns.
#[derive(Clone, Copy, Debug)]
pub enum RecordSelect<'a> {
    /// These ids (those without associations are left out).
    Ids(&'a [i64]),
    /// Up to `limit` records with ids above `after`, in id order.
    After { after: i64, limit: u32 },
}

/// The keyset start of an export: before every row.
pub(crate) fn export_start(after: Option<DirectedRow>) -> (String, i64, String, i64, i16, i32) {
    match after {
        Some(r) => (
            r.from_type.to_string(),
            r.from_id,
            r.to_type.to_string(),
            r.to_id,
            r.key.category.code(),
            r.key.type_id,
        ),
        None => (String::new(), 0, String::new(), 0, 0, 0),
    }
}

/// Storage of definitions, associations, counters and limits, per portal.
#[async_trait]
pub trait Store: Send + Sync {
    /// "postgres" or "sqlite".
    fn backend(&self) -> &'static str;

    /// Applies pending migrations (safe to call from replicas at once).
    async fn migrate(&self) -> StoreResult<()>;

    /// The portal's own definitions between `a` and `b` (both directions),
    /// allocating the pair's unlabeled type first if it has no built-in one.
    async fn pair_definitions(
        &self,
        portal: i64,
        a: ObjectType,
        b: ObjectType,
    ) -> StoreResult<Vec<TypeDef>>;

    // Admin changes record `change` (completed with what only the
    // transaction knows) in the admin change log, in the same transaction.

    /// Allocates ids for a label (one or two directions) and stores it.
    async fn create_label(
        &self,
        portal: i64,
        label: &NewLabel,
        change: &AdminChange,
    ) -> StoreResult<Vec<TypeDef>>;

    /// Renames a label; `inverse_label` renames the other direction.
    async fn update_label(
        &self,
        portal: i64,
        def: &TypeDef,
        label: &str,
        inverse_label: Option<&str>,
        change: &AdminChange,
    ) -> StoreResult<()>;

    /// Deletes a label, its inverse, their limits and every use of them.
    async fn delete_label(
        &self,
        portal: i64,
        def: &TypeDef,
        change: &AdminChange,
    ) -> StoreResult<()>;

    /// Creates associations item by item in one transaction: limits are
    /// checked against locked counters, failing items change nothing.
    async fn create_associations(
        &self,
        ctx: &WriteContext<'_>,
        items: &[CreateItem],
    ) -> StoreResult<Vec<ItemOutcome>>;

    /// Merges one record into another in one transaction (see
    /// `domain::merge`); a limit the merge would break fails it whole.
    async fn merge_records(&self, req: &MergeRequest, ceiling: u32) -> StoreResult<MergePlan>;

    /// Removes associations between each pair; returns the rows removed.
    async fn archive_associations(
        &self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
        filter: &TypeFilter,
    ) -> StoreResult<u64>;

    /// Every row of up to `limit` associated records of one record, after
    /// the record `after`, ordered by (to type, to id, category, type id);
    /// `to` keeps one object type.
    async fn list_records(
        &self,
        portal: i64,
        from: ObjectType,
        from_id: i64,
        to: Option<ObjectType>,
        after: Option<(ObjectType, i64)>,
        limit: u32,
    ) -> StoreResult<Vec<RecordRow>>;

    /// Records of `object_type` that hold associations, in id order.
    async fn records(
        &self,
        portal: i64,
        object_type: ObjectType,
        select: RecordSelect<'_>,
    ) -> StoreResult<Vec<RecordSummary>>;

    /// Up to `limit` stored rows after `after`, in key order, optionally
    /// filtered by object types.
    async fn export_page(
        &self,
        portal: i64,
        from: Option<ObjectType>,
        to: Option<ObjectType>,
        after: Option<DirectedRow>,
        limit: u32,
    ) -> StoreResult<Vec<DirectedRow>>;

    /// Validates and applies limit changes under a per-portal lock.
    async fn change_limits(
        &self,
        catalog: &PairCatalog,
        changes: &[LimitChange],
        mode: LimitMode,
        ceiling: u32,
        change: &AdminChange,
    ) -> StoreResult<Vec<Result<u32, DomainError>>>;

    /// Removes admin limits; returns how many existed.
    async fn purge_limits(
        &self,
        portal: i64,
        keys: &[TypeKey],
        change: &AdminChange,
    ) -> StoreResult<u64>;

    /// Portals (all, or only `portal`) with admin changes `plugin` has not
    /// acknowledged, each with the last change it did acknowledge.
    async fn admin_outbox(&self, plugin: &str, portal: Option<i64>)
        -> StoreResult<Vec<(i64, i64)>>;

    /// Admin changes of a portal after `after`, in order.
    async fn admin_changes_after(
        &self,
        portal: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, AdminChange)>>;

    /// Records that `plugin` acknowledged a portal's changes up to `seq`.
    async fn mark_delivered(&self, plugin: &str, portal: i64, seq: i64) -> StoreResult<()>;

    /// Keeps an admin change in the audit trail (again is a no-op).
    async fn record_audit_event(&self, seq: i64, change: &AdminChange) -> StoreResult<()>;

    /// The audit trail of a portal after `after`, in order.
    async fn audit_events(
        &self,
        portal: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, AdminChange)>>;

    /// Admin limits of one pair (both directions), or of the whole portal.
    async fn user_limits(
        &self,
        portal: i64,
        pair: Option<(ObjectType, ObjectType)>,
    ) -> StoreResult<Vec<StoredLimit>>;

    /// Committed changes after sequence number `after`, in order.
    async fn changes_after(&self, portal: i64, after: i64, limit: u32) -> StoreResult<Vec<Change>>;

    /// (last pruned sequence number, last sequence number) of a portal's feed.
    async fn feed_bounds(&self, portal: i64) -> StoreResult<(i64, i64)>;

    /// Removes changes written before `older_than_us` (a prefix per portal).
    async fn prune_changes(&self, older_than_us: i64) -> StoreResult<()>;

    /// How many counters differ from the real number of associations
    /// (0 unless something is badly wrong).
    async fn counter_drift(&self, portal: i64) -> StoreResult<u64>;
}

/// Opens the store a URL names (`postgres://…` or `sqlite://…`) with the
/// default retry policy.
pub async fn connect(url: &str, max_connections: u32) -> StoreResult<std::sync::Arc<dyn Store>> {
    let options = StoreOptions {
        max_connections,
        retry: RetryPolicy::default(),
    };
    connect_with(url, &options).await
}

/// Opens the store a URL names: `postgres://…` or `sqlite://…`.
pub async fn connect_with(
    url: &str,
    options: &StoreOptions,
) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            PostgresStore::connect(url, options).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            SqliteStore::connect(url, options).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// The steps of a write transaction, as each backend's SQL does them.
#[async_trait]
pub(crate) trait CreateSteps: Send {
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
    /// Locks the counters (creating missing ones at 0) and returns them.
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
    async fn load_edges(
        &mut self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
    ) -> StoreResult<Vec<PairEdge>>;
    async fn load_user_limits(
        &mut self,
        portal: i64,
        a: ObjectType,
        b: ObjectType,
    ) -> StoreResult<HashMap<TypeKey, u32>>;
    async fn delete_rows(&mut self, portal: i64, rows: &[DirectedRow]) -> StoreResult<()>;
    async fn insert_rows(&mut self, portal: i64, rows: &[DirectedRow]) -> StoreResult<()>;
    async fn add_to_counts(&mut self, portal: i64, deltas: &[(CountKey, i64)]) -> StoreResult<()>;
    /// Appends changes to the portal's feed.
    async fn record_changes(
        &mut self,
        portal: i64,
        changes: &[(ChangeKind, DirectedRow)],
    ) -> StoreResult<()>;
    /// Every row from one record.
    async fn load_rows_from(
        &mut self,
        portal: i64,
        object_type: ObjectType,
        id: i64,
    ) -> StoreResult<Vec<DirectedRow>>;
    /// Every row between each (from record, to record) pair, that direction.
    async fn load_pair_rows(
        &mut self,
        portal: i64,
        pairs: &[RecordPair],
    ) -> StoreResult<Vec<DirectedRow>>;
    /// What a create plans against once its counters are locked: the
    /// primaries of `lookup`, the existing associations of `pairs`, and the
    /// pair's admin limits. One statement where the backend can.
    async fn load_create_state(
        &mut self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
        lookup: Option<&PrimaryLookup>,
    ) -> StoreResult<CreateState> {
        let primaries = match lookup {
            Some(lookup) => self.load_primaries(portal, lookup).await?,
            None => HashMap::new(),
        };
        let edges = self.load_edges(portal, from, to, pairs).await?;
        let user_limits = self.load_user_limits(portal, from, to).await?;
        Ok(CreateState {
            primaries,
            edges,
            user_limits,
        })
    }
    /// Writes a plan: removes and adds rows, moves counters, appends the
    /// changes to the feed. One statement where the backend can.
    async fn apply_plan(&mut self, portal: i64, write: &PlannedWrite<'_>) -> StoreResult<()> {
        if !write.delete.is_empty() {
            self.delete_rows(portal, write.delete).await?;
        }
        if !write.insert.is_empty() {
            self.insert_rows(portal, write.insert).await?;
        }
        if !write.deltas.is_empty() {
            self.add_to_counts(portal, write.deltas).await?;
        }
        if !write.changes.is_empty() {
            self.record_changes(portal, write.changes).await?;
        }
        Ok(())
    }
    /// Admin limits of these types.
    async fn load_limits(
        &mut self,
        portal: i64,
        keys: &[TypeKey],
    ) -> StoreResult<HashMap<TypeKey, u32>>;
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
    steps: &mut dyn CreateSteps,
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

/// Locks `keys` (sorted, the global order) and returns their values.
async fn lock_sorted(
    steps: &mut dyn CreateSteps,
    portal: i64,
    keys: &BTreeSet<CountKey>,
) -> StoreResult<HashMap<CountKey, i64>> {
    let keys: Vec<CountKey> = keys.iter().copied().collect();
    steps.lock_counts(portal, &keys).await
}

/// The deletable types of `rows`.
fn deletable_types_of(rows: &[DirectedRow]) -> BTreeSet<TypeKey> {
    rows.iter()
        .map(|r| r.key)
        .filter(TypeKey::is_deletable)
        .collect()
}

/// The merge flow: read the merged record's rows, lock their label types
/// and every counter the merge may change, read again (running again if new
/// counters appeared), plan with the domain planner, write.
pub(crate) async fn merge_in_transaction(
    steps: &mut dyn CreateSteps,
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
    // The primary's own primary company matters only when a primary row moves;
    // its counter is then locked above.
    let primary_company = match req.primary_company_type() {
        Some(def)
            if merged_rows
                .iter()
                .any(|r| r.key == def.key && r.from_type == t && r.from_id == req.merged_id) =>
        {
            let lookup = PrimaryLookup {
                record_type: t,
                company_type: def.to,
                record_key: def.key,
                record_ids: vec![a],
            };
            steps
                .load_primaries(portal, &lookup)
                .await?
                .get(&a)
                .copied()
        }
        _ => None,
    };
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
    Ok(plan)
}

/// The create flow: lock the label types the items use (items of a label
/// deleted meanwhile fail), lock every counter the plan may change (the
/// current primary companies included), plan with the domain planner, write.
pub(crate) async fn create_in_transaction(
    steps: &mut dyn CreateSteps,
    ctx: &WriteContext<'_>,
    items: &[CreateItem],
    hint: &mut LockHint,
) -> StoreResult<Vec<ItemOutcome>> {
    let portal = ctx.portal_id;
    let labels = plan::deletable_types(items);
    let present = if labels.is_empty() {
        BTreeSet::new()
    } else {
        steps.lock_types(portal, &labels).await?
    };
    let gone = |item: &CreateItem| {
        item.types
            .iter()
            .find(|k| k.is_deletable() && !present.contains(k))
            .copied()
    };
    let mut outcomes: Vec<Option<ItemOutcome>> = items
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
    let live: Vec<CreateItem> = items
        .iter()
        .filter(|item| gone(item).is_none())
        .cloned()
        .collect();
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
    steps: &mut dyn CreateSteps,
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

/// The definition steps of a transaction, as each backend's SQL does them.
#[async_trait]
pub(crate) trait DefinitionSteps: Send {
    /// Reserves `count` consecutive type ids; locks the portal's allocator.
    async fn allocate_type_ids(&mut self, portal: i64, count: i32) -> StoreResult<i32>;
    async fn load_definitions(
        &mut self,
        portal: i64,
        a: ObjectType,
        b: ObjectType,
    ) -> StoreResult<Vec<TypeDef>>;
    async fn insert_definitions(&mut self, portal: i64, defs: &[TypeDef]) -> StoreResult<()>;
}

/// True when `defs` hold an unlabeled type from `a` to `b`.
pub(crate) fn has_unlabeled(defs: &[TypeDef], a: ObjectType, b: ObjectType) -> bool {
    defs.iter()
        .any(|d| d.from == a && d.to == b && d.role == TypeRole::Unlabeled)
}

/// Allocates the pair's unlabeled type unless another writer did first.
pub(crate) async fn allocate_unlabeled_in_transaction(
    steps: &mut dyn DefinitionSteps,
    portal: i64,
    a: ObjectType,
    b: ObjectType,
) -> StoreResult<Vec<TypeDef>> {
    let first = steps
        .allocate_type_ids(portal, if a == b { 1 } else { 2 })
        .await?;
    // The allocator is locked now: re-check before inserting.
    let defs = steps.load_definitions(portal, a, b).await?;
    if has_unlabeled(&defs, a, b) {
        return Ok(defs);
    }
    steps
        .insert_definitions(portal, &allocated_unlabeled(a, b, first))
        .await?;
    steps.load_definitions(portal, a, b).await
}

/// Allocates ids for a new label, checks its text is free, stores it.
pub(crate) async fn create_label_in_transaction(
    steps: &mut dyn DefinitionSteps,
    portal: i64,
    label: &NewLabel,
) -> StoreResult<Vec<TypeDef>> {
    let inverse_label = label.inverse_label.as_deref();
    let first = steps
        .allocate_type_ids(
            portal,
            label_ids_needed(label.from, label.to, inverse_label),
        )
        .await?;
    let defs = new_label_definitions(
        label.from,
        label.to,
        &label.label,
        &label.name,
        inverse_label,
        first,
    )?;
    let existing = steps.load_definitions(portal, label.from, label.to).await?;
    check_labels_unique(&existing, &defs)?;
    steps.insert_definitions(portal, &defs).await?;
    Ok(defs)
}

/// An admin change as stored (JSON).
pub(crate) fn encode_admin_change(change: &AdminChange) -> StoreResult<String> {
    serde_json::to_string(change).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn decode_admin_change(text: &str) -> StoreResult<AdminChange> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored admin change: {e}")))
}

/// The current time in microseconds since the Unix epoch.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
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

/// A stored definition row, decoded.
pub(crate) struct DefinitionRow {
    pub category: i64,
    pub type_id: i32,
    pub inverse_type_id: i32,
    pub from_object_type: String,
    pub to_object_type: String,
    pub label: Option<String>,
    pub name: String,
}

impl DefinitionRow {
    pub fn into_def(self) -> StoreResult<TypeDef> {
        let category = decode_category(self.category)?;
        Ok(TypeDef {
            key: TypeKey {
                category,
                type_id: self.type_id,
            },
            inverse: TypeKey {
                category,
                type_id: self.inverse_type_id,
            },
            from: decode_object_type(&self.from_object_type)?,
            to: decode_object_type(&self.to_object_type)?,
            role: if self.label.is_some() {
                TypeRole::Label
            } else {
                TypeRole::Unlabeled
            },
            label: self.label,
            name: self.name,
        })
    }
}

pub(crate) fn decode_category(code: i64) -> StoreResult<Category> {
    Category::from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown category code {code}")))
}

pub(crate) fn decode_object_type(text: &str) -> StoreResult<ObjectType> {
    ObjectType::parse(text).map_err(|_| StoreError::Corrupt(format!("unknown object type {text}")))
}

pub(crate) fn decode_key(category: i64, type_id: i32) -> StoreResult<TypeKey> {
    Ok(TypeKey {
        category: decode_category(category)?,
        type_id,
    })
}
