//! Streamed reads: one statement per stream. SQLite steps the statement only
//! as rows are taken (sqlx's worker hands them over a small channel), so a
//! task that batches the rows ahead of a small channel is paced by the
//! receiver; when the receiver goes away the task drops the statement.
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row, Sqlite, SqlitePool};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::*;

type Statement = sqlx::query::Query<'static, Sqlite, SqliteArguments<'static>>;

/// A record's rows to one object type: a range of the primary key.
const RECORDS_ONE_TYPE: &str =
    "SELECT to_object_type, to_object_id, category, type_id FROM associations
     WHERE portal_id = ?1 AND from_object_type = ?2 AND from_object_id = ?3
       AND to_object_type = ?4 AND to_object_id > ?5
     ORDER BY to_object_type, to_object_id, category, type_id";

/// A record's rows to every object type, after (type, id).
const RECORDS_ANY_TYPE: &str =
    "SELECT to_object_type, to_object_id, category, type_id FROM associations
     WHERE portal_id = ?1 AND from_object_type = ?2 AND from_object_id = ?3
       AND (to_object_type, to_object_id) > (?4, ?5)
     ORDER BY to_object_type, to_object_id, category, type_id";

/// Several records' rows, record by record in the order of the id array
/// (?3, JSON), the first record resuming after (?5, ?6). The CROSS JOIN
/// makes the array the outer loop (SQLite keeps that order) and each record
/// a search of the primary key, whose rows come in key order: so the rows
/// come in the order wanted without an ORDER BY, which would sort the whole
/// result in a temporary B-tree before the first row.
const BATCH: &str = "SELECT j.value, a.to_object_type, a.to_object_id, a.category, a.type_id
     FROM json_each(?3) j CROSS JOIN associations a
       ON a.portal_id = ?1 AND a.from_object_type = ?2 AND a.from_object_id = j.value
     WHERE (?4 IS NULL OR a.to_object_type = ?4)
       AND (j.key > 0 OR (a.to_object_type, a.to_object_id) > (?5, ?6))";

/// Several records' pages to one object type (?3), for the REST batch
/// read: first the index of each input of the JSON array ?4 ([from id,
/// to-id it starts after]) that holds no row after its start, with nulls;
/// then each input's rows up to the to-id of its ?5-th row, input by input
/// (the array is the outer loop, each input a search of the primary key,
/// so its rows come in key order). One statement, one snapshot; SQLite
/// runs a `UNION ALL`'s parts in order.
const PAGES: &str = "SELECT j.key, NULL, NULL, NULL FROM json_each(?4) j
     WHERE NOT EXISTS (
         SELECT 1 FROM associations
         WHERE portal_id = ?1 AND from_object_type = ?2 AND from_object_id = j.value ->> 0
           AND to_object_type = ?3 AND to_object_id > j.value ->> 1)
     UNION ALL
     SELECT j.key, a.to_object_id, a.category, a.type_id
     FROM json_each(?4) j CROSS JOIN associations a
       ON a.portal_id = ?1 AND a.from_object_type = ?2
      AND a.from_object_id = j.value ->> 0
      AND a.to_object_type = ?3 AND a.to_object_id > j.value ->> 1
      AND a.to_object_id <= coalesce((
          SELECT to_object_id FROM associations
          WHERE portal_id = ?1 AND from_object_type = ?2 AND from_object_id = j.value ->> 0
            AND to_object_type = ?3 AND to_object_id > j.value ->> 1
          ORDER BY to_object_id, category, type_id LIMIT 1 OFFSET ?5 - 1), 9223372036854775807)";

