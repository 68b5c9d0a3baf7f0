//! The PostgreSQL store (production). Batches travel as arrays through
//! `unnest`, so a batch costs the same few round trips whatever its size,
//! and the common create and archive are one call of a server-side function
//! (migration 0006); counters are locked in key order and deadlocks or
//! serialization failures are retried here, never reaching a caller. The
//! change feed takes no lock at write time: readers number committed
//! changes (`logs.rs`), and the admin change log likewise. `steps.rs` holds
//! the steps of the shared flows, `one_call.rs` the one-round-trip writes,
//! `columns.rs` the array batches.
//!
//! Just above 600 lines because it is the `Store` trait's one impl block for
//! PostgreSQL (Rust keeps a trait impl in one file); everything that is not
//! a trait method lives in the files named above.
use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Postgres, Row};

use super::shared::Shared;
use super::*;
use crate::domain::feed::ChangeKind;
use crate::domain::plan::presume_new_pairs;

mod columns;
pub mod distribute;
mod logs;
mod one_call;
pub mod route;
mod scans;

/// The streamed statements, for tests of their plans.
pub use scans::{statements as scan_statements, SESSION as SCAN_SESSION};
mod steps;

use columns::*;
use logs::*;
use one_call::*;
use steps::*;

/// The statements PostgreSQL shares with SQLite.
type Sql = Shared<Postgres>;

/// The advisory lock one migrating replica holds (a session lock).
const MIGRATION_LOCK: i64 = 0x4153_534f_4d49_4752;

/// Advisory lock namespace for admin limit changes (second key: portal).
const LIMITS_LOCK_NAMESPACE: i32 = 0x4153_4c4d;

pub struct PostgresStore {
    pool: PgPool,
    /// Streams' own connections (each open stream holds one), so readers
    /// that stall can never take connections from writes and unary reads.
    scan_pool: PgPool,
    retry: RetryPolicy,
    /// How to connect, without the calls' statement timeout (migrations).
    options: PgConnectOptions,
    /// On Citus with `store.route_to_workers`: the node holding each portal.
    router: Option<std::sync::Arc<route::Router>>,
}

impl PostgresStore {
    /// An archive's fast path: one call of `association_archive`; the rows
    /// removed, or none (nothing written) when a row appeared whose counter
    /// it had not locked. `archive_associations` runs the full flow then;
    /// public so the differential test can run each path alone.
    pub async fn archive_in_one_call(
        &self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
        filter: &TypeFilter,
    ) -> StoreResult<Option<u64>> {
        let binds = ArchiveBinds::new(pairs, filter);
        let removed: i64 = self
            .retry
            .run(is_retryable, || async {
                let call =
                    "SELECT association_archive($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
                let removed = binds
                    .bind(call, portal, from, to)
                    .bind(ChangeKind::Archived.code())
                    .bind(now_us())
                    .fetch_one(&mut *self.call_connection(portal).await?)
                    .await?;
                Ok(removed.try_get(0)?)
            })
            .await?;
        Ok(u64::try_from(removed).ok())
    }

    /// An archive by the full flow (`archive_in_transaction`), as when the
    /// fast path declines.
    pub async fn archive_by_flow(
        &self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
        filter: &TypeFilter,
    ) -> StoreResult<u64> {
        let mut hint = LockHint::default();
        transaction!(
            self.retry,
            crate::store::begin(&self.pool, None),
            is_retryable,
            |conn| {
                archive_in_transaction(
                    &mut PgTx { conn },
                    portal,
                    from,
                    to,
                    pairs,
                    filter,
                    &mut hint,
                )
                .await
            }
        )
    }

    /// A create's fast path: planned without reading and applied by one call
    /// of `association_create_presumed`; the outcomes, or none (nothing
    /// written, the reason counted) when it cannot be presumed or its
    /// presumption fails under the locks. Public so the differential test
    /// can run each path alone.
    pub async fn create_in_one_call(
        &self,
        ctx: &WriteContext<'_>,
        items: &[CreateItem],
    ) -> StoreResult<Option<Vec<ItemOutcome>>> {
        let metrics = crate::telemetry::metrics::metrics();
        let Some(presumed) = presume_new_pairs(ctx, items) else {
            metrics.fast_path_fallback("create_not_presumable");
            return Ok(None);
        };
        if self.create_presumed(ctx, &presumed).await? {
            return Ok(Some(presumed.plan.outcomes));
        }
        metrics.fast_path_fallback("create_presumption_failed");
        Ok(None)
    }

