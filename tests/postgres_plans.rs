//! Every streamed statement reads an index range on PostgreSQL: `EXPLAIN`
//! of each, on a connection with the stream connections' settings, shows an
//! index condition that bounds the scan (the record, or the start row within
//! the portal or object type), never a sequential scan or a sort of the
//! result; a batch is a loop over its ids whose inner side is one record's
//! rows (which PostgreSQL may sort, a record at a time).
mod common;

use association_service::domain::plan::CountKey;
use association_service::domain::{Category, ObjectType, TypeKey};
use association_service::store::postgres::{
    counter_lock_order, page_statement, prune_statements, scan_statements, types_holding_statement,
    SCAN_SESSION,
};
use sqlx::Connection;

/// A connection to a fresh, migrated database.
async fn migrated() -> sqlx::PgConnection {
    let url = common::fresh_postgres_database().await;
    let store = association_service::store::connect(&url, 4)
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    drop(store);
    sqlx::PgConnection::connect(&url).await.expect("connect")
}

/// A fresh database with 3 portals × 2 object types × 2,000 records × 5
/// rows, analyzed; a connection to it.
async fn seeded() -> sqlx::PgConnection {
    let mut conn = migrated().await;
    // 3 portals × 2 object types × 2,000 records × 5 rows, then statistics.
    sqlx::query(
        "INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type,
                                   to_object_id, category, type_id)
         SELECT p, t, r, CASE WHEN k % 2 = 0 THEN '0-2' ELSE '0-3' END, r * 10 + k, 1, 279
         FROM generate_series(1, 3) p, unnest(ARRAY['0-1', '0-3']) t,
              generate_series(1, 2000) r, generate_series(1, 5) k",
    )
    .execute(&mut conn)
    .await
    .expect("rows");
    sqlx::query("ANALYZE associations")
        .execute(&mut conn)
        .await
        .expect("analyze");
    conn
}

#[tokio::test]
async fn streamed_statements_are_index_range_scans() {
    let mut conn = seeded().await;
    stream_session(&mut conn).await;
    for (name, sql, params) in scan_statements() {
        let text = format!("EXPLAIN {sql}");
        // Portal 2, object type 0-1, record 1000 (or the rows after it).
        let explain = sqlx::query_scalar::<_, String>(&text)
            .bind(2i64)
            .bind("0-1");
        let explain = if name.starts_with("batch") {
            let to = name.ends_with("one type").then_some("0-2");
            explain
                .bind((1000i64..1100).collect::<Vec<_>>())
                .bind(to)
                .bind("0-2")
                .bind(5000i64)
        } else if name.starts_with("records") {
            explain.bind(1000i64).bind("0-2").bind(5000i64)
        } else if name == "near limit" {
            explain
                .bind(1i16)
                .bind(279i32)
                .bind(8i64)
                .bind(i64::MAX)
                .bind(i64::MAX)
        } else {
            let explain = explain
                .bind(1000i64)
                .bind("0-2")
                .bind(0i64)
                .bind(0i16)
                .bind(0i32);
            if params == 8 {
                explain.bind("0-2")
            } else {
                explain
            }
        };
        let plan = explain
            .fetch_all(&mut conn)
            .await
            .expect("explain")
            .join("\n");
        assert!(
            !plan.contains("Seq Scan"),
            "{name}: sequential scan\n{plan}"
        );
        // Nothing sorts the whole result (a batch may sort one record's rows).
        let top = plan.lines().next().unwrap_or_default();
        assert!(
            !top.contains("Sort"),
            "{name}: rows sorted, not read in order\n{plan}"
        );
        if !name.starts_with("batch") {
            assert!(!plan.contains("Sort"), "{name}: rows sorted\n{plan}");
        }
        let condition = plan
            .lines()
            .find(|l| l.contains("Index Cond"))
            .unwrap_or_else(|| panic!("{name}: no index condition\n{plan}"));
        if name.starts_with("batch") {
            // The id array drives the loop, each record an index range.
            assert!(
                top.starts_with("Nested Loop") && plan.contains("Function Scan on unnest"),
                "{name}: not a loop over the ids\n{plan}"
            );
            assert!(
                condition.contains("from_object_id = u.id"),
                "{name}: the inner side is not the record's range\n{plan}"
            );
        } else {
            assert!(
                condition.contains('>') && condition.contains("portal_id"),
                "{name}: the index condition does not bound the range\n{plan}"
            );
        }
    }
    let _ = conn.close().await;
}

