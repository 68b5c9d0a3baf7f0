//! What the `Store` trait takes and answers: scans, filters, usage,
//! records, and the batches streams read in.
use super::*;

/// Which types an archive removes between each pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeFilter {
    /// Every type, both directions.
    All,
    /// These types from -> to, and their inverses to -> from.
    Only {
        forward: Vec<TypeKey>,
        inverse: Vec<TypeKey>,
    },
}

/// An admin limit as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLimit {
    pub from: ObjectType,
    pub to: ObjectType,
    pub key: TypeKey,
    pub max_to_object_ids: u32,
}

/// The records of one object type by how many associations of one type
/// each holds (its counter).
#[derive(Clone, Copy, Debug)]
pub struct UsageScan {
    pub portal: i64,
    pub object_type: ObjectType,
    pub key: TypeKey,
}

/// How a type's counters stand against two thresholds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeUsage {
    /// Records holding `at` or more.
    pub at_or_above: u64,
    /// Records holding at least `near` but fewer than `at`.
    pub near: u64,
    /// The most any record holds (0 when none holds any).
    pub largest: i64,
    /// Up to the asked number of records of each group, (id, count),
    /// largest first.
    pub at_or_above_samples: Vec<(i64, i64)>,
    pub near_samples: Vec<(i64, i64)>,
}

/// A new admin label.
#[derive(Clone, Debug)]
pub struct NewLabel {
    pub from: ObjectType,
    pub to: ObjectType,
    pub label: String,
    pub name: String,
    pub inverse_label: Option<String>,
}

/// One row of a record's associations: (to type, to id, type).
pub type RecordRow = (ObjectType, i64, TypeKey);

/// Rows of one statement, in batches; at most one error, then the end.
pub type RowBatches<T> = tokio::sync::mpsc::Receiver<StoreResult<Vec<T>>>;

/// Batches a scan may read ahead of its receiver.
pub(crate) const SCAN_AHEAD: usize = 2;

/// A scan's rows gathered into batches of a fixed size for its receiver.
pub(crate) struct Batcher<T> {
    sender: tokio::sync::mpsc::Sender<StoreResult<Vec<T>>>,
    pending: Vec<T>,
    size: usize,
}

impl<T> Batcher<T> {
    pub(crate) fn new(sender: tokio::sync::mpsc::Sender<StoreResult<Vec<T>>>, size: usize) -> Self {
        let size = size.max(1);
        Batcher {
            sender,
            pending: Vec::with_capacity(size),
            size,
        }
    }

    /// Adds a row, sending a full batch; false once the receiver went away.
    pub(crate) async fn push(&mut self, row: T) -> bool {
        self.pending.push(row);
        self.pending.len() < self.size || self.flush().await
    }

    /// Sends what is gathered (the last batch may be short or empty);
    /// false once the receiver went away.
    pub(crate) async fn flush(&mut self) -> bool {
        let full = self.take();
        self.sender.send(Ok(full)).await.is_ok()
    }

    /// `push` for a blocking thread (never a runtime's own thread).
    pub(crate) fn push_blocking(&mut self, row: T) -> bool {
        self.pending.push(row);
        self.pending.len() < self.size || self.flush_blocking()
    }

    /// `flush` for a blocking thread.
    pub(crate) fn flush_blocking(&mut self) -> bool {
        let full = self.take();
        self.sender.blocking_send(Ok(full)).is_ok()
    }

    /// The rows gathered, leaving room for the next batch.
    fn take(&mut self) -> Vec<T> {
        std::mem::replace(&mut self.pending, Vec::with_capacity(self.size))
    }
}

/// What `scan_records` reads.
#[derive(Clone, Copy, Debug)]
pub struct RecordScan {
    pub portal: i64,
    pub from: ObjectType,
    pub from_id: i64,
    pub to: Option<ObjectType>,
    /// Rows of records after this one (type, id); `None`: from the start.
    pub after: Option<(ObjectType, i64)>,
    pub batch: usize,
}

/// What `scan_batch` reads.
#[derive(Clone, Debug)]
pub struct BatchScan {
    pub portal: i64,
    pub from: ObjectType,
    /// The records, in the order their rows come.
    pub from_ids: Vec<i64>,
    pub to: Option<ObjectType>,
    /// Rows of the first record after this one (type, id).
    pub after: Option<(ObjectType, i64)>,
    pub batch: usize,
}

/// What `scan_pages` reads.
#[derive(Clone, Debug)]
pub struct PageScan {
    pub portal: i64,
    pub from: ObjectType,
    pub to: ObjectType,
    /// Each input: (from id, the to-id its page starts after; 0 for the
    /// first page).
    pub inputs: Vec<(i64, i64)>,
    /// Most rows per input (each input's first rows in key order).
    pub rows: u32,
    pub batch: usize,
}

/// One item of a page scan, by input index: first every input that holds
/// no row after its start (`Empty`, in input order), then the inputs' rows,
/// input by input in input order, each input's in key order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageItem {
    Empty(usize),
    Row(usize, RecordRow),
}

/// What `scan_export` reads.
#[derive(Clone, Copy, Debug)]
pub struct ExportScan {
    pub portal: i64,
    pub from: Option<ObjectType>,
    pub to: Option<ObjectType>,
    /// Rows after this one; `None`: from the start.
    pub after: Option<DirectedRow>,
    pub batch: usize,
}

/// A record that holds associations, with the times (µs since the epoch) of
/// its oldest and newest association.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSummary {
    pub id: i64,
    pub first_created_us: i64,
    pub last_created_us: i64,
}

/// Which records `Store::records` returns.
#[derive(Clone, Copy, Debug)]
pub enum RecordSelect<'a> {
    /// These ids (those without associations are left out).
    Ids(&'a [i64]),
    /// Up to `limit` records with ids above `after`, in id order.
    After { after: i64, limit: u32 },
}
