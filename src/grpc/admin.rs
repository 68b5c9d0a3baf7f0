//! `AdminConfig`: limits, labels and the audit trail.
use tonic::{Request, Response, Status};

use super::auth::{authorize, caller};
use super::convert::*;
use super::*;
use crate::domain::access::Role;
use crate::domain::limits::DEFAULT_NEAR_FRACTION;
use crate::domain::limits::{LimitChange, LimitMode};
use crate::domain::ObjectType;
use crate::domain::{DomainError, TypeKey};
use crate::proto;
use crate::proto::admin_config_server::AdminConfig;
use crate::proto::convert::*;
use crate::service::{NearThreshold, PortalPair};

/// The limit changes of a create or update call.
fn limit_changes(inputs: &[proto::LimitInput]) -> Result<Vec<LimitChange>, Status> {
    inputs
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
        .collect()
}

/// A pair named by both object types, or by neither.
fn optional_pair(from: &str, to: &str) -> Result<Option<(ObjectType, ObjectType)>, Status> {
    match (from.is_empty(), to.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some((ObjectType::parse(from)?, ObjectType::parse(to)?))),
        _ => Err(status::domain_status(&DomainError::InvalidArgument(
            "give both from_object_type and to_object_type, or neither".into(),
        ))),
    }
}

fn custom_object(object: &crate::service::CustomObject) -> proto::CustomObject {
    proto::CustomObject {
        object_type_id: object.object_type.to_string(),
        name: object.name.clone(),
        fully_qualified_name: object.fully_qualified_name.clone(),
    }
}

/// A fraction of 0 means the default.
fn fraction_or_default(fraction: f64) -> f64 {
    if fraction == 0.0 {
        DEFAULT_NEAR_FRACTION
    } else {
        fraction
    }
}

/// A sample count of 0 means the default.
fn samples_or_default(samples: u32) -> u32 {
    if samples == 0 {
        DEFAULT_SAMPLES
    } else {
        samples
    }
}

/// Sample records per group unless asked.
const DEFAULT_SAMPLES: u32 = 5;

impl GrpcApi {
    /// Sets limits (create or update); returns (results, errors).
    async fn set_limits(
        &self,
        actor: &str,
        pair: PortalPair,
        inputs: &[proto::LimitInput],
        mode: LimitMode,
    ) -> Result<(Vec<proto::LimitConfig>, Vec<proto::ItemError>), Status> {
        let changes = limit_changes(inputs)?;
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
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
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
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
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
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
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
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
        let r = request.into_inner();
        let pair = optional_pair(&r.from_object_type, &r.to_object_type)?;
        let views = self.service.limits(r.portal_id, pair).await?;
        Ok(Response::new(proto::ListLimitsResponse {
            results: views.iter().map(limit_config).collect(),
        }))
    }

    async fn create_label(
        &self,
        request: Request<proto::CreateLabelRequest>,
    ) -> Result<Response<proto::CreateLabelResponse>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
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
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
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
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
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
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
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

