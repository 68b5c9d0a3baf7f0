//! The application layer: every use case (create, archive, read, stream,
//! configure limits and labels) over a `Store`, validated by the domain rules.
//! Both front ends call this and nothing below it.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use crate::domain::admin::{AdminChange, AdminEvent, LimitValue};
use crate::domain::error::{check_distinct, check_id, check_portal};
use crate::domain::feed::{Change, ChangeKind, FeedStart};
use crate::domain::limits::{apply_limit_changes, LimitChange, LimitMode};
use crate::domain::merge::MergeRequest;
use crate::domain::plan::{archive_filter, CreateItem, DirectedRow};
use crate::domain::types::new_label_definitions;
use crate::domain::{Category, DomainError, ObjectType, PairCatalog, TypeDef, TypeKey, TypeRole};
use crate::hooks::{Hooks, Pacing};
use crate::store::{NewLabel, RecordRow, Store, StoreError, TypeFilter};

pub mod catalogs;
pub mod combiner;
pub mod cursor;
pub mod pages;

pub use pages::{AssociationPage, PageInput, Record, RecordPage, MAX_PAGE_SIZE};

use cursor::{fingerprint, CursorCodec};

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
    /// Associated records (or export rows) per streamed chunk.
    pub read_chunk_size: u32,
    /// Signs resume cursors; replicas must share it.
    pub cursor_secret: String,
    /// How often an idle feed reader looks for changes other replicas wrote.
    pub feed_poll_interval: std::time::Duration,
    /// How long a cached pair catalog serves before it is read again (label
    /// changes made through this process drop it at once).
    pub catalog_ttl: std::time::Duration,
}

/// One requested association: ids and types, in the request's direction.
#[derive(Clone, Debug)]
pub struct AssociationInput {
    pub from_id: i64,
    pub to_id: i64,
    pub types: Vec<TypeKey>,
}

/// One row of a bulk import, as read from a file.
#[derive(Clone, Debug)]
pub struct ImportRow {
    /// Where the row came from, echoed in errors.
    pub line: u64,
    pub from_type: String,
    pub from_id: i64,
    pub to_type: String,
    pub to_id: i64,
    /// `None`: the pair's unlabeled type.
    pub key: Option<TypeKey>,
}

/// What an import batch did.
#[derive(Debug, Default)]
pub struct ImportOutcome {
    pub succeeded: u64,
    /// Failures by line.
    pub errors: Vec<(u64, DomainError)>,
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

/// What a merge did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeSummary {
    pub object_type: ObjectType,
    pub primary_id: i64,
    /// Directed rows removed.
    pub removed: u64,
    /// Directed rows created on the primary.
    pub created: u64,
}

/// One associated record with all the types it holds.
#[derive(Clone, Debug)]
pub struct AssociatedRecord {
    pub to_type: ObjectType,
    pub to_id: i64,
    pub types: Vec<TypeDef>,
}

/// A chunk of one record's streamed associations.
#[derive(Clone, Debug)]
pub struct AssociationChunk {
    pub from_type: ObjectType,
    pub from_id: i64,
    /// The requested to-type, if one was.
    pub to_type: Option<ObjectType>,
    pub records: Vec<AssociatedRecord>,
    /// Resumes the stream right after this chunk.
    pub cursor: String,
}

/// A chunk of a batch read: associated records with their from-record ids.
#[derive(Clone, Debug)]
pub struct BatchChunk {
    pub from_type: ObjectType,
    pub rows: Vec<(i64, AssociatedRecord)>,
    pub cursor: String,
}

/// A chunk of an export: stored rows with their labels.
#[derive(Clone, Debug)]
pub struct ExportChunk {
    pub rows: Vec<(DirectedRow, Option<String>)>,
    pub cursor: String,
}

/// A chunk of the change feed.
#[derive(Clone, Debug)]
pub struct ChangeChunk {
    /// Changes in commit order, with the label of their type.
    pub changes: Vec<(Change, Option<String>)>,
    /// Resumes the feed right after this chunk.
    pub cursor: String,
}

