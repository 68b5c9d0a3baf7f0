//! The write planner: given a locked snapshot of the affected records, it
//! decides item by item which association rows to add and remove and how the
//! per-record counters move, enforcing limits and the primary-company rules.
//! Both stores run the same planner inside their write transactions.
use std::collections::{BTreeSet, HashMap, HashSet};

use super::error::{DomainError, LimitViolation};
use super::limits::effective_limit;
use super::object_type::ObjectType;
use super::types::{PairCatalog, TypeKey};

/// Counts the associations of one type held by one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountKey {
    pub object_type: ObjectType,
    pub object_id: i64,
    pub key: TypeKey,
}

impl CountKey {
    /// The one order counters are locked in, on every path: the type's text
    /// bytewise (`COLLATE "C"`), id, category, type id. The write functions'
    /// SQL sorts alike (tests/postgres_plans.rs holds the two equal).
    pub fn lock_order(&self) -> (String, i64, i16, i32) {
        let (t, id, key) = (self.object_type.to_string(), self.object_id, self.key);
        (t, id, key.category.code(), key.type_id)
    }
}

/// One stored row: a directed association of one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirectedRow {
    pub from_type: ObjectType,
    pub from_id: i64,
    pub to_type: ObjectType,
    pub to_id: i64,
    pub key: TypeKey,
}

impl DirectedRow {
    /// The counter this row is counted in.
    pub fn count_key(&self) -> CountKey {
        CountKey {
            object_type: self.from_type,
            object_id: self.from_id,
            key: self.key,
        }
    }
}

/// An association in the request's direction (`from` type -> `to` type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairEdge {
    pub from_id: i64,
    pub to_id: i64,
    pub key: TypeKey,
}

/// A validated create item: types are in the request's direction.
#[derive(Clone, Debug)]
pub struct CreateItem {
    pub from_id: i64,
    pub to_id: i64,
    pub types: Vec<TypeKey>,
}

/// What a write needs to know besides the snapshot.
pub struct WriteContext<'a> {
    pub portal_id: i64,
    pub from: ObjectType,
    pub to: ObjectType,
    pub catalog: &'a PairCatalog,
    pub ceiling: u32,
}

/// How the pair relates to a primary company, if it does.
#[derive(Clone, Copy)]
struct PrimarySide {
    record_is_from: bool,
    /// The type, in the request's direction, that says "this is the record's primary company".
    primary_fwd: TypeKey,
    record_type: ObjectType,
    record_key: TypeKey,
}

impl PrimarySide {
    fn of(ctx: &WriteContext) -> Option<PrimarySide> {
        if let Some(p) = ctx.catalog.primary(ctx.from, ctx.to) {
            return Some(PrimarySide {
                record_is_from: true,
                primary_fwd: p.key,
                record_type: ctx.from,
                record_key: p.key,
            });
        }
        let p = ctx.catalog.primary(ctx.to, ctx.from)?;
        Some(PrimarySide {
            record_is_from: false,
            primary_fwd: p.inverse,
            record_type: ctx.to,
            record_key: p.key,
        })
    }

    /// (record id, company id) of an item.
    fn split(&self, from_id: i64, to_id: i64) -> (i64, i64) {
        if self.record_is_from {
            (from_id, to_id)
        } else {
            (to_id, from_id)
        }
    }

    fn edge(&self, record: i64, company: i64) -> PairEdge {
        let (from_id, to_id) = if self.record_is_from {
            (record, company)
        } else {
            (company, record)
        };
        PairEdge {
            from_id,
            to_id,
            key: self.primary_fwd,
        }
    }
}

/// Whose primary company the store must look up: records of `record_type`
/// whose `record_key` rows point at their primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryLookup {
    pub record_type: ObjectType,
    pub company_type: ObjectType,
    pub record_key: TypeKey,
    pub record_ids: Vec<i64>,
}

