//! The gRPC front end: tonic adapters between the `associations.v1` protos
//! and the service layer.
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::domain::admin::{AdminChange, AdminEvent, AdminState, ANONYMOUS};
use crate::domain::feed::ChangeKind;
use crate::domain::limits::{LimitChange, LimitMode};
use crate::domain::{Category, DomainError, TypeDef, TypeKey};
use crate::service::{
    AssociatedRecord, AssociationInput, AssociationService, BatchOutcome, HeldAssociation,
    ImportRow, LimitView, ServiceResult,
};

pub mod status;

/// The generated protobuf and tonic code.
pub mod proto {
    tonic::include_proto!("associations.v1");
}

/// The encoded descriptor set, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/associations_descriptor.bin"));

use proto::admin_config_server::AdminConfig;
use proto::association_read_server::AssociationRead;
use proto::association_write_server::AssociationWrite;

/// Implements the three gRPC services over one `AssociationService`.
#[derive(Clone)]
pub struct GrpcApi {
    service: Arc<AssociationService>,
}

impl GrpcApi {
    pub fn new(service: Arc<AssociationService>) -> GrpcApi {
        GrpcApi { service }
    }
}

fn category_from_proto(value: i32) -> Result<Category, Status> {
    Category::from_code(i64::from(value)).ok_or_else(|| {
        status::domain_status(&DomainError::InvalidArgument(format!(
            "association category {value} is not one of HUBSPOT_DEFINED, USER_DEFINED, INTEGRATOR_DEFINED"
        )))
    })
}

fn category_to_proto(category: Category) -> i32 {
    i32::from(category.code())
}

fn key_from_proto(t: &proto::AssociationType) -> Result<TypeKey, Status> {
    Ok(TypeKey {
        category: category_from_proto(t.category)?,
        type_id: t.type_id,
    })
}

fn type_with_label(def: &TypeDef) -> proto::AssociationTypeWithLabel {
    proto::AssociationTypeWithLabel {
        category: category_to_proto(def.key.category),
        type_id: def.key.type_id,
        label: def.label.clone(),
        from_object_type_id: def.from.to_string(),
        to_object_type_id: def.to.to_string(),
    }
}

fn definition(def: &TypeDef) -> proto::AssociationDefinition {
    proto::AssociationDefinition {
        category: category_to_proto(def.key.category),
        type_id: def.key.type_id,
        label: def.label.clone(),
        name: def.name.clone(),
        from_object_type_id: def.from.to_string(),
        to_object_type_id: def.to.to_string(),
        inverse_type_id: def.inverse.type_id,
    }
}

/// The admin change as plugins and the audit stream see it.
pub fn admin_change_to_proto(change: &AdminChange) -> proto::AdminChange {
    let state = |state: &AdminState| proto::AdminState {
        limits: state
            .limits
            .iter()
            .map(|l| proto::LimitValue {
                category: category_to_proto(l.category),
                type_id: l.type_id,
                max_to_object_ids: l.max_to_object_ids as i32,
            })
            .collect(),
        labels: state
            .labels
            .iter()
            .map(|l| proto::AssociationDefinition {
                category: category_to_proto(l.category),
                type_id: l.type_id,
                label: l.label.clone(),
                name: l.name.clone(),
                from_object_type_id: l.from_object_type.clone(),
                to_object_type_id: l.to_object_type.clone(),
                inverse_type_id: l.inverse_type_id,
            })
            .collect(),
    };
    let event = match change.event {
        AdminEvent::LimitsCreated => proto::AdminEvent::LimitsCreated,
        AdminEvent::LimitsUpdated => proto::AdminEvent::LimitsUpdated,
        AdminEvent::LimitsPurged => proto::AdminEvent::LimitsPurged,
        AdminEvent::LabelCreated => proto::AdminEvent::LabelCreated,
        AdminEvent::LabelUpdated => proto::AdminEvent::LabelUpdated,
        AdminEvent::LabelDeleted => proto::AdminEvent::LabelDeleted,
    };
    proto::AdminChange {
        event: event as i32,
        portal_id: change.portal_id,
        actor: change.actor.clone(),
        from_object_type_id: change.from_object_type.clone(),
        to_object_type_id: change.to_object_type.clone(),
        before: Some(state(&change.before)),
        after: Some(state(&change.after)),
        changed_at_unix_micros: change.at_us,
    }
}

/// Who makes an admin call: its `x-actor` metadata, or "anonymous".
fn actor<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get("x-actor")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(ANONYMOUS)
        .to_string()
}

