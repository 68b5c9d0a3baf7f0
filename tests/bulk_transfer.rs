//! `association-service import` and `export` against the real server, on
//! both stores: bad rows are reported by line and the rest commit; a re-run
//! changes nothing; an export imports into another portal unchanged.
mod common;

use std::path::Path;
use std::process::Output;

use association_service::proto::admin_config_client::AdminConfigClient;
use association_service::proto::{AssociationCategory, CreateLimitsRequest, LimitInput};
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

    let first = cli(
        &server,
        &[
            "import",
            file.to_str().unwrap(),
            "--portal",
            &PORTAL.to_string(),
        ],
    )
    .await;
    let report = stderr(&first);
    assert_eq!(
        first.status.code(),
        Some(1),
        "failed rows give exit status 1: {report}"
    );
    for expected in [
        "line 6: VALIDATION_ERROR crm.associations.ASSOCIATION_USER_CONFIG_LIMIT_EXCEEDED",
        "line 7: CSV deserialize error",
        "line 8: VALIDATION_ERROR crm.associations.INVALID_OBJECT_TYPE",
        "line 9: VALIDATION_ERROR crm.associations.INVALID_OBJECT_ID",
        "line 10: VALIDATION_ERROR crm.associations.INVALID_ASSOCIATION_TYPE",
        "9 rows, 4 succeeded, 5 failed",
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

    let again = cli(
        &server,
        &[
            "import",
            file.to_str().unwrap(),
            "--portal",
            &PORTAL.to_string(),
        ],
    )
    .await;
    assert!(
        stderr(&again).contains("9 rows, 4 succeeded, 5 failed"),
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
    let copy = cli(
        &server,
        &[
            "import",
            path.to_str().unwrap(),
            "--portal",
            &COPY_PORTAL.to_string(),
        ],
    )
    .await;
    assert!(copy.status.success(), "{}", stderr(&copy));
    assert_eq!(
        export_jsonl(&server, COPY_PORTAL, dir.path()).await,
        exported
    );
    server.stop().await;
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