/// The export: a range of the primary key from the start row (the last row
/// sent, or the empty string and zeros), optionally filtered by types.
const EXPORT: &str =
    "SELECT from_object_type, from_object_id, to_object_type, to_object_id, category, type_id
     FROM associations
     WHERE portal_id = ?1 AND (?2 IS NULL OR from_object_type = ?2)
       AND (?3 IS NULL OR to_object_type = ?3)
       AND (from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
         > (?4, ?5, ?6, ?7, ?8, ?9)
     ORDER BY from_object_type, from_object_id, to_object_type, to_object_id, category, type_id";

pub(super) fn records(pool: SqlitePool, scan: RecordScan) -> RowBatches<RecordRow> {
    let statement = match scan.to {
        // A cursor of a one-type read always names a record of that type.
        Some(to) => sqlx::query(RECORDS_ONE_TYPE)
            .bind(scan.portal)
            .bind(scan.from.to_string())
            .bind(scan.from_id)
            .bind(to.to_string())
            .bind(scan.after.map(|(_, id)| id).unwrap_or(0)),
        None => {
            let (after_type, after_id) = record_start(scan.after);
            sqlx::query(RECORDS_ANY_TYPE)
                .bind(scan.portal)
                .bind(scan.from.to_string())
                .bind(scan.from_id)
                .bind(after_type)
                .bind(after_id)
        }
    };
    run(pool, scan.batch, statement, move |r| {
        record_row(r, scan.to, 0)
    })
}

/// A record's row from column `at` on (to-type, to-id, category, type id);
/// a to-type the statement reads only one of (`to`) is not decoded.
/// Unchecked: the statements here fix the columns' types.
fn record_row(r: &SqliteRow, to: Option<ObjectType>, at: usize) -> StoreResult<RecordRow> {
    let to_type = match to {
        Some(to) => to,
        None => decode_object_type(r.try_get_unchecked::<&str, _>(at)?)?,
    };
    Ok((
        to_type,
        r.try_get_unchecked(at + 1)?,
        decode_key(r.try_get_unchecked(at + 2)?, r.try_get_unchecked(at + 3)?)?,
    ))
}

pub(super) fn batch(pool: SqlitePool, scan: BatchScan) -> RowBatches<(i64, RecordRow)> {
    let (after_type, after_id) = record_start(scan.after);
    let statement = sqlx::query(BATCH)
        .bind(scan.portal)
        .bind(scan.from.to_string())
        .bind(serde_json::Value::from(scan.from_ids).to_string())
        .bind(scan.to.map(|t| t.to_string()))
        .bind(after_type)
        .bind(after_id);
    let to = scan.to;
    run(pool, scan.batch, statement, move |r| {
        Ok((r.try_get_unchecked(0)?, record_row(r, to, 1)?))
    })
}

pub(super) fn pages(pool: SqlitePool, scan: PageScan) -> RowBatches<PageItem> {
    let statement = sqlx::query(PAGES)
        .bind(scan.portal)
        .bind(scan.from.to_string())
        .bind(scan.to.to_string())
        .bind(serde_json::json!(scan.inputs).to_string())
        .bind(i64::from(scan.rows));
    let to = scan.to;
    run(pool, scan.batch, statement, move |r| {
        let input = r.try_get_unchecked::<i64, _>(0)? as usize;
        match r.try_get_unchecked::<Option<i64>, _>(1)? {
            None => Ok(PageItem::Empty(input)),
            Some(id) => Ok(PageItem::Row(
                input,
                (
                    to,
                    id,
                    decode_key(r.try_get_unchecked(2)?, r.try_get_unchecked(3)?)?,
                ),
            )),
        }
    })
}

pub(super) fn export(pool: SqlitePool, scan: ExportScan) -> RowBatches<DirectedRow> {
    let start = export_start(scan.after);
    let statement = sqlx::query(EXPORT)
        .bind(scan.portal)
        .bind(scan.from.map(|t| t.to_string()))
        .bind(scan.to.map(|t| t.to_string()))
        .bind(start.0)
        .bind(start.1)
        .bind(start.2)
        .bind(start.3)
        .bind(start.4)
        .bind(start.5);
    run(pool, scan.batch, statement, decode_row)
}

pub(super) fn at_least(
    pool: SqlitePool,
    scan: UsageScan,
    min: i64,
    after: Option<(i64, i64)>,
    batch: usize,
) -> RowBatches<(i64, i64)> {
    let (after_count, after_id) = after.unwrap_or((i64::MAX, i64::MAX));
    let statement = sqlx::query(
        "SELECT object_id, count FROM association_counts
         WHERE portal_id = ?1 AND object_type = ?2 AND category = ?3 AND type_id = ?4
           AND count >= ?5 AND (count, object_id) < (?6, ?7)
         ORDER BY count DESC, object_id DESC",
    )
    .bind(scan.portal)
    .bind(scan.object_type.to_string())
    .bind(scan.key.category.code())
    .bind(scan.key.type_id)
    .bind(min)
    .bind(after_count)
    .bind(after_id);
    run(pool, batch, statement, |r| {
        Ok((r.try_get(0)?, r.try_get(1)?))
    })
}

/// Runs `statement` and sends its rows in batches of `batch` until they end
/// or the receiver goes away.
fn run<T: Send + 'static>(
    pool: SqlitePool,
    batch: usize,
    statement: Statement,
    decode: impl Fn(&SqliteRow) -> StoreResult<T> + Send + Sync + 'static,
) -> RowBatches<T> {
    let (sender, receiver) = mpsc::channel(SCAN_AHEAD);
    tokio::spawn(async move {
        let mut out = Batcher::new(sender.clone(), batch);
        let mut rows = statement.fetch(&pool);
        while let Some(row) = rows.next().await {
            match row.map_err(StoreError::from).and_then(|r| decode(&r)) {
                Ok(row) => {
                    if !out.push(row).await {
                        return;
                    }
                }
                Err(err) => {
                    let _ = sender.send(Err(err)).await;
                    return;
                }
            }
        }
        out.flush().await;
    });
    receiver
}
