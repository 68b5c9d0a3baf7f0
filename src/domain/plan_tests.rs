//! The planner's unit tests, among them the seeded check that a presumed
//! plan equals `plan_creates` wherever its conditions hold.
use super::*;
use crate::domain::error::LimitSource;

fn ctx(catalog: &PairCatalog) -> WriteContext<'_> {
    WriteContext {
        portal_id: 7,
        from: catalog.a,
        to: catalog.b,
        catalog,
        ceiling: 3,
    }
}

fn item(from_id: i64, to_id: i64, types: &[i32]) -> CreateItem {
    CreateItem {
        from_id,
        to_id,
        types: types.iter().map(|&t| TypeKey::hubspot(t)).collect(),
    }
}

fn ids(outcome: &ItemOutcome) -> Vec<i32> {
    outcome
        .as_ref()
        .unwrap()
        .types
        .iter()
        .map(|k| k.type_id)
        .collect()
}

#[test]
fn first_company_becomes_primary_and_moving_keeps_the_old_one_unlabeled() {
    let catalog = PairCatalog::new(ObjectType::CONTACT, ObjectType::COMPANY, vec![]).unwrap();
    let ctx = ctx(&catalog);
    let plan = plan_creates(
        &ctx,
        Snapshot::default(),
        &[item(1, 10, &[]), item(1, 11, &[]), item(1, 11, &[1])],
    );
    assert_eq!(
        ids(&plan.outcomes[0]),
        vec![279],
        "company 10 was primary until a later item moved it: each item reports the end state"
    );
    assert_eq!(ids(&plan.outcomes[1]), vec![1, 279]);
    assert_eq!(ids(&plan.outcomes[2]), vec![1, 279]);
    let primaries: Vec<_> = plan
        .insert_rows
        .iter()
        .filter(|r| r.key.type_id == 1)
        .map(|r| r.to_id)
        .collect();
    assert_eq!(
        primaries,
        vec![11],
        "the primary moved to company 11 within the batch"
    );
    let contact_primary = CountKey {
        object_type: ObjectType::CONTACT,
        object_id: 1,
        key: TypeKey::hubspot(1),
    };
    assert!(plan.count_deltas.contains(&(contact_primary, 1)));
    assert_eq!(
        plan.insert_rows.len(),
        6,
        "two unlabeled pairs and one primary pair"
    );
}

#[test]
fn the_platform_ceiling_fails_items_without_replacing_anything() {
    let catalog = PairCatalog::new(ObjectType::DEAL, ObjectType::CONTACT, vec![]).unwrap();
    let ctx = ctx(&catalog);
    let items: Vec<_> = (1..=5).map(|c| item(1, c, &[])).collect();
    let plan = plan_creates(&ctx, Snapshot::default(), &items);
    assert!(plan.outcomes[..3].iter().all(|o| o.is_ok()));
    for outcome in &plan.outcomes[3..] {
        let Err(DomainError::LimitExceeded(v)) = outcome else {
            panic!("expected a limit error")
        };
        assert_eq!(
            (v.source, v.limit, v.from_object_id, v.key.type_id),
            (LimitSource::Platform, 3, 1, 3)
        );
    }
    assert_eq!(plan.insert_rows.len(), 6);
}

#[test]
fn user_limits_apply_to_the_inverse_side_and_recreating_is_free() {
    let catalog = PairCatalog::new(ObjectType::DEAL, ObjectType::CONTACT, vec![]).unwrap();
    let ctx = ctx(&catalog);
    let snapshot = Snapshot {
        user_limits: HashMap::from([(TypeKey::hubspot(4), 1)]),
        edges: vec![PairEdge {
            from_id: 1,
            to_id: 9,
            key: TypeKey::hubspot(3),
        }],
        counts: HashMap::from([
            (
                CountKey {
                    object_type: ObjectType::DEAL,
                    object_id: 1,
                    key: TypeKey::hubspot(3),
                },
                1,
            ),
            (
                CountKey {
                    object_type: ObjectType::CONTACT,
                    object_id: 9,
                    key: TypeKey::hubspot(4),
                },
                1,
            ),
        ]),
        ..Snapshot::default()
    };
    let plan = plan_creates(&ctx, snapshot, &[item(1, 9, &[]), item(2, 9, &[])]);
    assert_eq!(ids(&plan.outcomes[0]), vec![3], "re-creating succeeds");
    assert!(
        !plan.outcomes[0].as_ref().unwrap().added,
        "re-creating writes nothing"
    );
    let Err(DomainError::LimitExceeded(v)) = &plan.outcomes[1] else {
        panic!("expected a limit error")
    };
    assert_eq!(
        (v.source, v.from_object_id, v.key.type_id),
        (LimitSource::User, 9, 4)
    );
    assert!(plan.insert_rows.is_empty() && plan.count_deltas.is_empty());
}

