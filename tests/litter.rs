//! Issue 33: databases the tests create on a PostgreSQL they did not start
//! (`DATABASE_URL`) are dropped when their process ends, pass or fail, and
//! those of a test process that was killed are dropped by the next one.
mod common;

use std::process::Command;

use sqlx::Connection;

/// Run only by `the_tests_leave_no_databases_behind`, in a process of its
/// own: makes three databases, says their names, and fails.
#[tokio::test]
#[ignore = "a child of the_tests_leave_no_databases_behind"]
async fn makes_three_databases_and_fails() {
    for _ in 0..3 {
        let url = common::fresh_postgres_database().await;
        println!("made {}", url.rsplit('/').next().unwrap());
    }
    panic!("this test fails on purpose");
}

async fn databases(admin: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query_scalar("SELECT datname::text FROM pg_database ORDER BY 1")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tests_leave_no_databases_behind() {
    let server = common::PrivatePostgres::start();
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port());
    let before = databases(&admin).await;
    // A killed test process's database (no process has this id).
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query("CREATE DATABASE assoc_test_4000000000_0")
        .execute(&mut conn)
        .await
        .unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["makes_three_databases_and_fails", "--exact", "--ignored"])
        .args(["--nocapture", "--test-threads=1"])
        .env("DATABASE_URL", &admin)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&child.stdout).into_owned();
    assert!(!child.status.success(), "the child test fails: {said}");
    let made: Vec<&str> = said
        .lines()
        .filter_map(|l| l.split_once("made ").map(|(_, name)| name))
        .collect();
    assert_eq!(made.len(), 3, "{said}");
    assert_eq!(databases(&admin).await, before, "made {made:?}");
}