/// Sets a stream connection's session settings on `conn`.
async fn stream_session(conn: &mut sqlx::PgConnection) {
    for (name, value) in SCAN_SESSION {
        sqlx::query(&format!("SET {name} = {value}"))
            .execute(&mut *conn)
            .await
            .expect("a stream connection's setting");
    }
}

/// The paged batch read's plan, on a stream connection, for portal 2's
/// records `ids` of the (from, to) pair, each from its first row.
async fn page_plan(
    conn: &mut sqlx::PgConnection,
    (from, to): (&str, &str),
    ids: std::ops::Range<i64>,
) -> String {
    stream_session(conn).await;
    let ids: Vec<i64> = ids.collect();
    sqlx::query_scalar::<_, String>(&format!("EXPLAIN {}", page_statement()))
        .bind(2i64)
        .bind(from)
        .bind(to)
        .bind(&ids)
        .bind(vec![0i64; ids.len()])
        .bind(101i64)
        .fetch_all(&mut *conn)
        .await
        .expect("explain")
        .join("\n")
}

/// The REST batch read's pages, on a stream connection: an `Append` whose
/// first part finds the inputs holding nothing and whose second is a loop
/// over the inputs (the unnest of the id and start arrays, `u`), each one
/// record's index range; no sequential scan, no sort of the result, and no
/// parallel workers (which could interleave the parts).
#[tokio::test]
async fn paged_batch_reads_loop_over_index_ranges() {
    let mut conn = seeded().await;
    let plan = page_plan(&mut conn, ("0-1", "0-2"), 1000..2000).await;
    assert!(!plan.contains("Seq Scan"), "sequential scan\n{plan}");
    assert!(!plan.contains("Gather"), "parallel workers\n{plan}");
    let top = plan.lines().next().unwrap_or_default();
    assert!(top.starts_with("Append"), "not two parts in order\n{plan}");
    let loops: Vec<&str> = plan
        .lines()
        .filter(|l| l.trim_start().starts_with("->  Nested Loop"))
        .collect();
    assert!(
        loops.len() == 2 && plan.matches("Function Scan on u").count() == 2,
        "not a loop over the inputs in each part\n{plan}"
    );
    assert!(!plan.contains("Sort"), "rows sorted\n{plan}");
    let conditions: Vec<&str> = plan.lines().filter(|l| l.contains("Index Cond")).collect();
    assert!(
        conditions.len() == 2
            && conditions
                .iter()
                .all(|c| c.contains("(from_object_id = u.id)")
                    || c.contains("(from_object_id = u_1.id)")),
        "an index range that is not one record's\n{plan}"
    );
    let _ = conn.close().await;
}

/// Statistics taken before a portal had rows (autovacuum's, right after a
/// large import into another portal) make a portal look empty; the paged
/// read must still probe and read each input on the key, not filter the
/// whole portal through the index of a type's rows once per input.
#[tokio::test]
async fn paged_batch_reads_keep_to_the_key_under_stale_statistics() {
    let mut conn = migrated().await;
    let rows = |portal: i64, records: i64, per_record: i64| {
        format!(
            "INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type,
                                       to_object_id, category, type_id)
             SELECT {portal}, '0-3', r, '0-1', k, 1, 3
             FROM generate_series(1, {records}) r, generate_series(1, {per_record}) k"
        )
    };
    for statement in [
        rows(1, 1, 300_000),
        "ANALYZE associations".into(),
        rows(2, 1000, 20),
    ] {
        sqlx::query(&statement)
            .execute(&mut conn)
            .await
            .expect("rows and statistics");
    }
    let plan = page_plan(&mut conn, ("0-3", "0-1"), 1..1001).await;
    assert!(
        !plan.contains("Seq Scan on associations"),
        "the portal's rows filtered per input\n{plan}"
    );
    let conditions = plan.lines().filter(|l| l.contains("Index Cond"));
    assert_eq!(
        conditions
            .filter(|c| c.contains("from_object_id = u"))
            .count(),
        2,
        "each part not one index range per input\n{plan}"
    );
    let _ = conn.close().await;
}

