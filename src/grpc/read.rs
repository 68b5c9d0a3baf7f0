//! `AssociationRead`: the streamed reads and the change feed.
use tonic::{Request, Response, Status};

use super::auth::authorize;
use super::convert::*;
use super::*;
use crate::domain::access::Role;
use crate::proto;
use crate::proto::association_read_server::AssociationRead;
use crate::proto::convert::*;
use crate::service::PortalPair;

#[tonic::async_trait]
impl AssociationRead for GrpcApi {
    type ListAssociationsStream = ResponseStream<proto::ListAssociationsResponse>;
    type BatchListAssociationsStream = ResponseStream<proto::BatchListAssociationsResponse>;
    type ExportAssociationsStream = ResponseStream<proto::ExportAssociationsResponse>;
    type WatchChangesStream = ResponseStream<proto::WatchChangesResponse>;

    async fn watch_changes(
        &self,
        request: Request<proto::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        authorize(&request, Role::Read, request.get_ref().portal_id)?.await?;
        let r = request.into_inner();
        let start = self.service.feed_start(
            r.portal_id,
            optional(&r.cursor),
            feed_start_point(r.start)?,
        )?;
        let receiver = self
            .service
            .read_changes(r.portal_id, start, r.stop_at_head)
            .await?;
        Ok(respond(receiver, change_chunk))
    }

    async fn list_associations(
        &self,
        request: Request<proto::ListAssociationsRequest>,
    ) -> Result<Response<Self::ListAssociationsStream>, Status> {
        authorize(&request, Role::Read, request.get_ref().portal_id)?.await?;
        let layout = chunk_layout(request.get_ref().layout)?;
        let request = list_request(request.get_ref())?;
        let receiver = self.service.stream_associations(request).await?;
        Ok(respond(receiver, move |chunk| list_chunk(chunk, layout)))
    }

    async fn batch_list_associations(
        &self,
        request: Request<proto::BatchListAssociationsRequest>,
    ) -> Result<Response<Self::BatchListAssociationsStream>, Status> {
        authorize(&request, Role::Read, request.get_ref().portal_id)?.await?;
        let layout = chunk_layout(request.get_ref().layout)?;
        let request = batch_list_request(request.get_ref())?;
        let receiver = self.service.stream_batch(request).await?;
        Ok(respond(receiver, move |chunk| batch_chunk(chunk, layout)))
    }

    async fn export_associations(
        &self,
        request: Request<proto::ExportAssociationsRequest>,
    ) -> Result<Response<Self::ExportAssociationsStream>, Status> {
        authorize(&request, Role::Read, request.get_ref().portal_id)?.await?;
        let layout = chunk_layout(request.get_ref().layout)?;
        let request = export_request(request.get_ref())?;
        let receiver = self.service.stream_export(request).await?;
        Ok(respond(receiver, move |chunk| export_chunk(chunk, layout)))
    }

    async fn list_definitions(
        &self,
        request: Request<proto::ListDefinitionsRequest>,
    ) -> Result<Response<proto::ListDefinitionsResponse>, Status> {
        authorize(&request, Role::Read, request.get_ref().portal_id)?.await?;
        let r = request.into_inner();
        let defs = self
            .service
            .definitions(PortalPair::parse(
                r.portal_id,
                &r.from_object_type,
                &r.to_object_type,
            )?)
            .await?;
        Ok(Response::new(proto::ListDefinitionsResponse {
            definitions: defs.iter().map(definition).collect(),
        }))
    }
}