#[test]
fn a_same_object_pair_named_both_ways_is_one_association_counted_once() {
    let catalog = PairCatalog::new(ObjectType::CONTACT, ObjectType::CONTACT, vec![]).unwrap();
    let ctx = ctx(&catalog);
    let plan = plan_creates(
        &ctx,
        Snapshot::default(),
        &[item(5, 6, &[]), item(6, 5, &[]), item(5, 6, &[])],
    );
    assert!(plan.outcomes.iter().all(|o| ids(o) == vec![449]));
    assert_eq!(plan.insert_rows.len(), 2, "5->6 and 6->5, once each");
    let deltas: Vec<(i64, i64)> = plan
        .count_deltas
        .iter()
        .map(|(k, d)| (k.object_id, *d))
        .collect();
    assert_eq!(deltas, vec![(5, 1), (6, 1)]);
}

/// A small seeded generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// Whether every counter the plan raises stays within its limit.
fn meets_limits(snapshot: &Snapshot, plan: &Plan, ceiling: u32) -> bool {
    plan.count_deltas.iter().all(|(key, delta)| {
        let user = snapshot.user_limits.get(&key.key).copied();
        snapshot.counts.get(key).copied().unwrap_or(0) + delta
            <= i64::from(effective_limit(user, ceiling).0)
    })
}

/// A plan's writes and outcomes, as text to compare.
fn show(p: &Plan) -> String {
    format!(
        "{:?} {:?} {:?} {:?}",
        p.insert_rows, p.delete_rows, p.count_deltas, p.outcomes
    )
}

#[test]
fn a_presumed_plan_is_the_plan_of_every_snapshot_that_meets_its_conditions() {
    use crate::domain::labels::new_label_definitions;
    let pairs = [
        (ObjectType::CONTACT, ObjectType::DEAL),
        (ObjectType::DEAL, ObjectType::CONTACT),
        (ObjectType::CONTACT, ObjectType::CONTACT),
        (ObjectType::CONTACT, ObjectType::COMPANY),
        (ObjectType::COMPANY, ObjectType::CONTACT),
    ];
    let mut compared = 0;
    for seed in 0..1000u64 {
        let mut rng = Rng(seed);
        let (a, b) = pairs[rng.below(pairs.len() as u64) as usize];
        let labels = new_label_definitions(a, b, "Owner", "owner", Some("Owned"), 100)
            .expect("label definitions");
        let catalog = PairCatalog::new(a, b, labels).expect("catalog");
        let ctx = WriteContext {
            ceiling: 2 + rng.below(4) as u32,
            ..ctx(&catalog)
        };
        let types: Vec<TypeKey> = catalog.directed(a, b).map(|d| d.key).collect();
        let items: Vec<CreateItem> = (0..1 + rng.below(5))
            .map(|_| CreateItem {
                from_id: 1 + rng.below(3) as i64,
                to_id: 1 + rng.below(3) as i64,
                types: (0..rng.below(3))
                    .map(|_| types[rng.below(types.len() as u64) as usize])
                    .collect(),
            })
            .filter(|i| a != b || i.from_id != i.to_id)
            .collect();
        let Some(presumed) = presume_new_pairs(&ctx, &items) else {
            continue;
        };
        // A snapshot meeting the conditions: a primary company (not one
        // of the items' companies) for every record, room on every
        // counter, limits optional.
        let mut snapshot = Snapshot::default();
        if let Some(lookup) = &presumed.primaries {
            for &record in &lookup.record_ids {
                snapshot.primaries.insert(record, 100 + rng.below(5) as i64);
            }
        }
        for (key, delta) in &presumed.plan.count_deltas {
            let user = (rng.below(2) == 0).then(|| rng.below(8) as u32);
            let (limit, _) = effective_limit(user, ctx.ceiling);
            if i64::from(limit) < *delta {
                continue;
            }
            if let Some(user) = user {
                snapshot.user_limits.insert(key.key, user);
            }
            let room = i64::from(limit) - delta;
            snapshot
                .counts
                .insert(*key, rng.below(room as u64 + 1) as i64);
        }
        if !meets_limits(&snapshot, &presumed.plan, ctx.ceiling) {
            continue;
        }
        compared += 1;
        let actual = plan_creates(&ctx, snapshot, &items);
        assert_eq!(
            show(&actual),
            show(&presumed.plan),
            "seed {seed}: {items:?}"
        );
    }
    assert!(compared > 300, "only {compared} plans compared");
}
