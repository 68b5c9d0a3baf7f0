//! Conversions between `associations.v1` messages and the service's
//! requests, answers and chunks (the gRPC front end's side; the domain's
//! own conversions are `proto::convert`); bad input is a `DomainError`.
use std::collections::HashMap;

use crate::domain::error::LimitSource;
use crate::domain::feed::{ChangeKind, FeedStart};
use crate::domain::ObjectType;
use crate::domain::{Category, DomainError, TypeKey};
use crate::proto;
use crate::proto::convert::*;
use crate::service::{
    optional_type, AssociatedRecord, AssociationChunk, AssociationInput, BatchChunk,
    BatchListRequest, BatchOutcome, ChangeChunk, ExportChunk, ExportRequest, HeldAssociation,
    ImportRow, LimitUsage, LimitView, ListRequest,
};
use crate::status_table::{error_context, status_for, sub_category};

/// One type's limit usage.
pub fn type_usage(usage: &LimitUsage) -> proto::TypeUsage {
    proto::TypeUsage {
        definition: Some(definition(&usage.def)),
        limit: usage.limit as i32,
        source: match usage.source {
            LimitSource::Platform => proto::LimitSource::Platform,
            LimitSource::User => proto::LimitSource::Admin,
        } as i32,
        near_from: usage.near_from,
        records_at_limit: usage.usage.at_or_above,
        records_near_limit: usage.usage.near,
        largest_usage: usage.usage.largest,
        at_limit_samples: usage
            .usage
            .at_or_above_samples
            .iter()
            .map(|s| record_usage(*s))
            .collect(),
        near_limit_samples: usage
            .usage
            .near_samples
            .iter()
            .map(|s| record_usage(*s))
            .collect(),
    }
}

