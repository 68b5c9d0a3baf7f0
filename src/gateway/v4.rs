//! v4 endpoints: per-record pages and writes, batch read/create/default/
//! archive/labels-archive, labels, and limit configurations. v4 groups an
//! associated record's types in one result and pages 500 records.
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::batch::read_pages;
use super::error::{GatewayError, GatewayResult};
use super::json::ReadInput;
use super::json::{
    body, parse_id, BatchResponse, Collection, IdOut, IdString, Inputs, ObjectId, Paging, Query,
    SpecInput, TypeWithLabel,
};
use super::openapi::{of, with, Answer, Doc};
use super::version::{ApiVersion, BatchKind};
use super::{type_id, BaseUrl, Gateway};
use crate::domain::{TypeDef, TypeKey, TypeRole};
use crate::service::{AssociatedRecord, AssociationInput, HeldAssociation};

/// Default and largest page of associated records.
const V4_PAGE: u32 = 500;

/// One associated record with all its types, written straight from the
/// record (no copy of its types).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct MultiAssociated<'a> {
    to_object_id: IdString,
    #[serde(serialize_with = "labelled_types")]
    #[schema(value_type = Vec<TypeWithLabel>)]
    association_types: &'a [Arc<TypeDef>],
}

fn labelled_types<S: serde::Serializer>(defs: &&[Arc<TypeDef>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(defs.iter().map(|d| TypeWithLabel::of(d)))
}

fn multi(records: &[AssociatedRecord]) -> impl Iterator<Item = MultiAssociated<'_>> {
    records.iter().map(|r| MultiAssociated {
        to_object_id: IdString(r.to_id),
        association_types: &r.types,
    })
}

/// Associated records, serialized as `MultiAssociated` each.
fn multi_records<S: serde::Serializer>(
    records: &[AssociatedRecord],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(multi(records))
}

/// The next page of a record's associations, under the call's version.
fn record_link(
    (base, version): (&BaseUrl, ApiVersion),
    from: &str,
    id: i64,
    to: &str,
    after: &str,
    limit: u32,
) -> String {
    format!(
        "{}{}/{}/{id}/associations/{}?after={after}&limit={limit}",
        base.0,
        version.objects_prefix(),
        type_id(from),
        type_id(to)
    )
}

/// `GET /crm/v4/objects/{objectType}/{objectId}/associations/{toObjectType}`.
pub async fn record_page(
    gw: Gateway,
    base: BaseUrl,
    version: ApiVersion,
    Path((from, id, to)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> GatewayResult<Response> {
    let id = parse_id("objectId", &id)?;
    let query = Query::parse(raw.as_deref());
    let limit = query.limit(V4_PAGE, V4_PAGE)?;
    let page = gw
        .service
        .page_associations(gw.pair(&from, &to)?, id, query.get("after"), limit)
        .await?;
    Ok(Json(Collection {
        results: multi(&page.records).collect::<Vec<_>>(),
        paging: Paging::new(page.next, |after| {
            record_link((&base, version), &from, id, &to, after, limit)
        }),
    })
    .into_response())
}

/// `LabelsBetweenObjectPair`: the labels two records hold after a write.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LabelsBetween {
    from_object_type_id: String,
    from_object_id: String,
    to_object_type_id: String,
    to_object_id: String,
    labels: Vec<String>,
}

impl LabelsBetween {
    fn new(held: &HeldAssociation) -> LabelsBetween {
        LabelsBetween {
            from_object_type_id: held.from_type.to_string(),
            from_object_id: held.from_id.to_string(),
            to_object_type_id: held.to_type.to_string(),
            to_object_id: held.to_id.to_string(),
            labels: held.types.iter().filter_map(|d| d.label.clone()).collect(),
        }
    }
}

/// `PUT /crm/v4/objects/{t}/{id}/associations/{toT}/{toId}` with a list of
/// specs: 201 with the labels the pair now holds.
pub async fn create_labelled(
    gw: Gateway,
    version: ApiVersion,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let from_id = parse_id("objectId", &id)?;
    let to_id = parse_id("toObjectId", &to_id)?;
    let specs: Vec<SpecInput> = body(&bytes)?;
    let types = specs
        .iter()
        .map(SpecInput::key)
        .collect::<GatewayResult<Vec<_>>>()?;
    let input = AssociationInput {
        from_id,
        to_id,
        types,
    };
    let mut outcome = gw.service.create(gw.pair(&from, &to)?, &[input]).await?;
    if let Some((_, err)) = outcome.errors.pop() {
        return Err(GatewayError::single_write(err));
    }
    let (_, held) = outcome.results.pop().expect("one input, no error");
    let location = format!(
        "{}/{}/{from_id}/associations/{}",
        version.objects_prefix(),
        held.from_type,
        held.to_type
    );
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(LabelsBetween::new(&held)),
    )
        .into_response())
}

