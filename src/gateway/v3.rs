//! v3 endpoints: objects with `associations=`, the per-record associations
//! page and single writes, the v3 batch read/create/archive and types.
//! v3 lists one row per (associated record, type) and pages 100 records.
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::batch::read_pages;
use super::error::{GatewayError, GatewayResult};
use super::json::ReadInput;
use super::json::{
    body, parse_id, timestamp, BatchResponse, Collection, IdOut, IdText, Inputs, ObjectId, Paging,
    Query,
};
use super::openapi::{of, with, Answer, Doc};
use super::version::{ApiVersion, BatchKind};
use super::{type_id, BaseUrl, Gateway};
use crate::domain::DomainError;
use crate::service::{AssociatedRecord, AssociationPage, NamedInput, Record, ServiceError};

/// Associated records per record and to-type on a v3 page.
const V3_PAGE: u32 = 100;
/// Largest `limit` of the per-record page.
const V3_MAX_PAGE: u32 = 500;
/// Default and largest page of the object list.
const OBJECTS_PAGE: u32 = 10;
const OBJECTS_MAX_PAGE: u32 = 100;

/// `{"id": "…", "type": "contact_to_company"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AssociatedId {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

fn rows(records: &[AssociatedRecord]) -> Vec<AssociatedId> {
    records
        .iter()
        .flat_map(|r| {
            r.types.iter().map(|def| AssociatedId {
                id: r.to_id.to_string(),
                kind: def.name.clone(),
            })
        })
        .collect()
}

/// The per-record page a v3 `paging.next.link` points at.
fn record_link(base: &BaseUrl, from: &str, id: i64, to: &str, after: &str) -> String {
    format!(
        "{}/crm/v3/objects/{}/{id}/associations/{}?after={after}",
        base.0,
        type_id(from),
        type_id(to)
    )
}

/// `GET /crm/v3/objects/{objectType}/{objectId}/associations/{toObjectType}`.
pub async fn record_page(
    gw: Gateway,
    base: BaseUrl,
    Path((from, id, to)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> GatewayResult<Json<Collection<AssociatedId>>> {
    let id = parse_id("objectId", &id)?;
    let query = Query::parse(raw.as_deref());
    let limit = query.limit(V3_PAGE, V3_MAX_PAGE)?;
    let page = gw
        .service
        .page_associations(gw.pair(&from, &to)?, id, query.get("after"), limit)
        .await?;
    Ok(Json(Collection {
        results: rows(&page.records),
        paging: Paging::new(page.next, |after| record_link(&base, &from, id, &to, after)),
    }))
}

/// A record as v3 object endpoints show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ObjectBody {
    id: String,
    properties: Map<String, Value>,
    created_at: String,
    updated_at: String,
    archived: bool,
    #[serde(skip_serializing_if = "Map::is_empty")]
    associations: Map<String, Value>,
}

/// The first page of each requested to-type (by the name as requested) for
/// each record: one store read per to-type, whatever the number of records.
async fn first_pages<'t>(
    gw: &Gateway,
    object_type: &str,
    ids: &[i64],
    associations: &'t [String],
) -> GatewayResult<Vec<Vec<(&'t str, AssociationPage)>>> {
    let mut per_record: Vec<Vec<(&str, AssociationPage)>> =
        ids.iter().map(|_| Vec::new()).collect();
    for to in associations {
        // HubSpot ignores the types in `associations=` that do not exist.
        let pair = match gw.pair(object_type, to) {
            Err(DomainError::UnknownObjectType(_)) => continue,
            pair => pair?,
        };
        let pages = gw.service.first_pages(pair, ids, V3_PAGE).await?;
        for (record, page) in per_record.iter_mut().zip(pages) {
            record.push((to.as_str(), page));
        }
    }
    Ok(per_record)
}

/// A record's body with the first page of each requested to-type.
async fn object_body(
    gw: &Gateway,
    base: &BaseUrl,
    object_type: &str,
    record: &Record,
    associations: &[String],
) -> GatewayResult<ObjectBody> {
    let mut pages = first_pages(gw, object_type, &[record.id], associations).await?;
    let pages = pages.pop().unwrap_or_default();
    Ok(body_of(base, object_type, record, pages))
}

