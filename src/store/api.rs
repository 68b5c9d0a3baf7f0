//! The `Store` trait: what the service asks of storage, per portal, in
//! one trait per role (definitions, associations, scans, limits, the admin
//! log and hooks, the feed, maintenance) over `Backend`. The methods both
//! backends answer with the same SQL have default bodies here (over
//! `shared/`); each backend implements the rest.
use async_trait::async_trait;

use super::*;
use crate::domain::builtin::has_builtin_unlabeled;

/// What every role builds on: which backend, its pools (for the methods
/// both backends share, whose default bodies are here) and how its logs
/// are numbered.
#[async_trait]
pub trait Backend: Send + Sync {
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
}

/// Keeping the store: migrations, liveness, pool usage, and checking what
/// it holds.
#[async_trait]
pub trait Maintenance: Backend {
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

/// Association types per portal: labels, allocated unlabeled types, and
/// custom objects' names.
#[async_trait]
pub trait Definitions: Backend {
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

    /// The directions (from, to) that have admin label definitions.
    async fn labelled_directions(&self, portal: i64) -> StoreResult<Vec<(ObjectType, ObjectType)>> {
        on_pool!(self, |pool| Sql::labelled_directions(
            &mut *pool.acquire().await?,
            portal
        )
        .await)
    }
}

/// Associations themselves: creates, archives and merges under the
/// limits, and reads of records and merged ids.
#[async_trait]
pub trait Associations: Backend {
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
}

/// Reads that stream or page: a record's rows, many records, a portal's
/// export, and the records at or near a limit.
#[async_trait]
pub trait Scans: Backend {
    /// Pages of several records' rows to one object type, in one
    /// statement (one snapshot): first the inputs that hold no row after
    /// their start, then for each input in order its first `rows` rows
    /// after its start in key order (to id, category, type id), and
    /// possibly the rest of the last one's associated record. Batched and
    /// paced like `scan_records`, so a reader can answer before the last
    /// row is read.
    fn scan_pages(&self, scan: PageScan) -> RowBatches<PageItem>;

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
}

/// Admin limits, and the daily call counts the quota draws on.
#[async_trait]
pub trait Limits: Backend {
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
}

/// The admin change log and what reads it: the hooks' outbox, their
/// leases and deliveries, and the audit trail.
#[async_trait]
pub trait Admin: Backend {
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
}

/// The change feed: its entries, its bounds and its retention.
#[async_trait]
pub trait Feed: Backend {
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
}

/// Storage of definitions, associations, counters and limits, per portal:
/// every role, as the service holds it (`Arc<dyn Store>`). Callers bring
/// the roles they use into scope (`use crate::store::roles::*`).
pub trait Store: Maintenance + Definitions + Associations + Scans + Limits + Admin + Feed {}

impl<T> Store for T where
    T: Maintenance + Definitions + Associations + Scans + Limits + Admin + Feed + ?Sized
{
}
