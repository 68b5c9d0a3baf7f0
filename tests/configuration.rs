//! Configuration as a newcomer meets it: every mistake (a misspelt key or
//! variable, an unknown section, a bad value) stops the binary with exit
//! status 2 and one message in plain words, checked to the letter here; and
//! the README's settings table lists exactly the keys the settings struct
//! reads, with the defaults and values the loader applies
//! (`UPDATE_GOLDEN=1` rewrites the table's generated columns).
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use association_service::config::keys::{Values, KEYS};
use association_service::config::Settings;
use serde_reflection::{ContainerFormat, Format, Samples, Tracer, TracerConfig};

/// Runs `migrate` with only `env` set and `config` (if any) as the file;
/// answers the exit status and standard error.
fn run(env: &[(&str, &str)], config: Option<&str>) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_association-service"));
    command
        .env_clear()
        .current_dir(dir.path())
        .envs(env.iter().copied());
    if let Some(text) = config {
        std::fs::write(dir.path().join("service.toml"), text).unwrap();
        command.args(["--config", "service.toml"]);
    }
    let output = command.arg("migrate").output().expect("run the binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).trim().to_string(),
    )
}

fn refused(env: &[(&str, &str)], config: Option<&str>, message: &str) {
    let (code, stderr) = run(env, config);
    assert_eq!(
        stderr,
        format!("association-service: invalid configuration: {message}")
    );
    assert_eq!(code, Some(2), "{stderr}");
}

/// Credentials the settings name are read and checked before any command
/// runs (here `migrate`, which needs none of them): a tokens file that is
/// not there, or a token whose hash is not one, stops it with exit 2.
#[test]
fn named_credentials_are_checked_before_any_command() {
    refused(
        &[("ASSOC__AUTH__TOKENS_FILE", "/nonexistent/tokens.toml")],
        None,
        "/nonexistent/tokens.toml: No such file or directory (os error 2)",
    );
    let (code, stderr) = run(
        &[],
        Some("[[auth.tokens]]\nname = \"a\"\nsha256 = \"00\"\nroles = [\"read\"]\n"),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("association-service: invalid configuration: auth.tokens 'a': "),
        "{stderr}"
    );
}

#[test]
fn a_misspelt_variable_is_named_with_the_nearest_one() {
    refused(
        &[("ASSOC__SERVER__GRPC_ADRR", "127.0.0.1:1")],
        None,
        "unknown environment variable ASSOC__SERVER__GRPC_ADRR; did you mean ASSOC__SERVER__GRPC_ADDR?",
    );
    refused(
        &[("ASSOC__HOOKS__PLUGINS", "x")],
        None,
        "ASSOC__HOOKS__PLUGINS: hooks.plugins can only be set in the configuration file",
    );
}

#[test]
fn a_misspelt_key_or_section_is_named_with_the_nearest_one() {
    refused(
        &[],
        Some("[server]\ngrpc_adrr = \"127.0.0.1:1\"\n"),
        "unknown key server.grpc_adrr in service.toml; did you mean server.grpc_addr?",
    );
    refused(
        &[],
        Some("[sever]\ngrpc_addr = \"127.0.0.1:1\"\n"),
        "unknown section [sever] in service.toml; did you mean [server]?",
    );
    refused(
        &[],
        Some("[tls]\ncert_fil = \"server.pem\"\n"),
        "unknown key tls.cert_fil in service.toml; did you mean tls.cert_file?",
    );
    refused(
        &[],
        Some("[[hooks.plugins]]\nname = \"p\"\nendpoint = \"http://p:1\"\nfailure_polcy = \"open\"\n"),
        "unknown key failure_polcy in [[hooks.plugins]] table 1 in service.toml; did you mean failure_policy?",
    );
    refused(
        &[],
        Some("[[auth.tokens]]\nname = \"a\"\nsha256 = \"00\"\nrols = [\"read\"]\n"),
        "unknown key rols in [[auth.tokens]] table 1 in service.toml; did you mean roles?",
    );
}

