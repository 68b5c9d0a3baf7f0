//! Streamed reads: one statement per stream (one snapshot for the whole
//! stream), its rows read as PostgreSQL sends them, so the database
//! produces the next rows while the service encodes the previous ones. A
//! task batches the rows into a small channel, so the receiver's pace is
//! the only brake (a full channel stops the reads, a full socket stops the
//! database). When the receiver goes away before the end, the task closes
//! the connection, which stops the statement.
//!
//! Streams run on connections of their own, read-only and planned to read
//! in index order (`SESSION`): a plain statement is planned for its whole
//! result, and a portal-wide export would otherwise be planned as a
//! sequential scan and a sort, with no row out before the sort ends.
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{PgPool, Postgres, Row};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::*;

type Statement = sqlx::query::Query<'static, Postgres, PgArguments>;

/// The settings of every stream connection: read-only, and no sort or
/// sequential scan where the index gives the order (every streamed
/// statement has such an index; the plan test holds it).
pub const SESSION: &[(&str, &str)] = &[
    ("default_transaction_read_only", "on"),
    ("enable_sort", "off"),
    ("enable_seqscan", "off"),
];

/// A record's rows to one object type: a range of the primary key.
const RECORDS_ONE_TYPE: &str = "SELECT to_object_id, category, type_id FROM associations
    WHERE portal_id = $1 AND from_object_type = $2 AND from_object_id = $3
      AND to_object_type = $4 AND to_object_id > $5
    ORDER BY to_object_type, to_object_id, category, type_id";

/// A record's rows to every object type, after (type, id): a range of the
/// primary key that starts at a row value.
const RECORDS_ANY_TYPE: &str =
    "SELECT to_object_type, to_object_id, category, type_id FROM associations
    WHERE portal_id = $1 AND from_object_type = $2 AND from_object_id = $3
      AND (to_object_type, to_object_id) > ($4, $5)
    ORDER BY to_object_type, to_object_id, category, type_id";

/// Several records' rows, record by record in the order of the id array
/// ($3): the array's rows drive a nested loop whose inner side is each
/// record's index range (the plan test holds this shape); the first record
/// resumes after ($5, $6).
const BATCH_ANY_TYPE: &str = "SELECT u.id, a.to_object_type, a.to_object_id, a.category, a.type_id
    FROM unnest($3::bigint[]) WITH ORDINALITY AS u(id, n)
    CROSS JOIN LATERAL (
        SELECT to_object_type, to_object_id, category, type_id FROM associations
        WHERE portal_id = $1 AND from_object_type = $2 AND from_object_id = u.id
          AND $4::text IS NULL AND (u.n > 1 OR (to_object_type, to_object_id) > ($5, $6))
        ORDER BY to_object_type, to_object_id, category, type_id) a";

/// Several records' rows to one object type ($4).
const BATCH_ONE_TYPE: &str = "SELECT u.id, a.to_object_id, a.category, a.type_id
    FROM unnest($3::bigint[]) WITH ORDINALITY AS u(id, n)
    CROSS JOIN LATERAL (
        SELECT to_object_type, to_object_id, category, type_id FROM associations
        WHERE portal_id = $1 AND from_object_type = $2 AND from_object_id = u.id
          AND to_object_type = $4 AND (u.n > 1 OR ($5 = $4 AND to_object_id > $6) OR $5 = '')
        ORDER BY to_object_type, to_object_id, category, type_id) a";

/// Several records' pages to one object type ($3), for the REST batch
/// read: first the number of each input (record $4[n], starting after to-id
/// $5[n]) that holds no row after its start, with nulls (a probe of one
/// index range per input: a `LIMIT` in a lateral keeps the planner from
/// hashing the whole portal instead, and the key's order keeps it on the
/// key, where statistics that predate the portal's rows made it filter
/// the portal's rows through `associations_by_type` for every input, 11 s
/// for a batch read of 1,000 records); then each input's first $6 rows after
/// its start, input by input in the arrays' order (a nested loop over the
/// arrays, each input one index range). One statement, so both parts read
/// one snapshot; an `Append` runs its parts in order.
pub(super) const PAGES: &str = "SELECT u.n, NULL::bigint, NULL::smallint, NULL::integer
    FROM unnest($4::bigint[], $5::bigint[]) WITH ORDINALITY AS u(id, after_id, n)
    LEFT JOIN LATERAL (
        SELECT true AS held FROM associations
        WHERE portal_id = $1 AND from_object_type = $2 AND from_object_id = u.id
          AND to_object_type = $3 AND to_object_id > u.after_id
        ORDER BY to_object_id, category, type_id LIMIT 1) h ON true
    WHERE h.held IS NULL
    UNION ALL
    SELECT u.n, a.to_object_id, a.category, a.type_id
    FROM unnest($4::bigint[], $5::bigint[]) WITH ORDINALITY AS u(id, after_id, n)
    CROSS JOIN LATERAL (
        SELECT to_object_id, category, type_id FROM associations
        WHERE portal_id = $1 AND from_object_type = $2 AND from_object_id = u.id
          AND to_object_type = $3 AND to_object_id > u.after_id
        ORDER BY to_object_id, category, type_id LIMIT $6) a";

