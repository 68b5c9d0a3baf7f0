//! The store checker's queries, one text for both backends: each finds the
//! violations of an invariant (`domain::verify::Check`) and describes each in
//! words, so only the first few travel in full; the admin log and the stored
//! limits and labels are read for the domain's replay. Run inside one
//! read-only snapshot, so a live store is judged at one instant.
use std::collections::BTreeMap;

use sqlx::Row as _;
use tokio_stream::StreamExt;

use crate::domain::builtin::every_builtin_definition;
use crate::domain::verify::{check_admin_log, Check, CheckReport, ConfigItem, ConfigKey};
use crate::domain::{Category, TypeRole};
use crate::store::{decode_admin_change, decode_key, StoreError, StoreResult};

/// How the backends differ in these queries.
pub struct Dialect {
    /// Orders one key's changes newest first.
    pub change_newest_first: &'static str,
    /// Orders one portal's admin changes oldest first.
    pub admin_order: &'static str,
}

/// The HubSpot-defined types as a `known` CTE: (from, to, type id, inverse
/// id, 1 when it is a primary type). Compiled-in constants, not input.
fn known_types() -> String {
    let rows: Vec<String> = every_builtin_definition()
        .iter()
        .map(|d| {
            format!(
                "('{}', '{}', {}, {}, {})",
                d.from,
                d.to,
                d.key.type_id,
                d.inverse.type_id,
                i32::from(d.role == TypeRole::Primary)
            )
        })
        .collect();
    format!(
        "known (from_t, to_t, type_id, inverse_id, is_primary) AS (VALUES {})",
        rows.join(", ")
    )
}

/// The row a statement's alias `x` names, in words.
fn row_words(x: &str) -> String {
    format!(
        "'portal ' || {x}.portal_id || ': ' || {x}.from_object_type || ' ' || {x}.from_object_id \
         || ' -> ' || {x}.to_object_type || ' ' || {x}.to_object_id \
         || ' of type ' || {x}.category || '/' || {x}.type_id"
    )
}

/// The same key in aliases `a` and `b`.
const SAME_ROW: &str = "a.portal_id = b.portal_id AND a.from_object_type = b.from_object_type \
    AND a.from_object_id = b.from_object_id AND a.to_object_type = b.to_object_type \
    AND a.to_object_id = b.to_object_id AND a.category = b.category AND a.type_id = b.type_id";