    /// A create by the full flow (`create_in_transaction`), as when the fast
    /// path declines.
    pub async fn create_by_flow(
        &self,
        ctx: &WriteContext<'_>,
        items: &[CreateItem],
    ) -> StoreResult<Vec<ItemOutcome>> {
        let mut hint = LockHint::default();
        transaction!(
            self.retry,
            crate::store::begin(&self.pool, None),
            is_retryable,
            |conn| { create_in_transaction(&mut PgTx { conn }, ctx, items, &mut hint).await }
        )
    }

    /// A connection for a one-call write of `portal`: to the node holding
    /// it when routed and reachable, else to the coordinator (a node that
    /// refuses is passed over for a while; nothing was sent to it). A node
    /// pool that stays full is load, not a refusal: the call fails as
    /// unavailable, as it would on the coordinator's own pool.
    async fn call_connection(&self, portal: i64) -> StoreResult<PoolConnection<Postgres>> {
        if let Some(node) = self.node(portal) {
            match node.pool.acquire().await {
                Ok(conn) => return Ok(conn),
                Err(err) if route::is_refusal(&err) => node.failed(&err),
                Err(err) => return Err(err.into()),
            }
        }
        Ok(self.pool.acquire().await?)
    }

    /// The pool for a stream of `portal`: its node's when routed.
    fn scan_pool(&self, portal: i64) -> PgPool {
        match self.node(portal) {
            Some(node) => node.scan_pool.clone(),
            None => self.scan_pool.clone(),
        }
    }

    /// The reachable Citus node holding `portal`, when routed.
    fn node(&self, portal: i64) -> Option<std::sync::Arc<route::Node>> {
        self.router.as_ref()?.node(portal)
    }

    pub async fn connect(url: &str, store: &StoreOptions) -> StoreResult<PostgresStore> {
        // PostgreSQL's notices (e.g. "relation … already exists, skipping"
        // from the migrations) are not worth a log line; warnings are.
        let mut options: PgConnectOptions = url
            .parse::<PgConnectOptions>()?
            .options([("client_min_messages", "warning")]);
        // The service's sessions say whose they are in pg_stat_activity
        // (unless the URL names them otherwise).
        if options.get_application_name().is_none() {
            options = options.application_name("association-service");
        }
        // One direct attempt first, so an unreachable server reports why.
        PgConnection::connect_with(&options).await?.close().await?;
        // No ping before each acquire: a broken connection fails one call
        // and is dropped, instead of every call paying a round trip.
        let pool_options = || {
            PgPoolOptions::new()
                .max_connections(store.max_connections)
                .test_before_acquire(false)
                .acquire_timeout(store.acquire_timeout)
        };
        let statement_timeout = store.statement_timeout.as_millis().to_string();
        let call_options = options
            .clone()
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = pool_options().connect_with(call_options.clone()).await?;
        // A stream's statement runs as long as its client reads: not slow.
        let scan_options = options
            .clone()
            .log_slow_statements(log::LevelFilter::Off, Duration::MAX)
            .options(scans::SESSION.iter().copied());
        let scan_pool = pool_options()
            .min_connections(0)
            .connect_lazy_with(scan_options.clone());
        let router = match store.route_to_workers {
            true => {
                let nodes = route::NodeOptions {
                    calls: call_options,
                    scans: scan_options,
                    pool: pool_options(),
                };
                route::Router::start(pool.clone(), nodes).await
            }
            false => None,
        };
        Ok(PostgresStore {
            pool,
            scan_pool,
            retry: store.retry,
            options,
            router,
        })
    }
}

/// Deadlocks (40P01) and serialization failures (40001) are lost races worth
/// running again, and so is Citus's "could not find valid entry for shard"
/// (XX000, its only code for it), which a statement planned before its
/// shard was split or moved meets once: the statement did nothing, and runs
/// again on the shard that holds its portal now. Anything else, a unique
/// violation included, is not.
pub(crate) fn is_retryable(err: &StoreError) -> bool {
    match err {
        StoreError::Database(sqlx::Error::Database(db)) => match db.code().as_deref() {
            Some("40P01") | Some("40001") => true,
            Some("XX000") => db.message().starts_with(SHARD_GONE),
            _ => false,
        },
        _ => false,
    }
}

