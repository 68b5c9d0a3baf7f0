//! `AssociationWrite`: creates, archives, merges and imports.
use tonic::{Request, Response, Status};

use super::auth::{authorize, caller};
use super::*;
use crate::domain::access::Role;
use crate::domain::DomainError;
use crate::domain::ObjectType;
use crate::proto;
use crate::proto::association_write_server::AssociationWrite;
use crate::proto::convert::*;
use crate::service::PortalPair;

/// Most import failures listed in a response (all are counted).
const MAX_LISTED_IMPORT_ERRORS: usize = 1_000;

#[tonic::async_trait]
impl AssociationWrite for GrpcApi {
    async fn import_associations(
        &self,
        request: Request<tonic::Streaming<proto::ImportAssociationsRequest>>,
    ) -> Result<Response<proto::ImportAssociationsResponse>, Status> {
        let principal = caller(&request)?.clone();
        let mut messages = request.into_inner();
        let mut portal = None;
        let mut summary = proto::ImportAssociationsResponse::default();
        while let Some(message) = messages.message().await? {
            principal.authorize(Role::Write, message.portal_id)?;
            if *portal.get_or_insert(message.portal_id) != message.portal_id {
                return Err(status::domain_status(&DomainError::InvalidArgument(
                    "every message of an import must name the same portal_id".into(),
                )));
            }
            summary.rows += message.rows.len() as u64;
            let mut rows = Vec::with_capacity(message.rows.len());
            let mut failures = Vec::new();
            for row in &message.rows {
                match import_row(row) {
                    Ok(row) => rows.push(row),
                    Err(err) => failures.push((row.line, err)),
                }
            }
            let outcome = self.service.import_rows(message.portal_id, &rows).await?;
            summary.succeeded += outcome.created + outcome.already_present;
            summary.created += outcome.created;
            summary.already_present += outcome.already_present;
            failures.extend(outcome.errors);
            failures.sort_by_key(|(line, _)| *line);
            summary.failed += failures.len() as u64;
            for (line, err) in failures {
                if summary.errors.len() < MAX_LISTED_IMPORT_ERRORS {
                    summary.errors.push(proto::ImportRowError {
                        line,
                        error: Some(item_error(line as usize, &err)),
                    });
                }
            }
        }
        Ok(Response::new(summary))
    }

    async fn create_associations(
        &self,
        request: Request<proto::CreateAssociationsRequest>,
    ) -> Result<Response<proto::CreateAssociationsResponse>, Status> {
        authorize(&request, Role::Write, request.get_ref().portal_id)?;
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
        authorize(&request, Role::Write, request.get_ref().portal_id)?;
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
        authorize(&request, Role::Write, request.get_ref().portal_id)?;
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
        authorize(&request, Role::Write, request.get_ref().portal_id)?;
        let r = request.into_inner();
        let merged = self
            .service
            .merge(
                r.portal_id,
                ObjectType::parse(&r.object_type)?,
                r.primary_object_id,
                r.object_id_to_merge,
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
        authorize(&request, Role::Write, request.get_ref().portal_id)?;
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
