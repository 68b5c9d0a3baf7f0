//! Runs the README's example sessions against the real server (embedded
//! store, ephemeral ports) and checks that every command prints what the
//! README says it prints: the grpcurl session (authentication on, with the
//! README's token) and the curl session of the REST gateway (the service
//! running open, as `cargo run -- serve` starts it). Values that differ on
//! every run (commit times, correlation ids) are shown as "…".
//! `UPDATE_GOLDEN=1` rewrites the README's output blocks from a run.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestServer;
use serde_json::Value;

const README_GRPC: &str = "localhost:50051";
const README_REST: &str = "localhost:8080";
/// Keys whose values change on every run.
const VARYING: &[&str] = &[
    "changedAtUnixMicros",
    "correlationId",
    "createdAt",
    "updatedAt",
    "startedAt",
    "completedAt",
    "createdate",
    "hs_lastmodifieddate",
];

/// A command from the README and the output it documents.
struct Step {
    command: String,
    expected: String,
    kind: String,
    /// Where the output block's body sits in the README (byte range).
    output_at: (usize, usize),
}

fn readme_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
}

/// The fenced blocks of the session `name`: each `sh` block is followed by
/// the `json` or `text` block holding its output.
fn session_steps(readme: &str, name: &str) -> Vec<Step> {
    let start = readme
        .find(&format!("<!-- {name} -->"))
        .unwrap_or_else(|| panic!("README has a {name}"));
    let end = readme
        .find(&format!("<!-- /{name} -->"))
        .expect("the session is closed");
    let mut blocks = Vec::new();
    let mut offset = start;
    let mut lines = readme[start..end].split_inclusive('\n');
    while let Some(line) = lines.next() {
        offset += line.len();
        if let Some(lang) = line.trim_end().strip_prefix("```") {
            let body_start = offset;
            let mut body = String::new();
            for inner in lines.by_ref() {
                offset += inner.len();
                if inner.starts_with("```") {
                    break;
                }
                body.push_str(inner);
            }
            let range = (body_start, body_start + body.len());
            blocks.push((lang.trim().to_string(), body, range));
        }
    }
    let mut steps = Vec::new();
    let mut blocks = blocks.into_iter();
    while let Some((lang, command, _)) = blocks.next() {
        assert_eq!(lang, "sh", "each step starts with a sh block");
        let (kind, expected, output_at) = blocks
            .next()
            .expect("each command is followed by its output");
        assert!(
            kind == "json" || kind == "text",
            "output blocks are json or text, not {kind}"
        );
        steps.push(Step {
            command,
            expected,
            kind,
            output_at,
        });
    }
    steps
}

/// A client tool from $NAME (upper case), the project's .venv, or PATH.
fn tool(name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(name.to_uppercase()) {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin")).join(name);
    if venv.exists() {
        return venv;
    }
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .expect("sh");
    if found.status.success() {
        return PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    }
    panic!(
        "{name} is needed: run ./scripts/test (it installs grpcurl), install curl, or set {}",
        name.to_uppercase()
    );
}

/// The JSON values of an output, with the varying ones replaced by "…".
fn json_values(text: &str) -> Vec<Value> {
    fn mask(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    if VARYING.contains(&key.as_str()) {
                        *inner = Value::String("…".into());
                    } else {
                        mask(inner);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(mask),
            _ => {}
        }
    }
    let mut values = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"));
    values.iter_mut().for_each(mask);
    values
}

/// Runs a session's commands in order against `server`, comparing each
/// output with the README's (or, with `UPDATE_GOLDEN=1`, rewriting it).
async fn run_session(name: &str, server: &TestServer, env: &[(&str, String)]) {
    let readme = std::fs::read_to_string(readme_path()).expect("README.md");
    let steps = session_steps(&readme, name);
    assert!(steps.len() >= 4, "{name}: a session of several steps");
    let update = std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1");
    let mut rewritten = Vec::new();
    // With REST_TOKEN set, every curl carries it, as the README says to add.
    let curl = tool("curl").display().to_string();
    let functions = format!(
        "grpcurl() {{ '{}' \"$@\"; }}\ncurl() {{ if [ -n \"$REST_TOKEN\" ]; then '{curl}' -H \"authorization: Bearer $REST_TOKEN\" \"$@\"; else '{curl}' \"$@\"; fi; }}\n",
        tool("grpcurl").display(),
    );
    for step in &steps {
        let command = step
            .command
            .replace(README_GRPC, &server.addr.to_string())
            .replace(README_REST, &server.http_addr.to_string());
        let first = command.trim_start();
        assert!(
            first.starts_with("grpcurl ") || first.starts_with("curl "),
            "only grpcurl and curl commands: {command}"
        );
        let output = tokio::process::Command::new("sh")
            .args(["-c", &format!("{functions}{command}")])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .await
            .expect("run sh");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "`{}` failed: {}",
            step.command,
            String::from_utf8_lossy(&output.stderr)
        );
        if update {
            let body = if step.kind == "json" {
                json_values(&stdout)
                    .iter()
                    .map(|v| serde_json::to_string_pretty(v).unwrap() + "\n")
                    .collect::<String>()
            } else {
                format!("{}\n", stdout.trim())
            };
            rewritten.push((step.output_at, body));
        } else if step.kind == "json" {
            assert_eq!(
                json_values(&stdout),
                json_values(&step.expected),
                "output of `{}`",
                step.command
            );
        } else {
            assert_eq!(
                stdout.trim(),
                step.expected.trim(),
                "output of `{}`",
                step.command
            );
        }
    }
    if update {
        let mut readme = readme;
        for ((start, end), body) in rewritten.into_iter().rev() {
            readme.replace_range(start..end, &body);
        }
        std::fs::write(readme_path(), readme).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_grpcurl_session_is_true() {
    // The README's tokens file: one token, every portal, every role.
    let server = TestServer::start("sqlite", |s| common::grant(s, &["readme-admin"], &[])).await;
    run_session(
        "grpcurl-session",
        &server,
        &[("TOKEN", common::token_for("readme-admin"))],
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_rest_session_is_true() {
    // `cargo run -- serve`: open on loopback, REST on portal 1.
    let server = TestServer::start("sqlite", |_| {}).await;
    run_session("rest-session", &server, &[]).await;
    server.stop().await;
}

/// The README's way to run the curl session with authentication on: a token
/// for portal 1 in the tokens file, sent with every command, gets the same
/// answers; the grpcurl session's all-portals token is refused on REST with
/// the reason the README gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_rest_session_is_true_with_a_one_portal_token() {
    let server = TestServer::start("sqlite", |s| {
        common::grant(s, &["readme-admin"], &[]);
        common::grant(s, &["readme-rest"], &[1]);
    })
    .await;
    let refused = tokio::process::Command::new(tool("curl"))
        .args(["-s", "-w", "\n%{http_code}\n", "-H"])
        .arg(format!(
            "authorization: Bearer {}",
            common::token_for("readme-admin")
        ))
        .arg(format!(
            "http://{}/crm/v4/associations/contacts/companies/labels",
            server.http_addr
        ))
        .output()
        .await
        .expect("run curl");
    let refused = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert!(refused.trim_end().ends_with("\n403"), "{refused}");
    assert!(refused.contains("reaches more than one"), "{refused}");
    run_session(
        "rest-session",
        &server,
        &[("REST_TOKEN", common::token_for("readme-rest"))],
    )
    .await;
    server.stop().await;
}