/// The export, one statement per filter shape, each a range of the primary
/// key with plain column bounds: $1 portal, then the start row (the last row
/// sent, or the empty string and zeros, which sort before every row), then
/// the to-type where it is filtered.
macro_rules! export_statement {
    ($range:literal, $to:literal) => {
        concat!(
            "SELECT from_object_type, from_object_id, to_object_type, to_object_id, category, type_id
             FROM associations WHERE portal_id = $1 AND ",
            $range,
            $to,
            " ORDER BY from_object_type, from_object_id, to_object_type, to_object_id, category, type_id"
        )
    };
}

/// Every row of the portal.
pub(super) const EXPORT_ALL: &str = export_statement!(
    "(from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
     > ($2, $3, $4, $5, $6::smallint, $7)",
    ""
);
/// Rows to one object type (a range over the portal, filtered by to-type).
pub(super) const EXPORT_TO: &str = export_statement!(
    "(from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
     > ($2, $3, $4, $5, $6::smallint, $7)",
    " AND to_object_type = $8"
);
/// Rows from one object type: a range within it.
pub(super) const EXPORT_FROM: &str = export_statement!(
    "from_object_type = $2
     AND (from_object_id, to_object_type, to_object_id, category, type_id)
     > ($3, $4, $5, $6::smallint, $7)",
    ""
);
/// Rows from one object type to another (a range within the from-type,
/// filtered by to-type).
pub(super) const EXPORT_FROM_TO: &str = export_statement!(
    "from_object_type = $2
     AND (from_object_id, to_object_type, to_object_id, category, type_id)
     > ($3, $4, $5, $6::smallint, $7)",
    " AND to_object_type = $8"
);

/// A type's records holding at least $5 associations, largest first, after
/// ($6, $7) (count, id): a backward range of association_counts_by_usage.
const AT_LEAST: &str = "SELECT object_id, count FROM association_counts
    WHERE portal_id = $1 AND object_type = $2 AND category = $3::smallint AND type_id = $4
      AND count >= $5 AND (count, object_id) < ($6, $7)
    ORDER BY count DESC, object_id DESC";

/// Every streamed statement, by name, with the number of parameters it
/// takes: for the plan test.
pub fn statements() -> Vec<(&'static str, &'static str, usize)> {
    vec![
        ("records of one type", RECORDS_ONE_TYPE, 5),
        ("records of every type", RECORDS_ANY_TYPE, 5),
        ("batch of records, every type", BATCH_ANY_TYPE, 6),
        ("batch of records, one type", BATCH_ONE_TYPE, 6),
        ("export", EXPORT_ALL, 7),
        ("export to one type", EXPORT_TO, 8),
        ("export from one type", EXPORT_FROM, 7),
        ("export between two types", EXPORT_FROM_TO, 8),
        ("near limit", AT_LEAST, 7),
    ]
}

