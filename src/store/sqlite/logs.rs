//! The change feed and the admin change log: numbered as they are
//! appended, under the write lock every SQLite writer holds.
use super::*;

/// Applies counter changes: increments upsert (a counter may be new),
/// decrements update (the CHECK on `count` sees the proposed insert row).
/// Appends changes to the portal's feed (the write lock is already held).
pub(super) async fn record_changes(
    conn: &mut SqliteConnection,
    portal: i64,
    changes: &[(ChangeKind, DirectedRow)],
) -> StoreResult<()> {
    let count = changes.len() as i64;
    let last: i64 = sqlx::query_scalar(
        "INSERT INTO association_feed_heads (portal_id, last_seq) VALUES (?1, ?2)
         ON CONFLICT (portal_id) DO UPDATE SET last_seq = last_seq + ?2
         RETURNING last_seq",
    )
    .bind(portal)
    .bind(count)
    .fetch_one(&mut *conn)
    .await?;
    let rows: Value = changes
        .iter()
        .map(|(kind, r)| {
            json!([
                kind.code(),
                r.from_type.to_string(),
                r.from_id,
                r.to_type.to_string(),
                r.to_id,
                r.key.category.code(),
                r.key.type_id
            ])
        })
        .collect();
    sqlx::query(
        "INSERT INTO association_changes (portal_id, seq, kind, from_object_type, from_object_id,
                                          to_object_type, to_object_id, category, type_id, changed_at_us)
         SELECT ?1, ?2 + j.key, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4,
                j.value ->> 5, j.value ->> 6, ?4
         FROM json_each(?3) j",
    )
    .bind(portal)
    .bind(last - count + 1)
    .bind(rows.to_string())
    .bind(now_us())
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends an admin change to its portal's log (the write lock is held).
pub(super) async fn record_admin_change(
    conn: &mut SqliteConnection,
    change: &AdminChange,
) -> StoreResult<()> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO admin_change_heads (portal_id, last_seq) VALUES (?1, 1)
         ON CONFLICT (portal_id) DO UPDATE SET last_seq = last_seq + 1
         RETURNING last_seq",
    )
    .bind(change.portal_id)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO admin_changes (portal_id, seq, change) VALUES (?1, ?2, ?3)")
        .bind(change.portal_id)
        .bind(seq)
        .bind(encode_admin_change(change)?)
        .execute(conn)
        .await?;
    Ok(())
}
