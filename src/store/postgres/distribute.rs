//! Distribution on Citus: on a database with the `citus` extension,
//! `migrate` distributes every table by `portal_id`, all colocated.
//! Idempotent: what is distributed already is left as it is. The one-call
//! write functions stay on the coordinator, so that every change's `id`
//! (the order the feed numbers committed changes in) comes from one
//! sequence: a function delegated to a worker would draw from that
//! worker's range while the full flow draws from the coordinator's.
use sqlx::PgPool;

use crate::store::StoreResult;

/// Every table of the schema; all are keyed by portal. The first is the
/// colocation group the others join.
pub const TABLES: [&str; 13] = [
    "portal_type_ids",
    "association_definitions",
    "associations",
    "association_counts",
    "association_limits",
    "association_feed_heads",
    "association_changes",
    "admin_change_heads",
    "admin_changes",
    "admin_hook_deliveries",
    "admin_audit_events",
    "admin_hook_leases",
    "merged_records",
];

/// Whether the database has the `citus` extension.
async fn is_citus(pool: &PgPool) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
            .fetch_one(pool)
            .await?,
    )
}

/// Distributes what is not distributed yet (nothing without Citus); says
/// what it did, one line a step.
pub async fn distribute(pool: &PgPool) -> StoreResult<Vec<String>> {
    let mut done = Vec::new();
    if !is_citus(pool).await? {
        return Ok(done);
    }
    let distributed: Vec<String> =
        sqlx::query_scalar("SELECT logicalrelid::text FROM pg_dist_partition")
            .fetch_all(pool)
            .await?;
    for table in TABLES {
        if distributed.iter().any(|d| d == table) {
            continue;
        }
        let colocate = if table == TABLES[0] {
            "default"
        } else {
            TABLES[0]
        };
        sqlx::query("SELECT create_distributed_table($1, 'portal_id', colocate_with => $2)")
            .bind(table)
            .bind(colocate)
            .execute(pool)
            .await?;
        // Rows the table held are copied to its shards; the coordinator's
        // local copy goes.
        sqlx::query("SELECT truncate_local_data_after_distributing_table($1)")
            .bind(table)
            .execute(pool)
            .await?;
        done.push(format!(
            "distributed table {table} by portal_id (Citus, colocated with {})",
            TABLES[0]
        ));
    }
    Ok(done)
}