/// `DELETE /crm/v4/objects/{t}/{id}/associations/{toT}/{toId}`: every type
/// between the two records; 204.
pub async fn archive_pair(
    gw: Gateway,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
) -> GatewayResult<StatusCode> {
    let from_id = parse_id("objectId", &id)?;
    let to_id = parse_id("toObjectId", &to_id)?;
    let outcome = gw
        .service
        .archive(gw.pair(&from, &to)?, &[(from_id, vec![to_id])])
        .await?;
    match outcome.errors.into_iter().next() {
        Some((_, err)) => Err(err.into()),
        None => Ok(StatusCode::NO_CONTENT),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SpecOut {
    association_category: &'static str,
    association_type_id: i32,
}

/// `PublicDefaultAssociation`: one per direction of the unlabeled type.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct DefaultAssociation {
    from: IdOut,
    to: IdOut,
    association_spec: SpecOut,
}

fn default_results(held: &HeldAssociation) -> Vec<DefaultAssociation> {
    let Some(unlabeled) = held.types.iter().find(|d| d.role == TypeRole::Unlabeled) else {
        return Vec::new();
    };
    let spec = |key: TypeKey| SpecOut {
        association_category: key.category.as_str(),
        association_type_id: key.type_id,
    };
    vec![
        DefaultAssociation {
            from: IdOut::new(held.from_id),
            to: IdOut::new(held.to_id),
            association_spec: spec(unlabeled.key),
        },
        DefaultAssociation {
            from: IdOut::new(held.to_id),
            to: IdOut::new(held.from_id),
            association_spec: spec(unlabeled.inverse),
        },
    ]
}

/// `PUT /crm/v4/objects/{t}/{id}/associations/default/{toT}/{toId}`: 200.
pub async fn create_default(
    gw: Gateway,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
) -> GatewayResult<Response> {
    let started = SystemTime::now();
    let from_id = parse_id("objectId", &id)?;
    let to_id = parse_id("toObjectId", &to_id)?;
    let mut outcome = gw
        .service
        .create_default(gw.pair(&from, &to)?, &[(from_id, to_id)])
        .await?;
    if let Some((_, err)) = outcome.errors.pop() {
        return Err(GatewayError::single_write(err));
    }
    let results = outcome
        .results
        .iter()
        .flat_map(|(_, held)| default_results(held))
        .collect();
    Ok(Json(BatchResponse::new(started, results, &[])).into_response())
}

/// One from-record's page in a v4 batch read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MultiWithLabel {
    from: IdOut,
    #[serde(serialize_with = "multi_records")]
    #[schema(value_type = Vec<MultiAssociated<'static>>)]
    to: Vec<AssociatedRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paging: Option<Paging>,
}

/// `POST /crm/v4/associations/{from}/{to}/batch/read`: one page per input,
/// resumed by each input's `after`.
pub async fn batch_read(
    gw: Gateway,
    base: BaseUrl,
    version: ApiVersion,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let pair = gw.pair(&from, &to)?;
    read_pages(&gw, version, pair, &bytes, V4_PAGE, move |id, page| {
        MultiWithLabel {
            from: IdOut::new(id),
            to: page.records,
            paging: Paging::new(page.next, |after| {
                record_link((&base, version), &from, id, &to, after, V4_PAGE)
            }),
        }
    })
    .await
}

/// `{"from": {"id"}, "to": {"id"}, "types": [spec…]}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct MultiPost {
    from: ObjectId,
    to: ObjectId,
    types: Vec<SpecInput>,
}

fn multi_post_inputs(bytes: &Bytes) -> GatewayResult<Vec<AssociationInput>> {
    let inputs: Inputs<MultiPost> = body(bytes)?;
    inputs
        .inputs
        .iter()
        .map(|i| {
            Ok(AssociationInput {
                from_id: i.from.id.id("from.id")?,
                to_id: i.to.id.id("to.id")?,
                types: i
                    .types
                    .iter()
                    .map(SpecInput::key)
                    .collect::<GatewayResult<_>>()?,
            })
        })
        .collect()
}

