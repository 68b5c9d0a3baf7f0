//! Reads: one record's associations, batch reads and exports, streamed in
//! chunks from a producer task, and the type catalog.
use super::*;

/// Chunks a stream's producer may run ahead of its consumer.
pub(super) const STREAM_BUFFER: usize = 2;

/// Most records one batch read may name.
pub const MAX_BATCH_READ: usize = 10_000;

/// How many distinct associated records `rows` hold.
pub(super) fn distinct_records(rows: &[RecordRow]) -> usize {
    rows.windows(2)
        .filter(|w| (w[0].0, w[0].1) != (w[1].0, w[1].1))
        .count()
        + usize::from(!rows.is_empty())
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
        if !cache.contains_key(&(from, to)) {
            let catalog = self.catalog(portal, from, to).await?;
            cache.insert((from, to), catalog);
        }
        Ok(&cache[&(from, to)])
    }

    /// Groups a record's rows into associated records with their definitions.
    pub(super) async fn group_records(
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

    pub(super) fn parse_optional(
        object_type: Option<&str>,
    ) -> Result<Option<ObjectType>, DomainError> {
        object_type
            .filter(|t| !t.is_empty())
            .map(ObjectType::parse)
            .transpose()
    }

    pub(super) fn chunk_size(&self) -> u32 {
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
}
