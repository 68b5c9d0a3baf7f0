//! Layered settings: compiled defaults, then an optional TOML file, then
//! environment variables `ASSOC__SECTION__KEY` (e.g. `ASSOC__STORE__URL`).
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::auth::{Authenticator, CredentialSources, JwtSettings, TokenConfig};
use crate::domain::admin::AdminEvent;
use crate::domain::ErrorKind;
use crate::hooks::audit::AUDIT_PLUGIN;
use crate::hooks::{FailurePolicy, Pacing, PluginSettings};
use crate::listen::TlsSettings;
use crate::service::ServiceSettings;

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

/// Who may call (TOML `[[auth.tokens]]`, the `[[tokens]]` of
/// `auth.tokens_file`, e.g. a mounted Kubernetes Secret, and `[auth.jwt]`);
/// none: the service runs open, which `serve` allows on loopback addresses
/// only.
#[derive(Clone, Debug, Deserialize)]
pub struct AuthSettings {
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    #[serde(default)]
    pub tokens_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub jwt: Option<JwtSettings>,
    /// How often the tokens file and JWT key files are looked at for changes.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
}

fn default_reload_interval_ms() -> u64 {
    5_000
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            tokens: Vec::new(),
            tokens_file: None,
            jwt: None,
            reload_interval_ms: default_reload_interval_ms(),
        }
    }
}