/// What the store must lock and load before planning.
#[derive(Clone, Debug, Default)]
pub struct Requirements {
    /// Counters to lock, sorted (a global order, so writers do not deadlock).
    pub count_keys: Vec<CountKey>,
    /// (from id, to id) pairs whose existing associations are needed.
    pub pairs: Vec<(i64, i64)>,
    pub primaries: Option<PrimaryLookup>,
}

/// The locked state of everything a write touches.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub counts: HashMap<CountKey, i64>,
    /// Existing associations among the requested pairs, request direction.
    pub edges: Vec<PairEdge>,
    /// Record id -> its primary company id.
    pub primaries: HashMap<i64, i64>,
    /// Admin limits of the pair's types (both directions).
    pub user_limits: HashMap<TypeKey, u32>,
}

/// The result of one item: what its pair holds once the request is applied,
/// or why the item failed.
pub type ItemOutcome = Result<Held, DomainError>;

/// What a created item's pair holds after its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Every type the pair holds from -> to.
    pub types: Vec<TypeKey>,
    /// Whether the item wrote anything (false: all it asked for was held).
    pub added: bool,
}

/// What the store must write, and each item's outcome.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub insert_rows: Vec<DirectedRow>,
    pub delete_rows: Vec<DirectedRow>,
    /// Non-zero counter changes, sorted by key.
    pub count_deltas: Vec<(CountKey, i64)>,
    pub outcomes: Vec<ItemOutcome>,
}

fn wanted_types(ctx: &WriteContext, item: &CreateItem) -> BTreeSet<TypeKey> {
    let mut wanted: BTreeSet<TypeKey> = item.types.iter().copied().collect();
    wanted.insert(ctx.catalog.unlabeled(ctx.from, ctx.to).key);
    wanted
}

fn inverse(ctx: &WriteContext, key: TypeKey) -> TypeKey {
    ctx.catalog
        .get(ctx.from, ctx.to, key)
        .map(|d| d.inverse)
        .expect("types are validated before planning")
}

fn edge_count_keys(ctx: &WriteContext, edge: &PairEdge) -> [CountKey; 2] {
    [
        CountKey {
            object_type: ctx.from,
            object_id: edge.from_id,
            key: edge.key,
        },
        CountKey {
            object_type: ctx.to,
            object_id: edge.to_id,
            key: inverse(ctx, edge.key),
        },
    ]
}

/// The two stored rows of an association.
pub fn edge_rows(ctx: &WriteContext, edge: &PairEdge) -> [DirectedRow; 2] {
    [
        DirectedRow {
            from_type: ctx.from,
            from_id: edge.from_id,
            to_type: ctx.to,
            to_id: edge.to_id,
            key: edge.key,
        },
        DirectedRow {
            from_type: ctx.to,
            from_id: edge.to_id,
            to_type: ctx.from,
            to_id: edge.from_id,
            key: inverse(ctx, edge.key),
        },
    ]
}

/// On a same-object pair, `b -> a` with type `t` is the association
/// `a -> b` with `inverse(t)`. Items are planned in one orientation (smaller
/// id first), so a pair named both ways is one association and counts once.
/// Returns the item so oriented and whether it was turned around.
fn oriented(ctx: &WriteContext, item: &CreateItem) -> (CreateItem, bool) {
    if ctx.from == ctx.to && item.from_id > item.to_id {
        let turned = CreateItem {
            from_id: item.to_id,
            to_id: item.from_id,
            types: item.types.iter().map(|k| inverse(ctx, *k)).collect(),
        };
        (turned, true)
    } else {
        (item.clone(), false)
    }
}

