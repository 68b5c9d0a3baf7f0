//! The store checker (`association-service verify`) on both stores: a store
//! written through the service passes every check; each invariant broken by
//! hand in the tables is reported by its check alone, with the row in words,
//! and passes again once mended; the command exits 1 on a violation and 0
//! on a sound store.
mod common;

use std::process::Command;

use association_service::domain::feed::FeedStart;
use association_service::domain::limits::{LimitChange, LimitMode};
use association_service::domain::verify::Check;
use association_service::domain::{ObjectType, TypeKey};
use association_service::service::AssociationService;
use common::{hs, input, pair};
use sqlx::Connection;

const PORTAL: i64 = 7;

/// Contacts 1-3 with companies 10-11 (contact 1's primary is 10), a label
/// used once, a limit, a merge, and the feed read so PostgreSQL numbers it.
async fn populate(svc: &std::sync::Arc<AssociationService>) -> TypeKey {
    let contacts_companies = pair(PORTAL, "contacts", "companies");
    let label = svc
        .create_label(
            "verify-test",
            contacts_companies,
            "Manager",
            "manager",
            None,
        )
        .await
        .expect("label")[0]
        .key;
    let outcome = svc
        .create(
            contacts_companies,
            &[
                input(1, 10, &[hs(1), hs(279)]),
                input(1, 11, &[hs(279)]),
                input(2, 10, &[hs(279), label]),
                input(3, 11, &[hs(279)]),
            ],
        )
        .await
        .expect("create");
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let limits = svc
        .set_limits(
            "verify-test",
            contacts_companies,
            &[LimitChange {
                key: hs(279),
                max_to_object_ids: 5,
            }],
            LimitMode::Create,
        )
        .await
        .expect("limits");
    assert!(limits.errors.is_empty(), "{:?}", limits.errors);
    svc.merge(PORTAL, ObjectType::CONTACT, 2, 3)
        .await
        .expect("merge contact 3 into 2");
    let mut feed = svc
        .read_changes(PORTAL, FeedStart::Beginning, true)
        .await
        .expect("feed");
    while let Some(chunk) = feed.recv().await {
        chunk.expect("feed chunk");
    }
    label
}

/// Runs SQL on the store behind the service's back.
async fn execute(url: &str, sql: &str) {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
        sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
    }
}

