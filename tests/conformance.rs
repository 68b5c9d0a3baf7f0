//! The store conformance suite: every domain rule of associations and limits,
//! written once and run on each backend (SQLite, PostgreSQL and Citus) through the
//! service layer.
mod common;

use std::sync::Arc;

use association_service::domain::limits::{LimitChange, LimitMode};
use association_service::domain::{Category, DomainError, LimitSource, TypeKey};
use association_service::service::{
    AssociationInput, AssociationService, BatchOutcome, HeldAssociation, PortalPair, ServiceError,
};
use association_service::status_table::{error_context, sub_category};
use common::{hs, input, pair, types};

/// Each test gets its own store; this is the portal most of them use.
const PORTAL: i64 = 101;
const CEILING: u32 = 50;
/// Who the suite's admin changes are made by.
const ACTOR: &str = "conformance-suite";

struct Fixture {
    svc: Arc<AssociationService>,
    _store: common::TestStore,
}

async fn fixture(backend: &str) -> Fixture {
    let settings = common::settings(CEILING, 3);
    let (svc, store) = common::service(backend, settings).await;
    Fixture { svc, _store: store }
}

impl Fixture {
    async fn create(
        &self,
        pair: PortalPair,
        inputs: &[AssociationInput],
    ) -> BatchOutcome<HeldAssociation> {
        self.svc.create(pair, inputs).await.expect("create call")
    }

    /// Creates one association and expects it to succeed; returns its type ids.
    async fn link(
        &self,
        from: &str,
        from_id: i64,
        to: &str,
        to_id: i64,
        types: &[TypeKey],
    ) -> Vec<i32> {
        let outcome = self
            .create(pair(PORTAL, from, to), &[input(from_id, to_id, types)])
            .await;
        assert!(
            outcome.errors.is_empty(),
            "unexpected errors: {:?}",
            outcome.errors
        );
        outcome.results[0]
            .1
            .types
            .iter()
            .map(|d| d.key.type_id)
            .collect()
    }

    /// Creates one association and expects a limit error; returns it.
    async fn link_fails(
        &self,
        from: &str,
        from_id: i64,
        to: &str,
        to_id: i64,
        types: &[TypeKey],
    ) -> DomainError {
        let outcome = self
            .create(pair(PORTAL, from, to), &[input(from_id, to_id, types)])
            .await;
        assert!(
            outcome.results.is_empty(),
            "expected a failure, got {:?}",
            outcome.results
        );
        outcome.errors.into_iter().next().expect("one error").1
    }

    /// Every associated record of one record: (to id, type ids), by streaming.
    async fn read(&self, portal: i64, from: &str, from_id: i64, to: &str) -> Vec<(i64, Vec<i32>)> {
        common::read_types(&self.svc, portal, from, from_id, to).await
    }

    async fn limit(
        &self,
        portal: i64,
        from: &str,
        to: &str,
        key: TypeKey,
        max: i64,
        mode: LimitMode,
    ) -> Result<u32, DomainError> {
        let change = LimitChange {
            key,
            max_to_object_ids: max,
        };
        let mut outcome = self
            .svc
            .set_limits(ACTOR, pair(portal, from, to), &[change], mode)
            .await
            .expect("limits call");
        match outcome.errors.pop() {
            Some((_, err)) => Err(err),
            None => Ok(outcome.results[0].1.user_limit.expect("limit set")),
        }
    }

    async fn set_limit(&self, from: &str, to: &str, key: TypeKey, max: i64) {
        self.limit(PORTAL, from, to, key, max, LimitMode::Create)
            .await
            .expect("limit accepted");
    }

    async fn assert_counters_exact(&self) {
        for portal in [PORTAL, PORTAL + 1] {
            assert_eq!(
                self.svc.counter_drift(portal).await.unwrap(),
                0,
                "counters drifted in portal {portal}"
            );
        }
        common::assert_sound(
            &self.svc.verify().await.expect("the store checker runs"),
            "conformance",
        );
    }
}

fn limit_violation(err: &DomainError) -> (LimitSource, u32, i64, i32) {
    match err {
        DomainError::LimitExceeded(v) => (v.source, v.limit, v.from_object_id, v.key.type_id),
        other => panic!("expected a limit error, got {other:?}"),
    }
}

mod suite {
    pub use super::merge_suite::*;
    use super::*;

    pub async fn pair_is_written_and_read_from_both_sides(fx: Fixture) {
        assert_eq!(fx.link("deals", 1, "contacts", 2, &[]).await, vec![3]);
        assert_eq!(
            fx.read(PORTAL, "deals", 1, "contacts").await,
            vec![(2, vec![3])]
        );
        assert_eq!(fx.read(PORTAL, "0-1", 2, "DEAL").await, vec![(1, vec![4])]);
        fx.assert_counters_exact().await;
    }