/// Lists what must be locked and loaded to plan `items`.
pub fn requirements(ctx: &WriteContext, items: &[CreateItem]) -> Requirements {
    let primary = PrimarySide::of(ctx);
    let mut keys = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    let mut records = BTreeSet::new();
    for item in items {
        let item = &oriented(ctx, item).0;
        pairs.insert((item.from_id, item.to_id));
        let mut types = wanted_types(ctx, item);
        if let Some(p) = primary {
            types.insert(p.primary_fwd);
            records.insert(p.split(item.from_id, item.to_id).0);
        }
        for key in types {
            keys.extend(edge_count_keys(
                ctx,
                &PairEdge {
                    from_id: item.from_id,
                    to_id: item.to_id,
                    key,
                },
            ));
        }
    }
    Requirements {
        count_keys: keys.into_iter().collect(),
        pairs: pairs.into_iter().collect(),
        primaries: primary.map(|p| PrimaryLookup {
            record_type: p.record_type,
            company_type: if p.record_is_from { ctx.to } else { ctx.from },
            record_key: p.record_key,
            record_ids: records.into_iter().collect(),
        }),
    }
}

/// The counters that moving each record's current primary company would
/// change: both ends of the primary row the move removes.
pub fn primary_move_keys(ctx: &WriteContext, primaries: &HashMap<i64, i64>) -> Vec<CountKey> {
    let Some(p) = PrimarySide::of(ctx) else {
        return Vec::new();
    };
    primaries
        .iter()
        .flat_map(|(&record, &company)| edge_count_keys(ctx, &p.edge(record, company)))
        .collect()
}

