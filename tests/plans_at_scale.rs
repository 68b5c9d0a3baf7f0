//! Imports keep their key-driven plans at scale (issue 31, item 4): a
//! PostgreSQL holding `PLAN_ROWS` associations (1,000,000 by default;
//! 10,000,000 for the run) across portals of skewed sizes, its feed
//! caught up and everything `ANALYZE`d, then imports of 20 batches of 1,000
//! rows into a new portal and into the biggest one, and a batch of rows the
//! big portal holds already (the full flow). `auto_explain` hands the plan
//! of every statement the service runs, nested ones included, to the test
//! as notices; no plan may scan a big table or read more rows than its
//! batch could touch, and the last batch may not read many more buffers
//! than the first.
mod common;

use association_service::service::{AssociationService, ImportRow};
use sqlx::Connection;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;

const BATCH: i64 = 1_000;
const BATCHES: i64 = 20;

/// The notices of every connection of this process (sqlx hands each to
/// `tracing` with the target `sqlx::postgres::notice`).
#[derive(Clone, Default)]
struct Notices(Arc<Mutex<Vec<String>>>);

impl Notices {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Notices {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::postgres::notice" {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }
}

/// `PLAN_ROWS` associations (each stored both ways) in portals 1 (half of
/// them), then 2, 3, … each twice the size of the one before; a counter
/// per record and type, and a numbered feed entry per row; then statistics,
/// frozen.
async fn seed(conn: &mut sqlx::PgConnection, rows: i64) {
    let half = rows / 2;
    let statements = [
        format!(
            "CREATE TEMP TABLE seeded AS
             SELECT CASE WHEN g <= {half} THEN 1 ELSE 2 + floor(log(2, g - {half}))::bigint END AS p,
                    g / 20 AS contact, g AS company
             FROM generate_series(1, {rows}) g"
        ),
        "INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type,
                                   to_object_id, category, type_id)
         SELECT p, '0-1', contact, '0-2', company, 1, 279 FROM seeded
         UNION ALL
         SELECT p, '0-2', company, '0-1', contact, 1, 280 FROM seeded"
            .into(),
        "INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
         SELECT portal_id, from_object_type, from_object_id, category, type_id, count(*)
         FROM associations GROUP BY 1, 2, 3, 4, 5"
            .into(),
        "INSERT INTO association_changes (portal_id, seq, kind, from_object_type, from_object_id,
                                          to_object_type, to_object_id, category, type_id,
                                          changed_at_us)
         SELECT p, row_number() OVER (PARTITION BY p ORDER BY company), 1, '0-1', contact,
                '0-2', company, 1, 279, 0
         FROM seeded"
            .into(),
        "INSERT INTO association_feed_heads (portal_id, last_seq)
         SELECT portal_id, max(seq) FROM association_changes GROUP BY 1"
            .into(),
        // Statistics as they stand when an import begins (autovacuum's
        // ANALYZE of a table not vacuumed since its rows came), kept so
        // while it runs: autovacuum would change them at its own moment.
        "ANALYZE".into(),
        "ALTER TABLE associations SET (autovacuum_enabled = off)".into(),
        "ALTER TABLE association_counts SET (autovacuum_enabled = off)".into(),
        "ALTER TABLE association_changes SET (autovacuum_enabled = off)".into(),
    ];
    for statement in statements {
        sqlx::query(&statement)
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{statement}"));
    }
}

/// From here on, every new connection to `database` hands the plan of each
/// statement it runs (nested ones too) to its client.
async fn explain_everything(conn: &mut sqlx::PgConnection, database: &str) {
    for (name, value) in [
        ("session_preload_libraries", "auto_explain"),
        ("auto_explain.log_min_duration", "0"),
        ("auto_explain.log_nested_statements", "on"),
        ("auto_explain.log_analyze", "on"),
        ("auto_explain.log_buffers", "on"),
        ("auto_explain.log_timing", "off"),
        // The store's connections ask for warnings and worse only.
        ("auto_explain.log_level", "warning"),
    ] {
        sqlx::query(&format!(
            "ALTER DATABASE \"{database}\" SET {name} = '{value}'"
        ))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// What the plans of one batch read.
#[derive(Debug, Default)]
struct Reads {
    plans: usize,
    /// The most rows one plan node produced or filtered away (all loops).
    most_rows: u64,
    /// The plan that holds that node.
    worst: String,
    /// Buffers read, summed over the plans' top nodes.
    buffers: u64,
}

/// The number after `key` in `line` (`rows=12`), if any.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let start = line.find(key)? + key.len();
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Checks the plans of one batch and sums what they read.
fn read_plans(plans: &[String], context: &str) -> Reads {
    let mut reads = Reads::default();
    for plan in plans.iter().filter(|p| p.contains("plan:")) {
        reads.plans += 1;
        for table in ["associations", "association_counts", "association_changes"] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table} ")),
                "{context}: a scan of {table}\n{plan}"
            );
        }
        // A node's line gives its rows per loop and its loops; the lines
        // under it, the rows it filtered away per loop.
        let mut loops = 1;
        for line in plan.lines() {
            if let Some(n) = number_after(line, "loops=") {
                loops = n;
            }
            let rows = number_after(line, "actual rows=")
                .or_else(|| number_after(line, "Rows Removed by Filter: "))
                .unwrap_or(0);
            if rows * loops > reads.most_rows {
                reads.most_rows = rows * loops;
                reads.worst = plan.clone();
            }
        }
        let top = plan
            .lines()
            .find(|l| l.trim_start().starts_with("Buffers:"));
        if let Some(line) = top {
            reads.buffers +=
                number_after(line, "hit=").unwrap_or(0) + number_after(line, "read=").unwrap_or(0);
        }
    }
    reads
}