    /// A pair holds at most MAX_LABELS_PER_PAIR labels (a label and its
    /// inverse are one, whichever direction it was made in); creators
    /// racing for the last place get it once; a deletion frees a place.
    pub async fn labels_per_pair_are_capped(fx: Fixture) {
        use association_service::domain::labels::MAX_LABELS_PER_PAIR;
        let create = |from: &'static str, to: &'static str, n: usize| {
            let svc = fx.svc.clone();
            async move {
                svc.create_label(
                    ACTOR,
                    pair(PORTAL, from, to),
                    &format!("Role {n}"),
                    &format!("role_{n}"),
                    None,
                )
                .await
            }
        };
        for n in 0..MAX_LABELS_PER_PAIR - 1 {
            // Half of them made from the other side.
            let (from, to) = if n % 2 == 0 {
                ("contacts", "companies")
            } else {
                ("companies", "contacts")
            };
            create(from, to, n).await.expect("under the quota");
        }
        let racers: Vec<_> = (0..4)
            .map(|n| tokio::spawn(create("contacts", "companies", 100 + n)))
            .collect();
        let mut won = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => won += 1,
                Err(ServiceError::Domain(DomainError::LabelQuotaReached { limit, .. })) => {
                    assert_eq!(limit, MAX_LABELS_PER_PAIR)
                }
                Err(other) => panic!("expected the quota, got {other:?}"),
            }
        }
        assert_eq!(won, 1, "exactly one creator takes the last place");
        let usage = fx.svc.label_usage(PORTAL, None, None).await.unwrap();
        assert_eq!(usage.len(), 2, "both directions have labels: {usage:?}");
        for direction in &usage {
            assert_eq!(direction.usage, MAX_LABELS_PER_PAIR);
            assert_eq!(direction.labels.len(), MAX_LABELS_PER_PAIR);
        }
        // Another pair has its own quota.
        fx.svc
            .create_label(
                ACTOR,
                pair(PORTAL, "deals", "contacts"),
                "Buyer",
                "buyer",
                None,
            )
            .await
            .expect("another pair");
        let first = usage[0].labels[0].clone();
        let catalog = fx
            .svc
            .definitions(pair(PORTAL, "contacts", "companies"))
            .await
            .unwrap();
        let victim = catalog
            .iter()
            .find(|d| d.label.as_deref() == Some(first.as_str()))
            .expect("the label");
        fx.svc
            .delete_label(
                ACTOR,
                pair(PORTAL, &victim.from.to_string(), &victim.to.to_string()),
                victim.key.type_id,
            )
            .await
            .expect("delete");
        create("companies", "contacts", 200)
            .await
            .expect("a freed place");
        fx.assert_counters_exact().await;
    }

    pub async fn labels_imply_unlabeled_and_archiving_unlabeled_removes_labels(fx: Fixture) {
        let defs = fx
            .svc
            .create_label(
                ACTOR,
                pair(PORTAL, "contacts", "companies"),
                "Billing",
                "billing",
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            defs.len(),
            2,
            "a cross-object label has a type id per direction"
        );
        let (billing, billing_back) = (defs[0].key, defs[1].key);
        assert_eq!(
            fx.link("contacts", 1, "companies", 10, &[billing]).await,
            vec![1, 279, billing.type_id]
        );
        assert_eq!(
            fx.read(PORTAL, "companies", 10, "contacts").await,
            vec![(1, vec![2, 280, billing_back.type_id])]
        );

        let only_label = fx
            .svc
            .archive_labels(
                pair(PORTAL, "contacts", "companies"),
                &[input(1, 10, &[billing])],
            )
            .await
            .unwrap();
        assert_eq!(only_label.removed, 2);
        assert_eq!(
            fx.read(PORTAL, "contacts", 1, "companies").await,
            vec![(10, vec![1, 279])]
        );

        fx.link("contacts", 1, "companies", 10, &[billing]).await;
        let all = fx
            .svc
            .archive_labels(
                pair(PORTAL, "contacts", "companies"),
                &[input(1, 10, &[hs(279)])],
            )
            .await
            .unwrap();
        assert_eq!(
            all.removed, 6,
            "unlabeled, primary and label, both directions"
        );
        assert!(fx.read(PORTAL, "contacts", 1, "companies").await.is_empty());
        assert!(fx
            .read(PORTAL, "companies", 10, "contacts")
            .await
            .is_empty());
        fx.assert_counters_exact().await;
    }

    pub async fn archive_removes_every_type_between_pairs(fx: Fixture) {
        fx.link("contacts", 1, "companies", 10, &[]).await;
        fx.link("contacts", 1, "companies", 11, &[]).await;
        fx.link("contacts", 1, "companies", 12, &[]).await;
        let outcome = fx
            .svc
            .archive(pair(PORTAL, "contacts", "companies"), &[(1, vec![10, 11])])
            .await
            .unwrap();
        assert_eq!(
            outcome.removed, 6,
            "primary + unlabeled to 10, unlabeled to 11, both directions"
        );
        assert_eq!(
            fx.read(PORTAL, "contacts", 1, "companies").await,
            vec![(12, vec![279])]
        );
        assert!(fx
            .read(PORTAL, "companies", 10, "contacts")
            .await
            .is_empty());
        fx.assert_counters_exact().await;
    }

    pub async fn a_pair_named_both_ways_counts_once_and_self_is_refused(fx: Fixture) {
        // 5 -> 6 and 6 -> 5 in one request are one association.
        let outcome = fx
            .create(
                pair(PORTAL, "contacts", "contacts"),
                &[input(5, 6, &[]), input(6, 5, &[]), input(7, 7, &[])],
            )
            .await;
        let held: Vec<(i64, i64)> = outcome
            .results
            .iter()
            .map(|(_, h)| (h.from_id, h.to_id))
            .collect();
        assert_eq!(held, vec![(5, 6), (6, 5)]);
        assert!(matches!(
            outcome.errors.as_slice(),
            [(2, DomainError::SelfAssociation { id: 7, .. })]
        ));
        assert_eq!(
            fx.read(PORTAL, "contacts", 5, "contacts").await,
            vec![(6, vec![449])]
        );
        assert_eq!(
            fx.read(PORTAL, "contacts", 6, "contacts").await,
            vec![(5, vec![449])]
        );
        assert!(fx.read(PORTAL, "contacts", 7, "contacts").await.is_empty());
        fx.assert_counters_exact().await;
        // Archiving it named both ways removes its two rows once.
        let archived = fx
            .svc
            .archive(
                pair(PORTAL, "contacts", "contacts"),
                &[(5, vec![6]), (6, vec![5])],
            )
            .await
            .unwrap();
        assert_eq!(archived.removed, 2);
        assert!(fx.read(PORTAL, "contacts", 5, "contacts").await.is_empty());
        fx.assert_counters_exact().await;
        // A self pair in an archive is refused like in a create.
        let refused = fx
            .svc
            .archive(pair(PORTAL, "contacts", "contacts"), &[(8, vec![8])])
            .await
            .unwrap();
        assert!(matches!(
            refused.errors.as_slice(),
            [(0, DomainError::SelfAssociation { id: 8, .. })]
        ));
    }

    pub async fn batch_commits_valid_items_and_reports_each_failure(fx: Fixture) {
        fx.set_limit("contacts", "deals", hs(4), 2).await;
        let unknown = TypeKey {
            category: Category::UserDefined,
            type_id: 999_999,
        };
        let inputs = [
            input(5, 1, &[]),
            input(5, 2, &[]),
            input(5, 3, &[]),
            input(5, 4, &[]),
            input(5, -1, &[]),
            input(5, 6, &[unknown]),
        ];
        let outcome = fx.create(pair(PORTAL, "contacts", "deals"), &inputs).await;
        let ok: Vec<usize> = outcome.results.iter().map(|(i, _)| *i).collect();
        assert_eq!(ok, vec![0, 1]);
        let failed: Vec<(usize, &str)> = outcome
            .errors
            .iter()
            .map(|(i, e)| (*i, sub_category(e)))
            .collect();
        assert_eq!(
            failed,
            vec![
                (2, "crm.associations.ASSOCIATION_USER_CONFIG_LIMIT_EXCEEDED"),
                (3, "crm.associations.ASSOCIATION_USER_CONFIG_LIMIT_EXCEEDED"),
                (4, "crm.associations.INVALID_OBJECT_ID"),
                (5, "crm.associations.INVALID_ASSOCIATION_TYPE"),
            ]
        );
        let err = &outcome.errors[0].1;
        assert_eq!(limit_violation(err), (LimitSource::User, 2, 5, 4));
        assert_eq!(
            err.to_string(),
            format!("Exceeded association limit of 2 for portalId {PORTAL}, fromObjectId 5, associationCategory HUBSPOT_DEFINED, associationTypeId 4")
        );
        let context: Vec<(&str, String)> = error_context(err);
        assert!(context.contains(&(
            "associationSpec",
            "associationCategory HUBSPOT_DEFINED, associationTypeId 4".into()
        )));
        assert!(context.contains(&("portalId", PORTAL.to_string())));
        assert_eq!(
            association_service::status_table::status_for(err.kind()).category,
            "VALIDATION_ERROR"
        );
        assert_eq!(
            fx.read(PORTAL, "contacts", 5, "deals").await,
            vec![(1, vec![4]), (2, vec![4])]
        );
        fx.assert_counters_exact().await;
    }

    pub async fn the_platform_ceiling_applies_to_every_type(fx: Fixture) {
        let inputs: Vec<_> = (1..=52).map(|c| input(1, c, &[])).collect();
        let outcome = fx.create(pair(PORTAL, "deals", "contacts"), &inputs).await;
        assert_eq!(outcome.results.len(), CEILING as usize);
        assert_eq!(outcome.errors.len(), 2);
        for (_, err) in &outcome.errors {
            assert_eq!(limit_violation(err), (LimitSource::Platform, CEILING, 1, 3));
            assert_eq!(
                sub_category(err),
                "crm.associations.ASSOCIATION_LIMIT_EXCEEDED"
            );
        }
        assert_eq!(
            fx.read(PORTAL, "deals", 1, "contacts").await.len(),
            CEILING as usize
        );
        fx.assert_counters_exact().await;
    }

    pub async fn limits_outside_one_to_the_ceiling_are_rejected(fx: Fixture) {
        for bad in [0, -1, i64::from(CEILING) + 1] {
            let err = fx
                .limit(
                    PORTAL,
                    "contacts",
                    "companies",
                    hs(279),
                    bad,
                    LimitMode::Create,
                )
                .await
                .unwrap_err();
            assert!(
                matches!(err, DomainError::InvalidLimit(_)),
                "{bad}: {err:?}"
            );
        }
        assert!(fx
            .svc
            .limits(PORTAL, Some(types("contacts", "companies")))
            .await
            .unwrap()
            .iter()
            .all(|l| l.user_limit.is_none()));
        assert_eq!(
            fx.limit(
                PORTAL,
                "contacts",
                "companies",
                hs(279),
                i64::from(CEILING),
                LimitMode::Create
            )
            .await,
            Ok(CEILING)
        );
        let err = fx
            .limit(
                PORTAL,
                "contacts",
                "companies",
                hs(279),
                5,
                LimitMode::Create,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::LimitAlreadySet(_)));
        let err = fx
            .limit(PORTAL, "contacts", "companies", hs(1), 1, LimitMode::Update)
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::LimitNotSet(_)));
    }

    pub async fn label_limits_never_exceed_the_object_limit(fx: Fixture) {
        let label = fx.billing_label().await;
        fx.set_limit("contacts", "companies", hs(279), 5).await;
        let err = fx
            .limit(PORTAL, "contacts", "companies", label, 6, LimitMode::Create)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DomainError::InvalidLimit(m) if m.contains("1-5")),
            "{err:?}"
        );
        assert_eq!(
            fx.limit(PORTAL, "contacts", "companies", label, 5, LimitMode::Create)
                .await,
            Ok(5)
        );
        let err = fx
            .limit(
                PORTAL,
                "contacts",
                "companies",
                hs(279),
                4,
                LimitMode::Update,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DomainError::InvalidLimit(m) if m.contains("at least 5")),
            "{err:?}"
        );
        let limits = fx
            .svc
            .limits(PORTAL, Some(types("contacts", "companies")))
            .await
            .unwrap();
        let configured: Vec<(i32, Option<u32>)> = limits
            .iter()
            .filter(|l| l.user_limit.is_some())
            .map(|l| (l.def.key.type_id, l.user_limit))
            .collect();
        assert_eq!(configured, vec![(279, Some(5)), (label.type_id, Some(5))]);
        assert_eq!(
            fx.svc
                .purge_limits(
                    ACTOR,
                    pair(PORTAL, "contacts", "companies"),
                    &[hs(279), label]
                )
                .await
                .unwrap(),
            2
        );
        assert!(fx.svc.limits(PORTAL, None).await.unwrap().is_empty());
    }

    pub async fn lowering_a_limit_keeps_existing_associations_and_blocks_new_ones(fx: Fixture) {
        for company in [10, 11, 12] {
            fx.link("contacts", 1, "companies", company, &[]).await;
        }
        fx.set_limit("contacts", "companies", hs(279), 2).await;
        assert_eq!(
            fx.read(PORTAL, "contacts", 1, "companies").await.len(),
            3,
            "limits are not retroactive"
        );
        let err = fx.link_fails("contacts", 1, "companies", 13, &[]).await;
        assert_eq!(limit_violation(&err), (LimitSource::User, 2, 1, 279));
        fx.svc
            .archive(pair(PORTAL, "contacts", "companies"), &[(1, vec![12])])
            .await
            .unwrap();
        fx.link_fails("contacts", 1, "companies", 13, &[]).await;
        fx.svc
            .archive(pair(PORTAL, "contacts", "companies"), &[(1, vec![11])])
            .await
            .unwrap();
        fx.link("contacts", 1, "companies", 13, &[]).await;
        fx.assert_counters_exact().await;
    }

    pub async fn limit_one_both_ways_makes_one_to_one(fx: Fixture) {
        fx.set_limit("contacts", "companies", hs(279), 1).await;
        fx.set_limit("companies", "contacts", hs(280), 1).await;
        fx.link("contacts", 1, "companies", 10, &[]).await;
        let err = fx.link_fails("contacts", 1, "companies", 11, &[]).await;
        assert_eq!(limit_violation(&err), (LimitSource::User, 1, 1, 279));
        let err = fx.link_fails("contacts", 2, "companies", 10, &[]).await;
        assert_eq!(
            limit_violation(&err),
            (LimitSource::User, 1, 10, 280),
            "the company side is full too"
        );
        assert_eq!(
            fx.read(PORTAL, "contacts", 1, "companies").await,
            vec![(10, vec![1, 279])],
            "nothing was replaced"
        );
        fx.assert_counters_exact().await;
    }

    pub async fn same_object_unlabeled_and_symmetric_labels_share_one_limit(fx: Fixture) {
        fx.set_limit("contacts", "contacts", hs(449), 1).await;
        fx.link("contacts", 1, "contacts", 2, &[]).await;
        assert_eq!(
            limit_violation(&fx.link_fails("contacts", 3, "contacts", 1, &[]).await),
            (LimitSource::User, 1, 1, 449)
        );
        assert_eq!(
            limit_violation(&fx.link_fails("contacts", 2, "contacts", 3, &[]).await),
            (LimitSource::User, 1, 2, 449)
        );

        let friend = fx
            .svc
            .create_label(
                ACTOR,
                pair(PORTAL, "contacts", "contacts"),
                "Friend",
                "friend",
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            friend.len(),
            1,
            "a symmetric same-object label is its own inverse"
        );
        let friend = friend[0].key;
        fx.limit(
            PORTAL,
            "contacts",
            "contacts",
            hs(449),
            5,
            LimitMode::Update,
        )
        .await
        .unwrap();
        fx.set_limit("contacts", "contacts", friend, 1).await;
        fx.link("contacts", 4, "contacts", 5, &[friend]).await;
        let err = fx.link_fails("contacts", 6, "contacts", 4, &[friend]).await;
        assert_eq!(
            limit_violation(&err),
            (LimitSource::User, 1, 4, friend.type_id)
        );
        fx.link("contacts", 6, "contacts", 4, &[]).await;
        fx.assert_counters_exact().await;
    }

    pub async fn asymmetric_labels_have_a_limit_per_direction(fx: Fixture) {
        let defs = fx
            .svc
            .create_label(
                ACTOR,
                pair(PORTAL, "contacts", "contacts"),
                "Manager",
                "manager",
                Some("Employee"),
            )
            .await
            .unwrap();
        let (manager, employee) = (defs[0].key, defs[1].key);
        assert_ne!(manager, employee);
        fx.set_limit("contacts", "contacts", employee, 1).await;
        fx.link("contacts", 10, "contacts", 11, &[manager]).await;
        fx.link("contacts", 10, "contacts", 12, &[manager]).await;
        let err = fx
            .link_fails("contacts", 13, "contacts", 11, &[manager])
            .await;
        assert_eq!(
            limit_violation(&err),
            (LimitSource::User, 1, 11, employee.type_id)
        );
        assert_eq!(
            fx.read(PORTAL, "contacts", 11, "contacts").await,
            vec![(10, vec![449, employee.type_id])]
        );
        fx.assert_counters_exact().await;
    }

    pub async fn the_primary_company_is_first_then_moves_and_is_never_doubled(fx: Fixture) {
        assert_eq!(
            fx.link("contacts", 1, "companies", 10, &[]).await,
            vec![1, 279],
            "first company is primary"
        );
        assert_eq!(
            fx.link("contacts", 1, "companies", 11, &[]).await,
            vec![279]
        );
        assert_eq!(
            fx.link("contacts", 1, "companies", 11, &[hs(1)]).await,
            vec![1, 279]
        );
        assert_eq!(
            fx.read(PORTAL, "contacts", 1, "companies").await,
            vec![(10, vec![279]), (11, vec![1, 279])],
            "the previous primary stays associated, unlabeled"
        );
        // From the company side: "primary company to contact".
        fx.link("companies", 12, "contacts", 1, &[hs(2)]).await;
        let primaries: Vec<i64> = fx
            .read(PORTAL, "contacts", 1, "companies")
            .await
            .into_iter()
            .filter(|(_, types)| types.contains(&1))
            .map(|(company, _)| company)
            .collect();
        assert_eq!(primaries, vec![12]);
        assert_eq!(
            fx.read(PORTAL, "companies", 11, "contacts").await,
            vec![(1, vec![280])]
        );
        // Deals and tickets follow the same rule with their own types.
        assert_eq!(
            fx.link("deals", 7, "companies", 10, &[]).await,
            vec![5, 341]
        );
        assert_eq!(
            fx.link("tickets", 8, "companies", 10, &[]).await,
            vec![26, 339]
        );
        // Moving the primary is not a limit error even at limit 1 on the primary type.
        fx.set_limit("contacts", "companies", hs(1), 1).await;
        fx.link("contacts", 1, "companies", 10, &[hs(1)]).await;
        fx.assert_counters_exact().await;
    }

    pub async fn portals_never_see_or_count_each_other(fx: Fixture) {
        let other = PORTAL + 1;
        fx.set_limit("contacts", "companies", hs(279), 1).await;
        fx.create_label_in(PORTAL, "Secret").await;
        fx.link("contacts", 1, "companies", 10, &[]).await;
        let outcome = fx
            .create(
                pair(other, "contacts", "companies"),
                &[input(1, 10, &[]), input(1, 11, &[])],
            )
            .await;
        assert!(
            outcome.errors.is_empty(),
            "portal A's limit does not apply in B: {:?}",
            outcome.errors
        );
        assert_eq!(fx.read(PORTAL, "contacts", 1, "companies").await.len(), 1);
        assert_eq!(fx.read(other, "contacts", 1, "companies").await.len(), 2);
        assert!(fx.svc.limits(other, None).await.unwrap().is_empty());
        let labels: Vec<_> = fx
            .svc
            .definitions(pair(other, "contacts", "companies"))
            .await
            .unwrap();
        assert!(labels.iter().all(|d| d.label.as_deref() != Some("Secret")));
        fx.svc
            .archive(pair(other, "contacts", "companies"), &[(1, vec![10])])
            .await
            .unwrap();
        assert_eq!(fx.read(PORTAL, "contacts", 1, "companies").await.len(), 1);
        fx.assert_counters_exact().await;
    }

    pub async fn recreating_an_association_is_not_counted_twice(fx: Fixture) {
        fx.set_limit("deals", "contacts", hs(3), 1).await;
        fx.link("deals", 1, "contacts", 1, &[]).await;
        fx.link("deals", 1, "contacts", 1, &[]).await;
        let outcome = fx
            .create(
                pair(PORTAL, "deals", "contacts"),
                &[input(1, 1, &[]), input(1, 1, &[])],
            )
            .await;
        assert_eq!(outcome.results.len(), 2);
        assert_eq!(
            fx.read(PORTAL, "deals", 1, "contacts").await,
            vec![(1, vec![3])]
        );
        fx.assert_counters_exact().await;
    }

    pub async fn custom_object_pairs_get_their_own_unlabeled_type(fx: Fixture) {
        let defs = fx
            .svc
            .definitions(pair(PORTAL, "2-100", "contacts"))
            .await
            .unwrap();
        assert_eq!(defs.len(), 1);
        let (forward, inverse) = (defs[0].key, defs[0].inverse);
        // Allocated outside HubSpot's numeric space: the base plus the
        // portal's counter (from 1000).
        let base = association_service::domain::builtin::ALLOCATED_UNLABELED_BASE;
        assert_eq!(
            (forward.type_id, inverse.type_id),
            (base + 1000, base + 1001)
        );
        let back = fx
            .svc
            .definitions(pair(PORTAL, "contacts", "2-100"))
            .await
            .unwrap();
        assert_eq!((back[0].key, back[0].inverse), (inverse, forward));
        assert_eq!(
            fx.link("2-100", 5, "contacts", 6, &[]).await,
            vec![forward.type_id]
        );
        assert_eq!(
            fx.read(PORTAL, "contacts", 6, "2-100").await,
            vec![(5, vec![inverse.type_id])]
        );
        // HubSpot's further standard objects carry HubSpot's ids where it
        // defines them (contact -> appointment, 0-421: 907), named by their
        // names; pairs it lists one direction of (lead -> call, 596) take
        // its id that way and allocate the other.
        let defs = fx
            .svc
            .definitions(pair(PORTAL, "contacts", "appointments"))
            .await
            .unwrap();
        assert_eq!(
            defs.iter().map(|d| (d.key, d.inverse)).collect::<Vec<_>>(),
            vec![(hs(907), hs(906))]
        );
        assert_eq!(fx.link("contacts", 6, "0-421", 7, &[]).await, vec![907]);
        let defs = fx
            .svc
            .definitions(pair(PORTAL, "leads", "calls"))
            .await
            .unwrap();
        assert_eq!(
            defs.iter().map(|d| (d.key, d.inverse)).collect::<Vec<_>>(),
            vec![(hs(596), hs(base + 1002))]
        );
        assert_eq!(fx.link("leads", 8, "calls", 9, &[hs(596)]).await, vec![596]);
        assert_eq!(
            fx.read(PORTAL, "calls", 9, "leads").await,
            vec![(8, vec![base + 1002])]
        );
        fx.assert_counters_exact().await;
    }

    pub async fn labels_can_be_renamed_and_deleted_with_their_uses(fx: Fixture) {
        let defs = fx
            .svc
            .create_label(
                ACTOR,
                pair(PORTAL, "contacts", "companies"),
                "Manager",
                "manager",
                Some("Employer"),
            )
            .await
            .unwrap();
        let (manager, employer) = (defs[0].key, defs[1].key);
        let dup = fx
            .svc
            .create_label(
                ACTOR,
                pair(PORTAL, "contacts", "companies"),
                "Manager",
                "manager2",
                None,
            )
            .await;
        assert!(matches!(
            dup,
            Err(ServiceError::Domain(DomainError::LabelExists(_)))
        ));
        fx.set_limit("contacts", "companies", manager, 3).await;
        fx.link("contacts", 1, "companies", 10, &[manager]).await;
        let renamed = fx
            .svc
            .update_label(
                ACTOR,
                pair(PORTAL, "contacts", "companies"),
                manager.type_id,
                "Boss",
                Some("Staff"),
            )
            .await
            .unwrap();
        let labels: Vec<_> = renamed.iter().map(|d| d.label.clone().unwrap()).collect();
        assert_eq!(labels, vec!["Boss", "Staff"]);
        fx.svc
            .delete_label(
                ACTOR,
                pair(PORTAL, "contacts", "companies"),
                employer.type_id,
            )
            .await
            .unwrap();
        assert_eq!(
            fx.read(PORTAL, "contacts", 1, "companies").await,
            vec![(10, vec![1, 279])]
        );
        assert!(fx.svc.limits(PORTAL, None).await.unwrap().is_empty());
        let missing = fx
            .svc
            .delete_label(
                ACTOR,
                pair(PORTAL, "contacts", "companies"),
                manager.type_id,
            )
            .await;
        assert!(matches!(
            missing,
            Err(ServiceError::Domain(DomainError::LabelNotFound { .. }))
        ));
        fx.assert_counters_exact().await;
    }

    /// Deleting one label removes its rows alone: a record holding it
    /// beside another label of the same category keeps the other one (and
    /// its counters stay exact).
    pub async fn deleting_a_label_leaves_the_other_labels(fx: Fixture) {
        let companies = pair(PORTAL, "contacts", "companies");
        let mut keys = Vec::new();
        for (name, key) in [("Billing", "billing"), ("Legal", "legal")] {
            let made = fx.svc.create_label(ACTOR, companies, name, key, None);
            keys.push(made.await.unwrap()[0].key);
        }
        fx.link("contacts", 1, "companies", 10, &keys).await;
        fx.link("contacts", 2, "companies", 10, &keys[1..]).await;
        fx.svc
            .delete_label(ACTOR, companies, keys[0].type_id)
            .await
            .unwrap();
        let mut kept = vec![1, 279, keys[1].type_id];
        kept.sort();
        assert_eq!(
            fx.read(PORTAL, "contacts", 1, "companies").await,
            vec![(10, kept.clone())]
        );
        assert_eq!(
            fx.read(PORTAL, "contacts", 2, "companies").await,
            vec![(10, kept)]
        );
        fx.assert_counters_exact().await;
    }

    pub async fn bad_input_is_rejected_without_side_effects(fx: Fixture) {
        let unknown = PortalPair::parse(PORTAL, "people", "companies");
        assert!(matches!(unknown, Err(DomainError::UnknownObjectType(_))));
        let (contacts, companies) = types("contacts", "companies");
        let no_portal = PortalPair {
            portal: 0,
            from: contacts,
            to: companies,
        };
        let portal = fx.svc.create(no_portal, &[input(1, 2, &[])]).await;
        assert!(matches!(
            portal,
            Err(ServiceError::Domain(DomainError::InvalidPortal(0)))
        ));
        let too_many: Vec<_> = (1..=2001).map(|i| input(1, i, &[])).collect();
        let big = fx
            .svc
            .create(pair(PORTAL, "contacts", "companies"), &too_many)
            .await;
        assert!(matches!(
            big,
            Err(ServiceError::Domain(DomainError::InvalidArgument(_)))
        ));
        // Blank, NUL (PostgreSQL cannot store it) and line breaks, in the
        // label or its inverse: refused the same on both stores.
        for (label, inverse) in [
            (" ", None),
            ("Bill\0ing", None),
            ("Billing", Some("Paid\nby")),
        ] {
            let bad_label = fx
                .svc
                .create_label(
                    ACTOR,
                    pair(PORTAL, "contacts", "deals"),
                    label,
                    "x",
                    inverse,
                )
                .await;
            assert!(
                matches!(
                    bad_label,
                    Err(ServiceError::Domain(DomainError::InvalidArgument(_)))
                ),
                "{label:?} / {inverse:?}: {bad_label:?}"
            );
        }
        let stored = fx
            .svc
            .definitions(pair(PORTAL, "contacts", "deals"))
            .await
            .unwrap();
        assert!(stored.iter().all(|d| d.label.is_none()), "{stored:?}");
        // The label-text rule holds for a rename as for a new label.
        let label = fx.billing_label().await;
        let long = "x".repeat(101);
        for text in ["   ", long.as_str()] {
            let renamed = fx
                .svc
                .update_label(
                    ACTOR,
                    pair(PORTAL, "contacts", "companies"),
                    label.type_id,
                    text,
                    None,
                )
                .await;
            assert!(
                matches!(
                    renamed,
                    Err(ServiceError::Domain(DomainError::InvalidArgument(_)))
                ),
                "rename to {text:?}: {renamed:?}"
            );
        }
        let wrong_direction = fx
            .create(
                pair(PORTAL, "contacts", "companies"),
                &[input(1, 2, &[hs(280)])],
            )
            .await;
        assert_eq!(
            sub_category(&wrong_direction.errors[0].1),
            "crm.associations.INVALID_ASSOCIATION_TYPE"
        );
        assert!(fx.read(PORTAL, "contacts", 1, "companies").await.is_empty());
        fx.assert_counters_exact().await;
    }

    pub async fn admin_changes_are_audited_with_before_and_after(fx: Fixture) {
        use association_service::domain::admin::AdminEvent;
        fx.set_limit("contacts", "companies", hs(279), 5).await;
        fx.limit(
            PORTAL,
            "contacts",
            "companies",
            hs(279),
            3,
            LimitMode::Update,
        )
        .await
        .unwrap();
        let refused = fx
            .limit(
                PORTAL,
                "contacts",
                "companies",
                hs(279),
                0,
                LimitMode::Update,
            )
            .await;
        assert!(refused.is_err(), "a refused item is not a change");
        let label = fx.billing_label().await;
        fx.svc
            .update_label(
                ACTOR,
                pair(PORTAL, "contacts", "companies"),
                label.type_id,
                "Invoices",
                None,
            )
            .await
            .unwrap();
        fx.svc
            .delete_label(ACTOR, pair(PORTAL, "contacts", "companies"), label.type_id)
            .await
            .unwrap();
        fx.svc
            .purge_limits(ACTOR, pair(PORTAL, "contacts", "companies"), &[hs(279)])
            .await
            .unwrap();
        let events = fx.svc.audit_events(PORTAL, 0, 100).await.unwrap();
        let kinds: Vec<(i64, AdminEvent)> = events.iter().map(|(s, c)| (*s, c.event)).collect();
        assert_eq!(
            kinds,
            vec![
                (1, AdminEvent::LimitsCreated),
                (2, AdminEvent::LimitsUpdated),
                (3, AdminEvent::LabelCreated),
                (4, AdminEvent::LabelUpdated),
                (5, AdminEvent::LabelDeleted),
                (6, AdminEvent::LimitsPurged),
            ]
        );
        assert!(events
            .iter()
            .all(|(_, c)| c.actor == ACTOR && c.portal_id == PORTAL));
        let limit = |state: &association_service::domain::admin::AdminState| {
            state
                .limits
                .iter()
                .map(|l| l.max_to_object_ids)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            (limit(&events[1].1.before), limit(&events[1].1.after)),
            (vec![5], vec![3])
        );
        assert_eq!(
            (limit(&events[5].1.before), limit(&events[5].1.after)),
            (vec![3], vec![])
        );
        let labels = |state: &association_service::domain::admin::AdminState| {
            state
                .labels
                .iter()
                .filter_map(|l| l.label.clone())
                .collect::<Vec<_>>()
        };
        assert!(labels(&events[2].1.after).contains(&"Billing".to_string()));
        assert!(labels(&events[3].1.before).contains(&"Billing".to_string()));
        assert!(labels(&events[3].1.after).contains(&"Invoices".to_string()));
        assert!(labels(&events[4].1.after).is_empty());
        assert!(fx
            .svc
            .audit_events(PORTAL + 1, 0, 100)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn a_high_usage_report_lists_the_records_at_and_near_their_limits(fx: Fixture) {
        use association_service::domain::admin::{AdminEvent, ReportedUsage};
        fx.set_limit("contacts", "companies", hs(279), 5).await;
        // Contact 1 holds the limit, contact 2 is near it (4 of 5), contact 3
        // is neither.
        for (contact, companies) in [(1, 5), (2, 4), (3, 1)] {
            for company in 1..=companies {
                fx.link("contacts", contact, "companies", 100 + company, &[])
                    .await;
            }
        }
        let refused = fx.svc.high_usage_report(ACTOR, PORTAL, 0).await;
        assert_eq!(
            refused.unwrap_err().to_string(),
            "userId must be a positive integer, not 0"
        );
        fx.svc
            .high_usage_report(ACTOR, PORTAL, 77)
            .await
            .expect("report");
        let events = fx.svc.audit_events(PORTAL, 0, 100).await.unwrap();
        let kinds: Vec<AdminEvent> = events.iter().map(|(_, c)| c.event).collect();
        assert_eq!(
            kinds,
            vec![AdminEvent::LimitsCreated, AdminEvent::HighUsageReport]
        );
        let change = &events[1].1;
        assert_eq!(
            (change.actor.as_str(), change.from_object_type.as_str()),
            (ACTOR, "")
        );
        let report = change
            .report
            .as_ref()
            .expect("the event carries its report");
        assert_eq!(report.user_id, 77);
        let figures: Vec<(String, String, i32, u32, bool, u64, u64)> = report
            .types
            .iter()
            .map(|t: &ReportedUsage| {
                (
                    t.definition.from_object_type.clone(),
                    t.definition.to_object_type.clone(),
                    t.definition.type_id,
                    t.limit,
                    t.admin_limit,
                    t.records_at_limit,
                    t.records_near_limit,
                )
            })
            .collect();
        assert_eq!(
            figures,
            vec![("0-1".into(), "0-2".into(), 279, 5, true, 1, 1)]
        );
        assert_eq!(report.types[0].at_limit_samples, vec![(1, 5)]);
        assert_eq!(report.types[0].near_limit_samples, vec![(2, 4)]);
        assert_eq!(report.types[0].near_from, 4);
        // Another portal's report lists nothing of this one.
        fx.svc
            .high_usage_report(ACTOR, PORTAL + 1, 77)
            .await
            .unwrap();
        let other = fx.svc.audit_events(PORTAL + 1, 0, 100).await.unwrap();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].1.report.as_ref().unwrap().types, vec![]);
    }

    pub async fn usage_without_a_pair_covers_records_near_the_platform_ceiling(fx: Fixture) {
        // No admin limit anywhere: contact 1 holds 40 deals (near the
        // ceiling of 50 from 80 %), custom record 2-100 #1 holds 50 contacts
        // (at it), contact 2 holds 3 deals (neither).
        let deals: Vec<_> = (1..=40).map(|d| input(1, d, &[])).collect();
        fx.create(pair(PORTAL, "contacts", "deals"), &deals).await;
        fx.create(
            pair(PORTAL, "contacts", "deals"),
            &[input(2, 1, &[]), input(2, 2, &[]), input(2, 3, &[])],
        )
        .await;
        let contacts: Vec<_> = (1..=50).map(|c| input(1, c, &[])).collect();
        let made = fx
            .create(pair(PORTAL, "2-100", "contacts"), &contacts)
            .await;
        assert!(made.errors.is_empty(), "{:?}", made.errors);
        let usages = fx.svc.limit_usage(PORTAL, None, 0.8, 5).await.unwrap();
        let pairs: std::collections::BTreeSet<(String, String)> = usages
            .iter()
            .map(|u| {
                let (a, b) = (u.def.from.to_string(), u.def.to.to_string());
                if a <= b {
                    (a, b)
                } else {
                    (b, a)
                }
            })
            .collect();
        assert_eq!(
            pairs,
            [("0-1", "0-3"), ("0-1", "2-100")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .into_iter()
                .collect()
        );
        let custom = fx
            .svc
            .definitions(pair(PORTAL, "2-100", "contacts"))
            .await
            .unwrap()[0]
            .key
            .type_id;
        let busy: Vec<(String, i32, LimitSource, u64, u64)> = usages
            .iter()
            .filter(|u| u.usage.at_or_above + u.usage.near > 0)
            .map(|u| {
                (
                    u.def.from.to_string(),
                    u.def.key.type_id,
                    u.source,
                    u.usage.at_or_above,
                    u.usage.near,
                )
            })
            .collect();
        assert_eq!(
            busy,
            vec![
                ("0-1".to_string(), 4, LimitSource::Platform, 0, 1),
                ("2-100".to_string(), custom, LimitSource::Platform, 1, 0),
            ]
        );
    }

    pub async fn reads_stream_every_record_in_chunks(fx: Fixture) {
        let inputs: Vec<_> = (1..=10).map(|c| input(1, c * 7, &[])).collect();
        fx.create(pair(PORTAL, "deals", "contacts"), &inputs).await;
        let mut receiver = fx
            .svc
            .stream_associations(common::list(PORTAL, "deals", 1, Some("contacts"), None))
            .await
            .unwrap();
        let mut sizes = Vec::new();
        let mut ids = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            let chunk = chunk.unwrap();
            sizes.push(chunk.records.len());
            ids.extend(chunk.records.iter().map(|r| r.to_id));
        }
        assert_eq!(sizes, vec![3, 3, 3, 1]);
        assert_eq!(ids, (1..=10).map(|c| c * 7).collect::<Vec<_>>());
    }

    /// Paged batch reads (the REST gateway's) come from one store read: each
    /// input gets its own page of whole records after its own cursor; a bad
    /// cursor or a record without associations fails only its input.
    pub async fn batch_pages_follow_each_record_from_its_cursor(fx: Fixture) {
        use association_service::service::PageInput;
        let billing = fx.billing_label().await;
        let companies = pair(PORTAL, "contacts", "companies");
        let mut inputs: Vec<_> = (1..=7).map(|c| input(1, c, &[])).collect();
        inputs.extend([
            input(1, 2, &[billing]),
            input(1, 5, &[billing]),
            input(2, 3, &[]),
        ]);
        assert!(fx.create(companies, &inputs).await.errors.is_empty());
        fx.link("contacts", 4, "deals", 9, &[]).await;
        let first = |id| PageInput {
            from_id: id,
            after: None,
        };
        let pages = |inputs: Vec<PageInput>| {
            let svc = Arc::clone(&fx.svc);
            async move {
                svc.page_many(companies, &inputs, 3)
                    .await
                    .expect("page_many")
            }
        };
        let records =
            |page: &association_service::service::AssociationPage| -> Vec<(i64, Vec<i32>)> {
                page.records
                    .iter()
                    .map(|r| (r.to_id, r.types.iter().map(|d| d.key.type_id).collect()))
                    .collect()
            };
        let bad = PageInput {
            from_id: 1,
            after: Some("not-a-cursor".into()),
        };
        let outcome = pages(vec![first(1), first(2), first(3), first(1), bad, first(4)]).await;
        let ok: Vec<usize> = outcome.results.iter().map(|(i, _)| *i).collect();
        assert_eq!(ok, vec![0, 1, 3]);
        let failed: Vec<usize> = outcome.errors.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, vec![2, 4, 5]);
        assert!(matches!(
            outcome.errors[0].1,
            DomainError::NoAssociations { .. }
        ));
        assert!(matches!(outcome.errors[1].1, DomainError::InvalidCursor));
        let (unlabeled, labelled) = (hs(279).type_id, billing.type_id);
        // The contact's first company became its primary (type 1).
        assert_eq!(
            records(&outcome.results[0].1),
            vec![
                (1, vec![1, unlabeled]),
                (2, vec![unlabeled, labelled]),
                (3, vec![unlabeled])
            ]
        );
        assert_eq!(
            records(&outcome.results[1].1),
            vec![(3, vec![1, unlabeled])]
        );
        assert!(outcome.results[1].1.next.is_none());
        assert_eq!(
            records(&outcome.results[2].1),
            records(&outcome.results[0].1)
        );
        // Following the cursor pages through the rest in whole records.
        let mut all = records(&outcome.results[0].1);
        let mut next = outcome.results[0].1.next.clone();
        while let Some(after) = next {
            let mut outcome = pages(vec![PageInput {
                from_id: 1,
                after: Some(after),
            }])
            .await;
            let (_, page) = outcome.results.pop().expect("a page");
            all.extend(records(&page));
            next = page.next;
        }
        assert_eq!(all, fx.read(PORTAL, "contacts", 1, "companies").await);
        assert_eq!(all.len(), 7);

        // Streamed (as the gateway answers), the same read fails the same
        // inputs before its first page, and gives the same pages in input
        // order, in chunks of about three records (the fixture's chunk size).
        let bad = PageInput {
            from_id: 1,
            after: Some("not-a-cursor".into()),
        };
        let inputs = vec![first(1), first(2), first(3), first(1), bad, first(4)];
        let whole = pages(inputs.clone()).await;
        let mut streamed = fx.svc.stream_pages(companies, &inputs, 3).await.unwrap();
        let failed: Vec<usize> = streamed.errors.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, vec![2, 4, 5]);
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        while let Some(chunk) = streamed.pages.recv().await {
            let chunk = chunk.unwrap();
            sizes.push(chunk.pages.len());
            got.extend(
                chunk
                    .pages
                    .iter()
                    .map(|(i, p)| (*i, records(p), p.next.clone())),
            );
        }
        let want: Vec<_> = (whole.results.iter())
            .map(|(i, p)| (*i, records(p), p.next.clone()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(sizes, vec![1, 2]);
    }

    /// A page is read with rows enough for its records when each record
    /// holds every type of the pair: it is full, never a record short.
    pub async fn a_page_of_records_holding_every_type_is_full(fx: Fixture) {
        use association_service::service::PageInput;
        let companies = pair(PORTAL, "contacts", "companies");
        let mut labels = Vec::new();
        for name in ["Billing", "Legal", "Owner"] {
            let key = name.to_lowercase();
            let made = fx.svc.create_label(ACTOR, companies, name, &key, None);
            labels.push(made.await.unwrap()[0].key);
        }
        // Company 10 is the contact's primary too: all five types.
        let inputs: Vec<_> = (10..=13).map(|c| input(1, c, &labels)).collect();
        assert!(fx.create(companies, &inputs).await.errors.is_empty());
        let read = |after: Option<String>| {
            let svc = Arc::clone(&fx.svc);
            async move {
                let input = [PageInput { from_id: 1, after }];
                let mut outcome = svc.page_many(companies, &input, 3).await.unwrap();
                let (_, page) = outcome.results.pop().expect("a page");
                let ids: Vec<i64> = page.records.iter().map(|r| r.to_id).collect();
                let types: Vec<usize> = page.records.iter().map(|r| r.types.len()).collect();
                (ids, types, page.next)
            }
        };
        let (ids, types, next) = read(None).await;
        assert_eq!((ids, types), (vec![10, 11, 12], vec![5, 4, 4]));
        let (ids, types, next) = read(Some(next.expect("a second page"))).await;
        assert_eq!((ids, types, next), (vec![13], vec![4], None));
    }
}

