//! Batch reads answered as they are read (HubSpot's batch read): one store
//! scan tells first which inputs hold nothing, so every input's fate is
//! known before the first page, then yields the inputs' rows in input
//! order, and each input's page is built as soon as its rows are in.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::pages::{AssociationPage, PageInput};
use super::stream::{self, Metered, Scan, Step};
use super::*;
use crate::domain::error::check_id;
use crate::store::{PageItem, PageScan, RowBatches};

/// What a batch read knows of an input before its first page.
#[derive(Debug)]
pub(super) enum InputStart {
    /// Its id or cursor is refused.
    Refused(DomainError),
    /// It holds no row after its start (its page is empty).
    Empty,
    /// It holds rows after its start.
    Rows,
}

/// A batch read whose pages follow: every failed input, known before the
/// first page, and the pages of the others in input order.
pub struct PageStream {
    pub errors: Vec<(usize, DomainError)>,
    pub pages: mpsc::Receiver<ServiceResult<PageChunk>>,
}

/// Pages of consecutive inputs, each with its input's index.
#[derive(Debug)]
pub struct PageChunk {
    pub pages: Vec<(usize, AssociationPage)>,
}

impl Metered for PageChunk {
    const STREAM: &'static str = "batch_read";
    fn rows(&self) -> usize {
        let records = self.pages.iter().flat_map(|(_, p)| &p.records);
        records.map(|r| r.types.len()).sum()
    }
}

/// Reads one page scan's items into pages, input by input.
pub(super) struct PageReader {
    pair: PortalPair,
    limit: u32,
    cap: u32,
    cache: HashMap<(ObjectType, ObjectType), PairCatalog>,
    /// Each scanned input: (its index among the inputs, its from-id).
    scanned: Vec<(usize, i64)>,
    items: Option<RowBatches<PageItem>>,
    /// Items received and not yet read.
    queue: VecDeque<PageItem>,
    /// The next scanned input to page.
    next: usize,
}

fn out_of_order(what: &str) -> ServiceError {
    StoreError::Corrupt(format!("a page scan's {what} came out of input order")).into()
}

