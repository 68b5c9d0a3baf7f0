//! Limit insight on both stores: usage (records at and near a limit, the
//! largest, samples) exact after creates, archives, a merge and a lowered
//! limit; a preview equals what the applied change then reports and
//! changes nothing (feed, audit trail, admin log); the near-limit stream
//! resumes from every chunk; a plugin refuses a change by its impact; and a
//! seeded generator checks usage against counts taken from the exported
//! rows (`USAGE_SEED=n` replays a run).
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use association_service::domain::admin::{AdminChange, AdminEvent};
use association_service::domain::error::LimitSource;
use association_service::domain::limits::{LimitChange, LimitMode};
use association_service::domain::{DomainError, ObjectType, TypeKey};
use association_service::hooks::{
    AdminPlugin, FailurePolicy, HookError, Hooks, Pacing, PluginSettings, Verdict,
};
use association_service::service::{
    AssociationInput, AssociationService, LimitUsage, NearThreshold, ServiceError,
};
use common::{pair, Rng};

const PORTAL: i64 = 41;
const UNLABELED: TypeKey = TypeKey::hubspot(279);

fn link(from_id: i64, to_id: i64) -> AssociationInput {
    AssociationInput {
        from_id,
        to_id,
        types: vec![],
    }
}

async fn connect(svc: &AssociationService, contact: i64, companies: &[i64]) {
    let inputs: Vec<AssociationInput> = companies.iter().map(|c| link(contact, *c)).collect();
    let outcome = svc
        .create(pair(PORTAL, "contacts", "companies"), &inputs)
        .await
        .unwrap();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
}

async fn set_limit(svc: &AssociationService, max: i64, mode: LimitMode) {
    let outcome = svc
        .set_limits(
            "admin",
            pair(PORTAL, "contacts", "companies"),
            &[LimitChange {
                key: UNLABELED,
                max_to_object_ids: max,
            }],
            mode,
        )
        .await
        .unwrap();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
}

/// The contact -> company unlabeled type's usage.
async fn unlabeled_usage(svc: &AssociationService) -> LimitUsage {
    let contacts_companies = Some((ObjectType::CONTACT, ObjectType::COMPANY));
    svc.limit_usage(PORTAL, contacts_companies, 0.8, 5)
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.def.key == UNLABELED)
        .expect("the unlabeled type is reported")
}

/// Every record the near-limit stream lists, resuming from each chunk's
/// cursor in turn (chunks of 2 here).
async fn near_records(svc: &Arc<AssociationService>, at_least: i64) -> Vec<(i64, i64)> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut receiver = svc
            .records_near_limit(
                pair(PORTAL, "contacts", "companies"),
                UNLABELED,
                NearThreshold::AtLeast(at_least),
                cursor.as_deref(),
            )
            .await
            .unwrap();
        let Some(chunk) = receiver.recv().await else {
            return all;
        };
        let chunk = chunk.unwrap();
        all.extend(chunk.records.iter().copied());
        cursor = Some(chunk.cursor);
    }
}

async fn audit_len(svc: &Arc<AssociationService>) -> usize {
    let mut receiver = svc.stream_audit_events(PORTAL, 0).await.unwrap();
    let mut n = 0;
    while let Some(chunk) = receiver.recv().await {
        chunk.unwrap();
        n += 1;
    }
    n
}