/// Builds a record's body with its first pages (to-types it has none of
/// are left out).
fn body_of(
    base: &BaseUrl,
    object_type: &str,
    record: &Record,
    pages: Vec<(&str, AssociationPage)>,
) -> ObjectBody {
    let mut map = Map::new();
    for (to, page) in pages {
        if page.records.is_empty() {
            continue;
        }
        let collection = Collection {
            results: rows(&page.records),
            paging: Paging::new(page.next, |after| {
                record_link(base, object_type, record.id, to, after)
            }),
        };
        map.insert(
            to.to_string(),
            serde_json::to_value(collection).unwrap_or_default(),
        );
    }
    let mut properties = Map::new();
    properties.insert("hs_object_id".into(), record.id.to_string().into());
    properties.insert("createdate".into(), timestamp(record.created_at).into());
    properties.insert(
        "hs_lastmodifieddate".into(),
        timestamp(record.updated_at).into(),
    );
    ObjectBody {
        id: record.id.to_string(),
        properties,
        created_at: timestamp(record.created_at),
        updated_at: timestamp(record.updated_at),
        archived: false,
        associations: map,
    }
}

/// `GET /crm/v3/objects/{objectType}/{objectId}?associations=…`.
pub async fn get_object(
    gw: Gateway,
    base: BaseUrl,
    Path((object_type, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> GatewayResult<Response> {
    let id = parse_id("objectId", &id)?;
    let query = Query::parse(raw.as_deref());
    let record = gw
        .service
        .record_by_id(gw.portal, gw.object_type(&object_type)?, id)
        .await?;
    let associations = query.list("associations");
    let body = object_body(&gw, &base, &object_type, &record, &associations).await?;
    Ok(Json(body).into_response())
}

/// `GET /crm/v3/objects/{objectType}` (and the dated objects paths): the
/// records that hold associations.
pub async fn list_objects(
    gw: Gateway,
    base: BaseUrl,
    version: ApiVersion,
    Path(object_type): Path<String>,
    RawQuery(raw): RawQuery,
) -> GatewayResult<Response> {
    let query = Query::parse(raw.as_deref());
    let limit = query.limit(OBJECTS_PAGE, OBJECTS_MAX_PAGE)?;
    let associations = query.list("associations");
    let page = gw
        .service
        .page_records(
            gw.portal,
            gw.object_type(&object_type)?,
            query.get("after"),
            limit,
        )
        .await?;
    let ids: Vec<i64> = page.records.iter().map(|r| r.id).collect();
    let pages = first_pages(&gw, &object_type, &ids, &associations).await?;
    let results: Vec<ObjectBody> = page
        .records
        .iter()
        .zip(pages)
        .map(|(record, pages)| body_of(&base, &object_type, record, pages))
        .collect();
    let paging = Paging::new(page.next, |after| {
        let mut link = format!(
            "{}{}/{object_type}?limit={limit}&after={after}",
            base.0,
            version.objects_prefix()
        );
        if !associations.is_empty() {
            link.push_str(&format!("&associations={}", associations.join(",")));
        }
        link
    });
    Ok(Json(Collection { results, paging }).into_response())
}

/// `{"primaryObjectId": "…", "objectIdToMerge": "…"}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct MergeInput {
    primary_object_id: IdText,
    object_id_to_merge: IdText,
}

/// `POST /crm/v3/objects/{objectType}/merge`: moves the merged record's
/// associations to the primary; 200 with the primary record.
pub async fn merge(
    gw: Gateway,
    Path(object_type): Path<String>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let input: MergeInput = body(&bytes)?;
    let primary = input.primary_object_id.id("primaryObjectId")?;
    let merged = input.object_id_to_merge.id("objectIdToMerge")?;
    let kind = gw.object_type(&object_type)?;
    let summary = gw.service.merge(gw.portal, kind, primary, merged).await?;
    // The survivor (the primary, or the record it was merged into before).
    let primary = summary.primary_id;
    let record = match gw.service.record_by_id(gw.portal, kind, primary).await {
        Err(ServiceError::Domain(DomainError::ObjectNotFound { .. })) => {
            let now = SystemTime::now();
            Record {
                object_type: summary.object_type,
                id: primary,
                created_at: now,
                updated_at: now,
            }
        }
        other => other?,
    };
    let body = object_body(&gw, &BaseUrl(String::new()), &object_type, &record, &[]).await?;
    Ok(Json(body).into_response())
}

/// The one association a per-record v3 write names in its path.
fn single_input(id: &str, to_id: &str, kind: &str) -> GatewayResult<NamedInput> {
    Ok(NamedInput {
        from_id: parse_id("objectId", id)?,
        to_id: parse_id("toObjectId", to_id)?,
        type_name: kind.to_string(),
    })
}

/// `PUT …/associations/{toObjectType}/{toObjectId}/{associationType}`: 200
/// with the from-record and its associations of that to-type.
pub async fn create_one(
    gw: Gateway,
    base: BaseUrl,
    Path((from, id, to, to_id, kind)): Path<(String, String, String, String, String)>,
) -> GatewayResult<Response> {
    let input = single_input(&id, &to_id, &kind)?;
    let id = input.from_id;
    let pair = gw.pair(&from, &to)?;
    let outcome = gw.service.create_named(pair, &[input]).await?;
    if let Some((_, err)) = outcome.errors.into_iter().next() {
        return Err(GatewayError::single_write(err));
    }
    let record = gw.service.record_by_id(gw.portal, pair.from, id).await?;
    let body = object_body(&gw, &base, &from, &record, std::slice::from_ref(&to)).await?;
    Ok(Json(body).into_response())
}

/// `DELETE …/associations/{toObjectType}/{toObjectId}/{associationType}`:
/// removes that type (the unlabeled type takes every label with it).
pub async fn archive_one(
    gw: Gateway,
    Path((from, id, to, to_id, kind)): Path<(String, String, String, String, String)>,
) -> GatewayResult<StatusCode> {
    let input = single_input(&id, &to_id, &kind)?;
    let outcome = gw
        .service
        .archive_named(gw.pair(&from, &to)?, &[input])
        .await?;
    match outcome.errors.into_iter().next() {
        Some((_, err)) => Err(err.into()),
        None => Ok(StatusCode::NO_CONTENT),
    }
}

/// One from-record's page in a batch read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AssociationMulti {
    from: IdOut,
    to: Vec<AssociatedId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paging: Option<Paging>,
}

/// `POST /crm/v3/associations/{from}/{to}/batch/read`; unlike HubSpot's, each
/// input may carry the `after` of its previous page.
pub async fn batch_read(
    gw: Gateway,
    base: BaseUrl,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let pair = gw.pair(&from, &to)?;
    read_pages(
        &gw,
        ApiVersion::V3,
        pair,
        &bytes,
        V3_PAGE,
        move |id, page| AssociationMulti {
            from: IdOut::new(id),
            to: rows(&page.records),
            paging: Paging::new(page.next, |after| record_link(&base, &from, id, &to, after)),
        },
    )
    .await
}

/// A v3 write input: `{"from": {"id"}, "to": {"id"}, "type": "…"}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PublicAssociation {
    from: ObjectId,
    to: ObjectId,
    #[serde(rename = "type")]
    kind: String,
}

