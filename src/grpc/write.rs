//! `AssociationWrite`: creates, archives, merges and imports.
use tonic::{Request, Response, Status};

use super::auth::{authorize, caller};
use super::convert::*;
use super::*;
use crate::domain::access::Principal;
use crate::domain::access::Role;
use crate::domain::DomainError;
use crate::domain::ObjectType;
use crate::proto;
use crate::proto::association_write_server::AssociationWrite;
use crate::service::{AssociationService, PortalPair};
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;

/// Most import failures listed in a response (all are counted).
const MAX_LISTED_IMPORT_ERRORS: usize = 1_000;

/// What one message of an import did: its rows stored (or failed), and
/// its failures listed while fewer than `MAX_LISTED_IMPORT_ERRORS` were.
async fn import_message(
    service: &AssociationService,
    principal: &Principal,
    portal: &mut Option<i64>,
    (portal_id, message_rows): (i64, Vec<proto::ImportRow>),
    listed: &mut usize,
) -> Result<proto::ImportAssociationBatchesResponse, Status> {
    principal.authorize(Role::Write, portal_id)?;
    if *portal.get_or_insert(portal_id) != portal_id {
        return Err(status::domain_status(&DomainError::InvalidArgument(
            "every message of an import must name the same portal_id".into(),
        )));
    }
    let mut progress = proto::ImportAssociationBatchesResponse {
        rows: message_rows.len() as u64,
        last_line: message_rows.iter().map(|r| r.line).max().unwrap_or(0),
        ..Default::default()
    };
    let mut rows = Vec::with_capacity(message_rows.len());
    let mut failures = Vec::new();
    for row in &message_rows {
        match import_row(row) {
            Ok(row) => rows.push(row),
            Err(err) => failures.push((row.line, err)),
        }
    }
    let outcome = service.import_rows(portal_id, &rows).await?;
    progress.succeeded = outcome.created + outcome.already_present;
    progress.created = outcome.created;
    progress.already_present = outcome.already_present;
    failures.extend(outcome.errors);
    failures.sort_by_key(|(line, _)| *line);
    progress.failed = failures.len() as u64;
    for (line, err) in failures {
        if *listed < MAX_LISTED_IMPORT_ERRORS {
            *listed += 1;
            progress.errors.push(proto::ImportRowError {
                line,
                error: Some(item_error(line as usize, &err)),
            });
        }
    }
    Ok(progress)
}

#[tonic::async_trait]
impl AssociationWrite for GrpcApi {
    type ImportAssociationBatchesStream = ResponseStream<proto::ImportAssociationBatchesResponse>;

    async fn import_associations(
        &self,
        request: Request<tonic::Streaming<proto::ImportAssociationsRequest>>,
    ) -> Result<Response<proto::ImportAssociationsResponse>, Status> {
        let principal = caller(&request)?.clone();
        let mut messages = request.into_inner();
        let (mut portal, mut listed) = (None, 0);
        let mut summary = proto::ImportAssociationsResponse::default();
        while let Some(message) = messages.message().await? {
            let message = (message.portal_id, message.rows);
            let batch =
                import_message(&self.service, &principal, &mut portal, message, &mut listed)
                    .await?;
            summary.rows += batch.rows;
            summary.succeeded += batch.succeeded;
            summary.failed += batch.failed;
            summary.created += batch.created;
            summary.already_present += batch.already_present;
            summary.errors.extend(batch.errors);
        }
        Ok(Response::new(summary))
    }

