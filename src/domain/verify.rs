//! What a consistent store is: the invariants `association-service verify`
//! checks, how a finding reads, and the admin log's replay against the
//! limits and labels it describes. The stores run the table checks.
use std::collections::BTreeMap;

use super::admin::{AdminChange, AdminEvent};
use super::types::TypeKey;

/// Violations each check keeps to show (it counts them all).
pub const MAX_VIOLATION_SAMPLES: usize = 5;

/// One invariant of the stored data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    Inverses,
    KnownTypes,
    Counters,
    Primaries,
    FeedNumbering,
    FeedMatchesRows,
    OutboxNumbering,
    OutboxMatchesConfig,
}

impl Check {
    pub const ALL: [Check; 8] = [
        Check::Inverses,
        Check::KnownTypes,
        Check::Counters,
        Check::Primaries,
        Check::FeedNumbering,
        Check::FeedMatchesRows,
        Check::OutboxNumbering,
        Check::OutboxMatchesConfig,
    ];

    /// The check's short name, as the report and the stores' queries use it.
    pub fn name(self) -> &'static str {
        match self {
            Check::Inverses => "inverses",
            Check::KnownTypes => "known-types",
            Check::Counters => "counters",
            Check::Primaries => "primaries",
            Check::FeedNumbering => "feed-numbering",
            Check::FeedMatchesRows => "feed-matches-rows",
            Check::OutboxNumbering => "outbox-numbering",
            Check::OutboxMatchesConfig => "outbox-matches-config",
        }
    }

    pub fn parse(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The rule, in words.
    pub fn rule(self) -> &'static str {
        match self {
            Check::Inverses => "every association row has its inverse row",
            Check::KnownTypes => {
                "every association row and admin limit is of a type that exists (none of a deleted label)"
            }
            Check::Counters => "every record's counter equals the associations it holds",
            Check::Primaries => "no record holds more than one primary association per object type",
            Check::FeedNumbering => {
                "the change feed is numbered without gaps from its pruned mark to its head"
            }
            Check::FeedMatchesRows => {
                "each row's last change in the feed agrees with whether the row exists"
            }
            Check::OutboxNumbering => {
                "the admin change log is numbered without gaps, and no plugin or audit position is past its head"
            }
            Check::OutboxMatchesConfig => {
                "the admin change log's last word on each limit and label is what is stored"
            }
        }
    }

    /// What `CheckReport::checked` counts.
    pub fn subject(self) -> &'static str {
        match self {
            Check::Inverses | Check::KnownTypes | Check::Primaries | Check::FeedMatchesRows => {
                "association rows"
            }
            Check::Counters => "counters",
            Check::FeedNumbering => "feed changes",
            Check::OutboxNumbering | Check::OutboxMatchesConfig => "admin changes",
        }
    }
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub check: Check,
    /// How many rows of the check's subject were examined.
    pub checked: u64,
    pub violations: u64,
    /// The first violations found, in words.
    pub samples: Vec<String>,
}

impl CheckReport {
    pub fn new(check: Check, checked: u64) -> CheckReport {
        CheckReport {
            check,
            checked,
            violations: 0,
            samples: Vec::new(),
        }
    }

    /// Counts one violation, keeping its description among the first few.
    pub fn violation(&mut self, what: impl Into<String>) {
        self.violations += 1;
        if self.samples.len() < MAX_VIOLATION_SAMPLES {
            self.samples.push(what.into());
        }
    }

    pub fn passed(&self) -> bool {
        self.violations == 0
    }

    /// The report's lines: a verdict, then the samples indented.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = if self.passed() {
            vec![format!(
                "ok    {:<22} {} {} checked: {}",
                self.check.name(),
                self.checked,
                self.check.subject(),
                self.check.rule()
            )]
        } else {
            vec![format!(
                "FAIL  {:<22} {} violation{} in {} {}: {}",
                self.check.name(),
                self.violations,
                if self.violations == 1 { "" } else { "s" },
                self.checked,
                self.check.subject(),
                self.check.rule()
            )]
        };
        lines.extend(self.samples.iter().map(|s| format!("        {s}")));
        if self.violations > self.samples.len() as u64 {
            lines.push(format!(
                "        … and {} more",
                self.violations - self.samples.len() as u64
            ));
        }
        lines
    }
}

/// A stored admin limit or label, as the admin log describes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigItem {
    /// An admin limit's maximum.
    Limit(u32),
    /// A label definition's text (`None` for an unlabeled type).
    Label(Option<String>),
}

/// Where a config item is kept: (portal, type, whether it is a limit).
pub type ConfigKey = (i64, TypeKey, bool);

