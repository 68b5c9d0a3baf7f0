//! Admin plugin hooks: the `AdminPlugin` trait (in-process or remote over
//! the `associations.v1.AdminHookService` gRPC service), the registry that asks
//! plugins before an admin change commits, and the dispatchers that feed
//! them committed changes from the durable outbox (the admin change log),
//! at least once and in order per portal. Replicas sharing a database
//! deliver each portal's changes to a remote plugin from one replica at a
//! time, the holder of a lease in the database, so in normal operation each
//! change is delivered once; a replica that dies leaves its lease to expire
//! (`LEASE_TTL`) and another takes over.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, Notify};

pub use crate::config::FailurePolicy;
use crate::config::{ConfigError, HookSettings, PluginConfig};
use crate::domain::admin::{idempotency_key, AdminChange, AdminEvent};
use crate::domain::DomainError;
use crate::domain::ErrorKind;
use crate::store::{Store, StoreError};

pub mod audit;
pub mod remote;

/// A plugin's answer to a proposed change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse the change; the admin sees the message.
    Deny(String),
}

/// A plugin call that did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{0}")]
    Failed(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl HookError {
    /// A plugin that gave no answer is unavailable.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Unavailable
    }
}

/// Why a delivery round stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("plugin {plugin} did not take change {key}: {source}")]
    Plugin {
        plugin: String,
        key: String,
        source: HookError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DeliveryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DeliveryError::Plugin { source, .. } => source.kind(),
            DeliveryError::Store(err) => err.kind(),
        }
    }
}

/// What an admin plugin implements (in-process, or remotely as the
/// `AdminHookService` gRPC service).
#[async_trait]
pub trait AdminPlugin: Send + Sync {
    /// Called before a change commits; may refuse it.
    async fn validate_change(&self, change: &AdminChange) -> Result<Verdict, HookError>;
    /// Called after a change committed, at least once; `key` is the same on
    /// every delivery of the same change.
    async fn change_committed(
        &self,
        key: &str,
        seq: i64,
        change: &AdminChange,
    ) -> Result<(), HookError>;
}

/// How one plugin is called.
#[derive(Clone, Debug)]
pub struct PluginSettings {
    /// Unique; names the plugin's delivery position in the store.
    pub name: String,
    /// The events it receives (empty: every event).
    pub events: Vec<AdminEvent>,
    pub timeout: Duration,
    pub failure_policy: FailurePolicy,
}

impl PluginSettings {
    /// How a configured plugin is called, or why its entry is invalid.
    pub fn from_config(config: &PluginConfig) -> Result<PluginSettings, ConfigError> {
        Ok(PluginSettings {
            name: config.name.clone(),
            events: config.checked_events()?,
            timeout: Duration::from_millis(config.timeout_ms),
            failure_policy: config.failure_policy,
        })
    }

    fn wants(&self, event: AdminEvent) -> bool {
        self.events.is_empty() || self.events.contains(&event)
    }
}

/// Delivery pacing: backoff after a failure, and the idle check interval.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    pub first_retry: Duration,
    pub max_retry: Duration,
    pub poll: Duration,
}

impl Pacing {
    /// Delivery pacing of the dispatchers, as `[hooks]` sets it.
    pub fn from_settings(settings: &HookSettings) -> Pacing {
        Pacing {
            first_retry: Duration::from_millis(settings.retry_initial_ms),
            max_retry: Duration::from_millis(settings.retry_max_ms),
            poll: Duration::from_millis(settings.poll_interval_ms),
        }
    }
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing {
            first_retry: Duration::from_millis(200),
            max_retry: Duration::from_secs(30),
            poll: Duration::from_secs(5),
        }
    }
}

struct Registered {
    settings: PluginSettings,
    plugin: Arc<dyn AdminPlugin>,
    /// Delivered to right after each admin call, not only by its dispatcher.
    inline: bool,
    /// Held while delivering, so each portal's changes go out in order.
    delivering: Mutex<()>,
    wake: Notify,
}

/// How long a replica's lease on delivering one portal's changes to one
/// plugin lasts; each delivery round renews it.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// Changes read from the outbox per round trip.
const OUTBOX_PAGE: u32 = 100;