/// How Citus begins the error of a statement whose shard is gone.
const SHARD_GONE: &str = "could not find valid entry for shard";

/// Portals with numbered changes retention has not reached: (portal, the
/// last change pruned, the last change numbered).
const PRUNE_PORTALS: &str = "SELECT portal_id, pruned_through, last_seq FROM association_feed_heads
    WHERE last_seq > pruned_through";

/// When change $2 of portal $1 was made: one primary-key lookup, the probe
/// of retention's binary search for each portal's cut (numbers follow
/// commit order, so times grow with them), which needs no index on time:
/// every change written would pay for one.
const CHANGE_TIME: &str =
    "SELECT changed_at_us FROM association_changes WHERE portal_id = $1 AND seq = $2";

/// Removes up to $3 of portal $1's oldest changes through seq $2 (a range
/// of the primary key) and moves the feed's pruned mark past them in the
/// same statement; answers how many it removed.
const PRUNE_BATCH: &str = "WITH gone AS (
        DELETE FROM association_changes WHERE portal_id = $1 AND seq IN (
            SELECT seq FROM association_changes WHERE portal_id = $1 AND seq <= $2
            ORDER BY seq LIMIT $3)
        RETURNING seq)
    UPDATE association_feed_heads SET pruned_through = GREATEST(pruned_through, (SELECT max(seq) FROM gone))
    WHERE portal_id = $1 RETURNING (SELECT count(*) FROM gone)";

/// Changes removed per retention statement.
const PRUNE_BATCH_ROWS: i64 = 5_000;

/// The order the write functions and the label delete lock counters in, as
/// SQL (for the test that holds it equal to `CountKey::lock_order`).
pub fn counter_lock_order() -> &'static str {
    COUNTER_ORDER
}

/// The retention statements (for the plan test): the probe, then a batch.
pub fn prune_statements() -> [&'static str; 2] {
    [CHANGE_TIME, PRUNE_BATCH]
}

/// The types some record of a portal holds at least $2 of: a skip scan of
/// association_counts_by_usage, one seek per (type, object type) group,
/// then one probe of its counts from $2.
const TYPES_HOLDING_AT_LEAST: &str = "WITH RECURSIVE groups AS (
         (SELECT category, type_id, object_type FROM association_counts
           WHERE portal_id = $1 ORDER BY category, type_id, object_type LIMIT 1)
       UNION ALL
         SELECT n.category, n.type_id, n.object_type FROM groups g CROSS JOIN LATERAL (
           SELECT c.category, c.type_id, c.object_type FROM association_counts c
            WHERE c.portal_id = $1
              AND (c.category, c.type_id, c.object_type) > (g.category, g.type_id, g.object_type)
            ORDER BY c.category, c.type_id, c.object_type LIMIT 1) n)
     SELECT g.object_type, g.category, g.type_id, d.to_object_type FROM groups g
       LEFT JOIN association_definitions d
         ON d.portal_id = $1 AND d.category = g.category AND d.type_id = g.type_id
      WHERE EXISTS (SELECT 1 FROM association_counts c WHERE c.portal_id = $1
                      AND c.category = g.category AND c.type_id = g.type_id
                      AND c.object_type = g.object_type AND c.count >= $2)
      ORDER BY 2, 3, 1";

/// The statement of `types_holding_at_least` (for the plan test).
pub fn types_holding_statement() -> &'static str {
    TYPES_HOLDING_AT_LEAST
}

/// The paged batch read's statement (for the plan test).
pub fn page_statement() -> &'static str {
    scans::PAGES
}

