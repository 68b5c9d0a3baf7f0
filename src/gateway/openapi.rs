//! The REST gateway as an OpenAPI 3.1 document, served at `GET
//! /openapi.json`: its paths, methods and path parameters come from the
//! route table (`REST_HANDLERS`), and what each handler reads and answers
//! from the `api` function beside the handlers, on the JSON types they
//! serialize (utoipa's `ToSchema`). Batch statuses follow each path's
//! version (`ApiVersion::batch_status`); every error is HubSpot's body.
use std::sync::LazyLock;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApiBuilder, PathItem, PathsBuilder, RefOr,
    Required, ResponseBuilder, ResponsesBuilder,
};
use utoipa::ToSchema;

use super::error::{ErrorBody, ItemError};
use super::json::{NextPage, Paging};
use super::version::{ApiVersion, BatchKind};
use super::REST_HANDLERS;

/// Named schemas found on the way (`#/components/schemas/…`).
pub type Found = Vec<(String, RefOr<Schema>)>;

/// A JSON type's schema, inline, with the named schemas it refers to.
pub type SchemaOf = fn(&mut Found) -> RefOr<Schema>;

/// `T`'s schema (a `SchemaOf`).
pub fn of<T: ToSchema>(found: &mut Found) -> RefOr<Schema> {
    T::schemas(found);
    T::schema()
}

/// `T`'s schema where `T` is generic over `A` (`Collection<A>`,
/// `Inputs<A>`, …): utoipa refers to `A` by name without listing it, so it
/// is listed here.
pub fn with<T: ToSchema, A: ToSchema>(found: &mut Found) -> RefOr<Schema> {
    named::<A>(found);
    T::schema()
}

/// Lists `T` under its name.
fn named<T: ToSchema>(found: &mut Found) {
    T::schemas(found);
    found.push((T::name().into_owned(), T::schema()));
}

/// What a successful call answers.
pub enum Answer {
    /// This status with a JSON body.
    Json(StatusCode, SchemaOf),
    /// 204, no body.
    NoContent,
    /// HubSpot's batch envelope, with the statuses the path's version gives
    /// batches of this kind (with and without failed inputs).
    Batch(BatchKind, SchemaOf),
}

/// What one handler reads and answers.
pub struct Doc {
    pub summary: &'static str,
    /// Query parameters: name and meaning.
    pub query: &'static [(&'static str, &'static str)],
    /// The JSON body it reads.
    pub body: Option<SchemaOf>,
    pub answer: Answer,
}

/// The document, built once.
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string(&document()).expect("the document serializes"));

/// `GET /openapi.json`.
pub async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// The description of a handler (`v4::batch_read`, as the route table
/// names it), from its module's `api`.
fn describe(handler: &str) -> Option<Doc> {
    let handler: String = handler.split_whitespace().collect();
    let (module, name) = handler.rsplit_once("::")?;
    match module {
        "v3" => super::v3::api(name),
        "v4" => super::v4::api(name),
        "v4_config" => super::v4_config::api(name),
        "limits" => super::limits::api(name),
        _ => None,
    }
}

/// An operation's answers: each success its version gives, and HubSpot's
/// error body for any failure.
fn responses(doc: &Doc, version: ApiVersion, found: &mut Found) -> utoipa::openapi::Responses {
    let mut responses = ResponsesBuilder::new();
    for (status, schema) in successes(&doc.answer, version) {
        let reason = status.canonical_reason().unwrap_or("success");
        let response = match schema {
            Some(schema) => ResponseBuilder::new()
                .description(reason)
                .content("application/json", json(schema(found))),
            None => ResponseBuilder::new().description(reason),
        };
        responses = responses.response(status.as_str(), response.build());
    }
    let error_body = RefOr::Ref(utoipa::openapi::Ref::from_schema_name(ErrorBody::name()));
    responses
        .response(
            "default",
            ResponseBuilder::new()
                .description("HubSpot's error body: the status says which failure")
                .content("application/json", json(error_body))
                .build(),
        )
        .build()
}