/// A created v3 association as HubSpot echoes it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PublicAssociationOut {
    from: IdOut,
    to: IdOut,
    #[serde(rename = "type")]
    kind: String,
}

/// Reads a v3 write body: ids parsed, types left named.
fn named_inputs(bytes: &Bytes) -> GatewayResult<Vec<NamedInput>> {
    let inputs: Inputs<PublicAssociation> = body(bytes)?;
    inputs
        .inputs
        .into_iter()
        .map(|input| {
            Ok(NamedInput {
                from_id: input.from.id.id("from.id")?,
                to_id: input.to.id.id("to.id")?,
                type_name: input.kind,
            })
        })
        .collect()
}

/// `POST /crm/v3/associations/{from}/{to}/batch/create`: 201, or 207 with errors.
pub async fn batch_create(
    gw: Gateway,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<Response> {
    let started = SystemTime::now();
    let inputs = named_inputs(&bytes)?;
    let outcome = gw
        .service
        .create_named(gw.pair(&from, &to)?, &inputs)
        .await?;
    let results = outcome
        .results
        .into_iter()
        .map(|(_, made)| PublicAssociationOut {
            from: IdOut::new(made.from_id),
            to: IdOut::new(made.to_id),
            kind: made.def.name,
        })
        .collect();
    let response = BatchResponse::new(started, results, &outcome.errors);
    Ok(ApiVersion::V3.batch(BatchKind::Create, response))
}

/// `POST /crm/v3/associations/{from}/{to}/batch/archive`: 204.
pub async fn batch_archive(
    gw: Gateway,
    Path((from, to)): Path<(String, String)>,
    bytes: Bytes,
) -> GatewayResult<StatusCode> {
    let inputs = named_inputs(&bytes)?;
    let outcome = gw
        .service
        .archive_named(gw.pair(&from, &to)?, &inputs)
        .await?;
    match outcome.errors.into_iter().next() {
        Some((_, err)) => Err(err.into()),
        None => Ok(StatusCode::NO_CONTENT),
    }
}

/// `{"id": "1", "name": "contact_to_company"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TypeName {
    id: String,
    name: String,
}

