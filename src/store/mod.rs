//! Persistence: the `Store` trait, its PostgreSQL (production) and SQLite
//! (embedded default) implementations, and the write transaction flow both
//! share. All SQL of the service lives below this module.
//!
//! Every write transaction also appends its row changes to the portal's
//! change feed, taking sequence numbers from the portal's feed head as its
//! last step. The head row stays locked until commit, so sequence numbers
//! commit in order and a reader never sees number n+1 before n: no change is
//! skipped even when transactions commit out of their start order.
use std::collections::{BTreeSet, HashMap};

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

/// How often a transaction that lost a race (deadlock, serialization failure,
/// busy database) is run again before the error is returned.
const MAX_ATTEMPTS: u32 = 20;

/// Runs `$body` (which evaluates to a `StoreResult`) with `$conn` bound to a
/// transaction begun by `$begin`, commits, and runs it all again while
/// `$retryable` says the error was a lost race.
macro_rules! transaction {
    ($begin:expr, $retryable:expr, |$conn:ident| $body:block) => {{
        let mut attempt = 1u32;
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
                Err(err) if attempt < $crate::store::MAX_ATTEMPTS && $retryable(&err) => {
                    attempt += 1;
                    tracing::debug!(attempt, "transaction lost a race, running it again: {err}");
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

/// Opens the store a URL names: `postgres://…` or `sqlite://…`.
pub async fn connect(url: &str, max_connections: u32) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            PostgresStore::connect(url, max_connections).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            SqliteStore::connect(url, max_connections).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// The steps of a create transaction, as each backend's SQL does them.
#[async_trait]
pub(crate) trait CreateSteps: Send {
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
    /// Appends changes to the feed; must be the transaction's last step.
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
    /// Admin limits of these types.
    async fn load_limits(
        &mut self,
        portal: i64,
        keys: &[TypeKey],
    ) -> StoreResult<HashMap<TypeKey, u32>>;
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

/// The merge flow: lock every counter the merged record's rows touch (reading
/// its rows again until no new counter appears), load the primary's side,
/// plan with the domain planner, write.
pub(crate) async fn merge_in_transaction(
    steps: &mut dyn CreateSteps,
    req: &MergeRequest,
    ceiling: u32,
) -> StoreResult<MergePlan> {
    let portal = req.portal_id;
    let mut counts: HashMap<CountKey, i64> = HashMap::new();
    let merged_rows = loop {
        let rows = load_record_rows(steps, req).await?;
        let missing: Vec<CountKey> = merge::count_keys(req, &rows)
            .into_iter()
            .filter(|k| !counts.contains_key(k))
            .collect();
        if missing.is_empty() {
            break rows;
        }
        counts.extend(steps.lock_counts(portal, &missing).await?);
    };
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
    let keys: Vec<TypeKey> = counts
        .keys()
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
    if !plan.delete_rows.is_empty() {
        steps.delete_rows(portal, &plan.delete_rows).await?;
    }
    if !plan.insert_rows.is_empty() {
        steps.insert_rows(portal, &plan.insert_rows).await?;
    }
    if !plan.count_deltas.is_empty() {
        steps.add_to_counts(portal, &plan.count_deltas).await?;
    }
    steps.record_changes(portal, &plan.changes(req)).await?;
    Ok(plan)
}

/// The create flow: lock, load, plan with the domain planner, write.
pub(crate) async fn create_in_transaction(
    steps: &mut dyn CreateSteps,
    ctx: &WriteContext<'_>,
    items: &[CreateItem],
) -> StoreResult<Vec<ItemOutcome>> {
    let portal = ctx.portal_id;
    let needs = plan::requirements(ctx, items);
    let counts = steps.lock_counts(portal, &needs.count_keys).await?;
    let primaries = match &needs.primaries {
        Some(lookup) => steps.load_primaries(portal, lookup).await?,
        None => HashMap::new(),
    };
    let edges = steps
        .load_edges(portal, ctx.from, ctx.to, &needs.pairs)
        .await?;
    let user_limits = steps.load_user_limits(portal, ctx.from, ctx.to).await?;
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
        outcomes,
    } = plan::plan_creates(ctx, snapshot, items);
    if !delete_rows.is_empty() {
        steps.delete_rows(portal, &delete_rows).await?;
    }
    if !insert_rows.is_empty() {
        steps.insert_rows(portal, &insert_rows).await?;
    }
    if !count_deltas.is_empty() {
        steps.add_to_counts(portal, &count_deltas).await?;
    }
    let changes: Vec<(ChangeKind, DirectedRow)> = delete_rows
        .iter()
        .map(|r| (ChangeKind::Archived, *r))
        .chain(insert_rows.iter().map(|r| (ChangeKind::Created, *r)))
        .collect();
    if !changes.is_empty() {
        steps.record_changes(portal, &changes).await?;
    }
    Ok(outcomes)
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
