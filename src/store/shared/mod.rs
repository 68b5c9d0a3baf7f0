//! Statements both backends run with one SQL text: `$n` placeholders (SQLite
//! numbers `$n` as PostgreSQL does) and only what both engines accept
//! (`FILTER`, `IS DISTINCT FROM`, `CAST`, `ON CONFLICT`). Generic over the
//! sqlx driver, with the driver's bounds stated once, on `Shared`'s impl.
//! What truly differs (the write lock, the feed's numbering, the
//! server-side functions, the hot paths' plans) stays in each backend; how
//! the dialects spell the rest is `Spelling`. The statements are in
//! `statements.rs`; here the transaction, the pools, the macros the `Store`
//! trait's shared bodies use, and the shared steps.
use std::collections::HashMap;

use async_trait::async_trait;

use super::{names, CommonSteps, RetryPolicy, StoreResult};
use crate::domain::merge::MergeRequest;
use crate::domain::plan::DirectedRow;
use crate::domain::{ObjectType, TypeDef, TypeKey};

mod statements;

pub(crate) use statements::Shared;

/// One open write transaction of either driver: the shared flows' steps
/// (`CommonSteps` here, `WriteSteps` in each backend).
pub(crate) struct Tx<'c, DB: sqlx::Database> {
    pub(crate) conn: &'c mut DB::Connection,
}

/// How each driver spells what the shared statements cannot say alike.
pub(crate) trait Spelling: sqlx::Database {
    /// The server's clock in microseconds since the epoch, as an expression
    /// (leases compare against the database's clock, not a replica's).
    const NOW_US: &'static str;
    /// The rows (category, type id) of a list of type keys bound from `$n`
    /// on by `bind_keys` (the statement's last parameters).
    fn keys_at(n: usize) -> String;
    fn bind_keys<'q>(query: Query<'q, Self>, keys: &[TypeKey]) -> Query<'q, Self>;
    /// The one-column rows of a list of ids bound at `$n` by `bind_ids`.
    fn ids_at(n: usize) -> String;
    fn bind_ids<'q>(query: Query<'q, Self>, ids: &[i64]) -> Query<'q, Self>;
    /// A timestamp column's value in microseconds since the epoch.
    fn epoch_us(column: &str) -> String;
}

/// A statement with its parameters, of one driver.
pub(crate) type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>;

/// PostgreSQL binds lists as arrays.
impl Spelling for sqlx::Postgres {
    // Stable within the statement, so Citus evaluates it once, on the
    // coordinator, before the statement goes to the portal's worker.
    const NOW_US: &'static str = "(extract(epoch FROM statement_timestamp()) * 1000000)::bigint";

    fn keys_at(n: usize) -> String {
        format!("SELECT * FROM unnest(${n}::smallint[], ${}::int[])", n + 1)
    }

    fn bind_keys<'q>(query: Query<'q, Self>, keys: &[TypeKey]) -> Query<'q, Self> {
        let (categories, type_ids): (Vec<i16>, Vec<i32>) =
            keys.iter().map(|k| (k.category.code(), k.type_id)).unzip();
        query.bind(categories).bind(type_ids)
    }

    fn ids_at(n: usize) -> String {
        format!("SELECT unnest(${n}::bigint[])")
    }

    fn bind_ids<'q>(query: Query<'q, Self>, ids: &[i64]) -> Query<'q, Self> {
        query.bind(ids.to_vec())
    }

    fn epoch_us(column: &str) -> String {
        format!("(extract(epoch FROM {column}) * 1000000)::bigint")
    }
}

/// SQLite binds lists as JSON arrays, read with `json_each`.
impl Spelling for sqlx::Sqlite {
    const NOW_US: &'static str = "CAST(unixepoch('subsec') * 1000000 AS INTEGER)";

    fn keys_at(n: usize) -> String {
        format!("SELECT k.value ->> 0, k.value ->> 1 FROM json_each(${n}) k")
    }

    fn bind_keys<'q>(query: Query<'q, Self>, keys: &[TypeKey]) -> Query<'q, Self> {
        let keys: Vec<(i16, i32)> = keys
            .iter()
            .map(|k| (k.category.code(), k.type_id))
            .collect();
        query.bind(serde_json::to_string(&keys).expect("keys serialize"))
    }

    fn ids_at(n: usize) -> String {
        format!("SELECT value FROM json_each(${n})")
    }

    fn bind_ids<'q>(query: Query<'q, Self>, ids: &[i64]) -> Query<'q, Self> {
        query.bind(serde_json::to_string(ids).expect("ids serialize"))
    }

    fn epoch_us(column: &str) -> String {
        format!("CAST(strftime('%s', {column}) AS INTEGER) * 1000000")
    }
}

/// A store's write pool and retry policy, by driver: what the `Store`
/// methods both backends share run on (`on_pool!`, `write_flow!`).
#[doc(hidden)]
pub enum Pools<'a> {
    Postgres(&'a sqlx::PgPool, RetryPolicy),
    Sqlite(&'a sqlx::SqlitePool, RetryPolicy),
}

/// The logs numbered on read on PostgreSQL (`Store::number_log`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Numbered {
    /// The change feed.
    Feed,
    /// The admin change log the hooks deliver from.
    AdminChanges,
}

