//! The merge planner: merging record B into record A (same object type) moves
//! every association of B to A, de-duplicated, and fails whole when a record
//! that gains an association would end above its limit. Both stores run it
//! inside one transaction over a locked snapshot.
use std::collections::{BTreeSet, HashMap};

use super::builtin::builtin_definitions;
use super::error::{check_id, DomainError};
use super::feed::ChangeKind;
use super::limits::effective_limit;
use super::object_type::ObjectType;
use super::plan::{CountKey, DirectedRow};
use super::types::{TypeDef, TypeKey, TypeRole};

/// A merge as a caller asks for it: `merged_id` into `primary_id`, or, with
/// `into`, both into that record (HubSpot's new id for merged contacts and
/// companies). Ids may name records merged away before; the store resolves
/// them under its merge lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeInto {
    pub portal_id: i64,
    pub object_type: ObjectType,
    pub primary_id: i64,
    pub merged_id: i64,
    pub into: Option<i64>,
}

impl MergeInto {
    /// Checks the ids: all positive, the two records different.
    pub fn new(
        portal_id: i64,
        object_type: ObjectType,
        primary_id: i64,
        merged_id: i64,
        into: Option<i64>,
    ) -> Result<MergeInto, DomainError> {
        MergeRequest::new(portal_id, object_type, primary_id, merged_id)?;
        if let Some(into) = into {
            check_id("newObjectId", into)?;
        }
        Ok(MergeInto {
            portal_id,
            object_type,
            primary_id,
            merged_id,
            into,
        })
    }

    /// The ids to resolve: (primary, merged, survivor).
    pub fn ids(&self) -> [i64; 3] {
        [
            self.primary_id,
            self.merged_id,
            self.into.unwrap_or(self.primary_id),
        ]
    }

    /// The merges it takes once its ids are resolved (`resolved` as
    /// `ids()`): each of the two records that is not the survivor already
    /// merged into it, the primary first (none for a retry, or a chain
    /// that ends in the survivor).
    pub fn merges(&self, resolved: [i64; 3]) -> Result<Vec<MergeRequest>, DomainError> {
        let [primary, merged, survivor] = resolved;
        let mut moving = vec![primary, merged];
        moving.dedup();
        moving.retain(|id| *id != survivor);
        moving
            .into_iter()
            .map(|id| MergeRequest::new(self.portal_id, self.object_type, survivor, id))
            .collect()
    }
}

/// A validated merge of `merged_id` into `primary_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeRequest {
    pub portal_id: i64,
    pub object_type: ObjectType,
    pub primary_id: i64,
    pub merged_id: i64,
}

impl MergeRequest {
    /// Checks the ids: both positive and different.
    pub fn new(
        portal_id: i64,
        object_type: ObjectType,
        primary_id: i64,
        merged_id: i64,
    ) -> Result<MergeRequest, DomainError> {
        check_id("primaryObjectId", primary_id)?;
        check_id("objectIdToMerge", merged_id)?;
        if primary_id == merged_id {
            return Err(DomainError::InvalidArgument(format!(
                "Cannot merge object {merged_id} into itself"
            )));
        }
        Ok(MergeRequest {
            portal_id,
            object_type,
            primary_id,
            merged_id,
        })
    }

    fn is_merged(&self, object_type: ObjectType, id: i64) -> bool {
        object_type == self.object_type && id == self.merged_id
    }

    fn is_either(&self, object_type: ObjectType, id: i64) -> bool {
        object_type == self.object_type && (id == self.merged_id || id == self.primary_id)
    }

    /// Where a row of the merged record goes: the same row with the merged
    /// record replaced by the primary, or `None` for rows between the two
    /// records (they would become self-associations and are dropped).
    fn moved(&self, row: &DirectedRow) -> Option<DirectedRow> {
        if self.is_merged(row.from_type, row.from_id) {
            (!self.is_either(row.to_type, row.to_id)).then_some(DirectedRow {
                from_id: self.primary_id,
                ..*row
            })
        } else {
            (!self.is_either(row.from_type, row.from_id)).then_some(DirectedRow {
                to_id: self.primary_id,
                ..*row
            })
        }
    }

    /// The change-feed row that marks the merge itself: from the merged
    /// record to the primary; it names no association type.
    pub fn feed_marker(&self) -> DirectedRow {
        DirectedRow {
            from_type: self.object_type,
            from_id: self.merged_id,
            to_type: self.object_type,
            to_id: self.primary_id,
            key: TypeKey::hubspot(0),
        }
    }

    /// The primary-company type of records of this object type, if they have one.
    pub fn primary_company_type(&self) -> Option<TypeDef> {
        builtin_definitions(self.object_type, ObjectType::COMPANY)
            .into_iter()
            .find(|d| d.role == TypeRole::Primary)
    }
}

