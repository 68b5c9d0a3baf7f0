//! The application layer: every use case (create, archive, read, stream,
//! configure limits and labels) over a `Store`, validated by the domain rules.
//! Both front ends call this and nothing below it. This file holds the
//! service, its errors and settings; the use cases are split by what they
//! serve (`writes`, `reads`, `admin`, `feed`), their inputs and outputs live
//! in `model`.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use crate::domain::admin::{AdminChange, AdminEvent, LimitValue};
use crate::domain::error::{check_distinct, check_id, check_portal};
use crate::domain::feed::{Change, ChangeKind, FeedStart};
use crate::domain::limits::{apply_limit_changes, LimitChange, LimitMode};
use crate::domain::merge::MergeInto;
use crate::domain::plan::{archive_filter, CreateItem, DirectedRow};
use crate::domain::{Category, DomainError, ObjectType, PairCatalog, TypeDef, TypeKey};
use crate::hooks::{Hooks, Pacing};
use crate::store::{NewLabel, RecordRow, Store, StoreError, TypeFilter};

pub mod catalogs;
pub mod combiner;
pub mod cursor;
pub mod page_stream;
pub mod pages;

mod admin;
mod feed;
mod merged;
mod objects;
mod quota;
pub use objects::CustomObject;
mod model;
mod reads;
mod stream;
pub use stream::{Drain, Places};
mod usage;
mod writes;
pub use usage::{LabelUsage, LimitUsage, NearLimitChunk, NearThreshold, PreviewedChange};

pub use model::*;
pub use reads::MAX_BATCH_READ;
use reads::*;

pub use page_stream::{PageChunk, PageStream};
pub use pages::{AssociationPage, PageInput, Record, RecordPage, MAX_PAGE_SIZE};

use cursor::{fingerprint, CursorCodec};

/// Checks every invariant of a store (`association-service verify`), one
/// report per check, all judged in one snapshot.
pub async fn verify_store(
    store: &dyn Store,
) -> ServiceResult<Vec<crate::domain::verify::CheckReport>> {
    store.verify().await.map_err(ServiceError::Store)
}

/// Most inputs one write call may carry.
pub const MAX_WRITE_INPUTS: usize = 2_000;

/// Errors of a use case as a whole (per-item failures are in the results).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the association store failed: {0}")]
    Store(StoreError),
}

