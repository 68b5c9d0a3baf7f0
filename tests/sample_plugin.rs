//! The README's sample plugin steps, for each sample plugin (the Rust
//! `limit_policy` example, and `examples/python/limit_policy.py` on stubs generated
//! with grpcio-tools): the plugin runs, the service starts with the README's
//! plugin config (its address replaced by the plugin's), a limit above the
//! plugin's maximum is refused with its message and nothing changes, one
//! within it commits and the plugin is told of it once.
mod common;

use std::path::PathBuf;
use std::time::Duration;

use association_service::proto::admin_config_client::AdminConfigClient;
use association_service::proto::{
    AssociationCategory, CreateLimitsRequest, LimitInput, ListLimitsRequest,
};
use common::ServerProcess;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

/// The example's binary, which `cargo test` builds beside the tests.
fn example_binary() -> PathBuf {
    let tests = std::env::current_exe().expect("the test binary");
    let profile = tests
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile.join("examples/limit_policy");
    assert!(
        binary.exists(),
        "{} is built by a whole `cargo test`; to run this test alone, build it first with `cargo test --no-run`",
        binary.display()
    );
    binary
}

/// The README's `plugin.toml`.
fn readme_plugin_config() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let at = readme
        .find("<!-- sample-plugin-config -->")
        .expect("the README shows the plugin's config");
    let block = &readme[at..];
    let start = block.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = block[start..].find("```").expect("closed") + start;
    block[start..end].to_string()
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the plugin prints within 30 s")
        .expect("the plugin's output")
        .expect("the plugin is still running")
}

fn limit(max: i32) -> CreateLimitsRequest {
    CreateLimitsRequest {
        portal_id: 1,
        from_object_type: "contacts".into(),
        to_object_type: "companies".into(),
        inputs: vec![LimitInput {
            category: AssociationCategory::HubspotDefined as i32,
            type_id: 279,
            max_to_object_ids: max,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_sample_plugin_refuses_limits_above_its_maximum() {
    refuses_limits_above_its_maximum(tokio::process::Command::new(example_binary())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sample_plugin_refuses_limits_above_its_maximum() {
    common::generated_clients("python");
    let mut python = tokio::process::Command::new(common::python());
    python.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/python/limit_policy.py"
    ));
    refuses_limits_above_its_maximum(python).await;
}

/// The README's steps with the plugin `command` starts.
async fn refuses_limits_above_its_maximum(mut command: tokio::process::Command) {
    let mut plugin = command
        .args(["--addr", "127.0.0.1:0", "--max-limit", "100"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the sample plugin");
    let mut lines = BufReader::new(plugin.stdout.take().unwrap()).lines();
    let listening = next_line(&mut lines).await;
    let addr = listening
        .strip_prefix("limit-policy listening on ")
        .unwrap_or_else(|| panic!("the plugin says where it listens: {listening}"));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plugin.toml");
    std::fs::write(
        &config,
        readme_plugin_config().replace("127.0.0.1:9000", addr),
    )
    .unwrap();
    let store = format!("sqlite://{}/associations.db", dir.path().display());
    let server = ServerProcess::start(&store, &[("ASSOC_CONFIG", config.to_str().unwrap())]).await;
    let mut admin = AdminConfigClient::new(server.channel().await);

    let refused = admin.create_limits(limit(500)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        refused.message(),
        "500 exceeds this portal's maximum of 100 (type 279) (refused by plugin limit-policy)"
    );
    let limits = admin
        .list_limits(ListLimitsRequest {
            portal_id: 1,
            from_object_type: String::new(),
            to_object_type: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(limits.results.is_empty(), "nothing changed: {limits:?}");

    admin
        .create_limits(limit(50))
        .await
        .expect("within the maximum");
    assert_eq!(
        next_line(&mut lines).await,
        "committed 1:1 ADMIN_EVENT_LIMITS_CREATED by anonymous on 0-1 -> 0-2"
    );
    server.terminate();
}