fn item_error(index: usize, err: &DomainError) -> proto::ItemError {
    proto::ItemError {
        index: index as u32,
        category: err.category().to_string(),
        sub_category: err.sub_category().to_string(),
        message: err.to_string(),
        context: err
            .context()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}

fn item_errors(errors: &[(usize, DomainError)]) -> Vec<proto::ItemError> {
    errors.iter().map(|(i, e)| item_error(*i, e)).collect()
}

fn created(outcome: BatchOutcome<HeldAssociation>) -> proto::CreateAssociationsResponse {
    proto::CreateAssociationsResponse {
        results: outcome
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
        errors: item_errors(&outcome.errors),
    }
}

fn inputs_from_proto(inputs: &[proto::AssociationInput]) -> Result<Vec<AssociationInput>, Status> {
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

fn limit_config(view: &LimitView) -> proto::LimitConfig {
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

/// Most import failures listed in a response (all are counted).
const MAX_LISTED_IMPORT_ERRORS: usize = 1_000;

fn import_row(row: &proto::ImportRow) -> Result<ImportRow, DomainError> {
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

#[tonic::async_trait]
impl AssociationWrite for GrpcApi {
    async fn import_associations(
        &self,
        request: Request<tonic::Streaming<proto::ImportAssociationsRequest>>,
    ) -> Result<Response<proto::ImportAssociationsResponse>, Status> {
        let mut messages = request.into_inner();
        let mut portal = None;
        let mut summary = proto::ImportAssociationsResponse::default();
        while let Some(message) = messages.message().await? {
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
            summary.succeeded += outcome.succeeded;
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
        let r = request.into_inner();
        let inputs = inputs_from_proto(&r.inputs)?;
        let outcome = self
            .service
            .create(r.portal_id, &r.from_object_type, &r.to_object_type, &inputs)
            .await?;
        Ok(Response::new(created(outcome)))
    }

    async fn create_default_associations(
        &self,
        request: Request<proto::CreateDefaultAssociationsRequest>,
    ) -> Result<Response<proto::CreateAssociationsResponse>, Status> {
        let r = request.into_inner();
        let pairs: Vec<(i64, i64)> = r.inputs.iter().map(|p| (p.from_id, p.to_id)).collect();
        let outcome = self
            .service
            .create_default(r.portal_id, &r.from_object_type, &r.to_object_type, &pairs)
            .await?;
        Ok(Response::new(created(outcome)))
    }

    async fn archive_associations(
        &self,
        request: Request<proto::ArchiveAssociationsRequest>,
    ) -> Result<Response<proto::ArchiveResponse>, Status> {
        let r = request.into_inner();
        let inputs: Vec<(i64, Vec<i64>)> = r
            .inputs
            .into_iter()
            .map(|i| (i.from_id, i.to_ids))
            .collect();
        let outcome = self
            .service
            .archive(r.portal_id, &r.from_object_type, &r.to_object_type, &inputs)
            .await?;
        Ok(Response::new(proto::ArchiveResponse {
            removed: outcome.removed,
            errors: item_errors(&outcome.errors),
        }))
    }

    async fn merge_objects(
        &self,
        request: Request<proto::MergeObjectsRequest>,
    ) -> Result<Response<proto::MergeObjectsResponse>, Status> {
        let r = request.into_inner();
        let merged = self
            .service
            .merge(
                r.portal_id,
                &r.object_type,
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
        request: Request<proto::CreateAssociationsRequest>,
    ) -> Result<Response<proto::ArchiveResponse>, Status> {
        let r = request.into_inner();
        let inputs = inputs_from_proto(&r.inputs)?;
        let outcome = self
            .service
            .archive_labels(r.portal_id, &r.from_object_type, &r.to_object_type, &inputs)
            .await?;
        Ok(Response::new(proto::ArchiveResponse {
            removed: outcome.removed,
            errors: item_errors(&outcome.errors),
        }))
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Turns a service stream into a gRPC response stream.
fn respond<T, U, F>(
    receiver: mpsc::Receiver<ServiceResult<T>>,
    convert: F,
) -> Response<ResponseStream<U>>
where
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(T) -> U + Send + 'static,
{
    let stream = ReceiverStream::new(receiver).map(move |chunk| Ok(convert(chunk?)));
    Response::new(Box::pin(stream))
}

fn optional(text: &str) -> Option<&str> {
    Some(text).filter(|t| !t.is_empty())
}

fn associated_object(record: &AssociatedRecord) -> proto::AssociatedObject {
    proto::AssociatedObject {
        to_object_id: record.to_id,
        types: record.types.iter().map(type_with_label).collect(),
        to_object_type_id: record.to_type.to_string(),
    }
}

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

impl GrpcApi {
    async fn set_limits(
        &self,
        request: Request<proto::LimitsRequest>,
        mode: LimitMode,
    ) -> Result<proto::LimitsResponse, Status> {
        let actor = actor(&request);
        let r = request.into_inner();
        let changes = r
            .inputs
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
        let outcome = self
            .service
            .set_limits(
                r.portal_id,
                &actor,
                &r.from_object_type,
                &r.to_object_type,
                &changes,
                mode,
            )
            .await?;
        Ok(proto::LimitsResponse {
            results: outcome
                .results
                .iter()
                .map(|(_, v)| limit_config(v))
                .collect(),
            errors: item_errors(&outcome.errors),
        })
    }
}

#[tonic::async_trait]
impl AdminConfig for GrpcApi {
    async fn create_limits(
        &self,
        request: Request<proto::LimitsRequest>,
    ) -> Result<Response<proto::LimitsResponse>, Status> {
        Ok(Response::new(
            self.set_limits(request, LimitMode::Create).await?,
        ))
    }

    async fn update_limits(
        &self,
        request: Request<proto::LimitsRequest>,
    ) -> Result<Response<proto::LimitsResponse>, Status> {
        Ok(Response::new(
            self.set_limits(request, LimitMode::Update).await?,
        ))
    }

    async fn purge_limits(
        &self,
        request: Request<proto::PurgeLimitsRequest>,
    ) -> Result<Response<proto::PurgeLimitsResponse>, Status> {
        let actor = actor(&request);
        let r = request.into_inner();
        let keys = r
            .inputs
            .iter()
            .map(key_from_proto)
            .collect::<Result<Vec<_>, _>>()?;
        let purged = self
            .service
            .purge_limits(
                r.portal_id,
                &actor,
                &r.from_object_type,
                &r.to_object_type,
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
        let r = request.into_inner();
        let pair = match (r.from_object_type.is_empty(), r.to_object_type.is_empty()) {
            (true, true) => None,
            (false, false) => Some((r.from_object_type.as_str(), r.to_object_type.as_str())),
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
    ) -> Result<Response<proto::LabelResponse>, Status> {
        let actor = actor(&request);
        let r = request.into_inner();
        let defs = self
            .service
            .create_label(
                r.portal_id,
                &actor,
                &r.from_object_type,
                &r.to_object_type,
                &r.label,
                &r.name,
                r.inverse_label.as_deref(),
            )
            .await?;
        Ok(Response::new(proto::LabelResponse {
            definitions: defs.iter().map(definition).collect(),
        }))
    }

    async fn update_label(
        &self,
        request: Request<proto::UpdateLabelRequest>,
    ) -> Result<Response<proto::LabelResponse>, Status> {
        let actor = actor(&request);
        let r = request.into_inner();
        let defs = self
            .service
            .update_label(
                r.portal_id,
                &actor,
                &r.from_object_type,
                &r.to_object_type,
                r.type_id,
                &r.label,
                r.inverse_label.as_deref(),
            )
            .await?;
        Ok(Response::new(proto::LabelResponse {
            definitions: defs.iter().map(definition).collect(),
        }))
    }

    async fn delete_label(
        &self,
        request: Request<proto::DeleteLabelRequest>,
    ) -> Result<Response<proto::DeleteLabelResponse>, Status> {
        let actor = actor(&request);
        let r = request.into_inner();
        self.service
            .delete_label(
                r.portal_id,
                &actor,
                &r.from_object_type,
                &r.to_object_type,
                r.type_id,
            )
            .await?;
        Ok(Response::new(proto::DeleteLabelResponse {}))
    }

    type ListAuditEventsStream = ResponseStream<proto::AuditEvent>;

    async fn list_audit_events(
        &self,
        request: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<Self::ListAuditEventsStream>, Status> {
        let r = request.into_inner();
        let (portal, mut after) = (r.portal_id, r.after_sequence);
        // Fails here, before streaming, on a bad portal.
        let mut page = self.service.audit_events(portal, after, AUDIT_PAGE).await?;
        let service = Arc::clone(&self.service);
        let (sender, receiver) = mpsc::channel(AUDIT_PAGE as usize);
        tokio::spawn(async move {
            while !page.is_empty() {
                for (seq, change) in &page {
                    let event = proto::AuditEvent {
                        sequence: *seq,
                        change: Some(admin_change_to_proto(change)),
                    };
                    if sender.send(Ok(event)).await.is_err() {
                        return;
                    }
                    after = *seq;
                }
                page = match service.audit_events(portal, after, AUDIT_PAGE).await {
                    Ok(next) => next,
                    Err(err) => {
                        let _ = sender.send(Err(err.into())).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Audit events read per round trip.
const AUDIT_PAGE: u32 = 500;
