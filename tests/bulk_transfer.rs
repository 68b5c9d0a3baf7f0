//! `association-service import` and `export` against the real server, on
//! both stores: bad rows are reported by line and the rest commit; a re-run
//! changes nothing; an export imports into another portal unchanged.
mod common;

use std::path::Path;
use std::process::Output;

use association_service::proto::admin_config_client::AdminConfigClient;
use association_service::proto::{
    AssociationCategory, CreateLabelRequest, CreateLimitsRequest, LimitInput,
};
use association_service::store;
use common::TestServer;

const PORTAL: i64 = 31;
const COPY_PORTAL: i64 = 32;

const CSV: &str = "\
from_object_type,from_object_id,to_object_type,to_object_id,association_category,association_type_id
contacts,1,companies,10,,
contacts,1,companies,11,HUBSPOT_DEFINED,1
deals,5,contacts,1,,
deals,5,contacts,2,,
deals,5,contacts,3,,
contacts,x,companies,10,,
bogus,1,companies,10,,
deals,6,contacts,-3,,
deals,6,contacts,2,USER_DEFINED,7
";

async fn cli(server: &TestServer, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_association-service"))
        .args(args)
        .args(["--server", &server.endpoint()])
        .output()
        .await
        .expect("run the CLI")
}

async fn import(server: &TestServer, file: &str, portal: i64, extra: &[&str]) -> Output {
    let portal = portal.to_string();
    let mut args = vec!["import", file, "--portal", &portal];
    args.extend_from_slice(extra);
    cli(server, &args).await
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn export_jsonl(server: &TestServer, portal: i64, dir: &Path) -> Vec<String> {
    let path = dir.join(format!("export-{portal}.jsonl"));
    let output = cli(
        server,
        &[
            "export",
            "--portal",
            &portal.to_string(),
            "--output",
            path.to_str().unwrap(),
        ],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

async fn feed_head(server: &TestServer, portal: i64) -> i64 {
    let store = store::connect(&server.store.url, 1).await.unwrap();
    store.feed_bounds(portal).await.unwrap().1
}

async fn import_reports_bad_rows_and_reimport_changes_nothing(backend: &str) {
    let server = TestServer::start(backend, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("associations.csv");
    std::fs::write(&file, CSV).unwrap();
    let mut admin = AdminConfigClient::connect(server.endpoint()).await.unwrap();
    admin
        .create_limits(CreateLimitsRequest {
            portal_id: PORTAL,
            from_object_type: "deals".into(),
            to_object_type: "contacts".into(),
            inputs: vec![LimitInput {
                category: AssociationCategory::HubspotDefined as i32,
                type_id: 3,
                max_to_object_ids: 2,
            }],
        })
        .await
        .unwrap();

    let first = import(&server, file.to_str().unwrap(), PORTAL, &[]).await;
    let report = stderr(&first);
    assert_eq!(
        first.status.code(),
        Some(1),
        "failed rows give exit status 1: {report}"
    );
    for expected in [
        "line 6: VALIDATION_ERROR crm.associations.ASSOCIATION_USER_CONFIG_LIMIT_EXCEEDED",
        "line 7: from_object_id must be a whole number such as 706 or \"706\", not \"x\"",
        "line 8: VALIDATION_ERROR crm.associations.INVALID_OBJECT_TYPE",
        "line 9: VALIDATION_ERROR crm.associations.INVALID_OBJECT_ID",
        "line 10: VALIDATION_ERROR crm.associations.INVALID_ASSOCIATION_TYPE",
        "9 rows: 4 created, 0 already present, 5 failed",
    ] {
        assert!(
            report.contains(expected),
            "missing `{expected}` in:\n{report}"
        );
    }
    let exported = export_jsonl(&server, PORTAL, dir.path()).await;
    assert_eq!(
        exported.len(),
        2 * 5,
        "contact 1 - 2 companies (primary on 11), deal 5 - 2 contacts; both directions"
    );
    let head = feed_head(&server, PORTAL).await;

    let again = import(&server, file.to_str().unwrap(), PORTAL, &[]).await;
    assert!(
        stderr(&again).contains("9 rows: 0 created, 4 already present, 5 failed"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        export_jsonl(&server, PORTAL, dir.path()).await,
        exported,
        "re-importing changes nothing"
    );
    assert_eq!(
        feed_head(&server, PORTAL).await,
        head,
        "and writes no change to the feed"
    );

    // An export is an import file: it copies the portal as it is.
    let path = dir.path().join(format!("export-{PORTAL}.jsonl"));
    let copy = import(&server, path.to_str().unwrap(), COPY_PORTAL, &[]).await;
    assert!(copy.status.success(), "{}", stderr(&copy));
    assert!(
        stderr(&copy).contains("10 rows: 4 created, 6 already present, 0 failed"),
        "the first row of each of the 4 record pairs creates (the primary's with it), the rest find it: {}",
        stderr(&copy)
    );
    assert_eq!(
        export_jsonl(&server, COPY_PORTAL, dir.path()).await,
        exported
    );
    let copy_again = import(&server, path.to_str().unwrap(), COPY_PORTAL, &[]).await;
    assert!(copy_again.status.success(), "{}", stderr(&copy_again));
    assert!(
        stderr(&copy_again).ends_with("10 rows, all already present: nothing changed\n"),
        "{}",
        stderr(&copy_again)
    );
    server.stop().await;
}

/// The rows of an export without type ids (portals allocate their own).
fn by_label(lines: &[String]) -> Vec<String> {
    let mut rows: Vec<String> = lines
        .iter()
        .map(|line| {
            let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
            row.as_object_mut().unwrap().remove("association_type_id");
            row.to_string()
        })
        .collect();
    rows.sort();
    rows
}

/// Label rows name their label by text: into a portal without the label
/// they fail with the reason and the way out; with `--create-labels` the
/// labels are made (paired with the other direction's text) and the copy
/// matches the source. Ids may be strings, as HubSpot writes them.
async fn labels_move_between_portals_by_text(backend: &str) {
    let server = TestServer::start(backend, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut admin = AdminConfigClient::connect(server.endpoint()).await.unwrap();
    // Another label first in the target, so the ids differ between portals.
    for (portal, label, inverse) in [
        (COPY_PORTAL, "Partner", "Partner of"),
        (PORTAL, "Manager", "Managed by"),
    ] {
        admin
            .create_label(CreateLabelRequest {
                portal_id: portal,
                from_object_type: "contacts".into(),
                to_object_type: "companies".into(),
                label: label.into(),
                name: label.to_lowercase(),
                inverse_label: Some(inverse.into()),
            })
            .await
            .unwrap();
    }
    let file = dir.path().join("labelled.jsonl");
    std::fs::write(
        &file,
        "{\"from_object_type\":\"contacts\",\"from_object_id\":\"706\",\"to_object_type\":\"companies\",\"to_object_id\":\"9\",\"association_category\":\"USER_DEFINED\",\"label\":\"Manager\"}\n\
         {\"from_object_type\":\"contacts\",\"from_object_id\":707,\"to_object_type\":\"companies\",\"to_object_id\":9}\n",
    )
    .unwrap();
    let first = import(&server, file.to_str().unwrap(), PORTAL, &[]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("2 rows: 2 created, 0 already present, 0 failed"),
        "{}",
        stderr(&first)
    );
    let source = export_jsonl(&server, PORTAL, dir.path()).await;
    assert!(
        source.iter().any(|l| l.contains("\"Managed by\"")),
        "the export shows both directions' labels: {source:?}"
    );
    let exported = dir.path().join(format!("export-{PORTAL}.jsonl"));

    let refused = import(&server, exported.to_str().unwrap(), COPY_PORTAL, &[]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    for expected in [
        "portal 32 has no label \"Manager\" from 0-1 to 0-2 (the file may come from another portal): create it, or import again with --create-labels",
        "portal 32 has no label \"Managed by\" from 0-2 to 0-1",
    ] {
        assert!(
            stderr(&refused).contains(expected),
            "missing `{expected}` in:\n{}",
            stderr(&refused)
        );
    }

    let copied = import(
        &server,
        exported.to_str().unwrap(),
        COPY_PORTAL,
        &["--create-labels"],
    )
    .await;
    assert!(copied.status.success(), "{}", stderr(&copied));
    assert!(
        stderr(&copied).contains("created label \"Manager\" (USER_DEFINED 1002) from 0-1 to 0-2, \"Managed by\" the other way"),
        "{}",
        stderr(&copied)
    );
    assert!(
        !stderr(&copied).contains("created label \"Managed by\""),
        "the pair is made once: {}",
        stderr(&copied)
    );
    assert_eq!(
        by_label(&export_jsonl(&server, COPY_PORTAL, dir.path()).await),
        by_label(&source)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_labels_move_between_portals_by_text() {
    labels_move_between_portals_by_text("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_labels_move_between_portals_by_text() {
    labels_move_between_portals_by_text("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_import_reports_bad_rows_and_reimport_changes_nothing() {
    import_reports_bad_rows_and_reimport_changes_nothing("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_import_reports_bad_rows_and_reimport_changes_nothing() {
    import_reports_bad_rows_and_reimport_changes_nothing("postgres").await;
}

/// A command that cannot reach the server exits 69 (EX_UNAVAILABLE), so
/// scripts can retry; other failures exit 1.
#[tokio::test]
async fn unreachable_server_exits_69() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_association-service"))
        .args(["export", "--portal", "1", "--server"])
        .arg(format!("http://{closed}"))
        .output()
        .await
        .expect("run the CLI");
    assert_eq!(
        output.status.code(),
        Some(69),
        "stderr: {}",
        stderr(&output)
    );
}

/// `--batch-size` outside 1 to 2000 is refused before anything is sent,
/// not clamped (exit 2, the command line's usage error).
#[tokio::test]
async fn a_batch_size_out_of_range_is_refused() {
    for size in ["0", "2001", "5000"] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_association-service"))
            .args(["import", "rows.csv", "--portal", "1", "--batch-size", size])
            .output()
            .await
            .expect("run the CLI");
        assert_eq!(output.status.code(), Some(2), "{size}");
        assert!(
            stderr(&output).contains(&format!(
                "invalid value '{size}' for '--batch-size <ROWS>': {size} is not in 1..=2000"
            )),
            "{}",
            stderr(&output)
        );
    }
}

/// The CLI takes the server's address with or without `http://`, and a
/// service that wants a token is told how to give one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_takes_a_bare_address_and_says_how_to_give_a_token() {
    let server = TestServer::start("sqlite", |s| common::grant(s, &["ops"], &[PORTAL])).await;
    let bare = server.addr.to_string();
    let health = tokio::process::Command::new(env!("CARGO_BIN_EXE_association-service"))
        .args(["health", "--server", &bare])
        .output()
        .await
        .expect("run the CLI");
    assert_eq!(health.status.code(), Some(0), "{}", stderr(&health));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.csv");
    std::fs::write(&file, CSV).unwrap();
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_association-service"))
        .args([
            "import",
            file.to_str().unwrap(),
            "--portal",
            &PORTAL.to_string(),
        ])
        .args(["--server", &bare])
        .env_remove("ASSOC_TOKEN")
        .output()
        .await
        .expect("run the CLI");
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused)
            .contains("the service requires a token: pass --token TOKEN or set ASSOC_TOKEN"),
        "{}",
        stderr(&refused)
    );
    server.stop().await;
}
