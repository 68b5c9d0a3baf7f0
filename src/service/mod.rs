//! The application layer: every use case (create, archive, read, stream,
//! configure limits and labels) over a `Store`, validated by the domain rules.
//! Both front ends call this and nothing below it.
use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::domain::error::{check_id, check_portal};
use crate::domain::limits::{LimitChange, LimitMode};
use crate::domain::plan::{archive_filter, CreateItem, WriteContext};
use crate::domain::{Category, DomainError, ObjectType, PairCatalog, TypeDef, TypeKey, TypeRole};
use crate::store::{NewLabel, Store, StoreError, TypeFilter};

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
    /// Associated records per streamed chunk.
    pub read_chunk_size: u32,
}

/// One requested association: ids and types, in the request's direction.
#[derive(Clone, Debug)]
pub struct AssociationInput {
    pub from_id: i64,
    pub to_id: i64,
    pub types: Vec<TypeKey>,
}

/// Per-item results of a batch: successes and failures by input position.
#[derive(Debug)]
pub struct BatchOutcome<T> {
    pub results: Vec<(usize, T)>,
    pub errors: Vec<(usize, DomainError)>,
}

impl<T> BatchOutcome<T> {
    fn new() -> BatchOutcome<T> {
        BatchOutcome {
            results: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// The associations two records hold after a write, from -> to.
#[derive(Clone, Debug)]
pub struct HeldAssociation {
    pub from_type: ObjectType,
    pub from_id: i64,
    pub to_type: ObjectType,
    pub to_id: i64,
    pub types: Vec<TypeDef>,
}

/// One associated record with all the types it holds.
#[derive(Clone, Debug)]
pub struct AssociatedRecord {
    pub to_id: i64,
    pub types: Vec<TypeDef>,
}

/// A chunk of a streamed read.
#[derive(Clone, Debug)]
pub struct AssociationChunk {
    pub from_type: ObjectType,
    pub from_id: i64,
    pub to_type: ObjectType,
    pub records: Vec<AssociatedRecord>,
}

/// A type with its limits.
#[derive(Clone, Debug)]
pub struct LimitView {
    pub def: TypeDef,
    pub user_limit: Option<u32>,
    pub platform_limit: u32,
}

/// The result of an archive call.
#[derive(Debug, Default)]
pub struct ArchiveOutcome {
    /// Directed rows removed.
    pub removed: u64,
    pub errors: Vec<(usize, DomainError)>,
}

pub struct AssociationService {
    store: Arc<dyn Store>,
    settings: ServiceSettings,
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
    pub fn new(store: Arc<dyn Store>, settings: ServiceSettings) -> AssociationService {
        AssociationService { store, settings }
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// Parses both object types and loads every association type between them.
    async fn pair(
        &self,
        portal: i64,
        from: &str,
        to: &str,
    ) -> ServiceResult<(ObjectType, ObjectType, PairCatalog)> {
        check_portal(portal)?;
        let (from, to) = (ObjectType::parse(from)?, ObjectType::parse(to)?);
        Ok((from, to, self.catalog(portal, from, to).await?))
    }

    /// Every association type between two object types, for a portal.
    async fn catalog(
        &self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
    ) -> ServiceResult<PairCatalog> {
        let stored = self.store.pair_definitions(portal, from, to).await?;
        Ok(PairCatalog::new(from, to, stored)?)
    }

    /// Validates ids and types of one input.
    fn validate(
        catalog: &PairCatalog,
        from: ObjectType,
        to: ObjectType,
        input: &AssociationInput,
    ) -> Result<CreateItem, DomainError> {
        check_id("fromObjectId", input.from_id)?;
        check_id("toObjectId", input.to_id)?;
        for key in &input.types {
            catalog.require(from, to, *key)?;
        }
        Ok(CreateItem {
            from_id: input.from_id,
            to_id: input.to_id,
            types: input.types.clone(),
        })
    }

    /// Creates associations (and their inverses) item by item.
    pub async fn create(
        &self,
        portal: i64,
        from: &str,
        to: &str,
        inputs: &[AssociationInput],
    ) -> ServiceResult<BatchOutcome<HeldAssociation>> {
        check_batch_size(inputs.len())?;
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        let mut outcome = BatchOutcome::new();
        let mut items = Vec::new();
        let mut positions = Vec::new();
        for (index, input) in inputs.iter().enumerate() {
            match Self::validate(&catalog, from, to, input) {
                Ok(item) => {
                    items.push(item);
                    positions.push(index);
                }
                Err(err) => outcome.errors.push((index, err)),
            }
        }
        if !items.is_empty() {
            let ctx = WriteContext {
                portal_id: portal,
                from,
                to,
                catalog: &catalog,
                ceiling: self.settings.platform_ceiling,
            };
            let results = self.store.create_associations(&ctx, &items).await?;
            for ((index, item), result) in positions.into_iter().zip(&items).zip(results) {
                match result {
                    Ok(keys) => outcome.results.push((
                        index,
                        HeldAssociation {
                            from_type: from,
                            from_id: item.from_id,
                            to_type: to,
                            to_id: item.to_id,
                            types: keys
                                .iter()
                                .filter_map(|k| catalog.get(from, to, *k).cloned())
                                .collect(),
                        },
                    )),
                    Err(err) => outcome.errors.push((index, err)),
                }
            }
        }
        outcome.errors.sort_by_key(|(i, _)| *i);
        Ok(outcome)
    }

    /// Creates the default (unlabeled) association for each pair.
    pub async fn create_default(
        &self,
        portal: i64,
        from: &str,
        to: &str,
        pairs: &[(i64, i64)],
    ) -> ServiceResult<BatchOutcome<HeldAssociation>> {
        let inputs: Vec<AssociationInput> = pairs
            .iter()
            .map(|&(from_id, to_id)| AssociationInput {
                from_id,
                to_id,
                types: vec![],
            })
            .collect();
        self.create(portal, from, to, &inputs).await
    }

    /// Removes every type between `from_id` and each of its `to_ids`.
    pub async fn archive(
        &self,
        portal: i64,
        from: &str,
        to: &str,
        inputs: &[(i64, Vec<i64>)],
    ) -> ServiceResult<ArchiveOutcome> {
        check_batch_size(inputs.iter().map(|(_, to)| to.len().max(1)).sum())?;
        let (from, to, _) = self.pair(portal, from, to).await?;
        let mut outcome = ArchiveOutcome::default();
        let mut pairs = Vec::new();
        for (index, (from_id, to_ids)) in inputs.iter().enumerate() {
            let valid = check_id("fromObjectId", *from_id).and_then(|_| {
                to_ids
                    .iter()
                    .try_for_each(|id| check_id("toObjectId", *id).map(|_| ()))
            });
            match valid {
                Ok(()) => pairs.extend(to_ids.iter().map(|to_id| (*from_id, *to_id))),
                Err(err) => outcome.errors.push((index, err)),
            }
        }
        if !pairs.is_empty() {
            outcome.removed = self
                .store
                .archive_associations(portal, from, to, &pairs, &TypeFilter::All)
                .await?;
        }
        Ok(outcome)
    }

    /// Removes only the given types; removing the unlabeled type removes all.
    pub async fn archive_labels(
        &self,
        portal: i64,
        from: &str,
        to: &str,
        inputs: &[AssociationInput],
    ) -> ServiceResult<ArchiveOutcome> {
        check_batch_size(inputs.len())?;
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        let mut outcome = ArchiveOutcome::default();
        let mut by_filter: BTreeMap<Option<Vec<(TypeKey, TypeKey)>>, Vec<(i64, i64)>> =
            BTreeMap::new();
        for (index, input) in inputs.iter().enumerate() {
            let filter = Self::validate(&catalog, from, to, input)
                .and_then(|item| archive_filter(&catalog, from, to, &item.types));
            match filter {
                Ok(filter) => by_filter
                    .entry(filter)
                    .or_default()
                    .push((input.from_id, input.to_id)),
                Err(err) => outcome.errors.push((index, err)),
            }
        }
        for (filter, pairs) in by_filter {
            let filter = match filter {
                None => TypeFilter::All,
                Some(keys) => TypeFilter::Only {
                    forward: keys.iter().map(|(f, _)| *f).collect(),
                    inverse: keys.iter().map(|(_, i)| *i).collect(),
                },
            };
            outcome.removed += self
                .store
                .archive_associations(portal, from, to, &pairs, &filter)
                .await?;
        }
        Ok(outcome)
    }

    /// One page of a record's associated records after `after` (exclusive).
    pub async fn list_page(
        &self,
        portal: i64,
        from: &str,
        from_id: i64,
        to: &str,
        after: i64,
        limit: u32,
    ) -> ServiceResult<AssociationChunk> {
        check_id("objectId", from_id)?;
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        self.page(portal, &catalog, from, from_id, to, after, limit)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn page(
        &self,
        portal: i64,
        catalog: &PairCatalog,
        from: ObjectType,
        from_id: i64,
        to: ObjectType,
        after: i64,
        limit: u32,
    ) -> ServiceResult<AssociationChunk> {
        let anchor = catalog.unlabeled(from, to).key;
        let rows = self
            .store
            .list_page(portal, from, from_id, to, anchor, after, limit)
            .await?;
        let mut records: Vec<AssociatedRecord> = Vec::new();
        for (to_id, key) in rows {
            let Some(def) = catalog.get(from, to, key) else {
                continue;
            };
            match records.last_mut() {
                Some(last) if last.to_id == to_id => last.types.push(def.clone()),
                _ => records.push(AssociatedRecord {
                    to_id,
                    types: vec![def.clone()],
                }),
            }
        }
        Ok(AssociationChunk {
            from_type: from,
            from_id,
            to_type: to,
            records,
        })
    }

    /// Streams every associated record of one record, chunk by chunk, from a
    /// producer task through a bounded channel; the producer stops as soon as
    /// the receiver is dropped.
    pub async fn stream_associations(
        self: &Arc<Self>,
        portal: i64,
        from: &str,
        from_id: i64,
        to: &str,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<AssociationChunk>>> {
        check_id("objectId", from_id)?;
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        let (sender, receiver) = mpsc::channel(2);
        let service = Arc::clone(self);
        let chunk_size = self.settings.read_chunk_size;
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                let page = service
                    .page(portal, &catalog, from, from_id, to, after, chunk_size)
                    .await;
                let last = match &page {
                    Ok(chunk) => chunk.records.len() < chunk_size as usize,
                    Err(_) => true,
                };
                if let Ok(chunk) = &page {
                    match chunk.records.last() {
                        Some(record) => after = record.to_id,
                        None if after > 0 => break,
                        None => {}
                    }
                }
                if sender.send(page).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(receiver)
    }

    /// The association types from `from` to `to`.
    pub async fn definitions(
        &self,
        portal: i64,
        from: &str,
        to: &str,
    ) -> ServiceResult<Vec<TypeDef>> {
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        Ok(catalog.directed(from, to).cloned().collect())
    }

    /// Creates or updates admin limits, item by item.
    pub async fn set_limits(
        &self,
        portal: i64,
        from: &str,
        to: &str,
        changes: &[LimitChange],
        mode: LimitMode,
    ) -> ServiceResult<BatchOutcome<LimitView>> {
        check_batch_size(changes.len())?;
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        let ceiling = self.settings.platform_ceiling;
        let results = self
            .store
            .change_limits(portal, &catalog, from, to, changes, mode, ceiling)
            .await?;
        let mut outcome = BatchOutcome::new();
        for (index, (change, result)) in changes.iter().zip(results).enumerate() {
            match result {
                Ok(limit) => {
                    let def = catalog.require(from, to, change.key)?.clone();
                    outcome.results.push((
                        index,
                        LimitView {
                            def,
                            user_limit: Some(limit),
                            platform_limit: ceiling,
                        },
                    ));
                }
                Err(err) => outcome.errors.push((index, err)),
            }
        }
        Ok(outcome)
    }

    /// Removes admin limits; returns how many existed.
    pub async fn purge_limits(
        &self,
        portal: i64,
        from: &str,
        to: &str,
        keys: &[TypeKey],
    ) -> ServiceResult<u64> {
        check_batch_size(keys.len())?;
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        for key in keys {
            catalog.require(from, to, *key)?;
        }
        Ok(self.store.purge_limits(portal, keys).await?)
    }

    /// Every type of one pair direction with its limits, or, without a
    /// pair, every configured limit of the portal.
    pub async fn limits(
        &self,
        portal: i64,
        pair: Option<(&str, &str)>,
    ) -> ServiceResult<Vec<LimitView>> {
        check_portal(portal)?;
        let ceiling = self.settings.platform_ceiling;
        let view = |def: &TypeDef, user: Option<u32>| LimitView {
            def: def.clone(),
            user_limit: user,
            platform_limit: ceiling,
        };
        if let Some((from, to)) = pair {
            let (from, to, catalog) = self.pair(portal, from, to).await?;
            let stored = self.store.user_limits(portal, Some((from, to))).await?;
            return Ok(catalog
                .directed(from, to)
                .map(|def| {
                    view(
                        def,
                        stored
                            .iter()
                            .find(|l| l.key == def.key)
                            .map(|l| l.max_to_object_ids),
                    )
                })
                .collect());
        }
        let stored = self.store.user_limits(portal, None).await?;
        let mut views = Vec::new();
        let mut catalogs: BTreeMap<(ObjectType, ObjectType), PairCatalog> = BTreeMap::new();
        for limit in stored {
            if !catalogs.contains_key(&(limit.from, limit.to)) {
                catalogs.insert(
                    (limit.from, limit.to),
                    self.catalog(portal, limit.from, limit.to).await?,
                );
            }
            if let Some(def) =
                catalogs[&(limit.from, limit.to)].get(limit.from, limit.to, limit.key)
            {
                views.push(view(def, Some(limit.max_to_object_ids)));
            }
        }
        Ok(views)
    }

    /// Creates an admin label; returns its definitions (one or two).
    pub async fn create_label(
        &self,
        portal: i64,
        from: &str,
        to: &str,
        label: &str,
        name: &str,
        inverse_label: Option<&str>,
    ) -> ServiceResult<Vec<TypeDef>> {
        let (from, to, _) = self.pair(portal, from, to).await?;
        let new = NewLabel {
            from,
            to,
            label: label.to_string(),
            name: name.to_string(),
            inverse_label: inverse_label.map(str::to_string),
        };
        Ok(self.store.create_label(portal, &new).await?)
    }

    /// Finds an admin label of the pair by its type id (either direction).
    fn label_def(
        catalog: &PairCatalog,
        from: ObjectType,
        to: ObjectType,
        type_id: i32,
    ) -> Result<TypeDef, DomainError> {
        catalog
            .all()
            .iter()
            .find(|d| {
                d.key.type_id == type_id
                    && d.key.category != Category::HubspotDefined
                    && d.role == TypeRole::Label
            })
            .cloned()
            .ok_or(DomainError::LabelNotFound { type_id, from, to })
    }

    /// Renames a label (and, for paired labels, its inverse).
    pub async fn update_label(
        &self,
        portal: i64,
        from: &str,
        to: &str,
        type_id: i32,
        label: &str,
        inverse_label: Option<&str>,
    ) -> ServiceResult<Vec<TypeDef>> {
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        let def = Self::label_def(&catalog, from, to, type_id)?;
        let label = label.trim();
        if label.is_empty() || label.len() > 100 {
            return Err(
                DomainError::InvalidArgument("label must be 1 to 100 characters".into()).into(),
            );
        }
        let inverse_label = inverse_label.map(str::trim).filter(|l| !l.is_empty());
        // A symmetric cross-object label keeps one text in both directions.
        let symmetric = catalog
            .all()
            .iter()
            .any(|d| d.key == def.inverse && d.key != def.key && d.label == def.label);
        let inverse_label = inverse_label.or(if symmetric { Some(label) } else { None });
        self.store
            .update_label(portal, &def, label, inverse_label)
            .await?;
        let catalog = self.catalog(portal, from, to).await?;
        Ok(catalog
            .all()
            .iter()
            .filter(|d| d.key == def.key || d.key == def.inverse)
            .cloned()
            .collect())
    }

    /// Deletes a label, both directions, with its limits and uses.
    pub async fn delete_label(
        &self,
        portal: i64,
        from: &str,
        to: &str,
        type_id: i32,
    ) -> ServiceResult<()> {
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        let def = Self::label_def(&catalog, from, to, type_id)?;
        Ok(self.store.delete_label(portal, &def).await?)
    }

    /// Counters that disagree with the stored associations (expected 0).
    pub async fn counter_drift(&self, portal: i64) -> ServiceResult<u64> {
        check_portal(portal)?;
        Ok(self.store.counter_drift(portal).await?)
    }
}