pub(super) fn records(pool: PgPool, scan: RecordScan) -> RowBatches<RecordRow> {
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

/// A record's row from column `at` on: its to-type (unless the statement
/// reads one to-type, `to`), to-id, category and type id. Unchecked: the
/// statements here fix the columns' types.
fn record_row(r: &PgRow, to: Option<ObjectType>, at: usize) -> StoreResult<RecordRow> {
    let (to_type, at) = match to {
        Some(to) => (to, at),
        None => (
            decode_object_type(r.try_get_unchecked::<&str, _>(at)?)?,
            at + 1,
        ),
    };
    Ok((
        to_type,
        r.try_get_unchecked(at)?,
        decode_key(
            r.try_get_unchecked::<i16, _>(at + 1)?.into(),
            r.try_get_unchecked(at + 2)?,
        )?,
    ))
}

pub(super) fn batch(pool: PgPool, scan: BatchScan) -> RowBatches<(i64, RecordRow)> {
    let (after_type, after_id) = record_start(scan.after);
    let sql = match scan.to {
        Some(_) => BATCH_ONE_TYPE,
        None => BATCH_ANY_TYPE,
    };
    let statement = sqlx::query(sql)
        .bind(scan.portal)
        .bind(scan.from.to_string())
        .bind(scan.from_ids)
        .bind(scan.to.map(|t| t.to_string()))
        .bind(after_type)
        .bind(after_id);
    let to = scan.to;
    run(pool, scan.batch, statement, move |r| {
        Ok((r.try_get_unchecked(0)?, record_row(r, to, 1)?))
    })
}

pub(super) fn export(pool: PgPool, scan: ExportScan) -> RowBatches<DirectedRow> {
    let (from_type, from_id, to_type, to_id, category, type_id) = export_start(scan.after);
    let sql = match (scan.from.is_some(), scan.to.is_some()) {
        (false, false) => EXPORT_ALL,
        (false, true) => EXPORT_TO,
        (true, false) => EXPORT_FROM,
        (true, true) => EXPORT_FROM_TO,
    };
    let mut statement = sqlx::query(sql).bind(scan.portal);
    statement = match scan.from {
        // A cursor of a filtered export always names a row of that type.
        Some(from) => statement.bind(from.to_string()),
        None => statement.bind(from_type),
    };
    statement = statement
        .bind(from_id)
        .bind(to_type)
        .bind(to_id)
        .bind(category)
        .bind(type_id);
    if let Some(to) = scan.to {
        statement = statement.bind(to.to_string());
    }
    run(pool, scan.batch, statement, decode_row)
}

/// The near-limit scan runs as `COPY … TO STDOUT` of `AT_LEAST` with its
/// values written in (integers and an object type id, never caller text):
/// its two integer columns come as text lines, with none of a row's
/// per-row decoding, which made the stream 0.79× of PostgreSQL's own COPY.
pub(super) fn at_least(
    pool: PgPool,
    scan: UsageScan,
    min: i64,
    after: Option<(i64, i64)>,
    batch: usize,
) -> RowBatches<(i64, i64)> {
    let (after_count, after_id) = after.unwrap_or((i64::MAX, i64::MAX));
    let values = [
        scan.portal.to_string(),
        format!("'{}'", scan.object_type),
        scan.key.category.code().to_string(),
        scan.key.type_id.to_string(),
        min.to_string(),
        after_count.to_string(),
        after_id.to_string(),
    ];
    copy_lines(pool, batch, written_in(AT_LEAST, &values), copied_pair)
}

/// The pages run as `COPY … TO STDOUT` of `PAGES` with their values written
/// in (integers and object type ids, never caller text), for the reason
/// the near-limit scan does: a REST batch read's 100,000 rows cost the
/// service less as text lines than as rows decoded one by one.
pub(super) fn pages(pool: PgPool, scan: PageScan) -> RowBatches<PageItem> {
    let array = |column: fn(&(i64, i64)) -> i64| {
        let items: Vec<String> = scan.inputs.iter().map(|i| column(i).to_string()).collect();
        format!("'{{{}}}'", items.join(","))
    };
    let values = [
        scan.portal.to_string(),
        format!("'{}'", scan.from),
        format!("'{}'", scan.to),
        array(|i| i.0),
        array(|i| i.1),
        scan.rows.to_string(),
    ];
    let to = scan.to;
    copy_lines(pool, scan.batch, written_in(PAGES, &values), move |line| {
        copied_page_item(line, to)
    })
}

/// `sql` with `values[i]` in place of each `$(i + 1)`.
fn written_in(sql: &str, values: &[String]) -> String {
    // From the last down, so $1 never matches the start of $10 and the like.
    values
        .iter()
        .enumerate()
        .rev()
        .fold(sql.to_string(), |sql, (i, v)| {
            sql.replace(&format!("${}", i + 1), v)
        })
}

/// Runs `COPY (query) TO STDOUT` on a stream connection and sends its text
/// lines, each parsed by `parse`, in batches.
fn copy_lines<T: Send + 'static>(
    pool: PgPool,
    batch: usize,
    query: String,
    parse: impl Fn(&[u8]) -> StoreResult<T> + Send + Sync + 'static,
) -> RowBatches<T> {
    let copy = format!("COPY ({query}) TO STDOUT");
    spawn_scan(pool, batch, move |mut conn, mut out| async move {
        let scanned = async {
            let mut data = conn.copy_out_raw(&copy).await?;
            let mut partial: Vec<u8> = Vec::new();
            while let Some(bytes) = data.next().await {
                partial.extend_from_slice(&bytes?);
                let complete = partial
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                for line in partial[..complete]
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    if !out.push(parse(line)?).await {
                        return Ok(false);
                    }
                }
                partial.drain(..complete);
            }
            out.flush().await;
            Ok(true)
        }
        .await;
        (conn, scanned)
    })
}

