//! The steps of the shared write flows in PostgreSQL's SQL: one open
//! transaction (`PgTx`) doing the writes' and the definitions' steps.
use super::*;

/// One open transaction, with the steps of the shared flows.
pub(super) type PgTx<'c> = crate::store::shared::Tx<'c, Postgres>;

#[async_trait]
impl WriteSteps for PgTx<'_> {
    async fn delete_types(
        &mut self,
        portal: i64,
        keys: &[TypeKey],
    ) -> StoreResult<Vec<DirectedRow>> {
        let (categories, type_ids) = key_columns(keys);
        let filter = "portal_id = $1 AND (category, type_id) IN (SELECT * FROM unnest($2::smallint[], $3::int[]))";
        // Deleting the definitions first waits for every writer holding the
        // type (`lock_types`) and keeps new ones out; then the type's
        // counters are locked in the global order, as writers lock them,
        // before any row changes.
        let statements = [
            format!("DELETE FROM association_definitions WHERE {filter}"),
            format!(
                "SELECT 1 FROM association_counts WHERE {filter} ORDER BY {COUNTER_ORDER} FOR UPDATE"
            ),
        ];
        for sql in &statements {
            sqlx::query(sql)
                .bind(portal)
                .bind(&categories)
                .bind(&type_ids)
                .execute(&mut *self.conn)
                .await?;
        }
        // The type's rows, found from its counters: every stored row is
        // counted under its record and type, and a record's rows are a
        // range of the key (associations has no index by type: migration
        // 0024).
        let removed = sqlx::query(&format!(
            "DELETE FROM associations a
             USING (SELECT object_type, object_id, category, type_id FROM association_counts
                    WHERE {filter} AND count > 0) c
             WHERE a.portal_id = $1 AND a.from_object_type = c.object_type
               AND a.from_object_id = c.object_id AND a.category = c.category
               AND a.type_id = c.type_id
             RETURNING a.from_object_type, a.from_object_id, a.to_object_type, a.to_object_id,
                       a.category, a.type_id"
        ))
        .bind(portal)
        .bind(&categories)
        .bind(&type_ids)
        .fetch_all(&mut *self.conn)
        .await?;
        for table in ["association_counts", "association_limits"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE {filter}"))
                .bind(portal)
                .bind(&categories)
                .bind(&type_ids)
                .execute(&mut *self.conn)
                .await?;
        }
        removed.iter().map(decode_row).collect()
    }

    async fn load_create_state(
        &mut self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(i64, i64)],
        lookup: Option<&PrimaryLookup>,
    ) -> StoreResult<CreateState> {
        let (from_ids, to_ids): (Vec<i64>, Vec<i64>) = pairs.iter().copied().unzip();
        let (record_type, record_ids, company_type, record_key) = match lookup {
            Some(l) => (
                l.record_type.to_string(),
                l.record_ids.clone(),
                l.company_type.to_string(),
                l.record_key,
            ),
            None => (
                String::new(),
                Vec::new(),
                String::new(),
                TypeKey::hubspot(0),
            ),
        };
        // Part 1: primaries (as `PRIMARIES`); 2: existing associations of
        // the pairs (a primary-key lookup per pair); 3: the pair's admin
        // limits.
        let rows = sqlx::query(&format!(
            "SELECT 1::smallint, p.*, 0::smallint, 0, 0 FROM ({PRIMARIES}) p
             UNION ALL
             SELECT 2::smallint, p.f, a.to_object_id, a.category, a.type_id, 0
             FROM unnest($9::bigint[], $10::bigint[]) AS p(f, t)
             CROSS JOIN LATERAL (
                 SELECT to_object_id, category, type_id FROM associations
                 WHERE portal_id = $1 AND from_object_type = $7 AND from_object_id = p.f
                   AND to_object_type = $8 AND to_object_id = p.t
                 OFFSET 0) a
             UNION ALL
             SELECT 3::smallint, 0, 0, category, type_id, max_to_object_ids FROM association_limits
             WHERE portal_id = $1 AND ((from_object_type = $7 AND to_object_type = $8)
                                    OR (from_object_type = $8 AND to_object_type = $7))",
        ))
        .bind(portal)
        .bind(record_type)
        .bind(&record_ids)
        .bind(company_type)
        .bind(record_key.category.code())
        .bind(record_key.type_id)
        .bind(from.to_string())
        .bind(to.to_string())
        .bind(&from_ids)
        .bind(&to_ids)
        .fetch_all(&mut *self.conn)
        .await?;
        let mut state = CreateState {
            primaries: HashMap::new(),
            edges: Vec::new(),
            user_limits: HashMap::new(),
        };
        for r in &rows {
            let (a, b): (i64, i64) = (r.try_get(1)?, r.try_get(2)?);
            match r.try_get::<i16, _>(0)? {
                1 => {
                    state.primaries.insert(a, b);
                }
                2 => state.edges.push(PairEdge {
                    from_id: a,
                    to_id: b,
                    key: decode_key(r.try_get::<i16, _>(3)?.into(), r.try_get(4)?)?,
                }),
                _ => {
                    let key = decode_key(r.try_get::<i16, _>(3)?.into(), r.try_get(4)?)?;
                    state
                        .user_limits
                        .insert(key, r.try_get::<i32, _>(5)? as u32);
                }
            }
        }
        Ok(state)
    }

    async fn apply_plan(&mut self, portal: i64, write: &PlannedWrite<'_>) -> StoreResult<()> {
        let (delete, insert) = (row_columns(write.delete), row_columns(write.insert));
        let counts = count_columns(write.deltas.iter().map(|(k, _)| k));
        let amounts: Vec<i64> = write.deltas.iter().map(|(_, d)| *d).collect();
        let changed: Vec<DirectedRow> = write.changes.iter().map(|(_, r)| *r).collect();
        let kinds: Vec<i16> = write.changes.iter().map(|(k, _)| k.code()).collect();
        let feed = row_columns(&changed);
        // One call (migration 0013): on Citus it runs where the portal is,
        // so its changes draw their ids there, as the one-call writes' do.
        sqlx::query(
            "SELECT association_apply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                 $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)",
        )
        .bind(portal)
        .bind(&delete.from_types)
        .bind(&delete.from_ids)
        .bind(&delete.to_types)
        .bind(&delete.to_ids)
        .bind(&delete.categories)
        .bind(&delete.type_ids)
        .bind(&insert.from_types)
        .bind(&insert.from_ids)
        .bind(&insert.to_types)
        .bind(&insert.to_ids)
        .bind(&insert.categories)
        .bind(&insert.type_ids)
        .bind(&counts.types)
        .bind(&counts.ids)
        .bind(&counts.categories)
        .bind(&counts.type_ids)
        .bind(&amounts)
        .bind(&kinds)
        .bind(&feed.from_types)
        .bind(&feed.from_ids)
        .bind(&feed.to_types)
        .bind(&feed.to_ids)
        .bind(&feed.categories)
        .bind(&feed.type_ids)
        .bind(now_us())
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn lock_types(
        &mut self,
        portal: i64,
        keys: &[TypeKey],
    ) -> StoreResult<BTreeSet<TypeKey>> {
        let (categories, type_ids) = key_columns(keys);
        // KEY SHARE conflicts with a label delete's DELETE, not with renames.
        let rows = sqlx::query(
            "SELECT category, type_id FROM association_definitions
             WHERE portal_id = $1 AND (category, type_id) IN (SELECT * FROM unnest($2::smallint[], $3::int[]))
             ORDER BY category, type_id FOR KEY SHARE",
        )
        .bind(portal)
        .bind(&categories)
        .bind(&type_ids)
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter()
            .map(|r| decode_key(r.try_get::<i16, _>(0)?.into(), r.try_get(1)?))
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
        let binds = ArchiveBinds::new(pairs, filter);
        let select = "SELECT from_object_type, from_object_id, to_object_type, to_object_id, category, type_id
             FROM association_archive_rows($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        let rows = binds
            .bind(select, portal, from, to)
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter().map(decode_row).collect()
    }

    async fn lock_counts(
        &mut self,
        portal: i64,
        keys: &[CountKey],
    ) -> StoreResult<HashMap<CountKey, i64>> {
        let c = count_columns(keys.iter());
        // Rows are locked in the order given (the flows give the global lock
        // order, `CountKey::lock_order`); the no-op update takes the row lock
        // and returns the committed value.
        let rows = sqlx::query(
            "INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
             SELECT $1, k.t, k.i, k.c, k.ty, 0
             FROM unnest($2::text[], $3::bigint[], $4::smallint[], $5::int[])
                  WITH ORDINALITY AS k(t, i, c, ty, n)
             ORDER BY k.n
             ON CONFLICT (portal_id, object_type, object_id, category, type_id)
             DO UPDATE SET count = association_counts.count
             RETURNING object_type, object_id, category, type_id, count",
        )
        .bind(portal)
        .bind(&c.types)
        .bind(&c.ids)
        .bind(&c.categories)
        .bind(&c.type_ids)
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter()
            .map(|row| {
                let key = CountKey {
                    object_type: decode_object_type(row.try_get::<&str, _>(0)?)?,
                    object_id: row.try_get(1)?,
                    key: decode_key(row.try_get::<i16, _>(2)?.into(), row.try_get(3)?)?,
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
        let rows = sqlx::query(PRIMARIES)
            .bind(portal)
            .bind(lookup.record_type.to_string())
            .bind(&lookup.record_ids)
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
        let mut c = (vec![], vec![], vec![], vec![]);
        for (ft, fi, tt, ti) in pairs {
            c.0.push(ft.to_string());
            c.1.push(*fi);
            c.2.push(tt.to_string());
            c.3.push(*ti);
        }
        let rows = sqlx::query(
            "SELECT a.from_object_type, a.from_object_id, a.to_object_type, a.to_object_id, a.category, a.type_id
             FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[]) AS p(ft, fi, tt, ti)
             CROSS JOIN LATERAL (
                 SELECT * FROM associations
                 WHERE portal_id = $1 AND from_object_type = p.ft AND from_object_id = p.fi
                   AND to_object_type = p.tt AND to_object_id = p.ti
                 OFFSET 0) a",
        )
        .bind(portal)
        .bind(&c.0)
        .bind(&c.1)
        .bind(&c.2)
        .bind(&c.3)
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter().map(decode_row).collect()
    }

    async fn lock_limits(&mut self, portal: i64) -> StoreResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
            .bind(LIMITS_LOCK_NAMESPACE)
            .bind(portal.to_string())
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn set_limits(
        &mut self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
        limits: &[(TypeKey, u32)],
    ) -> StoreResult<()> {
        let keys: Vec<TypeKey> = limits.iter().map(|(k, _)| *k).collect();
        let (categories, type_ids) = key_columns(&keys);
        let maxes: Vec<i32> = limits.iter().map(|(_, m)| *m as i32).collect();
        sqlx::query(
            "INSERT INTO association_limits
               (portal_id, category, type_id, from_object_type, to_object_type, max_to_object_ids)
             SELECT $1, l.c, l.ty, $2, $3, l.m FROM unnest($4::smallint[], $5::int[], $6::int[]) AS l(c, ty, m)
             ON CONFLICT (portal_id, category, type_id) DO UPDATE SET max_to_object_ids = EXCLUDED.max_to_object_ids",
        )
        .bind(portal)
        .bind(from.to_string())
        .bind(to.to_string())
        .bind(&categories)
        .bind(&type_ids)
        .bind(&maxes)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn record_admin_change(&mut self, change: &AdminChange) -> StoreResult<()> {
        record_admin_change(&mut *self.conn, change).await
    }
}

/// The primary companies of records `$3` (of type `$2`; rows to companies
/// of type `$4` of the primary type `$5`, `$6`) in portal `$1`. Each record's
/// rows to companies are read on the primary key and the type tested
/// outside the `OFFSET 0` fence: asked for the type inside, the planner
/// could filter every primary row of the portal per record through an
/// index by type (`associations_by_type`, dropped by migration 0024) where
/// statistics show few of them (a new portal, a large import), a cost
/// growing with each batch (migration 0023; tests/plans_at_scale.rs).
const PRIMARIES: &str = "SELECT r.id, a.to_object_id FROM unnest($3::bigint[]) AS r(id)
     CROSS JOIN LATERAL (
         SELECT to_object_id, category, type_id FROM associations
         WHERE portal_id = $1 AND from_object_type = $2 AND from_object_id = r.id
           AND to_object_type = $4
         OFFSET 0) a
     WHERE a.category = $5 AND a.type_id = $6";
