//! Reads: one record's associations, batch reads and exports, streamed in
//! chunks from a producer task, and the type catalog.
use super::stream::{Scan, Step};
use super::*;
use crate::store::{self, RecordScan, RowBatches};
use std::collections::hash_map::Entry;

/// Most records one batch read may name.
pub const MAX_BATCH_READ: usize = 10_000;

/// How many distinct associated records `rows` hold.
pub(super) fn distinct_records(rows: &[RecordRow]) -> usize {
    first_records(rows, usize::MAX, |r| (r.0, r.1)).1
}

/// For rows ordered by record (`key`): how many of them belong to their
/// first `records` records, and how many records those are.
pub(super) fn first_records<T, K: PartialEq>(
    rows: &[T],
    records: usize,
    key: impl Fn(&T) -> K,
) -> (usize, usize) {
    let mut seen = 0;
    for (i, row) in rows.iter().enumerate() {
        if i == 0 || key(&rows[i - 1]) != key(row) {
            if seen == records {
                return (i, seen);
            }
            seen += 1;
        }
    }
    (rows.len(), seen)
}

pub(super) fn decode_record_position(
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

pub(super) type RowPosition = Option<(String, i64, String, i64, i64, i32)>;

pub(super) fn encode_row_position(row: Option<DirectedRow>) -> RowPosition {
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

pub(super) fn decode_row_position(position: RowPosition) -> Result<DirectedRow, DomainError> {
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

impl AssociationService {
    /// Loads a pair's catalog once per stream.
    pub(super) async fn cached<'c>(
        &self,
        cache: &'c mut HashMap<(ObjectType, ObjectType), PairCatalog>,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
    ) -> ServiceResult<&'c PairCatalog> {
        Ok(match cache.entry((from, to)) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(self.catalog(portal, from, to).await?),
        })
    }

    /// Groups a record's rows into associated records with their definitions.
    pub(super) async fn group_records(
        &self,
        cache: &mut HashMap<(ObjectType, ObjectType), PairCatalog>,
        portal: i64,
        from: ObjectType,
        rows: Vec<RecordRow>,
    ) -> ServiceResult<Vec<AssociatedRecord>> {
        // Load each to-type's catalog once, then look rows up without hashing.
        let mut to_types: Vec<ObjectType> = Vec::new();
        for (to_type, _, _) in &rows {
            if to_types.last() != Some(to_type) && !to_types.contains(to_type) {
                to_types.push(*to_type);
            }
        }
        for to_type in &to_types {
            self.cached(cache, portal, from, *to_type).await?;
        }
        let catalogs: Vec<(ObjectType, &PairCatalog)> = to_types
            .iter()
            .filter_map(|t| cache.get(&(from, *t)).map(|c| (*t, c)))
            .collect();
        let mut records: Vec<AssociatedRecord> = Vec::new();
        for (to_type, to_id, key) in rows {
            let Some((_, catalog)) = catalogs.iter().find(|(t, _)| *t == to_type) else {
                continue;
            };
            // A label deleted since the rows were read is skipped.
            let Some(def) = catalog.shared(from, to_type, key) else {
                continue;
            };
            match records.last_mut() {
                Some(last) if (last.to_type, last.to_id) == (to_type, to_id) => {
                    last.types.push(def.clone())
                }
                _ => records.push(AssociatedRecord {
                    to_type,
                    to_id,
                    types: vec![def.clone()],
                }),
            }
        }
        Ok(records)
    }

    pub(super) fn chunk_size(&self) -> u32 {
        self.settings.read_chunk_size
    }

    /// A place for one more open stream of `portal`.
    pub(super) fn stream_slot(&self, portal: i64) -> Result<stream::StreamSlot, DomainError> {
        self.stream_slots.take(portal)
    }

    /// Streams every associated record of one record (to one object type or
    /// all), chunk by chunk; a cursor resumes after the chunk that carried it.
    pub async fn stream_associations(
        self: &Arc<Self>,
        request: ListRequest,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<AssociationChunk>>> {
        let ListRequest {
            portal,
            from,
            from_id,
            to,
            cursor,
        } = request;
        check_portal(portal)?;
        check_id("objectId", from_id)?;
        let from_id = self.resolve_id(portal, from, from_id).await?;
        let fingerprint = pages::list_request(from, from_id, to);
        let after = match cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => decode_record_position(self.cursors.decode(c, portal, &fingerprint)?)?,
            None => None,
        };
        let slot = self.stream_slot(portal)?;
        let rows = self.store.scan_records(RecordScan {
            portal,
            from,
            from_id,
            to,
            after,
            batch: self.chunk_size() as usize,
        });
        Ok(stream::produce(
            slot,
            ListScan {
                service: Arc::clone(self),
                cache: HashMap::new(),
                fingerprint,
                portal,
                from,
                from_id,
                to,
                rows,
                pending: Vec::new(),
                ended: false,
                after,
                first: true,
            },
        ))
    }

    /// Streams every associated record of up to `MAX_BATCH_READ` records of
    /// one object type, in ascending id order; rows name their from-record.
    pub async fn stream_batch(
        self: &Arc<Self>,
        request: BatchListRequest,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<BatchChunk>>> {
        let BatchListRequest {
            portal,
            from,
            from_ids: mut ids,
            to,
            cursor,
        } = request;
        check_portal(portal)?;
        if ids.len() > MAX_BATCH_READ {
            return Err(DomainError::InvalidArgument(format!(
                "a batch read may name at most {MAX_BATCH_READ} records, this one names {}",
                ids.len()
            ))
            .into());
        }
        for id in &ids {
            check_id("objectId", *id)?;
        }
        self.resolve_ids(portal, from, &mut ids).await?;
        ids.sort_unstable();
        ids.dedup();
        let id_list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let fingerprint = fingerprint(&[
            "batch",
            &from.to_string(),
            &to.map(|t| t.to_string()).unwrap_or_default(),
            &id_list.join(","),
        ]);
        let (index, after) = match cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => {
                let (index, position): (usize, Option<(String, i64)>) =
                    self.cursors.decode(c, portal, &fingerprint)?;
                (index, decode_record_position(position)?)
            }
            None => (0, None),
        };
        let slot = self.stream_slot(portal)?;
        let rows = self.store.scan_batch(store::BatchScan {
            portal,
            from,
            from_ids: ids.get(index..).unwrap_or_default().to_vec(),
            to,
            after,
            batch: self.chunk_size() as usize,
        });
        Ok(stream::produce(
            slot,
            BatchScan {
                service: Arc::clone(self),
                cache: HashMap::new(),
                fingerprint,
                portal,
                from,
                ids,
                rows,
                pending: Vec::new(),
                ended: false,
                index,
                after,
                first: true,
            },
        ))
    }

    /// Streams every stored association row of a portal in key order,
    /// optionally filtered by object types.
    pub async fn stream_export(
        self: &Arc<Self>,
        request: ExportRequest,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<ExportChunk>>> {
        let ExportRequest {
            portal,
            from,
            to,
            cursor,
        } = request;
        check_portal(portal)?;
        let name = |t: Option<ObjectType>| t.map(|t| t.to_string()).unwrap_or_default();
        let fingerprint = fingerprint(&["export", &name(from), &name(to)]);
        let after = match cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(decode_row_position(self.cursors.decode(
                c,
                portal,
                &fingerprint,
            )?)?),
            None => None,
        };
        let slot = self.stream_slot(portal)?;
        let rows = self.store.scan_export(store::ExportScan {
            portal,
            from,
            to,
            after,
            batch: self.chunk_size() as usize,
        });
        Ok(stream::produce(
            slot,
            ExportScan {
                service: Arc::clone(self),
                cache: HashMap::new(),
                fingerprint,
                portal,
                rows,
                after,
                first: true,
            },
        ))
    }

    /// Streams a portal's audit trail after sequence number `after`, oldest
    /// first, up to the newest event.
    pub async fn stream_audit_events(
        self: &Arc<Self>,
        portal: i64,
        after: i64,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<(i64, AdminChange)>>> {
        check_portal(portal)?;
        let slot = self.stream_slot(portal)?;
        Ok(stream::produce(
            slot,
            AuditScan {
                service: Arc::clone(self),
                portal,
                after: after.max(0),
                pending: Default::default(),
                exhausted: false,
            },
        ))
    }

    /// The association types from `from` to `to`.
    pub async fn definitions(&self, pair: PortalPair) -> ServiceResult<Vec<TypeDef>> {
        let PortalPair { from, to, .. } = pair;
        let catalog = self.pair_catalog(pair).await?;
        Ok(catalog.directed(from, to).cloned().collect())
    }

    /// The type of `from -> to` a v3 type string names (machine name or id).
    pub async fn named_type(&self, pair: PortalPair, text: &str) -> ServiceResult<TypeDef> {
        let PortalPair { from, to, .. } = pair;
        let catalog = self.pair_catalog(pair).await?;
        Ok(catalog.named(from, to, text)?.clone())
    }
}

/// Catalogs a stream has loaded, by pair.
type CatalogMap = HashMap<(ObjectType, ObjectType), PairCatalog>;

/// One record's associated records, from one statement's rows.
struct ListScan {
    service: Arc<AssociationService>,
    cache: CatalogMap,
    fingerprint: String,
    portal: i64,
    from: ObjectType,
    from_id: i64,
    to: Option<ObjectType>,
    rows: RowBatches<RecordRow>,
    /// Rows received but not sent yet (the last record may be incomplete).
    pending: Vec<RecordRow>,
    /// Whether the statement has no more rows.
    ended: bool,
    /// The last record sent (where the chunk's cursor resumes).
    after: Option<(ObjectType, i64)>,
    first: bool,
}

impl Scan for ListScan {
    type Chunk = AssociationChunk;

    async fn step(mut self) -> ServiceResult<Step<AssociationChunk, ListScan>> {
        let limit = self.service.chunk_size() as usize;
        // Enough rows for a chunk of whole records: more records than the
        // chunk holds, or every row there is.
        while !self.ended && distinct_records(&self.pending) <= limit {
            match self.rows.recv().await {
                Some(batch) => self.pending.extend(batch?),
                None => self.ended = true,
            }
        }
        if self.pending.is_empty() && !self.first {
            return Ok(Step::End);
        }
        let (take, _) = first_records(&self.pending, limit, |r| (r.0, r.1));
        let rest = self.pending.split_off(take);
        let rows = std::mem::replace(&mut self.pending, rest);
        if let Some((t, id, _)) = rows.last() {
            self.after = Some((*t, *id));
        }
        let (portal, from, from_id) = (self.portal, self.from, self.from_id);
        let records = self
            .service
            .group_records(&mut self.cache, portal, from, rows)
            .await?;
        let position = self.after.map(|(t, id)| (t.to_string(), id));
        let chunk = AssociationChunk {
            from_type: from,
            from_id,
            to_type: self.to,
            records,
            cursor: self
                .service
                .cursors
                .encode(portal, &self.fingerprint, &position),
        };
        self.first = false;
        Ok(if self.ended && self.pending.is_empty() {
            Step::Last(chunk)
        } else {
            Step::More(chunk, self)
        })
    }
}

/// Several records' associated records, from one statement's rows.
struct BatchScan {
    service: Arc<AssociationService>,
    cache: CatalogMap,
    fingerprint: String,
    portal: i64,
    from: ObjectType,
    /// Every requested id, ascending (the cursor's index points into it).
    ids: Vec<i64>,
    rows: RowBatches<(i64, RecordRow)>,
    /// Rows received but not sent yet (the last record may be incomplete).
    pending: Vec<(i64, RecordRow)>,
    ended: bool,
    /// Where the last chunk ended: an index into `ids` and the last record.
    index: usize,
    after: Option<(ObjectType, i64)>,
    first: bool,
}

/// The (from-record, associated record) a batch row belongs to.
fn batch_record(row: &(i64, RecordRow)) -> (i64, ObjectType, i64) {
    (row.0, row.1 .0, row.1 .1)
}

impl Scan for BatchScan {
    type Chunk = BatchChunk;

    async fn step(mut self) -> ServiceResult<Step<BatchChunk, BatchScan>> {
        let limit = self.service.chunk_size() as usize;
        while !self.ended && first_records(&self.pending, usize::MAX, batch_record).1 <= limit {
            match self.rows.recv().await {
                Some(batch) => self.pending.extend(batch?),
                None => self.ended = true,
            }
        }
        if self.pending.is_empty() && !self.first {
            return Ok(Step::End);
        }
        let (take, _) = first_records(&self.pending, limit, batch_record);
        let rest = self.pending.split_off(take);
        let taken = std::mem::replace(&mut self.pending, rest);
        if let Some((from_id, (t, id, _))) = taken.last() {
            self.index = self.ids.binary_search(from_id).unwrap_or(self.index);
            self.after = Some((*t, *id));
        }
        let (portal, from) = (self.portal, self.from);
        let mut rows: Vec<(i64, AssociatedRecord)> = Vec::new();
        let mut start = 0;
        while start < taken.len() {
            let from_id = taken[start].0;
            let end = taken[start..]
                .iter()
                .position(|r| r.0 != from_id)
                .map_or(taken.len(), |n| start + n);
            let own: Vec<RecordRow> = taken[start..end].iter().map(|r| r.1).collect();
            let records = self
                .service
                .group_records(&mut self.cache, portal, from, own)
                .await?;
            rows.extend(records.into_iter().map(|r| (from_id, r)));
            start = end;
        }
        self.first = false;
        let position = (self.index, self.after.map(|(t, id)| (t.to_string(), id)));
        let chunk = BatchChunk {
            from_type: from,
            rows,
            cursor: self
                .service
                .cursors
                .encode(portal, &self.fingerprint, &position),
        };
        Ok(if self.ended && self.pending.is_empty() {
            Step::Last(chunk)
        } else {
            Step::More(chunk, self)
        })
    }
}

/// A portal's stored rows in key order, from one statement.
struct ExportScan {
    service: Arc<AssociationService>,
    cache: CatalogMap,
    fingerprint: String,
    portal: i64,
    rows: RowBatches<DirectedRow>,
    /// The last row sent (where the chunk's cursor resumes).
    after: Option<DirectedRow>,
    first: bool,
}

impl Scan for ExportScan {
    type Chunk = ExportChunk;

    async fn step(mut self) -> ServiceResult<Step<ExportChunk, ExportScan>> {
        let limit = self.service.chunk_size() as usize;
        let portal = self.portal;
        let rows = match self.rows.recv().await {
            Some(batch) => batch?,
            None => Vec::new(),
        };
        if rows.is_empty() && !self.first {
            return Ok(Step::End);
        }
        self.first = false;
        let full = rows.len() == limit;
        let mut labelled = Vec::with_capacity(rows.len());
        // Rows come in key order, so a type repeats row after row: its
        // label is looked up once per run of rows.
        let mut last: Option<((ObjectType, ObjectType, TypeKey), Option<String>)> = None;
        for row in rows {
            let of = (row.from_type, row.to_type, row.key);
            let label = match &last {
                Some((seen, label)) if *seen == of => label.clone(),
                _ => {
                    let catalog = self
                        .service
                        .cached(&mut self.cache, portal, row.from_type, row.to_type)
                        .await?;
                    let label = catalog.get(of.0, of.1, of.2).and_then(|d| d.label.clone());
                    last = Some((of, label.clone()));
                    label
                }
            };
            labelled.push((row, label));
        }
        if let Some((last, _)) = labelled.last() {
            self.after = Some(*last);
        }
        let position = encode_row_position(self.after);
        let chunk = ExportChunk {
            rows: labelled,
            cursor: self
                .service
                .cursors
                .encode(portal, &self.fingerprint, &position),
        };
        Ok(if full {
            Step::More(chunk, self)
        } else {
            Step::Last(chunk)
        })
    }
}

/// Audit events read per round trip.
const AUDIT_PAGE: u32 = 500;

/// A portal's audit trail after sequence number `after`, one event a step.
struct AuditScan {
    service: Arc<AssociationService>,
    portal: i64,
    after: i64,
    /// Events read but not yet yielded.
    pending: std::collections::VecDeque<(i64, AdminChange)>,
    /// Whether the last read reached the newest event.
    exhausted: bool,
}

impl Scan for AuditScan {
    type Chunk = (i64, AdminChange);

    async fn step(mut self) -> ServiceResult<Step<(i64, AdminChange), AuditScan>> {
        if self.pending.is_empty() && !self.exhausted {
            let events = self
                .service
                .store
                .audit_events(self.portal, self.after, AUDIT_PAGE)
                .await?;
            self.exhausted = events.len() < AUDIT_PAGE as usize;
            if let Some((seq, _)) = events.last() {
                self.after = *seq;
            }
            self.pending.extend(events);
        }
        Ok(match self.pending.pop_front() {
            None => Step::End,
            Some(event) if self.pending.is_empty() && self.exhausted => Step::Last(event),
            Some(event) => Step::More(event, self),
        })
    }
}