#[async_trait]
impl Backend for PostgresStore {
    fn pools(&self) -> Pools<'_> {
        Pools::Postgres(&self.pool, self.retry)
    }

    async fn number_log(&self, log: Numbered, portal: Option<i64>) -> StoreResult<()> {
        let log = match log {
            Numbered::Feed => CHANGE_FEED,
            Numbered::AdminChanges => ADMIN_LOG,
        };
        match portal {
            Some(portal) => sequence_log(&self.pool, self.retry, log, portal).await,
            None => sequence_portals(&self.pool, self.retry, log, None).await,
        }
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

#[async_trait]
impl Maintenance for PostgresStore {
    async fn migrate(&self) -> StoreResult<Vec<String>> {
        // One replica migrates at a time, under an advisory lock taken by
        // polling (pg_try_advisory_lock) rather than by waiting in a
        // statement, as sqlx's own lock does: an index built concurrently
        // waits for every open transaction, a replica blocked in
        // pg_advisory_lock included, and PostgreSQL ends that cycle as a
        // deadlock. On a connection of its own, without the calls'
        // statement timeout: building an index on a large table takes as
        // long as it takes.
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        migrator.set_locking(false);
        // A pool of its one connection: the lock is that session's.
        let own = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(self.options.clone())
            .await?;
        while !sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .fetch_one(&own)
            .await?
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // What was applied before, read under the lock (another replica
        // may just have applied everything).
        let before: std::collections::HashSet<i64> =
            sqlx::query_scalar(crate::store::APPLIED_MIGRATIONS)
                .fetch_all(&own)
                .await
                .unwrap_or_default()
                .into_iter()
                .collect();
        let ran = migrator.run(&own).await;
        // On Citus, the tables are distributed under the same lock.
        let distributed = match ran {
            Ok(()) => distribute::distribute(&own).await,
            Err(err) => Err(err.into()),
        };
        // Closing the session releases the lock.
        own.close().await;
        let mut done = crate::store::newly_applied(&migrator, &before);
        done.extend(distributed?);
        // The tables may just have been distributed: route from now on.
        if let Some(router) = &self.router {
            router.read_now().await;
        }
        Ok(done)
    }

    async fn verify(&self) -> StoreResult<Vec<crate::domain::verify::CheckReport>> {
        // A connection of its own, without the calls' statement timeout,
        // in one read-only snapshot: writers go on and are not judged.
        // Its statements read whole tables: slow by design, not worth a warning.
        let options = self
            .options
            .clone()
            .log_slow_statements(log::LevelFilter::Off, Duration::MAX);
        let mut conn = PgConnection::connect_with(&options).await?;
        analyse_tables_without_statistics(&mut conn).await?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut conn)
            .await?;
        let reports = crate::store::verify::run::<sqlx::Postgres>(&mut conn, &VERIFY_DIALECT).await;
        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        let _ = conn.close().await;
        reports
    }
}

#[async_trait]
impl Definitions for PostgresStore {}

#[async_trait]
impl Associations for PostgresStore {
    async fn create_associations(
        &self,
        ctx: &WriteContext<'_>,
        items: &[CreateItem],
    ) -> StoreResult<Vec<ItemOutcome>> {
        if let Some(outcomes) = self.create_in_one_call(ctx, items).await? {
            return Ok(outcomes);
        }
        self.create_by_flow(ctx, items).await
    }

    async fn archive_associations(
        &self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
        filter: &TypeFilter,
    ) -> StoreResult<u64> {
        match self
            .archive_in_one_call(portal, from, to, pairs, filter)
            .await?
        {
            Some(removed) => Ok(removed),
            // A row appeared whose counter the call had not locked: the full flow.
            None => {
                crate::telemetry::metrics::metrics().fast_path_fallback("archive_unlocked_row");
                self.archive_by_flow(portal, from, to, pairs, filter).await
            }
        }
    }
}

#[async_trait]
impl Scans for PostgresStore {
    fn scan_records(&self, scan: RecordScan) -> RowBatches<RecordRow> {
        scans::records(self.scan_pool(scan.portal), scan)
    }

    fn scan_batch(&self, scan: BatchScan) -> RowBatches<(i64, RecordRow)> {
        scans::batch(self.scan_pool(scan.portal), scan)
    }

    fn scan_export(&self, scan: ExportScan) -> RowBatches<DirectedRow> {
        scans::export(self.scan_pool(scan.portal), scan)
    }

    fn scan_pages(&self, scan: PageScan) -> RowBatches<PageItem> {
        scans::pages(self.scan_pool(scan.portal), scan)
    }

    fn scan_at_least(
        &self,
        scan: UsageScan,
        min: i64,
        after: Option<(i64, i64)>,
        batch: usize,
    ) -> RowBatches<(i64, i64)> {
        scans::at_least(self.scan_pool.clone(), scan, min, after, batch)
    }