    async fn get_limit_usage(
        &self,
        request: Request<proto::GetLimitUsageRequest>,
    ) -> Result<Response<proto::GetLimitUsageResponse>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
        let r = request.into_inner();
        let pair = optional_pair(&r.from_object_type, &r.to_object_type)?;
        let usages = self
            .service
            .limit_usage(
                r.portal_id,
                pair,
                fraction_or_default(r.near_fraction),
                samples_or_default(r.samples),
            )
            .await?;
        Ok(Response::new(proto::GetLimitUsageResponse {
            types: usages.iter().map(type_usage).collect(),
        }))
    }

    type ListRecordsNearLimitStream = ResponseStream<proto::ListRecordsNearLimitResponse>;

    async fn list_records_near_limit(
        &self,
        request: Request<proto::ListRecordsNearLimitRequest>,
    ) -> Result<Response<Self::ListRecordsNearLimitStream>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
        let r = request.into_inner();
        let pair = PortalPair::parse(r.portal_id, &r.from_object_type, &r.to_object_type)?;
        let key = TypeKey {
            category: category_from_proto(r.category)?,
            type_id: r.type_id,
        };
        let threshold = if r.at_least != 0 {
            NearThreshold::AtLeast(r.at_least)
        } else {
            NearThreshold::Fraction(fraction_or_default(r.near_fraction))
        };
        let receiver = self
            .service
            .records_near_limit(pair, key, threshold, optional(&r.cursor))
            .await?;
        Ok(respond(receiver, |chunk| {
            proto::ListRecordsNearLimitResponse {
                limit: chunk.limit as i32,
                records: chunk.records.iter().map(|r| record_usage(*r)).collect(),
                cursor: chunk.cursor,
            }
        }))
    }

    async fn preview_limit_change(
        &self,
        request: Request<proto::PreviewLimitChangeRequest>,
    ) -> Result<Response<proto::PreviewLimitChangeResponse>, Status> {
        use proto::preview_limit_change_request::Change;
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
        let r = request.into_inner();
        let portal = r.portal_id;
        let samples = samples_or_default(r.samples);
        let pair = |inner: i64, from: &str, to: &str| {
            if inner != 0 && inner != portal {
                return Err(status::domain_status(&DomainError::InvalidArgument(
                    format!("the change names portal {inner}, the preview portal {portal}"),
                )));
            }
            Ok(PortalPair::parse(portal, from, to)?)
        };
        let previews = match r.change {
            Some(Change::Create(c)) => {
                let pair = pair(c.portal_id, &c.from_object_type, &c.to_object_type)?;
                self.service
                    .preview_limits(pair, &limit_changes(&c.inputs)?, LimitMode::Create, samples)
                    .await?
            }
            Some(Change::Update(c)) => {
                let pair = pair(c.portal_id, &c.from_object_type, &c.to_object_type)?;
                self.service
                    .preview_limits(pair, &limit_changes(&c.inputs)?, LimitMode::Update, samples)
                    .await?
            }
            Some(Change::Purge(c)) => {
                let pair = pair(c.portal_id, &c.from_object_type, &c.to_object_type)?;
                let keys = c
                    .inputs
                    .iter()
                    .map(key_from_proto)
                    .collect::<Result<Vec<_>, _>>()?;
                self.service.preview_purge(pair, &keys, samples).await?
            }
            None => {
                return Err(status::domain_status(&DomainError::InvalidArgument(
                    "name the change to preview: create, update or purge".into(),
                )))
            }
        };
        let changes: Vec<proto::PreviewedLimit> = previews
            .iter()
            .enumerate()
            .map(|(index, preview)| match &preview.outcome {
                Ok(impact) => proto::PreviewedLimit {
                    index: index as u32,
                    error: None,
                    impact: Some(limit_impact(impact)),
                },
                Err(err) => proto::PreviewedLimit {
                    index: index as u32,
                    error: Some(item_error(index, err)),
                    impact: None,
                },
            })
            .collect();
        Ok(Response::new(proto::PreviewLimitChangeResponse {
            valid: changes.iter().all(|c| c.error.is_none()),
            changes,
        }))
    }

    async fn name_custom_object(
        &self,
        request: Request<proto::NameCustomObjectRequest>,
    ) -> Result<Response<proto::NameCustomObjectResponse>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
        let actor = caller(&request)?.name.clone();
        let r = request.into_inner();
        let object_type = ObjectType::parse(&r.object_type)?;
        let (object, before) = self
            .service
            .name_custom_object(&actor, r.portal_id, object_type, &r.name)
            .await?;
        Ok(Response::new(proto::NameCustomObjectResponse {
            object: Some(custom_object(&object)),
            previous_name: before.unwrap_or_default(),
        }))
    }

    async fn list_custom_objects(
        &self,
        request: Request<proto::ListCustomObjectsRequest>,
    ) -> Result<Response<proto::ListCustomObjectsResponse>, Status> {
        authorize(&request, Role::Admin, request.get_ref().portal_id)?.await?;
        let objects = self
            .service
            .custom_objects(request.get_ref().portal_id)
            .await?;
        Ok(Response::new(proto::ListCustomObjectsResponse {
            objects: objects.iter().map(custom_object).collect(),
        }))
    }
}
