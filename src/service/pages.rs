//! Paged reads for request/response front ends (the REST gateway): one page
//! of a record's associations, pages of the records of an object type, and
//! per-record pages for many records. Page cursors are the streams' signed
//! cursors, so a cursor from one paged read continues any other read of the
//! same record and to-type.
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::store::{RecordSelect, RecordSummary};

/// Most associated records (or records) one page may hold.
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// One page of a record's associated records of one object type.
#[derive(Clone, Debug)]
pub struct AssociationPage {
    pub records: Vec<AssociatedRecord>,
    /// Continues after this page; `None` on the last page.
    pub next: Option<String>,
}

/// A record known through its associations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub object_type: ObjectType,
    pub id: i64,
    /// When its oldest association was made.
    pub created_at: SystemTime,
    /// When its newest association was made.
    pub updated_at: SystemTime,
}

/// One page of the records of an object type that hold associations.
#[derive(Clone, Debug)]
pub struct RecordPage {
    pub records: Vec<Record>,
    pub next: Option<String>,
}

/// One input of a paged batch read: a record and where to resume it.
#[derive(Clone, Debug)]
pub struct PageInput {
    pub from_id: i64,
    pub after: Option<String>,
}

/// The fingerprint every read of one record's associations shares.
pub(super) fn list_request(from: ObjectType, from_id: i64, to: Option<ObjectType>) -> String {
    fingerprint(&[
        "list",
        &from.to_string(),
        &from_id.to_string(),
        &to.map(|t| t.to_string()).unwrap_or_default(),
    ])
}

pub(super) fn check_page_size(limit: u32) -> Result<(), DomainError> {
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(DomainError::InvalidArgument(format!(
            "limit must be between 1 and {MAX_PAGE_SIZE}, not {limit}"
        )));
    }
    Ok(())
}

fn time(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

impl AssociationService {
    /// Up to `limit` associated records of `to` type of one record, after
    /// the cursor `after`.
    pub async fn page_associations(
        &self,
        pair: PortalPair,
        from_id: i64,
        after: Option<&str>,
        limit: u32,
    ) -> ServiceResult<AssociationPage> {
        check_portal(pair.portal)?;
        check_page_size(limit)?;
        let input = PageInput {
            from_id,
            after: after.map(str::to_string),
        };
        let mut pages = self.pages(pair, &[input], limit).await?;
        Ok(pages.pop().expect("one page per input")?)
    }

    /// The first page of each record (all valid ids), from one store read.
    pub async fn first_pages(
        &self,
        pair: PortalPair,
        from_ids: &[i64],
        limit: u32,
    ) -> ServiceResult<Vec<AssociationPage>> {
        check_portal(pair.portal)?;
        check_page_size(limit)?;
        let inputs: Vec<PageInput> = from_ids
            .iter()
            .map(|&from_id| PageInput {
                from_id,
                after: None,
            })
            .collect();
        let pages = self.pages(pair, &inputs, limit).await?;
        Ok(pages.into_iter().collect::<Result<_, _>>()?)
    }

    /// A page of up to `limit` associated records from a record's first
    /// rows (at least `cap` of them, unless it has no more).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn page_of(
        &self,
        cache: &mut HashMap<(ObjectType, ObjectType), PairCatalog>,
        pair: PortalPair,
        from_id: i64,
        mut rows: Vec<RecordRow>,
        limit: u32,
        cap: u32,
    ) -> ServiceResult<AssociationPage> {
        let PortalPair { portal, from, to } = pair;
        let records = distinct_records(&rows);
        // A record followed by another is complete; the last one read is
        // complete only if the rows ran out before the cap.
        let capped = rows.len() >= cap as usize;
        let more = records > limit as usize || capped;
        let keep = if records > limit as usize {
            limit as usize
        } else if capped && records > 1 {
            records - 1
        } else {
            records
        };
        let (take, _) = first_records(&rows, keep, |r| (r.0, r.1));
        rows.truncate(take);
        let next = match rows.last() {
            Some((t, id, _)) if more => {
                let request = list_request(from, from_id, Some(to));
                let position = Some((t.to_string(), *id));
                Some(self.cursors.encode(portal, &request, &position))
            }
            _ => None,
        };
        let records = self.group_records(cache, portal, from, rows).await?;
        Ok(AssociationPage { records, next })
    }

    /// One page for each input record, from one store read; an input whose
    /// record holds no association of `to` type fails with `NoAssociations`
    /// (only on its first page), as HubSpot's batch read does. The whole
    /// answer is read before it returns (`stream_pages` answers as it reads).
    pub async fn page_many(
        &self,
        pair: PortalPair,
        inputs: &[PageInput],
        limit: u32,
    ) -> ServiceResult<BatchOutcome<AssociationPage>> {
        page_stream::check_batch_read(pair, inputs.len(), limit)?;
        let (starts, mut reader) = self.open_pages(pair, inputs, limit).await?;
        let (errors, skip) = page_stream::batch_failures(pair, inputs, starts);
        let mut outcome = BatchOutcome::new();
        outcome.errors = errors;
        while let Some((index, page)) = reader.next_page(self).await? {
            if skip.binary_search(&index).is_err() {
                outcome.results.push((index, page));
            }
        }
        Ok(outcome)
    }

    fn record(object_type: ObjectType, summary: RecordSummary) -> Record {
        Record {
            object_type,
            id: summary.id,
            created_at: time(summary.first_created_us),
            updated_at: time(summary.last_created_us),
        }
    }

    /// A record that holds associations; `ObjectNotFound` otherwise.
    pub async fn record_by_id(
        &self,
        portal: i64,
        object_type: ObjectType,
        id: i64,
    ) -> ServiceResult<Record> {
        check_portal(portal)?;
        check_id("objectId", id)?;
        let id = self.resolve_id(portal, object_type, id).await?;
        let found = self
            .store
            .records(portal, object_type, RecordSelect::Ids(&[id]))
            .await?;
        match found.first() {
            Some(summary) => Ok(Self::record(object_type, *summary)),
            None => Err(DomainError::ObjectNotFound { object_type, id }.into()),
        }
    }

    /// Up to `limit` records of an object type that hold associations, in id
    /// order, after the cursor `after`.
    pub async fn page_records(
        &self,
        portal: i64,
        object_type: ObjectType,
        after: Option<&str>,
        limit: u32,
    ) -> ServiceResult<RecordPage> {
        check_portal(portal)?;
        check_page_size(limit)?;
        let request = fingerprint(&["records", &object_type.to_string()]);
        let after_id: i64 = match after.filter(|c| !c.is_empty()) {
            Some(c) => self.cursors.decode(c, portal, &request)?,
            None => 0,
        };
        let mut found = self
            .store
            .records(
                portal,
                object_type,
                RecordSelect::After {
                    after: after_id,
                    limit: limit + 1,
                },
            )
            .await?;
        let more = found.len() > limit as usize;
        found.truncate(limit as usize);
        let next = match found.last() {
            Some(last) if more => Some(self.cursors.encode(portal, &request, &last.id)),
            _ => None,
        };
        Ok(RecordPage {
            records: found
                .into_iter()
                .map(|s| Self::record(object_type, s))
                .collect(),
            next,
        })
    }
}
