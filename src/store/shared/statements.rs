//! The shared statements themselves: `Shared<DB>`'s associated functions,
//! each one SQL text run on either driver.
//!
//! Above 600 lines because it is `Shared`'s one impl block: the driver's
//! bounds are stated once, on it, and every statement needs them.
use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use sqlx::Row as _;

use super::{AdminLog, Spelling};
use crate::domain::admin::AdminChange;
use crate::domain::feed::{Change, ChangeKind};
use crate::domain::merge::MergeRequest;
use crate::domain::plan::DirectedRow;
use crate::domain::types::FIRST_PORTAL_TYPE_ID;
use crate::domain::{ObjectType, TypeDef, TypeKey};
use crate::store::{
    decode_admin_change, decode_key, decode_object_type, encode_admin_change, DefinitionRow,
    RecordSelect, RecordSummary, StoreError, StoreResult, StoredLimit, TypeUsage, UsageScan,
};

/// The statements of one driver (`sqlx::Postgres` or `sqlx::Sqlite`).
pub(crate) struct Shared<DB>(PhantomData<DB>);

impl<DB> Shared<DB>
where
    DB: Spelling,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i16: for<'q> sqlx::Encode<'q, DB> + for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    i32: for<'q> sqlx::Encode<'q, DB> + for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    bool: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB> + for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    Option<i64>: for<'q> sqlx::Encode<'q, DB>,
    Option<String>: for<'q> sqlx::Encode<'q, DB>,
    for<'r> &'r str: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    /// A stored row in the columns (from type, from id, to type, to id,
    /// category, type id).
    pub(crate) fn decode_row(row: &DB::Row) -> StoreResult<DirectedRow> {
        Ok(DirectedRow {
            from_type: decode_object_type(row.try_get::<&str, _>(0)?)?,
            from_id: row.try_get(1)?,
            to_type: decode_object_type(row.try_get::<&str, _>(2)?)?,
            to_id: row.try_get(3)?,
            key: decode_key(row.try_get::<i16, _>(4)?.into(), row.try_get(5)?)?,
        })
    }

    /// An admin limit in the columns (category, type id, max).
    pub(crate) fn decode_limit(row: &DB::Row) -> StoreResult<(TypeKey, u32)> {
        let max: i32 = row.try_get(2)?;
        let key = decode_key(row.try_get::<i16, _>(0)?.into(), row.try_get(1)?)?;
        Ok((key, max as u32))
    }

    /// How many records of a type hold at least `near` and `at` rows, the
    /// largest count, and samples of each band. Every part is a range of
    /// association_counts_by_usage.
    pub(crate) async fn type_usage(
        conn: &mut DB::Connection,
        scan: UsageScan,
        near: i64,
        at: i64,
        samples: u32,
    ) -> StoreResult<TypeUsage> {
        let row = sqlx::query::<DB>(
            "SELECT count(*) FILTER (WHERE count >= $6), count(*) FILTER (WHERE count < $6),
                    (SELECT coalesce(max(count), 0) FROM association_counts WHERE portal_id = $1
                       AND category = $2 AND type_id = $3 AND object_type = $4)
             FROM association_counts WHERE portal_id = $1 AND category = $2 AND type_id = $3
               AND object_type = $4 AND count >= $5",
        )
        .bind(scan.portal)
        .bind(scan.key.category.code())
        .bind(scan.key.type_id)
        .bind(scan.object_type.to_string())
        .bind(near)
        .bind(at)
        .fetch_one(&mut *conn)
        .await?;
        let mut usage = TypeUsage {
            at_or_above: row.try_get::<i64, _>(0)? as u64,
            near: row.try_get::<i64, _>(1)? as u64,
            largest: row.try_get(2)?,
            ..TypeUsage::default()
        };
        for (low, high, into) in [
            (at, i64::MAX, &mut usage.at_or_above_samples),
            (near, at, &mut usage.near_samples),
        ] {
            let rows = sqlx::query::<DB>(
                "SELECT object_id, count FROM association_counts WHERE portal_id = $1
                   AND category = $2 AND type_id = $3 AND object_type = $4
                   AND count >= $5 AND count < $6
                 ORDER BY count DESC, object_id DESC LIMIT $7",
            )
            .bind(scan.portal)
            .bind(scan.key.category.code())
            .bind(scan.key.type_id)
            .bind(scan.object_type.to_string())
            .bind(low)
            .bind(high)
            .bind(i64::from(samples))
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                into.push((row.try_get(0)?, row.try_get(1)?));
            }
        }
        Ok(usage)
    }

    /// Whether any record of the portal was merged into another.
    pub(crate) async fn has_merged_records(
        conn: &mut DB::Connection,
        portal: i64,
    ) -> StoreResult<bool> {
        let row =
            sqlx::query::<DB>("SELECT EXISTS (SELECT 1 FROM merged_records WHERE portal_id = $1)")
                .bind(portal)
                .fetch_one(conn)
                .await?;
        Ok(row.try_get(0)?)
    }

    /// The (from, to) object types of the portal's labelled definitions.
    pub(crate) async fn labelled_directions(
        conn: &mut DB::Connection,
        portal: i64,
    ) -> StoreResult<Vec<(ObjectType, ObjectType)>> {
        let rows = sqlx::query::<DB>(
            "SELECT DISTINCT from_object_type, to_object_type FROM association_definitions
             WHERE portal_id = $1 AND label IS NOT NULL ORDER BY 1, 2",
        )
        .bind(portal)
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    decode_object_type(r.try_get::<&str, _>(0)?)?,
                    decode_object_type(r.try_get::<&str, _>(1)?)?,
                ))
            })
            .collect()
    }

    /// The portal's admin limits, of one pair of object types (both
    /// directions) or all.
    pub(crate) async fn user_limits(
        conn: &mut DB::Connection,
        portal: i64,
        pair: Option<(ObjectType, ObjectType)>,
    ) -> StoreResult<Vec<StoredLimit>> {
        let (a, b) = pair
            .map(|(a, b)| (Some(a.to_string()), Some(b.to_string())))
            .unwrap_or((None, None));
        let rows = sqlx::query::<DB>(
            "SELECT from_object_type, to_object_type, category, type_id, max_to_object_ids
             FROM association_limits
             WHERE portal_id = $1 AND (CAST($2 AS TEXT) IS NULL
                   OR (from_object_type = $2 AND to_object_type = $3)
                   OR (from_object_type = $3 AND to_object_type = $2))
             ORDER BY from_object_type, to_object_type, category, type_id",
        )
        .bind(portal)
        .bind(a)
        .bind(b)
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredLimit {
                    from: decode_object_type(r.try_get::<&str, _>(0)?)?,
                    to: decode_object_type(r.try_get::<&str, _>(1)?)?,
                    key: decode_key(r.try_get::<i16, _>(2)?.into(), r.try_get(3)?)?,
                    max_to_object_ids: r.try_get::<i32, _>(4)? as u32,
                })
            })
            .collect()
    }

    /// Up to `limit` numbered changes of the portal's feed after `after`.
    pub(crate) async fn changes_after(
        conn: &mut DB::Connection,
        portal: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<Change>> {
        let rows = sqlx::query::<DB>(
            "SELECT from_object_type, from_object_id, to_object_type, to_object_id, category, type_id,
                    seq, kind, changed_at_us
             FROM association_changes WHERE portal_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(portal)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: i16 = r.try_get(7)?;
                Ok(Change {
                    row: Self::decode_row(r)?,
                    seq: r.try_get(6)?,
                    kind: ChangeKind::from_code(kind.into()).ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown change kind {kind}"))
                    })?,
                    changed_at_us: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// The portal's feed bounds: (the last change pruned, the last numbered).
    pub(crate) async fn feed_bounds(
        conn: &mut DB::Connection,
        portal: i64,
    ) -> StoreResult<(i64, i64)> {
        let row = sqlx::query::<DB>(
            "SELECT pruned_through, last_seq FROM association_feed_heads WHERE portal_id = $1",
        )
        .bind(portal)
        .fetch_optional(conn)
        .await?;
        Ok(match row {
            Some(row) => (row.try_get(0)?, row.try_get(1)?),
            None => (0, 0),
        })
    }

    /// How many (record, type) counters disagree with the rows they count.
    pub(crate) async fn counter_drift(conn: &mut DB::Connection, portal: i64) -> StoreResult<u64> {
        let row = sqlx::query::<DB>(
            "WITH actual AS (
                 SELECT from_object_type AS object_type, from_object_id AS object_id, category,
                        type_id, count(*) AS n
                 FROM associations WHERE portal_id = $1
                 GROUP BY from_object_type, from_object_id, category, type_id),
             stored AS (SELECT object_type, object_id, category, type_id, count AS n
                        FROM association_counts WHERE portal_id = $1 AND count <> 0)
             SELECT count(*) FROM actual FULL JOIN stored USING (object_type, object_id, category, type_id)
             WHERE actual.n IS DISTINCT FROM stored.n",
        )
        .bind(portal)
        .fetch_one(conn)
        .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    /// Reads (seq, change) rows of an admin log table after `after`.
    pub(crate) async fn read_admin_log(
        conn: &mut DB::Connection,
        table: AdminLog,
        portal: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, AdminChange)>> {
        let rows = sqlx::query::<DB>(&format!(
            "SELECT seq, change FROM {} WHERE portal_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            table.table()
        ))
        .bind(portal)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, decode_admin_change(r.try_get(1)?)?)))
            .collect()
    }

    /// Each portal with admin changes `plugin` has not been given (of one
    /// portal, or all): (portal, the last change delivered).
    pub(crate) async fn admin_outbox(
        conn: &mut DB::Connection,
        plugin: &str,
        portal: Option<i64>,
    ) -> StoreResult<Vec<(i64, i64)>> {
        let rows = sqlx::query::<DB>(
            "SELECT h.portal_id, COALESCE(d.delivered_seq, 0) FROM admin_change_heads h
             LEFT JOIN admin_hook_deliveries d ON d.portal_id = h.portal_id AND d.plugin = $1
             WHERE h.last_seq > COALESCE(d.delivered_seq, 0)
               AND (CAST($2 AS BIGINT) IS NULL OR h.portal_id = $2)
             ORDER BY h.portal_id",
        )
        .bind(plugin.to_string())
        .bind(portal)
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Records that `plugin` was given the portal's admin changes through
    /// `seq` (never moving the mark back).
    pub(crate) async fn mark_delivered(
        conn: &mut DB::Connection,
        plugin: &str,
        portal: i64,
        seq: i64,
    ) -> StoreResult<()> {
        sqlx::query::<DB>(
            "INSERT INTO admin_hook_deliveries (portal_id, plugin, delivered_seq) VALUES ($1, $2, $3)
             ON CONFLICT (portal_id, plugin) DO UPDATE
             SET delivered_seq = CASE WHEN excluded.delivered_seq > admin_hook_deliveries.delivered_seq
                                      THEN excluded.delivered_seq
                                      ELSE admin_hook_deliveries.delivered_seq END",
        )
        .bind(portal)
        .bind(plugin.to_string())
        .bind(seq)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Takes or renews `holder`'s lease on (plugin, portal) for `ttl`;
    /// whether `holder` holds it now.
    pub(crate) async fn hold_hook_lease(
        conn: &mut DB::Connection,
        plugin: &str,
        portal: i64,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        // The clock is read once, in the new row (`excluded`): Citus takes no
        // function but an immutable one in ON CONFLICT's WHERE.
        let held = sqlx::query::<DB>(&format!(
            "INSERT INTO admin_hook_leases (plugin, portal_id, holder, expires_at_us)
             VALUES ($1, $2, $3, {} + $4)
             ON CONFLICT (plugin, portal_id) DO UPDATE
             SET holder = excluded.holder, expires_at_us = excluded.expires_at_us
             WHERE admin_hook_leases.holder = excluded.holder
                OR admin_hook_leases.expires_at_us < excluded.expires_at_us - $4
             RETURNING holder",
            DB::NOW_US
        ))
        .bind(plugin.to_string())
        .bind(portal)
        .bind(holder.to_string())
        .bind(ttl.as_micros() as i64)
        .fetch_optional(conn)
        .await?;
        Ok(held.is_some())
    }

    /// Gives one type the label text `text`.
    pub(crate) async fn rename_type(
        conn: &mut DB::Connection,
        portal: i64,
        key: TypeKey,
        text: &str,
    ) -> StoreResult<()> {
        sqlx::query::<DB>(
            "UPDATE association_definitions SET label = $4
             WHERE portal_id = $1 AND category = $2 AND type_id = $3",
        )
        .bind(portal)
        .bind(key.category.code())
        .bind(key.type_id)
        .bind(text.to_string())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Admin limits of the pair `a`, `b` (both directions).
    pub(crate) async fn load_pair_limits(
        conn: &mut DB::Connection,
        portal: i64,
        a: ObjectType,
        b: ObjectType,
    ) -> StoreResult<HashMap<TypeKey, u32>> {
        let rows = sqlx::query::<DB>(
            "SELECT category, type_id, max_to_object_ids FROM association_limits
             WHERE portal_id = $1 AND ((from_object_type = $2 AND to_object_type = $3)
                                    OR (from_object_type = $3 AND to_object_type = $2))",
        )
        .bind(portal)
        .bind(a.to_string())
        .bind(b.to_string())
        .fetch_all(conn)
        .await?;
        rows.iter().map(Self::decode_limit).collect()
    }

    /// Every row from one record.
    pub(crate) async fn load_rows_from(
        conn: &mut DB::Connection,
        portal: i64,
        object_type: ObjectType,
        id: i64,
    ) -> StoreResult<Vec<DirectedRow>> {
        let rows = sqlx::query::<DB>(
            "SELECT from_object_type, from_object_id, to_object_type, to_object_id, category, type_id
             FROM associations WHERE portal_id = $1 AND from_object_type = $2 AND from_object_id = $3",
        )
        .bind(portal)
        .bind(object_type.to_string())
        .bind(id)
        .fetch_all(conn)
        .await?;
        rows.iter().map(Self::decode_row).collect()
    }

    /// Points the merged record, and every record that resolved to it, at
    /// the primary.
    pub(crate) async fn record_merge(
        conn: &mut DB::Connection,
        req: &MergeRequest,
    ) -> StoreResult<()> {
        for statement in [
            "UPDATE merged_records SET survivor_id = $4
             WHERE portal_id = $1 AND object_type = $2 AND survivor_id = $3",
            "INSERT INTO merged_records (portal_id, object_type, merged_id, survivor_id)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (portal_id, object_type, merged_id) DO UPDATE SET survivor_id = $4",
        ] {
            sqlx::query::<DB>(statement)
                .bind(req.portal_id)
                .bind(req.object_type.to_string())
                .bind(req.merged_id)
                .bind(req.primary_id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Reserves `count` consecutive type ids for the portal; locks its
    /// allocator row.
    pub(crate) async fn allocate_type_ids(
        conn: &mut DB::Connection,
        portal: i64,
        count: i32,
    ) -> StoreResult<i32> {
        let row = sqlx::query::<DB>(
            "INSERT INTO portal_type_ids (portal_id, next_type_id) VALUES ($1, $2 + $3)
             ON CONFLICT (portal_id) DO UPDATE SET next_type_id = portal_type_ids.next_type_id + $3
             RETURNING next_type_id - $3",
        )
        .bind(portal)
        .bind(FIRST_PORTAL_TYPE_ID)
        .bind(count)
        .fetch_one(conn)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Stores new definitions.
    pub(crate) async fn insert_definitions(
        conn: &mut DB::Connection,
        portal: i64,
        defs: &[TypeDef],
    ) -> StoreResult<()> {
        for def in defs {
            sqlx::query::<DB>(
                "INSERT INTO association_definitions
                   (portal_id, category, type_id, inverse_type_id, from_object_type, to_object_type, label, name)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(portal)
            .bind(def.key.category.code())
            .bind(def.key.type_id)
            .bind(def.inverse.type_id)
            .bind(def.from.to_string())
            .bind(def.to.to_string())
            .bind(def.label.clone())
            .bind(def.name.clone())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// The portal's definitions between `a` and `b` (both directions).
    pub(crate) async fn load_definitions(
        conn: &mut DB::Connection,
        portal: i64,
        a: ObjectType,
        b: ObjectType,
    ) -> StoreResult<Vec<TypeDef>> {
        let rows = sqlx::query::<DB>(
            "SELECT category, type_id, inverse_type_id, from_object_type, to_object_type, label, name
             FROM association_definitions
             WHERE portal_id = $1 AND ((from_object_type = $2 AND to_object_type = $3)
                                    OR (from_object_type = $3 AND to_object_type = $2))
             ORDER BY category, type_id",
        )
        .bind(portal)
        .bind(a.to_string())
        .bind(b.to_string())
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|r| {
                DefinitionRow {
                    category: r.try_get::<i16, _>(0)?.into(),
                    type_id: r.try_get(1)?,
                    inverse_type_id: r.try_get(2)?,
                    from_object_type: r.try_get(3)?,
                    to_object_type: r.try_get(4)?,
                    label: r.try_get(5)?,
                    name: r.try_get(6)?,
                }
                .into_def()
            })
            .collect()
    }

    /// Admin limits of these types.
    pub(crate) async fn load_limits(
        conn: &mut DB::Connection,
        portal: i64,
        keys: &[TypeKey],
    ) -> StoreResult<HashMap<TypeKey, u32>> {
        let statement = format!(
            "SELECT category, type_id, max_to_object_ids FROM association_limits
             WHERE portal_id = $1 AND (category, type_id) IN ({})",
            DB::keys_at(2)
        );
        let query = DB::bind_keys(sqlx::query::<DB>(&statement).bind(portal), keys);
        let rows = query.fetch_all(conn).await?;
        rows.iter().map(Self::decode_limit).collect()
    }

    /// Removes the admin limits of these types; returns those there were.
    pub(crate) async fn delete_limits(
        conn: &mut DB::Connection,
        portal: i64,
        keys: &[TypeKey],
    ) -> StoreResult<Vec<(TypeKey, u32)>> {
        let statement = format!(
            "DELETE FROM association_limits
             WHERE portal_id = $1 AND (category, type_id) IN ({})
             RETURNING category, type_id, max_to_object_ids",
            DB::keys_at(2)
        );
        let query = DB::bind_keys(sqlx::query::<DB>(&statement).bind(portal), keys);
        let rows = query.fetch_all(conn).await?;
        rows.iter().map(Self::decode_limit).collect()
    }

    /// The records among `ids` that were merged away, with their survivors.
    pub(crate) async fn merged_survivors(
        conn: &mut DB::Connection,
        portal: i64,
        object_type: ObjectType,
        ids: &[i64],
    ) -> StoreResult<Vec<(i64, i64)>> {
        let statement = format!(
            "SELECT merged_id, survivor_id FROM merged_records
             WHERE portal_id = $1 AND object_type = $2 AND merged_id IN ({})",
            DB::ids_at(3)
        );
        let query = sqlx::query::<DB>(&statement)
            .bind(portal)
            .bind(object_type.to_string());
        let rows = DB::bind_ids(query, ids).fetch_all(conn).await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The records of a type holding rows (those named, or a page after
    /// one), with when their first and last rows were made.
    pub(crate) async fn records(
        conn: &mut DB::Connection,
        portal: i64,
        object_type: ObjectType,
        select: RecordSelect<'_>,
    ) -> StoreResult<Vec<RecordSummary>> {
        let (ids, after, limit) = match select {
            RecordSelect::Ids(ids) => (Some(ids), 0, ids.len() as i64),
            RecordSelect::After { after, limit } => (None, after, i64::from(limit)),
        };
        let named = match ids {
            Some(_) => format!("from_object_id IN ({})", DB::ids_at(5)),
            None => "true".to_string(),
        };
        let statement = format!(
            "SELECT from_object_id, {}, {} FROM associations
             WHERE portal_id = $1 AND from_object_type = $2 AND {named} AND from_object_id > $3
             GROUP BY from_object_id ORDER BY from_object_id LIMIT $4",
            DB::epoch_us("min(created_at)"),
            DB::epoch_us("max(created_at)"),
        );
        let mut query = sqlx::query::<DB>(&statement)
            .bind(portal)
            .bind(object_type.to_string())
            .bind(after)
            .bind(limit);
        if let Some(ids) = ids {
            query = DB::bind_ids(query, ids);
        }
        let rows = query.fetch_all(conn).await?;
        rows.iter()
            .map(|r| {
                Ok(RecordSummary {
                    id: r.try_get(0)?,
                    first_created_us: r.try_get(1)?,
                    last_created_us: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Keeps an admin change delivered to the audit plugin (once per seq).
    pub(crate) async fn record_audit_event(
        conn: &mut DB::Connection,
        seq: i64,
        change: &AdminChange,
    ) -> StoreResult<()> {
        sqlx::query::<DB>(
            "INSERT INTO admin_audit_events (portal_id, seq, change) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(change.portal_id)
        .bind(seq)
        .bind(encode_admin_change(change)?)
        .execute(conn)
        .await?;
        Ok(())
    }
}