/// The admin log's last word on every limit and label it mentions, replayed
/// in log order: `Some` what a change left, `None` when a change removed it.
pub fn replay_admin_log<'a>(
    log: impl IntoIterator<Item = &'a AdminChange>,
) -> BTreeMap<ConfigKey, Option<ConfigItem>> {
    let mut last = BTreeMap::new();
    for change in log {
        let portal = change.portal_id;
        for limit in &change.before.limits {
            last.insert((portal, key(limit.category, limit.type_id), true), None);
        }
        for label in &change.before.labels {
            let label_key = key(label.category, label.type_id);
            last.insert((portal, label_key, false), None);
            // A deleted label's limits go with it.
            if change.event == AdminEvent::LabelDeleted {
                last.insert((portal, label_key, true), None);
            }
        }
        for limit in &change.after.limits {
            last.insert(
                (portal, key(limit.category, limit.type_id), true),
                Some(ConfigItem::Limit(limit.max_to_object_ids)),
            );
        }
        for label in &change.after.labels {
            last.insert(
                (portal, key(label.category, label.type_id), false),
                Some(ConfigItem::Label(label.label.clone())),
            );
        }
    }
    last
}

fn key(category: super::Category, type_id: i32) -> TypeKey {
    TypeKey { category, type_id }
}

/// Compares the replayed log with what is stored; items the log does not
/// mention (older than its pruned part, or never changed by an admin) are
/// not judged.
pub fn check_admin_log(
    log: &[AdminChange],
    stored: &BTreeMap<ConfigKey, ConfigItem>,
) -> CheckReport {
    let mut report = CheckReport::new(Check::OutboxMatchesConfig, log.len() as u64);
    for (config_key, expected) in replay_admin_log(log) {
        let (portal, key, is_limit) = config_key;
        let what = if is_limit { "limit" } else { "label" };
        let name = format!(
            "portal {portal}: the {what} of type {}/{}",
            key.category.code(),
            key.type_id
        );
        match (expected, stored.get(&config_key)) {
            (Some(left), Some(found)) if &left == found => {}
            (Some(left), Some(found)) => report.violation(format!(
                "{name} is {}, but the admin log's last change left {}",
                describe(found),
                describe(&left)
            )),
            (Some(left), None) => report.violation(format!(
                "{name} is not stored, but the admin log's last change left {}",
                describe(&left)
            )),
            (None, Some(found)) => report.violation(format!(
                "{name} is stored ({}), but the admin log's last change removed it",
                describe(found)
            )),
            (None, None) => {}
        }
    }
    report
}

fn describe(item: &ConfigItem) -> String {
    match item {
        ConfigItem::Limit(max) => format!("maxToObjectIds {max}"),
        ConfigItem::Label(Some(text)) => format!("{text:?}"),
        ConfigItem::Label(None) => "unlabeled".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::admin::{AdminState, LimitValue};
    use crate::domain::ObjectType;

    fn limits_change(before: &[(i32, u32)], after: &[(i32, u32)]) -> AdminChange {
        let values = |v: &[(i32, u32)]| {
            v.iter()
                .map(|&(t, max)| LimitValue::new(TypeKey::hubspot(t), max))
                .collect()
        };
        let mut change = AdminChange::new(
            AdminEvent::LimitsUpdated,
            7,
            "admin",
            ObjectType::CONTACT,
            ObjectType::COMPANY,
            0,
        );
        change.before = AdminState {
            limits: values(before),
            ..AdminState::default()
        };
        change.after = AdminState {
            limits: values(after),
            ..AdminState::default()
        };
        change
    }

    #[test]
    fn the_last_change_of_each_limit_is_what_must_be_stored() {
        let log = [
            limits_change(&[], &[(279, 5), (1, 1)]),
            limits_change(&[(279, 5)], &[(279, 3)]),
            limits_change(&[(1, 1)], &[]),
        ];
        let stored_at =
            |max: u32| BTreeMap::from([((7, TypeKey::hubspot(279), true), ConfigItem::Limit(max))]);
        assert!(check_admin_log(&log, &stored_at(3)).passed());
        let wrong = check_admin_log(&log, &stored_at(5));
        assert_eq!(wrong.violations, 1);
        assert_eq!(
            wrong.samples,
            ["portal 7: the limit of type 1/279 is maxToObjectIds 5, but the admin log's last change left maxToObjectIds 3"]
        );
        let mut purged_but_kept = stored_at(3);
        purged_but_kept.insert((7, TypeKey::hubspot(1), true), ConfigItem::Limit(1));
        assert_eq!(check_admin_log(&log, &purged_but_kept).violations, 1);
        assert_eq!(check_admin_log(&log, &BTreeMap::new()).violations, 1);
        // Not mentioned by the log: not judged.
        let mut other = stored_at(3);
        other.insert((8, TypeKey::hubspot(279), true), ConfigItem::Limit(9));
        assert!(check_admin_log(&log, &other).passed());
    }

    #[test]
    fn a_report_counts_every_violation_and_keeps_a_few() {
        let mut report = CheckReport::new(Check::Counters, 100);
        for n in 0..8 {
            report.violation(format!("v{n}"));
        }
        assert_eq!(report.violations, 8);
        assert_eq!(report.samples.len(), MAX_VIOLATION_SAMPLES);
        let lines = report.lines();
        assert!(lines[0].starts_with("FAIL  counters"), "{lines:?}");
        assert_eq!(lines.last().unwrap(), "        … and 3 more");
    }
}