/// (what is broken, SQL breaking it, SQL mending it, the check that must
/// fail alone, words its report must show).
fn breakages() -> Vec<(&'static str, String, String, Check, &'static str)> {
    vec![
        (
            "an inverse row removed (its counter and the feed agreeing)",
            "DELETE FROM associations WHERE portal_id = 7 AND from_object_type = '0-2' AND from_object_id = 11 \
             AND to_object_id = 1 AND type_id = 280; \
             UPDATE association_counts SET count = count - 1 WHERE portal_id = 7 AND object_type = '0-2' \
             AND object_id = 11 AND type_id = 280; \
             INSERT INTO association_changes (portal_id, seq, kind, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id, changed_at_us) \
             VALUES (7, SEQ_A, 2, '0-2', 11, '0-1', 1, 1, 280, 0)"
                .into(),
            "INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id) \
             VALUES (7, '0-2', 11, '0-1', 1, 1, 280); \
             UPDATE association_counts SET count = count + 1 WHERE portal_id = 7 AND object_type = '0-2' \
             AND object_id = 11 AND type_id = 280; \
             DELETE FROM association_changes WHERE portal_id = 7 AND (seq IS NULL OR seq > 1000000)"
                .into(),
            Check::Inverses,
            "portal 7: 0-1 1 -> 0-2 11 of type 1/279 lacks its inverse row (type 1/280)",
        ),
        (
            "a counter off by one",
            "UPDATE association_counts SET count = count + 1 WHERE portal_id = 7 AND object_type = '0-1' \
             AND object_id = 1 AND type_id = 279"
                .into(),
            "UPDATE association_counts SET count = count - 1 WHERE portal_id = 7 AND object_type = '0-1' \
             AND object_id = 1 AND type_id = 279"
                .into(),
            Check::Counters,
            "portal 7: 0-1 1 holds 2 of type 1/279, its counter says 3",
        ),
        (
            "a second primary company",
            "INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id) \
             VALUES (7, '0-1', 1, '0-2', 11, 1, 1), (7, '0-2', 11, '0-1', 1, 1, 2); \
             UPDATE association_counts SET count = count + 1 WHERE portal_id = 7 AND object_type = '0-1' AND object_id = 1 AND type_id = 1; \
             INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count) VALUES (7, '0-2', 11, 1, 2, 1) \
             ON CONFLICT (portal_id, object_type, object_id, category, type_id) DO UPDATE SET count = association_counts.count + 1; \
             INSERT INTO association_changes (portal_id, seq, kind, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id, changed_at_us) \
             VALUES (7, SEQ_A, 1, '0-1', 1, '0-2', 11, 1, 1, 0), (7, SEQ_B, 1, '0-2', 11, '0-1', 1, 1, 2, 0)"
                .into(),
            "DELETE FROM associations WHERE portal_id = 7 AND type_id IN (1, 2) AND (from_object_id, to_object_id) IN ((1, 11), (11, 1)); \
             UPDATE association_counts SET count = count - 1 WHERE portal_id = 7 AND object_type = '0-1' AND object_id = 1 AND type_id = 1; \
             UPDATE association_counts SET count = count - 1 WHERE portal_id = 7 AND object_type = '0-2' AND object_id = 11 AND type_id = 2; \
             DELETE FROM association_changes WHERE portal_id = 7 AND (seq IS NULL OR seq > 1000000)"
                .into(),
            Check::Primaries,
            "portal 7: 0-1 1 holds 2 primary associations to 0-2",
        ),
        (
            "a change missing from the feed",
            "UPDATE association_changes SET seq = seq + 1000000 WHERE portal_id = 7 AND seq = 1".into(),
            "UPDATE association_changes SET seq = seq - 1000000 WHERE portal_id = 7 AND seq = 1000001".into(),
            Check::FeedNumbering,
            "portal 7: the feed head is",
        ),
        (
            "an archive recorded for a row that exists",
            "INSERT INTO association_changes (portal_id, seq, kind, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id, changed_at_us) \
             VALUES (7, SEQ_A, 2, '0-1', 1, '0-2', 10, 1, 279, 0)"
                .into(),
            "DELETE FROM association_changes WHERE portal_id = 7 AND (seq IS NULL OR seq > 1000000)".into(),
            Check::FeedMatchesRows,
            "portal 7: 0-1 1 -> 0-2 10 of type 1/279 exists, but its last change in the feed archived it",
        ),
        (
            "a plugin position past the admin log's head",
            "INSERT INTO admin_hook_deliveries (portal_id, plugin, delivered_seq) VALUES (7, 'ghost', 99)".into(),
            "DELETE FROM admin_hook_deliveries WHERE plugin = 'ghost'".into(),
            Check::OutboxNumbering,
            "portal 7: plugin ghost acknowledged admin change 99, past the head",
        ),
        (
            "a limit changed without its admin change",
            "UPDATE association_limits SET max_to_object_ids = 9 WHERE portal_id = 7".into(),
            "UPDATE association_limits SET max_to_object_ids = 5 WHERE portal_id = 7".into(),
            Check::OutboxMatchesConfig,
            "portal 7: the limit of type 1/279 is maxToObjectIds 9, but the admin log's last change left maxToObjectIds 5",
        ),
        // Last, and not mended: the command must find it.
        (
            "rows of a type that does not exist (counted, and in the feed)",
            "INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id) \
             VALUES (7, '0-1', 1, '0-2', 10, 2, 4242), (7, '0-2', 10, '0-1', 1, 2, 4242); \
             INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count) \
             VALUES (7, '0-1', 1, 2, 4242, 1), (7, '0-2', 10, 2, 4242, 1); \
             INSERT INTO association_changes (portal_id, seq, kind, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id, changed_at_us) \
             VALUES (7, SEQ_A, 1, '0-1', 1, '0-2', 10, 2, 4242, 0), (7, SEQ_B, 1, '0-2', 10, '0-1', 1, 2, 4242, 0)"
                .into(),
            "".into(),
            Check::KnownTypes,
            "portal 7: 0-1 1 -> 0-2 10 of type 2/4242, a type that does not exist",
        ),
    ]
}