/// Merging records: associations move to the primary, de-duplicated, or
/// nothing changes when a limit would break.
mod merge_suite {
    use super::*;
    use association_service::domain::feed::{ChangeKind, FeedStart};

    impl Fixture {
        async fn merge(
            &self,
            object_type: &str,
            primary: i64,
            merged: i64,
        ) -> Result<(u64, u64), ServiceError> {
            // An unknown type fails where the front ends resolve it.
            let object_type = association_service::domain::ObjectType::parse(object_type)?;
            self.svc
                .merge(PORTAL, object_type, primary, merged)
                .await
                .map(|m| (m.removed, m.created))
        }

        /// Every change of the portal so far, in order.
        async fn changes(&self) -> Vec<association_service::domain::feed::Change> {
            let head = self.svc.feed_head(PORTAL).await.unwrap();
            let mut receiver = self
                .svc
                .watch_changes(PORTAL, FeedStart::Beginning)
                .await
                .unwrap();
            let mut changes = Vec::new();
            while changes
                .last()
                .map_or(0, |c: &association_service::domain::feed::Change| c.seq)
                < head
            {
                let chunk = receiver.recv().await.expect("feed open").unwrap();
                changes.extend(chunk.changes.into_iter().map(|(c, _)| c));
            }
            changes
        }
    }

