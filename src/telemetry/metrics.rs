//! The process's Prometheus metrics (OpenMetrics text on `/metrics`): calls
//! and their latency per RPC or REST route and status, limit rejections,
//! rows streamed, feed lag, hook deliveries, store retries and the database
//! pool. One registry for the process; every layer records into it.
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// A reason from a fixed set the code names (never input).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FixedReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 16 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.00025, 2.0, 17,
    ))
}

/// The reasons a limit refuses associations (`limit_rejections`).
pub const LIMIT_REASONS: [&str; 3] = ["platform", "user_config", "merge"];
/// The server streams (`rows_streamed`).
pub const STREAMS: [&str; 7] = [
    "list",
    "batch_list",
    "batch_read",
    "export",
    "changes",
    "audit",
    "near_limit",
];
/// Why calls and streams are refused or ended (`overload_refusals`).
pub const OVERLOAD_REASONS: [&str; 7] = [
    "caller_share",
    "portal_share",
    "total",
    "body_timeout",
    "call_timeout",
    "stream_stalled",
    "credentials_ended",
];
/// Why the fast path hands a write to the full flow (`fast_path_fallbacks`).
pub const FALLBACK_REASONS: [&str; 3] = [
    "create_not_presumable",
    "create_presumption_failed",
    "archive_unlocked_row",
];

