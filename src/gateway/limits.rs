//! HubSpot's Limits Tracking endpoints for associations: which object types
//! have records at or near a limit, and a pair's records at and near its
//! record (unlabeled) limit, from the service's limit usage; and each pair's
//! admin labels against the label quota; and the high-usage report.
use axum::extract::{Path, RawQuery};
use axum::Json;
use serde::Serialize;

use super::error::{invalid_field, GatewayResult};
use super::json::{timestamp, Query};
use super::openapi::{of, Answer, Doc};
use super::Gateway;
use crate::domain::limits::DEFAULT_NEAR_FRACTION;
use crate::domain::{ObjectType, TypeRole};
use crate::service::LimitUsage;
use axum::http::StatusCode;

/// Sample records per group, as HubSpot shows them.
const SAMPLES: u32 = 10;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectTypeAtLimits {
    object_type_id: String,
    singular_label: String,
    plural_label: String,
    has_records_at_limit: bool,
    has_records_near_limit: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ObjectTypesAtLimits {
    results: Vec<ObjectTypeAtLimits>,
}

/// The object types `side` picks of the usages, each saying whether any of
/// its usages has records at or near their limit.
fn at_limits(
    usages: &[LimitUsage],
    side: impl Fn(&LimitUsage) -> ObjectType,
) -> ObjectTypesAtLimits {
    let mut types: Vec<ObjectType> = usages.iter().map(&side).collect();
    types.sort();
    types.dedup();
    let results = types
        .into_iter()
        .map(|object_type| {
            let of_type = || usages.iter().filter(|u| side(u) == object_type);
            let (singular_label, plural_label) = object_type.display_labels();
            ObjectTypeAtLimits {
                object_type_id: object_type.to_string(),
                singular_label,
                plural_label,
                has_records_at_limit: of_type().any(|u| u.usage.at_or_above > 0),
                has_records_near_limit: of_type().any(|u| u.usage.near > 0),
            }
        })
        .collect();
    ObjectTypesAtLimits { results }
}

/// `GET /crm/v3/limits/associations/records/from`: the from-object types of
/// the pairs with admin limits or records near the platform ceiling, each
/// saying whether any of its records is at or near a limit of any type.
pub async fn records_from(gw: Gateway) -> GatewayResult<Json<ObjectTypesAtLimits>> {
    let usages = gw
        .service
        .limit_usage(gw.portal, None, DEFAULT_NEAR_FRACTION, 0)
        .await?;
    Ok(Json(at_limits(&usages, |u| u.def.from)))
}

/// `GET /crm/v3/limits/associations/records/{from}/to`: for one from-object
/// type, the to-object types of those pairs, each saying
/// whether any record of `from` is at or near a limit toward it.
pub async fn records_to(
    gw: Gateway,
    Path(from): Path<String>,
) -> GatewayResult<Json<ObjectTypesAtLimits>> {
    let from = gw.object_type(&from)?;
    let usages: Vec<LimitUsage> = gw
        .service
        .limit_usage(gw.portal, None, DEFAULT_NEAR_FRACTION, 0)
        .await?
        .into_iter()
        .filter(|u| u.def.from == from)
        .collect();
    Ok(Json(at_limits(&usages, |u| u.def.to)))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AtLimitSample {
    object_id: i64,
    label: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NearLimitSample {
    object_id: i64,
    label: String,
    usage: i64,
    percentage: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairRecords {
    limit: u32,
    total_records_at_limit: u64,
    total_records_near_limit: u64,
    at_limit_from_record_samples: Vec<AtLimitSample>,
    near_limit_from_record_samples: Vec<NearLimitSample>,
}

/// `GET /crm/v3/limits/associations/records/{from}/{to}`: the from-records
/// at and near the pair direction's record limit (its unlabeled type's).
/// The service holds no record names, so a sample's label is its id.
pub async fn records_of_pair(
    gw: Gateway,
    Path((from, to)): Path<(String, String)>,
) -> GatewayResult<Json<PairRecords>> {
    let pair = gw.pair(&from, &to)?;
    let usages = gw
        .service
        .limit_usage(
            gw.portal,
            Some((pair.from, pair.to)),
            DEFAULT_NEAR_FRACTION,
            SAMPLES,
        )
        .await?;
    let usage: &LimitUsage = usages
        .iter()
        .find(|u| u.def.from == pair.from && u.def.role == TypeRole::Unlabeled)
        .expect("every pair direction has an unlabeled type");
    Ok(Json(PairRecords {
        limit: usage.limit,
        total_records_at_limit: usage.usage.at_or_above,
        total_records_near_limit: usage.usage.near,
        at_limit_from_record_samples: usage
            .usage
            .at_or_above_samples
            .iter()
            .map(|(id, _)| AtLimitSample {
                object_id: *id,
                label: id.to_string(),
            })
            .collect(),
        near_limit_from_record_samples: usage
            .usage
            .near_samples
            .iter()
            .map(|(id, count)| NearLimitSample {
                object_id: *id,
                label: id.to_string(),
                usage: *count,
                percentage: *count as f64 / f64::from(usage.limit.max(1)),
            })
            .collect(),
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectTypeLabels {
    object_type_id: String,
    singular_label: String,
    plural_label: String,
}

impl From<ObjectType> for ObjectTypeLabels {
    fn from(object_type: ObjectType) -> ObjectTypeLabels {
        let (singular_label, plural_label) = object_type.display_labels();
        ObjectTypeLabels {
            object_type_id: object_type.to_string(),
            singular_label,
            plural_label,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairLabels {
    all_labels: Vec<String>,
    from_object_type: ObjectTypeLabels,
    to_object_type: ObjectTypeLabels,
    limit: usize,
    usage: usize,
    percentage: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LabelLimits {
    results: Vec<PairLabels>,
}

/// `GET /crm/v3/limits/associations/labels[?fromObjectTypeId&toObjectTypeId]`:
/// each direction's labels against its pair's label quota.
pub async fn labels(gw: Gateway, RawQuery(raw): RawQuery) -> GatewayResult<Json<LabelLimits>> {
    let query = Query::parse(raw.as_deref());
    let side = |name: &str| query.get(name).map(|t| gw.object_type(t)).transpose();
    let (from, to) = (side("fromObjectTypeId")?, side("toObjectTypeId")?);
    let usages = gw.service.label_usage(gw.portal, from, to).await?;
    let results = usages
        .into_iter()
        .map(|u| PairLabels {
            all_labels: u.labels,
            from_object_type: u.from.into(),
            to_object_type: u.to.into(),
            limit: u.limit,
            usage: u.usage,
            percentage: u.usage as f64 / u.limit as f64,
        })
        .collect();
    Ok(Json(LabelLimits { results }))
}

/// `ReportCreationResponse`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportCreation {
    user_id: i64,
    /// The service keeps no users, so no address: the plugin that delivers
    /// the report finds the user's.
    user_email: String,
    enqueue_time: String,
}

/// `POST …/associations/usage/high-usage-report/{userId}`: makes the report
/// of the portal's records at or near their limits for the user, which the
/// admin plugins receive (`HIGH_USAGE_REPORT`); 200.
pub async fn high_usage_report(
    gw: Gateway,
    Path(user_id): Path<String>,
) -> GatewayResult<Json<ReportCreation>> {
    let user_id = match user_id.trim().parse::<i64>() {
        Ok(id) if id > 0 => id,
        _ => {
            return Err(invalid_field(
                "userId",
                format!("Invalid userId '{user_id}': user ids are positive 64-bit integers"),
            ))
        }
    };
    let at_us = gw
        .service
        .high_usage_report(gw.actor(), gw.portal, user_id)
        .await?;
    let enqueued = std::time::UNIX_EPOCH + std::time::Duration::from_micros(at_us.max(0) as u64);
    Ok(Json(ReportCreation {
        user_id,
        user_email: String::new(),
        enqueue_time: timestamp(enqueued),
    }))
}

/// What each handler here reads and answers, for the OpenAPI document.
pub(super) fn api(handler: &str) -> Option<Doc> {
    let doc = |summary, query, answer| Doc {
        summary,
        query,
        body: None,
        answer,
    };
    Some(match handler {
        "records_from" => doc(
            "From-object types with limits, and whether records are at or near them",
            &[],
            Answer::Json(StatusCode::OK, of::<ObjectTypesAtLimits>),
        ),
        "records_to" => doc(
            "A from-object type's limited to-object types, and whether records are at or near them",
            &[],
            Answer::Json(StatusCode::OK, of::<ObjectTypesAtLimits>),
        ),
        "records_of_pair" => doc(
            "The records at and near a pair's record limit, with samples",
            &[],
            Answer::Json(StatusCode::OK, of::<PairRecords>),
        ),
        "labels" => doc(
            "Each pair direction's labels against its label quota",
            &[
                ("fromObjectTypeId", "only pairs from this object type"),
                ("toObjectTypeId", "only pairs to this object type"),
            ],
            Answer::Json(StatusCode::OK, of::<LabelLimits>),
        ),
        "high_usage_report" => doc(
            "Make the report of records at or near their limits for a user (the admin plugins deliver it)",
            &[],
            Answer::Json(StatusCode::OK, of::<ReportCreation>),
        ),
        _ => return None,
    })
}
