//! Persistence: the `Store` trait, its errors and retry policy, and its
//! PostgreSQL (production) and SQLite (embedded default) implementations;
//! the write flows both share live once in `flows.rs`, each backend keeps
//! its SQL. All SQL of the service lives below this module.
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
use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::domain::admin::AdminChange;
use crate::domain::builtin::has_builtin_unlabeled;
use crate::domain::feed::Change;
use crate::domain::limits::{LimitChange, LimitMode};
use crate::domain::merge::{MergeInto, MergePlan};
use crate::domain::plan::{
    CountKey, CreateItem, DirectedRow, ItemOutcome, PairEdge, PrimaryLookup, WriteContext,
};
use crate::domain::{
    Category, DomainError, ErrorKind, ObjectType, PairCatalog, TypeDef, TypeKey, TypeRole,
};

#[macro_use]
mod retry;
#[macro_use]
mod shared;
mod flows;
mod names;
pub mod postgres;
mod quota;
pub mod sqlite;
pub mod verify;

pub(crate) use flows::*;

pub use postgres::PostgresStore;
pub(crate) use retry::MAX_RELOCKS;
pub use retry::{RetryPolicy, StoreOptions};
use shared::AdminLog;
pub use shared::{Numbered, Pools};
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
    /// The database could not be reached for an earlier attempt that this
    /// call waited behind (the create combiner answers its queue with it).
    #[error("the database cannot be reached: {0}")]
    Unreachable(String),
    /// A flow found a counter it had not locked and must run again with it
    /// locked from the start (handled inside the store, never returned).
    #[error("the transaction must run again with more counters locked")]
    Relock,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// SQLSTATEs (and SQLite result codes) that mean the database cannot serve
/// now: PostgreSQL's connection exceptions (class 08), insufficient
/// resources (53), shutdowns and "cannot connect now" (57P01-57P03);
/// SQLite's busy and locked (5, 6, 517).
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        // 57014: a statement ran past store.statement_timeout_ms.
        || matches!(code, "57014" | "57P01" | "57P02" | "57P03" | "5" | "6" | "517")
}

impl StoreError {
    /// Whether the store the URL names does not exist: a PostgreSQL
    /// database that is not there (3D000), an SQLite file that cannot be
    /// opened without being made (14, SQLITE_CANTOPEN).
    pub fn is_missing_store(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("3D000") | Some("14"))
            }
            _ => false,
        }
    }

    /// The kind of this failure: only connection, pool and resource
    /// failures are "unavailable"; a corrupt row, a refused statement or a
    /// bug is internal.
    pub fn kind(&self) -> ErrorKind {
        use sqlx::Error as Sql;
        match self {
            StoreError::Rejected(domain) => domain.kind(),
            StoreError::UnsupportedUrl(_) => ErrorKind::InvalidArgument,
            StoreError::RetriesExhausted { .. } => ErrorKind::Aborted,
            StoreError::Unreachable(_) => ErrorKind::Unavailable,
            StoreError::Database(
                Sql::PoolTimedOut | Sql::PoolClosed | Sql::Io(_) | Sql::Tls(_) | Sql::WorkerCrashed,
            ) => ErrorKind::Unavailable,
            StoreError::Database(Sql::Database(db))
                if db.code().as_deref().is_some_and(unavailable_code) =>
            {
                ErrorKind::Unavailable
            }
            // A database closed to new connections (ALLOW_CONNECTIONS false,
            // as during maintenance) refuses them with 55000.
            StoreError::Database(Sql::Database(db))
                if db.code().as_deref() == Some("55000")
                    && db.message().contains("not currently accepting connections") =>
            {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Internal,
        }
    }
}

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

/// The records of one object type by how many associations of one type
/// each holds (its counter).
#[derive(Clone, Copy, Debug)]
pub struct UsageScan {
    pub portal: i64,
    pub object_type: ObjectType,
    pub key: TypeKey,
}

/// How a type's counters stand against two thresholds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeUsage {
    /// Records holding `at` or more.
    pub at_or_above: u64,
    /// Records holding at least `near` but fewer than `at`.
    pub near: u64,
    /// The most any record holds (0 when none holds any).
    pub largest: i64,
    /// Up to the asked number of records of each group, (id, count),
    /// largest first.
    pub at_or_above_samples: Vec<(i64, i64)>,
    pub near_samples: Vec<(i64, i64)>,
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

/// Rows of one statement, in batches; at most one error, then the end.
pub type RowBatches<T> = tokio::sync::mpsc::Receiver<StoreResult<Vec<T>>>;

