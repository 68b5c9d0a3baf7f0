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
    let addrs = [
        local_addr(&listeners.grpc, settings.server.grpc_addr)?,
        local_addr(&listeners.http, settings.gateway.http_addr)?,
    ];
    let authenticator = before_the_store(&settings, addrs)?;
    let store = open_store(&settings).await?;
    let backend = store.backend();
    let hooks = hooks(&settings, Arc::clone(&store))?;
    // What runs beside the front ends, stopped after them.
    let mut background = hooks.spawn_dispatchers();
    let service = AssociationService::with_hooks(store, settings.service(), hooks);
    let service = Arc::new(service);
    let feed = settings.feed.clone();
    background.push(tokio::spawn(prune_feed_forever(Arc::clone(&service), feed)));
    let limits = CallLimits::new(&settings, &service);
    background.push(limits.forget_idle_forever());

    let (routes, health) = grpc_routes(&settings, &service).await?;
    background.push(tokio::spawn(Arc::clone(&health).watch_store(
        Arc::clone(&service),
        Duration::from_millis(settings.server.health_check_interval_ms),
        STORE_PING_TIMEOUT,
    )));
    let probes = |with_metrics| {
        gateway::probes::router(Arc::clone(&health), Arc::clone(&service), with_metrics)
    };
    let rest = rest_router(&settings, &service, Arc::clone(&authenticator), &limits)
        .merge(probes(listeners.metrics.is_none()));
    let tls = |protocol| match &settings.tls {
        Some(tls) => Acceptor::tls(tls, protocol).map_err(ConfigError::Invalid),
        None => Ok(Acceptor::plain()),
    };
    let (grpc_acceptor, rest_acceptor) = (tls(Protocol::Grpc)?, tls(Protocol::Http1)?);
    announce(&settings, &authenticator, addrs, backend);

    // One shutdown signal stops every front end.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if let Some(listener) = listeners.metrics {
        background.push(tokio::spawn(gateway::serve::serve(
            Acceptor::plain().incoming(listener),
            probes(true),
            settings.gateway.limits(),
            when(&stopped),
        )));
    }
    let rest = tokio::spawn(gateway::serve::serve(
        rest_acceptor.incoming(listeners.http),
        rest,
        settings.gateway.limits(),
        when(&stopped),
    ));
    let idle = Duration::from_millis(settings.server.idle_timeout_ms);
    let grpc_acceptor = grpc_acceptor.with_idle_timeout(idle);
    let grpc = tokio::spawn(grpc_server(
        &settings,
        (authenticator, &limits),
        routes,
        grpc_acceptor.incoming(listeners.grpc),
        when(&stopped),
    ));
    shutdown.await;
    let ended = stop_front_ends(&settings, &health, &service, stop, (grpc, rest)).await;
    background.iter().for_each(|task| task.abort());
    let Some((grpc_ended, rest_ended)) = ended else {
        tracing::warn!("calls still running past the grace period were cut off");
        return Ok(());
    };
    let failed = |e| ServerError::Gateway(std::io::Error::other(e));
    grpc_ended.map_err(failed)??;
    rest_ended.map_err(failed)?;
    tracing::info!("shut down");
    Ok(())
}

/// The address a listener got (the configured one, or the port the kernel
/// chose for port 0).
fn local_addr(listener: &TcpListener, configured: SocketAddr) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        addr: configured,
        source,
    })
}

/// What comes before the store is touched: the credentials read, the
/// metrics' series registered, an open service refused beyond this machine.
fn before_the_store(
    settings: &Settings,
    addrs: [SocketAddr; 2],
) -> Result<Arc<crate::auth::Authenticator>, ServerError> {
    let authenticator = Arc::new(crate::auth::Authenticator::from_settings(&settings.auth)?);
    let methods = crate::grpc::metrics::served_methods();
    let plugins = settings.hooks.plugins.iter().map(|p| p.name.as_str());
    crate::telemetry::metrics::metrics().preregister(methods.keys().map(String::as_str), plugins);
    refuse_open_exposure(settings, &authenticator, addrs)?;
    Ok(authenticator)
}