    async fn types_holding_at_least(
        &self,
        portal: i64,
        min: i64,
    ) -> StoreResult<Vec<(ObjectType, TypeKey, Option<ObjectType>)>> {
        let rows: Vec<(String, i16, i32, Option<String>)> = sqlx::query_as(TYPES_HOLDING_AT_LEAST)
            .bind(portal)
            .bind(min)
            .fetch_all(&self.pool)
            .await?;
        decode_held_types(
            rows.into_iter()
                .map(|(o, c, t, to)| (o, i64::from(c), t, to))
                .collect(),
        )
    }
}

#[async_trait]
impl Limits for PostgresStore {}

#[async_trait]
impl Admin for PostgresStore {
    async fn prune_admin_log(&self, plugins: &[String]) -> StoreResult<u64> {
        let done = sqlx::query(
            "WITH floor AS (
                 SELECT h.portal_id, min(COALESCE(d.delivered_seq, 0)) AS seq
                 FROM admin_change_heads h CROSS JOIN unnest($1::text[]) AS p(name)
                 LEFT JOIN admin_hook_deliveries d ON d.portal_id = h.portal_id AND d.plugin = p.name
                 GROUP BY h.portal_id)
             DELETE FROM admin_changes a USING floor f
             WHERE a.portal_id = f.portal_id AND a.seq <= f.seq",
        )
        .bind(plugins)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Feed for PostgresStore {
    async fn prune_changes(&self, older_than_us: i64) -> StoreResult<()> {
        // Number what has committed first, so retention sees every old change.
        sequence_portals(&self.pool, self.retry, CHANGE_FEED, None).await?;
        let portals: Vec<(i64, i64, i64)> =
            sqlx::query_as(PRUNE_PORTALS).fetch_all(&self.pool).await?;
        for (portal, pruned, last) in portals {
            // The last change older than the cutoff, by binary search over
            // the numbers (a change already gone counts as old).
            let (mut old, mut young) = (pruned, last);
            while old < young {
                let mid = old + (young - old + 1) / 2;
                let made: Option<i64> = sqlx::query_scalar(CHANGE_TIME)
                    .bind(portal)
                    .bind(mid)
                    .fetch_optional(&self.pool)
                    .await?;
                if made.is_none_or(|at| at < older_than_us) {
                    old = mid;
                } else {
                    young = mid - 1;
                }
            }
            let cut = old;
            if cut <= pruned {
                continue;
            }
            // Bounded batches in key order, each its own short statement, so
            // no writer or reader waits on a long delete.
            loop {
                let deleted: i64 = sqlx::query_scalar(PRUNE_BATCH)
                    .bind(portal)
                    .bind(cut)
                    .bind(PRUNE_BATCH_ROWS)
                    .fetch_optional(&self.pool)
                    .await?
                    .unwrap_or(0);
                if deleted < PRUNE_BATCH_ROWS {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Analyses the store's tables that hold rows but no statistics (a store
/// just loaded or restored, before autovacuum came by): without them the
/// planner takes them for small and joins whole tables by index prefixes,
/// row by row, so `verify` ran for minutes where it takes a second. Only
/// statistics change. Not on Citus, where the coordinator's tables hold no
/// rows and the workers' shards keep their own statistics.
async fn analyse_tables_without_statistics(conn: &mut PgConnection) -> StoreResult<()> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
         WHERE c.relname = ANY($1) AND c.relnamespace = current_schema()::regnamespace
           AND c.reltuples <> 0
           AND NOT EXISTS (SELECT 1 FROM pg_stats s
                           WHERE s.schemaname = current_schema() AND s.tablename = c.relname)
           AND NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')
         ORDER BY 1",
    )
    .bind(distribute::TABLES.as_slice())
    .fetch_all(&mut *conn)
    .await?;
    for table in &tables {
        // A name from the schema's own list, not input.
        sqlx::query(&format!("ANALYZE {table}"))
            .execute(&mut *conn)
            .await?;
    }
    if !tables.is_empty() {
        tracing::info!(tables = %tables.join(", "), "verify analysed tables that had no statistics");
    }
    Ok(())
}

/// The checker's ordering: the feed's (numbered changes by number, then
/// the ones not numbered yet as the feed will number them, migration 0013).
pub const VERIFY_DIALECT: crate::store::verify::Dialect = crate::store::verify::Dialect {
    change_newest_first: "seq DESC NULLS FIRST, ord DESC, id DESC",
    admin_order: "seq NULLS LAST, id",
};
