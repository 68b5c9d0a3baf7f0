//! Wiring: opens the store, applies migrations, and serves the gRPC API (with
//! health and reflection) and the REST gateway on their listeners (tests
//! hand over ones bound to port 0).
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::server::NamedService;

use std::time::Duration;

use crate::admission::{Admission, CallPlaces};
use crate::config::keys::DEFAULT_CURSOR_SECRET;
use crate::config::{redacted_url, ConfigError, FeedSettings, Settings};
use crate::domain::ErrorKind;
use crate::gateway;
use crate::grpc::streams::StreamCaps;
use crate::grpc::{self, GrpcApi};
use crate::health::Health;
use crate::hooks::remote::RemotePlugin;
use crate::hooks::Hooks;
use crate::listen::{Acceptor, Protocol};
use crate::proto::admin_config_server::AdminConfigServer;
use crate::proto::association_read_server::AssociationReadServer;
use crate::proto::association_write_server::AssociationWriteServer;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::service::{AssociationService, Drain};
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store at {url}: {source}")]
    Store { url: String, source: StoreError },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("REST gateway failed: {0}")]
    Gateway(std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("admin plugin: {0}")]
    Plugin(String),
    #[error("refusing to serve {addr} without authentication: listen on a loopback address, or configure [[auth.tokens]] (docs/security.md)")]
    Insecure { addr: SocketAddr },
}

impl ServerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServerError::Store { source, .. } => source.kind(),
            ServerError::Config(err) => err.kind(),
            ServerError::Plugin(_) | ServerError::Insecure { .. } => ErrorKind::InvalidArgument,
            ServerError::Bind { .. } | ServerError::Transport(_) | ServerError::Gateway(_) => {
                ErrorKind::Unavailable
            }
            ServerError::Reflection(_) => ErrorKind::Internal,
        }
    }
}

/// The admin hooks: the built-in audit plugin and the configured remote ones.
pub fn hooks(settings: &Settings, store: Arc<dyn store::Store>) -> Result<Arc<Hooks>, ServerError> {
    let mut hooks = Hooks::new(store, crate::hooks::Pacing::from_settings(&settings.hooks));
    for plugin in &settings.hooks.plugins {
        let plugin_settings = crate::hooks::PluginSettings::from_config(plugin)?;
        let remote = RemotePlugin::new(&plugin.endpoint, plugin_settings.timeout)
            .map_err(ServerError::Plugin)?;
        hooks.register(plugin_settings, Arc::new(remote), false);
    }
    Ok(Arc::new(hooks))
}

/// The bound listeners of the two front ends, and of the metrics port
/// when it has one of its own.
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
    pub metrics: Option<TcpListener>,
}

/// Opens the configured store as it is, without migrating it.
pub async fn connect_store(settings: &Settings) -> Result<Arc<dyn store::Store>, ServerError> {
    connect_store_with(settings, settings.store.options()).await
}

/// Opens the configured store, as it is, without migrating; an embedded
/// store that does not exist is refused rather than made.
pub async fn connect_existing_store(
    settings: &Settings,
) -> Result<Arc<dyn store::Store>, ServerError> {
    let options = store::StoreOptions {
        create_if_missing: false,
        ..settings.store.options()
    };
    connect_store_with(settings, options).await
}

async fn connect_store_with(
    settings: &Settings,
    options: store::StoreOptions,
) -> Result<Arc<dyn store::Store>, ServerError> {
    let url = &settings.store.url;
    store::connect_with(url, &options)
        .await
        .map_err(|source| ServerError::Store {
            url: redacted_url(url),
            source,
        })
}

/// Opens the configured store and applies its migrations.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn store::Store>, ServerError> {
    let store = connect_store(settings).await?;
    let wrap = |source| ServerError::Store {
        url: redacted_url(&settings.store.url),
        source,
    };
    let applied = store.migrate().await.map_err(wrap)?;
    for step in &applied {
        tracing::info!("{step}");
    }
    if applied.is_empty() {
        tracing::info!("the {} store's schema is up to date", store.backend());
    }
    Ok(store)
}

