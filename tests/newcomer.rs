//! A newcomer's path, as the README gives it: install the binary with
//! `cargo install` (into a temporary root, debug profile to spare time, its
//! own target folder under target/ so it never races the suite's binary),
//! start it, import a HubSpot-style file whose ids are strings, export it
//! as JSON Lines and CSV, and import each export into another portal: the
//! copies match and a second import changes nothing. Then the README's
//! PostgreSQL path, line by line, on a throwaway server with nothing on it:
//! `createdb`, `migrate`, `serve` (with an import), `VACUUM (ANALYZE)` and
//! `verify`. Last, the README's Python plugin: generated, started, and
//! registered with the installed service, it refuses the README's limit
//! with the message the README shows.
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::ServerProcess;

/// `cargo install --path .` into `root`, as the README says (debug profile).
fn install(root: &Path) -> PathBuf {
    let repository = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "install",
            "--locked",
            "--offline",
            "--debug",
            "--path",
            repository,
        ])
        .arg("--root")
        .arg(root)
        .arg("--target-dir")
        .arg(Path::new(repository).join("target/newcomer"))
        .output()
        .expect("run cargo install");
    assert!(
        output.status.success(),
        "cargo install failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let binary = root.join("bin/association-service");
    assert!(binary.exists(), "installed at {}", binary.display());
    binary
}

async fn run(binary: &Path, dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(binary)
        .current_dir(dir)
        .args(args)
        .env_remove("ASSOC_CONFIG")
        .output()
        .await
        .expect("run the installed binary")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// HubSpot writes ids as strings; a few rows of each shape.
const HUBSPOT_ROWS: &str = r#"{"from_object_type": "contacts", "from_object_id": "706", "to_object_type": "companies", "to_object_id": "9001"}
{"from_object_type": "0-1", "from_object_id": "707", "to_object_type": "0-2", "to_object_id": "9001", "association_category": "HUBSPOT_DEFINED", "association_type_id": "279"}
{"from_object_type": "deals", "from_object_id": 55, "to_object_type": "contacts", "to_object_id": "706"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_import_and_export_round_trips_with_string_ids() {
    let root = tempfile::tempdir().unwrap();
    let binary = install(root.path());
    let work = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/associations.db", work.path().display());
    let server = ServerProcess::start_binary(&binary, &store, &[]).await;
    let at = ["--server", server.grpc.as_str()];
    std::fs::write(work.path().join("hubspot.jsonl"), HUBSPOT_ROWS).unwrap();

    let imported = run(
        &binary,
        work.path(),
        &[&["import", "hubspot.jsonl", "--portal", "1"], &at[..]].concat(),
    )
    .await;
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert!(
        stderr(&imported)
            .ends_with("imported hubspot.jsonl: 3 rows: 3 created, 0 already present, 0 failed\n"),
        "{}",
        stderr(&imported)
    );

    for (format, file) in [("jsonl", "portal-1.jsonl"), ("csv", "portal-1.csv")] {
        let exported = run(
            &binary,
            work.path(),
            &[
                &[
                    "export", "--portal", "1", "--format", format, "--output", file,
                ],
                &at[..],
            ]
            .concat(),
        )
        .await;
        assert!(exported.status.success(), "{}", stderr(&exported));
        assert_eq!(
            stderr(&exported),
            format!("exported 10 rows to {file}\n"),
            "3 associations both ways, and each contact's primary company (9001) both ways"
        );
    }
    let source = sorted_lines(&work.path().join("portal-1.jsonl"));

    for (portal, file) in [("2", "portal-1.jsonl"), ("3", "portal-1.csv")] {
        let copied = run(
            &binary,
            work.path(),
            &[&["import", file, "--portal", portal], &at[..]].concat(),
        )
        .await;
        assert!(copied.status.success(), "{}", stderr(&copied));
        let again = run(
            &binary,
            work.path(),
            &[&["import", file, "--portal", portal], &at[..]].concat(),
        )
        .await;
        assert!(
            stderr(&again).ends_with(&format!(
                "imported {file}: 10 rows, all already present: nothing changed\n"
            )),
            "{}",
            stderr(&again)
        );
        let copy = format!("portal-{portal}.jsonl");
        let exported = run(
            &binary,
            work.path(),
            &[&["export", "--portal", portal, "--output", &copy], &at[..]].concat(),
        )
        .await;
        assert!(exported.status.success(), "{}", stderr(&exported));
        assert_eq!(
            sorted_lines(&work.path().join(&copy)),
            source,
            "portal {portal}"
        );
    }
    server.terminate();
    postgres_path(&binary, work.path()).await;
    python_plugin(&binary, work.path()).await;
}

/// The README's Python plugin lines and the refusal it shows, run as
/// written (the plugin on a free port, the service on the installed binary
/// with the README's plugin config).
async fn python_plugin(binary: &Path, dir: &Path) {
    use tokio::io::AsyncBufReadExt;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let plugin_section = &readme[readme.find("## Admin plugins").expect("a plugin section")..];
    let generate = plugin_section
        .lines()
        .find(|l| l.starts_with("scripts/generate-clients python"))
        .expect("the README generates the Python stubs");
    let start = plugin_section
        .lines()
        .find(|l| l.starts_with("python3 examples/python/limit_policy.py"))
        .expect("the README starts the Python plugin")
        .replace("127.0.0.1:9000", "127.0.0.1:0");
    let repository = env!("CARGO_MANIFEST_DIR");
    let generated = tokio::process::Command::new("sh")
        .args(["-c", generate])
        .current_dir(repository)
        .output()
        .await
        .expect("run the generator");
    assert!(generated.status.success(), "{}", stderr(&generated));
    let mut plugin = tokio::process::Command::new("sh")
        .args(["-c", &format!("exec {start}")])
        .current_dir(repository)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python plugin");
    let mut lines = tokio::io::BufReader::new(plugin.stdout.take().unwrap()).lines();
    let listening = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the plugin says where it listens within 30 s")
        .expect("its output")
        .expect("a line");
    let addr = listening
        .strip_prefix("limit-policy listening on ")
        .unwrap_or_else(|| panic!("{listening}"))
        .to_string();

    let config_at = plugin_section
        .find("<!-- sample-plugin-config -->")
        .expect("the README shows the plugin's config");
    let block = &plugin_section[config_at..];
    let body = block.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let config = &block[body..body + block[body..].find("```").expect("closed")];
    let config_file = dir.join("plugin.toml");
    std::fs::write(&config_file, config.replace("127.0.0.1:9000", &addr)).unwrap();
    let store = format!("sqlite://{}/plugin.db", dir.display());
    let server = ServerProcess::start_binary(
        binary,
        &store,
        &[("ASSOC_CONFIG", config_file.to_str().unwrap())],
    )
    .await;

    // The README's refused CreateLimits call and the message it shows.
    let refused_block = plugin_section
        .split("```sh\n")
        .map(|b| &b[..b.find("```").unwrap_or(b.len())])
        .find(|b| b.contains("# ERROR: Code: PermissionDenied"))
        .expect("the README shows the plugin's refusal");
    let command: String = refused_block
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("127.0.0.1:50051", server.grpc.trim_start_matches("http://"));
    let message = refused_block
        .lines()
        .find_map(|l| l.strip_prefix("#   Message: "))
        .expect("the refusal's message");
    let grpcurl = tokio::process::Command::new("sh")
        .args(["-c", &command])
        .output()
        .await
        .expect("run grpcurl");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&grpcurl.stdout),
        stderr(&grpcurl)
    );
    assert!(shown.contains("Code: PermissionDenied"), "{shown}");
    assert!(shown.contains(&format!("Message: {message}")), "{shown}");
    server.terminate();
}