/// Feed retention reads indexes only: each probe of a portal's cut is one
/// key lookup, each batch a range of the key.
#[tokio::test]
async fn retention_reads_index_ranges() {
    let mut conn = seeded().await;
    sqlx::query(
        "INSERT INTO association_feed_heads (portal_id, last_seq) SELECT p, 5000 FROM generate_series(1, 20) p
         ON CONFLICT DO NOTHING",
    )
    .execute(&mut conn)
    .await
    .expect("heads");
    sqlx::query(
        "INSERT INTO association_changes (portal_id, seq, kind, from_object_type, from_object_id,
                                          to_object_type, to_object_id, category, type_id, changed_at_us)
         SELECT p, s, 1, '0-1', s, '0-2', s, 1, 279, s * 1000
         FROM generate_series(1, 20) p, generate_series(1, 5000) s",
    )
    .execute(&mut conn)
    .await
    .expect("changes");
    sqlx::query("ANALYZE association_changes")
        .execute(&mut conn)
        .await
        .expect("analyze");
    let [probe, batch] = prune_statements();
    let explain = |sql: &str| format!("EXPLAIN {sql}");
    let plan = sqlx::query_scalar::<_, String>(&explain(probe))
        .bind(2i64)
        .bind(2_500i64)
        .fetch_all(&mut conn)
        .await
        .expect("explain the probe")
        .join("\n");
    assert!(
        !plan.contains("Seq Scan"),
        "the probe scans the table\n{plan}"
    );
    assert!(
        plan.contains("association_changes_numbered"),
        "the probe is a key lookup\n{plan}"
    );
    let plan = sqlx::query_scalar::<_, String>(&explain(batch))
        .bind(2i64)
        .bind(2_500i64)
        .bind(5_000i64)
        .fetch_all(&mut conn)
        .await
        .expect("explain a batch")
        .join("\n");
    assert!(
        !plan.contains("Seq Scan on association_changes"),
        "a batch scans the table\n{plan}"
    );
    let _ = conn.close().await;
}

/// `associations` has one index, its primary key. An index led by the
/// portal (`associations_by_type`: portal, category, type) served any
/// statement that names a portal, and for a portal that statistics show as
/// empty (a new one, or one filled by an import since the last ANALYZE)
/// the planner took it over the key even to look up one association,
/// reading every row of the portal per lookup; led by the type, it would
/// still read every row of the type in the portal. Migration 0024 drops it
/// (a label delete finds its rows from the counters);
/// tests/plans_at_scale.rs holds the plans of imports at scale.
#[tokio::test]
async fn the_key_is_the_only_index_of_associations() {
    let mut conn = migrated().await;
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'associations' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the indexes");
    assert_eq!(indexes, ["associations_pkey"]);
    let _ = conn.close().await;
}