    fn merge_error(result: Result<(u64, u64), ServiceError>) -> DomainError {
        match result {
            Err(ServiceError::Domain(err @ DomainError::MergeLimitExceeded { .. })) => err,
            other => panic!("expected a merge limit error, got {other:?}"),
        }
    }

    pub async fn custom_object_names_are_one_per_type_and_unique_per_portal(fx: Fixture) {
        use association_service::domain::admin::AdminEvent;
        use association_service::domain::ObjectType;
        let cars = ObjectType::parse("2-101").unwrap();
        let boats = ObjectType::parse("2-102").unwrap();
        let names = |portal: i64| {
            let svc = Arc::clone(&fx.svc);
            async move {
                svc.custom_objects(portal)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|o| (o.object_type.to_string(), o.name, o.fully_qualified_name))
                    .collect::<Vec<_>>()
            }
        };
        let (named, before) = fx
            .svc
            .name_custom_object(ACTOR, PORTAL, cars, "Cars")
            .await
            .unwrap();
        assert_eq!((named.name.as_str(), before), ("cars", None));
        assert_eq!(named.fully_qualified_name, format!("p{PORTAL}_cars"));
        // The name is taken, in any case; a standard object and a bad name
        // are refused; nothing changes.
        let taken = fx
            .svc
            .name_custom_object(ACTOR, PORTAL, boats, "CARS")
            .await;
        assert!(
            matches!(
                &taken,
                Err(ServiceError::Domain(DomainError::ObjectNameTaken { name, object_type }))
                    if name == "cars" && *object_type == cars
            ),
            "{taken:?}"
        );
        for (object_type, name) in [
            (ObjectType::CONTACT, "people"),
            (boats, "bad-name"),
            (boats, "9boats"),
        ] {
            let refused = fx
                .svc
                .name_custom_object(ACTOR, PORTAL, object_type, name)
                .await;
            assert!(
                matches!(
                    refused,
                    Err(ServiceError::Domain(DomainError::InvalidArgument(_)))
                ),
                "{object_type} {name}: {refused:?}"
            );
        }
        let cars_only = vec![(
            "2-101".to_string(),
            "cars".to_string(),
            format!("p{PORTAL}_cars"),
        )];
        assert_eq!(names(PORTAL).await, cars_only);
        // A rename frees the old name; another portal's names are its own.
        let (_, before) = fx
            .svc
            .name_custom_object(ACTOR, PORTAL, cars, "autos")
            .await
            .unwrap();
        assert_eq!(before.as_deref(), Some("cars"));
        fx.svc
            .name_custom_object(ACTOR, PORTAL, boats, "cars")
            .await
            .unwrap();
        fx.svc
            .name_custom_object(ACTOR, PORTAL + 1, cars, "autos")
            .await
            .unwrap();
        // An empty name takes the name away.
        let (unnamed, before) = fx
            .svc
            .name_custom_object(ACTOR, PORTAL, cars, " ")
            .await
            .unwrap();
        assert_eq!(
            (unnamed.name.as_str(), before.as_deref()),
            ("", Some("autos"))
        );
        assert_eq!(
            names(PORTAL).await,
            vec![(
                "2-102".to_string(),
                "cars".to_string(),
                format!("p{PORTAL}_cars")
            )]
        );
        assert_eq!(names(PORTAL + 1).await.len(), 1);
        // Each naming is audited with the names before and after.
        let events = fx.svc.audit_events(PORTAL, 0, 100).await.unwrap();
        let seen: Vec<(AdminEvent, String, Option<String>, Option<String>)> = events
            .iter()
            .map(|(_, c)| {
                (
                    c.event,
                    c.from_object_type.clone(),
                    c.before.object_name.clone(),
                    c.after.object_name.clone(),
                )
            })
            .collect();
        let named = |t: &str, before: Option<&str>, after: Option<&str>| {
            (
                AdminEvent::CustomObjectNamed,
                t.to_string(),
                before.map(String::from),
                after.map(String::from),
            )
        };
        assert_eq!(
            seen,
            vec![
                named("2-101", None, Some("cars")),
                named("2-101", Some("cars"), Some("autos")),
                named("2-102", None, Some("cars")),
                named("2-101", Some("autos"), None),
            ]
        );
        // Two types named alike at once: exactly one gets the name.
        for round in 0..5 {
            let name = format!("race_{round}");
            let (a, b) = (
                ObjectType::parse(&format!("2-{}", 300 + 2 * round)).unwrap(),
                ObjectType::parse(&format!("2-{}", 301 + 2 * round)).unwrap(),
            );
            let (first, second) = tokio::join!(
                fx.svc.name_custom_object(ACTOR, PORTAL, a, &name),
                fx.svc.name_custom_object(ACTOR, PORTAL, b, &name)
            );
            let taken = |r: &Result<_, ServiceError>| {
                matches!(
                    r,
                    Err(ServiceError::Domain(DomainError::ObjectNameTaken { .. }))
                )
            };
            assert!(
                (first.is_ok() && taken(&second)) || (second.is_ok() && taken(&first)),
                "round {round}: {first:?} {second:?}"
            );
        }
        let raced = names(PORTAL)
            .await
            .iter()
            .filter(|(_, n, _)| n.starts_with("race_"))
            .count();
        assert_eq!(raced, 5);
    }

    pub async fn merged_ids_resolve_to_their_survivor_for_reads_and_writes(fx: Fixture) {
        fx.link("contacts", 1, "companies", 10, &[]).await;
        fx.link("contacts", 2, "companies", 11, &[]).await;
        fx.link("contacts", 2, "companies", 12, &[]).await;
        fx.link("contacts", 3, "companies", 20, &[]).await;
        fx.merge("contacts", 1, 2).await.unwrap();
        // A write naming contact 2 acts on contact 1, and the feed names 1.
        let head = fx.svc.feed_head(PORTAL).await.unwrap();
        assert_eq!(
            fx.link("contacts", 2, "companies", 13, &[]).await,
            vec![279]
        );
        let fed: Vec<(ChangeKind, i64, i64)> = fx
            .changes()
            .await
            .iter()
            .filter(|c| c.seq > head && c.row.from_type.to_string() == "0-1")
            .map(|c| (c.kind, c.row.from_id, c.row.to_id))
            .collect();
        assert_eq!(fed, vec![(ChangeKind::Created, 1, 13)]);
        // So do archives (by pair and by type) and the reverse direction.
        let archived = fx
            .svc
            .archive(pair(PORTAL, "contacts", "companies"), &[(2, vec![10])])
            .await
            .unwrap();
        // Both directions of the unlabeled and the primary type.
        assert_eq!(archived.removed, 4, "{archived:?}");
        let labels = fx
            .svc
            .archive_labels(
                pair(PORTAL, "companies", "contacts"),
                &[input(12, 2, &[hs(280)])],
            )
            .await
            .unwrap();
        assert!(labels.errors.is_empty(), "{labels:?}");
        let ids = |rows: Vec<(i64, Vec<i32>)>| rows.into_iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(
            ids(fx.read(PORTAL, "contacts", 1, "companies").await),
            vec![11, 13]
        );
        // Reads: streams, pages, batch pages, the record itself.
        assert_eq!(
            ids(fx.read(PORTAL, "contacts", 2, "companies").await),
            vec![11, 13]
        );
        let page = fx
            .svc
            .page_associations(pair(PORTAL, "contacts", "companies"), 2, None, 10)
            .await
            .unwrap();
        assert_eq!(
            page.records.iter().map(|r| r.to_id).collect::<Vec<_>>(),
            vec![11, 13]
        );
        let contact = association_service::domain::ObjectType::CONTACT;
        assert_eq!(fx.svc.record_by_id(PORTAL, contact, 2).await.unwrap().id, 1);
        // Merging the survivor away moves the older id along: 2 -> 1 -> 3.
        fx.merge("contacts", 3, 1).await.unwrap();
        assert_eq!(
            ids(fx.read(PORTAL, "contacts", 2, "companies").await),
            vec![11, 13, 20]
        );
        assert_eq!(fx.svc.record_by_id(PORTAL, contact, 1).await.unwrap().id, 3);
        // Two ids of one survivor: merged already, nothing moves.
        assert_eq!(fx.merge("contacts", 2, 1).await.unwrap(), (0, 0));
        // Another portal's contact 2 is its own.
        fx.create(
            pair(PORTAL + 1, "contacts", "companies"),
            &[input(2, 99, &[])],
        )
        .await;
        assert_eq!(
            ids(fx.read(PORTAL + 1, "contacts", 2, "companies").await),
            vec![99]
        );
        fx.assert_counters_exact().await;
    }

    pub async fn a_merge_into_a_new_id_moves_both_records_and_both_ids_resolve(fx: Fixture) {
        let contact = association_service::domain::ObjectType::CONTACT;
        // Contact 1: companies 10 (its primary) and 11; contact 2: companies
        // 11 (its primary) and 12, and contact 1 itself.
        fx.link("contacts", 1, "companies", 10, &[]).await;
        fx.link("contacts", 1, "companies", 11, &[]).await;
        fx.link("contacts", 2, "companies", 11, &[]).await;
        fx.link("contacts", 2, "companies", 12, &[]).await;
        fx.link("contacts", 2, "contacts", 1, &[]).await;
        let before = fx.svc.feed_head(PORTAL).await.unwrap();
        let merged = fx
            .svc
            .merge_into(PORTAL, contact, 1, 2, Some(50))
            .await
            .unwrap();
        assert_eq!(merged.primary_id, 50);
        let companies = vec![(10, vec![1, 279]), (11, vec![279]), (12, vec![279])];
        assert_eq!(
            fx.read(PORTAL, "contacts", 50, "companies").await,
            companies,
            "the primary's primary company stays primary; 11 is not doubled"
        );
        for old in [1, 2] {
            assert_eq!(
                fx.read(PORTAL, "contacts", old, "companies").await,
                companies
            );
            assert_eq!(
                fx.svc.record_by_id(PORTAL, contact, old).await.unwrap().id,
                50
            );
        }
        assert!(fx.read(PORTAL, "contacts", 50, "contacts").await.is_empty());
        assert_eq!(
            fx.read(PORTAL, "companies", 11, "contacts").await,
            vec![(50, vec![280])]
        );
        // The feed: one marker per record moved, 1 -> 50 then 2 -> 50.
        let markers: Vec<(i64, i64)> = fx
            .changes()
            .await
            .iter()
            .filter(|c| c.seq > before && c.kind == ChangeKind::Merged)
            .map(|c| (c.row.from_id, c.row.to_id))
            .collect();
        assert_eq!(markers, vec![(1, 50), (2, 50)]);
        // Again, or named by any of the three ids: nothing left to move.
        let again = fx
            .svc
            .merge_into(PORTAL, contact, 2, 1, Some(50))
            .await
            .unwrap();
        assert_eq!((again.primary_id, again.removed, again.created), (50, 0, 0));
        fx.assert_counters_exact().await;

        // A limit the merged record would pass fails the whole merge: the
        // first record's move is undone with it.
        fx.set_limit("contacts", "deals", hs(4), 2).await;
        fx.link("contacts", 5, "deals", 31, &[]).await;
        fx.link("contacts", 5, "deals", 32, &[]).await;
        fx.link("contacts", 6, "deals", 33, &[]).await;
        let refused = fx.svc.merge_into(PORTAL, contact, 5, 6, Some(60)).await;
        assert!(
            matches!(
                refused,
                Err(ServiceError::Domain(DomainError::MergeLimitExceeded { .. }))
            ),
            "{refused:?}"
        );
        let ids = |rows: Vec<(i64, Vec<i32>)>| rows.into_iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(
            ids(fx.read(PORTAL, "contacts", 5, "deals").await),
            vec![31, 32]
        );
        assert_eq!(ids(fx.read(PORTAL, "contacts", 6, "deals").await), vec![33]);
        assert!(fx.read(PORTAL, "contacts", 60, "deals").await.is_empty());
        assert_eq!(fx.svc.record_by_id(PORTAL, contact, 5).await.unwrap().id, 5);
        // A bad new id is refused before anything happens.
        let bad = fx.svc.merge_into(PORTAL, contact, 5, 6, Some(0)).await;
        assert!(
            matches!(
                bad,
                Err(ServiceError::Domain(DomainError::InvalidId { .. }))
            ),
            "{bad:?}"
        );
        fx.assert_counters_exact().await;
    }

    pub async fn merge_moves_associations_to_the_primary_without_duplicates(fx: Fixture) {
        // Contact 1: companies 10 (its primary) and 11. Contact 2: companies
        // 11 (its primary) and 12, deal 30, and contact 1 itself.
        fx.link("contacts", 1, "companies", 10, &[]).await;
        fx.link("contacts", 1, "companies", 11, &[]).await;
        fx.link("contacts", 2, "companies", 11, &[]).await;
        fx.link("contacts", 2, "companies", 12, &[]).await;
        fx.link("contacts", 2, "deals", 30, &[]).await;
        fx.link("contacts", 2, "contacts", 1, &[]).await;
        let before = fx.svc.feed_head(PORTAL).await.unwrap();

        assert_eq!(fx.merge("contacts", 1, 2).await.unwrap(), (10, 4));

        assert_eq!(
            fx.read(PORTAL, "contacts", 1, "companies").await,
            vec![(10, vec![1, 279]), (11, vec![279]), (12, vec![279])],
            "the primary keeps its own primary company; 11 is not doubled"
        );
        // The merged-away id now names the primary.
        assert_eq!(
            fx.read(PORTAL, "contacts", 2, "companies").await,
            fx.read(PORTAL, "contacts", 1, "companies").await
        );
        assert!(
            fx.read(PORTAL, "contacts", 1, "contacts").await.is_empty(),
            "no self-association"
        );
        assert_eq!(
            fx.read(PORTAL, "companies", 11, "contacts").await,
            vec![(1, vec![280])]
        );
        assert_eq!(
            fx.read(PORTAL, "companies", 12, "contacts").await,
            vec![(1, vec![280])]
        );
        assert_eq!(
            fx.read(PORTAL, "deals", 30, "contacts").await,
            vec![(1, vec![3])]
        );
        fx.assert_counters_exact().await;

        let changes = fx.changes().await;
        let merge: Vec<_> = changes.iter().filter(|c| c.seq > before).collect();
        assert_eq!(
            merge.len(),
            1 + 10 + 4,
            "the marker, each removed and each created row"
        );
        assert_eq!(merge[0].kind, ChangeKind::Merged);
        assert_eq!((merge[0].row.from_id, merge[0].row.to_id), (2, 1));
        assert_eq!(
            merge[1..11]
                .iter()
                .filter(|c| c.kind == ChangeKind::Archived)
                .count(),
            10
        );
        assert_eq!(
            merge[11..]
                .iter()
                .filter(|c| c.kind == ChangeKind::Created)
                .count(),
            4
        );

        // The primary now holds contact 2's associations: merging again moves nothing.
        assert_eq!(fx.merge("contacts", 1, 2).await.unwrap(), (0, 0));
    }

    pub async fn merge_fails_whole_when_the_primary_would_pass_its_limit(fx: Fixture) {
        fx.set_limit("contacts", "companies", hs(279), 2).await;
        fx.link("contacts", 1, "companies", 10, &[]).await;
        fx.link("contacts", 1, "companies", 11, &[]).await;
        fx.link("contacts", 2, "companies", 11, &[]).await;
        fx.link("contacts", 2, "companies", 12, &[]).await;
        let head = fx.svc.feed_head(PORTAL).await.unwrap();

        let err = merge_error(fx.merge("contacts", 1, 2).await);
        assert_eq!(
            err.to_string(),
            format!("Association configuration limits are exceeded in portal {PORTAL} when merging 2 into 1 of object type 0-1")
        );
        assert_eq!(
            (
                association_service::status_table::status_for(err.kind()).category,
                err.kind()
            ),
            (
                "VALIDATION_ERROR",
                association_service::domain::ErrorKind::LimitExceeded
            )
        );

        assert_eq!(
            fx.read(PORTAL, "contacts", 2, "companies").await,
            vec![(11, vec![1, 279]), (12, vec![279])],
            "nothing moved"
        );
        assert_eq!(fx.read(PORTAL, "contacts", 1, "companies").await.len(), 2);
        assert_eq!(
            fx.svc.feed_head(PORTAL).await.unwrap(),
            head,
            "nothing in the feed"
        );
        fx.assert_counters_exact().await;

        // Without company 12 the combined result fits: 10 and 11.
        fx.svc
            .archive(pair(PORTAL, "contacts", "companies"), &[(2, vec![12])])
            .await
            .unwrap();
        fx.merge("contacts", 1, 2).await.unwrap();
        assert_eq!(fx.read(PORTAL, "contacts", 1, "companies").await.len(), 2);
        fx.assert_counters_exact().await;
    }

    pub async fn merge_fails_whole_when_a_counterpart_would_pass_its_inverse_limit(fx: Fixture) {
        // Contact 5 holds companies 20 and 21; a limit of 1 set afterwards
        // is not retroactive, but blocks any new company for contact 5.
        fx.link("contacts", 5, "companies", 20, &[]).await;
        fx.link("contacts", 5, "companies", 21, &[]).await;
        fx.link("contacts", 6, "companies", 21, &[]).await;
        fx.set_limit("contacts", "companies", hs(279), 1).await;

        // Merging company 21 into 22 would give contact 5 company 22.
        let err = merge_error(fx.merge("companies", 22, 21).await);
        assert!(err
            .to_string()
            .contains("when merging 21 into 22 of object type 0-2"));
        assert_eq!(fx.read(PORTAL, "companies", 21, "contacts").await.len(), 2);
        assert!(fx
            .read(PORTAL, "companies", 22, "contacts")
            .await
            .is_empty());
        fx.assert_counters_exact().await;

        // Merging 21 into 20 gives contact 5 nothing new: it succeeds and
        // contact 5 ends with one company.
        fx.merge("companies", 20, 21).await.unwrap();
        assert_eq!(
            fx.read(PORTAL, "contacts", 5, "companies").await,
            vec![(20, vec![1, 279])]
        );
        assert_eq!(
            fx.read(PORTAL, "contacts", 6, "companies").await,
            vec![(20, vec![1, 279])]
        );
        fx.assert_counters_exact().await;
    }

    pub async fn merge_rejects_bad_input_without_side_effects(fx: Fixture) {
        fx.link("contacts", 1, "companies", 10, &[]).await;
        for (object_type, primary, merged) in [
            ("contacts", 1, 1),
            ("contacts", 0, 1),
            ("contacts", 1, -4),
            ("nope", 1, 2),
        ] {
            let result = fx.merge(object_type, primary, merged).await;
            assert!(
                matches!(&result, Err(ServiceError::Domain(e)) if e.kind() == association_service::domain::ErrorKind::InvalidArgument),
                "{object_type} {primary} {merged}: {result:?}"
            );
        }
        assert_eq!(fx.read(PORTAL, "contacts", 1, "companies").await.len(), 1);
    }

    pub async fn concurrent_merges_and_creates_keep_limits_and_counters_exact(fx: Fixture) {
        const LIMIT: usize = 5;
        fx.set_limit("contacts", "companies", hs(279), LIMIT as i64)
            .await;
        // Contacts 1..=8, two companies each (contact c: 100c, 100c + 1).
        for c in 1..=8i64 {
            fx.link("contacts", c, "companies", 100 * c, &[]).await;
            fx.link("contacts", c, "companies", 100 * c + 1, &[]).await;
        }
        let fx = Arc::new(fx);
        let mut tasks = tokio::task::JoinSet::new();
        // Contacts 2..=4 merge into 1 and 6..=8 into 5, while both primaries
        // and the merged contacts gain companies.
        for (primary, merged) in [(1, 2), (1, 3), (1, 4), (5, 6), (5, 7), (5, 8)] {
            let fx = fx.clone();
            tasks.spawn(async move {
                match fx.merge("contacts", primary, merged).await {
                    Ok(_) => Ok(()),
                    Err(err) => Err(merge_error(Err(err))),
                }
            });
        }
        for contact in 1..=8i64 {
            for company in 0..3 {
                let fx = fx.clone();
                tasks.spawn(async move {
                    let outcome = fx
                        .create(
                            pair(PORTAL, "contacts", "companies"),
                            &[input(contact, 5000 + company, &[])],
                        )
                        .await;
                    match outcome.errors.into_iter().next() {
                        None => Ok(()),
                        Some((_, err)) => {
                            limit_violation(&err);
                            Err(err)
                        }
                    }
                });
            }
        }
        let mut merges_failed = 0;
        while let Some(result) = tasks.join_next().await {
            if let Err(DomainError::MergeLimitExceeded { .. }) = result.unwrap() {
                merges_failed += 1;
            }
        }
        for contact in 1..=8 {
            let companies = fx.read(PORTAL, "contacts", contact, "companies").await;
            assert!(
                companies.len() <= LIMIT,
                "contact {contact} holds {} companies",
                companies.len()
            );
            let primaries = companies.iter().filter(|(_, t)| t.contains(&1)).count();
            assert!(
                primaries <= 1,
                "contact {contact} has {primaries} primaries"
            );
        }
        // Two companies each and a limit of 5: at most one merge into each
        // primary can succeed before the limit is reached, and exactly the
        // merges that succeeded left their contact resolving to the primary.
        let contact = association_service::domain::ObjectType::CONTACT;
        let mut merged_away = 0;
        for (primary, merged) in [(1, 2), (1, 3), (1, 4), (5, 6), (5, 7), (5, 8)] {
            let now = fx.svc.record_by_id(PORTAL, contact, merged).await.unwrap();
            if now.id == primary {
                merged_away += 1;
            }
        }
        assert!(merged_away <= 2, "{merged_away} merges succeeded");
        assert_eq!(merges_failed, 6 - merged_away);
        fx.assert_counters_exact().await;
    }
}

