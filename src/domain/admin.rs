//! Admin changes: what a change of limits or labels did (who, when, before
//! and after), as plugins validate it before commit, receive it after, and
//! the audit trail keeps it; and the usage reports admins ask for, which
//! travel the same way.
use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use super::error::DomainError;
use super::limits::LimitChange;
use super::object_type::ObjectType;
use super::types::{Category, TypeDef, TypeKey};

/// The kinds of admin change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AdminEvent {
    LimitsCreated,
    LimitsUpdated,
    LimitsPurged,
    LabelCreated,
    LabelUpdated,
    LabelDeleted,
    /// A report of the records at or near their limits was asked for.
    HighUsageReport,
    /// A custom object type was given a name, renamed, or lost its name.
    CustomObjectNamed,
}

impl AdminEvent {
    pub const ALL: [AdminEvent; 8] = [
        AdminEvent::LimitsCreated,
        AdminEvent::LimitsUpdated,
        AdminEvent::LimitsPurged,
        AdminEvent::LabelCreated,
        AdminEvent::LabelUpdated,
        AdminEvent::LabelDeleted,
        AdminEvent::HighUsageReport,
        AdminEvent::CustomObjectNamed,
    ];

    /// The name used in configuration and on the wire, e.g. `LIMITS_CREATED`.
    pub fn name(self) -> &'static str {
        match self {
            AdminEvent::LimitsCreated => "LIMITS_CREATED",
            AdminEvent::LimitsUpdated => "LIMITS_UPDATED",
            AdminEvent::LimitsPurged => "LIMITS_PURGED",
            AdminEvent::LabelCreated => "LABEL_CREATED",
            AdminEvent::LabelUpdated => "LABEL_UPDATED",
            AdminEvent::LabelDeleted => "LABEL_DELETED",
            AdminEvent::HighUsageReport => "HIGH_USAGE_REPORT",
            AdminEvent::CustomObjectNamed => "CUSTOM_OBJECT_NAMED",
        }
    }

    /// Parses a name as `name()` writes it, or as the contract's enum value
    /// names it (`ADMIN_EVENT_LIMITS_CREATED`), in any case.
    pub fn parse(text: &str) -> Option<AdminEvent> {
        let text = text.trim();
        let name = match text.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("ADMIN_EVENT_") => &text[12..],
            _ => text,
        };
        AdminEvent::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(name))
    }
}

/// An admin limit of one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitValue {
    pub category: Category,
    pub type_id: i32,
    pub max_to_object_ids: u32,
}

impl LimitValue {
    pub fn new(key: TypeKey, max_to_object_ids: u32) -> LimitValue {
        LimitValue {
            category: key.category,
            type_id: key.type_id,
            max_to_object_ids,
        }
    }
}

/// One direction of a label definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelValue {
    pub category: Category,
    pub type_id: i32,
    pub inverse_type_id: i32,
    pub from_object_type: String,
    pub to_object_type: String,
    pub label: Option<String>,
    pub name: String,
}

impl From<&TypeDef> for LabelValue {
    fn from(def: &TypeDef) -> LabelValue {
        LabelValue {
            category: def.key.category,
            type_id: def.key.type_id,
            inverse_type_id: def.inverse.type_id,
            from_object_type: def.from.to_string(),
            to_object_type: def.to.to_string(),
            label: def.label.clone(),
            name: def.name.clone(),
        }
    }
}

/// Limits and labels as a change found or left them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminState {
    pub limits: Vec<LimitValue>,
    pub labels: Vec<LabelValue>,
    /// A custom object type's name (`CustomObjectNamed`; none: unnamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_name: Option<String>,
}

impl AdminState {
    pub fn labels(defs: &[TypeDef]) -> AdminState {
        AdminState {
            limits: vec![],
            labels: defs.iter().map(LabelValue::from).collect(),
            object_name: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.limits.is_empty() && self.labels.is_empty() && self.object_name.is_none()
    }
}

/// What a limit change does to the records that already hold associations
/// of its type: limits are not retroactive, so those at or above the new
/// limit keep their associations and only further creates fail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitImpact {
    pub category: Category,
    pub type_id: i32,
    /// The limit in force before and after (the platform ceiling where no
    /// admin limit applies).
    pub limit_before: u32,
    pub limit_after: u32,
    /// Records holding at least `limit_after` associations of the type.
    pub records_at_or_above: u64,
    /// Some of them, (record id, associations held), largest first.
    pub samples: Vec<(i64, i64)>,
}

/// One type's records at or near the limit in force, as a usage report
/// lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedUsage {
    /// The type, in its direction.
    pub definition: LabelValue,
    pub limit: u32,
    /// Whether the limit is an admin's (else the platform ceiling).
    pub admin_limit: bool,
    /// From this many associations a record is near the limit.
    pub near_from: i64,
    pub records_at_limit: u64,
    pub records_near_limit: u64,
    pub largest_usage: i64,
    /// Some records of each group, (record id, associations held), largest
    /// first.
    pub at_limit_samples: Vec<(i64, i64)>,
    pub near_limit_samples: Vec<(i64, i64)>,
}

