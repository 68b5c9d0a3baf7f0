//! Conversions between `associations.v1` messages and the domain's types,
//! in both directions (what the gRPC front end and the remote plugin client
//! share; the service's requests and chunks are `grpc::convert`); bad input
//! is a `DomainError`.

use crate::domain::admin::{
    AdminChange, AdminEvent, AdminState, LabelValue, LimitImpact, ReportedUsage,
};
use crate::domain::{Category, DomainError, TypeDef, TypeKey};
use crate::proto;

pub fn category_from_proto(value: i32) -> Result<Category, DomainError> {
    Category::from_code(i64::from(value)).ok_or_else(|| {
        DomainError::InvalidArgument(format!(
            "association category {value} is not one of HUBSPOT_DEFINED, USER_DEFINED, INTEGRATOR_DEFINED"
        ))
    })
}

pub fn category_to_proto(category: Category) -> i32 {
    i32::from(category.code())
}

pub fn key_from_proto(t: &proto::AssociationType) -> Result<TypeKey, DomainError> {
    Ok(TypeKey {
        category: category_from_proto(t.category)?,
        type_id: t.type_id,
    })
}

pub fn type_with_label(def: &TypeDef) -> proto::AssociationTypeWithLabel {
    proto::AssociationTypeWithLabel {
        category: category_to_proto(def.key.category),
        type_id: def.key.type_id,
        label: def.label.clone(),
        from_object_type_id: def.from.to_string(),
        to_object_type_id: def.to.to_string(),
    }
}

pub fn definition(def: &TypeDef) -> proto::AssociationDefinition {
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

/// A record and its usage.
pub fn record_usage((object_id, usage): (i64, i64)) -> proto::RecordUsage {
    proto::RecordUsage { object_id, usage }
}

/// A limit change's impact.
pub fn limit_impact(impact: &LimitImpact) -> proto::LimitImpact {
    proto::LimitImpact {
        category: category_to_proto(impact.category),
        type_id: impact.type_id,
        limit_before: impact.limit_before as i32,
        limit_after: impact.limit_after as i32,
        records_at_or_above: impact.records_at_or_above,
        samples: impact.samples.iter().map(|s| record_usage(*s)).collect(),
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
        labels: state.labels.iter().map(label_value).collect(),
        object_name: state.object_name.clone().unwrap_or_default(),
    };
    let event = match change.event {
        AdminEvent::LimitsCreated => proto::AdminEvent::LimitsCreated,
        AdminEvent::LimitsUpdated => proto::AdminEvent::LimitsUpdated,
        AdminEvent::LimitsPurged => proto::AdminEvent::LimitsPurged,
        AdminEvent::LabelCreated => proto::AdminEvent::LabelCreated,
        AdminEvent::LabelUpdated => proto::AdminEvent::LabelUpdated,
        AdminEvent::LabelDeleted => proto::AdminEvent::LabelDeleted,
        AdminEvent::HighUsageReport => proto::AdminEvent::HighUsageReport,
        AdminEvent::CustomObjectNamed => proto::AdminEvent::CustomObjectNamed,
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
        impacts: change.impacts.iter().map(limit_impact).collect(),
        report: change.report.as_ref().map(|r| proto::HighUsageReport {
            user_id: r.user_id,
            types: r.types.iter().map(reported_usage).collect(),
        }),
    }
}

fn label_value(l: &LabelValue) -> proto::AssociationDefinition {
    proto::AssociationDefinition {
        category: category_to_proto(l.category),
        type_id: l.type_id,
        label: l.label.clone(),
        name: l.name.clone(),
        from_object_type_id: l.from_object_type.clone(),
        to_object_type_id: l.to_object_type.clone(),
        inverse_type_id: l.inverse_type_id,
    }
}

/// One type of a usage report.
fn reported_usage(usage: &ReportedUsage) -> proto::TypeUsage {
    let source = if usage.admin_limit {
        proto::LimitSource::Admin
    } else {
        proto::LimitSource::Platform
    };
    proto::TypeUsage {
        definition: Some(label_value(&usage.definition)),
        limit: usage.limit as i32,
        source: source as i32,
        near_from: usage.near_from,
        records_at_limit: usage.records_at_limit,
        records_near_limit: usage.records_near_limit,
        largest_usage: usage.largest_usage,
        at_limit_samples: usage
            .at_limit_samples
            .iter()
            .map(|s| record_usage(*s))
            .collect(),
        near_limit_samples: usage
            .near_limit_samples
            .iter()
            .map(|s| record_usage(*s))
            .collect(),
    }
}