/// Batches a scan may read ahead of its receiver.
pub(crate) const SCAN_AHEAD: usize = 2;

/// A scan's rows gathered into batches of a fixed size for its receiver.
pub(crate) struct Batcher<T> {
    sender: tokio::sync::mpsc::Sender<StoreResult<Vec<T>>>,
    pending: Vec<T>,
    size: usize,
}

impl<T> Batcher<T> {
    pub(crate) fn new(sender: tokio::sync::mpsc::Sender<StoreResult<Vec<T>>>, size: usize) -> Self {
        let size = size.max(1);
        Batcher {
            sender,
            pending: Vec::with_capacity(size),
            size,
        }
    }

    /// Adds a row, sending a full batch; false once the receiver went away.
    pub(crate) async fn push(&mut self, row: T) -> bool {
        self.pending.push(row);
        self.pending.len() < self.size || self.flush().await
    }

    /// Sends what is gathered (the last batch may be short or empty);
    /// false once the receiver went away.
    pub(crate) async fn flush(&mut self) -> bool {
        let full = std::mem::replace(&mut self.pending, Vec::with_capacity(self.size));
        self.sender.send(Ok(full)).await.is_ok()
    }
}

/// What `scan_records` reads.
#[derive(Clone, Copy, Debug)]
pub struct RecordScan {
    pub portal: i64,
    pub from: ObjectType,
    pub from_id: i64,
    pub to: Option<ObjectType>,
    /// Rows of records after this one (type, id); `None`: from the start.
    pub after: Option<(ObjectType, i64)>,
    pub batch: usize,
}

/// What `scan_batch` reads.
#[derive(Clone, Debug)]
pub struct BatchScan {
    pub portal: i64,
    pub from: ObjectType,
    /// The records, in the order their rows come.
    pub from_ids: Vec<i64>,
    pub to: Option<ObjectType>,
    /// Rows of the first record after this one (type, id).
    pub after: Option<(ObjectType, i64)>,
    pub batch: usize,
}

/// What `page_rows` reads.
#[derive(Clone, Copy, Debug)]
pub struct PageScan<'a> {
    pub portal: i64,
    pub from: ObjectType,
    pub to: ObjectType,
    /// Each input: (from id, the to-id its page starts after; 0 for the
    /// first page).
    pub inputs: &'a [(i64, i64)],
    /// Most rows per input (each input's first rows in key order).
    pub rows: u32,
}

/// What `scan_export` reads.
#[derive(Clone, Copy, Debug)]
pub struct ExportScan {
    pub portal: i64,
    pub from: Option<ObjectType>,
    pub to: Option<ObjectType>,
    /// Rows after this one; `None`: from the start.
    pub after: Option<DirectedRow>,
    pub batch: usize,
}

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

/// Begins a transaction (with `statement`, or a plain `BEGIN`) in a task of
/// its own. sqlx counts a transaction only once BEGIN is answered, so a
/// caller dropped in between (a client that went away, a stream that
/// stopped) would hand the connection back to the pool inside a
/// transaction, where every later statement on it would hold its locks
/// forever. Run in a task, BEGIN always completes, and a transaction nobody
/// takes rolls back as it is dropped.
pub(crate) async fn begin<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    statement: Option<&'static str>,
) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
    let pool = pool.clone();
    let begun = tokio::spawn(async move {
        let metrics = crate::telemetry::metrics::metrics();
        metrics.pool_waiting(1);
        let begun = match statement {
            Some(statement) => pool.begin_with(statement).await,
            None => pool.begin().await,
        };
        metrics.pool_waiting(-1);
        begun
    });
    begun.await.unwrap_or(Err(sqlx::Error::WorkerCrashed))
}