    async fn import_association_batches(
        &self,
        request: Request<tonic::Streaming<proto::ImportAssociationBatchesRequest>>,
    ) -> Result<Response<Self::ImportAssociationBatchesStream>, Status> {
        let principal = caller(&request)?.clone();
        let mut messages = request.into_inner();
        let service = Arc::clone(&self.service);
        let stall = service.settings().stream_stall_timeout;
        // One answer waits while the next message is stored, and one place
        // is kept for the call's last word: an error, or that the client
        // stalled (took no answer for the stall timeout), which ends it.
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            let Ok(last_word) = sender.clone().try_reserve_owned() else {
                return;
            };
            let (mut portal, mut listed, mut batch) = (None, 0, 0);
            loop {
                let answer = match messages.message().await {
                    Ok(None) => return,
                    Ok(Some(message)) => {
                        batch += 1;
                        let message = (message.portal_id, message.rows);
                        import_message(&service, &principal, &mut portal, message, &mut listed)
                            .await
                    }
                    Err(status) => Err(status),
                };
                let progress = match answer {
                    Ok(progress) => proto::ImportAssociationBatchesResponse { batch, ..progress },
                    Err(status) => {
                        last_word.send(Err(status));
                        return;
                    }
                };
                match tokio::time::timeout(stall, sender.send(Ok(progress))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        crate::telemetry::refused("stream_stalled");
                        let stalled = DomainError::StreamStalled {
                            stall_ms: stall.as_millis() as u64,
                        };
                        last_word.send(Err(status::domain_status(&stalled)));
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn create_associations(
        &self,
        request: Request<proto::CreateAssociationsRequest>,
    ) -> Result<Response<proto::CreateAssociationsResponse>, Status> {
        authorize(&request, Role::Write, request.get_ref().portal_id)?.await?;
        let r = request.into_inner();
        let inputs = inputs_from_proto(&r.inputs)?;
        let outcome = self
            .service
            .create(
                PortalPair::parse(r.portal_id, &r.from_object_type, &r.to_object_type)?,
                &inputs,
            )
            .await?;
        let (results, errors) = created(outcome);
        Ok(Response::new(proto::CreateAssociationsResponse {
            results,
            errors,
        }))
    }

    async fn create_default_associations(
        &self,
        request: Request<proto::CreateDefaultAssociationsRequest>,
    ) -> Result<Response<proto::CreateDefaultAssociationsResponse>, Status> {
        authorize(&request, Role::Write, request.get_ref().portal_id)?.await?;
        let r = request.into_inner();
        let pairs: Vec<(i64, i64)> = r.inputs.iter().map(|p| (p.from_id, p.to_id)).collect();
        let outcome = self
            .service
            .create_default(
                PortalPair::parse(r.portal_id, &r.from_object_type, &r.to_object_type)?,
                &pairs,
            )
            .await?;
        let (results, errors) = created(outcome);
        Ok(Response::new(proto::CreateDefaultAssociationsResponse {
            results,
            errors,
        }))
    }

    async fn archive_associations(
        &self,
        request: Request<proto::ArchiveAssociationsRequest>,
    ) -> Result<Response<proto::ArchiveAssociationsResponse>, Status> {
        authorize(&request, Role::Write, request.get_ref().portal_id)?.await?;
        let r = request.into_inner();
        let inputs: Vec<(i64, Vec<i64>)> = r
            .inputs
            .into_iter()
            .map(|i| (i.from_id, i.to_ids))
            .collect();
        let outcome = self
            .service
            .archive(
                PortalPair::parse(r.portal_id, &r.from_object_type, &r.to_object_type)?,
                &inputs,
            )
            .await?;
        Ok(Response::new(proto::ArchiveAssociationsResponse {
            removed: outcome.removed,
            errors: item_errors(&outcome.errors),
        }))
    }

    async fn merge_objects(
        &self,
        request: Request<proto::MergeObjectsRequest>,
    ) -> Result<Response<proto::MergeObjectsResponse>, Status> {
        authorize(&request, Role::Write, request.get_ref().portal_id)?.await?;
        let r = request.into_inner();
        let merged = self
            .service
            .merge_into(
                r.portal_id,
                ObjectType::parse(&r.object_type)?,
                r.primary_object_id,
                r.object_id_to_merge,
                (r.new_object_id != 0).then_some(r.new_object_id),
            )
            .await?;
        Ok(Response::new(proto::MergeObjectsResponse {
            object_type_id: merged.object_type.to_string(),
            primary_object_id: merged.primary_id,
            removed: merged.removed,
            created: merged.created,
        }))
    }

    async fn archive_labels(
        &self,
        request: Request<proto::ArchiveLabelsRequest>,
    ) -> Result<Response<proto::ArchiveLabelsResponse>, Status> {
        authorize(&request, Role::Write, request.get_ref().portal_id)?.await?;
        let r = request.into_inner();
        let inputs = inputs_from_proto(&r.inputs)?;
        let outcome = self
            .service
            .archive_labels(
                PortalPair::parse(r.portal_id, &r.from_object_type, &r.to_object_type)?,
                &inputs,
            )
            .await?;
        Ok(Response::new(proto::ArchiveLabelsResponse {
            removed: outcome.removed,
            errors: item_errors(&outcome.errors),
        }))
    }
}