/// `GET /crm/v3/associations/{from}/{to}/types`.
pub async fn types(
    gw: Gateway,
    Path((from, to)): Path<(String, String)>,
) -> GatewayResult<Json<Collection<TypeName>>> {
    let defs = gw.service.definitions(gw.pair(&from, &to)?).await?;
    Ok(Json(Collection {
        results: defs
            .iter()
            .map(|d| TypeName {
                id: d.key.type_id.to_string(),
                name: d.name.clone(),
            })
            .collect(),
        paging: None,
    }))
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
    const ASSOCIATIONS: (&str, &str) = (
        "associations",
        "object types whose associations to include (comma list or repeated)",
    );
    Some(match handler {
        "record_page" => doc(
            "A record's associations to one object type, a page at a time",
            &[
                (
                    "after",
                    "where the previous page ended (its paging.next.after)",
                ),
                ("limit", "associations per page, 1 to 500 (default 100)"),
            ],
            None,
            Answer::Json(
                StatusCode::OK,
                with::<Collection<AssociatedId>, AssociatedId>,
            ),
        ),
        "get_object" => doc(
            "A record (known through its associations), with its associations",
            &[ASSOCIATIONS],
            None,
            Answer::Json(StatusCode::OK, of::<ObjectBody>),
        ),
        "list_objects" => doc(
            "The records of an object type that hold associations, a page at a time",
            &[
                (
                    "after",
                    "where the previous page ended (its paging.next.after)",
                ),
                ("limit", "records per page, 1 to 100 (default 10)"),
                ASSOCIATIONS,
            ],
            None,
            Answer::Json(StatusCode::OK, with::<Collection<ObjectBody>, ObjectBody>),
        ),
        "merge" => doc(
            "Merge a record into another: its associations move to the primary",
            &[],
            Some(of::<MergeInput>),
            Answer::Json(StatusCode::OK, of::<ObjectBody>),
        ),
        "create_one" => doc(
            "Associate two records with one type, named",
            &[],
            None,
            Answer::Json(StatusCode::OK, of::<ObjectBody>),
        ),
        "archive_one" => doc(
            "Remove one association type, named, between two records",
            &[],
            None,
            Answer::NoContent,
        ),
        "batch_read" => doc(
            "Read a page of associations for each input record",
            &[],
            Some(with::<Inputs<ReadInput>, ReadInput>),
            Answer::Batch(
                BatchKind::Read,
                with::<BatchResponse<AssociationMulti>, AssociationMulti>,
            ),
        ),
        "batch_create" => doc(
            "Create associations of named types, per input",
            &[],
            Some(with::<Inputs<PublicAssociation>, PublicAssociation>),
            Answer::Batch(
                BatchKind::Create,
                with::<BatchResponse<PublicAssociationOut>, PublicAssociationOut>,
            ),
        ),
        "batch_archive" => doc(
            "Remove associations of named types, per input",
            &[],
            Some(with::<Inputs<PublicAssociation>, PublicAssociation>),
            Answer::NoContent,
        ),
        "types" => doc(
            "The association types between two object types",
            &[],
            None,
            Answer::Json(StatusCode::OK, with::<Collection<TypeName>, TypeName>),
        ),
        _ => return None,
    })
}