/// The shell lines of the README's PostgreSQL path (comments dropped).
fn postgres_path_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("<!-- postgres-path -->")
        .expect("the README has a PostgreSQL path");
    let end = readme[start..]
        .find("<!-- /postgres-path -->")
        .expect("the PostgreSQL path is closed")
        + start;
    let mut lines = Vec::new();
    let mut in_shell = false;
    for line in readme[start..end].lines() {
        match line.trim() {
            "```sh" => in_shell = true,
            "```" => in_shell = false,
            text if in_shell && !text.is_empty() => {
                let command = text.split(" # ").next().unwrap_or(text).trim();
                lines.push(command.to_string());
            }
            _ => {}
        }
    }
    lines
}

/// Runs the README's PostgreSQL path as written, on a server of its own
/// (the README's `127.0.0.1` given the server's port): every line succeeds,
/// the service serves from the new database, and `verify` passes.
async fn postgres_path(binary: &Path, dir: &Path) {
    let postgres = tokio::task::spawn_blocking(common::PrivatePostgres::start)
        .await
        .expect("start PostgreSQL");
    let port = postgres.port();
    let lines = postgres_path_lines();
    let shown = |step: &str| lines.iter().any(|l| l.starts_with(step));
    for step in [
        "createdb ",
        "export ASSOC__STORE__URL=",
        "association-service migrate",
        "association-service serve",
        "psql ",
        "association-service verify",
    ] {
        assert!(
            shown(step),
            "the README's PostgreSQL path shows `{step}`: {lines:?}"
        );
    }
    let path = format!(
        "{}:{}",
        binary.parent().expect("the binary's folder").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut env: Vec<(String, String)> = vec![("PATH".into(), path)];
    // Before `createdb`, `migrate` refuses with the hint the README quotes.
    let missing = format!("postgres://postgres@127.0.0.1:{port}/associations");
    let refused = tokio::process::Command::new(binary)
        .arg("migrate")
        .env("ASSOC__STORE__URL", &missing)
        .output()
        .await
        .expect("run migrate");
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("createdb"),
        "{}",
        stderr(&refused)
    );
    for line in lines {
        let line = line
            .replace("-h 127.0.0.1", &format!("-h 127.0.0.1 -p {port}"))
            .replace("@127.0.0.1/", &format!("@127.0.0.1:{port}/"));
        if let Some(assignment) = line.strip_prefix("export ") {
            let (name, value) = assignment.split_once('=').expect("NAME=value");
            env.push((name.to_string(), value.to_string()));
            continue;
        }
        if line.starts_with("association-service serve") {
            let store = &env
                .iter()
                .find(|(name, _)| name == "ASSOC__STORE__URL")
                .expect("the store URL is exported before serve")
                .1;
            let server = ServerProcess::start_binary(binary, store, &[]).await;
            std::fs::write(dir.join("hubspot.jsonl"), HUBSPOT_ROWS).unwrap();
            let imported = run(
                binary,
                dir,
                &[
                    "import",
                    "hubspot.jsonl",
                    "--portal",
                    "1",
                    "--server",
                    server.grpc.as_str(),
                ],
            )
            .await;
            assert!(imported.status.success(), "{}", stderr(&imported));
            server.terminate();
            continue;
        }
        let output = tokio::process::Command::new("sh")
            .args(["-c", &line])
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .await
            .expect("run sh");
        assert!(
            output.status.success(),
            "`{line}` failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
        if line.starts_with("association-service verify") {
            assert!(
                stderr(&output).contains("all 8 checks passed"),
                "{}",
                stderr(&output)
            );
        }
    }
}