/// Every write takes its feed order (`association_change_order`) from the
/// last entry of the index of unnumbered changes, whatever the statistics:
/// taken while the portal's changes were all numbered, they once led the
/// planner to read the whole backlog of unnumbered changes per write. The
/// function's own query is planned generically, as PL/pgSQL plans it.
#[tokio::test]
async fn the_feed_order_is_one_index_entry_under_stale_statistics() {
    let mut conn = migrated().await;
    let changes = |portal: i64, seq: &str, n: i64| {
        format!(
            "INSERT INTO association_changes (portal_id, seq, kind, from_object_type,
                 from_object_id, to_object_type, to_object_id, category, type_id,
                 changed_at_us, ord)
             SELECT {portal}, {seq}, 1, '0-1', s, '0-2', s, 1, 279, 0, s / 100
             FROM generate_series(1, {n}) s"
        )
    };
    for statement in [
        changes(2, "s", 2_000),
        "ANALYZE association_changes".into(),
        changes(1, "NULL", 40_000),
        "SET plan_cache_mode = force_generic_plan".into(),
    ] {
        sqlx::query(&statement)
            .execute(&mut conn)
            .await
            .expect("changes and statistics");
    }
    let source: String =
        sqlx::query_scalar("SELECT prosrc FROM pg_proc WHERE proname = 'association_change_order'")
            .fetch_one(&mut conn)
            .await
            .expect("the function");
    let expression = source
        .split_once("RETURN")
        .and_then(|(_, rest)| rest.rsplit_once(';'))
        .map(|(expression, _)| expression.replace("p_portal", "$1"))
        .unwrap_or_else(|| panic!("not RETURN <expression>;\n{source}"));
    sqlx::query(&format!(
        "PREPARE change_order(bigint) AS SELECT {expression}"
    ))
    .execute(&mut conn)
    .await
    .expect("prepare");
    let plan = sqlx::query_scalar::<_, String>(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE change_order(1)",
    )
    .fetch_all(&mut conn)
    .await
    .expect("explain")
    .join("\n");
    let scan = plan
        .lines()
        .find(|l| l.contains(" on association_changes"))
        .unwrap_or_else(|| panic!("no scan of the changes\n{plan}"));
    assert!(
        scan.contains("Backward using association_changes_unnumbered")
            && scan.contains("(actual rows=1 loops=1)"),
        "the order is not the unnumbered index's last entry\n{plan}"
    );
    let order: i64 = sqlx::query_scalar("EXECUTE change_order(1)")
        .fetch_one(&mut conn)
        .await
        .expect("the order");
    assert_eq!(order, 40_000 / 100 + 1);
    let _ = conn.close().await;
}

/// Finding the types some record holds many of (Limits Tracking, the
/// high-usage report) skips through the usage index: no sequential scan of
/// the counters, whatever the portal's size.
#[tokio::test]
async fn the_types_near_the_ceiling_are_found_by_a_skip_scan() {
    let mut conn = seeded().await;
    // 3 portals × 4 types × 20,000 records, counts 1 to 100.
    sqlx::query(
        "INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
         SELECT p, '0-1', r, 1, t, 1 + r % 100
         FROM generate_series(1, 3) p, unnest(ARRAY[1, 4, 279, 1000]) t, generate_series(1, 20000) r",
    )
    .execute(&mut conn)
    .await
    .expect("counts");
    sqlx::query("ANALYZE association_counts")
        .execute(&mut conn)
        .await
        .expect("analyze");
    let plan = sqlx::query_scalar::<_, String>(&format!("EXPLAIN {}", types_holding_statement()))
        .bind(2i64)
        .bind(80i64)
        .fetch_all(&mut conn)
        .await
        .expect("explain")
        .join("\n");
    assert!(
        !plan.contains("Seq Scan on association_counts"),
        "the counters are scanned whole\n{plan}"
    );
    assert!(
        plan.contains("Recursive Union") && plan.contains("association_counts_by_usage"),
        "not a skip scan of the usage index\n{plan}"
    );
    let _ = conn.close().await;
}

/// The write functions' ORDER BY of the counters they lock (their aliases:
/// t object type, i id, c category, ty type id).
const FUNCTIONS_LOCK_ORDER: &str = r#"ORDER BY k.t COLLATE "C", k.i, k.c, k.ty"#;