/// Imports `BATCHES` batches of new rows into `portal` (contacts from
/// `first_contact`, 20 companies each) and holds each batch's plans.
async fn import_and_check(
    svc: &AssociationService,
    notices: &Notices,
    portal: i64,
    first_contact: i64,
) -> Vec<Reads> {
    let mut batches = Vec::new();
    for batch in 0..BATCHES {
        let rows: Vec<ImportRow> = (0..BATCH)
            .map(|i| {
                let n = batch * BATCH + i;
                ImportRow {
                    line: n as u64 + 1,
                    from_type: "contacts".into(),
                    from_id: first_contact + n / 20,
                    to_type: "companies".into(),
                    to_id: 1_000_000_000 + n,
                    key: None,
                }
            })
            .collect();
        notices.take();
        let outcome = svc.import_rows(portal, &rows).await.expect("import");
        assert_eq!(
            (outcome.created, outcome.errors.len()),
            (BATCH as u64, 0),
            "portal {portal}, batch {batch}: {:?}",
            outcome.errors.first()
        );
        let context = format!("portal {portal}, batch {batch}");
        let reads = read_plans(&notices.take(), &context);
        assert!(reads.plans > 0, "{context}: no plan was seen");
        assert!(
            reads.most_rows <= 10 * BATCH as u64,
            "{context}: a plan node read {} rows for a batch of {BATCH}\n{}",
            reads.most_rows,
            reads.worst
        );
        batches.push(reads);
    }
    let (first, last) = (&batches[0], &batches[batches.len() - 1]);
    eprintln!(
        "portal {portal}: first batch {} plans, {} buffers, at most {} rows a node; last {}, {}, {}",
        first.plans, first.buffers, first.most_rows, last.plans, last.buffers, last.most_rows
    );
    assert!(
        last.buffers * 2 <= first.buffers * 3,
        "portal {portal}: the last batch read {} buffers, the first {}",
        last.buffers,
        first.buffers
    );
    batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_keep_key_driven_plans_at_scale() {
    let rows: i64 = std::env::var("PLAN_ROWS")
        .ok()
        .map(|v| v.parse().expect("PLAN_ROWS is a number of rows"))
        .unwrap_or(1_000_000);
    let notices = Notices::default();
    // Global: sqlx reads its connections on whichever worker runs the task.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(notices.clone()))
        .expect("the only subscriber");
    let test_store = common::fresh_store("postgres").await;
    let store = common::open(&test_store).await;
    let mut conn = sqlx::PgConnection::connect(&test_store.url)
        .await
        .expect("connect");
    seed(&mut conn, rows).await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    explain_everything(&mut conn, &database).await;
    drop(store);
    let svc = AssociationService::new(
        common::open(&test_store).await,
        common::settings(10_000, 50),
    );
    // A new portal, then the biggest (its contacts after the seeded ones).
    import_and_check(&svc, &notices, 1_000_000, 1).await;
    import_and_check(&svc, &notices, 1, rows).await;
    // Rows the big portal holds already: the full flow reads them first.
    let held: Vec<ImportRow> = (20..20 + BATCH)
        .map(|g| ImportRow {
            line: g as u64,
            from_type: "contacts".into(),
            from_id: g / 20,
            to_type: "companies".into(),
            to_id: g,
            key: None,
        })
        .collect();
    notices.take();
    let outcome = svc.import_rows(1, &held).await.expect("import");
    assert_eq!(outcome.errors.len(), 0, "{:?}", outcome.errors.first());
    let reads = read_plans(&notices.take(), "portal 1, rows held already");
    assert!(
        reads.most_rows <= 10 * BATCH as u64,
        "rows held already: a plan node read {} rows\n{}",
        reads.most_rows,
        reads.worst
    );
    let _ = conn.close().await;
}
