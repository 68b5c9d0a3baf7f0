//! Streamed reads: one statement per stream, stepped on a stream
//! connection of its own (`readers.rs`) as the receiver takes batches.
use rusqlite::types::Value;

use super::readers::{run, ReaderPool, TypeColumn};
use super::*;

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

pub(super) fn records(pool: ReaderPool, scan: RecordScan) -> RowBatches<RecordRow> {
    let head = [
        Value::Integer(scan.portal),
        Value::Text(scan.from.to_string()),
        Value::Integer(scan.from_id),
    ];
    let (sql, start) = match scan.to {
        // A cursor of a one-type read always names a record of that type.
        Some(to) => (
            RECORDS_ONE_TYPE,
            [
                Value::Text(to.to_string()),
                Value::Integer(scan.after.map(|(_, id)| id).unwrap_or(0)),
            ],
        ),
        None => {
            let (after_type, after_id) = record_start(scan.after);
            (
                RECORDS_ANY_TYPE,
                [Value::Text(after_type), Value::Integer(after_id)],
            )
        }
    };
    let params = head.into_iter().chain(start).collect();
    let mut to_type = TypeColumn::default();
    run(pool, scan.batch, sql, params, move |r| {
        record_row(r, scan.to, &mut to_type, 0)
    })
}

/// A record's row from column `at` on (to-type, to-id, category, type id);
/// a to-type the statement reads only one of (`to`) is not decoded.
fn record_row(
    r: &rusqlite::Row<'_>,
    to: Option<ObjectType>,
    to_type: &mut TypeColumn,
    at: usize,
) -> StoreResult<RecordRow> {
    let to_type = match to {
        Some(to) => to,
        None => to_type.decode(r, at)?,
    };
    Ok((
        to_type,
        r.get(at + 1)?,
        decode_key(r.get(at + 2)?, r.get(at + 3)?)?,
    ))
}

pub(super) fn batch(pool: ReaderPool, scan: BatchScan) -> RowBatches<(i64, RecordRow)> {
    let (after_type, after_id) = record_start(scan.after);
    let params = vec![
        Value::Integer(scan.portal),
        Value::Text(scan.from.to_string()),
        Value::Text(serde_json::Value::from(scan.from_ids).to_string()),
        scan.to.map_or(Value::Null, |t| Value::Text(t.to_string())),
        Value::Text(after_type),
        Value::Integer(after_id),
    ];
    let to = scan.to;
    let mut to_type = TypeColumn::default();
    run(pool, scan.batch, BATCH, params, move |r| {
        Ok((r.get(0)?, record_row(r, to, &mut to_type, 1)?))
    })
}

pub(super) fn pages(pool: ReaderPool, scan: PageScan) -> RowBatches<PageItem> {
    let params = vec![
        Value::Integer(scan.portal),
        Value::Text(scan.from.to_string()),
        Value::Text(scan.to.to_string()),
        Value::Text(serde_json::json!(scan.inputs).to_string()),
        Value::Integer(i64::from(scan.rows)),
    ];
    let to = scan.to;
    run(pool, scan.batch, PAGES, params, move |r| {
        let input = r.get::<_, i64>(0)? as usize;
        match r.get::<_, Option<i64>>(1)? {
            None => Ok(PageItem::Empty(input)),
            Some(id) => Ok(PageItem::Row(
                input,
                (to, id, decode_key(r.get(2)?, r.get(3)?)?),
            )),
        }
    })
}

pub(super) fn export(pool: ReaderPool, scan: ExportScan) -> RowBatches<DirectedRow> {
    let start = export_start(scan.after);
    let text_or_null =
        |t: Option<ObjectType>| t.map_or(Value::Null, |t| Value::Text(t.to_string()));
    let params = vec![
        Value::Integer(scan.portal),
        text_or_null(scan.from),
        text_or_null(scan.to),
        Value::Text(start.0),
        Value::Integer(start.1),
        Value::Text(start.2),
        Value::Integer(start.3),
        Value::Integer(start.4.into()),
        Value::Integer(start.5.into()),
    ];
    let (mut from_type, mut to_type) = (TypeColumn::default(), TypeColumn::default());
    run(pool, scan.batch, EXPORT, params, move |r| {
        Ok(DirectedRow {
            from_type: from_type.decode(r, 0)?,
            from_id: r.get(1)?,
            to_type: to_type.decode(r, 2)?,
            to_id: r.get(3)?,
            key: decode_key(r.get(4)?, r.get(5)?)?,
        })
    })
}

/// Records holding at least `min` of a type, by count then id, descending.
const AT_LEAST: &str = "SELECT object_id, count FROM association_counts
     WHERE portal_id = ?1 AND object_type = ?2 AND category = ?3 AND type_id = ?4
       AND count >= ?5 AND (count, object_id) < (?6, ?7)
     ORDER BY count DESC, object_id DESC";

pub(super) fn at_least(
    pool: ReaderPool,
    scan: UsageScan,
    min: i64,
    after: Option<(i64, i64)>,
    batch: usize,
) -> RowBatches<(i64, i64)> {
    let (after_count, after_id) = after.unwrap_or((i64::MAX, i64::MAX));
    let params = vec![
        Value::Integer(scan.portal),
        Value::Text(scan.object_type.to_string()),
        Value::Integer(scan.key.category.code().into()),
        Value::Integer(scan.key.type_id.into()),
        Value::Integer(min),
        Value::Integer(after_count),
        Value::Integer(after_id),
    ];
    run(pool, batch, AT_LEAST, params, |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
}