/// `POST …/batch/create`: 201, or 207 with the failed inputs (2026-09:
/// 200 with them inside).
pub async fn batch_create(
    gw: Gateway,
    version: ApiVersion,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let started = SystemTime::now();
    let inputs = multi_post_inputs(&bytes)?;
    let outcome = gw.service.create(gw.pair(&from, &to)?, &inputs).await?;
    let results = outcome
        .results
        .iter()
        .map(|(_, held)| LabelsBetween::new(held))
        .collect();
    Ok(version.batch(
        BatchKind::Create,
        BatchResponse::new(started, results, &outcome.errors),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PairInput {
    from: ObjectId,
    to: ObjectId,
}

/// `POST …/batch/associate/default`: always 200 (HubSpot's spec has no 207).
pub async fn batch_create_default(
    gw: Gateway,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let started = SystemTime::now();
    let inputs: Inputs<PairInput> = body(&bytes)?;
    let pairs = inputs
        .inputs
        .iter()
        .map(|i| Ok((i.from.id.id("from.id")?, i.to.id.id("to.id")?)))
        .collect::<GatewayResult<Vec<_>>>()?;
    let outcome = gw
        .service
        .create_default(gw.pair(&from, &to)?, &pairs)
        .await?;
    let results = outcome
        .results
        .iter()
        .flat_map(|(_, held)| default_results(held))
        .collect();
    Ok(Json(BatchResponse::new(started, results, &outcome.errors)).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct MultiArchive {
    from: ObjectId,
    to: Vec<ObjectId>,
}

/// An archive's answer: its first failure, or 204 (dated: 200 with an
/// empty batch answer).
fn archived(
    version: ApiVersion,
    started: SystemTime,
    outcome: crate::service::ArchiveOutcome,
) -> GatewayResult<Response> {
    match outcome.errors.into_iter().next() {
        Some((_, err)) => Err(err.into()),
        None => Ok(version.batch(BatchKind::Void, BatchResponse::<()>::void(started))),
    }
}

/// `POST …/batch/archive`: every type between each pair.
pub async fn batch_archive(
    gw: Gateway,
    version: ApiVersion,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let started = SystemTime::now();
    let inputs: Inputs<MultiArchive> = body(&bytes)?;
    let pairs = inputs
        .inputs
        .iter()
        .map(|i| {
            Ok((
                i.from.id.id("from.id")?,
                i.to.iter()
                    .map(|t| t.id.id("to.id"))
                    .collect::<GatewayResult<_>>()?,
            ))
        })
        .collect::<GatewayResult<Vec<_>>>()?;
    let outcome = gw.service.archive(gw.pair(&from, &to)?, &pairs).await?;
    archived(version, started, outcome)
}

/// `POST …/batch/labels/archive`: only the given types.
pub async fn batch_archive_labels(
    gw: Gateway,
    version: ApiVersion,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let started = SystemTime::now();
    let inputs = multi_post_inputs(&bytes)?;
    let outcome = gw
        .service
        .archive_labels(gw.pair(&from, &to)?, &inputs)
        .await?;
    archived(version, started, outcome)
}

/// What each handler here reads and answers, for the OpenAPI document.
// Over 80 lines because it is a table, one entry per handler of the module.
pub(super) fn api(handler: &str) -> Option<Doc> {
    let doc = |summary, query, body, answer| Doc {
        summary,
        query,
        body,
        answer,
    };
    const PAGE: &[(&str, &str)] = &[
        (
            "after",
            "where the previous page ended (its paging.next.after)",
        ),
        ("limit", "records per page, 1 to 500 (default 500)"),
    ];
    Some(match handler {
        "record_page" => doc(
            "A record's associated records of one object type, a page at a time",
            PAGE,
            None,
            Answer::Json(
                StatusCode::OK,
                with::<Collection<MultiAssociated<'static>>, MultiAssociated<'static>>,
            ),
        ),
        "create_labelled" => doc(
            "Associate two records with the given types (labels)",
            &[],
            Some(with::<Vec<SpecInput>, SpecInput>),
            Answer::Json(StatusCode::CREATED, of::<LabelsBetween>),
        ),
        "archive_pair" => doc(
            "Remove every association type between two records",
            &[],
            None,
            Answer::NoContent,
        ),
        "create_default" => doc(
            "Associate two records with the pair's default (unlabeled) type",
            &[],
            None,
            Answer::Json(
                StatusCode::OK,
                with::<BatchResponse<DefaultAssociation>, DefaultAssociation>,
            ),
        ),
        "batch_read" => doc(
            "Read a page of associated records for each input record",
            &[],
            Some(with::<Inputs<ReadInput>, ReadInput>),
            Answer::Batch(
                BatchKind::Read,
                with::<BatchResponse<MultiWithLabel>, MultiWithLabel>,
            ),
        ),
        "batch_create" => doc(
            "Create associations with the given types, per input",
            &[],
            Some(with::<Inputs<MultiPost>, MultiPost>),
            Answer::Batch(
                BatchKind::Create,
                with::<BatchResponse<LabelsBetween>, LabelsBetween>,
            ),
        ),
        "batch_create_default" => doc(
            "Create default (unlabeled) associations, per input pair",
            &[],
            Some(with::<Inputs<PairInput>, PairInput>),
            Answer::Json(
                StatusCode::OK,
                with::<BatchResponse<DefaultAssociation>, DefaultAssociation>,
            ),
        ),
        "batch_archive" => doc(
            "Remove every association type between each input's records",
            &[],
            Some(with::<Inputs<MultiArchive>, MultiArchive>),
            Answer::Batch(BatchKind::Void, with::<BatchResponse<()>, ()>),
        ),
        "batch_archive_labels" => doc(
            "Remove the given types (labels) between each input's records",
            &[],
            Some(with::<Inputs<MultiPost>, MultiPost>),
            Answer::Batch(BatchKind::Void, with::<BatchResponse<()>, ()>),
        ),
        _ => return None,
    })
}
