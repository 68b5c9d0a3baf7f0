//! `AdminConfig`: limits, labels and the audit trail.
use tonic::{Request, Response, Status};

use super::auth::{authorize, caller};
use super::*;
use crate::domain::access::Role;
use crate::domain::limits::{LimitChange, LimitMode};
use crate::domain::ObjectType;
use crate::domain::{DomainError, TypeKey};
use crate::proto;
use crate::proto::admin_config_server::AdminConfig;
use crate::proto::convert::*;
use crate::service::PortalPair;

impl GrpcApi {
    /// Sets limits (create or update); returns (results, errors).
    async fn set_limits(
        &self,
        actor: &str,
        pair: PortalPair,
        inputs: &[proto::LimitInput],
        mode: LimitMode,
    ) -> Result<(Vec<proto::LimitConfig>, Vec<proto::ItemError>), Status> {
        let changes = inputs
            .iter()
            .map(|i| {
                Ok(LimitChange {
                    key: TypeKey {
                        category: category_from_proto(i.category)?,
                        type_id: i.type_id,
                    },
                    max_to_object_ids: i64::from(i.max_to_object_ids),
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let outcome = self.service.set_limits(actor, pair, &changes, mode).await?;
        Ok((
            outcome
                .results
                .iter()
                .map(|(_, v)| limit_config(v))
                .collect(),
            item_errors(&outcome.errors),
        ))
    }
}

#[tonic::async_trait]
impl AdminConfig for GrpcApi {
    async fn create_limits(
        &self,
        request: Request<proto::CreateLimitsRequest>,
    ) -> Result<Response<proto::CreateLimitsResponse>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?;
        let actor = caller(&request)?.name.clone();
        let r = request.into_inner();
        let pair = PortalPair::parse(r.portal_id, &r.from_object_type, &r.to_object_type)?;
        let (results, errors) = self
            .set_limits(&actor, pair, &r.inputs, LimitMode::Create)
            .await?;
        Ok(Response::new(proto::CreateLimitsResponse {
            results,
            errors,
        }))
    }

    async fn update_limits(
        &self,
        request: Request<proto::UpdateLimitsRequest>,
    ) -> Result<Response<proto::UpdateLimitsResponse>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?;
        let actor = caller(&request)?.name.clone();
        let r = request.into_inner();
        let pair = PortalPair::parse(r.portal_id, &r.from_object_type, &r.to_object_type)?;
        let (results, errors) = self
            .set_limits(&actor, pair, &r.inputs, LimitMode::Update)
            .await?;
        Ok(Response::new(proto::UpdateLimitsResponse {
            results,
            errors,
        }))
    }

    async fn purge_limits(
        &self,
        request: Request<proto::PurgeLimitsRequest>,
    ) -> Result<Response<proto::PurgeLimitsResponse>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?;
        let actor = caller(&request)?.name.clone();
        let r = request.into_inner();
        let keys = r
            .inputs
            .iter()
            .map(key_from_proto)
            .collect::<Result<Vec<_>, _>>()?;
        let purged = self
            .service
            .purge_limits(
                &actor,
                PortalPair::parse(r.portal_id, &r.from_object_type, &r.to_object_type)?,
                &keys,
            )
            .await?;
        Ok(Response::new(proto::PurgeLimitsResponse {
            purged: purged as u32,
        }))
    }

    async fn list_limits(
        &self,
        request: Request<proto::ListLimitsRequest>,
    ) -> Result<Response<proto::ListLimitsResponse>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?;
        let r = request.into_inner();
        let pair = match (r.from_object_type.is_empty(), r.to_object_type.is_empty()) {
            (true, true) => None,
            (false, false) => Some((
                ObjectType::parse(&r.from_object_type)?,
                ObjectType::parse(&r.to_object_type)?,
            )),
            _ => {
                return Err(status::domain_status(&DomainError::InvalidArgument(
                    "give both from_object_type and to_object_type, or neither".into(),
                )))
            }
        };
        let views = self.service.limits(r.portal_id, pair).await?;
        Ok(Response::new(proto::ListLimitsResponse {
            results: views.iter().map(limit_config).collect(),
        }))
    }

    async fn create_label(
        &self,
        request: Request<proto::CreateLabelRequest>,
    ) -> Result<Response<proto::CreateLabelResponse>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?;
        let actor = caller(&request)?.name.clone();
        let r = request.into_inner();
        let defs = self
            .service
            .create_label(
                &actor,
                PortalPair::parse(r.portal_id, &r.from_object_type, &r.to_object_type)?,
                &r.label,
                &r.name,
                r.inverse_label.as_deref(),
            )
            .await?;
        Ok(Response::new(proto::CreateLabelResponse {
            definitions: defs.iter().map(definition).collect(),
        }))
    }

    async fn update_label(
        &self,
        request: Request<proto::UpdateLabelRequest>,
    ) -> Result<Response<proto::UpdateLabelResponse>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?;
        let actor = caller(&request)?.name.clone();
        let r = request.into_inner();
        let defs = self
            .service
            .update_label(
                &actor,
                PortalPair::parse(r.portal_id, &r.from_object_type, &r.to_object_type)?,
                r.type_id,
                &r.label,
                r.inverse_label.as_deref(),
            )
            .await?;
        Ok(Response::new(proto::UpdateLabelResponse {
            definitions: defs.iter().map(definition).collect(),
        }))
    }

    async fn delete_label(
        &self,
        request: Request<proto::DeleteLabelRequest>,
    ) -> Result<Response<proto::DeleteLabelResponse>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?;
        let actor = caller(&request)?.name.clone();
        let r = request.into_inner();
        self.service
            .delete_label(
                &actor,
                PortalPair::parse(r.portal_id, &r.from_object_type, &r.to_object_type)?,
                r.type_id,
            )
            .await?;
        Ok(Response::new(proto::DeleteLabelResponse {}))
    }

    type ListAuditEventsStream = ResponseStream<proto::ListAuditEventsResponse>;

    async fn list_audit_events(
        &self,
        request: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<Self::ListAuditEventsStream>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?;
        let r = request.into_inner();
        let receiver = self
            .service
            .stream_audit_events(r.portal_id, r.after_sequence)
            .await?;
        Ok(respond(receiver, |(sequence, change)| {
            proto::ListAuditEventsResponse {
                sequence,
                change: Some(admin_change_to_proto(&change)),
            }
        }))
    }
}
