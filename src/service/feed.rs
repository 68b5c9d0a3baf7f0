//! The change feed: cursors, the live watch and retention.
use super::stream::{Scan, Step};
use super::*;

impl AssociationService {
    /// The feed's cursor for a sequence number.
    pub(super) fn feed_cursor(&self, portal: i64, seq: i64) -> String {
        self.cursors.encode(portal, &fingerprint(&["feed"]), &seq)
    }

    /// Where a feed reader starts: right after a cursor from an earlier
    /// message, or, without one, at `start` (which must then be given).
    pub fn feed_start(
        &self,
        portal: i64,
        cursor: Option<&str>,
        start: Option<FeedStart>,
    ) -> ServiceResult<FeedStart> {
        match (cursor.filter(|c| !c.is_empty()), start) {
            (Some(c), _) => Ok(FeedStart::After(self.cursors.decode(
                c,
                portal,
                &fingerprint(&["feed"]),
            )?)),
            (None, Some(start)) => Ok(start),
            (None, None) => Err(DomainError::InvalidArgument(
                "give a cursor, or a start point: now or the beginning of retention".into(),
            )
            .into()),
        }
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

    /// The portals whose idle feed readers this process polls for: the
    /// pollers running for each (one, however many readers) and their looks
    /// at its feed head so far, what idle readers cost the database.
    pub fn feed_pollers(&self) -> HashMap<i64, (usize, u64)> {
        self.feed_polls.pollers()
    }

    /// Removes the admin changes every plugin has acknowledged; answers how
    /// many.
    pub async fn prune_admin_log(&self) -> ServiceResult<u64> {
        Ok(self.hooks.prune_log().await?)
    }

    /// Streams every committed change of a portal after `start`, in commit
    /// order, then waits for more until the receiver is dropped. Each chunk's
    /// cursor resumes right after it.
    pub async fn watch_changes(
        self: &Arc<Self>,
        portal: i64,
        start: FeedStart,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<ChangeChunk>>> {
        self.read_changes(portal, start, false).await
    }

    /// Like `watch_changes`; with `stop_at_head`, the stream ends once it
    /// has delivered the changes committed before the call.
    pub async fn read_changes(
        self: &Arc<Self>,
        portal: i64,
        start: FeedStart,
        stop_at_head: bool,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<ChangeChunk>>> {
        check_portal(portal)?;
        let (pruned, last) = self.store.feed_bounds(portal).await?;
        let seq = match start {
            FeedStart::Now => last,
            FeedStart::Beginning => pruned,
            FeedStart::After(seq) if seq < pruned => {
                return Err(DomainError::CursorExpired(seq).into())
            }
            FeedStart::After(seq) => seq,
        };
        let slot = self.stream_slot(portal)?;
        Ok(stream::produce(
            slot,
            FeedScan {
                written: Arc::clone(&self.written),
                service: Arc::clone(self),
                cache: HashMap::new(),
                portal,
                seq,
                until: stop_at_head.then_some(last),
            },
        ))
    }

    /// The next changes after `seq`, labelled; `None` when there are none.
    /// A gap means retention removed changes the reader had not seen yet.
    pub(super) async fn feed_page(
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

    /// Checks every invariant of the store (see `verify_store`).
    pub async fn verify(&self) -> ServiceResult<Vec<crate::domain::verify::CheckReport>> {
        super::verify_store(self.store.as_ref()).await
    }
}

/// A portal's changes after `seq`, following new ones as they commit.
struct FeedScan {
    service: Arc<AssociationService>,
    /// Woken by this process's writes.
    written: Arc<Notify>,
    cache: HashMap<(ObjectType, ObjectType), PairCatalog>,
    portal: i64,
    seq: i64,
    /// The feed head to stop at; none: follow new changes without end.
    until: Option<i64>,
}

impl Scan for FeedScan {
    type Chunk = ChangeChunk;

    fn endless(&self) -> bool {
        self.until.is_none()
    }

    async fn step(mut self) -> ServiceResult<Step<ChangeChunk, FeedScan>> {
        if self.until.is_some_and(|head| self.seq >= head) {
            return Ok(Step::End);
        }
        let notify = Arc::clone(&self.written);
        // Other replicas' commits: the portal's one shared poller wakes us.
        let poll = self.service.feed_polls.join(&self.service, self.portal);
        loop {
            // Listening before reading, so a write in between is not missed.
            let written = notify.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            let moved = poll.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let page = self
                .service
                .feed_page(&mut self.cache, self.portal, self.seq)
                .await?;
            match page {
                Some(changes) => {
                    self.seq = changes.last().map(|(c, _)| c.seq).unwrap_or(self.seq);
                    let cursor = self.service.feed_cursor(self.portal, self.seq);
                    return Ok(Step::More(ChangeChunk { changes, cursor }, self));
                }
                None if self.until.is_some() => return Ok(Step::End),
                None => {
                    tokio::select! {
                        _ = written => {}
                        _ = moved => {}
                    }
                }
            }
        }
    }
}

/// Updates a portal's (running pollers, looks); forgets a portal left
/// with none, so the map holds only portals being polled.
fn count(
    running: &std::sync::Mutex<HashMap<i64, (usize, u64)>>,
    portal: i64,
    change: impl FnOnce(&mut (usize, u64)),
) {
    let mut running = running.lock().unwrap_or_else(|e| e.into_inner());
    let counts = running.entry(portal).or_default();
    change(counts);
    if counts.0 == 0 {
        running.remove(&portal);
    }
}

/// The portals' shared feed pollers. A reader that has caught up waits for
/// this process's writes and for its portal's one poller, which looks for
/// other replicas' commits every poll interval: idle readers of a portal
/// cost the database one query per interval together, however many.
#[derive(Default)]
pub(super) struct FeedPolls {
    portals: std::sync::Mutex<HashMap<i64, std::sync::Weak<PortalPoll>>>,
    /// Each portal's running pollers and their looks at its feed head so far.
    running: Arc<std::sync::Mutex<HashMap<i64, (usize, u64)>>>,
}

/// One portal's poller, alive while a reader holds it.
pub(super) struct PortalPoll {
    /// Woken when the portal's feed head moved.
    pub(super) moved: Notify,
}

impl FeedPolls {
    /// The portals with running pollers: how many each, and their looks at
    /// its feed head so far.
    pub(super) fn pollers(&self) -> HashMap<i64, (usize, u64)> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .iter()
            .filter(|(_, (pollers, _))| *pollers > 0)
            .map(|(portal, counts)| (*portal, *counts))
            .collect()
    }

    /// The portal's poller, started if no reader holds one.
    pub(super) fn join(&self, service: &Arc<AssociationService>, portal: i64) -> Arc<PortalPoll> {
        let mut portals = self.portals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(poll) = portals.get(&portal).and_then(std::sync::Weak::upgrade) {
            return poll;
        }
        let poll = Arc::new(PortalPoll {
            moved: Notify::new(),
        });
        portals.insert(portal, Arc::downgrade(&poll));
        portals.retain(|_, p| p.strong_count() > 0);
        let (store, weak) = (Arc::clone(&service.store), Arc::downgrade(&poll));
        let interval = service.settings.feed_poll_interval;
        let running = Arc::clone(&self.running);
        count(&running, portal, |(pollers, _)| *pollers += 1);
        tokio::spawn(async move {
            let mut head = None;
            loop {
                tokio::time::sleep(interval).await;
                let Some(poll) = weak.upgrade() else {
                    count(&running, portal, |(pollers, _)| *pollers -= 1);
                    return;
                };
                count(&running, portal, |(_, looks)| *looks += 1);
                match store.feed_bounds(portal).await {
                    // The first look wakes every reader too: a commit may
                    // have come between a reader's last read and it.
                    Ok((_, last)) => {
                        if head != Some(last) {
                            poll.moved.notify_waiters();
                        }
                        head = Some(last);
                    }
                    // The readers find the failure on their next read.
                    Err(_) => poll.moved.notify_waiters(),
                }
            }
        });
        poll
    }
}
