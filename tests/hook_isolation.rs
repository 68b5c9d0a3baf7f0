//! Plugin delivery isolation (both stores): a plugin that keeps failing
//! for one portal still receives every other portal's admin changes at once
//! and in order, and the failing portal's changes arrive, in order, once
//! the plugin accepts them again; pruning the admin change log drops only
//! what the plugin has acknowledged.
mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use association_service::domain::admin::{AdminChange, AdminEvent};
use association_service::domain::limits::{LimitChange, LimitMode};
use association_service::domain::TypeKey;
use association_service::hooks::{
    AdminPlugin, FailurePolicy, HookError, Hooks, Pacing, PluginSettings, Verdict,
};
use association_service::service::AssociationService;
use common::pair;
use tokio::sync::mpsc;

/// Refuses every change of the portals in `refusing`; reports the keys of
/// the ones it accepts.
struct Picky {
    refusing: Mutex<HashSet<i64>>,
    accepted: mpsc::UnboundedSender<String>,
}

#[async_trait::async_trait]
impl AdminPlugin for Picky {
    async fn validate_change(&self, _change: &AdminChange) -> Result<Verdict, HookError> {
        Ok(Verdict::Allow)
    }

    async fn change_committed(
        &self,
        key: &str,
        _seq: i64,
        change: &AdminChange,
    ) -> Result<(), HookError> {
        if self.refusing.lock().unwrap().contains(&change.portal_id) {
            return Err(HookError::Failed("not now".into()));
        }
        self.accepted.send(key.to_string()).unwrap();
        Ok(())
    }
}

async fn change_limit(svc: &AssociationService, portal: i64, max: i64, mode: LimitMode) {
    let outcome = svc
        .set_limits(
            "admin",
            pair(portal, "contacts", "companies"),
            &[LimitChange {
                key: TypeKey::hubspot(279),
                max_to_object_ids: max,
            }],
            mode,
        )
        .await
        .unwrap();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
}

/// The next accepted key, within `within`.
async fn next(accepted: &mut mpsc::UnboundedReceiver<String>, within: Duration) -> String {
    tokio::time::timeout(within, accepted.recv())
        .await
        .expect("delivered in time")
        .expect("the plugin lives")
}

async fn a_failing_portal_never_holds_up_the_others(backend: &str) {
    let test_store = common::fresh_store(backend).await;
    let store = common::open(&test_store).await;
    let (sender, mut accepted) = mpsc::unbounded_channel();
    let plugin = Arc::new(Picky {
        refusing: Mutex::new(HashSet::from([1])),
        accepted: sender,
    });
    let mut hooks = Hooks::new(
        Arc::clone(&store),
        Pacing {
            first_retry: Duration::from_millis(100),
            max_retry: Duration::from_secs(60),
            poll: Duration::from_secs(60),
        },
    );
    hooks.register(
        PluginSettings {
            name: "picky".into(),
            events: vec![AdminEvent::LimitsCreated, AdminEvent::LimitsUpdated],
            timeout: Duration::from_secs(5),
            failure_policy: FailurePolicy::Open,
        },
        Arc::clone(&plugin) as Arc<dyn AdminPlugin>,
        false,
    );
    let hooks = Arc::new(hooks);
    let dispatchers = hooks.spawn_dispatchers();
    let svc =
        AssociationService::with_hooks(Arc::clone(&store), common::settings(10_000, 100), hooks);

    // Portal 1 keeps failing (its backoff grows towards a minute); portal
    // 2's changes, made after, each arrive at once.
    change_limit(&svc, 1, 5, LimitMode::Create).await;
    change_limit(&svc, 1, 6, LimitMode::Update).await;
    for (max, mode) in [
        (5, LimitMode::Create),
        (6, LimitMode::Update),
        (7, LimitMode::Update),
    ] {
        change_limit(&svc, 2, max, mode).await;
    }
    for seq in 1..=3 {
        assert_eq!(
            next(&mut accepted, Duration::from_secs(5)).await,
            format!("2:{seq}"),
            "portal 2's changes go out while portal 1 fails"
        );
    }
    // The admin log keeps what the plugin has not acknowledged (portal 1's
    // two changes) and drops what it has: at least portal 2's first two,
    // whose marks were stored before the third went out.
    let pruned = svc.prune_admin_log().await.unwrap();
    let left = |portal: i64| {
        let store = Arc::clone(&store);
        async move {
            store
                .admin_changes_after(portal, 0, 100)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(left(1).await, 2, "unacknowledged changes stay");
    assert!((2..=3).contains(&pruned), "pruned {pruned}");
    assert_eq!(left(2).await as u64, 3 - pruned);

    // Portal 1 accepts again: its changes arrive in order on its next try.
    plugin.refusing.lock().unwrap().clear();
    change_limit(&svc, 2, 8, LimitMode::Update).await;
    let mut delivered = Vec::new();
    for _ in 0..3 {
        delivered.push(next(&mut accepted, Duration::from_secs(30)).await);
    }
    let of_portal = |portal: &str| -> Vec<String> {
        delivered
            .iter()
            .filter(|k| k.starts_with(portal))
            .cloned()
            .collect()
    };
    assert_eq!(of_portal("2:"), ["2:4"]);
    assert_eq!(of_portal("1:"), ["1:1", "1:2"], "in order: {delivered:?}");
    for dispatcher in dispatchers {
        dispatcher.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_failing_portal_never_holds_up_the_others() {
    a_failing_portal_never_holds_up_the_others("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failing_portal_never_holds_up_the_others() {
    a_failing_portal_never_holds_up_the_others("postgres").await;
}
