//! The change feed's vocabulary: what happened to a stored association row.
use super::plan::DirectedRow;

/// What happened to an association row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Created = 1,
    Archived = 2,
    /// A record was merged into another; the row names the merged record
    /// (from) and the primary (to), and no association type.
    Merged = 3,
}

impl ChangeKind {
    pub fn code(self) -> i16 {
        self as i16
    }

    pub fn from_code(code: i64) -> Option<ChangeKind> {
        match code {
            1 => Some(ChangeKind::Created),
            2 => Some(ChangeKind::Archived),
            3 => Some(ChangeKind::Merged),
            _ => None,
        }
    }
}

/// One committed change, numbered in the portal's commit order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub kind: ChangeKind,
    pub row: DirectedRow,
    /// When it was written, in microseconds since the Unix epoch.
    pub changed_at_us: i64,
}

/// Where a feed reader starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedStart {
    /// Only changes committed from now on.
    Now,
    /// The oldest change still retained.
    Beginning,
    /// Right after this sequence number.
    After(i64),
}
