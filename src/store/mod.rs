//! Persistence: the `Store` trait (`api.rs`, with what it takes and answers
//! in `types.rs`), its errors and retry policy, and its PostgreSQL
//! (production) and SQLite (embedded default) implementations. The write
//! flows both share live once in `flows/`, the statements both engines
//! read alike once in `shared/`, how values are stored in `codec.rs`; each
//! backend keeps only the SQL that differs. All SQL of the service lives
//! below this module.
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

use crate::domain::admin::AdminChange;
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
mod api;
mod codec;
mod flows;
mod names;
pub mod postgres;
mod quota;
pub mod sqlite;
mod types;
pub mod verify;

pub use api::{Admin, Associations, Backend, Definitions, Feed, Limits, Maintenance, Scans, Store};

/// Every role of the store, to bring their methods into scope.
pub mod roles {
    pub use super::api::{
        Admin, Associations, Backend, Definitions, Feed, Limits, Maintenance, Scans, Store,
    };
}
pub(crate) use codec::*;
pub use types::*;

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
    /// A stream's read on the embedded store (rusqlite).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stream's reader thread stopped (a panic) before its rows ended.
    #[error("a stream's reader stopped: {0}")]
    ReaderStopped(String),
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
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _))
                if unavailable_code(&failure.extended_code.to_string())
                    || failure.code == rusqlite::ErrorCode::CannotOpen =>
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
    fn only_connection_and_pool_failures_are_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let kind = |err: StoreError| err.kind();
        assert_eq!(
            kind(StoreError::Database(sqlx::Error::PoolTimedOut)),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(StoreError::Database(sqlx::Error::Io(io))),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(StoreError::Unreachable("pool timed out".into())),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(StoreError::Corrupt("bad row".into())),
            ErrorKind::Internal
        );
        let protocol = sqlx::Error::Protocol("unexpected".into());
        assert_eq!(kind(StoreError::Database(protocol)), ErrorKind::Internal);
        assert_eq!(
            kind(StoreError::Database(sqlx::Error::RowNotFound)),
            ErrorKind::Internal
        );
        let exhausted = StoreError::RetriesExhausted {
            attempts: 3,
            elapsed_ms: 10,
            last: "deadlock".into(),
        };
        assert_eq!(kind(exhausted), ErrorKind::Aborted);
    }

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