async fn usage_follows_writes_and_a_preview_is_what_the_change_does(backend: &str) {
    let (svc, _store) = common::service(backend, common::settings(10_000, 2)).await;
    connect(&svc, 1, &[10, 11, 12, 13, 14]).await;
    connect(&svc, 2, &[10, 11, 12]).await;
    connect(&svc, 3, &[10]).await;
    connect(&svc, 4, &[20, 21]).await;
    set_limit(&svc, 5, LimitMode::Create).await;

    let usage = unlabeled_usage(&svc).await;
    assert_eq!(
        (usage.limit, usage.source, usage.near_from),
        (5, LimitSource::User, 4)
    );
    assert_eq!(
        (
            usage.usage.at_or_above,
            usage.usage.near,
            usage.usage.largest
        ),
        (1, 0, 5)
    );
    assert_eq!(usage.usage.at_or_above_samples, vec![(1, 5)]);
    let inverse = svc
        .limit_usage(
            PORTAL,
            Some((ObjectType::CONTACT, ObjectType::COMPANY)),
            0.8,
            5,
        )
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.def.key == TypeKey::hubspot(280))
        .expect("the other direction is reported too");
    assert_eq!(
        (inverse.limit, inverse.source, inverse.usage.largest),
        (10_000, LimitSource::Platform, 3),
        "company 10 has three contacts"
    );

    // An archive moves contact 1 from at the limit to near it.
    svc.archive(pair(PORTAL, "contacts", "companies"), &[(1, vec![14])])
        .await
        .unwrap();
    let usage = unlabeled_usage(&svc).await;
    assert_eq!((usage.usage.at_or_above, usage.usage.near), (0, 1));
    assert_eq!(usage.usage.near_samples, vec![(1, 4)]);

    // Preview lowering the limit to 3: two records already hold 3 or more.
    let feed = svc.feed_head(PORTAL).await.unwrap();
    let audit = audit_len(&svc).await;
    let lower = [LimitChange {
        key: UNLABELED,
        max_to_object_ids: 3,
    }];
    let previews = svc
        .preview_limits(
            pair(PORTAL, "contacts", "companies"),
            &lower,
            LimitMode::Update,
            5,
        )
        .await
        .unwrap();
    let impact = previews[0].outcome.clone().expect("a valid change");
    assert_eq!((impact.limit_before, impact.limit_after), (5, 3));
    assert_eq!(impact.records_at_or_above, 2);
    assert_eq!(impact.samples, vec![(1, 4), (2, 3)]);
    assert_eq!(
        svc.feed_head(PORTAL).await.unwrap(),
        feed,
        "the feed is untouched"
    );
    assert_eq!(audit_len(&svc).await, audit, "the audit trail is untouched");
    assert_eq!(
        unlabeled_usage(&svc).await.limit,
        5,
        "the limit is untouched"
    );
    // An invalid change previews as refused, with the change's own error.
    let refused = svc
        .preview_limits(
            pair(PORTAL, "contacts", "companies"),
            &[LimitChange {
                key: UNLABELED,
                max_to_object_ids: 0,
            }],
            LimitMode::Update,
            5,
        )
        .await
        .unwrap();
    assert!(matches!(
        refused[0].outcome,
        Err(DomainError::InvalidLimit(_))
    ));

    // Applied, the change reports what the preview said.
    set_limit(&svc, 3, LimitMode::Update).await;
    let usage = unlabeled_usage(&svc).await;
    assert_eq!(usage.usage.at_or_above, impact.records_at_or_above);
    assert_eq!(usage.usage.at_or_above_samples, impact.samples);
    assert_eq!(audit_len(&svc).await, audit + 1);

    // A merge: contact 3 (company 10) takes contact 4's two companies.
    svc.merge(PORTAL, ObjectType::CONTACT, 3, 4).await.unwrap();
    let usage = unlabeled_usage(&svc).await;
    assert_eq!((usage.usage.at_or_above, usage.usage.largest), (3, 4));
    assert_eq!(
        usage.usage.at_or_above_samples,
        vec![(1, 4), (3, 3), (2, 3)]
    );

    // The stream lists the same records, largest first, across resumes.
    assert_eq!(near_records(&svc, 3).await, vec![(1, 4), (3, 3), (2, 3)]);
    assert_eq!(near_records(&svc, 4).await, vec![(1, 4)]);
    assert_eq!(near_records(&svc, 5).await, vec![]);

    // Purging falls back to the ceiling: nobody is at it.
    let purge = svc
        .preview_purge(pair(PORTAL, "contacts", "companies"), &[UNLABELED], 5)
        .await
        .unwrap();
    let impact = purge[0].outcome.clone().unwrap();
    assert_eq!((impact.limit_before, impact.limit_after), (3, 10_000));
    assert_eq!(impact.records_at_or_above, 0);
}

/// Refuses a limit that any record already holds more than.
struct RefuseRetroactive;

#[async_trait::async_trait]
impl AdminPlugin for RefuseRetroactive {
    async fn validate_change(&self, change: &AdminChange) -> Result<Verdict, HookError> {
        match change.impacts.iter().find(|i| i.records_at_or_above > 0) {
            Some(impact) => Ok(Verdict::Deny(format!(
                "{} records already hold {} or more",
                impact.records_at_or_above, impact.limit_after
            ))),
            None => Ok(Verdict::Allow),
        }
    }

    async fn change_committed(
        &self,
        _key: &str,
        _seq: i64,
        _change: &AdminChange,
    ) -> Result<(), HookError> {
        Ok(())
    }
}