async fn each_broken_invariant_is_reported_by_its_check(backend: &str) {
    let (svc, test_store) = common::service(backend, common::settings(50, 100)).await;
    populate(&svc).await;
    let failing = |reports: &[association_service::domain::verify::CheckReport]| {
        reports
            .iter()
            .filter(|r| !r.passed())
            .map(|r| (r.check, r.samples.clone()))
            .collect::<Vec<_>>()
    };
    let sound = svc.verify().await.expect("verify");
    assert_eq!(sound.len(), Check::ALL.len());
    assert_eq!(failing(&sound), vec![], "{backend}: a sound store");
    assert!(
        sound
            .iter()
            .all(|r| r.checked > 0 || r.check == Check::OutboxNumbering),
        "{backend}: every check examined rows: {sound:?}"
    );
    // Changes added by hand: unnumbered on PostgreSQL (as writers leave
    // them), numbered past the head on SQLite, which also breaks its
    // numbering; that finding is set aside there.
    let seqs: [(&str, &str); 2] = if backend == "sqlite" {
        [("SEQ_A", "1000001"), ("SEQ_B", "1000002")]
    } else {
        [("SEQ_A", "NULL"), ("SEQ_B", "NULL")]
    };
    for (what, break_sql, mend_sql, check, words) in breakages() {
        let break_sql = seqs
            .iter()
            .fold(break_sql, |sql, (token, seq)| sql.replace(token, seq));
        execute(&test_store.url, &break_sql).await;
        let reports = svc.verify().await.expect("verify");
        let failed = failing(&reports);
        // A change added by hand to the SQLite feed also breaks its numbering.
        let failed: Vec<_> = failed
            .into_iter()
            .filter(|(c, _)| {
                !(backend == "sqlite"
                    && break_sql.contains("1000001")
                    && *c == Check::FeedNumbering)
            })
            .collect();
        assert_eq!(
            failed.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            vec![check],
            "{backend}: {what}: {failed:?}"
        );
        assert!(
            failed[0].1.iter().any(|s| s.contains(words)),
            "{backend}: {what}: expected {words:?} among {:?}",
            failed[0].1
        );
        if mend_sql.is_empty() {
            continue;
        }
        execute(&test_store.url, &mend_sql).await;
        assert_eq!(
            failing(&svc.verify().await.expect("verify")),
            vec![],
            "{backend}: {what}, mended"
        );
    }

    // The command: exit 1 with the finding on the broken store.
    let (code, stdout, stderr) = run_verify(&test_store.url);
    assert_eq!(code, Some(1), "{backend}: {stdout}{stderr}");
    assert!(stdout.contains("FAIL  known-types"), "{backend}: {stdout}");
    // (On SQLite the changes added by hand also break the feed's numbering.)
    let failed = if backend == "sqlite" { 2 } else { 1 };
    assert!(
        stderr.contains(&format!("{failed} of 8 checks found violations")),
        "{backend}: {stderr}"
    );
}

async fn the_command_passes_a_sound_store(backend: &str) {
    let (svc, test_store) = common::service(backend, common::settings(50, 100)).await;
    populate(&svc).await;
    let (code, stdout, stderr) = run_verify(&test_store.url);
    assert_eq!(code, Some(0), "{backend}: {stdout}{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok    ")).count(),
        8,
        "{stdout}"
    );
    assert!(stderr.contains("all 8 checks passed"), "{stderr}");
}

/// `verify` on a store that does not exist says so and exits 2 (the store
/// is misconfigured), creating nothing: an SQLite file in a missing
/// directory or missing from an existing one, and a database missing from a
/// running PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn verify_of_a_store_that_does_not_exist_exits_2_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing").join("associations.db");
    let beside = dir.path().join("associations.db");
    let postgres = common::fresh_postgres_database().await;
    let (server, _) = postgres.rsplit_once('/').unwrap();
    let missing_database = format!("{server}/no_such_database_here");
    for url in [
        format!("sqlite://{}", file.display()),
        format!("sqlite://{}", beside.display()),
        missing_database,
    ] {
        let (code, stdout, stderr) = run_verify(&url);
        assert_eq!(code, Some(2), "{url}: {stdout}{stderr}");
        assert!(
            stderr.contains("the store does not exist; `association-service migrate` creates"),
            "{stderr}"
        );
        assert_eq!(stdout, "", "no check ran");
    }
    assert!(!file.parent().unwrap().exists(), "nothing was created");
    assert!(!beside.exists(), "nothing was created");
}

