//! Limit rules: the platform ceiling, admin limits (1..=ceiling), and label
//! limits never above the object (unlabeled) limit of the same direction.
use std::collections::HashMap;

use super::error::{DomainError, LimitSource};
use super::object_type::ObjectType;
use super::types::{PairCatalog, TypeKey, TypeRole};

/// The limit that applies to a type and where it comes from.
pub fn effective_limit(user_limit: Option<u32>, ceiling: u32) -> (u32, LimitSource) {
    match user_limit {
        Some(user) if user <= ceiling => (user, LimitSource::User),
        _ => (ceiling, LimitSource::Platform),
    }
}

/// The share of a limit from which a record counts as near it, unless asked.
pub const DEFAULT_NEAR_FRACTION: f64 = 0.8;

/// Most sample records a usage report or a preview shows per group.
pub const MAX_USAGE_SAMPLES: u32 = 100;

/// Where a record starts to be near `limit`: at `fraction` of it, rounded
/// up, at least 1 and at most the limit. The fraction must be in (0, 1].
pub fn near_limit_from(limit: u32, fraction: f64) -> Result<i64, DomainError> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(DomainError::InvalidArgument(format!(
            "the near-limit threshold must be a fraction above 0 and at most 1, not {fraction}"
        )));
    }
    let from = (f64::from(limit) * fraction).ceil() as i64;
    Ok(from.clamp(1, i64::from(limit.max(1))))
}

/// Whether a limit change creates a new limit or changes an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitMode {
    Create,
    Update,
}

/// One requested limit: `maxToObjectIds` for a type of the pair's direction.
#[derive(Clone, Copy, Debug)]
pub struct LimitChange {
    pub key: TypeKey,
    pub max_to_object_ids: i64,
}

/// Validates each change in order against the pair's limits in `current`
/// (type -> limit), applying those that pass. Returns one result per change.
pub fn apply_limit_changes(
    catalog: &PairCatalog,
    from: ObjectType,
    to: ObjectType,
    current: &mut HashMap<TypeKey, u32>,
    changes: &[LimitChange],
    mode: LimitMode,
    ceiling: u32,
) -> Vec<Result<u32, DomainError>> {
    changes
        .iter()
        .map(|change| {
            let value = validate_change(catalog, from, to, current, change, mode, ceiling)?;
            current.insert(change.key, value);
            Ok(value)
        })
        .collect()
}

