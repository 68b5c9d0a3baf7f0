//! The SQLite store, the embedded default: a file created on first start.
//! Writers take the database write lock up front (`BEGIN IMMEDIATE`), so each
//! write transaction sees and changes a stable state; batches travel as JSON
//! arrays through `json_each`, one statement per step.
//! Joins against `json_each` are CROSS JOINs so SQLite keeps the input list
//! as the outer loop and looks each row up by primary key. `steps.rs` holds
//! the steps of the shared flows, `logs.rs` the change feed and admin log,
//! `columns.rs` the JSON batches, `scans.rs` the streams' statements and
//! `readers.rs` their rusqlite connections (writes stay on sqlx); what both
//! backends read alike is the `Store` trait's default bodies (`store/shared/`).
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqliteConnection, SqlitePool};

use super::shared::Shared;
use super::*;
use crate::domain::feed::ChangeKind;

mod columns;
mod logs;
mod readers;
mod scans;
mod steps;

use columns::*;
use logs::*;
use steps::*;

/// The statements SQLite shares with PostgreSQL.
type Sql = Shared<sqlx::Sqlite>;

/// SQLite's "database is busy/locked" codes, retried until the lock frees.
pub(crate) fn is_busy(err: &StoreError) -> bool {
    match err {
        StoreError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("5" | "6" | "517"))
        }
        _ => false,
    }
}

/// How long a statement waits for SQLite's lock before it is busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The page cache of each write connection, in KiB (half SQLite's default):
/// a write touches a few pages of each index, and up to
/// `store.max_connections` connections each keep their own.
const WRITE_CACHE_KIB: u32 = 1024;

pub struct SqliteStore {
    pool: SqlitePool,
    /// Streams' own read connections (each open stream holds one), so
    /// readers that stall can never take connections from writes.
    readers: readers::ReaderPool,
    retry: RetryPolicy,
    /// How connections are opened (`verify` opens one of its own).
    options: SqliteConnectOptions,
}

impl SqliteStore {
    /// Opens (creating if needed) the database a `sqlite://path` URL names.
    pub async fn connect(url: &str, store: &StoreOptions) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(store.create_if_missing)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        if let Some(parent) = options
            .get_filename()
            .parent()
            .filter(|p| store.create_if_missing && !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let pool_options = || {
            SqlitePoolOptions::new()
                .max_connections(store.max_connections.max(1))
                .acquire_timeout(store.acquire_timeout)
        };
        // Each write connection keeps a page cache of its own: SQLite's
        // default (2 MiB) on every one of them held most of the embedded
        // server's memory after a burst of writes. The OS caches the file.
        let pool = pool_options()
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", format!("-{WRITE_CACHE_KIB}")),
            )
            .await?;
        let readers = readers::pool(
            options.get_filename().to_path_buf(),
            store.max_connections,
            store.acquire_timeout,
            BUSY_TIMEOUT,
        );
        Ok(SqliteStore {
            pool,
            readers,
            retry: store.retry,
            options,
        })
    }
}

/// Selects the rows an archive removes (?1 portal, ?2/?3 object types,
/// ?4 pairs, ?5 all types, ?6/?7 type filters, as JSON).
const ARCHIVE_MATCH: &str = "
    FROM json_each(?4) p CROSS JOIN associations a ON a.portal_id = ?1 AND (
        (a.from_object_type = ?2 AND a.from_object_id = p.value ->> 0 AND a.to_object_type = ?3
         AND a.to_object_id = p.value ->> 1
         AND (?5 OR (a.category, a.type_id) IN (SELECT k.value ->> 0, k.value ->> 1 FROM json_each(?6) k)))
     OR (a.from_object_type = ?3 AND a.from_object_id = p.value ->> 1 AND a.to_object_type = ?2
         AND a.to_object_id = p.value ->> 0
         AND (?5 OR (a.category, a.type_id) IN (SELECT k.value ->> 0, k.value ->> 1 FROM json_each(?7) k))))";

/// Changes removed per retention transaction.
const PRUNE_BATCH_ROWS: i64 = 5_000;

#[async_trait]
impl Backend for SqliteStore {
    fn pools(&self) -> Pools<'_> {
        Pools::Sqlite(&self.pool, self.retry)
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

#[async_trait]
impl Maintenance for SqliteStore {
    async fn migrate(&self) -> StoreResult<Vec<String>> {
        let before: std::collections::HashSet<i64> =
            sqlx::query_scalar(crate::store::APPLIED_MIGRATIONS)
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default()
                .into_iter()
                .collect();
        let migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.run(&self.pool).await?;
        Ok(crate::store::newly_applied(&migrator, &before))
    }

    async fn verify(&self) -> StoreResult<Vec<crate::domain::verify::CheckReport>> {
        // A connection of its own, in one deferred transaction that reads
        // one snapshot (WAL): the writer goes on. Its statements read whole
        // tables: slow by design, not worth a warning.
        let options = self
            .options
            .clone()
            .create_if_missing(false)
            .log_slow_statements(log::LevelFilter::Off, Duration::MAX);
        let mut conn: SqliteConnection = options.connect().await?;
        sqlx::query("BEGIN").execute(&mut conn).await?;
        let reports = crate::store::verify::run::<sqlx::Sqlite>(&mut conn, &VERIFY_DIALECT).await;
        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        let _ = sqlx::Connection::close(conn).await;
        reports
    }
}

#[async_trait]
impl Definitions for SqliteStore {}

#[async_trait]
impl Associations for SqliteStore {
    async fn create_associations(
        &self,
        ctx: &WriteContext<'_>,
        items: &[CreateItem],
    ) -> StoreResult<Vec<ItemOutcome>> {
        let mut hint = LockHint::default();
        transaction!(
            self.retry,
            crate::store::begin(&self.pool, Some("BEGIN IMMEDIATE")),
            is_busy,
            |conn| { create_in_transaction(&mut SqliteTx { conn }, ctx, items, &mut hint).await }
        )
    }