async fn a_plugin_refuses_a_limit_by_its_impact(backend: &str) {
    let test_store = common::fresh_store(backend).await;
    let store = common::open(&test_store).await;
    let mut hooks = Hooks::new(Arc::clone(&store), Pacing::default());
    hooks.register(
        PluginSettings {
            name: "refuse-retroactive".into(),
            events: vec![AdminEvent::LimitsCreated, AdminEvent::LimitsUpdated],
            timeout: Duration::from_secs(5),
            failure_policy: FailurePolicy::Closed,
        },
        Arc::new(RefuseRetroactive),
        true,
    );
    let svc = Arc::new(AssociationService::with_hooks(
        store,
        common::settings(10_000, 100),
        Arc::new(hooks),
    ));
    connect(&svc, 1, &[10, 11, 12]).await;
    set_limit(&svc, 5, LimitMode::Create).await;
    let refused = svc
        .set_limits(
            "admin",
            pair(PORTAL, "contacts", "companies"),
            &[LimitChange {
                key: UNLABELED,
                max_to_object_ids: 2,
            }],
            LimitMode::Update,
        )
        .await;
    match refused {
        Err(ServiceError::Domain(DomainError::ChangeDenied { message, .. })) => {
            assert_eq!(message, "1 records already hold 2 or more")
        }
        other => panic!("expected the plugin's refusal, got {other:?}"),
    }
    assert_eq!(unlabeled_usage(&svc).await.limit, 5, "nothing changed");
    // A limit no record holds yet passes.
    set_limit(&svc, 4, LimitMode::Update).await;
    assert_eq!(unlabeled_usage(&svc).await.limit, 4);
}

/// Random creates and archives among a few contacts and companies, with
/// a limit set, lowered and purged on the way; each type's usage must
/// equal the usage computed from the stored rows.
async fn usage_equals_the_rows_under_random_writes(backend: &str) {
    let (mut rng, seed) = Rng::from_env("USAGE_SEED");
    eprintln!("USAGE_SEED={seed}");
    let (svc, _store) = common::service(backend, common::settings(10_000, 3)).await;
    let mut limit: Option<u32> = None;
    for step in 0..120 {
        let contact = 1 + rng.below(6) as i64;
        let company = 100 + rng.below(8) as i64;
        match rng.below(10) {
            0..=5 => {
                svc.create(
                    pair(PORTAL, "contacts", "companies"),
                    &[link(contact, company)],
                )
                .await
                .unwrap();
            }
            6..=7 => {
                svc.archive(
                    pair(PORTAL, "contacts", "companies"),
                    &[(contact, vec![company])],
                )
                .await
                .unwrap();
            }
            _ => {
                let max = 1 + rng.below(6) as i64;
                let mode = if limit.is_some() {
                    LimitMode::Update
                } else {
                    LimitMode::Create
                };
                set_limit(&svc, max, mode).await;
                limit = Some(max as u32);
            }
        }
        if step % 20 != 19 {
            continue;
        }
        // The model: each record's count per type, from the rows.
        let mut counts: HashMap<(ObjectType, TypeKey), BTreeMap<i64, i64>> = HashMap::new();
        let mut receiver = svc
            .stream_export(common::export(PORTAL, None, None, None))
            .await
            .unwrap();
        while let Some(chunk) = receiver.recv().await {
            for (row, _) in chunk.unwrap().rows {
                *counts
                    .entry((row.from_type, row.key))
                    .or_default()
                    .entry(row.from_id)
                    .or_default() += 1;
            }
        }
        let usages = svc
            .limit_usage(
                PORTAL,
                Some((ObjectType::CONTACT, ObjectType::COMPANY)),
                0.5,
                3,
            )
            .await
            .unwrap();
        for usage in usages {
            let records = counts
                .remove(&(usage.def.from, usage.def.key))
                .unwrap_or_default();
            let at = i64::from(usage.limit);
            let mut ranked: Vec<(i64, i64)> = records.iter().map(|(id, n)| (*id, *n)).collect();
            ranked.sort_by_key(|r| std::cmp::Reverse((r.1, r.0)));
            let at_or_above: Vec<(i64, i64)> =
                ranked.iter().copied().filter(|r| r.1 >= at).collect();
            let near: Vec<(i64, i64)> = ranked
                .iter()
                .copied()
                .filter(|r| r.1 >= usage.near_from && r.1 < at)
                .collect();
            let context = format!("USAGE_SEED={seed} step {step} type {:?}", usage.def.key);
            assert_eq!(
                usage.usage.at_or_above,
                at_or_above.len() as u64,
                "{context}"
            );
            assert_eq!(usage.usage.near, near.len() as u64, "{context}");
            assert_eq!(
                usage.usage.largest,
                ranked.first().map(|r| r.1).unwrap_or(0),
                "{context}"
            );
            assert_eq!(
                usage.usage.at_or_above_samples,
                at_or_above.into_iter().take(3).collect::<Vec<_>>(),
                "{context}"
            );
            assert_eq!(
                usage.usage.near_samples,
                near.into_iter().take(3).collect::<Vec<_>>(),
                "{context}"
            );
            if usage.def.key == UNLABELED {
                assert_eq!(usage.limit, limit.unwrap_or(10_000), "{context}");
            }
        }
    }
}

macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test("sqlite").await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test("postgres").await; })*
        }
    };
}

on_every_backend!(
    usage_follows_writes_and_a_preview_is_what_the_change_does,
    a_plugin_refuses_a_limit_by_its_impact,
    usage_equals_the_rows_under_random_writes,
);
