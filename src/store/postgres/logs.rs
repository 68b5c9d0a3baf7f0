//! The logs numbered on read: the change feed and the admin change log
//! (the hooks outbox). Writers append unnumbered; readers number.
use super::*;

/// A log numbered on read: the change feed or the admin change log.
#[derive(Clone, Copy)]
pub(super) struct NumberedLog {
    table: &'static str,
    heads: &'static str,
    /// The order committed entries are numbered in (columns ending in id).
    order: &'static str,
}

/// Changes are numbered by the order their writers logged under their
/// locks (migration 0013: ids come from several nodes on Citus).
pub(super) const CHANGE_FEED: NumberedLog = NumberedLog {
    table: "association_changes",
    heads: "association_feed_heads",
    order: "ord, id",
};

/// Admin changes are written from one node, so their ids are in order.
pub(super) const ADMIN_LOG: NumberedLog = NumberedLog {
    table: "admin_changes",
    heads: "admin_change_heads",
    order: "id",
};

/// Numbers a portal's committed log entries, gap-free, in the log's order,
/// after the last number given. Readers call it; writers never wait for it.
/// A statement sees only committed entries, so numbering what it sees never
/// leaves a gap that a transaction committing later could fill. Sequencers
/// of one portal take turns on its head row. (A transaction-id horizon,
/// `pg_snapshot_xmin`, is not needed: it is cluster-wide, so any long
/// transaction, even in another database, would stall the log.)
pub(super) async fn sequence_log(
    pool: &PgPool,
    retry: RetryPolicy,
    log: NumberedLog,
    portal: i64,
) -> StoreResult<()> {
    let NumberedLog {
        table,
        heads,
        order,
    } = log;
    let unnumbered = format!("FROM {table} WHERE portal_id = $1 AND seq IS NULL");
    let pending: bool = sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 {unnumbered})"))
        .bind(portal)
        .fetch_one(pool)
        .await?;
    if !pending {
        return Ok(());
    }
    transaction!(
        retry,
        crate::store::begin(pool, None),
        is_retryable,
        |conn| {
            let last: i64 = sqlx::query_scalar(&format!(
                "INSERT INTO {heads} (portal_id, last_seq) VALUES ($1, 0)
             ON CONFLICT (portal_id) DO UPDATE SET last_seq = {heads}.last_seq
             RETURNING last_seq"
            ))
            .bind(portal)
            .fetch_one(&mut *conn)
            .await?;
            // A new statement: its snapshot sees what the previous holder of the
            // head row numbered.
            let numbered: Option<i64> = sqlx::query_scalar(&format!(
                "WITH pending AS (SELECT {order} {unnumbered} ORDER BY {order} LIMIT 100000),
                  numbered AS (SELECT id, $2 + row_number() OVER (ORDER BY {order}) AS seq
                               FROM pending),
                  done AS (UPDATE {table} c SET seq = n.seq FROM numbered n
                           WHERE c.portal_id = $1 AND c.id = n.id RETURNING c.seq)
             SELECT max(seq) FROM done"
            ))
            .bind(portal)
            .bind(last)
            .fetch_one(&mut *conn)
            .await?;
            if let Some(numbered) = numbered {
                sqlx::query(&format!(
                    "UPDATE {heads} SET last_seq = $2 WHERE portal_id = $1"
                ))
                .bind(portal)
                .bind(numbered)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }
    )
}

/// Numbers the committed entries of every portal (or only `portal`) that has some.
pub(super) async fn sequence_portals(
    pool: &PgPool,
    retry: RetryPolicy,
    log: NumberedLog,
    portal: Option<i64>,
) -> StoreResult<()> {
    let portals: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT DISTINCT portal_id FROM {} WHERE seq IS NULL AND ($1::bigint IS NULL OR portal_id = $1)",
        log.table
    ))
    .bind(portal)
    .fetch_all(pool)
    .await?;
    for portal in portals {
        sequence_log(pool, retry, log, portal).await?;
    }
    Ok(())
}

/// Appends an admin change to its portal's log, unnumbered (see `sequence_log`).
pub(super) async fn record_admin_change(
    conn: &mut PgConnection,
    change: &AdminChange,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO admin_changes (portal_id, change) VALUES ($1, $2)")
        .bind(change.portal_id)
        .bind(encode_admin_change(change)?)
        .execute(conn)
        .await?;
    Ok(())
}
