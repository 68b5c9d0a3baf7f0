//! The one-round-trip writes: a create planned without reading applied by
//! `association_create_presumed`, and the parameters of the archive
//! functions (migration 0006).
use sqlx::Row;

use super::*;
use crate::domain::plan::PresumedPlan;

impl PostgresStore {
    /// Applies a create planned without reading, in one call
    /// (`association_create_presumed`, which checks the plan's conditions
    /// under its locks); false when they do not hold and nothing was written.
    pub(super) async fn create_presumed(
        &self,
        ctx: &WriteContext<'_>,
        presumed: &PresumedPlan,
    ) -> StoreResult<bool> {
        let (pair_from, pair_to): (Vec<i64>, Vec<i64>) = presumed.pairs.iter().copied().unzip();
        let (label_cats, label_ids) = key_columns(&presumed.labels);
        let rows = row_columns(&presumed.plan.insert_rows);
        let deltas = &presumed.plan.count_deltas;
        let counts = count_columns(deltas.iter().map(|(k, _)| k));
        let amounts: Vec<i64> = deltas.iter().map(|(_, d)| *d).collect();
        let (from, to) = (ctx.from.to_string(), ctx.to.to_string());
        let (records, record_type, company_type, primary) = match &presumed.primaries {
            Some(p) => (
                p.record_ids.clone(),
                p.record_type.to_string(),
                p.company_type.to_string(),
                p.record_key,
            ),
            None => (
                Vec::new(),
                String::new(),
                String::new(),
                TypeKey::hubspot(0),
            ),
        };
        self.retry
            .run(is_retryable, || async {
                let applied = sqlx::query(
                    "SELECT association_create_presumed($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                         $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24,
                         $25, $26)",
                )
                .bind(ctx.portal_id)
                .bind(&from)
                .bind(&to)
                .bind(&pair_from)
                .bind(&pair_to)
                .bind(&label_cats)
                .bind(&label_ids)
                .bind(ctx.ceiling as i32)
                .bind(&records)
                .bind(&record_type)
                .bind(&company_type)
                .bind(primary.category.code())
                .bind(primary.type_id)
                .bind(&rows.from_types)
                .bind(&rows.from_ids)
                .bind(&rows.to_types)
                .bind(&rows.to_ids)
                .bind(&rows.categories)
                .bind(&rows.type_ids)
                .bind(&counts.types)
                .bind(&counts.ids)
                .bind(&counts.categories)
                .bind(&counts.type_ids)
                .bind(&amounts)
                .bind(ChangeKind::Created.code())
                .bind(now_us())
                .fetch_one(&mut *self.call_connection(ctx.portal_id).await?)
                .await?;
                Ok(applied.try_get(0)?)
            })
            .await
    }
}

/// The parameters ($1-$10) of the SQL functions `association_archive_rows`
/// and `association_archive`: portal, object types, pairs, all types, type
/// filters.
pub(super) struct ArchiveBinds {
    from_ids: Vec<i64>,
    to_ids: Vec<i64>,
    all: bool,
    forward: (Vec<i16>, Vec<i32>),
    inverse: (Vec<i16>, Vec<i32>),
}

impl ArchiveBinds {
    pub(super) fn new(pairs: &[(i64, i64)], filter: &TypeFilter) -> ArchiveBinds {
        let (from_ids, to_ids) = pairs.iter().copied().unzip();
        let (all, forward, inverse) = match filter {
            TypeFilter::All => (true, key_columns(&[]), key_columns(&[])),
            TypeFilter::Only { forward, inverse } => {
                (false, key_columns(forward), key_columns(inverse))
            }
        };
        ArchiveBinds {
            from_ids,
            to_ids,
            all,
            forward,
            inverse,
        }
    }

    pub(super) fn bind<'q>(
        &'q self,
        sql: &'q str,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(sql)
            .bind(portal)
            .bind(from.to_string())
            .bind(to.to_string())
            .bind(&self.from_ids)
            .bind(&self.to_ids)
            .bind(self.all)
            .bind(&self.forward.0)
            .bind(&self.forward.1)
            .bind(&self.inverse.0)
            .bind(&self.inverse.1)
    }
}