/// Chunks a stream's producer may run ahead of its consumer.
const STREAM_BUFFER: usize = 2;

/// Most records one batch read may name.
pub const MAX_BATCH_READ: usize = 10_000;

/// How many distinct associated records `rows` hold.
fn distinct_records(rows: &[RecordRow]) -> usize {
    rows.windows(2)
        .filter(|w| (w[0].0, w[0].1) != (w[1].0, w[1].1))
        .count()
        + usize::from(!rows.is_empty())
}

fn decode_record_position(
    position: Option<(String, i64)>,
) -> Result<Option<(ObjectType, i64)>, DomainError> {
    position
        .map(|(t, id)| {
            ObjectType::parse(&t)
                .map(|t| (t, id))
                .map_err(|_| DomainError::InvalidCursor)
        })
        .transpose()
}

type RowPosition = Option<(String, i64, String, i64, i64, i32)>;

fn encode_row_position(row: Option<DirectedRow>) -> RowPosition {
    row.map(|r| {
        (
            r.from_type.to_string(),
            r.from_id,
            r.to_type.to_string(),
            r.to_id,
            i64::from(r.key.category.code()),
            r.key.type_id,
        )
    })
}

fn decode_row_position(position: RowPosition) -> Result<DirectedRow, DomainError> {
    let (from_type, from_id, to_type, to_id, category, type_id) =
        position.ok_or(DomainError::InvalidCursor)?;
    let parse = |t: &str| ObjectType::parse(t).map_err(|_| DomainError::InvalidCursor);
    Ok(DirectedRow {
        from_type: parse(&from_type)?,
        from_id,
        to_type: parse(&to_type)?,
        to_id,
        key: TypeKey {
            category: Category::from_code(category).ok_or(DomainError::InvalidCursor)?,
            type_id,
        },
    })
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
    cursors: CursorCodec,
    /// Woken after every committed write, for feed readers of this process.
    written: Arc<Notify>,
    /// Admin plugins, asked before and told after every admin change.
    hooks: Arc<Hooks>,
    /// Pair catalogs, so writes need not read definitions each time.
    catalogs: catalogs::CatalogCache,
    /// Joins concurrent creates of one pair into shared transactions.
    creates: combiner::CreateCombiner,
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
            creates: combiner::CreateCombiner::new(Arc::clone(&store), MAX_WRITE_INPUTS),
            store,
            settings,
            cursors,
            written: Arc::new(Notify::new()),
            hooks,
        }
    }

    /// A new admin change by `actor`, made now.
    fn admin_change(
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
    fn validate(
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
            let ceiling = self.settings.platform_ceiling;
            let results = self
                .creates
                .create(portal, &catalog, from, to, ceiling, items.clone())
                .await?;
            self.written.notify_waiters();
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

    /// Creates bulk-import rows: grouped by object type pair (in order within
    /// each pair), each group created like a `create` batch. Returns how many
    /// rows succeeded and each failure by line.
    pub async fn import_rows(
        &self,
        portal: i64,
        rows: &[ImportRow],
    ) -> ServiceResult<ImportOutcome> {
        check_batch_size(rows.len())?;
        check_portal(portal)?;
        let mut outcome = ImportOutcome::default();
        let mut groups: BTreeMap<(ObjectType, ObjectType), Vec<&ImportRow>> = BTreeMap::new();
        for row in rows {
            match (
                ObjectType::parse(&row.from_type),
                ObjectType::parse(&row.to_type),
            ) {
                (Ok(from), Ok(to)) => groups.entry((from, to)).or_default().push(row),
                (Err(err), _) | (_, Err(err)) => outcome.errors.push((row.line, err)),
            }
        }
        for ((from, to), group) in groups {
            let inputs: Vec<AssociationInput> = group
                .iter()
                .map(|r| AssociationInput {
                    from_id: r.from_id,
                    to_id: r.to_id,
                    types: r.key.into_iter().collect(),
                })
                .collect();
            match self
                .create(portal, &from.to_string(), &to.to_string(), &inputs)
                .await
            {
                Ok(created) => {
                    outcome.succeeded += created.results.len() as u64;
                    outcome.errors.extend(
                        created
                            .errors
                            .into_iter()
                            .map(|(i, err)| (group[i].line, err)),
                    );
                }
                Err(ServiceError::Domain(err)) => outcome
                    .errors
                    .extend(group.iter().map(|r| (r.line, err.clone()))),
                Err(err) => return Err(err),
            }
        }
        outcome.errors.sort_by_key(|(line, _)| *line);
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

    /// Merges record `merged_id` into `primary_id` (both of `object_type`):
    /// its associations move to the primary in one transaction, or, when a
    /// limit would break, nothing changes.
    pub async fn merge(
        &self,
        portal: i64,
        object_type: &str,
        primary_id: i64,
        merged_id: i64,
    ) -> ServiceResult<MergeSummary> {
        check_portal(portal)?;
        let object_type = ObjectType::parse(object_type)?;
        let req = MergeRequest::new(portal, object_type, primary_id, merged_id)?;
        let plan = self
            .store
            .merge_records(&req, self.settings.platform_ceiling)
            .await?;
        self.written.notify_waiters();
        Ok(MergeSummary {
            object_type,
            primary_id,
            removed: plan.delete_rows.len() as u64,
            created: plan.insert_rows.len() as u64,
        })
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
                to_ids.iter().try_for_each(|id| {
                    check_id("toObjectId", *id)?;
                    check_distinct(from, *from_id, to, *id)
                })
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

    /// Loads a pair's catalog once per stream.
    async fn cached<'c>(
        &self,
        cache: &'c mut HashMap<(ObjectType, ObjectType), PairCatalog>,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
    ) -> ServiceResult<&'c PairCatalog> {
        if !cache.contains_key(&(from, to)) {
            let catalog = self.catalog(portal, from, to).await?;
            cache.insert((from, to), catalog);
        }
        Ok(&cache[&(from, to)])
    }

    /// Groups a record's rows into associated records with their definitions.
    async fn group_records(
        &self,
        cache: &mut HashMap<(ObjectType, ObjectType), PairCatalog>,
        portal: i64,
        from: ObjectType,
        rows: Vec<RecordRow>,
    ) -> ServiceResult<Vec<AssociatedRecord>> {
        let mut records: Vec<AssociatedRecord> = Vec::new();
        for (to_type, to_id, key) in rows {
            let catalog = self.cached(cache, portal, from, to_type).await?;
            // A label deleted since the rows were read is skipped.
            let Some(def) = catalog.get(from, to_type, key).cloned() else {
                continue;
            };
            match records.last_mut() {
                Some(last) if (last.to_type, last.to_id) == (to_type, to_id) => {
                    last.types.push(def)
                }
                _ => records.push(AssociatedRecord {
                    to_type,
                    to_id,
                    types: vec![def],
                }),
            }
        }
        Ok(records)
    }

    fn parse_optional(object_type: Option<&str>) -> Result<Option<ObjectType>, DomainError> {
        object_type
            .filter(|t| !t.is_empty())
            .map(ObjectType::parse)
            .transpose()
    }

    fn chunk_size(&self) -> u32 {
        self.settings.read_chunk_size
    }

    /// Streams every associated record of one record (to one object type or
    /// all), chunk by chunk, from a producer task through a bounded channel;
    /// the producer stops as soon as the receiver is dropped. `cursor`
    /// resumes after the chunk that carried it.
    pub async fn stream_associations(
        self: &Arc<Self>,
        portal: i64,
        from: &str,
        from_id: i64,
        to: Option<&str>,
        cursor: Option<&str>,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<AssociationChunk>>> {
        check_portal(portal)?;
        check_id("objectId", from_id)?;
        let from = ObjectType::parse(from)?;
        let to = Self::parse_optional(to)?;
        let request = pages::list_request(from, from_id, to);
        let mut after = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => decode_record_position(self.cursors.decode(c, portal, &request)?)?,
            None => None,
        };
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let mut cache = HashMap::new();
            let limit = service.chunk_size();
            let mut first = true;
            loop {
                let page = async {
                    let rows = service
                        .store
                        .list_records(portal, from, from_id, to, after, limit)
                        .await?;
                    let fetched = distinct_records(&rows);
                    let records = service
                        .group_records(&mut cache, portal, from, rows)
                        .await?;
                    Ok::<_, ServiceError>((fetched, records))
                }
                .await;
                let (fetched, records) = match page {
                    Ok(page) => page,
                    Err(err) => {
                        let _ = sender.send(Err(err)).await;
                        return;
                    }
                };
                if fetched == 0 && !first {
                    return;
                }
                if let Some(last) = records.last() {
                    after = Some((last.to_type, last.to_id));
                }
                let position = after.map(|(t, id)| (t.to_string(), id));
                let cursor = service.cursors.encode(portal, &request, &position);
                let chunk = AssociationChunk {
                    from_type: from,
                    from_id,
                    to_type: to,
                    records,
                    cursor,
                };
                if sender.send(Ok(chunk)).await.is_err() || fetched < limit as usize {
                    return;
                }
                first = false;
            }
        });
        Ok(receiver)
    }

    /// Streams every associated record of up to `MAX_BATCH_READ` records of
    /// one object type, in ascending id order; rows name their from-record.
    pub async fn stream_batch(
        self: &Arc<Self>,
        portal: i64,
        from: &str,
        ids: &[i64],
        to: Option<&str>,
        cursor: Option<&str>,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<BatchChunk>>> {
        check_portal(portal)?;
        if ids.len() > MAX_BATCH_READ {
            return Err(DomainError::InvalidArgument(format!(
                "a batch read may name at most {MAX_BATCH_READ} records, this one names {}",
                ids.len()
            ))
            .into());
        }
        for id in ids {
            check_id("objectId", *id)?;
        }
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let from = ObjectType::parse(from)?;
        let to = Self::parse_optional(to)?;
        let id_list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let request = fingerprint(&[
            "batch",
            &from.to_string(),
            &to.map(|t| t.to_string()).unwrap_or_default(),
            &id_list.join(","),
        ]);
        let (mut index, mut after) = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => {
                let (index, position): (usize, Option<(String, i64)>) =
                    self.cursors.decode(c, portal, &request)?;
                (index, decode_record_position(position)?)
            }
            None => (0, None),
        };
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let mut cache = HashMap::new();
            let limit = service.chunk_size() as usize;
            let mut first = true;
            while first || index < ids.len() {
                let mut rows: Vec<(i64, AssociatedRecord)> = Vec::new();
                while rows.len() < limit && index < ids.len() {
                    let want = limit - rows.len();
                    let page = async {
                        let fetched = service
                            .store
                            .list_records(portal, from, ids[index], to, after, want as u32)
                            .await?;
                        let count = distinct_records(&fetched);
                        Ok::<_, ServiceError>((
                            count,
                            service
                                .group_records(&mut cache, portal, from, fetched)
                                .await?,
                        ))
                    }
                    .await;
                    let (count, records) = match page {
                        Ok(page) => page,
                        Err(err) => {
                            let _ = sender.send(Err(err)).await;
                            return;
                        }
                    };
                    let from_id = ids[index];
                    if count < want {
                        index += 1;
                        after = None;
                    } else if let Some(last) = records.last() {
                        after = Some((last.to_type, last.to_id));
                    }
                    rows.extend(records.into_iter().map(|r| (from_id, r)));
                }
                if rows.is_empty() && !first {
                    return;
                }
                first = false;
                let position = (index, after.map(|(t, id)| (t.to_string(), id)));
                let cursor = service.cursors.encode(portal, &request, &position);
                if sender
                    .send(Ok(BatchChunk {
                        from_type: from,
                        rows,
                        cursor,
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(receiver)
    }

    /// Streams every stored association row of a portal in key order,
    /// optionally filtered by object types.
    pub async fn stream_export(
        self: &Arc<Self>,
        portal: i64,
        from: Option<&str>,
        to: Option<&str>,
        cursor: Option<&str>,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<ExportChunk>>> {
        check_portal(portal)?;
        let from = Self::parse_optional(from)?;
        let to = Self::parse_optional(to)?;
        let name = |t: Option<ObjectType>| t.map(|t| t.to_string()).unwrap_or_default();
        let request = fingerprint(&["export", &name(from), &name(to)]);
        let mut after: Option<DirectedRow> = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => Some(decode_row_position(
                self.cursors.decode(c, portal, &request)?,
            )?),
            None => None,
        };
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let mut cache = HashMap::new();
            let limit = service.chunk_size();
            let mut first = true;
            loop {
                let page = async {
                    let rows = service
                        .store
                        .export_page(portal, from, to, after, limit)
                        .await?;
                    let mut labelled = Vec::with_capacity(rows.len());
                    for row in rows {
                        let catalog = service
                            .cached(&mut cache, portal, row.from_type, row.to_type)
                            .await?;
                        let label = catalog
                            .get(row.from_type, row.to_type, row.key)
                            .and_then(|d| d.label.clone());
                        labelled.push((row, label));
                    }
                    Ok::<_, ServiceError>(labelled)
                }
                .await;
                let rows = match page {
                    Ok(rows) => rows,
                    Err(err) => {
                        let _ = sender.send(Err(err)).await;
                        return;
                    }
                };
                if rows.is_empty() && !first {
                    return;
                }
                first = false;
                let full = rows.len() == limit as usize;
                if let Some((last, _)) = rows.last() {
                    after = Some(*last);
                }
                let cursor = service
                    .cursors
                    .encode(portal, &request, &encode_row_position(after));
                if sender.send(Ok(ExportChunk { rows, cursor })).await.is_err() || !full {
                    return;
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

    /// The type of `from -> to` a v3 type string names (machine name or id).
    pub async fn named_type(
        &self,
        portal: i64,
        from: &str,
        to: &str,
        text: &str,
    ) -> ServiceResult<TypeDef> {
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        Ok(catalog.named(from, to, text)?.clone())
    }

    /// Creates or updates admin limits, item by item.
    pub async fn set_limits(
        &self,
        portal: i64,
        actor: &str,
        from: &str,
        to: &str,
        changes: &[LimitChange],
        mode: LimitMode,
    ) -> ServiceResult<BatchOutcome<LimitView>> {
        check_batch_size(changes.len())?;
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        let ceiling = self.settings.platform_ceiling;
        let event = match mode {
            LimitMode::Create => AdminEvent::LimitsCreated,
            LimitMode::Update => AdminEvent::LimitsUpdated,
        };
        let change = Self::admin_change(portal, actor, event, from, to);
        // Plugins see what would apply against today's limits; the store
        // decides again under its lock.
        let before = self.pair_limits(portal, from, to).await?;
        let expected = apply_limit_changes(
            &catalog,
            from,
            to,
            &mut before.clone(),
            changes,
            mode,
            ceiling,
        );
        if let Some(proposal) = change.with_applied_limits(&before, changes, &expected) {
            self.hooks.validate(&proposal).await?;
        }
        let results = self
            .store
            .change_limits(&catalog, changes, mode, ceiling, &change)
            .await?;
        self.hooks.committed(portal).await;
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
        actor: &str,
        from: &str,
        to: &str,
        keys: &[TypeKey],
    ) -> ServiceResult<u64> {
        check_batch_size(keys.len())?;
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        for key in keys {
            catalog.require(from, to, *key)?;
        }
        let change = Self::admin_change(portal, actor, AdminEvent::LimitsPurged, from, to);
        let before = self.pair_limits(portal, from, to).await?;
        let existing: Vec<LimitValue> = keys
            .iter()
            .filter_map(|k| before.get(k).map(|max| LimitValue::new(*k, *max)))
            .collect();
        if !existing.is_empty() {
            self.hooks
                .validate(&change.clone().with_limits(existing, vec![]))
                .await?;
        }
        let purged = self.store.purge_limits(portal, keys, &change).await?;
        self.hooks.committed(portal).await;
        Ok(purged)
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
        actor: &str,
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
        let change = Self::admin_change(portal, actor, AdminEvent::LabelCreated, from, to);
        // The proposal names no type ids yet: they are allocated on commit.
        let mut proposed = new_label_definitions(from, to, label, name, inverse_label, 0)?;
        for def in &mut proposed {
            (def.key.type_id, def.inverse.type_id) = (0, 0);
        }
        self.hooks
            .validate(&change.clone().with_labels(&[], &proposed))
            .await?;
        let defs = self.store.create_label(portal, &new, &change).await;
        self.catalogs.forget_portal(portal);
        let defs = defs?;
        self.hooks.committed(portal).await;
        Ok(defs)
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

    /// A label's definitions: its direction, and its inverse if distinct.
    fn label_directions(catalog: &PairCatalog, def: &TypeDef) -> Vec<TypeDef> {
        catalog
            .all()
            .iter()
            .filter(|d| d.key == def.key || d.key == def.inverse)
            .cloned()
            .collect()
    }

    /// The admin limits of a pair (both directions), by type.
    async fn pair_limits(
        &self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
    ) -> ServiceResult<HashMap<TypeKey, u32>> {
        Ok(self
            .store
            .user_limits(portal, Some((from, to)))
            .await?
            .into_iter()
            .map(|l| (l.key, l.max_to_object_ids))
            .collect())
    }

    /// Renames a label (and, for paired labels, its inverse).
    pub async fn update_label(
        &self,
        portal: i64,
        actor: &str,
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
        let before = Self::label_directions(&catalog, &def);
        let after: Vec<TypeDef> = before
            .iter()
            .map(|d| {
                let text = if d.key == def.key {
                    Some(label)
                } else {
                    inverse_label
                };
                TypeDef {
                    label: text.map(str::to_string).or(d.label.clone()),
                    ..d.clone()
                }
            })
            .collect();
        let change = Self::admin_change(portal, actor, AdminEvent::LabelUpdated, from, to)
            .with_labels(&before, &after);
        self.hooks.validate(&change).await?;
        let updated = self
            .store
            .update_label(portal, &def, label, inverse_label, &change)
            .await;
        self.catalogs.forget_portal(portal);
        updated?;
        self.hooks.committed(portal).await;
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
        actor: &str,
        from: &str,
        to: &str,
        type_id: i32,
    ) -> ServiceResult<()> {
        let (from, to, catalog) = self.pair(portal, from, to).await?;
        let def = Self::label_def(&catalog, from, to, type_id)?;
        let change = Self::admin_change(portal, actor, AdminEvent::LabelDeleted, from, to)
            .with_labels(&Self::label_directions(&catalog, &def), &[]);
        self.hooks.validate(&change).await?;
        let deleted = self.store.delete_label(portal, &def, &change).await;
        self.catalogs.forget_portal(portal);
        deleted?;
        self.hooks.committed(portal).await;
        self.written.notify_waiters();
        Ok(())
    }

    /// The feed's cursor for a sequence number.
    fn feed_cursor(&self, portal: i64, seq: i64) -> String {
        self.cursors.encode(portal, &fingerprint(&["feed"]), &seq)
    }

    /// Where a feed reader starts: a cursor from an earlier message, or a
    /// start point when no cursor is given.
    pub fn feed_start(
        &self,
        portal: i64,
        cursor: Option<&str>,
        beginning: bool,
    ) -> ServiceResult<FeedStart> {
        Ok(match cursor.filter(|c| !c.is_empty()) {
            Some(c) => FeedStart::After(self.cursors.decode(c, portal, &fingerprint(&["feed"]))?),
            None if beginning => FeedStart::Beginning,
            None => FeedStart::Now,
        })
    }

    /// The sequence number of the portal's latest committed change.
    pub async fn feed_head(&self, portal: i64) -> ServiceResult<i64> {
        check_portal(portal)?;
        Ok(self.store.feed_bounds(portal).await?.1)
    }

    /// Removes feed changes written before `older_than_us`.
    pub async fn prune_feed(&self, older_than_us: i64) -> ServiceResult<()> {
        Ok(self.store.prune_changes(older_than_us).await?)
    }

    /// Streams every committed change of a portal after `start`, in commit
    /// order, then waits for more until the receiver is dropped. Each chunk's
    /// cursor resumes right after it.
    pub async fn watch_changes(
        self: &Arc<Self>,
        portal: i64,
        start: FeedStart,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<ChangeChunk>>> {
        check_portal(portal)?;
        let (pruned, last) = self.store.feed_bounds(portal).await?;
        let mut seq = match start {
            FeedStart::Now => last,
            FeedStart::Beginning => pruned,
            FeedStart::After(seq) if seq < pruned => {
                return Err(DomainError::CursorExpired(seq).into())
            }
            FeedStart::After(seq) => seq,
        };
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let mut cache = HashMap::new();
            loop {
                let written = service.written.notified();
                tokio::pin!(written);
                written.as_mut().enable();
                let page = service.feed_page(&mut cache, portal, seq).await;
                match page {
                    Ok(Some(changes)) => {
                        seq = changes.last().map(|(c, _)| c.seq).unwrap_or(seq);
                        let chunk = ChangeChunk {
                            changes,
                            cursor: service.feed_cursor(portal, seq),
                        };
                        if sender.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        tokio::select! {
                            _ = written => {}
                            _ = tokio::time::sleep(service.settings.feed_poll_interval) => {}
                            _ = sender.closed() => return,
                        }
                    }
                    Err(err) => {
                        let _ = sender.send(Err(err)).await;
                        return;
                    }
                }
            }
        });
        Ok(receiver)
    }

    /// The next changes after `seq`, labelled; `None` when there are none.
    /// A gap means retention removed changes the reader had not seen yet.
    async fn feed_page(
        &self,
        cache: &mut HashMap<(ObjectType, ObjectType), PairCatalog>,
        portal: i64,
        seq: i64,
    ) -> ServiceResult<Option<Vec<(Change, Option<String>)>>> {
        let changes = self
            .store
            .changes_after(portal, seq, self.chunk_size())
            .await?;
        match changes.first() {
            None => return Ok(None),
            Some(first) if first.seq != seq + 1 => {
                return Err(DomainError::CursorExpired(seq).into())
            }
            Some(_) => {}
        }
        let mut labelled = Vec::with_capacity(changes.len());
        for change in changes {
            let row = change.row;
            if change.kind == ChangeKind::Merged {
                labelled.push((change, None));
                continue;
            }
            let catalog = self
                .cached(cache, portal, row.from_type, row.to_type)
                .await?;
            let label = catalog
                .get(row.from_type, row.to_type, row.key)
                .and_then(|d| d.label.clone());
            labelled.push((change, label));
        }
        Ok(Some(labelled))
    }

    /// Counters that disagree with the stored associations (expected 0).
    pub async fn counter_drift(&self, portal: i64) -> ServiceResult<u64> {
        check_portal(portal)?;
        Ok(self.store.counter_drift(portal).await?)
    }
}