impl Fixture {
    /// Creates the symmetric contact -> company label "Billing"; its type.
    async fn billing_label(&self) -> TypeKey {
        self.svc
            .create_label(
                ACTOR,
                pair(PORTAL, "contacts", "companies"),
                "Billing",
                "billing",
                None,
            )
            .await
            .unwrap()[0]
            .key
    }

    async fn create_label_in(&self, portal: i64, label: &str) {
        self.svc
            .create_label(
                ACTOR,
                pair(portal, "contacts", "companies"),
                label,
                &label.to_lowercase(),
                None,
            )
            .await
            .unwrap();
    }
}

suite_on_every_backend!(
    pair_is_written_and_read_from_both_sides,
    labels_per_pair_are_capped,
    labels_imply_unlabeled_and_archiving_unlabeled_removes_labels,
    archive_removes_every_type_between_pairs,
    a_pair_named_both_ways_counts_once_and_self_is_refused,
    batch_commits_valid_items_and_reports_each_failure,
    the_platform_ceiling_applies_to_every_type,
    limits_outside_one_to_the_ceiling_are_rejected,
    label_limits_never_exceed_the_object_limit,
    lowering_a_limit_keeps_existing_associations_and_blocks_new_ones,
    limit_one_both_ways_makes_one_to_one,
    same_object_unlabeled_and_symmetric_labels_share_one_limit,
    asymmetric_labels_have_a_limit_per_direction,
    the_primary_company_is_first_then_moves_and_is_never_doubled,
    portals_never_see_or_count_each_other,
    recreating_an_association_is_not_counted_twice,
    custom_object_pairs_get_their_own_unlabeled_type,
    labels_can_be_renamed_and_deleted_with_their_uses,
    bad_input_is_rejected_without_side_effects,
    reads_stream_every_record_in_chunks,
    batch_pages_follow_each_record_from_its_cursor,
    a_page_of_records_holding_every_type_is_full,
    deleting_a_label_leaves_the_other_labels,
    admin_changes_are_audited_with_before_and_after,
    a_high_usage_report_lists_the_records_at_and_near_their_limits,
    usage_without_a_pair_covers_records_near_the_platform_ceiling,
    merged_ids_resolve_to_their_survivor_for_reads_and_writes,
    custom_object_names_are_one_per_type_and_unique_per_portal,
    merge_moves_associations_to_the_primary_without_duplicates,
    a_merge_into_a_new_id_moves_both_records_and_both_ids_resolve,
    merge_fails_whole_when_the_primary_would_pass_its_limit,
    merge_fails_whole_when_a_counterpart_would_pass_its_inverse_limit,
    merge_rejects_bad_input_without_side_effects,
    concurrent_merges_and_creates_keep_limits_and_counters_exact,
);