/// Refuses to serve without authentication on an address beyond this
/// machine; with authentication, warns of the public cursor secret.
fn refuse_open_exposure(
    settings: &Settings,
    authenticator: &crate::auth::Authenticator,
    addrs: [SocketAddr; 2],
) -> Result<(), ServerError> {
    if authenticator.is_open() {
        if let Some(exposed) = addrs.into_iter().find(|a| !a.ip().is_loopback()) {
            return Err(ServerError::Insecure { addr: exposed });
        }
    } else if settings.read.cursor_secret == DEFAULT_CURSOR_SECRET {
        tracing::warn!(
            "read.cursor_secret is the public default: anyone can forge resume cursors' signatures; set a secret of your own, the same on every replica"
        );
    }
    Ok(())
}

/// Says the service is ready (its addresses, store, authentication and
/// plugins), with a warning for each unsafe setting.
fn announce(
    settings: &Settings,
    authenticator: &crate::auth::Authenticator,
    addrs: [SocketAddr; 2],
    backend: &str,
) {
    if authenticator.is_open() {
        tracing::warn!(
            "NO AUTHENTICATION: every caller on this machine can read and change every portal; configure [[auth.tokens]] before exposing the service (docs/security.md)"
        );
    }
    // The plugins, by their configured names: the built-in audit trail first.
    let plugins: Vec<&str> = std::iter::once(crate::hooks::audit::AUDIT_PLUGIN)
        .chain(settings.hooks.plugins.iter().map(|p| p.name.as_str()))
        .collect();
    let [addr, http_addr] = addrs;
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
    if settings.tls.is_none() && !authenticator.is_open() {
        if let Some(exposed) = addrs.into_iter().find(|a| !a.ip().is_loopback()) {
            tracing::warn!(
                "bearer tokens travel in clear text on {exposed}: configure [tls] unless a proxy or mesh encrypts the traffic"
            );
        }
    }
}

/// What both front ends hold callers to: admission (rates and daily
/// quotas), concurrent calls per front end, and the timeouts.
struct CallLimits {
    admission: Arc<Admission>,
    grpc_calls: Arc<CallPlaces>,
    rest_calls: Arc<CallPlaces>,
    request_timeout: Duration,
    body_timeout: Duration,
}

impl CallLimits {
    fn new(settings: &Settings, service: &Arc<AssociationService>) -> CallLimits {
        let server = &settings.server;
        // Each port has its own places.
        let call_places = || {
            Arc::new(CallPlaces::new(
                server.max_concurrent_calls,
                server.max_concurrent_calls_per_caller,
                server.max_concurrent_calls_per_portal,
            ))
        };
        CallLimits {
            admission: Arc::new(Admission::new(
                server.calls_per_second_per_portal,
                server.call_burst_per_portal,
                server.calls_per_day_per_portal,
                Arc::new(StoreLedger(Arc::clone(service))),
            )),
            grpc_calls: call_places(),
            rest_calls: call_places(),
            request_timeout: Duration::from_millis(server.request_timeout_ms),
            body_timeout: Duration::from_millis(server.request_body_timeout_ms),
        }
    }

    /// Forgets idle callers and portals once a minute.
    fn forget_idle_forever(&self) -> tokio::task::JoinHandle<()> {
        let admission = Arc::clone(&self.admission);
        let calls = [Arc::clone(&self.grpc_calls), Arc::clone(&self.rest_calls)];
        tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                every_minute.tick().await;
                admission.forget_idle();
                calls.iter().for_each(|c| c.forget_idle());
            }
        })
    }
}

/// The REST gateway, behind its guards.
fn rest_router(
    settings: &Settings,
    service: &Arc<AssociationService>,
    authenticator: Arc<crate::auth::Authenticator>,
    limits: &CallLimits,
) -> axum::Router {
    gateway::router(
        Arc::clone(service),
        gateway::Access {
            default_portal: settings.gateway.default_portal,
            authenticator,
            public_url: settings.gateway.public_url.clone(),
        },
        gateway::Guards {
            admission: Arc::clone(&limits.admission),
            calls: Arc::clone(&limits.rest_calls),
            request_timeout: limits.request_timeout,
            body_read_timeout: Duration::from_millis(settings.gateway.body_read_timeout_ms),
            body_timeout: limits.body_timeout,
        },
    )
}

