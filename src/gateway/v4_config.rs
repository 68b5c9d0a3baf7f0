//! v4 configuration endpoints: association labels and the limits admins
//! set on them.
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{invalid_field, GatewayResult};
use super::json::{body, BatchResponse, CategoryText, Collection, Inputs, TypeWithLabel};
use super::openapi::{of, with, Answer, Doc};
use super::version::{ApiVersion, BatchKind};
use super::Gateway;
use crate::domain::limits::{LimitChange, LimitMode};
use crate::domain::{DomainError, TypeDef, TypeKey};
use crate::service::{LimitView, PortalPair};

/// `GET …/{from}/{to}/labels`.
pub async fn list_labels(
    gw: Gateway,
    Path((from, to)): Path<(String, String)>,
) -> GatewayResult<Json<Collection<TypeWithLabel>>> {
    let defs = gw.service.definitions(gw.pair(&from, &to)?).await?;
    Ok(Json(labels(&defs)))
}

fn labels(defs: &[TypeDef]) -> Collection<TypeWithLabel> {
    Collection {
        results: defs.iter().map(TypeWithLabel::new).collect(),
        paging: None,
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LabelCreate {
    label: String,
    name: String,
    #[serde(default)]
    inverse_label: Option<String>,
}

/// `POST …/{from}/{to}/labels`: 200 with the new type(s).
pub async fn create_label(
    gw: Gateway,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<Json<Collection<TypeWithLabel>>> {
    let input: LabelCreate = body(&bytes)?;
    let defs = gw
        .service
        .create_label(
            gw.actor(),
            gw.pair(&from, &to)?,
            &input.label,
            &input.name,
            input.inverse_label.as_deref(),
        )
        .await?;
    Ok(Json(labels(&defs)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LabelUpdate {
    association_type_id: i32,
    label: String,
    #[serde(default)]
    inverse_label: Option<String>,
}

/// `PUT …/{from}/{to}/labels`: 204.
pub async fn update_label(
    gw: Gateway,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<StatusCode> {
    let input: LabelUpdate = body(&bytes)?;
    gw.service
        .update_label(
            gw.actor(),
            gw.pair(&from, &to)?,
            input.association_type_id,
            &input.label,
            input.inverse_label.as_deref(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/{from}/{to}/labels/{associationTypeId}`: 204.
pub async fn delete_label(
    gw: Gateway,
    Path((from, to, type_id)): Path<(String, String, String)>,
) -> GatewayResult<StatusCode> {
    let type_id: i32 = type_id.parse().map_err(|_| {
        invalid_field(
            "associationTypeId",
            format!("Invalid associationTypeId '{type_id}'"),
        )
    })?;
    gw.service
        .delete_label(gw.actor(), gw.pair(&from, &to)?, type_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- limits

/// `PublicAssociationDefinitionUserConfiguration`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitOut {
    category: &'static str,
    type_id: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_enforced_max_to_object_ids: Option<u32>,
}

fn limit_out(view: &LimitView) -> LimitOut {
    LimitOut {
        category: view.def.key.category.as_str(),
        type_id: view.def.key.type_id,
        label: view.def.label.clone(),
        user_enforced_max_to_object_ids: view.user_limit,
    }
}

/// `GET /crm/v4/associations/definitions/configurations/all`.
pub async fn all_limits(gw: Gateway) -> GatewayResult<Json<Collection<LimitOut>>> {
    let views = gw.service.limits(gw.portal, None).await?;
    Ok(Json(Collection {
        results: views.iter().map(limit_out).collect(),
        paging: None,
    }))
}

/// `GET …/definitions/configurations/{from}/{to}`.
pub async fn pair_limits(
    gw: Gateway,
    Path((from, to)): Path<(String, String)>,
) -> GatewayResult<Json<Collection<LimitOut>>> {
    let pair = gw.pair(&from, &to)?;
    let views = gw
        .service
        .limits(gw.portal, Some((pair.from, pair.to)))
        .await?;
    Ok(Json(Collection {
        results: views.iter().map(limit_out).collect(),
        paging: None,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LimitInput {
    category: CategoryText,
    type_id: i32,
    max_to_object_ids: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SpecKey {
    category: CategoryText,
    type_id: i32,
}

async fn change_limits(
    gw: &Gateway,
    actor: &str,
    pair: PortalPair,
    bytes: &Bytes,
    mode: LimitMode,
) -> GatewayResult<(Vec<LimitView>, Vec<(usize, DomainError)>)> {
    let inputs: Inputs<LimitInput> = body(bytes)?;
    let changes: Vec<LimitChange> = inputs
        .inputs
        .iter()
        .map(|i| LimitChange {
            key: TypeKey {
                category: i.category.0,
                type_id: i.type_id,
            },
            max_to_object_ids: i.max_to_object_ids,
        })
        .collect();
    let outcome = gw.service.set_limits(actor, pair, &changes, mode).await?;
    Ok((
        outcome.results.into_iter().map(|(_, v)| v).collect(),
        outcome.errors,
    ))
}

/// `POST …/configurations/{from}/{to}/batch/create`: 201, or 207 (2026-09: 200).
pub async fn create_limits(
    gw: Gateway,
    version: ApiVersion,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let started = SystemTime::now();
    let (views, errors) = change_limits(
        &gw,
        gw.actor(),
        gw.pair(&from, &to)?,
        &bytes,
        LimitMode::Create,
    )
    .await?;
    let results: Vec<LimitOut> = views.iter().map(limit_out).collect();
    Ok(version.batch(
        BatchKind::Create,
        BatchResponse::new(started, results, &errors),
    ))
}

/// `PublicAssociationDefinitionConfigurationUpdateResult` (no label).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LimitUpdated {
    category: &'static str,
    type_id: i32,
    user_enforced_max_to_object_ids: Option<u32>,
}

/// `POST …/configurations/{from}/{to}/batch/update`: 200, or 207 (2026-09: 200).
pub async fn update_limits(
    gw: Gateway,
    version: ApiVersion,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let started = SystemTime::now();
    let (views, errors) = change_limits(
        &gw,
        gw.actor(),
        gw.pair(&from, &to)?,
        &bytes,
        LimitMode::Update,
    )
    .await?;
    let results: Vec<LimitUpdated> = views
        .iter()
        .map(|v| LimitUpdated {
            category: v.def.key.category.as_str(),
            type_id: v.def.key.type_id,
            user_enforced_max_to_object_ids: v.user_limit,
        })
        .collect();
    Ok(version.batch(
        BatchKind::Read,
        BatchResponse::new(started, results, &errors),
    ))
}

/// `POST …/configurations/{from}/{to}/batch/purge`: 204 (dated: 200 with
/// an empty batch answer).
pub async fn purge_limits(
    gw: Gateway,
    version: ApiVersion,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let started = SystemTime::now();
    let inputs: Inputs<SpecKey> = body(&bytes)?;
    let keys: Vec<TypeKey> = inputs
        .inputs
        .iter()
        .map(|i| TypeKey {
            category: i.category.0,
            type_id: i.type_id,
        })
        .collect();
    gw.service
        .purge_limits(gw.actor(), gw.pair(&from, &to)?, &keys)
        .await?;
    Ok(version.batch(BatchKind::Void, BatchResponse::<()>::void(started)))
}

/// What each handler here reads and answers, for the OpenAPI document.
pub(super) fn api(handler: &str) -> Option<Doc> {
    let doc = |summary, body, answer| Doc {
        summary,
        query: &[],
        body,
        answer,
    };
    Some(match handler {
        "list_labels" => doc(
            "The association types (labels) between two object types",
            None,
            Answer::Json(
                StatusCode::OK,
                with::<Collection<TypeWithLabel>, TypeWithLabel>,
            ),
        ),
        "create_label" => doc(
            "Create a label (and its inverse, when given)",
            Some(of::<LabelCreate>),
            Answer::Json(
                StatusCode::OK,
                with::<Collection<TypeWithLabel>, TypeWithLabel>,
            ),
        ),
        "update_label" => doc(
            "Rename a label (and its inverse)",
            Some(of::<LabelUpdate>),
            Answer::NoContent,
        ),
        "delete_label" => doc(
            "Delete a label, with every association of its type",
            None,
            Answer::NoContent,
        ),
        "all_limits" => doc(
            "Every association type with an admin limit, of every pair",
            None,
            Answer::Json(StatusCode::OK, with::<Collection<LimitOut>, LimitOut>),
        ),
        "pair_limits" => doc(
            "The association types of a pair and their admin limits",
            None,
            Answer::Json(StatusCode::OK, with::<Collection<LimitOut>, LimitOut>),
        ),
        "create_limits" => doc(
            "Set admin limits on types without one",
            Some(with::<Inputs<LimitInput>, LimitInput>),
            Answer::Batch(BatchKind::Create, with::<BatchResponse<LimitOut>, LimitOut>),
        ),
        "update_limits" => doc(
            "Change admin limits",
            Some(with::<Inputs<LimitInput>, LimitInput>),
            Answer::Batch(
                BatchKind::Read,
                with::<BatchResponse<LimitUpdated>, LimitUpdated>,
            ),
        ),
        "purge_limits" => doc(
            "Remove admin limits",
            Some(with::<Inputs<SpecKey>, SpecKey>),
            Answer::Batch(BatchKind::Void, with::<BatchResponse<()>, ()>),
        ),
        _ => return None,
    })
}