/// Binds the configured gRPC and REST addresses.
pub async fn bind(settings: &Settings) -> Result<Listeners, ServerError> {
    let listen = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })
    };
    Ok(Listeners {
        grpc: listen(settings.server.grpc_addr).await?,
        http: listen(settings.gateway.http_addr).await?,
        metrics: match settings.metrics.addr {
            Some(addr) => Some(listen(addr).await?),
            None => None,
        },
    })
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let Listeners {
        grpc: listener,
        http: http_listener,
        metrics: metrics_listener,
    } = listeners;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: settings.server.grpc_addr,
        source,
    })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            addr: settings.gateway.http_addr,
            source,
        })?;
    // Refusals of the configuration come before the store is touched.
    let authenticator = Arc::new(crate::auth::Authenticator::from_settings(&settings.auth)?);
    crate::telemetry::metrics::metrics().preregister(
        crate::grpc::metrics::served_methods()
            .keys()
            .map(String::as_str),
        settings.hooks.plugins.iter().map(|p| p.name.as_str()),
    );
    if authenticator.is_open() {
        if let Some(exposed) = [addr, http_addr]
            .into_iter()
            .find(|a| !a.ip().is_loopback())
        {
            return Err(ServerError::Insecure { addr: exposed });
        }
    } else if settings.read.cursor_secret == DEFAULT_CURSOR_SECRET {
        tracing::warn!(
            "read.cursor_secret is the public default: anyone can forge resume cursors' signatures; set a secret of your own, the same on every replica"
        );
    }
    let store = open_store(&settings).await?;
    let backend = store.backend();
    let hooks = hooks(&settings, Arc::clone(&store))?;
    let dispatchers = hooks.spawn_dispatchers();
    let service = Arc::new(AssociationService::with_hooks(
        store,
        settings.service(),
        hooks,
    ));
    let pruner = tokio::spawn(prune_feed_forever(
        Arc::clone(&service),
        settings.feed.clone(),
    ));
    let admission = Arc::new(Admission::new(
        settings.server.calls_per_second_per_portal,
        settings.server.call_burst_per_portal,
        settings.server.calls_per_day_per_portal,
        Arc::new(StoreLedger(Arc::clone(&service))),
    ));
    let request_timeout = Duration::from_millis(settings.server.request_timeout_ms);
    let body_timeout = Duration::from_millis(settings.server.request_body_timeout_ms);
    // Each port has its own places.
    let call_places = || {
        Arc::new(CallPlaces::new(
            settings.server.max_concurrent_calls,
            settings.server.max_concurrent_calls_per_caller,
            settings.server.max_concurrent_calls_per_portal,
        ))
    };
    let (grpc_calls, rest_calls) = (call_places(), call_places());
    let rest = gateway::router(
        Arc::clone(&service),
        gateway::Access {
            default_portal: settings.gateway.default_portal,
            authenticator: Arc::clone(&authenticator),
            public_url: settings.gateway.public_url.clone(),
        },
        gateway::Guards {
            admission: Arc::clone(&admission),
            calls: Arc::clone(&rest_calls),
            request_timeout,
            body_read_timeout: Duration::from_millis(settings.gateway.body_read_timeout_ms),
            body_timeout,
        },
    );
    let api = GrpcApi::new(Arc::clone(&service));

    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health::new(
        reporter,
        &[
            <AssociationWriteServer<GrpcApi> as NamedService>::NAME,
            <AssociationReadServer<GrpcApi> as NamedService>::NAME,
            <AdminConfigServer<GrpcApi> as NamedService>::NAME,
        ],
    )
    .await;
    let health_watch = tokio::spawn(Arc::clone(&health).watch_store(
        Arc::clone(&service),
        Duration::from_millis(settings.server.health_check_interval_ms),
        STORE_PING_TIMEOUT,
    ));
    let probes = |with_metrics| {
        gateway::probes::router(Arc::clone(&health), Arc::clone(&service), with_metrics)
    };
    let rest = rest.merge(probes(metrics_listener.is_none()));
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc.ErrorInfo, so grpcurl can show error details.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let (reflection_v1, reflection_v1alpha) = match settings.server.reflection {
        true => (
            Some(reflection().build_v1()?),
            Some(reflection().build_v1alpha()?),
        ),
        false => (None, None),
    };

    if authenticator.is_open() {
        tracing::warn!(
            "NO AUTHENTICATION: every caller on this machine can read and change every portal; configure [[auth.tokens]] before exposing the service (docs/security.md)"
        );
    }
    // The plugins, by their configured names: the built-in audit trail first.
    let plugins: Vec<&str> = std::iter::once(crate::hooks::audit::AUDIT_PLUGIN)
        .chain(settings.hooks.plugins.iter().map(|p| p.name.as_str()))
        .collect();
    tracing::info!(
        "association-service ready: grpc={addr} rest={}://{http_addr} store={backend} auth={} plugins={} ({})",
        if settings.tls.is_some() {
            "https"
        } else {
            "http"
        },
        if authenticator.is_open() { "off" } else { "on" },
        plugins.join(","),
        redacted_url(&settings.store.url)
    );
    let tls = |protocol| match &settings.tls {
        Some(tls) => Acceptor::tls(tls, protocol).map_err(|e| ConfigError::Invalid(e).into()),
        None => Ok::<_, ServerError>(Acceptor::plain()),
    };
    let (grpc_acceptor, rest_acceptor) = (tls(Protocol::Grpc)?, tls(Protocol::Http1)?);
    let grpc_acceptor =
        grpc_acceptor.with_idle_timeout(Duration::from_millis(settings.server.idle_timeout_ms));
    if !grpc_acceptor.is_tls() && !authenticator.is_open() {
        if let Some(exposed) = [addr, http_addr]
            .into_iter()
            .find(|a| !a.ip().is_loopback())
        {
            tracing::warn!(
                "bearer tokens travel in clear text on {exposed}: configure [tls] unless a proxy or mesh encrypts the traffic"
            );
        }
    }
    // One shutdown signal stops both front ends.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics_server = metrics_listener.map(|listener| {
        let mut metrics_stopped = stopped.clone();
        tokio::spawn(gateway::serve::serve(
            Acceptor::plain().incoming(listener),
            probes(true),
            settings.gateway.limits(),
            async move {
                let _ = metrics_stopped.wait_for(|s| *s).await;
            },
        ))
    });
    let mut rest_stopped = stopped.clone();
    let rest = gateway::serve::serve(
        rest_acceptor.incoming(http_listener),
        rest,
        settings.gateway.limits(),
        async move {
            let _ = rest_stopped.wait_for(|s| *s).await;
        },
    );
    let rest = tokio::spawn(rest);
    let mut grpc_stopped = stopped;
    let guards = tower::ServiceBuilder::new()
        .layer(grpc::metrics::MetricsLayer)
        .layer(grpc::auth::AuthLayer::new(grpc::auth::Guard {
            authenticator,
            admission: Arc::clone(&admission),
            streams: Arc::new(StreamCaps::new(
                settings.read.stream_caps(settings.store.max_connections).0,
            )),
            calls: Arc::clone(&grpc_calls),
            body_timeout,
            recheck: settings.auth.reload_interval(),
            request_timeout,
        }));
    let forgetting = tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            admission.forget_idle();
            grpc_calls.forget_idle();
            rest_calls.forget_idle();
        }
    });
    let millis = Duration::from_millis;
    // The request timeout is the guard's (an import is bounded by its
    // progress, not its length).
    let grpc = tonic::transport::Server::builder()
        .max_concurrent_streams(settings.server.max_streams_per_connection)
        .http2_max_header_list_size(settings.server.max_header_bytes)
        .http2_keepalive_interval(Some(millis(settings.server.http2_keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(millis(settings.server.http2_keepalive_timeout_ms)))
        .layer(guards)
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(AssociationWriteServer::new(api.clone()))
        .add_service(AssociationReadServer::new(api.clone()))
        .add_service(AdminConfigServer::new(api))
        .serve_with_incoming_shutdown(grpc_acceptor.incoming(listener), async move {
            let _ = grpc_stopped.wait_for(|s| *s).await;
        });
    let grpc = tokio::spawn(grpc);
    shutdown.await;
    // Not ready first, so load balancers stop sending; then stop accepting.
    health.start_draining().await;
    service.drain_streams(Drain::Draining);
    tokio::time::sleep(Duration::from_millis(settings.server.shutdown_delay_ms)).await;
    let _ = stop.send(true);
    let grace = Duration::from_millis(settings.server.shutdown_grace_ms);
    tracing::info!("shutting down: finishing in-flight calls and streams (at most {grace:?})");
    let front_ends = async { (grpc.await, rest.await) };
    tokio::pin!(front_ends);
    let results = match tokio::time::timeout(grace, &mut front_ends).await {
        Ok(results) => Some(results),
        Err(_) => {
            // Streams end after their last chunk, whose cursor resumes them.
            service.drain_streams(Drain::Stopping);
            tokio::time::timeout(STOPPING_TIME, &mut front_ends)
                .await
                .ok()
        }
    };
    pruner.abort();
    forgetting.abort();
    health_watch.abort();
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    dispatchers.iter().for_each(|d| d.abort());
    let Some((grpc_result, rest_result)) = results else {
        tracing::warn!("calls still running past the grace period were cut off");
        return Ok(());
    };
    grpc_result.map_err(|e| ServerError::Gateway(std::io::Error::other(e)))??;
    rest_result.map_err(|e| ServerError::Gateway(std::io::Error::other(e)))?;
    tracing::info!("shut down");
    Ok(())
}

/// How long readiness waits for the database's answer.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(1);

/// How long streams ended at the grace period have to send their end.
const STOPPING_TIME: Duration = Duration::from_secs(2);

/// Removes change-feed entries past retention, and the admin changes every
/// plugin has acknowledged, every prune interval.
async fn prune_feed_forever(service: Arc<AssociationService>, feed: FeedSettings) {
    let retention_us = (feed.retention_hours * 3_600_000_000) as i64;
    let mut interval = tokio::time::interval(Duration::from_secs(feed.prune_interval_secs));
    loop {
        interval.tick().await;
        let cutoff = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
            - retention_us;
        if let Err(err) = service.prune_feed(cutoff).await {
            tracing::warn!("change feed pruning failed: {err}");
        }
        if let Err(err) = service.prune_admin_log().await {
            tracing::warn!("admin change log pruning failed: {err}");
        }
        // Yesterday's counts stay for a replica still finishing its day.
        let today = crate::admission::utc_day().0;
        if let Err(err) = service.prune_daily_calls(today.saturating_sub(1)).await {
            tracing::warn!("daily call count pruning failed: {err}");
        }
    }
}

/// The daily call quota's ledger: the service's store, shared by replicas.
struct StoreLedger(Arc<AssociationService>);

#[async_trait::async_trait]
impl crate::admission::DailyLedger for StoreLedger {
    async fn draw(&self, portal: i64, day: u64, want: u32, max: u32) -> Result<(u32, u32), String> {
        self.0
            .draw_daily_calls(portal, day, want, max)
            .await
            .map_err(|err| err.to_string())
    }
}