/// Counters are locked in one order everywhere: the domain's
/// (`CountKey::lock_order`, which the Rust flows sort by) is the order
/// PostgreSQL gives random counters under the label delete's ORDER BY and
/// under the write functions' (the text every function that locks counters
/// holds). Random counters over every standard type and custom ones, from a
/// printed seed (`LOCK_ORDER_SEED=n` replays one).
#[tokio::test]
async fn the_lock_order_is_the_domains() {
    let seed: u64 = match std::env::var("LOCK_ORDER_SEED") {
        Ok(text) => text.parse().expect("LOCK_ORDER_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    println!("LOCK_ORDER_SEED={seed}");
    let mut state = seed | 1;
    let mut next = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let standard = [
        1, 2, 3, 5, 7, 8, 14, 18, 19, 27, 46, 47, 48, 49, 53, 69, 101, 115, 116, 123,
    ];
    let keys: Vec<CountKey> = (0..400)
        .map(|_| {
            let object_type = match next(3) {
                0 => format!("2-{}", next(100_000)),
                _ => format!("0-{}", standard[next(standard.len() as u64) as usize]),
            };
            let category = match next(2) {
                0 => Category::HubspotDefined,
                _ => Category::UserDefined,
            };
            CountKey {
                object_type: ObjectType::parse(&object_type).unwrap(),
                object_id: next(50) as i64 - 10,
                key: TypeKey {
                    category,
                    type_id: next(3000) as i32,
                },
            }
        })
        .collect();
    let mut domain = keys.clone();
    domain.sort_by_cached_key(CountKey::lock_order);
    // As stored: the object type's text, the id, the category's code, the type id.
    let stored = |k: &CountKey| {
        (
            k.object_type.to_string(),
            k.object_id,
            k.key.category.code(),
            k.key.type_id,
        )
    };
    let domain: Vec<(String, i64, i16, i32)> = domain.iter().map(stored).collect();

    let url = common::fresh_postgres_database().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let columns = |keys: &[CountKey]| {
        let mut c = (vec![], vec![], vec![], vec![]);
        for k in keys {
            let (t, i, cat, ty) = stored(k);
            c.0.push(t);
            c.1.push(i);
            c.2.push(cat);
            c.3.push(ty);
        }
        c
    };
    let (t, i, c, ty) = columns(&keys);
    for (what, statement) in [
        (
            "the label delete's order",
            format!(
                "SELECT object_type, object_id, category, type_id
                 FROM unnest($1::text[], $2::bigint[], $3::smallint[], $4::int[])
                      AS x(object_type, object_id, category, type_id)
                 ORDER BY {}",
                counter_lock_order()
            ),
        ),
        (
            "the write functions' order",
            format!(
                "SELECT k.t, k.i, k.c, k.ty
                 FROM unnest($1::text[], $2::bigint[], $3::smallint[], $4::int[]) AS k(t, i, c, ty)
                 {FUNCTIONS_LOCK_ORDER}"
            ),
        ),
    ] {
        let sorted: Vec<(String, i64, i16, i32)> = sqlx::query_as(&statement)
            .bind(&t)
            .bind(&i)
            .bind(&c)
            .bind(&ty)
            .fetch_all(&mut conn)
            .await
            .expect("sort in SQL");
        assert_eq!(sorted, domain, "{what} (LOCK_ORDER_SEED={seed})");
    }

    // Every statement of a function that writes counters takes their row
    // locks in that order, but the plan's apply, which runs under the locks
    // the flow took (`lock_counts`, in the domain's order).
    let store = association_service::store::connect(&url, 2)
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    let writers: Vec<(String, String)> = sqlx::query_as(
        "SELECT proname::text, prosrc FROM pg_proc
         WHERE prosrc LIKE '%INSERT INTO association_counts%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("functions");
    let names: Vec<&str> = writers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "association_apply",
            "association_archive",
            "association_create_presumed"
        ],
        "the functions that write counters"
    );
    // A statement over many counters orders them itself; one of a single
    // counter runs in a loop over the counters in that order.
    for (name, source) in writers.iter().filter(|(n, _)| n != "association_apply") {
        let statements: Vec<&str> = source.split("INSERT INTO association_counts").collect();
        for (before, statement) in statements.iter().zip(&statements[1..]) {
            let head = statement.split("ON CONFLICT").next().unwrap_or_default();
            let looped = before.rsplit_once("FOR ").is_some_and(|(_, lp)| {
                lp.contains(FUNCTIONS_LOCK_ORDER) && !lp.contains("END LOOP")
            });
            assert!(
                head.contains(FUNCTIONS_LOCK_ORDER) || looped,
                "{name} locks counters in another order: {head}"
            );
        }
    }
}