#[test]
fn a_bad_value_says_what_the_key_accepts_and_where_it_was_set() {
    refused(
        &[("ASSOC__SERVER__REQUEST_TIMEOUT_MS", "abc")],
        None,
        "server.request_timeout_ms must be 1 or more ms, not \"abc\" (set by ASSOC__SERVER__REQUEST_TIMEOUT_MS)",
    );
    refused(
        &[],
        Some("[read]\ncursor_secret = \"short\"\n"),
        "read.cursor_secret must be text of at least 16 characters, not \"short\" (in service.toml)",
    );
    refused(
        &[],
        Some("[read]\nchunk_size = 0\n"),
        "read.chunk_size must be 1 to 10000, not \"0\" (in service.toml)",
    );
    refused(
        &[("ASSOC__LOG__FORMAT", "yaml")],
        None,
        "log.format must be text or json, not \"yaml\" (set by ASSOC__LOG__FORMAT)",
    );
    refused(
        &[("ASSOC__LOG__FILTER", "[[[")],
        None,
        "log.filter must be a log filter, e.g. info,association_service=debug (invalid filter directive), not \"[[[\" (set by ASSOC__LOG__FILTER)",
    );
    refused(
        &[],
        Some("[[hooks.plugins]]\nname = \"p\"\nendpoint = \"http://p:1\"\nfailure_policy = \"sideways\"\n"),
        "hooks.plugins 'p': failure_policy must be closed or open, not \"sideways\"",
    );
    refused(
        &[],
        Some("server = 5\n"),
        "server must be a table ([server] in the file), not 5",
    );
    refused(
        &[("ASSOC__HOOKS__RETRY_MAX_MS", "10")],
        None,
        "hooks.retry_max_ms must be at least hooks.retry_initial_ms",
    );
}

/// What the loader itself refuses (a missing field, a value of the wrong
/// kind inside a table) is said in plain words too.
#[test]
fn missing_fields_and_wrong_kinds_are_plain_words() {
    let loader = |text: &str| {
        let (code, stderr) = run(&[], Some(text));
        assert_eq!(code, Some(2), "{stderr}");
        stderr
    };
    assert_eq!(
        loader("[auth.jwt]\naudience = \"x\"\n"),
        "association-service: cannot read configuration: auth.jwt.issuer is missing"
    );
    assert_eq!(
        loader("[[hooks.plugins]]\nname = \"p\"\n"),
        "association-service: cannot read configuration: endpoint of [[hooks.plugins]] table 1 is missing"
    );
    assert_eq!(
        loader("[[auth.tokens]]\nname = \"a\"\nsha256 = \"00\"\nportals = \"x\"\nroles = [\"read\"]\n"),
        "association-service: cannot read configuration: portals of [[auth.tokens]] table 1 must be a list, e.g. [\"a\", \"b\"], not \"x\""
    );
}

#[test]
fn the_config_file_may_come_from_assoc_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.toml"), "[sever]\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_association-service"))
        .env_clear()
        .current_dir(dir.path())
        .env("ASSOC_CONFIG", "mine.toml")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "association-service: invalid configuration: unknown section [sever] in mine.toml; did you mean [server]?"
    );
}

/// `serve --port` is not an option: it is refused (exit 2) with where the
/// addresses are set, before anything is opened.
#[test]
fn serve_with_a_port_says_where_addresses_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_association-service"))
        .env_clear()
        .current_dir(dir.path())
        .args(["serve", "--port", "8080"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "association-service: serve takes its addresses from the configuration, not --port 8080: set ASSOC__SERVER__GRPC_ADDR=127.0.0.1:8080 (gRPC) or ASSOC__GATEWAY__HTTP_ADDR=127.0.0.1:8080 (REST), or server.grpc_addr / gateway.http_addr in --config FILE"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing opened"
    );
}

/// Every documented key is read: a file setting each one to a valid value
/// loads without an unknown-key error.
#[test]
fn every_listed_key_is_read_by_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(file("s.key"), "x").unwrap();
    let mut toml = String::new();
    let mut tables: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for key in KEYS {
        let (table, name) = key.path.rsplit_once('.').unwrap();
        let value = match key.values {
            Values::Tables(_) => continue,
            Values::File => format!("{:?}", file("missing")),
            Values::HttpUrl => "\"http://collector:4317\"".into(),
            Values::Address => "\"127.0.0.1:0\"".into(),
            _ => match key.default {
                Some(default) => match key.values {
                    Values::Number { .. } | Values::Flag => default.to_string(),
                    _ => format!("{default:?}"),
                },
                None => "\"value\"".into(),
            },
        };
        tables
            .entry(table)
            .or_default()
            .push(format!("{name} = {value}"));
    }
    for (table, lines) in &tables {
        toml.push_str(&format!("[{table}]\n{}\n", lines.join("\n")));
    }
    let path = dir.path().join("all.toml");
    std::fs::write(&path, &toml).unwrap();
    match Settings::load(Some(&path)) {
        Ok(_) => {}
        Err(err) => {
            let message = err.to_string();
            // Every key is accepted; what fails is only the files it names.
            assert!(
                !message.contains("unknown"),
                "a listed key is not read: {message}\n{toml}"
            );
        }
    }
}