/// Statements answering (check name, violation in words).
// Over 80 lines because it is a list, one SQL statement per check.
fn violation_statements(dialect: &Dialect) -> Vec<String> {
    let known = known_types();
    let hubspot = Category::HubspotDefined.code();
    let typed = format!(
        "typed AS (
            SELECT a.portal_id, a.from_object_type, a.from_object_id, a.to_object_type, a.to_object_id,
                   a.category, a.type_id, COALESCE(k.inverse_id, d.inverse_type_id) AS inverse_id
            FROM associations a
            LEFT JOIN known k ON a.category = {hubspot} AND k.from_t = a.from_object_type
                 AND k.to_t = a.to_object_type AND k.type_id = a.type_id
            LEFT JOIN association_definitions d ON d.portal_id = a.portal_id AND d.category = a.category
                 AND d.type_id = a.type_id AND d.from_object_type = a.from_object_type
                 AND d.to_object_type = a.to_object_type)"
    );
    let latest = format!(
        "latest AS (
            SELECT portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id, kind
            FROM (SELECT portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id, kind,
                         ROW_NUMBER() OVER (PARTITION BY portal_id, from_object_type, from_object_id, to_object_type,
                                                         to_object_id, category, type_id
                                            ORDER BY {}) AS newest
                  FROM association_changes WHERE kind IN (1, 2)) ranked
            WHERE newest = 1)",
        dialect.change_newest_first
    );
    let t = row_words("t");
    let a = row_words("a");
    let l = row_words("b");
    vec![
        format!(
            "WITH {known}, {typed}
             SELECT CASE WHEN t.inverse_id IS NULL THEN 'known-types' ELSE 'inverses' END,
                    {t} || CASE WHEN t.inverse_id IS NULL THEN ', a type that does not exist'
                           ELSE ' lacks its inverse row (type ' || t.category || '/' || t.inverse_id || ')' END
             FROM typed t
             WHERE t.inverse_id IS NULL OR NOT EXISTS (
                 SELECT 1 FROM associations i
                 WHERE i.portal_id = t.portal_id AND i.from_object_type = t.to_object_type
                   AND i.from_object_id = t.to_object_id AND i.to_object_type = t.from_object_type
                   AND i.to_object_id = t.from_object_id AND i.category = t.category
                   AND i.type_id = t.inverse_id)"
        ),
        format!(
            "WITH {known}
             SELECT 'known-types', 'portal ' || l.portal_id || ': an admin limit of type ' || l.category || '/'
                    || l.type_id || ' (' || l.from_object_type || ' -> ' || l.to_object_type
                    || '), a type that does not exist'
             FROM association_limits l
             LEFT JOIN known k ON l.category = {hubspot} AND k.from_t = l.from_object_type
                  AND k.to_t = l.to_object_type AND k.type_id = l.type_id
             LEFT JOIN association_definitions d ON d.portal_id = l.portal_id AND d.category = l.category
                  AND d.type_id = l.type_id AND d.from_object_type = l.from_object_type
                  AND d.to_object_type = l.to_object_type
             WHERE k.type_id IS NULL AND d.type_id IS NULL"
        ),
        "WITH actual AS (
             SELECT portal_id, from_object_type AS object_type, from_object_id AS object_id, category, type_id,
                    count(*) AS n
             FROM associations GROUP BY portal_id, from_object_type, from_object_id, category, type_id)
         SELECT 'counters', 'portal ' || a.portal_id || ': ' || a.object_type || ' ' || a.object_id || ' holds '
                || a.n || ' of type ' || a.category || '/' || a.type_id || ', its counter says '
                || COALESCE(c.count, 0)
         FROM actual a
         LEFT JOIN association_counts c ON c.portal_id = a.portal_id AND c.object_type = a.object_type
              AND c.object_id = a.object_id AND c.category = a.category AND c.type_id = a.type_id
         WHERE c.count IS NULL OR c.count <> a.n"
            .to_string(),
        "SELECT 'counters', 'portal ' || c.portal_id || ': ' || c.object_type || ' ' || c.object_id
                || ' holds none of type ' || c.category || '/' || c.type_id || ', its counter says ' || c.count
         FROM association_counts c
         WHERE c.count <> 0 AND NOT EXISTS (
             SELECT 1 FROM associations a
             WHERE a.portal_id = c.portal_id AND a.from_object_type = c.object_type
               AND a.from_object_id = c.object_id AND a.category = c.category AND a.type_id = c.type_id)"
            .to_string(),
        format!(
            "WITH {known}
             SELECT 'primaries', 'portal ' || a.portal_id || ': ' || a.from_object_type || ' ' || a.from_object_id
                    || ' holds ' || count(*) || ' primary associations to ' || a.to_object_type
             FROM associations a
             JOIN known k ON k.is_primary = 1 AND a.category = {hubspot} AND k.from_t = a.from_object_type
                  AND k.to_t = a.to_object_type AND k.type_id = a.type_id
             GROUP BY a.portal_id, a.from_object_type, a.from_object_id, a.to_object_type
             HAVING count(*) > 1"
        ),
        "SELECT 'feed-numbering', 'portal ' || h.portal_id || ': the feed head is ' || h.last_seq
                || ' and changes through ' || h.pruned_through || ' were pruned, but '
                || COALESCE(c.n, 0) || ' numbered changes are stored, from ' || COALESCE(c.lo, 0)
                || ' to ' || COALESCE(c.hi, 0)
         FROM association_feed_heads h
         LEFT JOIN (SELECT portal_id, count(*) AS n, min(seq) AS lo, max(seq) AS hi
                    FROM association_changes WHERE seq IS NOT NULL GROUP BY portal_id) c
              ON c.portal_id = h.portal_id
         WHERE COALESCE(c.n, 0) <> h.last_seq - h.pruned_through
            OR (c.n > 0 AND (c.lo <> h.pruned_through + 1 OR c.hi <> h.last_seq))"
            .to_string(),
        "SELECT 'feed-numbering', 'portal ' || c.portal_id || ': ' || count(*)
                || ' numbered changes are stored, but the portal has no feed head'
         FROM association_changes c
         WHERE c.seq IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM association_feed_heads h WHERE h.portal_id = c.portal_id)
         GROUP BY c.portal_id"
            .to_string(),
        format!(
            "WITH {latest}
             SELECT 'feed-matches-rows', {a} || CASE WHEN b.kind IS NULL
                        THEN ' exists, but the feed (never pruned) has no change for it'
                        ELSE ' exists, but its last change in the feed archived it' END
             FROM associations a
             LEFT JOIN latest b ON {SAME_ROW}
             LEFT JOIN association_feed_heads h ON h.portal_id = a.portal_id
             WHERE (b.kind IS NULL AND COALESCE(h.pruned_through, 0) = 0) OR b.kind = 2"
        ),
        format!(
            "WITH {latest}
             SELECT 'feed-matches-rows', {l} || ' does not exist, but its last change in the feed created it'
             FROM latest b
             WHERE b.kind = 1 AND NOT EXISTS (SELECT 1 FROM associations a WHERE {SAME_ROW})"
        ),
        "SELECT 'outbox-numbering', 'portal ' || c.portal_id || ': admin changes ' || c.lo || ' to ' || c.hi
                || ' are stored, ' || c.n || ' of them, under the head ' || COALESCE(h.last_seq, 0)
         FROM (SELECT portal_id, count(*) AS n, min(seq) AS lo, max(seq) AS hi
               FROM admin_changes WHERE seq IS NOT NULL GROUP BY portal_id) c
         LEFT JOIN admin_change_heads h ON h.portal_id = c.portal_id
         WHERE c.n <> c.hi - c.lo + 1 OR h.last_seq IS NULL OR c.hi > h.last_seq"
            .to_string(),
        "SELECT 'outbox-numbering', 'portal ' || d.portal_id || ': plugin ' || d.plugin
                || ' acknowledged admin change ' || d.delivered_seq || ', past the head '
                || COALESCE(h.last_seq, 0)
         FROM admin_hook_deliveries d
         LEFT JOIN admin_change_heads h ON h.portal_id = d.portal_id
         WHERE d.delivered_seq > COALESCE(h.last_seq, 0)"
            .to_string(),
        "SELECT 'outbox-numbering', 'portal ' || e.portal_id || ': audit event ' || e.seq
                || ' is past the head ' || COALESCE(h.last_seq, 0)
         FROM admin_audit_events e
         LEFT JOIN admin_change_heads h ON h.portal_id = e.portal_id
         WHERE e.seq > COALESCE(h.last_seq, 0)"
            .to_string(),
    ]
}

