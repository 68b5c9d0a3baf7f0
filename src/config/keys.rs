//! The configuration's keys: each one's dotted path, compiled default and
//! the values it accepts, in plain words. Loading checks every key found
//! against this table (unknown keys and `ASSOC__…` variables are refused
//! with the nearest known one), and the README's settings table is checked
//! against it by a test.

/// One configuration key.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// The dotted path, e.g. `server.grpc_addr`.
    pub path: &'static str,
    /// The value used when nothing sets it; `None`: unset.
    pub default: Option<&'static str>,
    /// What it accepts.
    pub values: Values,
}

/// The values a key accepts.
#[derive(Clone, Copy, Debug)]
pub enum Values {
    /// A whole number in `min..=max`, optionally of a unit (`ms`, …).
    Number {
        min: u64,
        max: u64,
        unit: &'static str,
    },
    /// `true` or `false`.
    Flag,
    /// `host:port` with an IP address.
    Address,
    /// Any text of at least this many characters.
    Text { min_chars: usize },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// `sqlite:…` or `postgres://…`.
    StoreUrl,
    /// An `http://` or `https://` URL.
    HttpUrl,
    /// A file's path.
    File,
    /// A tracing filter such as `info,association_service=debug`.
    LogFilter,
    /// TOML tables with these fields (file only).
    Tables(&'static [&'static str]),
}

impl Values {
    /// The accepted values in plain words, as the README's table shows them.
    pub fn describe(&self) -> String {
        match *self {
            Values::Number { min, max, unit } => {
                let unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                };
                if max == u64::MAX {
                    format!("{min} or more{unit}")
                } else {
                    format!("{min} to {max}{unit}")
                }
            }
            Values::Flag => "true or false".into(),
            Values::Address => "an IP address and port, e.g. 127.0.0.1:8080".into(),
            Values::Text { min_chars: 0 } => "text".into(),
            Values::Text { min_chars: 1 } => "non-empty text".into(),
            Values::Text { min_chars } => format!("text of at least {min_chars} characters"),
            Values::Choice(words) => match words.split_last() {
                Some((last, rest)) if !rest.is_empty() => {
                    format!("{} or {last}", rest.join(", "))
                }
                _ => words.join(""),
            },
            Values::StoreUrl => "sqlite://PATH or postgres://…".into(),
            Values::HttpUrl => "an http:// or https:// URL".into(),
            Values::File => "a file path".into(),
            Values::LogFilter => "a log filter, e.g. info,association_service=debug".into(),
            Values::Tables(_) => "TOML tables (file only)".into(),
        }
    }

    /// Whether an environment variable may set the key.
    pub fn from_env(&self) -> bool {
        !matches!(self, Values::Tables(_))
    }

    /// Checks one value (as text), or says in plain words what is wrong.
    pub fn check(&self, text: &str) -> Result<(), String> {
        let must_be = || format!("must be {}", self.describe());
        match *self {
            Values::Number { min, max, .. } => match text.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(()),
                _ => Err(must_be()),
            },
            Values::Flag => match text.trim() {
                "true" | "false" => Ok(()),
                _ => Err(must_be()),
            },
            Values::Address => text
                .trim()
                .parse::<std::net::SocketAddr>()
                .map(|_| ())
                .map_err(|_| must_be()),
            Values::Text { min_chars } if text.chars().count() < min_chars => Err(must_be()),
            Values::Text { .. } | Values::File => Ok(()),
            Values::Choice(words) if words.contains(&text.trim()) => Ok(()),
            Values::Choice(_) => Err(must_be()),
            Values::StoreUrl => {
                if ["sqlite:", "postgres://", "postgresql://"]
                    .iter()
                    .any(|p| text.starts_with(p))
                {
                    Ok(())
                } else {
                    Err(must_be())
                }
            }
            Values::HttpUrl => {
                if text.starts_with("http://") || text.starts_with("https://") {
                    Ok(())
                } else {
                    Err(must_be())
                }
            }
            Values::LogFilter => tracing_subscriber::EnvFilter::try_new(text)
                .map(|_| ())
                .map_err(|err| format!("{} ({err})", must_be())),
            Values::Tables(_) => Ok(()),
        }
    }
}