/// The records the merged record is associated with (other than the two
/// records of the merge), from its outgoing rows.
pub fn counterparts(req: &MergeRequest, merged_rows: &[DirectedRow]) -> Vec<(ObjectType, i64)> {
    merged_rows
        .iter()
        .filter(|r| req.is_merged(r.from_type, r.from_id))
        .map(|r| (r.to_type, r.to_id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Every counter a merge of `merged_rows` may change, sorted (the global
/// lock order writers share).
pub fn count_keys(req: &MergeRequest, merged_rows: &[DirectedRow]) -> Vec<CountKey> {
    merged_rows
        .iter()
        .flat_map(|r| [Some(r.count_key()), req.moved(r).map(|m| m.count_key())])
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The locked state a merge is planned against.
#[derive(Clone, Debug, Default)]
pub struct MergeSnapshot {
    /// Every row of the merged record, both directions.
    pub merged_rows: Vec<DirectedRow>,
    /// The primary's rows with the merged record's counterparts, both directions.
    pub primary_rows: Vec<DirectedRow>,
    /// The primary record's primary company, if it has one.
    pub primary_company: Option<i64>,
    /// The counters of `count_keys`, locked.
    pub counts: HashMap<CountKey, i64>,
    /// Admin limits of the types involved.
    pub user_limits: HashMap<TypeKey, u32>,
}

/// What a merge writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergePlan {
    pub delete_rows: Vec<DirectedRow>,
    pub insert_rows: Vec<DirectedRow>,
    /// Non-zero counter changes, sorted by key.
    pub count_deltas: Vec<(CountKey, i64)>,
}

impl MergePlan {
    /// The feed entries of the merge: its marker, then each removed and
    /// each created row.
    pub fn changes(&self, req: &MergeRequest) -> Vec<(ChangeKind, DirectedRow)> {
        std::iter::once((ChangeKind::Merged, req.feed_marker()))
            .chain(self.delete_rows.iter().map(|r| (ChangeKind::Archived, *r)))
            .chain(self.insert_rows.iter().map(|r| (ChangeKind::Created, *r)))
            .collect()
    }
}

/// Plans a merge: every row of the merged record is removed, every row it
/// held with a third record is re-created on the primary unless the primary
/// already holds it. A primary record keeps its own primary company (the
/// merged record's becomes a plain association). Fails whole when a record
/// that gains a row would end above the limit of that row's type.
pub fn plan_merge(
    req: &MergeRequest,
    snapshot: &MergeSnapshot,
    ceiling: u32,
) -> Result<MergePlan, DomainError> {
    let existing: BTreeSet<DirectedRow> = snapshot.primary_rows.iter().copied().collect();
    let delete_rows: BTreeSet<DirectedRow> = snapshot.merged_rows.iter().copied().collect();
    let primary_type = req.primary_company_type();
    let keeps_own_primary = |row: &DirectedRow| match (&primary_type, snapshot.primary_company) {
        (Some(def), Some(company)) => {
            let outgoing = row.key == def.key && row.from_id == req.primary_id;
            let incoming = row.key == def.inverse && row.to_id == req.primary_id;
            let other = if outgoing { row.to_id } else { row.from_id };
            (outgoing || incoming) && other != company
        }
        _ => false,
    };
    let insert_rows: BTreeSet<DirectedRow> = delete_rows
        .iter()
        .filter_map(|r| req.moved(r))
        .filter(|r| !existing.contains(r) && !keeps_own_primary(r))
        .collect();
    let mut deltas: HashMap<CountKey, i64> = HashMap::new();
    for row in &delete_rows {
        *deltas.entry(row.count_key()).or_default() -= 1;
    }
    for row in &insert_rows {
        *deltas.entry(row.count_key()).or_default() += 1;
    }
    for row in &insert_rows {
        let key = row.count_key();
        let after = snapshot.counts.get(&key).copied().unwrap_or(0) + deltas[&key];
        let user = snapshot.user_limits.get(&key.key).copied();
        let (limit, _) = effective_limit(user, ceiling);
        if after > i64::from(limit) {
            return Err(DomainError::MergeLimitExceeded {
                portal_id: req.portal_id,
                object_type: req.object_type,
                primary_id: req.primary_id,
                merged_id: req.merged_id,
            });
        }
    }
    let mut count_deltas: Vec<(CountKey, i64)> =
        deltas.into_iter().filter(|(_, d)| *d != 0).collect();
    count_deltas.sort();
    Ok(MergePlan {
        delete_rows: delete_rows.into_iter().collect(),
        insert_rows: insert_rows.into_iter().collect(),
        count_deltas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ObjectType = ObjectType::CONTACT;
    const CO: ObjectType = ObjectType::COMPANY;

    fn row(ft: ObjectType, fi: i64, tt: ObjectType, ti: i64, type_id: i32) -> DirectedRow {
        DirectedRow {
            from_type: ft,
            from_id: fi,
            to_type: tt,
            to_id: ti,
            key: TypeKey::hubspot(type_id),
        }
    }

    /// Both rows of an unlabeled contact-company association.
    fn pair(contact: i64, company: i64) -> [DirectedRow; 2] {
        [
            row(C, contact, CO, company, 279),
            row(CO, company, C, contact, 280),
        ]
    }

    fn counts(rows: &[DirectedRow]) -> HashMap<CountKey, i64> {
        let mut counts = HashMap::new();
        for r in rows {
            *counts.entry(r.count_key()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn rows_move_to_the_primary_without_duplicates_or_self_associations() {
        let req = MergeRequest::new(1, C, 10, 20).unwrap();
        let mut merged: Vec<DirectedRow> = [pair(20, 100), pair(20, 101)].concat();
        // Contact 20 -> contact 10 (a same-type association) is dropped.
        merged.push(row(C, 20, C, 10, 449));
        merged.push(row(C, 10, C, 20, 449));
        let primary = pair(10, 100).to_vec();
        let mut all = merged.clone();
        all.extend(&primary);
        let snapshot = MergeSnapshot {
            merged_rows: merged,
            primary_rows: primary,
            counts: counts(&all),
            ..MergeSnapshot::default()
        };
        let plan = plan_merge(&req, &snapshot, 10_000).unwrap();
        assert_eq!(plan.insert_rows, {
            let mut rows = pair(10, 101).to_vec();
            rows.sort();
            rows
        });
        assert_eq!(plan.delete_rows.len(), 6);
        let delta = |t, id, type_id| {
            plan.count_deltas
                .iter()
                .find(|(k, _)| (k.object_type, k.object_id, k.key.type_id) == (t, id, type_id))
                .map(|(_, d)| *d)
        };
        assert_eq!(delta(C, 10, 279), Some(1));
        assert_eq!(delta(C, 10, 449), Some(-1));
        assert_eq!(delta(C, 20, 279), Some(-2));
        assert_eq!(
            delta(CO, 100, 280),
            Some(-1),
            "company 100 lost its duplicate"
        );
        assert_eq!(
            delta(CO, 101, 280),
            None,
            "company 101 moved, count unchanged"
        );
    }

    #[test]
    fn a_record_that_gains_a_row_above_its_limit_fails_the_merge() {
        let req = MergeRequest::new(7, CO, 1, 2).unwrap();
        // Contact 5 holds companies 2 and 3, above a limit of 1 lowered later.
        let merged = pair(5, 2).to_vec();
        let all = [pair(5, 2), pair(5, 3)].concat();
        let snapshot = MergeSnapshot {
            merged_rows: merged.clone(),
            counts: counts(&all),
            user_limits: HashMap::from([(TypeKey::hubspot(279), 1)]),
            ..MergeSnapshot::default()
        };
        let err = plan_merge(&req, &snapshot, 10_000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Association configuration limits are exceeded in portal 7 when merging 2 into 1 of object type 0-2"
        );
        // When contact 5 already holds company 1 it gains nothing: no check.
        let snapshot = MergeSnapshot {
            primary_rows: pair(5, 1).to_vec(),
            counts: counts(&[all, pair(5, 1).to_vec()].concat()),
            ..snapshot
        };
        let plan = plan_merge(&req, &snapshot, 10_000).unwrap();
        assert!(plan.insert_rows.is_empty());
    }

    #[test]
    fn the_primary_keeps_its_own_primary_company() {
        let req = MergeRequest::new(1, C, 10, 20).unwrap();
        let merged = [
            pair(20, 200).to_vec(),
            vec![row(C, 20, CO, 200, 1), row(CO, 200, C, 20, 2)],
        ]
        .concat();
        let snapshot = MergeSnapshot {
            merged_rows: merged,
            primary_company: Some(100),
            ..MergeSnapshot::default()
        };
        let plan = plan_merge(&req, &snapshot, 10_000).unwrap();
        let mut expected = pair(10, 200).to_vec();
        expected.sort();
        assert_eq!(plan.insert_rows, expected, "company 200 stays, unlabeled");
        let snapshot = MergeSnapshot {
            primary_company: None,
            ..snapshot
        };
        let plan = plan_merge(&req, &snapshot, 10_000).unwrap();
        assert_eq!(
            plan.insert_rows.len(),
            4,
            "without a primary, 200 becomes it"
        );
    }

    #[test]
    fn a_record_cannot_merge_into_itself() {
        assert!(MergeRequest::new(1, C, 3, 3).is_err());
        assert!(MergeRequest::new(1, C, 0, 3).is_err());
    }
}