pub fn item_error(index: usize, err: &DomainError) -> proto::ItemError {
    proto::ItemError {
        index: index as u32,
        category: status_for(err.kind()).category.to_string(),
        sub_category: sub_category(err).to_string(),
        message: err.to_string(),
        context: error_context(err)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}

pub fn item_errors(errors: &[(usize, DomainError)]) -> Vec<proto::ItemError> {
    errors.iter().map(|(i, e)| item_error(*i, e)).collect()
}

/// The results and errors of a create call.
pub fn created(
    outcome: BatchOutcome<HeldAssociation>,
) -> (Vec<proto::CreatedAssociation>, Vec<proto::ItemError>) {
    (
        outcome
            .results
            .iter()
            .map(|(index, held)| proto::CreatedAssociation {
                index: *index as u32,
                from_object_type_id: held.from_type.to_string(),
                from_id: held.from_id,
                to_object_type_id: held.to_type.to_string(),
                to_id: held.to_id,
                types: held.types.iter().map(type_with_label).collect(),
            })
            .collect(),
        item_errors(&outcome.errors),
    )
}

pub fn inputs_from_proto(
    inputs: &[proto::AssociationInput],
) -> Result<Vec<AssociationInput>, DomainError> {
    inputs
        .iter()
        .map(|i| {
            Ok(AssociationInput {
                from_id: i.from_id,
                to_id: i.to_id,
                types: i
                    .types
                    .iter()
                    .map(key_from_proto)
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

pub fn limit_config(view: &LimitView) -> proto::LimitConfig {
    proto::LimitConfig {
        from_object_type_id: view.def.from.to_string(),
        to_object_type_id: view.def.to.to_string(),
        category: category_to_proto(view.def.key.category),
        type_id: view.def.key.type_id,
        label: view.def.label.clone(),
        user_enforced_max_to_object_ids: view.user_limit.map(|l| l as i32),
        platform_max_to_object_ids: view.platform_limit as i32,
    }
}

pub fn import_row(row: &proto::ImportRow) -> Result<ImportRow, DomainError> {
    let key = match (row.category, row.type_id) {
        (0, 0) => None,
        (category, type_id) => Some(TypeKey {
            category: Category::from_code(i64::from(category)).ok_or_else(|| {
                DomainError::InvalidArgument(format!(
                    "row {}: give an association category with type id {type_id}",
                    row.line
                ))
            })?,
            type_id,
        }),
    };
    Ok(ImportRow {
        line: row.line,
        from_type: row.from_object_type.clone(),
        from_id: row.from_object_id,
        to_type: row.to_object_type.clone(),
        to_id: row.to_object_id,
        key,
    })
}

pub fn associated_object(record: &AssociatedRecord) -> proto::AssociatedObject {
    proto::AssociatedObject {
        to_object_id: record.to_id,
        types: record.types.iter().map(|d| type_with_label(d)).collect(),
        to_object_type_id: record.to_type.to_string(),
    }
}

/// A feed start point; unspecified is `None` (a cursor must then be given).
pub fn feed_start_point(value: i32) -> Result<Option<FeedStart>, DomainError> {
    match proto::FeedStartPoint::try_from(value) {
        Ok(proto::FeedStartPoint::Unspecified) => Ok(None),
        Ok(proto::FeedStartPoint::Now) => Ok(Some(FeedStart::Now)),
        Ok(proto::FeedStartPoint::Beginning) => Ok(Some(FeedStart::Beginning)),
        Err(_) => Err(DomainError::InvalidArgument(format!(
            "start {value} is not one of FEED_START_POINT_NOW, FEED_START_POINT_BEGINNING"
        ))),
    }
}

/// Empty text, proto3's "unset", as `None`.
pub fn optional(text: &str) -> Option<&str> {
    Some(text).filter(|t| !t.is_empty())
}

fn cursor(text: &str) -> Option<String> {
    optional(text).map(str::to_string)
}

pub fn list_request(r: &proto::ListAssociationsRequest) -> Result<ListRequest, DomainError> {
    Ok(ListRequest {
        portal: r.portal_id,
        from: ObjectType::parse(&r.object_type)?,
        from_id: r.object_id,
        to: optional_type(optional(&r.to_object_type))?,
        cursor: cursor(&r.cursor),
    })
}

pub fn batch_list_request(
    r: &proto::BatchListAssociationsRequest,
) -> Result<BatchListRequest, DomainError> {
    Ok(BatchListRequest {
        portal: r.portal_id,
        from: ObjectType::parse(&r.object_type)?,
        from_ids: r.object_ids.clone(),
        to: optional_type(optional(&r.to_object_type))?,
        cursor: cursor(&r.cursor),
    })
}

pub fn export_request(r: &proto::ExportAssociationsRequest) -> Result<ExportRequest, DomainError> {
    Ok(ExportRequest {
        portal: r.portal_id,
        from: optional_type(optional(&r.from_object_type))?,
        to: optional_type(optional(&r.to_object_type))?,
        cursor: cursor(&r.cursor),
    })
}

/// How a stream's chunks carry their rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Rows,
    Columns,
}

/// A request's chunk layout; unspecified is the row layout.
pub fn chunk_layout(value: i32) -> Result<Layout, DomainError> {
    match proto::ChunkLayout::try_from(value) {
        Ok(proto::ChunkLayout::Unspecified | proto::ChunkLayout::Rows) => Ok(Layout::Rows),
        Ok(proto::ChunkLayout::Columns) => Ok(Layout::Columns),
        Err(_) => Err(DomainError::InvalidArgument(format!(
            "layout {value} is not one of CHUNK_LAYOUT_ROWS, CHUNK_LAYOUT_COLUMNS"
        ))),
    }
}

/// A chunk's columns as they fill, each association type listed once.
#[derive(Default)]
struct ColumnsBuilder {
    columns: proto::AssociationColumns,
    indexes: HashMap<(ObjectType, ObjectType, TypeKey), u32>,
    /// The last row's type and index (rows often share their neighbour's).
    last: Option<((ObjectType, ObjectType, TypeKey), u32)>,
}

impl ColumnsBuilder {
    fn with_rows(rows: usize, from_ids: bool) -> ColumnsBuilder {
        let mut builder = ColumnsBuilder::default();
        let columns = &mut builder.columns;
        columns.type_indexes.reserve(rows);
        columns.to_object_ids.reserve(rows);
        if from_ids {
            columns.from_object_ids.reserve(rows);
        }
        builder
    }

    /// Appends one row; `from_id` only where the stream names from-records.
    fn push(
        &mut self,
        (from, to, key): (ObjectType, ObjectType, TypeKey),
        label: Option<&str>,
        from_id: Option<i64>,
        to_id: i64,
    ) {
        let types = &mut self.columns.types;
        let index = match self.last {
            Some((last, index)) if last == (from, to, key) => index,
            _ => *self.indexes.entry((from, to, key)).or_insert_with(|| {
                types.push(proto::AssociationTypeWithLabel {
                    category: category_to_proto(key.category),
                    type_id: key.type_id,
                    label: label.map(str::to_string),
                    from_object_type_id: from.to_string(),
                    to_object_type_id: to.to_string(),
                });
                // A chunk holds far fewer than u32::MAX rows.
                (types.len() - 1) as u32
            }),
        };
        self.last = Some(((from, to, key), index));
        self.columns.type_indexes.push(index);
        self.columns.to_object_ids.extend([to_id]);
        self.columns.from_object_ids.extend(from_id);
    }

    /// Appends one row per type of an associated record.
    fn push_record(&mut self, from_id: Option<i64>, record: &AssociatedRecord) {
        for def in &record.types {
            let label = def.label.as_deref();
            self.push((def.from, def.to, def.key), label, from_id, record.to_id);
        }
    }
}

pub fn list_chunk(chunk: AssociationChunk, layout: Layout) -> proto::ListAssociationsResponse {
    let (results, columns) = match layout {
        Layout::Rows => (chunk.records.iter().map(associated_object).collect(), None),
        Layout::Columns => {
            let rows = chunk.records.iter().map(|r| r.types.len()).sum();
            let mut builder = ColumnsBuilder::with_rows(rows, false);
            for record in &chunk.records {
                builder.push_record(None, record);
            }
            (Vec::new(), Some(builder.columns))
        }
    };
    proto::ListAssociationsResponse {
        from_object_type_id: chunk.from_type.to_string(),
        from_object_id: chunk.from_id,
        to_object_type_id: chunk.to_type.map(|t| t.to_string()).unwrap_or_default(),
        results,
        cursor: chunk.cursor,
        columns,
    }
}

pub fn batch_chunk(chunk: BatchChunk, layout: Layout) -> proto::BatchListAssociationsResponse {
    let (rows, columns) = match layout {
        Layout::Rows => (
            chunk
                .rows
                .iter()
                .map(|(from_id, record)| proto::AssociationRow {
                    from_object_id: *from_id,
                    to_object_type_id: record.to_type.to_string(),
                    to_object_id: record.to_id,
                    types: record.types.iter().map(|d| type_with_label(d)).collect(),
                })
                .collect(),
            None,
        ),
        Layout::Columns => {
            let rows = chunk.rows.iter().map(|(_, r)| r.types.len()).sum();
            let mut builder = ColumnsBuilder::with_rows(rows, true);
            for (from_id, record) in &chunk.rows {
                builder.push_record(Some(*from_id), record);
            }
            (Vec::new(), Some(builder.columns))
        }
    };
    proto::BatchListAssociationsResponse {
        from_object_type_id: chunk.from_type.to_string(),
        rows,
        cursor: chunk.cursor,
        columns,
    }
}

pub fn export_chunk(chunk: ExportChunk, layout: Layout) -> proto::ExportAssociationsResponse {
    let (rows, columns) = match layout {
        Layout::Rows => (
            chunk
                .rows
                .into_iter()
                .map(|(row, label)| proto::ExportedAssociation {
                    from_object_type_id: row.from_type.to_string(),
                    from_object_id: row.from_id,
                    to_object_type_id: row.to_type.to_string(),
                    to_object_id: row.to_id,
                    category: category_to_proto(row.key.category),
                    type_id: row.key.type_id,
                    label,
                })
                .collect(),
            None,
        ),
        Layout::Columns => {
            let mut builder = ColumnsBuilder::with_rows(chunk.rows.len(), true);
            for (row, label) in &chunk.rows {
                let key = (row.from_type, row.to_type, row.key);
                builder.push(key, label.as_deref(), Some(row.from_id), row.to_id);
            }
            (Vec::new(), Some(builder.columns))
        }
    };
    proto::ExportAssociationsResponse {
        rows,
        cursor: chunk.cursor,
        columns,
    }
}

pub fn change_chunk(chunk: ChangeChunk) -> proto::WatchChangesResponse {
    proto::WatchChangesResponse {
        changes: chunk
            .changes
            .into_iter()
            .map(|(change, label)| proto::AssociationChange {
                sequence: change.seq,
                kind: match change.kind {
                    ChangeKind::Created => proto::ChangeKind::AssociationCreated as i32,
                    ChangeKind::Archived => proto::ChangeKind::AssociationArchived as i32,
                    ChangeKind::Merged => proto::ChangeKind::RecordsMerged as i32,
                },
                from_object_type_id: change.row.from_type.to_string(),
                from_object_id: change.row.from_id,
                to_object_type_id: change.row.to_type.to_string(),
                to_object_id: change.row.to_id,
                category: match change.kind {
                    ChangeKind::Merged => 0,
                    _ => category_to_proto(change.row.key.category),
                },
                type_id: change.row.key.type_id,
                label,
                changed_at_unix_micros: change.changed_at_us,
            })
            .collect(),
        cursor: chunk.cursor,
    }
}