const fn key(path: &'static str, default: Option<&'static str>, values: Values) -> Key {
    Key {
        path,
        default,
        values,
    }
}

const fn at_least(min: u64, unit: &'static str) -> Values {
    Values::Number {
        min,
        max: u64::MAX,
        unit,
    }
}

const fn between(min: u64, max: u64) -> Values {
    Values::Number { min, max, unit: "" }
}

const MS: &str = "ms";
const U32_MAX: u64 = u32::MAX as u64;

/// Fields of a `[[auth.tokens]]` table (and of a tokens file's `[[tokens]]`).
pub const TOKEN_FIELDS: &[&str] = &["name", "sha256", "portals", "all_portals", "roles"];
/// Fields of a `[[hooks.plugins]]` table.
pub const PLUGIN_FIELDS: &[&str] = &["name", "endpoint", "events", "timeout_ms", "failure_policy"];

/// The cursor secret every installation has until it sets its own.
pub const DEFAULT_CURSOR_SECRET: &str = "association-service-default-cursor-secret";

/// Every key, in the README's order.
pub const KEYS: &[Key] = &[
    key("server.grpc_addr", Some("127.0.0.1:50051"), Values::Address),
    key(
        "store.url",
        Some("sqlite://data/associations.db"),
        Values::StoreUrl,
    ),
    key("store.max_connections", Some("16"), between(1, U32_MAX)),
    key("store.retry_budget_ms", Some("5000"), at_least(0, MS)),
    key("store.retry_initial_ms", Some("5"), at_least(1, MS)),
    key("store.acquire_timeout_ms", Some("1000"), at_least(1, MS)),
    key("store.statement_timeout_ms", Some("30000"), at_least(0, MS)),
    key("store.route_to_workers", Some("false"), Values::Flag),
    key(
        "limits.platform_ceiling",
        Some("10000"),
        between(1, i32::MAX as u64),
    ),
    key("read.chunk_size", Some("1000"), between(1, 10_000)),
    key(
        "read.cursor_secret",
        Some(DEFAULT_CURSOR_SECRET),
        Values::Text { min_chars: 16 },
    ),
    key("read.catalog_ttl_ms", Some("1000"), at_least(0, MS)),
    key(
        "read.max_streams_per_portal",
        Some("8"),
        between(1, U32_MAX),
    ),
    key("read.max_streams_per_caller", Some("4"), at_least(1, "")),
    key("read.stall_timeout_ms", Some("10000"), at_least(1, MS)),
    key("feed.retention_hours", Some("168"), at_least(1, "hours")),
    key("feed.poll_interval_ms", Some("500"), at_least(1, MS)),
    key(
        "feed.prune_interval_secs",
        Some("300"),
        at_least(1, "seconds"),
    ),
    key(
        "server.calls_per_second_per_portal",
        Some("5000"),
        between(0, U32_MAX),
    ),
    key(
        "server.calls_per_day_per_portal",
        Some("0"),
        between(0, U32_MAX),
    ),
    key(
        "server.call_burst_per_portal",
        Some("10000"),
        between(0, U32_MAX),
    ),
    key("server.max_concurrent_calls", Some("1024"), at_least(1, "")),
    key(
        "server.max_concurrent_calls_per_caller",
        Some("256"),
        at_least(1, ""),
    ),
    key(
        "server.max_concurrent_calls_per_portal",
        Some("512"),
        at_least(1, ""),
    ),
    key("server.request_timeout_ms", Some("30000"), at_least(1, MS)),
    key(
        "server.request_body_timeout_ms",
        Some("10000"),
        at_least(1, MS),
    ),
    key("server.idle_timeout_ms", Some("60000"), at_least(1, MS)),
    key(
        "server.http2_keepalive_interval_ms",
        Some("30000"),
        at_least(1, MS),
    ),
    key(
        "server.http2_keepalive_timeout_ms",
        Some("10000"),
        at_least(1, MS),
    ),
    key(
        "server.max_streams_per_connection",
        Some("100"),
        between(1, U32_MAX),
    ),
    key(
        "server.max_header_bytes",
        Some("16384"),
        between(1024, U32_MAX),
    ),
    key("server.reflection", Some("true"), Values::Flag),
    key("server.shutdown_grace_ms", Some("20000"), at_least(0, MS)),
    key("server.shutdown_delay_ms", Some("0"), at_least(0, MS)),
    key(
        "server.health_check_interval_ms",
        Some("2000"),
        at_least(1, MS),
    ),
    key("metrics.addr", None, Values::Address),
    key("log.filter", Some("info"), Values::LogFilter),
    key(
        "log.format",
        Some("text"),
        Values::Choice(&["text", "json"]),
    ),
    key("telemetry.otlp_endpoint", None, Values::HttpUrl),
    key(
        "telemetry.service_name",
        Some("association-service"),
        Values::Text { min_chars: 1 },
    ),
    key("gateway.http_addr", Some("127.0.0.1:8080"), Values::Address),
    key(
        "gateway.default_portal",
        Some("1"),
        between(1, i64::MAX as u64),
    ),
    key(
        "gateway.header_read_timeout_ms",
        Some("10000"),
        at_least(1, MS),
    ),
    key(
        "gateway.max_request_line",
        Some("16384"),
        at_least(1, "bytes"),
    ),
    key(
        "gateway.body_read_timeout_ms",
        Some("10000"),
        at_least(1, MS),
    ),
    key("gateway.public_url", None, Values::HttpUrl),
    key("tls.cert_file", None, Values::File),
    key("tls.key_file", None, Values::File),
    key("tls.client_ca_file", None, Values::File),
    key("tls.reload_interval_ms", Some("5000"), at_least(1, MS)),
    key("tls.handshake_timeout_ms", Some("10000"), at_least(1, MS)),
    key("auth.tokens", None, Values::Tables(TOKEN_FIELDS)),
    key("auth.tokens_file", None, Values::File),
    key("auth.jwt.issuer", None, Values::Text { min_chars: 1 }),
    key("auth.jwt.audience", None, Values::Text { min_chars: 1 }),
    key("auth.jwt.keys_file", None, Values::File),
    key("auth.jwt.secret_file", None, Values::File),
    key(
        "auth.jwt.leeway_seconds",
        Some("30"),
        at_least(0, "seconds"),
    ),
    key("auth.reload_interval_ms", Some("5000"), at_least(1, MS)),
    key("hooks.retry_initial_ms", Some("200"), at_least(1, MS)),
    key("hooks.retry_max_ms", Some("30000"), at_least(1, MS)),
    key("hooks.poll_interval_ms", Some("5000"), at_least(1, MS)),
    key("hooks.plugins", None, Values::Tables(PLUGIN_FIELDS)),
];

impl Key {
    /// The environment variable that sets it, e.g. `ASSOC__SERVER__GRPC_ADDR`.
    pub fn env_var(&self) -> Option<String> {
        self.values
            .from_env()
            .then(|| format!("ASSOC__{}", self.path.replace('.', "__").to_uppercase()))
    }

    /// Whether its default is set before the file is read. Keys of the
    /// optional `[tls]` and `[auth.jwt]` tables are not: setting any of
    /// them turns the feature on, and their defaults apply within it.
    pub fn seeded(&self) -> bool {
        self.default.is_some()
            && !self.path.starts_with("tls.")
            && !self.path.starts_with("auth.jwt.")
    }
}

/// The key at `path`.
pub fn find(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// The candidate most like `word`, if one is close enough to be a typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(&word, &c.to_ascii_lowercase()), c))
        .filter(|(distance, c)| *distance <= (c.len() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// The sections (first path segments) and sub-tables of every key.
pub fn sections() -> Vec<&'static str> {
    let mut sections: Vec<&'static str> = KEYS
        .iter()
        .filter_map(|k| k.path.rsplit_once('.').map(|(table, _)| table))
        .collect();
    sections.dedup();
    sections.sort();
    sections.dedup();
    sections
}
