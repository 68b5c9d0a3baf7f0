//! The steps of the shared write flows in SQLite's SQL: one open write
//! transaction (`SqliteTx`) doing the writes' and the definitions' steps.
use super::*;

/// One open transaction, with the steps of the shared flows.
pub(super) type SqliteTx<'c> = crate::store::shared::Tx<'c, sqlx::Sqlite>;

#[async_trait]
impl WriteSteps for SqliteTx<'_> {
    async fn delete_types(
        &mut self,
        portal: i64,
        keys: &[TypeKey],
    ) -> StoreResult<Vec<DirectedRow>> {
        // BEGIN IMMEDIATE already excludes every other writer: no order to keep.
        let keys = keys_json(keys).to_string();
        let filter = "portal_id = $1 AND (category, type_id) IN (SELECT k.value ->> 0, k.value ->> 1 FROM json_each($2) k)";
        let removed = sqlx::query(&format!(
            "DELETE FROM associations WHERE {filter}
             RETURNING from_object_type, from_object_id, to_object_type, to_object_id, category, type_id"
        ))
        .bind(portal)
        .bind(&keys)
        .fetch_all(&mut *self.conn)
        .await?;
        for table in [
            "association_counts",
            "association_limits",
            "association_definitions",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE {filter}"))
                .bind(portal)
                .bind(&keys)
                .execute(&mut *self.conn)
                .await?;
        }
        removed.iter().map(decode_row).collect()
    }

    async fn lock_types(
        &mut self,
        portal: i64,
        keys: &[TypeKey],
    ) -> StoreResult<BTreeSet<TypeKey>> {
        // BEGIN IMMEDIATE already excludes every other writer.
        let rows = sqlx::query(
            "SELECT d.category, d.type_id FROM json_each(?2) k CROSS JOIN association_definitions d
               ON d.portal_id = ?1 AND d.category = k.value ->> 0 AND d.type_id = k.value ->> 1",
        )
        .bind(portal)
        .bind(keys_json(keys).to_string())
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter()
            .map(|r| decode_key(r.try_get(0)?, r.try_get(1)?))
            .collect()
    }

    async fn find_rows(
        &mut self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
        filter: &TypeFilter,
    ) -> StoreResult<Vec<DirectedRow>> {
        let (all, forward, inverse) = match filter {
            TypeFilter::All => (true, keys_json(&[]), keys_json(&[])),
            TypeFilter::Only { forward, inverse } => {
                (false, keys_json(forward), keys_json(inverse))
            }
        };
        let sql = format!(
            "SELECT DISTINCT a.from_object_type, a.from_object_id, a.to_object_type, a.to_object_id, a.category, a.type_id {ARCHIVE_MATCH}"
        );
        let rows = sqlx::query(&sql)
            .bind(portal)
            .bind(from.to_string())
            .bind(to.to_string())
            .bind(json!(pairs).to_string())
            .bind(all)
            .bind(forward.to_string())
            .bind(inverse.to_string())
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter().map(decode_row).collect()
    }

    async fn lock_counts(
        &mut self,
        portal: i64,
        keys: &[CountKey],
    ) -> StoreResult<HashMap<CountKey, i64>> {
        // BEGIN IMMEDIATE already holds the write lock; make sure rows exist.
        let keys = count_keys_json(keys.iter()).to_string();
        sqlx::query(
            "INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
             SELECT ?1, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, 0 FROM json_each(?2) j WHERE true
             ON CONFLICT DO NOTHING",
        )
        .bind(portal)
        .bind(&keys)
        .execute(&mut *self.conn)
        .await?;
        let rows = sqlx::query(
            "SELECT c.object_type, c.object_id, c.category, c.type_id, c.count
             FROM json_each(?2) j CROSS JOIN association_counts c
               ON c.portal_id = ?1 AND c.object_type = j.value ->> 0 AND c.object_id = j.value ->> 1
              AND c.category = j.value ->> 2 AND c.type_id = j.value ->> 3",
        )
        .bind(portal)
        .bind(&keys)
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter()
            .map(|row| {
                let key = CountKey {
                    object_type: decode_object_type(row.try_get::<&str, _>(0)?)?,
                    object_id: row.try_get(1)?,
                    key: decode_key(row.try_get(2)?, row.try_get(3)?)?,
                };
                Ok((key, row.try_get::<i64, _>(4)?))
            })
            .collect()
    }

    async fn load_primaries(
        &mut self,
        portal: i64,
        lookup: &PrimaryLookup,
    ) -> StoreResult<HashMap<i64, i64>> {
        let rows = sqlx::query(
            "SELECT a.from_object_id, a.to_object_id FROM json_each(?3) j CROSS JOIN associations a
               ON a.portal_id = ?1 AND a.from_object_type = ?2 AND a.from_object_id = j.value
              AND a.to_object_type = ?4 AND a.category = ?5 AND a.type_id = ?6",
        )
        .bind(portal)
        .bind(lookup.record_type.to_string())
        .bind(json!(lookup.record_ids).to_string())
        .bind(lookup.company_type.to_string())
        .bind(lookup.record_key.category.code())
        .bind(lookup.record_key.type_id)
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn load_pair_rows(
        &mut self,
        portal: i64,
        pairs: &[RecordPair],
    ) -> StoreResult<Vec<DirectedRow>> {
        let pairs: Value = pairs
            .iter()
            .map(|(ft, fi, tt, ti)| json!([ft.to_string(), fi, tt.to_string(), ti]))
            .collect();
        let rows = sqlx::query(
            "SELECT a.from_object_type, a.from_object_id, a.to_object_type, a.to_object_id, a.category, a.type_id
             FROM json_each(?2) j CROSS JOIN associations a
               ON a.portal_id = ?1 AND a.from_object_type = j.value ->> 0 AND a.from_object_id = j.value ->> 1
              AND a.to_object_type = j.value ->> 2 AND a.to_object_id = j.value ->> 3",
        )
        .bind(portal)
        .bind(pairs.to_string())
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter().map(decode_row).collect()
    }

    async fn load_create_state(
        &mut self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
        lookup: Option<&PrimaryLookup>,
    ) -> StoreResult<CreateState> {
        let primaries = match lookup {
            Some(lookup) => self.load_primaries(portal, lookup).await?,
            None => HashMap::new(),
        };
        let edges = self.load_edges(portal, from, to, pairs).await?;
        let user_limits = self.load_user_limits(portal, from, to).await?;
        Ok(CreateState {
            primaries,
            edges,
            user_limits,
        })
    }

    async fn apply_plan(&mut self, portal: i64, write: &PlannedWrite<'_>) -> StoreResult<()> {
        if !write.delete.is_empty() {
            self.delete_rows(portal, write.delete).await?;
        }
        if !write.insert.is_empty() {
            self.insert_rows(portal, write.insert).await?;
        }
        if !write.deltas.is_empty() {
            add_to_counts(&mut *self.conn, portal, write.deltas).await?;
        }
        if !write.changes.is_empty() {
            record_changes(&mut *self.conn, portal, write.changes).await?;
        }
        Ok(())
    }

    async fn lock_limits(&mut self, _portal: i64) -> StoreResult<()> {
        // BEGIN IMMEDIATE already excludes every other writer.
        Ok(())
    }

    async fn set_limits(
        &mut self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        limits: &[(TypeKey, u32)],
    ) -> StoreResult<()> {
        for (key, max) in limits {
            sqlx::query(
                "INSERT INTO association_limits
                   (portal_id, category, type_id, from_object_type, to_object_type, max_to_object_ids)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (portal_id, category, type_id) DO UPDATE SET max_to_object_ids = excluded.max_to_object_ids",
            )
            .bind(portal)
            .bind(key.category.code())
            .bind(key.type_id)
            .bind(from.to_string())
            .bind(to.to_string())
            .bind(*max as i32)
            .execute(&mut *self.conn)
            .await?;
        }
        Ok(())
    }

    async fn record_admin_change(&mut self, change: &AdminChange) -> StoreResult<()> {
        record_admin_change(&mut *self.conn, change).await
    }
}

