//! Layered settings: compiled defaults, then an optional TOML file, then
//! environment variables `ASSOC__SECTION__KEY` (e.g. `ASSOC__STORE__URL`).
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::domain::ErrorKind;
use crate::listen::TlsSettings;

mod access;
mod hooks;
pub mod keys;

pub use access::{AuthSettings, JwtSettings, TokenConfig};
pub use hooks::{FailurePolicy, HookSettings, PluginConfig, AUDIT_PLUGIN};
use keys::{Values, KEYS};

/// Everything the service can be configured with.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub limits: LimitSettings,
    pub read: ReadSettings,
    pub feed: FeedSettings,
    pub gateway: GatewaySettings,
    pub hooks: HookSettings,
    pub log: LogSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub metrics: MetricsSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// TLS on both ports; none: plain TCP.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct GatewaySettings {
    /// Where the REST gateway listens (port 0 picks a free port).
    pub http_addr: SocketAddr,
    /// The portal REST calls act on (HubSpot paths carry none).
    pub default_portal: i64,
    /// Time for a request's line and headers to arrive.
    pub header_read_timeout_ms: u64,
    /// Longest request line; a longer one is 414.
    pub max_request_line: usize,
    /// Longest wait for the next part of a request body.
    pub body_read_timeout_ms: u64,
    /// The scheme, host and path prefix clients reach the gateway at, for
    /// `paging.next.link` (none: links are relative).
    #[serde(default)]
    pub public_url: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct FeedSettings {
    /// How long changes stay readable in the change feed.
    pub retention_hours: u64,
    /// How often an idle feed reader checks for changes from other replicas.
    pub poll_interval_ms: u64,
    /// How often expired changes are removed.
    pub prune_interval_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ServerSettings {
    /// Where gRPC listens (port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// Calls a second each portal may make on one replica (both ports); 0: no limit.
    pub calls_per_second_per_portal: u32,
    /// Calls a portal may make at once above its rate before it must wait.
    pub call_burst_per_portal: u32,
    /// Calls a portal may make a UTC day on one replica (both ports); 0: no
    /// daily quota.
    pub calls_per_day_per_portal: u32,
    /// Calls each port serves at once; more are refused at once (load shedding).
    pub max_concurrent_calls: usize,
    /// Of those, the most one caller may hold.
    pub max_concurrent_calls_per_caller: usize,
    /// Of those, the most calls on one portal.
    pub max_concurrent_calls_per_portal: usize,
    /// Longest time a call (a stream: until its first answer) may take.
    pub request_timeout_ms: u64,
    /// Time a request's body has to arrive whole (a client stream: each
    /// message), both ports.
    pub request_body_timeout_ms: u64,
    /// A gRPC connection with no call in flight for this long is closed.
    pub idle_timeout_ms: u64,
    /// How often the server pings a gRPC client's connection.
    pub http2_keepalive_interval_ms: u64,
    /// How long it waits for the ping's answer before closing.
    pub http2_keepalive_timeout_ms: u64,
    /// Most calls in flight on one gRPC connection.
    pub max_streams_per_connection: u32,
    /// Largest gRPC request header block.
    pub max_header_bytes: u32,
    /// Serve gRPC reflection (open to every caller: it describes the API).
    pub reflection: bool,
    /// After SIGTERM: how long in-flight calls and streams may run on
    /// before streams are ended (each with its resume cursor).
    pub shutdown_grace_ms: u64,
    /// After SIGTERM: how long the process goes on serving while it reports
    /// not ready, so load balancers stop sending before it stops accepting.
    pub shutdown_delay_ms: u64,
    /// How often readiness asks the database.
    pub health_check_interval_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct StoreSettings {
    /// `sqlite://path` (embedded default) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
    /// How long a write that keeps losing races (deadlock, serialization
    /// failure, busy database) is retried before it fails.
    pub retry_budget_ms: u64,
    /// The first wait before such a retry (doubles each time, jittered).
    pub retry_initial_ms: u64,
    /// Longest wait for a database connection before a call fails
    /// `UNAVAILABLE`.
    pub acquire_timeout_ms: u64,
    /// Longest a call's statement may run on PostgreSQL (0: no limit).
    pub statement_timeout_ms: u64,
    /// On a Citus coordinator: send each portal's one-call writes and
    /// streams to the node that holds it.
    pub route_to_workers: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct LimitSettings {
    /// Most associations of one type a record may have, whatever admins set.
    pub platform_ceiling: u32,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ReadSettings {
    /// Associated records (or export rows) per streamed chunk.
    pub chunk_size: u32,
    /// Signs resume cursors. Set your own in production; replicas must share it.
    pub cursor_secret: String,
    /// How long a cached pair catalog serves before it is read again; bounds
    /// how late a label made on another replica is seen here.
    pub catalog_ttl_ms: u64,
    /// Most streams one portal may have open in one process at once.
    pub max_streams_per_portal: u32,
    /// Most streams one caller (token or JWT subject) may have open on one replica.
    pub max_streams_per_caller: usize,
    /// How long a stream waits for its client to read before it ends.
    pub stall_timeout_ms: u64,
}

impl ReadSettings {
    /// The per-caller and per-portal stream caps in force: never more than
    /// the stream pool (`store.max_connections`), so a caller or portal at
    /// its cap leaves connections to the others.
    pub fn stream_caps(&self, pool: u32) -> (usize, u32) {
        (
            self.max_streams_per_caller.min(pool as usize).max(1),
            self.max_streams_per_portal.min(pool).max(1),
        )
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct LogSettings {
    /// A tracing filter, e.g. `info` or `association_service=debug`.
    pub filter: String,
    /// `text` (one readable line an event) or `json` (one JSON object a line).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The Prometheus endpoint.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct MetricsSettings {
    /// Serve `/metrics` (and the HTTP probes) on this address of its own;
    /// none: `/metrics` is served on the REST gateway's port.
    #[serde(default)]
    pub addr: Option<SocketAddr>,
}

/// Traces over OTLP.
#[derive(Clone, Debug, Deserialize)]
pub struct TelemetrySettings {
    /// An OTLP/gRPC collector (e.g. `http://otel-collector:4317`); none: no traces are sent.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` spans carry.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_service_name() -> String {
    "association-service".into()
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            service_name: default_service_name(),
        }
    }
}

/// A configuration that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {}", plain_load_error(.0))]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ConfigError {
    /// A configuration that cannot be used is the caller's input error.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

impl Settings {
    /// Loads defaults, then `file` if given, then the environment. Unknown
    /// keys, sections and `ASSOC__…` variables are refused, naming the
    /// nearest known one, and every value is checked against what its key
    /// accepts.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        check_environment(std::env::vars_os().map(|(name, _)| name))?;
        let mut builder = config::Config::builder();
        for key in KEYS.iter().filter(|k| k.seeded()) {
            builder = builder.set_default(key.path, key.default.unwrap_or_default())?;
        }
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("ASSOC")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let config = builder.build()?;
        let origin = |key: &keys::Key| match key.env_var() {
            Some(var) if std::env::var_os(&var).is_some() => format!(" (set by {var})"),
            _ => file
                .map(|f| format!(" (in {})", f.display()))
                .unwrap_or_default(),
        };
        for section in keys::sections() {
            match config.get::<config::Value>(section) {
                Ok(value) if value.clone().into_table().is_err() => {
                    return Err(ConfigError::Invalid(format!(
                        "{section} must be a table ([{section}] in the file), not {value}"
                    )))
                }
                _ => {}
            }
        }
        for key in KEYS {
            let Ok(value) = config.get::<config::Value>(key.path) else {
                continue;
            };
            let text = match value.clone().into_string() {
                Ok(text) => text,
                Err(_) if matches!(key.values, Values::Tables(_)) => continue,
                Err(_) => value.to_string(),
            };
            key.values.check(&text).map_err(|problem| {
                ConfigError::Invalid(format!(
                    "{} {problem}, not {text:?}{}",
                    key.path,
                    origin(key)
                ))
            })?;
        }
        check_plugin_tables(&config)?;
        let mut unknown = Vec::new();
        let loaded: Result<Settings, _> =
            serde_ignored::deserialize(config.clone(), |path| unknown.push(path.to_string()));
        if let Some(path) = unknown.first() {
            return Err(unknown_in_file(&config, path, file));
        }
        let settings = loaded?;
        settings.validate()?;
        Ok(settings)
    }

    /// The rules that span several keys (each key's own range is checked
    /// against `keys::KEYS` while loading).
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.hooks.retry_max_ms < self.hooks.retry_initial_ms {
            return invalid("hooks.retry_max_ms must be at least hooks.retry_initial_ms");
        }
        let mut names = std::collections::HashSet::new();
        for plugin in &self.hooks.plugins {
            plugin.checked_events()?;
            if plugin.name.trim().is_empty() || plugin.name == AUDIT_PLUGIN {
                return invalid(&format!(
                    "hooks.plugins names must be non-empty and not '{AUDIT_PLUGIN}' (the built-in audit plugin)"
                ));
            }
            if !names.insert(plugin.name.as_str()) {
                return invalid(&format!(
                    "hooks.plugins name '{}' is used twice",
                    plugin.name
                ));
            }
        }
        if self.store.retry_initial_ms > self.store.retry_budget_ms {
            return invalid("store.retry_initial_ms must be at most store.retry_budget_ms");
        }
        Ok(())
    }
}

/// A loader error in plain words: "X is missing", "X must be a list, not
/// "x"", with table entries named as the file writes them.
fn plain_load_error(err: &config::ConfigError) -> String {
    let text = err.to_string();
    if let Some(key) = text
        .strip_prefix("missing configuration field \"")
        .and_then(|rest| rest.strip_suffix('"'))
    {
        return format!("{} is missing", plain_key(key));
    }
    let typed = text.strip_prefix("invalid type: ").and_then(|rest| {
        let (found, rest) = rest.split_once(", expected ")?;
        let (expected, rest) = rest.split_once(" for key `")?;
        let (key, rest) = rest.split_once('`')?;
        Some((found, expected, key, rest))
    });
    if let Some((found, expected, key, rest)) = typed {
        let expected = match expected {
            "a sequence" => "a list, e.g. [\"a\", \"b\"]",
            "a map" => "a table",
            "a string" => "text",
            "a boolean" => "true or false",
            other if other.contains("int") || other.starts_with('u') || other.starts_with('i') => {
                "a whole number"
            }
            other => other,
        };
        let found = found
            .split_once(' ')
            .map(|(_, value)| value.trim_matches('`'))
            .unwrap_or(found);
        let found = match found {
            "sequence" => "a list",
            "map" => "a table",
            other => other,
        };
        return format!("{} must be {expected}, not {found}{rest}", plain_key(key));
    }
    text
}

/// `hooks.plugins[0]endpoint` as "endpoint of [[hooks.plugins]] table 1".
fn plain_key(key: &str) -> String {
    let Some((array, rest)) = key.split_once('[') else {
        return key.to_string();
    };
    let Some((index, field)) = rest.split_once(']') else {
        return key.to_string();
    };
    let number = index.parse::<usize>().map(|i| i + 1).unwrap_or(0);
    let field = field.trim_start_matches('.');
    if field.is_empty() {
        format!("[[{array}]] table {number}")
    } else {
        format!("{field} of [[{array}]] table {number}")
    }
}

/// Refuses `ASSOC__…` variables that name no key (or a file-only one).
fn check_environment(names: impl Iterator<Item = std::ffi::OsString>) -> Result<(), ConfigError> {
    for name in names {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("ASSOC__") else {
            continue;
        };
        let path = rest.replace("__", ".").to_ascii_lowercase();
        match keys::find(&path) {
            Some(key) if key.values.from_env() => {}
            Some(key) => {
                return Err(ConfigError::Invalid(format!(
                    "{name}: {} can only be set in the configuration file",
                    key.path
                )))
            }
            None => {
                let known: Vec<String> = KEYS.iter().filter_map(|k| k.env_var()).collect();
                let hint = keys::nearest(name, known.iter().map(String::as_str))
                    .map(|k| format!("; did you mean {k}?"))
                    .unwrap_or_default();
                return Err(ConfigError::Invalid(format!(
                    "unknown environment variable {name}{hint}"
                )));
            }
        }
    }
    Ok(())
}

/// Checks each `[[hooks.plugins]]` table's values by name.
fn check_plugin_tables(config: &config::Config) -> Result<(), ConfigError> {
    let Ok(plugins) = config.get_array("hooks.plugins") else {
        return Ok(());
    };
    let checks = [
        ("failure_policy", Values::Choice(&["closed", "open"])),
        (
            "timeout_ms",
            Values::Number {
                min: 1,
                max: u64::MAX,
                unit: "ms",
            },
        ),
        ("endpoint", Values::HttpUrl),
    ];
    for (index, plugin) in plugins.into_iter().enumerate() {
        let Ok(table) = plugin.into_table() else {
            return Err(ConfigError::Invalid(format!(
                "hooks.plugins entry {} must be a [[hooks.plugins]] table",
                index + 1
            )));
        };
        let name = table
            .get("name")
            .and_then(|n| n.clone().into_string().ok())
            .unwrap_or_else(|| format!("number {}", index + 1));
        for (field, values) in &checks {
            let Some(value) = table.get(*field) else {
                continue;
            };
            let text = value
                .clone()
                .into_string()
                .unwrap_or_else(|_| value.to_string());
            values.check(&text).map_err(|problem| {
                ConfigError::Invalid(format!(
                    "hooks.plugins '{name}': {field} {problem}, not {text:?}"
                ))
            })?;
        }
    }
    Ok(())
}

/// For a field of a table array that no table has (`hooks.plugins.0.x`):
/// says so, with the table's position and the nearest field.
pub(crate) fn unknown_table_field(path: &str, fields: &[&str], place: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('.').collect();
    let at = segments.iter().position(|s| s.parse::<usize>().is_ok())?;
    let field = segments[at + 1..].join(".");
    let hint = keys::nearest(&field, fields.iter().copied())
        .map(|f| format!("; did you mean {f}?"))
        .unwrap_or_default();
    Some(format!(
        "unknown key {field} in [[{}]] table {}{place}{hint}",
        segments[..at].join("."),
        segments[at].parse::<usize>().unwrap_or(0) + 1
    ))
}

/// The error for a key or section of the file that the settings do not
/// read, naming the nearest known one.
fn unknown_in_file(config: &config::Config, path: &str, file: Option<&Path>) -> ConfigError {
    let place = file
        .map(|f| format!(" in {}", f.display()))
        .unwrap_or_default();
    // serde_ignored writes `?` for the inside of an Option (`tls.?.x`).
    let path = &path.replace(".?", "");
    let table: Vec<&str> = path
        .split('.')
        .take_while(|s| s.parse::<usize>().is_err())
        .collect();
    if let Some(Values::Tables(fields)) = keys::find(&table.join(".")).map(|k| k.values) {
        if let Some(message) = unknown_table_field(path, fields, &place) {
            return ConfigError::Invalid(message);
        }
    }
    if config.get_table(path).is_ok() && keys::find(path).is_none() {
        let hint = keys::nearest(path, keys::sections())
            .map(|s| format!("; did you mean [{s}]?"))
            .unwrap_or_default();
        return ConfigError::Invalid(format!("unknown section [{path}]{place}{hint}"));
    }
    let hint = keys::nearest(path, KEYS.iter().map(|k| k.path))
        .map(|k| format!("; did you mean {k}?"))
        .unwrap_or_default();
    ConfigError::Invalid(format!("unknown key {path}{place}{hint}"))
}

/// The store URL with any password replaced, for logs.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_logged_urls() {
        assert_eq!(
            redacted_url("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redacted_url("sqlite://data/a.db"), "sqlite://data/a.db");
    }
}