/// Where a read of a record's rows starts: after (type, id) of the record
/// `after`, or before every record (the empty string and 0).
pub(crate) fn record_start(after: Option<(ObjectType, i64)>) -> (String, i64) {
    after
        .map(|(t, id)| (t.to_string(), id))
        .unwrap_or((String::new(), 0))
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

/// A connection pool's state, as the metrics report it.
pub use crate::telemetry::metrics::PoolUsage;

/// The state of `pool` now.
pub(crate) fn pool_usage_of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolUsage {
    PoolUsage {
        open: pool.size(),
        idle: pool.num_idle() as u32,
        max: pool.options().get_max_connections(),
    }
}

/// Storage of definitions, associations, counters and limits, per portal.
#[async_trait]
pub trait Store: Send + Sync {
    /// "postgres" or "sqlite".
    fn backend(&self) -> &'static str;

    /// The write pool and retry policy, for the methods both backends
    /// share (their default bodies here).
    #[doc(hidden)]
    fn pools(&self) -> Pools<'_>;

    /// Numbers what has committed to a log (one portal's, or every
    /// portal's) before it is read: PostgreSQL numbers on read (see
    /// `postgres/logs.rs`); SQLite numbered each change as it committed.
    #[doc(hidden)]
    async fn number_log(&self, _log: Numbered, _portal: Option<i64>) -> StoreResult<()> {
        Ok(())
    }

    /// Applies pending migrations (safe to call from replicas at once) and,
    /// on Citus, distributes what is not distributed yet; answers what it
    /// did, a line a step (`applied migration <version> <description>`).
    async fn migrate(&self) -> StoreResult<Vec<String>>;

    /// Answers once the database has answered a trivial statement.
    async fn ping(&self) -> StoreResult<()> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    /// The write pool's connections (for metrics).
    fn pool_usage(&self) -> PoolUsage {
        on_pool!(self, |pool| pool_usage_of(pool))
    }

    /// The portal's own definitions between `a` and `b` (both directions),
    /// allocating the pair's unlabeled type first if it has no built-in one.
    async fn pair_definitions(
        &self,
        portal: i64,
        a: ObjectType,
        b: ObjectType,
    ) -> StoreResult<Vec<TypeDef>> {
        let defs = on_pool!(self, |pool| {
            Sql::load_definitions(&mut *pool.acquire().await?, portal, a, b).await?
        });
        if has_builtin_unlabeled(a, b) || has_unlabeled(&defs, a, b) {
            return Ok(defs);
        }
        write_flow!(self, |steps| allocate_unlabeled_in_transaction(
            steps, portal, a, b
        )
        .await)
    }

    // Admin changes record `change` (completed with what only the
    // transaction knows) in the admin change log, in the same transaction.

    /// Allocates ids for a label (one or two directions) and stores it.
    async fn create_label(
        &self,
        portal: i64,
        label: &NewLabel,
        change: &AdminChange,
    ) -> StoreResult<Vec<TypeDef>> {
        write_flow!(self, |steps| {
            let defs = create_label_in_transaction(steps, portal, label).await?;
            let change = change.clone().with_labels(&[], &defs);
            steps.record_admin_change(&change).await?;
            Ok(defs)
        })
    }

    /// Renames a label; `inverse_label` renames the other direction.
    async fn update_label(
        &self,
        portal: i64,
        def: &TypeDef,
        label: &str,
        inverse_label: Option<&str>,
        change: &AdminChange,
    ) -> StoreResult<()> {
        write_flow!(self, |steps| {
            rename_label_in_transaction(steps, portal, def, label, inverse_label, change).await
        })
    }

    /// Deletes a label, its inverse, their limits and every use of them.
    async fn delete_label(
        &self,
        portal: i64,
        def: &TypeDef,
        change: &AdminChange,
    ) -> StoreResult<()> {
        write_flow!(self, |steps| delete_label_in_transaction(
            steps, portal, def, change
        )
        .await)
    }

    /// Names a custom object type (`None` takes its name), unless another
    /// type of the portal has the name; returns its name before.
    async fn name_object(
        &self,
        portal: i64,
        object_type: ObjectType,
        name: Option<&str>,
        change: &AdminChange,
    ) -> StoreResult<Option<String>> {
        write_flow!(self, |steps| {
            name_object_in_transaction(steps, portal, object_type, name, change).await
        })
    }

    /// The portal's named custom object types, by type.
    async fn object_names(&self, portal: i64) -> StoreResult<Vec<(ObjectType, String)>> {
        on_pool!(self, |pool| names::object_names(pool, portal).await)
    }

    /// Gives out `want` more of `portal`'s calls of UTC `day` (days since
    /// the epoch) unless the day would pass `max`: the day's calls given
    /// out now, or `None` when `want` does not fit.
    async fn draw_daily_calls(
        &self,
        portal: i64,
        day: i64,
        want: u32,
        max: u32,
    ) -> StoreResult<Option<u32>> {
        on_pool!(self, |pool| quota::draw(pool, portal, day, want, max).await)
    }

    /// Forgets the daily call counts of days before `day`.
    async fn prune_daily_calls(&self, day: i64) -> StoreResult<()> {
        on_pool!(self, |pool| quota::prune(pool, day).await)
    }

    /// Creates associations item by item in one transaction: limits are
    /// checked against locked counters, failing items change nothing.
    async fn create_associations(
        &self,
        ctx: &WriteContext<'_>,
        items: &[CreateItem],
    ) -> StoreResult<Vec<ItemOutcome>>;

    /// Merges records in one transaction (see `domain::merge`): resolves
    /// the ids under the portal's merge lock, then merges each record into
    /// the survivor in order; a limit any of them would break fails them
    /// all. Answers the survivor and each merge's plan.
    async fn merge_records(
        &self,
        merge: &MergeInto,
        ceiling: u32,
    ) -> StoreResult<(i64, Vec<MergePlan>)> {
        let mut hint = LockHint::default();
        write_flow!(self, |steps| merges_in_transaction(
            steps, merge, ceiling, &mut hint
        )
        .await)
    }

    /// Removes associations between each pair; returns the rows removed.
    async fn archive_associations(
        &self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
        filter: &TypeFilter,
    ) -> StoreResult<u64>;

    /// Pages of several records' rows to one object type, in one
    /// statement: for each input, its first `rows` rows after its start in
    /// key order (to id, category, type id), and possibly the rest of the
    /// last one's associated record; each row names its input's index. Rows
    /// come in no particular order.
    async fn page_rows(&self, scan: PageScan<'_>) -> StoreResult<Vec<(usize, RecordRow)>>;

    /// Every row of one record after the record `after` (to one object type
    /// or all), ordered by (to type, to id, category, type id): one statement
    /// whose rows arrive in batches of up to `batch`, read only as fast as
    /// the receiver takes them. Dropping the receiver ends the statement.
    fn scan_records(&self, scan: RecordScan) -> RowBatches<RecordRow>;

    /// Every stored row after `after`, in key order, optionally filtered by
    /// object types: one statement, batched and paced like `scan_records`.
    fn scan_export(&self, scan: ExportScan) -> RowBatches<DirectedRow>;

    /// The rows of several records of one object type, record by record in
    /// the order given (each like `scan_records`), the first record's after
    /// `after`: one statement, batched and paced like `scan_records`. Each
    /// row names its from-record.
    fn scan_batch(&self, scan: BatchScan) -> RowBatches<(i64, RecordRow)>;

    /// Records of `object_type` that hold associations, in id order.
    async fn records(
        &self,
        portal: i64,
        object_type: ObjectType,
        select: RecordSelect<'_>,
    ) -> StoreResult<Vec<RecordSummary>> {
        on_pool!(self, |pool| {
            Sql::records(&mut *pool.acquire().await?, portal, object_type, select).await
        })
    }

    /// How many records hold at least `at`, and at least `near` but fewer
    /// than `at`, associations of the scan's type; the largest count; up to
    /// `samples` records of each group.
    async fn type_usage(
        &self,
        scan: UsageScan,
        near: i64,
        at: i64,
        samples: u32,
    ) -> StoreResult<TypeUsage> {
        on_pool!(self, |pool| {
            Sql::type_usage(&mut *pool.acquire().await?, scan, near, at, samples).await
        })
    }

    /// Whether any record of the portal was merged away.
    async fn has_merged_records(&self, portal: i64) -> StoreResult<bool> {
        on_pool!(self, |pool| Sql::has_merged_records(
            &mut *pool.acquire().await?,
            portal
        )
        .await)
    }

    /// The records among `ids` (of `object_type`) that were merged away,
    /// each with the record it resolves to now.
    async fn merged_survivors(
        &self,
        portal: i64,
        object_type: ObjectType,
        ids: &[i64],
    ) -> StoreResult<Vec<(i64, i64)>> {
        on_pool!(self, |pool| {
            let conn = &mut *pool.acquire().await?;
            Sql::merged_survivors(conn, portal, object_type, ids).await
        })
    }

    /// The types of which some record holds at least `min` associations:
    /// (the record's object type, the type, the stored definition's
    /// to-object type; none for HubSpot's built-in types).
    async fn types_holding_at_least(
        &self,
        portal: i64,
        min: i64,
    ) -> StoreResult<Vec<(ObjectType, TypeKey, Option<ObjectType>)>>;

    /// Records holding at least `min` associations of the scan's type, by
    /// count then id, both descending, after `after` (count, id), as (id,
    /// count): one statement, batched and paced like `scan_records`.
    fn scan_at_least(
        &self,
        scan: UsageScan,
        min: i64,
        after: Option<(i64, i64)>,
        batch: usize,
    ) -> RowBatches<(i64, i64)>;

    /// Validates and applies limit changes under a per-portal lock.
    async fn change_limits(
        &self,
        catalog: &PairCatalog,
        changes: &[LimitChange],
        mode: LimitMode,
        ceiling: u32,
        change: &AdminChange,
    ) -> StoreResult<Vec<Result<u32, DomainError>>> {
        write_flow!(self, |steps| {
            change_limits_in_transaction(steps, catalog, changes, mode, ceiling, change).await
        })
    }

    /// Removes admin limits; returns how many existed.
    async fn purge_limits(
        &self,
        portal: i64,
        keys: &[TypeKey],
        change: &AdminChange,
    ) -> StoreResult<u64> {
        write_flow!(self, |steps| purge_limits_in_transaction(
            steps, portal, keys, change
        )
        .await)
    }

    /// Appends an admin event that changes nothing else (a usage report) to
    /// its portal's admin change log.
    async fn record_admin_event(&self, change: &AdminChange) -> StoreResult<()> {
        write_flow!(self, |steps| steps.record_admin_change(change).await)
    }

    /// Removes each portal's admin changes that every plugin of `plugins`
    /// has acknowledged; answers how many. Nothing goes while one of them
    /// has not acknowledged any change of the portal.
    async fn prune_admin_log(&self, plugins: &[String]) -> StoreResult<u64>;

    /// Portals (all, or only `portal`) with admin changes `plugin` has not
    /// acknowledged, each with the last change it did acknowledge.
    async fn admin_outbox(
        &self,
        plugin: &str,
        portal: Option<i64>,
    ) -> StoreResult<Vec<(i64, i64)>> {
        self.number_log(Numbered::AdminChanges, portal).await?;
        on_pool!(self, |pool| Sql::admin_outbox(
            &mut *pool.acquire().await?,
            plugin,
            portal
        )
        .await)
    }

    /// Admin changes of a portal after `after`, in order.
    async fn admin_changes_after(
        &self,
        portal: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, AdminChange)>> {
        self.number_log(Numbered::AdminChanges, Some(portal))
            .await?;
        on_pool!(self, |pool| {
            let conn = &mut *pool.acquire().await?;
            Sql::read_admin_log(conn, AdminLog::Changes, portal, after, limit).await
        })
    }

    /// Records that `plugin` acknowledged a portal's changes up to `seq`.
    async fn mark_delivered(&self, plugin: &str, portal: i64, seq: i64) -> StoreResult<()> {
        on_pool!(self, |pool| {
            Sql::mark_delivered(&mut *pool.acquire().await?, plugin, portal, seq).await
        })
    }

    /// Takes or renews the lease on delivering `portal`'s admin changes to
    /// `plugin` for `holder` until `ttl` from now (the database's clock);
    /// answers false while another holder's lease runs.
    async fn hold_hook_lease(
        &self,
        plugin: &str,
        portal: i64,
        holder: &str,
        ttl: std::time::Duration,
    ) -> StoreResult<bool> {
        on_pool!(self, |pool| {
            let conn = &mut *pool.acquire().await?;
            Sql::hold_hook_lease(conn, plugin, portal, holder, ttl).await
        })
    }

    /// Keeps an admin change in the audit trail (again is a no-op).
    async fn record_audit_event(&self, seq: i64, change: &AdminChange) -> StoreResult<()> {
        on_pool!(self, |pool| {
            Sql::record_audit_event(&mut *pool.acquire().await?, seq, change).await
        })
    }

    /// The audit trail of a portal after `after`, in order.
    async fn audit_events(
        &self,
        portal: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, AdminChange)>> {
        on_pool!(self, |pool| {
            let conn = &mut *pool.acquire().await?;
            Sql::read_admin_log(conn, AdminLog::Audit, portal, after, limit).await
        })
    }

    /// The directions (from, to) that have admin label definitions.
    async fn labelled_directions(&self, portal: i64) -> StoreResult<Vec<(ObjectType, ObjectType)>> {
        on_pool!(self, |pool| Sql::labelled_directions(
            &mut *pool.acquire().await?,
            portal
        )
        .await)
    }

    /// Admin limits of one pair (both directions), or of the whole portal.
    async fn user_limits(
        &self,
        portal: i64,
        pair: Option<(ObjectType, ObjectType)>,
    ) -> StoreResult<Vec<StoredLimit>> {
        on_pool!(self, |pool| Sql::user_limits(
            &mut *pool.acquire().await?,
            portal,
            pair
        )
        .await)
    }

    /// Committed changes after sequence number `after`, in order.
    async fn changes_after(&self, portal: i64, after: i64, limit: u32) -> StoreResult<Vec<Change>> {
        self.number_log(Numbered::Feed, Some(portal)).await?;
        on_pool!(self, |pool| {
            Sql::changes_after(&mut *pool.acquire().await?, portal, after, limit).await
        })
    }

    /// (last pruned sequence number, last sequence number) of a portal's feed.
    async fn feed_bounds(&self, portal: i64) -> StoreResult<(i64, i64)> {
        self.number_log(Numbered::Feed, Some(portal)).await?;
        on_pool!(self, |pool| Sql::feed_bounds(
            &mut *pool.acquire().await?,
            portal
        )
        .await)
    }

    /// Removes changes written before `older_than_us` (a prefix per portal).
    async fn prune_changes(&self, older_than_us: i64) -> StoreResult<()>;

    /// How many counters differ from the real number of associations
    /// (0 unless something is badly wrong).
    async fn counter_drift(&self, portal: i64) -> StoreResult<u64> {
        on_pool!(self, |pool| Sql::counter_drift(
            &mut *pool.acquire().await?,
            portal
        )
        .await)
    }

    /// Checks every invariant of the stored data in one read-only snapshot
    /// (a live store is judged at one instant), one report per check.
    async fn verify(&self) -> StoreResult<Vec<crate::domain::verify::CheckReport>>;
}

/// Opens the store a URL names (`postgres://…` or `sqlite://…`) with the
/// default retry policy and the configuration's default timeouts.
pub async fn connect(url: &str, max_connections: u32) -> StoreResult<std::sync::Arc<dyn Store>> {
    connect_with(url, &StoreOptions::defaults(max_connections)).await
}

impl StoreOptions {
    /// The default retry policy and the configuration's default timeouts.
    pub fn defaults(max_connections: u32) -> StoreOptions {
        StoreOptions {
            max_connections,
            retry: RetryPolicy::default(),
            acquire_timeout: std::time::Duration::from_secs(1),
            statement_timeout: std::time::Duration::from_secs(30),
            create_if_missing: true,
            route_to_workers: false,
        }
    }
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

/// Decodes `types_holding_at_least` rows: (object type, category, type id,
/// stored to-object type).
pub(crate) fn decode_held_types(
    rows: Vec<(String, i64, i32, Option<String>)>,
) -> StoreResult<Vec<(ObjectType, TypeKey, Option<ObjectType>)>> {
    rows.iter()
        .map(|(object_type, category, type_id, to)| {
            Ok((
                decode_object_type(object_type)?,
                decode_key(*category, *type_id)?,
                to.as_deref().map(decode_object_type).transpose()?,
            ))
        })
        .collect()
}

pub(crate) fn decode_key(category: i64, type_id: i32) -> StoreResult<TypeKey> {
    Ok(TypeKey {
        category: decode_category(category)?,
        type_id,
    })
}

/// The migrations of `migrator` that `before` (the versions applied before
/// it ran) lacked, as `version description`.
pub(crate) fn newly_applied(
    migrator: &sqlx::migrate::Migrator,
    before: &std::collections::HashSet<i64>,
) -> Vec<String> {
    migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !before.contains(&m.version))
        .map(|m| format!("applied migration {} {}", m.version, m.description))
        .collect()
}

/// The statement listing applied migrations (both backends); it fails
/// before the first migration, when the table does not exist yet.
pub(crate) const APPLIED_MIGRATIONS: &str = "SELECT version FROM _sqlx_migrations WHERE success";

/// The store's options from its settings.
impl crate::config::StoreSettings {
    /// What the store needs besides its URL.
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.max_connections,
            retry: RetryPolicy {
                budget: std::time::Duration::from_millis(self.retry_budget_ms),
                initial_backoff: std::time::Duration::from_millis(self.retry_initial_ms),
            },
            acquire_timeout: std::time::Duration::from_millis(self.acquire_timeout_ms),
            statement_timeout: std::time::Duration::from_millis(self.statement_timeout_ms),
            create_if_missing: true,
            route_to_workers: self.route_to_workers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_resource_and_shutdown_codes_mean_unavailable() {
        for code in ["08006", "08001", "53300", "57P01", "57P03", "5", "517"] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in ["23505", "22P02", "42P01", "XX000", "19"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