/// How many rows each check's subject has: associations, non-zero
/// counters, feed changes, admin changes.
const SUBJECT_COUNTS: &str = "SELECT (SELECT count(*) FROM associations),
    (SELECT count(*) FROM association_counts WHERE count <> 0),
    (SELECT count(*) FROM association_changes), (SELECT count(*) FROM admin_changes)";

const STORED_LIMITS: &str = "SELECT portal_id, CAST(category AS BIGINT), CAST(type_id AS BIGINT),
    CAST(max_to_object_ids AS BIGINT) FROM association_limits";

const STORED_LABELS: &str =
    "SELECT portal_id, CAST(category AS BIGINT), CAST(type_id AS BIGINT), label
    FROM association_definitions";

/// Every statement the checker runs (for the tests that plan them).
pub fn statements_for(change_newest_first: &'static str, admin_order: &'static str) -> Vec<String> {
    let dialect = Dialect {
        change_newest_first,
        admin_order,
    };
    let mut all = violation_statements(&dialect);
    all.extend([
        SUBJECT_COUNTS.to_string(),
        STORED_LIMITS.to_string(),
        STORED_LABELS.to_string(),
        admin_log_statement(&dialect),
    ]);
    all
}

fn admin_log_statement(dialect: &Dialect) -> String {
    format!(
        "SELECT portal_id, COALESCE(seq, 0), change FROM admin_changes ORDER BY portal_id, {}",
        dialect.admin_order
    )
}

