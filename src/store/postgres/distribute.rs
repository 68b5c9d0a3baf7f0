//! Distribution on Citus: on a database with the `citus` extension,
//! `migrate` distributes every table by `portal_id`, all colocated.
//! Idempotent: what is distributed already is left as it is. The write
//! functions are distributed by their portal, so a create or an archive is
//! one call run on the worker that holds the portal; the full flow's write
//! (`association_apply`) is delegated inside its transaction too
//! (`force_delegation`), so every change of a portal draws its id on the
//! node that holds it (migration 0013 keeps the ids in commit order across
//! shard moves).
use sqlx::PgPool;

use crate::store::{StoreError, StoreResult};

/// Every table of the schema; all are keyed by portal. The first is the
/// colocation group the others join.
pub const TABLES: [&str; 15] = [
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
    "custom_object_names",
    "daily_call_counts",
];

/// Functions the write functions call: copied to every node.
pub const HELPERS: [&str; 3] = [
    "association_type_order",
    "association_archive_rows",
    "association_change_order",
];

/// The write functions, each run where its first argument's portal is;
/// with `true`, also when called inside a transaction.
pub const WRITERS: [(&str, bool); 3] = [
    ("association_create_presumed", false),
    ("association_archive", false),
    ("association_apply", true),
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
    if !is_citus(pool).await? {
        return Ok(Vec::new());
    }
    let mut done = distribute_tables(pool).await?;
    done.extend(distribute_functions(pool).await?);
    Ok(done)
}

/// Distributes the tables not distributed yet, colocated by portal.
async fn distribute_tables(pool: &PgPool) -> StoreResult<Vec<String>> {
    let mut done = Vec::new();
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

/// Copies the helpers to every node and distributes the write functions by
/// their portal, those not done yet.
async fn distribute_functions(pool: &PgPool) -> StoreResult<Vec<String>> {
    let mut done = Vec::new();
    // Functions: (name, signature, whether distributed, by an argument).
    let functions: Vec<(String, String, bool, bool)> = sqlx::query_as(
        "SELECT p.proname::text, p.oid::regprocedure::text, o.objid IS NOT NULL,
                o.distribution_argument_index IS NOT NULL
         FROM pg_proc p
         LEFT JOIN pg_catalog.pg_dist_object o
           ON o.classid = 'pg_proc'::regclass AND o.objid = p.oid
         WHERE p.proname = ANY($1) AND pg_function_is_visible(p.oid)",
    )
    .bind(
        HELPERS
            .iter()
            .chain(WRITERS.iter().map(|(name, _)| name))
            .copied()
            .collect::<Vec<_>>(),
    )
    .fetch_all(pool)
    .await?;
    let signature = |name: &str| {
        functions
            .iter()
            .find(|f| f.0 == name)
            .ok_or_else(|| StoreError::Corrupt(format!("the function {name} is missing")))
    };
    for name in HELPERS {
        let (_, sig, distributed, _) = signature(name)?;
        if *distributed {
            continue;
        }
        sqlx::query("SELECT create_distributed_function($1::regprocedure)")
            .bind(sig)
            .execute(pool)
            .await?;
        done.push(format!("copied function {name} to every node (Citus)"));
    }
    for (name, in_transactions) in WRITERS {
        let (_, sig, _, by_portal) = signature(name)?;
        if *by_portal {
            continue;
        }
        sqlx::query(
            "SELECT create_distributed_function($1::regprocedure, '$1', colocate_with => $2,
                                                force_delegation => $3)",
        )
        .bind(sig)
        .bind(TABLES[0])
        .bind(in_transactions)
        .execute(pool)
        .await?;
        done.push(format!(
            "distributed function {name} by its portal (Citus, run on the node that holds it{})",
            if in_transactions {
                ", inside transactions too"
            } else {
                ""
            }
        ));
    }
    Ok(done)
}