/// The single statements `load_create_state` and `apply_plan` are made of.
impl SqliteTx<'_> {
    async fn load_edges(
        &mut self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
    ) -> StoreResult<Vec<PairEdge>> {
        let rows = sqlx::query(
            "SELECT a.from_object_id, a.to_object_id, a.category, a.type_id FROM json_each(?4) j CROSS JOIN associations a
               ON a.portal_id = ?1 AND a.from_object_type = ?2 AND a.from_object_id = j.value ->> 0
              AND a.to_object_type = ?3 AND a.to_object_id = j.value ->> 1",
        )
        .bind(portal)
        .bind(from.to_string())
        .bind(to.to_string())
        .bind(json!(pairs).to_string())
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PairEdge {
                    from_id: r.try_get(0)?,
                    to_id: r.try_get(1)?,
                    key: decode_key(r.try_get(2)?, r.try_get(3)?)?,
                })
            })
            .collect()
    }

    async fn delete_rows(&mut self, portal: i64, rows: &[DirectedRow]) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM associations WHERE portal_id = ?1 AND (from_object_type, from_object_id, to_object_type,
               to_object_id, category, type_id) IN (SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2,
               j.value ->> 3, j.value ->> 4, j.value ->> 5 FROM json_each(?2) j)",
        )
        .bind(portal)
        .bind(rows_json(rows).to_string())
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn insert_rows(&mut self, portal: i64, rows: &[DirectedRow]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
             SELECT ?1, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, j.value ->> 5
             FROM json_each(?2) j WHERE true
             ON CONFLICT DO NOTHING",
        )
        .bind(portal)
        .bind(rows_json(rows).to_string())
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
}

pub(super) async fn add_to_counts(
    conn: &mut SqliteConnection,
    portal: i64,
    deltas: &[(CountKey, i64)],
) -> StoreResult<()> {
    let (increments, decrements): (Vec<_>, Vec<_>) = deltas.iter().partition(|(_, d)| *d > 0);
    for (batch, sql) in [
        (
            increments,
            "INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
             SELECT ?1, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4
             FROM json_each(?2) j WHERE true
             ON CONFLICT (portal_id, object_type, object_id, category, type_id)
             DO UPDATE SET count = association_counts.count + excluded.count",
        ),
        (
            decrements,
            "UPDATE association_counts AS a SET count = a.count + (j.value ->> 4)
             FROM json_each(?2) j
             WHERE a.portal_id = ?1 AND a.object_type = j.value ->> 0 AND a.object_id = j.value ->> 1
               AND a.category = j.value ->> 2 AND a.type_id = j.value ->> 3",
        ),
    ] {
        if batch.is_empty() {
            continue;
        }
        let rows: Value = batch
            .iter()
            .map(|(k, d)| json!([k.object_type.to_string(), k.object_id, k.key.category.code(), k.key.type_id, d]))
            .collect();
        sqlx::query(sql).bind(portal).bind(rows.to_string()).execute(&mut *conn).await?;
    }
    Ok(())
}