/// Runs every check on `conn`, inside the caller's read-only transaction.
// Over 80 lines because its bounds over the driver take nine, and a part
// split off would repeat them.
pub(crate) async fn run<DB>(
    conn: &mut DB::Connection,
    dialect: &Dialect,
) -> StoreResult<Vec<CheckReport>>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    String: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    Option<String>: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let counts = sqlx::query::<DB>(SUBJECT_COUNTS)
        .fetch_one(&mut *conn)
        .await?;
    let count = |i: usize| -> StoreResult<u64> { Ok(counts.try_get::<i64, _>(i)? as u64) };
    let (rows, counters, changes, admin) = (count(0)?, count(1)?, count(2)?, count(3)?);
    let mut reports: BTreeMap<Check, CheckReport> = Check::ALL
        .into_iter()
        .filter(|c| *c != Check::OutboxMatchesConfig)
        .map(|check| {
            let checked = match check.subject() {
                "counters" => counters,
                "feed changes" => changes,
                "admin changes" => admin,
                _ => rows,
            };
            (check, CheckReport::new(check, checked))
        })
        .collect();
    for statement in violation_statements(dialect) {
        let mut found = sqlx::query::<DB>(&statement).fetch(&mut *conn);
        while let Some(row) = found.next().await {
            let row = row?;
            let name: String = row.try_get(0)?;
            let check = Check::parse(&name).ok_or_else(|| {
                StoreError::Corrupt(format!("the checker named an unknown check {name:?}"))
            })?;
            let what: String = row.try_get(1)?;
            if let Some(report) = reports.get_mut(&check) {
                report.violation(what);
            }
        }
    }

    let mut stored: BTreeMap<ConfigKey, ConfigItem> = BTreeMap::new();
    let limits = sqlx::query::<DB>(STORED_LIMITS)
        .fetch_all(&mut *conn)
        .await?;
    for row in limits {
        let key = decode_key(row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)? as i32)?;
        let max = row.try_get::<i64, _>(3)? as u32;
        stored.insert(
            (row.try_get::<i64, _>(0)?, key, true),
            ConfigItem::Limit(max),
        );
    }
    let labels = sqlx::query::<DB>(STORED_LABELS)
        .fetch_all(&mut *conn)
        .await?;
    for row in labels {
        let key = decode_key(row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)? as i32)?;
        let label: Option<String> = row.try_get(3)?;
        stored.insert(
            (row.try_get::<i64, _>(0)?, key, false),
            ConfigItem::Label(label),
        );
    }
    let mut log = Vec::new();
    let statement = admin_log_statement(dialect);
    let mut changes = sqlx::query::<DB>(&statement).fetch(&mut *conn);
    while let Some(row) = changes.next().await {
        let row = row?;
        let (portal, seq): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        match decode_admin_change(&row.try_get::<String, _>(2)?) {
            Ok(change) => log.push(change),
            Err(err) => {
                if let Some(report) = reports.get_mut(&Check::OutboxNumbering) {
                    report.violation(format!(
                        "portal {portal}: admin change {seq} cannot be read: {err}"
                    ));
                }
            }
        }
    }
    drop(changes);
    let mut reports: Vec<CheckReport> = reports.into_values().collect();
    reports.push(check_admin_log(&log, &stored));
    reports.sort_by_key(|r| r.check);
    Ok(reports)
}
