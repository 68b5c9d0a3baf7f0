//! The generated clients in other languages, each run against the real
//! server with authentication on: `scripts/generate-clients` makes Python
//! stubs (grpcio-tools) and TypeScript stubs (buf with protoc-gen-es) from
//! proto/, and the runnable examples on them (`examples/python/client.py`;
//! `examples/typescript/client.ts`, type-checked and compiled by `tsc`)
//! associate a contact with two companies and print the contact's
//! associations as the server streams them.
mod common;

use std::path::Path;

use common::TestServer;

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");

/// What both examples print, given a fresh portal 1.
const EXPECTED: &str = "created 2 associations of contact 1001
contact 1001 -> 0-2 2001: HUBSPOT_DEFINED 1 (Primary), HUBSPOT_DEFINED 279
contact 1001 -> 0-2 2002: HUBSPOT_DEFINED 279
";

async fn server() -> TestServer {
    TestServer::start("sqlite", |s| common::grant(s, &["client"], &[1])).await
}

/// Runs `program args…` in the repository; answers its standard output,
/// failing with its standard error.
async fn run(program: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let output = tokio::process::Command::new(program)
        .args(args)
        .current_dir(REPOSITORY)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_runs_on_the_generated_stubs() {
    common::generated_clients("python");
    let server = server().await;
    let addr = server.addr.to_string();
    let printed = run(
        &common::python(),
        &["examples/python/client.py", "--server", &addr],
        &[("ASSOC_TOKEN", common::token_for("client"))],
    )
    .await;
    assert_eq!(printed, EXPECTED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_example_compiles_and_runs_on_the_generated_stubs() {
    common::generated_clients("typescript");
    let tsc = Path::new(REPOSITORY).join("examples/typescript/node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "{} is missing: run ./scripts/test (it runs npm ci --prefix examples/typescript)",
        tsc.display()
    );
    run(tsc.to_str().unwrap(), &["-p", "examples/typescript"], &[]).await;
    let server = server().await;
    let addr = server.addr.to_string();
    let token = common::token_for("client");
    let printed = run(
        "node",
        &[
            "examples/typescript/dist/client.js",
            "--server",
            &addr,
            "--token",
            &token,
        ],
        &[],
    )
    .await;
    assert_eq!(printed, EXPECTED);
    server.stop().await;
}

/// The README shows what the examples print.
#[test]
fn the_readme_shows_what_the_examples_print() {
    let readme = std::fs::read_to_string(Path::new(REPOSITORY).join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```text\n{EXPECTED}```")),
        "the README's 'Clients in other languages' output block is:\n{EXPECTED}"
    );
}