/// HubSpot's high-usage report: the records of a portal at or near their
/// association limits, asked for on behalf of a user, which plugins deliver
/// (by mail, chat, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// The user it is for.
    pub user_id: i64,
    /// Every limited type with records at or near its limit.
    pub types: Vec<ReportedUsage>,
}

/// One admin change of limits or labels between two object types, or a
/// usage report (whose object types are empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminChange {
    pub event: AdminEvent,
    pub portal_id: i64,
    /// Who made it ("anonymous" when the caller did not say).
    pub actor: String,
    pub from_object_type: String,
    pub to_object_type: String,
    pub before: AdminState,
    pub after: AdminState,
    /// When it was made, in microseconds since the Unix epoch.
    pub at_us: i64,
    /// What a limit change does to existing records, one per changed type
    /// (empty for label changes).
    #[serde(default)]
    pub impacts: Vec<LimitImpact>,
    /// The report of a `HighUsageReport` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<UsageReport>,
}

impl AdminChange {
    /// A change with empty before and after states.
    pub fn new(
        event: AdminEvent,
        portal_id: i64,
        actor: &str,
        from: ObjectType,
        to: ObjectType,
        at_us: i64,
    ) -> AdminChange {
        let mut change = AdminChange::of(event, portal_id, actor, at_us);
        change.from_object_type = from.to_string();
        change.to_object_type = to.to_string();
        change
    }

    /// A usage report asked for by `actor` (it names no object types).
    pub fn usage_report(portal_id: i64, actor: &str, at_us: i64, report: UsageReport) -> Self {
        let mut change = AdminChange::of(AdminEvent::HighUsageReport, portal_id, actor, at_us);
        change.report = Some(report);
        change
    }

    fn of(event: AdminEvent, portal_id: i64, actor: &str, at_us: i64) -> AdminChange {
        let actor = actor.trim();
        AdminChange {
            event,
            portal_id,
            actor: if actor.is_empty() {
                ANONYMOUS.to_string()
            } else {
                actor.chars().take(200).collect()
            },
            from_object_type: String::new(),
            to_object_type: String::new(),
            before: AdminState::default(),
            after: AdminState::default(),
            at_us,
            impacts: Vec::new(),
            report: None,
        }
    }

    /// The change with these limit states.
    pub fn with_limits(mut self, before: Vec<LimitValue>, after: Vec<LimitValue>) -> AdminChange {
        self.before.limits = before;
        self.after.limits = after;
        self
    }

    /// A custom object type's naming (its object type is the change's
    /// from-type; the to-type is empty).
    pub fn object_named(portal_id: i64, actor: &str, object_type: ObjectType, at_us: i64) -> Self {
        let mut change = AdminChange::of(AdminEvent::CustomObjectNamed, portal_id, actor, at_us);
        change.from_object_type = object_type.to_string();
        change
    }

    /// The change with these names of its custom object type.
    pub fn with_object_names(mut self, before: Option<&str>, after: Option<&str>) -> AdminChange {
        self.before.object_name = before.map(str::to_string);
        self.after.object_name = after.map(str::to_string);
        self
    }

    /// The change with these label states.
    pub fn with_labels(mut self, before: &[TypeDef], after: &[TypeDef]) -> AdminChange {
        self.before = AdminState::labels(before);
        self.after = AdminState::labels(after);
        self
    }

    /// The change with the limits a batch applied: each applied limit as it
    /// was in `before` (if set) and as it is now; `None` when none applied.
    pub fn with_applied_limits(
        &self,
        before: &HashMap<TypeKey, u32>,
        changes: &[LimitChange],
        results: &[Result<u32, DomainError>],
    ) -> Option<AdminChange> {
        let applied: Vec<(TypeKey, u32)> = changes
            .iter()
            .zip(results)
            .filter_map(|(c, r)| r.as_ref().ok().map(|max| (c.key, *max)))
            .collect();
        if applied.is_empty() {
            return None;
        }
        let was = applied
            .iter()
            .filter_map(|(key, _)| before.get(key).map(|max| LimitValue::new(*key, *max)))
            .collect();
        let now = applied
            .iter()
            .map(|(key, max)| LimitValue::new(*key, *max))
            .collect();
        Some(self.clone().with_limits(was, now))
    }
}

/// The actor of callers that do not name themselves.
pub const ANONYMOUS: &str = "anonymous";

/// The idempotency key of a committed change: stable across retries and
/// restarts.
pub fn idempotency_key(portal_id: i64, seq: i64) -> String {
    format!("{portal_id}:{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_by_name_or_contract_value_name() {
        for event in AdminEvent::ALL {
            assert_eq!(AdminEvent::parse(event.name()), Some(event));
            let wire = format!("ADMIN_EVENT_{}", event.name());
            assert_eq!(AdminEvent::parse(&wire), Some(event));
            assert_eq!(AdminEvent::parse(&wire.to_lowercase()), Some(event));
        }
        assert_eq!(AdminEvent::parse("ADMIN_EVENT_"), None);
        assert_eq!(AdminEvent::parse("LIMITS"), None);
    }
}