/// The deletable (admin label) types items ask for, request direction, sorted.
pub fn deletable_types(items: &[CreateItem]) -> Vec<TypeKey> {
    items
        .iter()
        .flat_map(|item| item.types.iter().copied())
        .filter(TypeKey::is_deletable)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

struct PlanState<'a, 'c> {
    ctx: &'a WriteContext<'c>,
    snapshot: Snapshot,
    pairs: HashMap<(i64, i64), BTreeSet<TypeKey>>,
    inserted: HashSet<PairEdge>,
    deleted: HashSet<PairEdge>,
    deltas: HashMap<CountKey, i64>,
}

impl PlanState<'_, '_> {
    fn count(&self, key: &CountKey) -> i64 {
        self.snapshot.counts.get(key).copied().unwrap_or(0)
    }

    /// Checks that adding `adds` and removing `removes` keeps every record
    /// within its limits; the first violation found is returned.
    fn check(&self, adds: &[PairEdge], removes: &[PairEdge]) -> Result<(), DomainError> {
        let mut change: HashMap<CountKey, i64> = HashMap::new();
        for edge in removes {
            for key in edge_count_keys(self.ctx, edge) {
                *change.entry(key).or_default() -= 1;
            }
        }
        for edge in adds {
            for key in edge_count_keys(self.ctx, edge) {
                *change.entry(key).or_default() += 1;
            }
        }
        for edge in adds {
            for key in edge_count_keys(self.ctx, edge) {
                let delta = change[&key];
                if delta <= 0 {
                    continue;
                }
                let user = self.snapshot.user_limits.get(&key.key).copied();
                let (limit, source) = effective_limit(user, self.ctx.ceiling);
                if self.count(&key) + delta > i64::from(limit) {
                    return Err(DomainError::LimitExceeded(LimitViolation {
                        source,
                        limit,
                        portal_id: self.ctx.portal_id,
                        from_object_id: key.object_id,
                        key: key.key,
                        type_name: self
                            .ctx
                            .catalog
                            .all()
                            .find(|d| d.key == key.key)
                            .map(|d| d.name.clone())
                            .unwrap_or_default(),
                    }));
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, adds: &[PairEdge], removes: &[PairEdge], primary: Option<PrimarySide>) {
        for edge in removes {
            if let Some(types) = self.pairs.get_mut(&(edge.from_id, edge.to_id)) {
                types.remove(&edge.key);
            }
            if !self.inserted.remove(edge) {
                self.deleted.insert(*edge);
            }
            for key in edge_count_keys(self.ctx, edge) {
                *self.snapshot.counts.entry(key).or_default() -= 1;
                *self.deltas.entry(key).or_default() -= 1;
            }
            if let Some(p) = primary.filter(|p| p.primary_fwd == edge.key) {
                self.snapshot
                    .primaries
                    .remove(&p.split(edge.from_id, edge.to_id).0);
            }
        }
        for edge in adds {
            self.pairs
                .entry((edge.from_id, edge.to_id))
                .or_default()
                .insert(edge.key);
            if !self.deleted.remove(edge) {
                self.inserted.insert(*edge);
            }
            for key in edge_count_keys(self.ctx, edge) {
                *self.snapshot.counts.entry(key).or_default() += 1;
                *self.deltas.entry(key).or_default() += 1;
            }
            if let Some(p) = primary.filter(|p| p.primary_fwd == edge.key) {
                let (record, company) = p.split(edge.from_id, edge.to_id);
                self.snapshot.primaries.insert(record, company);
            }
        }
    }

    /// Plans one item; answers whether it writes anything.
    fn plan_item(
        &mut self,
        item: &CreateItem,
        primary: Option<PrimarySide>,
    ) -> Result<bool, DomainError> {
        let pair = (item.from_id, item.to_id);
        let existing = self.pairs.get(&pair).cloned().unwrap_or_default();
        let unlabeled = self.ctx.catalog.unlabeled(self.ctx.from, self.ctx.to).key;
        let is_new_pair = !existing.contains(&unlabeled);
        let wanted = wanted_types(self.ctx, item);
        let adds: Vec<PairEdge> = wanted
            .difference(&existing)
            .map(|&key| PairEdge {
                from_id: item.from_id,
                to_id: item.to_id,
                key,
            })
            .collect();
        let mut removes = Vec::new();
        if let Some(p) = primary.filter(|p| wanted.contains(&p.primary_fwd)) {
            let (record, company) = p.split(item.from_id, item.to_id);
            if let Some(&current) = self
                .snapshot
                .primaries
                .get(&record)
                .filter(|&&c| c != company)
            {
                // Moving the primary: the previous company stays associated, unlabeled.
                removes.push(p.edge(record, current));
            }
        }
        self.check(&adds, &removes)?;
        self.apply(&adds, &removes, primary);
        let mut added = !adds.is_empty();
        if let Some(p) = primary.filter(|p| is_new_pair && !wanted.contains(&p.primary_fwd)) {
            let (record, company) = p.split(item.from_id, item.to_id);
            if !self.snapshot.primaries.contains_key(&record) {
                // The first company becomes the primary, unless a limit forbids it.
                let implied = [p.edge(record, company)];
                if self.check(&implied, &[]).is_ok() {
                    self.apply(&implied, &[], primary);
                    added = true;
                }
            }
        }
        Ok(added)
    }

    /// The types `pair` holds (planning orientation).
    fn held(&self, pair: (i64, i64)) -> Vec<TypeKey> {
        self.pairs
            .get(&pair)
            .map(|t| t.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Plans `items` in order against `snapshot`; each item commits or fails whole.
pub fn plan_creates(ctx: &WriteContext, snapshot: Snapshot, items: &[CreateItem]) -> Plan {
    let mut pairs: HashMap<(i64, i64), BTreeSet<TypeKey>> = HashMap::new();
    for edge in &snapshot.edges {
        pairs
            .entry((edge.from_id, edge.to_id))
            .or_default()
            .insert(edge.key);
    }
    let mut state = PlanState {
        ctx,
        snapshot,
        pairs,
        inserted: HashSet::new(),
        deleted: HashSet::new(),
        deltas: HashMap::new(),
    };
    let primary = PrimarySide::of(ctx);
    let planned: Vec<_> = items
        .iter()
        .map(|item| {
            let (item, turned) = oriented(ctx, item);
            state
                .plan_item(&item, primary)
                .map(|added| ((item.from_id, item.to_id), turned, added))
        })
        .collect();
    // Each item reports what its pair holds once the whole request is
    // planned: a later item may have moved a primary an earlier one set.
    let outcomes = planned
        .into_iter()
        .map(|planned| {
            let (pair, turned, added) = planned?;
            let mut types = state.held(pair);
            if turned {
                types = types.iter().map(|k| inverse(ctx, *k)).collect();
                types.sort();
            }
            Ok(Held { types, added })
        })
        .collect();
    let rows = |edges: &HashSet<PairEdge>| {
        let mut rows: Vec<DirectedRow> = edges.iter().flat_map(|e| edge_rows(ctx, e)).collect();
        rows.sort();
        rows
    };
    let mut count_deltas: Vec<(CountKey, i64)> =
        state.deltas.into_iter().filter(|(_, d)| *d != 0).collect();
    count_deltas.sort();
    Plan {
        insert_rows: rows(&state.inserted),
        delete_rows: rows(&state.deleted),
        count_deltas,
        outcomes,
    }
}

/// A create planned without reading the store: the plan `plan_creates`
/// makes when none of the items' pairs holds an association yet (and, on a
/// pair with a primary company, every record already has its primary). A
/// store may apply it as it is exactly when it finds, under its locks, that
/// - every label type in `labels` still exists,
/// - no pair in `pairs` (request direction) holds an association,
/// - every record of `primaries` (if any) holds a primary company, and
/// - every counter of `plan.count_deltas` stays within its effective limit
///   (`effective_limit` of its admin limit and the ceiling) after its delta;
///
/// `plan_creates` on that locked snapshot then makes this same plan: no row
/// to replace, no primary to set or move, and every delta is an addition
/// that fits. Otherwise the store plans against the snapshot it reads.
#[derive(Clone, Debug)]
pub struct PresumedPlan {
    pub plan: Plan,
    pub pairs: Vec<(i64, i64)>,
    pub labels: Vec<TypeKey>,
    pub primaries: Option<PrimaryLookup>,
}

/// The plan of `items` when their pairs are new (and their records have a
/// primary company, on such a pair), if it can be known without reading:
/// not when an item names the primary type (it would move the primary), nor
/// when an item would fail.
pub fn presume_new_pairs(ctx: &WriteContext, items: &[CreateItem]) -> Option<PresumedPlan> {
    let needs = requirements(ctx, items);
    let mut snapshot = Snapshot::default();
    if let Some(p) = PrimarySide::of(ctx) {
        if items.iter().any(|item| item.types.contains(&p.primary_fwd)) {
            return None;
        }
        // Any company: with no primary asked for, the planner only asks
        // whether the record has one.
        let lookup = needs.primaries.as_ref()?;
        snapshot.primaries = lookup.record_ids.iter().map(|&r| (r, 0)).collect();
    }
    let plan = plan_creates(ctx, snapshot, items);
    if plan.outcomes.iter().any(Result::is_err) {
        return None;
    }
    debug_assert!(plan.delete_rows.is_empty() && plan.count_deltas.iter().all(|(_, d)| *d > 0));
    Some(PresumedPlan {
        plan,
        pairs: needs.pairs,
        labels: deletable_types(items),
        primaries: needs.primaries,
    })
}

/// The types an archive of `keys` (request direction) removes: `None` means
/// every type, because removing the unlabeled type removes the labels too;
/// otherwise each named type with its inverse.
pub fn archive_filter(
    catalog: &PairCatalog,
    from: ObjectType,
    to: ObjectType,
    keys: &[TypeKey],
) -> Result<Option<Vec<(TypeKey, TypeKey)>>, DomainError> {
    if keys.is_empty() {
        return Err(DomainError::InvalidArgument(
            "name at least one association type to archive".into(),
        ));
    }
    let mut pairs = Vec::new();
    for key in keys {
        let def = catalog.require(from, to, *key)?;
        if def.role == super::types::TypeRole::Unlabeled {
            return Ok(None);
        }
        pairs.push((def.key, def.inverse));
    }
    pairs.sort();
    pairs.dedup();
    Ok(Some(pairs))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