/// One `COPY` text line of a page scan: an input with nothing (its number
/// and three nulls), or an input's row (number, to-id, category, type id).
fn copied_page_item(line: &[u8], to: ObjectType) -> StoreResult<PageItem> {
    let corrupt = || {
        let text = String::from_utf8_lossy(line);
        StoreError::Corrupt(format!("a page row reads {text:?}"))
    };
    let mut columns = line.split(|b| *b == b'\t');
    let mut next = || columns.next().ok_or_else(corrupt);
    let (n, to_id, category, type_id) = (next()?, next()?, next()?, next()?);
    let input = copied_int::<usize>(n)
        .and_then(|n| n.checked_sub(1))
        .ok_or_else(corrupt)?;
    if to_id == b"\\N" {
        return Ok(PageItem::Empty(input));
    }
    match (copied_int(to_id), copied_int(category), copied_int(type_id)) {
        (Some(to_id), Some(category), Some(type_id)) => Ok(PageItem::Row(
            input,
            (to, to_id, decode_key(category, type_id)?),
        )),
        _ => Err(corrupt()),
    }
}

/// A `COPY` text column holding an integer.
fn copied_int<T: std::str::FromStr>(column: &[u8]) -> Option<T> {
    std::str::from_utf8(column).ok()?.parse().ok()
}

/// One `COPY` text line of two integer columns.
fn copied_pair(line: &[u8]) -> StoreResult<(i64, i64)> {
    let mut columns = line.split(|b| *b == b'\t').map(copied_int::<i64>);
    match (columns.next(), columns.next(), columns.next()) {
        (Some(Some(id)), Some(Some(count)), None) => Ok((id, count)),
        _ => Err(StoreError::Corrupt(format!(
            "a near-limit row reads {:?}",
            String::from_utf8_lossy(line)
        ))),
    }
}

/// Runs `statement` on a stream connection and sends its rows in batches
/// until they end or the receiver goes away.
fn run<T: Send + 'static>(
    pool: PgPool,
    batch: usize,
    statement: Statement,
    decode: impl Fn(&PgRow) -> StoreResult<T> + Send + Sync + 'static,
) -> RowBatches<T> {
    spawn_scan(pool, batch, move |mut conn, mut out| async move {
        let scanned = async {
            let mut rows = statement.fetch(&mut *conn);
            while let Some(row) = rows.next().await {
                if !out.push(decode(&row?)?).await {
                    return Ok(false);
                }
            }
            Ok(out.flush().await)
        }
        .await;
        (conn, scanned)
    })
}

/// Runs `scan` on a stream connection in a task of its own: it fills the
/// batches and answers whether it read to the end. A failure goes to the
/// receiver; a scan that stopped early (its receiver went away, or it
/// failed) closes its connection, which stops the statement: rows may still
/// be on their way, and the pool would otherwise read every one.
fn spawn_scan<T, F, Fut>(pool: PgPool, batch: usize, scan: F) -> RowBatches<T>
where
    T: Send + 'static,
    F: FnOnce(PoolConnection<Postgres>, Batcher<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (PoolConnection<Postgres>, StoreResult<bool>)> + Send,
{
    let (sender, receiver) = mpsc::channel(SCAN_AHEAD);
    tokio::spawn(async move {
        let conn = match pool.acquire().await {
            Ok(conn) => conn,
            Err(err) => {
                let _ = sender.send(Err(err.into())).await;
                return;
            }
        };
        let (conn, scanned) = scan(conn, Batcher::new(sender.clone(), batch)).await;
        let finished = match scanned {
            Ok(finished) => finished,
            Err(err) => {
                let _ = sender.send(Err(err)).await;
                false
            }
        };
        if !finished {
            let _ = conn.detach().close_hard().await;
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Category;

    /// A page scan's `COPY` lines read as items; anything else is corrupt,
    /// never a panic.
    #[test]
    fn copied_page_lines_read_as_items_or_corrupt() {
        let to = ObjectType::CONTACT;
        let empty = copied_page_item(b"3\t\\N\t\\N\t\\N", to).unwrap();
        assert_eq!(empty, PageItem::Empty(2));
        let key = TypeKey {
            category: Category::HubspotDefined,
            type_id: 279,
        };
        let row = copied_page_item(b"1\t42\t1\t279", to).unwrap();
        assert_eq!(row, PageItem::Row(0, (to, 42, key)));
        let bad: [&[u8]; 5] = [
            b"0\t\\N\t\\N\t\\N",
            b"1\t42\t1",
            b"x\t42\t1\t279",
            b"1\t42\t9\t279",
            b"1\t4\xff\t1\t279",
        ];
        for line in bad {
            let read = copied_page_item(line, to);
            assert!(
                matches!(read, Err(StoreError::Corrupt(_))),
                "{line:?}: {read:?}"
            );
        }
    }
}
