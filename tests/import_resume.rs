//! Issue 31: `import` is answered message by message, once each message's
//! rows are stored, and keeps what was acknowledged beside the file. When the
//! server is killed mid-import the client says what was stored and how to
//! continue; `import --resume` against the restarted server sends only the
//! rows after the last acknowledged line, and the portal ends with exactly
//! the file's rows, the store sound. Ctrl-C stops it the same way (exit 130).
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::ServerProcess;
use sqlx::Connection;

const PORTAL: i64 = 7;
const ROWS: u64 = 40_000;

fn write_file(path: &std::path::Path) {
    let mut text = String::from("from_object_type,from_object_id,to_object_type,to_object_id\n");
    for i in 0..ROWS {
        text.push_str(&format!("deals,{},contacts,{}\n", i / 100 + 1, i + 1));
    }
    std::fs::write(path, text).unwrap();
}

fn import_command(file: &std::path::Path, server: &ServerProcess) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_association-service"));
    command
        .args(["import", file.to_str().unwrap(), "--portal"])
        .arg(PORTAL.to_string())
        .args(["--batch-size", "500", "--server", &server.grpc])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The last acknowledged line and row count the progress file holds.
fn progress(file: &std::path::Path) -> Option<(u64, u64)> {
    let mut name = file.as_os_str().to_owned();
    name.push(".import-progress");
    let text = std::fs::read_to_string(name).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((
        value["through_line"].as_u64().unwrap(),
        value["rows"].as_u64().unwrap(),
    ))
}

/// The import stopped `why`, saying the acknowledged (line, rows), with `code`.
fn assert_stopped(
    output: &std::process::Output,
    why: &str,
    file: &std::path::Path,
    (line, rows): (u64, u64),
    code: i32,
) {
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains(&format!(
            "{why} importing {}: {rows} rows acknowledged through line {line} ({rows} created, 0 already present, 0 failed); `import --resume` continues after line {line}",
            file.display()
        )),
        "{said}"
    );
    assert_eq!(output.status.code(), Some(code), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_import_resumes_to_exactly_the_files_rows() {
    let url = common::fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.csv");
    write_file(&file);

    let mut server = ServerProcess::start(&url, &[]).await;
    let first = import_command(&file, &server).spawn().unwrap();
    // Wait for a quarter of the file to be acknowledged (the file is
    // rewritten whole at each answer), then kill the server.
    let deadline = Instant::now() + Duration::from_secs(120);
    let acknowledged = loop {
        match progress(&file) {
            Some((line, rows)) if rows >= ROWS / 4 => break (line, rows),
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "no quarter acknowledged in 120 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    let output = first.wait_with_output().await.unwrap();
    let (line, rows) = progress(&file).expect("the progress is kept after the stop");
    assert!(line >= acknowledged.0 && rows >= acknowledged.1 && line < ROWS + 1);
    assert_eq!(rows, line - 1, "every row through line {line} acknowledged");
    assert_stopped(&output, "stopped", &file, (line, rows), 69);

    // The restarted server; the rest of the file.
    let server = ServerProcess::start(&url, &[]).await;
    let output = import_command(&file, &server)
        .arg("--resume")
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains(&format!("resumed {} after line {line}", file.display())),
        "{said}"
    );
    // Rows of a message stored but not yet answered when the server died
    // count as already present.
    let summary = said
        .lines()
        .find_map(|l| l.strip_prefix(&format!("imported {}: ", file.display())))
        .unwrap_or_else(|| panic!("{said}"));
    let counts: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(counts.len(), 4, "{summary}");
    assert_eq!(counts[0], ROWS, "{summary}");
    assert_eq!(
        counts[1] + counts[2],
        ROWS,
        "created + already present: {summary}"
    );
    assert!(
        counts[2] <= 1_000,
        "at most the messages in flight: {summary}"
    );
    assert_eq!(counts[3], 0, "{summary}");
    assert_eq!(progress(&file), None, "the progress file is gone");

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM associations WHERE portal_id = $1")
        .bind(PORTAL)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        stored as u64,
        2 * ROWS,
        "both directions of every row, once"
    );
    // Never analysed: verify analyses it first (seconds, not minutes).
    let store = association_service::store::connect(&url, 2).await.unwrap();
    common::assert_verified(store.as_ref(), "after the resumed import").await;
}

/// Ctrl-C stops an import saying what the service had stored, exit 130,
/// and leaves the progress `--resume` starts from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_says_what_was_stored() {
    let url = common::fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.csv");
    write_file(&file);
    let server = ServerProcess::start(&url, &[]).await;
    let import = import_command(&file, &server).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress(&file).is_none_or(|(_, rows)| rows < ROWS / 10) {
        assert!(Instant::now() < deadline, "no tenth acknowledged in 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = import.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = import.wait_with_output().await.unwrap();
    let kept = progress(&file).expect("the progress is kept after Ctrl-C");
    assert_stopped(&output, "interrupted", &file, kept, 130);
}