/// The keys of the settings struct: its leaf fields' dotted paths (a list
/// of tables is one key).
fn struct_keys() -> Vec<String> {
    let mut tracer = Tracer::new(TracerConfig::default());
    let samples = Samples::new();
    let (root, _) = tracer.trace_type::<Settings>(&samples).expect("trace");
    // Enums (SocketAddr, LogFormat, …) are leaves here: their variants need not be traced.
    let registry = tracer.registry_unchecked();
    let mut keys = Vec::new();
    fn walk(
        prefix: &str,
        format: &Format,
        registry: &serde_reflection::Registry,
        keys: &mut Vec<String>,
    ) {
        let format = match format {
            Format::Option(inner) => inner.as_ref(),
            other => other,
        };
        if let Format::TypeName(name) = format {
            if let Some(ContainerFormat::Struct(fields)) = registry.get(name) {
                for field in fields {
                    let path = if prefix.is_empty() {
                        field.name.clone()
                    } else {
                        format!("{prefix}.{}", field.name)
                    };
                    walk(&path, &field.value, registry, keys);
                }
                return;
            }
        }
        keys.push(prefix.to_string());
    }
    walk("", &root, &registry, &mut keys);
    keys.sort();
    keys
}

#[test]
fn the_key_table_lists_exactly_the_settings_struct_keys() {
    let mut listed: Vec<String> = KEYS.iter().map(|k| k.path.to_string()).collect();
    listed.sort();
    assert_eq!(listed, struct_keys());
}

/// The README's settings table: its rows by key, each row's cells.
fn readme_rows(readme: &str) -> (usize, usize, Vec<Vec<String>>) {
    let header = readme
        .find("| key | env | default | values | meaning |")
        .or_else(|| readme.find("| key | env | default | meaning |"))
        .expect("the README has a settings table");
    let end = readme[header..]
        .find("\n\n")
        .map(|n| header + n + 1)
        .unwrap_or(readme.len());
    let rows = readme[header..end]
        .lines()
        .skip(2)
        .map(|line| {
            let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
            inner.split(" | ").map(|c| c.trim().to_string()).collect()
        })
        .collect();
    (header, end, rows)
}

fn generated_cells(key: &association_service::config::keys::Key) -> [String; 4] {
    [
        format!("`{}`", key.path),
        key.env_var()
            .map(|v| format!("`{v}`"))
            .unwrap_or_else(|| "(file only)".into()),
        key.default
            .map(|d| format!("`{d}`"))
            .unwrap_or_else(|| "none".into()),
        key.values.describe(),
    ]
}

#[test]
fn the_readme_settings_table_matches_the_keys() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (start, end, rows) = readme_rows(&readme);
    let meanings: BTreeMap<String, String> = rows
        .iter()
        .map(|cells| (cells[0].clone(), cells.last().cloned().unwrap_or_default()))
        .collect();
    let mut table =
        String::from("| key | env | default | values | meaning |\n|---|---|---|---|---|\n");
    for key in KEYS {
        let cells = generated_cells(key);
        let meaning = meanings.get(&cells[0]).cloned().unwrap_or_default();
        table.push_str(&format!("| {} | {meaning} |\n", cells.join(" | ")));
    }
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        let updated = format!("{}{}{}", &readme[..start], table, &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[start..end],
        table,
        "README.md's settings table differs from config::keys::KEYS (UPDATE_GOLDEN=1 rewrites its generated columns)"
    );
    for key in KEYS {
        assert!(
            !meanings
                .get(&format!("`{}`", key.path))
                .map(String::as_str)
                .unwrap_or("")
                .is_empty(),
            "README.md explains {}",
            key.path
        );
    }
}

/// `migrate` names each migration it applies, then says the schema is up
/// to date; PostgreSQL's notices (`relation … already exists, skipping`)
/// never reach the log, and every line is at info or above.
#[tokio::test]
async fn migrate_says_what_it_applied_and_postgres_notices_stay_quiet() {
    for url in [
        format!(
            "sqlite://{}/a.db",
            tempfile::tempdir().unwrap().keep().display()
        ),
        common::fresh_postgres_database().await,
    ] {
        let (code, first) = run(&[("ASSOC__STORE__URL", url.as_str())], None);
        assert_eq!(code, Some(0), "{first}");
        assert!(
            first.contains(
                "INFO association_service::server: applied migration 20261122000001 associations"
            ),
            "{first}"
        );
        let (_, second) = run(&[("ASSOC__STORE__URL", url.as_str())], None);
        let lines: Vec<&str> = second.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {second}");
        assert!(
            lines[0].ends_with("store's schema is up to date"),
            "{second}"
        );
        assert!(
            !first.contains("already exists") && !first.contains("NOTICE"),
            "{first}"
        );
    }
}

/// Migrations run without the calls' statement timeout (an index build on
/// a large table may take minutes): they apply with a 1 ms one set.
#[tokio::test]
async fn migrations_ignore_the_statement_timeout() {
    let url = common::fresh_postgres_database().await;
    let (code, log) = run(
        &[
            ("ASSOC__STORE__URL", url.as_str()),
            ("ASSOC__STORE__STATEMENT_TIMEOUT_MS", "1"),
        ],
        None,
    );
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("applied migration 20261203000009 hook leases"),
        "{log}"
    );
}