impl AuthSettings {
    /// Who may call, checked.
    pub fn authenticator(&self) -> Result<Authenticator, ConfigError> {
        Authenticator::from_sources(&CredentialSources {
            tokens: self.tokens.clone(),
            tokens_file: self.tokens_file.clone(),
            jwt: self.jwt.clone(),
            reload_interval: std::time::Duration::from_millis(self.reload_interval_ms),
        })
        .map_err(ConfigError::Invalid)
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct HookSettings {
    /// The first wait after a failed delivery; it doubles up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How often dispatchers look for changes committed by other replicas.
    pub poll_interval_ms: u64,
    /// Remote admin plugins (TOML `[[hooks.plugins]]` tables).
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
}

/// One remote admin plugin, serving `associations.v1.AdminHookService`.
#[derive(Clone, Debug, Deserialize)]
pub struct PluginConfig {
    /// Unique; its delivery position is kept under this name.
    pub name: String,
    /// `http://host:port` of the plugin's gRPC server.
    pub endpoint: String,
    /// Event names (`LIMITS_CREATED`, …, `LABEL_DELETED`); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// How long one call may take.
    #[serde(default = "default_plugin_timeout_ms")]
    pub timeout_ms: u64,
    /// `closed` (refuse the change) or `open` (let it pass) when the plugin
    /// fails or times out in ValidateChange.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
}

fn default_plugin_timeout_ms() -> u64 {
    2_000
}

impl PluginConfig {
    /// The plugin's call settings, or why the entry is invalid.
    pub fn settings(&self) -> Result<PluginSettings, ConfigError> {
        let invalid =
            |m: String| ConfigError::Invalid(format!("hooks.plugins '{}': {m}", self.name));
        let events = self
            .events
            .iter()
            .map(|e| {
                AdminEvent::parse(e).ok_or_else(|| {
                    let names: Vec<&str> = AdminEvent::ALL.iter().map(|e| e.name()).collect();
                    invalid(format!(
                        "unknown event '{e}' (events: {})",
                        names.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.timeout_ms == 0 {
            return Err(invalid("timeout_ms must be at least 1".into()));
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(invalid(
                "endpoint must start with http:// or https://".into(),
            ));
        }
        Ok(PluginSettings {
            name: self.name.clone(),
            events,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            failure_policy: self.failure_policy,
        })
    }
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
}

impl GatewaySettings {
    pub fn limits(&self) -> crate::gateway::serve::HttpLimits {
        crate::gateway::serve::HttpLimits {
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            max_request_line: self.max_request_line,
        }
    }
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
    /// Calls each port serves at once; more are refused at once (load shedding).
    pub max_concurrent_calls: usize,
    /// Longest time a call (a stream: until its first answer) may take.
    pub request_timeout_ms: u64,
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
}

impl StoreSettings {
    /// What the store needs besides its URL.
    pub fn options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            max_connections: self.max_connections,
            retry: crate::store::RetryPolicy {
                budget: std::time::Duration::from_millis(self.retry_budget_ms),
                initial_backoff: std::time::Duration::from_millis(self.retry_initial_ms),
            },
        }
    }
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
    #[error("cannot read configuration: {0}")]
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

const DEFAULTS: &[(&str, &str)] = &[
    ("server.grpc_addr", "127.0.0.1:50051"),
    ("server.calls_per_second_per_portal", "5000"),
    ("server.call_burst_per_portal", "10000"),
    ("server.max_concurrent_calls", "1024"),
    ("server.request_timeout_ms", "30000"),
    ("server.reflection", "true"),
    ("server.shutdown_grace_ms", "20000"),
    ("server.shutdown_delay_ms", "0"),
    ("server.health_check_interval_ms", "2000"),
    ("store.url", "sqlite://data/associations.db"),
    ("store.max_connections", "16"),
    ("store.retry_budget_ms", "5000"),
    ("store.retry_initial_ms", "5"),
    ("limits.platform_ceiling", "10000"),
    ("read.chunk_size", "1000"),
    (
        "read.cursor_secret",
        "association-service-default-cursor-secret",
    ),
    ("read.catalog_ttl_ms", "1000"),
    ("read.max_streams_per_portal", "256"),
    ("read.max_streams_per_caller", "64"),
    ("feed.retention_hours", "168"),
    ("feed.poll_interval_ms", "500"),
    ("feed.prune_interval_secs", "300"),
    ("gateway.http_addr", "127.0.0.1:8080"),
    ("gateway.default_portal", "1"),
    ("gateway.header_read_timeout_ms", "10000"),
    ("gateway.max_request_line", "16384"),
    ("gateway.body_read_timeout_ms", "10000"),
    ("hooks.retry_initial_ms", "200"),
    ("hooks.retry_max_ms", "30000"),
    ("hooks.poll_interval_ms", "5000"),
    ("log.filter", "info"),
    ("log.format", "text"),
];

impl Settings {
    /// Loads defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        for (key, value) in DEFAULTS {
            builder = builder.set_default(*key, *value)?;
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
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.limits.platform_ceiling == 0 || self.limits.platform_ceiling > i32::MAX as u32 {
            return invalid("limits.platform_ceiling must be between 1 and 2147483647");
        }
        if self.server.max_concurrent_calls == 0 {
            return invalid("server.max_concurrent_calls must be at least 1");
        }
        if self.server.health_check_interval_ms == 0 {
            return invalid("server.health_check_interval_ms must be at least 1");
        }
        if self.server.request_timeout_ms == 0 {
            return invalid("server.request_timeout_ms must be at least 1");
        }
        if self.read.max_streams_per_caller == 0 {
            return invalid("read.max_streams_per_caller must be at least 1");
        }
        if self.read.max_streams_per_portal == 0 {
            return invalid("read.max_streams_per_portal must be at least 1");
        }
        if self.read.chunk_size == 0 || self.read.chunk_size > 10_000 {
            return invalid("read.chunk_size must be between 1 and 10000");
        }
        if self.read.cursor_secret.len() < 16 {
            return invalid("read.cursor_secret must be at least 16 characters");
        }
        if self.feed.retention_hours == 0
            || self.feed.poll_interval_ms == 0
            || self.feed.prune_interval_secs == 0
        {
            return invalid("feed.retention_hours, feed.poll_interval_ms and feed.prune_interval_secs must be at least 1");
        }
        if self.gateway.default_portal <= 0 {
            return invalid("gateway.default_portal must be a positive portal id");
        }
        if self.hooks.retry_initial_ms == 0
            || self.hooks.retry_max_ms < self.hooks.retry_initial_ms
            || self.hooks.poll_interval_ms == 0
        {
            return invalid("hooks.retry_initial_ms and hooks.poll_interval_ms must be at least 1, and hooks.retry_max_ms at least hooks.retry_initial_ms");
        }
        let mut names = std::collections::HashSet::new();
        for plugin in &self.hooks.plugins {
            plugin.settings()?;
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
        self.auth.authenticator()?;
        if self.store.max_connections == 0 {
            return invalid("store.max_connections must be at least 1");
        }
        if self.store.retry_initial_ms == 0
            || self.store.retry_initial_ms > self.store.retry_budget_ms
        {
            return invalid(
                "store.retry_initial_ms must be at least 1 and at most store.retry_budget_ms",
            );
        }
        if !(self.store.url.starts_with("sqlite:")
            || self.store.url.starts_with("postgres://")
            || self.store.url.starts_with("postgresql://"))
        {
            return invalid("store.url must start with sqlite:, postgres:// or postgresql://");
        }
        Ok(())
    }
}

impl Settings {
    /// The service layer's tunables.
    pub fn service(&self) -> ServiceSettings {
        ServiceSettings {
            platform_ceiling: self.limits.platform_ceiling,
            read_chunk_size: self.read.chunk_size,
            cursor_secret: self.read.cursor_secret.clone(),
            feed_poll_interval: std::time::Duration::from_millis(self.feed.poll_interval_ms),
            catalog_ttl: std::time::Duration::from_millis(self.read.catalog_ttl_ms),
            max_streams_per_portal: self.read.max_streams_per_portal,
        }
    }
}

impl HookSettings {
    /// Delivery pacing of the dispatchers.
    pub fn pacing(&self) -> Pacing {
        Pacing {
            first_retry: std::time::Duration::from_millis(self.retry_initial_ms),
            max_retry: std::time::Duration::from_millis(self.retry_max_ms),
            poll: std::time::Duration::from_millis(self.poll_interval_ms),
        }
    }
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