/// A failing portal's retry schedule for one plugin.
struct Backoff {
    /// The wait after the latest failure (doubles each time).
    delay: Duration,
    retry_at: tokio::time::Instant,
}

impl Backoff {
    fn new(first: Duration) -> Backoff {
        Backoff {
            delay: first / 2,
            retry_at: tokio::time::Instant::now(),
        }
    }

    fn failed(&mut self, max: Duration) {
        self.delay = (self.delay * 2).min(max);
        self.retry_at = tokio::time::Instant::now() + self.delay;
    }
}

/// The registered plugins over one store.
pub struct Hooks {
    store: Arc<dyn Store>,
    plugins: Vec<Arc<Registered>>,
    pacing: Pacing,
    /// This process's name on delivery leases.
    holder: String,
}

impl Hooks {
    /// Hooks with only the built-in audit plugin.
    pub fn new(store: Arc<dyn Store>, pacing: Pacing) -> Hooks {
        let mut hooks = Hooks {
            store: Arc::clone(&store),
            plugins: Vec::new(),
            pacing,
            holder: uuid::Uuid::new_v4().to_string(),
        };
        hooks.register(
            audit::settings(),
            Arc::new(audit::AuditPlugin::new(store)),
            true,
        );
        hooks
    }

    /// Adds a plugin; `inline` plugins (in-process ones) are also delivered
    /// to right after each admin call, so their effects are visible when the
    /// call returns.
    pub fn register(
        &mut self,
        settings: PluginSettings,
        plugin: Arc<dyn AdminPlugin>,
        inline: bool,
    ) {
        self.plugins.push(Arc::new(Registered {
            settings,
            plugin,
            inline,
            delivering: Mutex::new(()),
            wake: Notify::new(),
        }));
    }

    /// Asks every plugin that wants this event; the first refusal (or a
    /// failing fail-closed plugin) refuses the change.
    /// Removes the admin changes every registered plugin has acknowledged
    /// (the log only feeds the plugins); answers how many.
    pub async fn prune_log(&self) -> Result<u64, StoreError> {
        let names: Vec<String> = self
            .plugins
            .iter()
            .map(|r| r.settings.name.clone())
            .collect();
        if names.is_empty() {
            return Ok(0);
        }
        self.store.prune_admin_log(&names).await
    }

    /// Whether any plugin is asked about `event` before it commits.
    pub fn validates(&self, event: AdminEvent) -> bool {
        self.plugins.iter().any(|reg| reg.settings.wants(event))
    }