/// Evaluates `$body` with `$pool` the store's write pool and `Sql` the
/// shared statements of its driver.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store.pools() {
            $crate::store::Pools::Postgres($pool, _) => {
                #[allow(dead_code)]
                type Sql = $crate::store::shared::Shared<sqlx::Postgres>;
                $body
            }
            $crate::store::Pools::Sqlite($pool, _) => {
                #[allow(dead_code)]
                type Sql = $crate::store::shared::Shared<sqlx::Sqlite>;
                $body
            }
        }
    };
}

/// Runs `$body` in one write transaction of the store, `$steps` its
/// transaction's steps, begun, committed and retried as its backend does.
macro_rules! write_flow {
    ($store:expr, |$steps:ident| $body:expr) => {
        match $store.pools() {
            $crate::store::Pools::Postgres(pool, retry) => transaction!(
                retry,
                $crate::store::begin(pool, None),
                $crate::store::postgres::is_retryable,
                |conn| {
                    let $steps = &mut $crate::store::shared::Tx::<sqlx::Postgres> { conn };
                    $body
                }
            ),
            $crate::store::Pools::Sqlite(pool, retry) => transaction!(
                retry,
                $crate::store::begin(pool, Some("BEGIN IMMEDIATE")),
                $crate::store::sqlite::is_busy,
                |conn| {
                    let $steps = &mut $crate::store::shared::Tx::<sqlx::Sqlite> { conn };
                    $body
                }
            ),
        }
    };
}

/// The two admin log tables, read alike.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AdminLog {
    /// The log the hooks deliver from.
    Changes,
    /// What the audit plugin kept.
    Audit,
}

impl AdminLog {
    fn table(self) -> &'static str {
        match self {
            AdminLog::Changes => "admin_changes",
            AdminLog::Audit => "admin_audit_events",
        }
    }
}

/// The shared steps for one driver's transaction: each calls the one
/// statement text above (a macro, so the driver's bounds are not written
/// out again for the trait impl).
macro_rules! common_steps {
    ($db:ty) => {
        #[async_trait]
        impl CommonSteps for Tx<'_, $db> {
            async fn load_user_limits(
                &mut self,
                portal: i64,
                a: ObjectType,
                b: ObjectType,
            ) -> StoreResult<HashMap<TypeKey, u32>> {
                Shared::<$db>::load_pair_limits(&mut *self.conn, portal, a, b).await
            }

            async fn load_rows_from(
                &mut self,
                portal: i64,
                object_type: ObjectType,
                id: i64,
            ) -> StoreResult<Vec<DirectedRow>> {
                Shared::<$db>::load_rows_from(&mut *self.conn, portal, object_type, id).await
            }

            async fn record_merge(&mut self, req: &MergeRequest) -> StoreResult<()> {
                Shared::<$db>::record_merge(&mut *self.conn, req).await
            }

            async fn load_limits(
                &mut self,
                portal: i64,
                keys: &[TypeKey],
            ) -> StoreResult<HashMap<TypeKey, u32>> {
                Shared::<$db>::load_limits(&mut *self.conn, portal, keys).await
            }

            async fn delete_limits(
                &mut self,
                portal: i64,
                keys: &[TypeKey],
            ) -> StoreResult<Vec<(TypeKey, u32)>> {
                Shared::<$db>::delete_limits(&mut *self.conn, portal, keys).await
            }

            async fn merged_survivors(
                &mut self,
                portal: i64,
                object_type: ObjectType,
                ids: &[i64],
            ) -> StoreResult<Vec<(i64, i64)>> {
                Shared::<$db>::merged_survivors(&mut *self.conn, portal, object_type, ids).await
            }

            async fn lock_merges(&mut self, portal: i64) -> StoreResult<()> {
                self.allocate_type_ids(portal, 0).await.map(|_| ())
            }

            async fn allocate_type_ids(&mut self, portal: i64, count: i32) -> StoreResult<i32> {
                Shared::<$db>::allocate_type_ids(&mut *self.conn, portal, count).await
            }

            async fn load_definitions(
                &mut self,
                portal: i64,
                a: ObjectType,
                b: ObjectType,
            ) -> StoreResult<Vec<TypeDef>> {
                Shared::<$db>::load_definitions(&mut *self.conn, portal, a, b).await
            }

            async fn insert_definitions(
                &mut self,
                portal: i64,
                defs: &[TypeDef],
            ) -> StoreResult<()> {
                Shared::<$db>::insert_definitions(&mut *self.conn, portal, defs).await
            }

            async fn rename_types(
                &mut self,
                portal: i64,
                renames: &[(TypeKey, String)],
            ) -> StoreResult<()> {
                for (key, text) in renames {
                    Shared::<$db>::rename_type(&mut *self.conn, portal, *key, text).await?;
                }
                Ok(())
            }

            async fn load_object_names(
                &mut self,
                portal: i64,
            ) -> StoreResult<Vec<(ObjectType, String)>> {
                names::object_names(&mut *self.conn, portal).await
            }

            async fn set_object_name(
                &mut self,
                portal: i64,
                object_type: ObjectType,
                name: Option<&str>,
            ) -> StoreResult<()> {
                names::set_object_name(&mut *self.conn, portal, object_type, name).await
            }
        }
    };
}

common_steps!(sqlx::Postgres);
common_steps!(sqlx::Sqlite);