impl ServiceError {
    /// The kind of this failure, which the status table answers.
    pub fn kind(&self) -> crate::domain::ErrorKind {
        match self {
            ServiceError::Domain(err) => err.kind(),
            ServiceError::Store(err) => err.kind(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> ServiceError {
        match err {
            StoreError::Rejected(domain) => ServiceError::Domain(domain),
            other => ServiceError::Store(other),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Tunables of the service.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    /// The platform ceiling on every association type (HubSpot: 10,000).
    pub platform_ceiling: u32,
    /// Associated records (or export rows) per streamed chunk.
    pub read_chunk_size: u32,
    /// Signs resume cursors; replicas must share it.
    pub cursor_secret: String,
    /// How often an idle feed reader looks for changes other replicas wrote.
    pub feed_poll_interval: std::time::Duration,
    /// How long a cached pair catalog serves before it is read again (label
    /// changes made through this process drop it at once).
    pub catalog_ttl: std::time::Duration,
    /// Most streams one portal may have open in this process at once.
    pub max_streams_per_portal: u32,
    /// How long a stream waits for its client to take a chunk before it
    /// ends (releasing its database connection) with a resumable error.
    pub stream_stall_timeout: std::time::Duration,
}

pub struct AssociationService {
    store: Arc<dyn Store>,
    settings: ServiceSettings,
    cursors: CursorCodec,
    /// Woken after every committed write, for feed readers of this process.
    written: Arc<Notify>,
    /// Admin plugins, asked before and told after every admin change.
    hooks: Arc<Hooks>,
    /// Pair catalogs, so writes need not read definitions each time.
    catalogs: catalogs::CatalogCache,
    /// Joins concurrent creates of one pair into shared transactions.
    creates: combiner::CreateCombiner,
    /// One poller per portal for idle change-feed readers.
    feed_polls: feed::FeedPolls,
    /// Each portal's open streams, at most `max_streams_per_portal`.
    stream_slots: stream::StreamSlots,
    /// Which portals have merged records to resolve.
    merged_portals: merged::MergedPortals,
    /// Each portal's custom object names.
    object_names: objects::ObjectNames,
}

fn check_batch_size(len: usize) -> Result<(), DomainError> {
    if len > MAX_WRITE_INPUTS {
        return Err(DomainError::InvalidArgument(format!(
            "a batch may hold at most {MAX_WRITE_INPUTS} inputs, this one has {len}"
        )));
    }
    Ok(())
}

impl AssociationService {
    /// A service whose only admin plugin is the built-in audit trail.
    pub fn new(store: Arc<dyn Store>, settings: ServiceSettings) -> AssociationService {
        let hooks = Arc::new(Hooks::new(Arc::clone(&store), Pacing::default()));
        AssociationService::with_hooks(store, settings, hooks)
    }

    /// A service that asks and tells `hooks` about admin changes.
    pub fn with_hooks(
        store: Arc<dyn Store>,
        settings: ServiceSettings,
        hooks: Arc<Hooks>,
    ) -> AssociationService {
        let cursors = CursorCodec::new(settings.cursor_secret.as_bytes());
        AssociationService {
            catalogs: catalogs::CatalogCache::new(settings.catalog_ttl),
            merged_portals: merged::MergedPortals::new(settings.catalog_ttl),
            object_names: objects::ObjectNames::new(settings.catalog_ttl),
            stream_slots: stream::StreamSlots::new(
                settings.max_streams_per_portal,
                settings.stream_stall_timeout,
            ),
            creates: combiner::CreateCombiner::new(Arc::clone(&store), MAX_WRITE_INPUTS),
            store,
            settings,
            cursors,
            written: Arc::new(Notify::new()),
            feed_polls: feed::FeedPolls::default(),
            hooks,
        }
    }

    /// A new admin change by `actor`, made now.
    pub(super) fn admin_change(
        portal: i64,
        actor: &str,
        event: AdminEvent,
        from: ObjectType,
        to: ObjectType,
    ) -> AdminChange {
        AdminChange::new(event, portal, actor, from, to, crate::store::now_us())
    }

    /// The audit trail of a portal after sequence number `after` (up to
    /// `limit` events, oldest first).
    pub async fn audit_events(
        &self,
        portal: i64,
        after: i64,
        limit: u32,
    ) -> ServiceResult<Vec<(i64, AdminChange)>> {
        check_portal(portal)?;
        Ok(self.store.audit_events(portal, after.max(0), limit).await?)
    }

    /// Moves every open stream on to a later stage of shutting down:
    /// `Draining` ends the change feeds, `Stopping` every stream, each after
    /// the last chunk it sent (whose cursor resumes it elsewhere).
    pub fn drain_streams(&self, stage: Drain) {
        self.stream_slots.drain(stage);
    }

    /// Whether the store answers within `timeout` (readiness).
    pub async fn store_reachable(&self, timeout: std::time::Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.store.ping()).await,
            Ok(Ok(()))
        )
    }

    /// The store's write pool: connections open and idle.
    pub fn pool_usage(&self) -> crate::store::PoolUsage {
        self.store.pool_usage()
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// Checks the portal and loads every association type of the pair.
    pub(super) async fn pair_catalog(&self, pair: PortalPair) -> ServiceResult<PairCatalog> {
        check_portal(pair.portal)?;
        self.catalog(pair.portal, pair.from, pair.to).await
    }

    /// Every association type between two object types, for a portal.
    pub(super) async fn catalog(
        &self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
    ) -> ServiceResult<PairCatalog> {
        let generation = match self.catalogs.get(portal, from, to) {
            Ok(catalog) => return Ok(catalog),
            Err(generation) => generation,
        };
        let stored = self.store.pair_definitions(portal, from, to).await?;
        let catalog = PairCatalog::new(from, to, stored)?;
        self.catalogs.put(portal, generation, &catalog);
        Ok(catalog)
    }

    /// Validates ids and types of one input.
    pub(super) fn validate(
        catalog: &PairCatalog,
        from: ObjectType,
        to: ObjectType,
        input: &AssociationInput,
    ) -> Result<CreateItem, DomainError> {
        check_id("fromObjectId", input.from_id)?;
        check_id("toObjectId", input.to_id)?;
        check_distinct(from, input.from_id, to, input.to_id)?;
        for key in &input.types {
            catalog.require(from, to, *key)?;
        }
        Ok(CreateItem {
            from_id: input.from_id,
            to_id: input.to_id,
            types: input.types.clone(),
        })
    }
}

/// The service's settings from the configuration.
impl crate::config::Settings {
    /// The service layer's tunables.
    pub fn service(&self) -> ServiceSettings {
        ServiceSettings {
            platform_ceiling: self.limits.platform_ceiling,
            read_chunk_size: self.read.chunk_size,
            cursor_secret: self.read.cursor_secret.clone(),
            feed_poll_interval: std::time::Duration::from_millis(self.feed.poll_interval_ms),
            catalog_ttl: std::time::Duration::from_millis(self.read.catalog_ttl_ms),
            max_streams_per_portal: self.read.stream_caps(self.store.max_connections).1,
            stream_stall_timeout: std::time::Duration::from_millis(self.read.stall_timeout_ms),
        }
    }
}