fn validate_change(
    catalog: &PairCatalog,
    from: ObjectType,
    to: ObjectType,
    current: &HashMap<TypeKey, u32>,
    change: &LimitChange,
    mode: LimitMode,
    ceiling: u32,
) -> Result<u32, DomainError> {
    let def = catalog.require(from, to, change.key)?;
    match (mode, current.contains_key(&change.key)) {
        (LimitMode::Create, true) => return Err(DomainError::LimitAlreadySet(change.key)),
        (LimitMode::Update, false) => return Err(DomainError::LimitNotSet(change.key)),
        _ => {}
    }
    let max = change.max_to_object_ids;
    if max < 1 || max > i64::from(ceiling) {
        return Err(DomainError::InvalidLimit(format!(
            "maxToObjectIds {max} is out of range: the valid range is 1-{ceiling}"
        )));
    }
    let max = max as u32;
    let unlabeled = catalog.unlabeled(from, to).key;
    if def.role == TypeRole::Unlabeled {
        let highest_label = catalog
            .directed(from, to)
            .filter(|d| d.key != unlabeled)
            .filter_map(|d| current.get(&d.key).copied())
            .max();
        if let Some(label_limit) = highest_label.filter(|l| max < *l) {
            return Err(DomainError::InvalidLimit(format!(
                "maxToObjectIds {max} is below an existing label limit of {label_limit}: \
                 the object limit must be at least {label_limit} (valid range {label_limit}-{ceiling})"
            )));
        }
    } else if let Some(object_limit) = current.get(&unlabeled).copied().filter(|l| max > *l) {
        return Err(DomainError::InvalidLimit(format!(
            "maxToObjectIds {max} is above the object limit of {object_limit}: \
             label limits must not exceed it (valid range 1-{object_limit})"
        )));
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::labels::new_label_definitions;

    #[test]
    fn near_a_limit_starts_at_its_share_rounded_up_within_one_and_the_limit() {
        assert_eq!(near_limit_from(10, 0.8).unwrap(), 8);
        assert_eq!(near_limit_from(2, 0.8).unwrap(), 2);
        assert_eq!(near_limit_from(3, 0.1).unwrap(), 1);
        assert_eq!(near_limit_from(10_000, 1.0).unwrap(), 10_000);
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            assert!(near_limit_from(10, bad).is_err(), "{bad}");
        }
    }

    fn catalog() -> PairCatalog {
        let labels = new_label_definitions(
            ObjectType::CONTACT,
            ObjectType::COMPANY,
            "Billing",
            "billing",
            None,
            1000,
        )
        .unwrap();
        PairCatalog::new(ObjectType::CONTACT, ObjectType::COMPANY, labels).unwrap()
    }

    fn change(type_id: i32, max: i64) -> LimitChange {
        let category = if type_id >= 1000 {
            crate::domain::types::Category::UserDefined
        } else {
            crate::domain::types::Category::HubspotDefined
        };
        LimitChange {
            key: TypeKey { category, type_id },
            max_to_object_ids: max,
        }
    }

    #[test]
    fn limits_must_be_between_one_and_the_ceiling() {
        let (c, mut current) = (catalog(), HashMap::new());
        let results = apply_limit_changes(
            &c,
            ObjectType::CONTACT,
            ObjectType::COMPANY,
            &mut current,
            &[
                change(279, 0),
                change(279, 10_001),
                change(279, -3),
                change(279, 10_000),
            ],
            LimitMode::Create,
            10_000,
        );
        assert!(matches!(results[0], Err(DomainError::InvalidLimit(_))));
        assert!(matches!(results[1], Err(DomainError::InvalidLimit(_))));
        assert!(matches!(results[2], Err(DomainError::InvalidLimit(_))));
        assert_eq!(results[3], Ok(10_000));
    }

    #[test]
    fn label_limits_stay_within_the_object_limit() {
        let (c, mut current) = (catalog(), HashMap::new());
        let (from, to) = (ObjectType::CONTACT, ObjectType::COMPANY);
        let r = apply_limit_changes(
            &c,
            from,
            to,
            &mut current,
            &[change(279, 10), change(1000, 11)],
            LimitMode::Create,
            100,
        );
        assert_eq!(r[0], Ok(10));
        assert!(matches!(&r[1], Err(DomainError::InvalidLimit(m)) if m.contains("1-10")));
        let r = apply_limit_changes(
            &c,
            from,
            to,
            &mut current,
            &[change(1000, 10)],
            LimitMode::Create,
            100,
        );
        assert_eq!(r[0], Ok(10));
        let r = apply_limit_changes(
            &c,
            from,
            to,
            &mut current,
            &[change(279, 9)],
            LimitMode::Update,
            100,
        );
        assert!(matches!(&r[0], Err(DomainError::InvalidLimit(m)) if m.contains("at least 10")));
        assert_eq!(current[&TypeKey::hubspot(279)], 10);
    }

    #[test]
    fn create_and_update_are_distinct_and_types_must_exist() {
        let (c, mut current) = (catalog(), HashMap::new());
        let (from, to) = (ObjectType::CONTACT, ObjectType::COMPANY);
        let r = apply_limit_changes(
            &c,
            from,
            to,
            &mut current,
            &[change(279, 5)],
            LimitMode::Update,
            100,
        );
        assert!(matches!(r[0], Err(DomainError::LimitNotSet(_))));
        let r = apply_limit_changes(
            &c,
            from,
            to,
            &mut current,
            &[change(279, 5), change(279, 6)],
            LimitMode::Create,
            100,
        );
        assert_eq!(r[0], Ok(5));
        assert!(matches!(r[1], Err(DomainError::LimitAlreadySet(_))));
        let r = apply_limit_changes(
            &c,
            from,
            to,
            &mut current,
            &[change(280, 5)],
            LimitMode::Create,
            100,
        );
        assert!(
            matches!(r[0], Err(DomainError::UnknownAssociationType { .. })),
            "280 is company->contact"
        );
    }
}
