//! The service's inputs and outputs: what front ends send and receive.
use super::*;

/// One requested association: ids and types, in the request's direction.
#[derive(Clone, Debug)]
pub struct AssociationInput {
    pub from_id: i64,
    pub to_id: i64,
    pub types: Vec<TypeKey>,
}

/// One requested association whose type is named as HubSpot's v3 names
/// it: by machine name (`contact_to_company`) or type id.
#[derive(Clone, Debug)]
pub struct NamedInput {
    pub from_id: i64,
    pub to_id: i64,
    pub type_name: String,
}

/// An association a named write made, with the type its input named.
#[derive(Clone, Debug)]
pub struct NamedAssociation {
    pub from_id: i64,
    pub to_id: i64,
    pub def: TypeDef,
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
    /// Rows that wrote something (a new association or type).
    pub created: u64,
    /// Rows whose association and types were all held already.
    pub already_present: u64,
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
    pub(super) fn new() -> BatchOutcome<T> {
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
    /// Whether the write added anything to the pair.
    pub added: bool,
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
    /// Shared with the pair's catalog: a row costs no copy of its texts.
    pub types: Vec<Arc<TypeDef>>,
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

/// A portal and an ordered pair of object types: the scope of a write, a
/// type lookup or a paged read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortalPair {
    pub portal: i64,
    pub from: ObjectType,
    pub to: ObjectType,
}

impl PortalPair {
    /// Checks the portal and resolves both object types (ids or names).
    pub fn parse(portal: i64, from: &str, to: &str) -> Result<PortalPair, DomainError> {
        check_portal(portal)?;
        Ok(PortalPair {
            portal,
            from: ObjectType::parse(from)?,
            to: ObjectType::parse(to)?,
        })
    }
}

/// An object type given as text where empty text means "any".
pub fn optional_type(text: Option<&str>) -> Result<Option<ObjectType>, DomainError> {
    text.filter(|t| !t.is_empty())
        .map(ObjectType::parse)
        .transpose()
}

/// A stream of one record's associations, to one object type or all.
#[derive(Clone, Debug)]
pub struct ListRequest {
    pub portal: i64,
    pub from: ObjectType,
    pub from_id: i64,
    pub to: Option<ObjectType>,
    /// Resumes after the chunk that carried it.
    pub cursor: Option<String>,
}

/// A stream of the associations of several records of one object type.
#[derive(Clone, Debug)]
pub struct BatchListRequest {
    pub portal: i64,
    pub from: ObjectType,
    pub from_ids: Vec<i64>,
    pub to: Option<ObjectType>,
    pub cursor: Option<String>,
}

/// A stream of a portal's stored rows, optionally of some object types only.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    pub portal: i64,
    pub from: Option<ObjectType>,
    pub to: Option<ObjectType>,
    pub cursor: Option<String>,
}

impl super::stream::Metered for AssociationChunk {
    const STREAM: &'static str = "list";
    fn rows(&self) -> usize {
        self.records.iter().map(|r| r.types.len()).sum()
    }
}

impl super::stream::Metered for BatchChunk {
    const STREAM: &'static str = "batch_list";
    fn rows(&self) -> usize {
        self.rows.iter().map(|(_, r)| r.types.len()).sum()
    }
}

impl super::stream::Metered for ExportChunk {
    const STREAM: &'static str = "export";
    fn rows(&self) -> usize {
        self.rows.len()
    }
}

impl super::stream::Metered for ChangeChunk {
    const STREAM: &'static str = "changes";
    fn rows(&self) -> usize {
        self.changes.len()
    }
    fn sent(&self) {
        if let Some((newest, _)) = self.changes.last() {
            let age_us = (crate::store::now_us() - newest.changed_at_us).max(0);
            crate::telemetry::metrics::metrics()
                .feed_lag(std::time::Duration::from_micros(age_us as u64));
        }
    }
}

impl super::stream::Metered for (i64, crate::domain::admin::AdminChange) {
    const STREAM: &'static str = "audit";
    fn rows(&self) -> usize {
        1
    }
}