    pub async fn validate(&self, change: &AdminChange) -> Result<(), DomainError> {
        for reg in &self.plugins {
            let s = &reg.settings;
            if !s.wants(change.event) {
                continue;
            }
            let answer = tokio::time::timeout(s.timeout, reg.plugin.validate_change(change))
                .await
                .unwrap_or(Err(HookError::Timeout(s.timeout)));
            match answer {
                Ok(Verdict::Allow) => {}
                Ok(Verdict::Deny(message)) => {
                    return Err(DomainError::ChangeDenied {
                        plugin: s.name.clone(),
                        message,
                    })
                }
                Err(err) if s.failure_policy == FailurePolicy::Open => {
                    tracing::warn!(plugin = %s.name, "plugin failed, failing open: {err}");
                }
                Err(err) => {
                    tracing::warn!(plugin = %s.name, "plugin failed, failing closed: {err}");
                    return Err(DomainError::PluginUnavailable {
                        plugin: s.name.clone(),
                        reason: err.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Called after an admin change of `portal` committed: inline plugins
    /// receive it now, the others' dispatchers are woken.
    pub async fn committed(&self, portal: i64) {
        for reg in &self.plugins {
            if reg.inline {
                if let Err(err) = self.deliver_portal(reg, portal).await {
                    tracing::warn!("{err}; its dispatcher will retry");
                    reg.wake.notify_one();
                }
            } else {
                reg.wake.notify_one();
            }
        }
    }

    /// Starts one dispatcher per plugin; they run until aborted.
    pub fn spawn_dispatchers(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        self.plugins
            .iter()
            .map(|reg| tokio::spawn(Arc::clone(self).dispatch_forever(Arc::clone(reg))))
            .collect()
    }

    /// Delivers everything pending, then waits to be woken (or polls, for
    /// changes other replicas committed). A portal whose delivery fails is
    /// retried on its own exponential backoff while the other portals'
    /// changes keep going out.
    async fn dispatch_forever(self: Arc<Self>, reg: Arc<Registered>) {
        let mut failing: HashMap<i64, Backoff> = HashMap::new();
        loop {
            let next_retry = match self.deliver_all(&reg, &mut failing).await {
                Ok(next_retry) => next_retry,
                Err(err) => {
                    // The store itself failed: every portal waits a little.
                    tracing::warn!("{err}; retrying in {:?}", self.pacing.first_retry);
                    Some(tokio::time::Instant::now() + self.pacing.first_retry)
                }
            };
            let wait = next_retry
                .map(|at| at.saturating_duration_since(tokio::time::Instant::now()))
                .unwrap_or(self.pacing.poll)
                .min(self.pacing.poll);
            let _ = tokio::time::timeout(wait, reg.wake.notified()).await;
        }
    }

    /// One round: every portal with pending changes that is not waiting out
    /// a backoff gets them delivered; answers when the earliest failing
    /// portal may be tried again. Fails only when the store does.
    async fn deliver_all(
        &self,
        reg: &Registered,
        failing: &mut HashMap<i64, Backoff>,
    ) -> Result<Option<tokio::time::Instant>, DeliveryError> {
        let metrics = crate::telemetry::metrics::metrics();
        let outbox = self.store.admin_outbox(&reg.settings.name, None).await?;
        metrics.hook_pending(&reg.settings.name, outbox.len() as i64);
        let pending: std::collections::HashSet<i64> = outbox.iter().map(|(p, _)| *p).collect();
        failing.retain(|portal, _| pending.contains(portal));
        let now = tokio::time::Instant::now();
        for (portal, _) in outbox {
            if failing.get(&portal).is_some_and(|b| b.retry_at > now) {
                continue;
            }
            match self.deliver_portal(reg, portal).await {
                Ok(()) => {
                    failing.remove(&portal);
                }
                Err(err @ DeliveryError::Plugin { .. }) => {
                    metrics.hook_failed(&reg.settings.name);
                    let backoff = failing
                        .entry(portal)
                        .or_insert_with(|| Backoff::new(self.pacing.first_retry));
                    backoff.failed(self.pacing.max_retry);
                    tracing::warn!("{err}; retrying portal {portal} in {:?}", backoff.delay);
                }
                Err(err) => return Err(err),
            }
        }
        Ok(failing.values().map(|b| b.retry_at).min())
    }

    /// Delivers a portal's pending changes to one plugin, in order, recording
    /// each acknowledgement; stops at the first failure. A remote plugin's
    /// changes go out only from the replica holding the portal's lease (the
    /// inline, in-process plugins are idempotent and deliver everywhere).
    async fn deliver_portal(&self, reg: &Registered, portal: i64) -> Result<(), DeliveryError> {
        let s = &reg.settings;
        let _delivering = reg.delivering.lock().await;
        let pending = self.store.admin_outbox(&s.name, Some(portal)).await?;
        if pending.is_empty() {
            return Ok(());
        }
        if !reg.inline
            && !self
                .store
                .hold_hook_lease(&s.name, portal, &self.holder, LEASE_TTL)
                .await?
        {
            return Ok(());
        }
        let Some(&(_, mut delivered)) = pending.first() else {
            return Ok(());
        };
        loop {
            let changes = self
                .store
                .admin_changes_after(portal, delivered, OUTBOX_PAGE)
                .await?;
            if changes.is_empty() {
                return Ok(());
            }
            for (seq, change) in changes {
                if s.wants(change.event) {
                    let key = idempotency_key(portal, seq);
                    let call = reg.plugin.change_committed(&key, seq, &change);
                    tokio::time::timeout(s.timeout, call)
                        .await
                        .unwrap_or(Err(HookError::Timeout(s.timeout)))
                        .map_err(|source| DeliveryError::Plugin {
                            plugin: s.name.clone(),
                            key,
                            source,
                        })?;
                }
                self.store.mark_delivered(&s.name, portal, seq).await?;
                delivered = seq;
            }
        }
    }
}