/// The gRPC API's services, gRPC health (and the health it reports), and
/// reflection when configured.
async fn grpc_routes(
    settings: &Settings,
    service: &Arc<AssociationService>,
) -> Result<(tonic::service::Routes, Arc<Health>), ServerError> {
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
    let api = GrpcApi::new(Arc::clone(service));
    let mut routes = tonic::service::Routes::new(health_service)
        .add_service(AssociationWriteServer::new(api.clone()))
        .add_service(AssociationReadServer::new(api.clone()))
        .add_service(AdminConfigServer::new(api));
    if settings.server.reflection {
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
        routes = routes
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
    }
    Ok((routes, health))
}

/// The gRPC server on `incoming` until `stopped`: HTTP/2 bounds, then
/// metrics and the guards (identity, admission, stream and call caps,
/// timeouts) before `routes`. The request timeout is the guard's (an import
/// is bounded by its progress, not its length).
fn grpc_server(
    settings: &Settings,
    (authenticator, limits): (Arc<crate::auth::Authenticator>, &CallLimits),
    routes: tonic::service::Routes,
    incoming: tokio_stream::wrappers::ReceiverStream<std::io::Result<crate::listen::EdgeStream>>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send {
    let millis = Duration::from_millis;
    let guards = tower::ServiceBuilder::new()
        .layer(grpc::metrics::MetricsLayer)
        .layer(grpc::auth::AuthLayer::new(grpc::auth::Guard {
            authenticator,
            admission: Arc::clone(&limits.admission),
            streams: Arc::new(StreamCaps::new(
                settings.read.stream_caps(settings.store.max_connections).0,
            )),
            calls: Arc::clone(&limits.grpc_calls),
            body_timeout: limits.body_timeout,
            recheck: settings.auth.reload_interval(),
            request_timeout: limits.request_timeout,
        }));
    tonic::transport::Server::builder()
        .max_concurrent_streams(settings.server.max_streams_per_connection)
        .http2_max_header_list_size(settings.server.max_header_bytes)
        .http2_keepalive_interval(Some(millis(settings.server.http2_keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(millis(settings.server.http2_keepalive_timeout_ms)))
        .layer(guards)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stopped)
}

/// Resolves once the shutdown signal is sent.
fn when(stopped: &tokio::sync::watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stopped = stopped.clone();
    async move {
        let _ = stopped.wait_for(|s| *s).await;
    }
}

/// The front ends' tasks, and how each ended.
type FrontEnds<G, R> = (tokio::task::JoinHandle<G>, tokio::task::JoinHandle<R>);
type Ended<G, R> = (
    Result<G, tokio::task::JoinError>,
    Result<R, tokio::task::JoinError>,
);

/// Stops the front ends: not ready first, so load balancers stop sending;
/// then no new calls; the calls in flight get the grace period, then
/// streams end after their next chunk. How each ended, or nothing when
/// calls outlived that too.
async fn stop_front_ends<G, R>(
    settings: &Settings,
    health: &Health,
    service: &AssociationService,
    stop: tokio::sync::watch::Sender<bool>,
    (grpc, rest): FrontEnds<G, R>,
) -> Option<Ended<G, R>> {
    health.start_draining().await;
    service.drain_streams(Drain::Draining);
    tokio::time::sleep(Duration::from_millis(settings.server.shutdown_delay_ms)).await;
    let _ = stop.send(true);
    let grace = Duration::from_millis(settings.server.shutdown_grace_ms);
    tracing::info!("shutting down: finishing in-flight calls and streams (at most {grace:?})");
    let front_ends = async { (grpc.await, rest.await) };
    tokio::pin!(front_ends);
    match tokio::time::timeout(grace, &mut front_ends).await {
        Ok(results) => Some(results),
        Err(_) => {
            // Streams end after their last chunk, whose cursor resumes them.
            service.drain_streams(Drain::Stopping);
            tokio::time::timeout(STOPPING_TIME, &mut front_ends)
                .await
                .ok()
        }
    }
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