impl PageReader {
    /// Whether the next item is already queued, receiving a batch if not;
    /// false at the scan's end.
    async fn fill(&mut self) -> ServiceResult<bool> {
        while self.queue.is_empty() {
            let Some(items) = self.items.as_mut() else {
                return Ok(false);
            };
            match items.recv().await {
                Some(batch) => self.queue.extend(batch?),
                None => {
                    self.items = None;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Reads the leading `Empty` items: which scanned inputs hold nothing.
    async fn empties(&mut self) -> ServiceResult<Vec<bool>> {
        let mut empty = vec![false; self.scanned.len()];
        while self.fill().await? {
            match self.queue.front() {
                Some(PageItem::Empty(n)) if *n < empty.len() => {
                    empty[*n] = true;
                    self.queue.pop_front();
                }
                Some(PageItem::Empty(_)) => return Err(out_of_order("empty input")),
                _ => break,
            }
        }
        Ok(empty)
    }

    /// The next scanned input's page, with its input index; `None` after
    /// the last.
    pub(super) async fn next_page(
        &mut self,
        service: &AssociationService,
    ) -> ServiceResult<Option<(usize, AssociationPage)>> {
        let Some(&(index, from_id)) = self.scanned.get(self.next) else {
            if self.fill().await? {
                return Err(out_of_order("row"));
            }
            return Ok(None);
        };
        let mut rows: Vec<RecordRow> = Vec::new();
        while self.fill().await? {
            match self.queue.front() {
                Some(PageItem::Row(n, row)) if *n == self.next => {
                    rows.push(*row);
                    self.queue.pop_front();
                }
                Some(PageItem::Row(n, _)) if *n > self.next => break,
                _ => return Err(out_of_order("row")),
            }
        }
        rows.sort_unstable_by_key(|(_, to_id, key)| (*to_id, key.category.code(), key.type_id));
        self.next += 1;
        let (pair, limit, cap) = (self.pair, self.limit, self.cap);
        let page = service
            .page_of(&mut self.cache, pair, from_id, rows, limit, cap)
            .await?;
        Ok(Some((index, page)))
    }
}

impl AssociationService {
    /// Starts a batch read of one page per input: what each input's start
    /// is, and the reader of the pages of those that hold rows or are empty
    /// (in input order). A bad id or cursor refuses only its input.
    pub(super) async fn open_pages(
        &self,
        pair: PortalPair,
        inputs: &[PageInput],
        limit: u32,
    ) -> ServiceResult<(Vec<InputStart>, PageReader)> {
        let PortalPair { portal, from, to } = pair;
        let mut ids: Vec<i64> = inputs.iter().map(|i| i.from_id).collect();
        self.resolve_ids(portal, from, &mut ids).await?;
        let mut starts: Vec<InputStart> = Vec::with_capacity(inputs.len());
        let mut scanned = Vec::new();
        let mut scan_inputs = Vec::new();
        for (index, (input, from_id)) in inputs.iter().zip(ids).enumerate() {
            match self.page_start(pair, from_id, input.after.as_deref()) {
                Ok(after) => {
                    starts.push(InputStart::Rows);
                    scanned.push((index, from_id));
                    scan_inputs.push((from_id, after));
                }
                Err(err) => starts.push(InputStart::Refused(err)),
            }
        }
        let mut cache = HashMap::new();
        // Rows enough for one record more than the page (which tells whether
        // another page follows) when each holds every type of the pair, and
        // one type more (a label made since the catalog was read).
        let types = self
            .cached(&mut cache, portal, from, to)
            .await?
            .directed(from, to)
            .count() as u32;
        let cap = (limit + 1).saturating_mul(types.max(1) + 1);
        let items = (!scan_inputs.is_empty()).then(|| {
            self.store.scan_pages(PageScan {
                portal,
                from,
                to,
                inputs: scan_inputs,
                rows: cap,
                batch: self.chunk_size() as usize,
            })
        });
        let mut reader = PageReader {
            pair,
            limit,
            cap,
            cache,
            scanned,
            items,
            queue: VecDeque::new(),
            next: 0,
        };
        for (n, empty) in reader.empties().await?.into_iter().enumerate() {
            if empty {
                starts[reader.scanned[n].0] = InputStart::Empty;
            }
        }
        Ok((starts, reader))
    }

    /// Where an input's page starts: the to-id it follows (0: the first).
    fn page_start(
        &self,
        pair: PortalPair,
        from_id: i64,
        after: Option<&str>,
    ) -> Result<i64, DomainError> {
        let PortalPair { portal, from, to } = pair;
        check_id("objectId", from_id)?;
        let request = pages::list_request(from, from_id, Some(to));
        let position = match after.filter(|c| !c.is_empty()) {
            Some(c) => decode_record_position(self.cursors.decode(c, portal, &request)?)?,
            None => None,
        };
        Ok(position.map_or(0, |(_, id)| id))
    }

    /// One page per input, all read before the answer: the page, or why
    /// the input is refused.
    pub(super) async fn pages(
        &self,
        pair: PortalPair,
        inputs: &[PageInput],
        limit: u32,
    ) -> ServiceResult<Vec<Result<AssociationPage, DomainError>>> {
        let (starts, mut reader) = self.open_pages(pair, inputs, limit).await?;
        let mut pages: Vec<Result<AssociationPage, DomainError>> = Vec::new();
        for start in starts {
            pages.push(match start {
                InputStart::Refused(err) => Err(err),
                _ => match reader.next_page(self).await? {
                    Some((_, page)) => Ok(page),
                    None => return Err(out_of_order("input")),
                },
            });
        }
        Ok(pages)
    }

    /// HubSpot's batch read, answered as it is read: an input whose record
    /// holds no association of `to` type fails with `NoAssociations` (only
    /// on its first page), and every failure is known before the first
    /// page; the pages follow in chunks, paced by the receiver.
    pub async fn stream_pages(
        self: &Arc<Self>,
        pair: PortalPair,
        inputs: &[PageInput],
        limit: u32,
    ) -> ServiceResult<PageStream> {
        check_batch_read(pair, inputs.len(), limit)?;
        let slot = self.stream_slot(pair.portal)?;
        let (starts, reader) = self.open_pages(pair, inputs, limit).await?;
        let (errors, skip) = batch_failures(pair, inputs, starts);
        let scan = PagesScan {
            service: Arc::clone(self),
            reader,
            skip,
        };
        Ok(PageStream {
            errors,
            pages: stream::produce(slot, scan),
        })
    }
}

/// A batch read's portal, page size and at most `MAX_BATCH_READ` inputs.
pub(super) fn check_batch_read(
    pair: PortalPair,
    inputs: usize,
    limit: u32,
) -> Result<(), DomainError> {
    check_portal(pair.portal)?;
    pages::check_page_size(limit)?;
    if inputs > MAX_BATCH_READ {
        return Err(DomainError::InvalidArgument(format!(
            "a batch read may name at most {MAX_BATCH_READ} records, this one names {inputs}"
        )));
    }
    Ok(())
}

/// Which inputs of a batch read fail, from their starts: a refused id or
/// cursor, or a first page with nothing on it (HubSpot's `NoAssociations`);
/// and, ascending, the empty ones whose page is therefore left out.
pub(super) fn batch_failures(
    pair: PortalPair,
    inputs: &[PageInput],
    starts: Vec<InputStart>,
) -> (Vec<(usize, DomainError)>, Vec<usize>) {
    let (mut errors, mut skip) = (Vec::new(), Vec::new());
    for (index, (input, start)) in inputs.iter().zip(starts).enumerate() {
        let first = input.after.as_deref().is_none_or(str::is_empty);
        match start {
            InputStart::Refused(err) => errors.push((index, err)),
            InputStart::Empty if first => {
                let (from, to, from_id) = (pair.from, pair.to, input.from_id);
                errors.push((index, DomainError::NoAssociations { from, from_id, to }));
                skip.push(index);
            }
            _ => {}
        }
    }
    (errors, skip)
}

/// A batch read's pages, chunk by chunk (an input refused as empty is
/// left out).
struct PagesScan {
    service: Arc<AssociationService>,
    reader: PageReader,
    /// Inputs whose empty page is a refusal, ascending.
    skip: Vec<usize>,
}

impl Scan for PagesScan {
    type Chunk = PageChunk;

    async fn step(mut self) -> ServiceResult<Step<PageChunk, PagesScan>> {
        let limit = self.service.chunk_size() as usize;
        let mut pages = Vec::new();
        let mut records = 0;
        while records < limit {
            match self.reader.next_page(&self.service).await? {
                Some((index, _)) if self.skip.binary_search(&index).is_ok() => {}
                Some((index, page)) => {
                    records += page.records.len().max(1);
                    pages.push((index, page));
                }
                None => {
                    return Ok(match pages.is_empty() {
                        true => Step::End,
                        false => Step::Last(PageChunk { pages }),
                    })
                }
            }
        }
        Ok(Step::More(PageChunk { pages }, self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of `items`, as one batch, for `inputs` scanned inputs.
    fn reader(inputs: usize, items: Vec<PageItem>) -> PageReader {
        let (sender, receiver) = mpsc::channel(1);
        sender.try_send(Ok(items)).expect("room for one batch");
        PageReader {
            pair: PortalPair {
                portal: 1,
                from: ObjectType::CONTACT,
                to: ObjectType::DEAL,
            },
            limit: 10,
            cap: 20,
            cache: HashMap::new(),
            scanned: (0..inputs).map(|n| (n, n as i64 + 1)).collect(),
            items: Some(receiver),
            queue: VecDeque::new(),
            next: 0,
        }
    }

    /// The leading empties name scanned inputs; one that names no scanned
    /// input means the store broke its order, and is an error, not a panic.
    #[tokio::test]
    async fn empties_name_scanned_inputs_or_fail() {
        let key = TypeKey {
            category: crate::domain::Category::HubspotDefined,
            type_id: 3,
        };
        let row = PageItem::Row(0, (ObjectType::DEAL, 7, key));
        let mut ok = reader(3, vec![PageItem::Empty(1), PageItem::Empty(2), row]);
        assert_eq!(ok.empties().await.unwrap(), [false, true, true]);
        assert_eq!(ok.queue.front(), Some(&row), "the first row stays queued");
        for beyond in [3, 4] {
            let mut bad = reader(3, vec![PageItem::Empty(beyond)]);
            let err = bad.empties().await.expect_err("an input beyond the scan");
            assert!(
                matches!(err, ServiceError::Store(StoreError::Corrupt(_))),
                "{err:?}"
            );
        }
    }
}
