//! HubSpot's request and response bodies, and the readers for bodies, ids,
//! query strings and categories that turn bad input into VALIDATION_ERRORs.
use std::time::SystemTime;

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{invalid, invalid_field, invalid_id, GatewayResult, ItemError};
use crate::domain::{Category, DomainError, TypeDef, TypeKey};

/// Reads a JSON body; malformed JSON or a wrong shape is a VALIDATION_ERROR.
pub fn body<T: DeserializeOwned>(bytes: &Bytes) -> GatewayResult<T> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let message = format!("Invalid input JSON: {}", e.inner());
        // A missing field is named by serde's message, not by the path
        // (which ends at the object that lacks it).
        let missing = message
            .split_once("missing field `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(name, _)| name.to_string());
        match (e.path().to_string(), missing) {
            (path, Some(name)) if path == "." => invalid_field(name, message),
            (path, Some(name)) => invalid_field(format!("{path}.{name}"), message),
            // Nothing to point at: the body as a whole is wrong.
            (path, None) if path == "." => invalid(message),
            (path, None) => invalid_field(path, message),
        }
    })
}

/// An id as HubSpot clients send it: a JSON string or number.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum IdText {
    Text(String),
    Number(i64),
}

/// Parses a record id given as text; it must be a positive integer.
pub fn parse_id(field: &'static str, text: &str) -> GatewayResult<i64> {
    match text.trim().parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(invalid_id(
            field,
            format!("Invalid {field} '{text}': ids are positive 64-bit integers"),
        )),
    }
}

impl IdText {
    pub fn id(&self, field: &'static str) -> GatewayResult<i64> {
        match self {
            IdText::Text(text) => parse_id(field, text),
            IdText::Number(n) => parse_id(field, &n.to_string()),
        }
    }
}

/// `{"id": "…"}`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
pub struct ObjectId {
    pub id: IdText,
}

/// `{"inputs": [...]}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Inputs<T> {
    pub inputs: Vec<T>,
}

/// A batch read input: a record id and, optionally, where to resume it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReadInput {
    pub id: IdText,
    #[serde(default)]
    pub after: Option<String>,
}

/// A v4 association spec, as sent.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpecInput {
    pub association_category: CategoryText,
    pub association_type_id: i32,
}

impl SpecInput {
    pub fn key(&self) -> GatewayResult<TypeKey> {
        Ok(TypeKey {
            category: self.association_category.0,
            type_id: self.association_type_id,
        })
    }
}

/// A category name; an unknown one is a VALIDATION_ERROR.
#[derive(Clone, Copy, Debug)]
pub struct CategoryText(pub Category);

impl<'de> Deserialize<'de> for CategoryText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Category::parse(&text).map(CategoryText).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown association category '{text}': use HUBSPOT_DEFINED, USER_DEFINED or INTEGRATOR_DEFINED"
            ))
        })
    }
}

/// HubSpot's category names, as its specs list them.
fn category_names() -> Vec<&'static str> {
    (1..=3)
        .filter_map(Category::from_code)
        .map(Category::as_str)
        .collect()
}

impl utoipa::PartialSchema for CategoryText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(category_names()))
            .into()
    }
}

impl utoipa::ToSchema for CategoryText {}

/// Query parameters in order, repeated ones kept.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of a list parameter, given repeated or comma-separated.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// `limit` between 1 and `max`, or `default` when absent.
    pub fn limit(&self, default: u32, max: u32) -> GatewayResult<u32> {
        match self.get("limit") {
            None => Ok(default),
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(invalid_field(
                    "limit",
                    format!("Invalid limit '{text}': it must be an integer from 1 to {max}"),
                )),
            },
        }
    }
}

/// HubSpot's timestamps: ISO 8601 in UTC with milliseconds.
pub fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

// ---------------------------------------------------------------- output

/// `{"after": "…", "link": "…"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NextPage {
    pub after: String,
    pub link: String,
}

/// `{"next": {…}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Paging {
    pub next: NextPage,
}

impl Paging {
    pub fn new(after: Option<String>, link: impl FnOnce(&str) -> String) -> Option<Paging> {
        after.map(|after| Paging {
            next: NextPage {
                link: link(&after),
                after,
            },
        })
    }
}

/// `{"results": [...]}` with optional paging.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Collection<T> {
    pub results: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

/// HubSpot's batch envelope; errors turn a 200/201 into a 207.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse<T> {
    pub status: &'static str,
    pub results: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_errors: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ItemError>>,
    pub started_at: String,
    pub completed_at: String,
}

impl<T> BatchResponse<T> {
    pub fn new(started: SystemTime, results: Vec<T>, errors: &[(usize, DomainError)]) -> Self {
        let errors: Vec<ItemError> = errors.iter().map(|(_, e)| ItemError::new(e)).collect();
        BatchResponse {
            status: "COMPLETE",
            results,
            num_errors: (!errors.is_empty()).then_some(errors.len()),
            errors: (!errors.is_empty()).then_some(errors),
            started_at: timestamp(started),
            completed_at: timestamp(SystemTime::now()),
        }
    }

    /// A batch answer with no results and no errors (`BatchResponseVoid`).
    pub fn void(started: SystemTime) -> Self {
        BatchResponse::new(started, Vec::new(), &[])
    }

    pub fn has_errors(&self) -> bool {
        self.errors.is_some()
    }
}

/// A v4 association type as HubSpot writes it (`label` null when unlabeled);
/// `TypeWithLabel<&str>` borrows the label from its definition.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypeWithLabel<L = String> {
    pub category: &'static str,
    pub type_id: i32,
    #[schema(value_type = Option<String>)]
    pub label: Option<L>,
}

impl TypeWithLabel {
    pub fn new(def: &TypeDef) -> TypeWithLabel {
        TypeWithLabel {
            category: def.key.category.as_str(),
            type_id: def.key.type_id,
            label: def.label.clone(),
        }
    }
}

impl<'a> TypeWithLabel<&'a str> {
    pub fn of(def: &'a TypeDef) -> TypeWithLabel<&'a str> {
        TypeWithLabel {
            category: def.key.category.as_str(),
            type_id: def.key.type_id,
            label: def.label.as_deref(),
        }
    }
}

/// An id written as a JSON string, as HubSpot writes ids.
#[derive(Clone, Copy, Debug)]
pub struct IdString(pub i64);

impl Serialize for IdString {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl utoipa::PartialSchema for IdString {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[1-9][0-9]*$"))
            .into()
    }
}

impl utoipa::ToSchema for IdString {}

/// `{"id": "…"}` on output.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IdOut {
    pub id: String,
}

impl IdOut {
    pub fn new(id: i64) -> IdOut {
        IdOut { id: id.to_string() }
    }
}