/// `verify` reads whole tables by design, so it logs no slow-statement
/// warnings: on a store big enough that several of its statements take
/// longer than sqlx's threshold (1 s; 600,000 rows here take about 10 s
/// on SQLite), its log holds none.
async fn verify_logs_no_slow_statements(backend: &str) {
    let test_store = common::fresh_store(backend).await;
    common::open(&test_store).await;
    let rows = match backend {
        "sqlite" => {
            "WITH RECURSIVE n(c) AS (SELECT 1 UNION ALL SELECT c + 1 FROM n WHERE c < 150000)
             INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
             SELECT 1, '0-1', c, '0-2', (c * 7 + k * 5003) % 50000 + 1, 1, 279
             FROM n, (SELECT 1 AS k UNION ALL SELECT 2)"
        }
        _ => {
            "INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
             SELECT 1, '0-1', c, '0-2', (c * 7 + k * 5003) % 50000 + 1, 1, 279
             FROM generate_series(1, 150000) c, generate_series(1, 2) k"
        }
    };
    execute(&test_store.url, rows).await;
    execute(
        &test_store.url,
        "INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
         SELECT portal_id, '0-2', to_object_id, '0-1', from_object_id, 1, 280 FROM associations;
         INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
         SELECT portal_id, from_object_type, from_object_id, category, type_id, count(*)
         FROM associations GROUP BY 1, 2, 3, 4, 5",
    )
    .await;
    // As after any bulk load (the README says so): without statistics,
    // PostgreSQL plans these reads as nested loops over whole tables.
    execute(&test_store.url, "ANALYZE").await;
    let (code, stdout, stderr) = run_verify(&test_store.url);
    assert_eq!(
        code,
        Some(1),
        "the rows have no feed changes: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("600000 association rows checked"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("slow statement"),
        "{backend}: verify logged slow statements: {}",
        stderr.chars().take(2000).collect::<String>()
    );
}

/// `association-service verify` on the store at `url`: (exit code, stdout, stderr).
fn run_verify(url: &str) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_association-service"))
        .arg("verify")
        .env("ASSOC__STORE__URL", url)
        .output()
        .expect("run verify");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

macro_rules! on_both_stores {
    ($($name:ident),*) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name("sqlite").await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name("postgres").await })*
        }
        mod citus {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name("citus").await })*
        }
    };
}

/// A PostgreSQL store loaded without statistics (as after a bulk load or a
/// restore) is analysed before it is checked: without statistics the
/// planner joins whole tables by index prefixes, row by row (80,000 rows
/// took minutes in tests/import_resume.rs, a second once analysed).
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_store_without_statistics_is_analysed_first() {
    let test_store = common::fresh_store("postgres").await;
    common::open(&test_store).await;
    execute(
        &test_store.url,
        "ALTER TABLE associations SET (autovacuum_enabled = off);
         ALTER TABLE association_counts SET (autovacuum_enabled = off);
         INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
         SELECT 1, '0-3', c / 100 + 1, '0-1', c, 1, 4 FROM generate_series(1, 20000) c;
         INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
         SELECT portal_id, from_object_type, from_object_id, category, type_id, count(*)
         FROM associations GROUP BY 1, 2, 3, 4, 5",
    )
    .await;
    let statistics = |url: String| async move {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT tablename::text FROM pg_stats
             WHERE tablename IN ('associations', 'association_counts') ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    };
    assert_eq!(
        statistics(test_store.url.clone()).await,
        Vec::<String>::new()
    );
    let (code, stdout, stderr) = run_verify(&test_store.url);
    assert_eq!(code, Some(1), "the rows lack inverses: {stdout}{stderr}");
    assert_eq!(
        statistics(test_store.url.clone()).await,
        ["association_counts", "associations"]
    );
}

mod quiet {
    #[tokio::test(flavor = "multi_thread")]
    async fn on_sqlite() {
        super::verify_logs_no_slow_statements("sqlite").await
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn on_postgres() {
        super::verify_logs_no_slow_statements("postgres").await
    }
}

on_both_stores!(
    each_broken_invariant_is_reported_by_its_check,
    the_command_passes_a_sound_store
);