/// Every metric the service records.
pub struct Metrics {
    registry: Registry,
    grpc_calls: Family<GrpcLabels, Counter>,
    grpc_latency: Family<GrpcLabels, Histogram, fn() -> Histogram>,
    http_calls: Family<HttpLabels, Counter>,
    http_latency: Family<HttpLabels, Histogram, fn() -> Histogram>,
    limit_rejections: Family<ReasonLabels, Counter>,
    rows_streamed: Family<StreamLabels, Counter>,
    overload_refusals: Family<FixedReasonLabels, Counter>,
    fast_path_fallbacks: Family<FixedReasonLabels, Counter>,
    feed_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    hook_pending: Family<PluginLabels, Gauge>,
    hook_failures: Family<PluginLabels, Counter>,
    store_retries: Counter,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_waiting: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    // Over 80 lines because it is a table, one registration per series.
    fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("associations"),
            grpc_calls: Family::default(),
            grpc_latency: Family::new_with_constructor(latency_histogram),
            http_calls: Family::default(),
            http_latency: Family::new_with_constructor(latency_histogram),
            limit_rejections: Family::default(),
            rows_streamed: Family::default(),
            overload_refusals: Family::default(),
            fast_path_fallbacks: Family::default(),
            feed_lag: Gauge::default(),
            hook_pending: Family::default(),
            hook_failures: Family::default(),
            store_retries: Counter::default(),
            pool_connections: Family::default(),
            pool_waiting: Gauge::default(),
        };
        metrics.registry.register(
            "grpc_requests",
            "gRPC calls by method and status code",
            metrics.grpc_calls.clone(),
        );
        metrics.registry.register(
            "grpc_request_duration_seconds",
            "gRPC call latency (a stream: until its last message) by method and status code",
            metrics.grpc_latency.clone(),
        );
        metrics.registry.register(
            "http_requests",
            "REST calls by method, route and HTTP status",
            metrics.http_calls.clone(),
        );
        metrics.registry.register(
            "http_request_duration_seconds",
            "REST call latency by method, route and HTTP status",
            metrics.http_latency.clone(),
        );
        metrics.registry.register(
            "limit_rejections",
            "Associations refused by a limit: platform, user_config or merge",
            metrics.limit_rejections.clone(),
        );
        metrics.registry.register(
            "rows_streamed",
            "Rows sent by server streams, by stream",
            metrics.rows_streamed.clone(),
        );
        metrics.registry.register(
            "fast_path_fallbacks",
            "PostgreSQL writes the one-call fast path handed to the full flow, by reason: create_not_presumable (an item names the primary type or would fail), create_presumption_failed (under the locks a pair held something, a record had no primary company, a limit or a label did not hold), archive_unlocked_row",
            metrics.fast_path_fallbacks.clone(),
        );
        metrics.registry.register(
            "overload_refusals",
            "Calls and streams refused or ended to protect other callers: caller_share, portal_share, total, body_timeout, stream_stalled, credentials_ended",
            metrics.overload_refusals.clone(),
        );
        metrics.registry.register(
            "feed_lag_seconds",
            "Age of the newest change a change-feed reader was sent, when it was sent",
            metrics.feed_lag.clone(),
        );
        metrics.registry.register(
            "hook_portals_pending",
            "Portals with admin changes not yet delivered to each plugin",
            metrics.hook_pending.clone(),
        );
        metrics.registry.register(
            "hook_delivery_failures",
            "Failed deliveries of admin changes to each plugin",
            metrics.hook_failures.clone(),
        );
        metrics.registry.register(
            "store_retries",
            "Store transactions run again after losing a race",
            metrics.store_retries.clone(),
        );
        metrics.registry.register(
            "db_pool_connections",
            "Write pool connections by state (in_use, idle, max)",
            metrics.pool_connections.clone(),
        );
        metrics.registry.register(
            "db_pool_waiting",
            "Callers waiting for a write pool connection",
            metrics.pool_waiting.clone(),
        );
        metrics
    }

    /// Creates at zero every series whose labels are known before any
    /// event (a successful call of each served gRPC method, each limit
    /// reason, stream, refusal and fallback reason, each plugin's delivery
    /// failures), so alerts on them see data from the start.
    pub fn preregister<'a>(
        &self,
        grpc_methods: impl IntoIterator<Item = &'a str>,
        plugins: impl IntoIterator<Item = &'a str>,
    ) {
        for method in grpc_methods {
            let _ = self.grpc_calls.get_or_create(&GrpcLabels {
                method: method.to_string(),
                code: "Ok".to_string(),
            });
        }
        for reason in LIMIT_REASONS {
            let _ = self.limit_rejections.get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            });
        }
        for stream in STREAMS {
            let _ = self.rows_streamed.get_or_create(&StreamLabels {
                stream: stream.to_string(),
            });
        }
        for reason in OVERLOAD_REASONS {
            let _ = self
                .overload_refusals
                .get_or_create(&FixedReasonLabels { reason });
        }
        for reason in FALLBACK_REASONS {
            let _ = self
                .fast_path_fallbacks
                .get_or_create(&FixedReasonLabels { reason });
        }
        for plugin in plugins {
            let labels = PluginLabels {
                plugin: plugin.to_string(),
            };
            let _ = self.hook_failures.get_or_create(&labels);
            let _ = self.hook_pending.get_or_create(&labels);
        }
    }

    /// One finished gRPC call, with the name of its status code (`Ok`,
    /// `InvalidArgument`, …).
    pub fn grpc_call(&self, method: &str, code: &str, took: Duration) {
        let labels = GrpcLabels {
            method: method.to_string(),
            code: code.to_string(),
        };
        self.grpc_calls.get_or_create(&labels).inc();
        self.grpc_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// One finished REST call on `route` (the matched path pattern).
    pub fn http_call(&self, method: &str, route: &str, status: u16, took: Duration) {
        let labels = HttpLabels {
            method: method.to_string(),
            route: route.to_string(),
            status,
        };
        self.http_calls.get_or_create(&labels).inc();
        self.http_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// An association refused by a limit (`platform`, `user_config`, `merge`).
    pub fn limit_rejected(&self, reason: &str) {
        debug_assert!(LIMIT_REASONS.contains(&reason), "unlisted reason {reason}");
        self.limit_rejections
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// `rows` more rows sent by a `stream` stream.
    pub fn rows_streamed(&self, stream: &str, rows: u64) {
        debug_assert!(STREAMS.contains(&stream), "unlisted stream {stream}");
        self.rows_streamed
            .get_or_create(&StreamLabels {
                stream: stream.to_string(),
            })
            .inc_by(rows);
    }

    /// A call or stream refused or ended for `reason` (one of a fixed set).
    pub fn overload_refused(&self, reason: &'static str) {
        debug_assert!(
            OVERLOAD_REASONS.contains(&reason),
            "unlisted reason {reason}"
        );
        self.overload_refusals
            .get_or_create(&FixedReasonLabels { reason })
            .inc();
    }

    /// A write the fast path handed to the full flow, for `reason` (one of
    /// a fixed set).
    pub fn fast_path_fallback(&self, reason: &'static str) {
        debug_assert!(
            FALLBACK_REASONS.contains(&reason),
            "unlisted reason {reason}"
        );
        self.fast_path_fallbacks
            .get_or_create(&FixedReasonLabels { reason })
            .inc();
    }

    /// A change committed `age` ago was just sent to a feed reader.
    pub fn feed_lag(&self, age: Duration) {
        self.feed_lag.set(age.as_secs_f64());
    }

    /// `pending` portals have admin changes waiting for `plugin`.
    pub fn hook_pending(&self, plugin: &str, pending: i64) {
        self.hook_pending
            .get_or_create(&PluginLabels {
                plugin: plugin.to_string(),
            })
            .set(pending);
    }

    /// A delivery to `plugin` failed.
    pub fn hook_failed(&self, plugin: &str) {
        self.hook_failures
            .get_or_create(&PluginLabels {
                plugin: plugin.to_string(),
            })
            .inc();
    }

    /// A store transaction runs again.
    pub fn store_retried(&self) {
        self.store_retries.inc();
    }

    /// Someone starts (`1`) or stops (`-1`) waiting for a pool connection.
    pub fn pool_waiting(&self, change: i64) {
        self.pool_waiting.inc_by(change);
    }

    /// The OpenMetrics text of every metric, with the pool's state as now.
    pub fn render(&self, pool: PoolUsage) -> String {
        let in_use = pool.open.saturating_sub(pool.idle);
        for (state, value) in [("in_use", in_use), ("idle", pool.idle), ("max", pool.max)] {
            self.pool_connections
                .get_or_create(&PoolLabels { state })
                .set(value as i64);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// A connection pool's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections open.
    pub open: u32,
    /// Open connections no one is using.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}