    async fn archive_associations(
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
            crate::store::begin(&self.pool, Some("BEGIN IMMEDIATE")),
            is_busy,
            |conn| {
                archive_in_transaction(
                    &mut SqliteTx { conn },
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
}

#[async_trait]
impl Scans for SqliteStore {
    fn scan_records(&self, scan: RecordScan) -> RowBatches<RecordRow> {
        scans::records(self.readers.clone(), scan)
    }

    fn scan_batch(&self, scan: BatchScan) -> RowBatches<(i64, RecordRow)> {
        scans::batch(self.readers.clone(), scan)
    }

    fn scan_export(&self, scan: ExportScan) -> RowBatches<DirectedRow> {
        scans::export(self.readers.clone(), scan)
    }

    fn scan_pages(&self, scan: PageScan) -> RowBatches<PageItem> {
        scans::pages(self.readers.clone(), scan)
    }

    fn scan_at_least(
        &self,
        scan: UsageScan,
        min: i64,
        after: Option<(i64, i64)>,
        batch: usize,
    ) -> RowBatches<(i64, i64)> {
        scans::at_least(self.readers.clone(), scan, min, after, batch)
    }

    async fn types_holding_at_least(
        &self,
        portal: i64,
        min: i64,
    ) -> StoreResult<Vec<(ObjectType, TypeKey, Option<ObjectType>)>> {
        let rows: Vec<(String, i64, i32, Option<String>)> = sqlx::query_as(
            "SELECT g.object_type, g.category, g.type_id, d.to_object_type
               FROM (SELECT DISTINCT category, type_id, object_type FROM association_counts
                      WHERE portal_id = ?1 AND count >= ?2) g
               LEFT JOIN association_definitions d
                 ON d.portal_id = ?1 AND d.category = g.category AND d.type_id = g.type_id
              ORDER BY 2, 3, 1",
        )
        .bind(portal)
        .bind(min)
        .fetch_all(&self.pool)
        .await?;
        decode_held_types(rows)
    }
}

#[async_trait]
impl Limits for SqliteStore {}

#[async_trait]
impl Admin for SqliteStore {
    async fn prune_admin_log(&self, plugins: &[String]) -> StoreResult<u64> {
        let names = serde_json::to_string(plugins).expect("names serialize");
        transaction!(
            self.retry,
            crate::store::begin(&self.pool, Some("BEGIN IMMEDIATE")),
            is_busy,
            |conn| {
                let done = sqlx::query(
                    "DELETE FROM admin_changes WHERE seq <= (
                         SELECT min(coalesce(d.delivered_seq, 0)) FROM json_each(?1) p
                         LEFT JOIN admin_hook_deliveries d
                           ON d.portal_id = admin_changes.portal_id AND d.plugin = p.value)",
                )
                .bind(&names)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected())
            }
        )
    }
}

#[async_trait]
impl Feed for SqliteStore {
    async fn prune_changes(&self, older_than_us: i64) -> StoreResult<()> {
        // Each portal's cut: the number of its newest change older than the
        // retention (one step into association_changes_by_time per portal).
        let cuts: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT h.portal_id, (SELECT c.seq FROM association_changes c
                                  WHERE c.portal_id = h.portal_id AND c.changed_at_us < ?1
                                  ORDER BY c.changed_at_us DESC LIMIT 1) AS cut
             FROM association_feed_heads h WHERE cut > h.pruned_through",
        )
        .bind(older_than_us)
        .fetch_all(&self.pool)
        .await?;
        for (portal, cut) in cuts {
            // Bounded batches, each a short write of its own, so the one
            // writer SQLite allows is never held for long.
            loop {
                let deleted = transaction!(
                    self.retry,
                    crate::store::begin(&self.pool, Some("BEGIN IMMEDIATE")),
                    is_busy,
                    |conn| {
                        let gone: Vec<i64> = sqlx::query_scalar(
                            "DELETE FROM association_changes WHERE portal_id = ?1 AND seq IN (
                                 SELECT seq FROM association_changes WHERE portal_id = ?1 AND seq <= ?2
                                 ORDER BY seq LIMIT ?3)
                             RETURNING seq",
                        )
                        .bind(portal)
                        .bind(cut)
                        .bind(PRUNE_BATCH_ROWS)
                        .fetch_all(&mut *conn)
                        .await?;
                        if let Some(last) = gone.iter().max() {
                            sqlx::query(
                                "UPDATE association_feed_heads SET pruned_through = max(pruned_through, ?2)
                                 WHERE portal_id = ?1",
                            )
                            .bind(portal)
                            .bind(last)
                            .execute(&mut *conn)
                            .await?;
                        }
                        Ok(gone.len() as i64)
                    }
                )?;
                if deleted < PRUNE_BATCH_ROWS {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The checker's ordering: changes are numbered as they are written.
const VERIFY_DIALECT: crate::store::verify::Dialect = crate::store::verify::Dialect {
    change_newest_first: "seq DESC",
    admin_order: "seq",
};
