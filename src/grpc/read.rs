//! `AssociationRead`: the streamed reads and the change feed.
use tonic::{Request, Response, Status};

use super::*;
use crate::domain::feed::ChangeKind;
use crate::proto;
use crate::proto::association_read_server::AssociationRead;
use crate::proto::convert::*;

#[tonic::async_trait]
impl AssociationRead for GrpcApi {
    type ListAssociationsStream = ResponseStream<proto::ListAssociationsChunk>;
    type BatchListAssociationsStream = ResponseStream<proto::BatchListAssociationsChunk>;
    type ExportAssociationsStream = ResponseStream<proto::ExportAssociationsChunk>;
    type WatchChangesStream = ResponseStream<proto::WatchChangesResponse>;

    async fn watch_changes(
        &self,
        request: Request<proto::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let r = request.into_inner();
        let beginning = r.start == proto::FeedStartPoint::Beginning as i32;
        let start = self
            .service
            .feed_start(r.portal_id, optional(&r.cursor), beginning)?;
        let receiver = self.service.watch_changes(r.portal_id, start).await?;
        Ok(respond(receiver, |chunk| proto::WatchChangesResponse {
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
        }))
    }

    async fn list_associations(
        &self,
        request: Request<proto::ListAssociationsRequest>,
    ) -> Result<Response<Self::ListAssociationsStream>, Status> {
        let r = request.into_inner();
        let receiver = self
            .service
            .stream_associations(
                r.portal_id,
                &r.object_type,
                r.object_id,
                optional(&r.to_object_type),
                optional(&r.cursor),
            )
            .await?;
        Ok(respond(receiver, |chunk| proto::ListAssociationsChunk {
            from_object_type_id: chunk.from_type.to_string(),
            from_object_id: chunk.from_id,
            to_object_type_id: chunk.to_type.map(|t| t.to_string()).unwrap_or_default(),
            results: chunk.records.iter().map(associated_object).collect(),
            cursor: chunk.cursor,
        }))
    }

    async fn batch_list_associations(
        &self,
        request: Request<proto::BatchListAssociationsRequest>,
    ) -> Result<Response<Self::BatchListAssociationsStream>, Status> {
        let r = request.into_inner();
        let receiver = self
            .service
            .stream_batch(
                r.portal_id,
                &r.object_type,
                &r.object_ids,
                optional(&r.to_object_type),
                optional(&r.cursor),
            )
            .await?;
        Ok(respond(receiver, |chunk| {
            proto::BatchListAssociationsChunk {
                from_object_type_id: chunk.from_type.to_string(),
                rows: chunk
                    .rows
                    .iter()
                    .map(|(from_id, record)| proto::AssociationRow {
                        from_object_id: *from_id,
                        to_object_type_id: record.to_type.to_string(),
                        to_object_id: record.to_id,
                        types: record.types.iter().map(type_with_label).collect(),
                    })
                    .collect(),
                cursor: chunk.cursor,
            }
        }))
    }

    async fn export_associations(
        &self,
        request: Request<proto::ExportAssociationsRequest>,
    ) -> Result<Response<Self::ExportAssociationsStream>, Status> {
        let r = request.into_inner();
        let receiver = self
            .service
            .stream_export(
                r.portal_id,
                optional(&r.from_object_type),
                optional(&r.to_object_type),
                optional(&r.cursor),
            )
            .await?;
        Ok(respond(receiver, |chunk| proto::ExportAssociationsChunk {
            rows: chunk
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
            cursor: chunk.cursor,
        }))
    }

    async fn list_definitions(
        &self,
        request: Request<proto::ListDefinitionsRequest>,
    ) -> Result<Response<proto::ListDefinitionsResponse>, Status> {
        let r = request.into_inner();
        let defs = self
            .service
            .definitions(r.portal_id, &r.from_object_type, &r.to_object_type)
            .await?;
        Ok(Response::new(proto::ListDefinitionsResponse {
            definitions: defs.iter().map(definition).collect(),
        }))
    }
}