/// The whole document. Panics if a route's handler has no description (a
/// unit test builds it).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut found = Found::new();
    let mut paths = PathsBuilder::new();
    for (method, pattern, handler) in REST_HANDLERS {
        let doc = describe(handler)
            .unwrap_or_else(|| panic!("{handler} ({method} {pattern}) has no OpenAPI description"));
        let version = ApiVersion::of_path(pattern).expect("every route names its version");
        let mut operation = OperationBuilder::new()
            .operation_id(Some(operation_id(method, pattern)))
            .summary(Some(doc.summary))
            .tag(version.segment());
        for name in path_parameters(pattern) {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(of::<String>(&mut found))),
            );
        }
        for (name, meaning) in doc.query {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(*meaning))
                    .schema(Some(of::<String>(&mut found))),
            );
        }
        if let Some(body) = doc.body {
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content("application/json", json(body(&mut found)))
                    .build(),
            ));
        }
        let responses = responses(&doc, version, &mut found);
        let operation = operation.responses(responses).build();
        paths = paths.path(*pattern, PathItem::new(http_method(method), operation));
    }
    // The named parts of the generic envelopes, which utoipa refers to
    // without listing.
    named::<ErrorBody>(&mut found);
    named::<ItemError>(&mut found);
    named::<Paging>(&mut found);
    named::<NextPage>(&mut found);
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.dedup_by(|a, b| a.0 == b.0);
    let mut components = ComponentsBuilder::new();
    for (name, schema) in found {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("association-service REST gateway (HubSpot associations)")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "HubSpot's associations JSON (v3, v4, the date-versioned 2025-09, 2026-03 and 2026-09 paths, Limits Tracking and the objects API's association reads) over association-service. Calls act on the bearer token's one portal.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}

/// The success statuses of `answer` under `version`, each with its body.
fn successes(answer: &Answer, version: ApiVersion) -> Vec<(StatusCode, Option<SchemaOf>)> {
    match answer {
        Answer::Json(status, schema) => vec![(*status, Some(*schema))],
        Answer::NoContent => vec![(StatusCode::NO_CONTENT, None)],
        Answer::Batch(kind, schema) => {
            let mut statuses: Vec<(StatusCode, Option<SchemaOf>)> = Vec::new();
            for has_errors in [false, true] {
                let entry = match version.batch_status(*kind, has_errors) {
                    Some(status) => (status, Some(*schema)),
                    None => (StatusCode::NO_CONTENT, None),
                };
                if !statuses.iter().any(|(s, _)| *s == entry.0) {
                    statuses.push(entry);
                }
            }
            statuses
        }
    }
}

fn json(schema: RefOr<Schema>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn http_method(method: &str) -> HttpMethod {
    match method {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        other => unreachable!("no REST route uses {other}"),
    }
}

/// The `{name}` segments of a route pattern.
fn path_parameters(pattern: &str) -> impl Iterator<Item = &str> {
    pattern
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
}

/// `get_crm_v4_associations_by_from_by_to_labels`: unique per method and
/// path (a parameter `{x}` reads `by_x`).
fn operation_id(method: &str, pattern: &str) -> String {
    let words = pattern.split('/').filter(|s| !s.is_empty()).map(|segment| {
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => format!("by_{name}"),
            None => segment.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        }
    });
    std::iter::once(method.to_ascii_lowercase())
        .chain(words)
        .collect::<Vec<_>>()
        .join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route has a description, every operation id is unique, and the
    /// document lists every route pattern with its method.
    #[test]
    fn the_document_describes_every_route() {
        let value = serde_json::to_value(document()).unwrap();
        let mut ids = std::collections::HashSet::new();
        for (method, pattern, _) in REST_HANDLERS {
            let operation = &value["paths"][*pattern][method.to_ascii_lowercase()];
            assert!(operation.is_object(), "{method} {pattern} is missing");
            let id = operation["operationId"].as_str().unwrap().to_string();
            assert!(ids.insert(id.clone()), "{id} twice");
        }
        assert_eq!(
            value["openapi"].as_str().map(|v| v.starts_with("3.1")),
            Some(true)
        );
    }

    /// Every `$ref` names a schema the document lists.
    #[test]
    fn every_reference_resolves() {
        fn refs<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(target) = map.get("$ref").and_then(|r| r.as_str()) {
                        out.push(target);
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let value = serde_json::to_value(document()).unwrap();
        let mut targets = Vec::new();
        refs(&value, &mut targets);
        assert!(!targets.is_empty());
        for target in targets {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{target} is not a schema of the document"));
            assert!(
                value["components"]["schemas"][name].is_object(),
                "{target} is not listed"
            );
        }
    }

    #[test]
    fn tags_name_the_version() {
        let tag = |p| ApiVersion::of_path(p).unwrap().segment();
        assert_eq!(tag("/crm/v4/associations/{from}/{to}/labels"), "v4");
        assert_eq!(tag("/crm/objects/2026-03/{object_type}"), "2026-03");
        assert_eq!(tag("/crm/limits/2025-09/associations/labels"), "2025-09");
    }
}
