//! The `Store` contract itself, below the service: what the service and the
//! hooks rely on of each method, written once and run on every backend
//! (SQLite, PostgreSQL, Citus). The conformance suite holds the domain
//! rules through the service; this one pins the store's own answers
//! (leases, deliveries, the admin and audit logs, an empty portal's reads).
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use association_service::domain::admin::{AdminChange, AdminEvent};
use association_service::domain::ObjectType;
use association_service::service::AssociationService;
use association_service::store::{PageItem, PageScan, RecordSelect, Store};

const HOUR: Duration = Duration::from_secs(3600);

struct Fixture {
    store: Arc<dyn Store>,
    _test_store: common::TestStore,
}

async fn fixture(backend: &str) -> Fixture {
    let test_store = common::fresh_store(backend).await;
    Fixture {
        store: common::open(&test_store).await,
        _test_store: test_store,
    }
}

/// An admin change of `portal`, told apart by `at_us`.
fn change(portal: i64, at_us: i64) -> AdminChange {
    let contact = ObjectType::parse("contacts").unwrap();
    let company = ObjectType::parse("companies").unwrap();
    AdminChange::new(
        AdminEvent::LabelCreated,
        portal,
        "store-suite",
        contact,
        company,
        at_us,
    )
}

mod suite {
    use super::*;

    pub async fn a_lease_is_held_renewed_and_taken_over_only_once_expired(f: Fixture) {
        let s = &f.store;
        assert!(s.hold_hook_lease("audit", 1, "a", HOUR).await.unwrap());
        assert!(!s.hold_hook_lease("audit", 1, "b", HOUR).await.unwrap());
        assert!(s.hold_hook_lease("audit", 1, "a", HOUR).await.unwrap());
        // Another portal's lease, or another plugin's, is another lease.
        assert!(s.hold_hook_lease("audit", 2, "b", HOUR).await.unwrap());
        assert!(s.hold_hook_lease("other", 1, "b", HOUR).await.unwrap());
        assert!(!s.hold_hook_lease("audit", 1, "b", HOUR).await.unwrap());

        // A lease that has run out passes to the next holder, and is then
        // that holder's: the clock is the database's, read per statement.
        assert!(s
            .hold_hook_lease("expiring", 1, "a", Duration::ZERO)
            .await
            .unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !s.hold_hook_lease("expiring", 1, "b", HOUR).await.unwrap() {
            assert!(
                Instant::now() < deadline,
                "an expired lease never passed on"
            );
        }
        assert!(!s.hold_hook_lease("expiring", 1, "a", HOUR).await.unwrap());
    }

    pub async fn deliveries_never_move_back_and_the_outbox_lists_what_is_left(f: Fixture) {
        let s = &f.store;
        for at in [10, 20, 30] {
            s.record_admin_event(&change(1, at)).await.unwrap();
        }
        s.record_admin_event(&change(2, 40)).await.unwrap();
        assert_eq!(s.admin_outbox("p", None).await.unwrap(), [(1, 0), (2, 0)]);
        assert_eq!(s.admin_outbox("p", Some(2)).await.unwrap(), [(2, 0)]);

        s.mark_delivered("p", 1, 2).await.unwrap();
        assert_eq!(s.admin_outbox("p", None).await.unwrap(), [(1, 2), (2, 0)]);
        s.mark_delivered("p", 1, 1).await.unwrap();
        assert_eq!(s.admin_outbox("p", None).await.unwrap(), [(1, 2), (2, 0)]);
        s.mark_delivered("p", 1, 3).await.unwrap();
        assert_eq!(s.admin_outbox("p", None).await.unwrap(), [(2, 0)]);
        // Each plugin has its own marks.
        assert_eq!(s.admin_outbox("q", None).await.unwrap(), [(1, 0), (2, 0)]);

        let after_one = s.admin_changes_after(1, 1, 10).await.unwrap();
        let seen: Vec<(i64, i64)> = after_one.iter().map(|(q, c)| (*q, c.at_us)).collect();
        assert_eq!(seen, [(2, 20), (3, 30)]);
        let first = s.admin_changes_after(1, 0, 1).await.unwrap();
        assert_eq!(first, [(1, change(1, 10))]);
    }

    pub async fn audit_events_are_kept_once_per_number(f: Fixture) {
        let s = &f.store;
        s.record_audit_event(1, &change(7, 10)).await.unwrap();
        // A redelivery of the same number keeps the first.
        s.record_audit_event(1, &change(7, 11)).await.unwrap();
        s.record_audit_event(2, &change(7, 20)).await.unwrap();
        s.record_audit_event(1, &change(8, 30)).await.unwrap();
        assert_eq!(
            s.audit_events(7, 0, 10).await.unwrap(),
            [(1, change(7, 10)), (2, change(7, 20))]
        );
        assert_eq!(
            s.audit_events(7, 1, 10).await.unwrap(),
            [(2, change(7, 20))]
        );
        assert_eq!(s.audit_events(7, 0, 1).await.unwrap(), [(1, change(7, 10))]);
        assert_eq!(
            s.audit_events(8, 0, 10).await.unwrap(),
            [(1, change(8, 30))]
        );
    }

    pub async fn records_are_those_holding_rows_by_id_or_in_pages(f: Fixture) {
        let svc = AssociationService::new(Arc::clone(&f.store), common::settings(50, 3));
        let inputs = [
            common::input(1, 10, &[common::hs(279)]),
            common::input(3, 10, &[common::hs(279)]),
            common::input(3, 11, &[common::hs(279)]),
            common::input(5, 12, &[common::hs(279)]),
        ];
        let pair = common::pair(4, "contacts", "companies");
        let created = svc.create(pair, &inputs).await.unwrap();
        assert!(created.errors.is_empty(), "{:?}", created.errors);
        let contacts = ObjectType::parse("contacts").unwrap();
        let ids = |select| {
            let store = Arc::clone(&f.store);
            async move {
                let records = store.records(4, contacts, select).await.unwrap();
                for r in &records {
                    assert!(r.first_created_us > 0, "{r:?}");
                    assert!(r.first_created_us <= r.last_created_us, "{r:?}");
                }
                records.into_iter().map(|r| r.id).collect::<Vec<i64>>()
            }
        };
        assert_eq!(ids(RecordSelect::Ids(&[5, 1, 2, 3])).await, [1, 3, 5]);
        assert_eq!(ids(RecordSelect::Ids(&[2])).await, Vec::<i64>::new());
        assert_eq!(
            ids(RecordSelect::After { after: 0, limit: 2 }).await,
            [1, 3]
        );
        assert_eq!(ids(RecordSelect::After { after: 3, limit: 2 }).await, [5]);
        // The other side holds its rows too; another portal holds none.
        let companies = ObjectType::parse("companies").unwrap();
        let held = f
            .store
            .records(4, companies, RecordSelect::Ids(&[10, 11, 13]));
        let held: Vec<i64> = held.await.unwrap().iter().map(|r| r.id).collect();
        assert_eq!(held, [10, 11]);
        let other = f
            .store
            .records(5, contacts, RecordSelect::After { after: 0, limit: 9 });
        assert!(other.await.unwrap().is_empty());
    }

    pub async fn a_page_scan_names_empty_inputs_first_then_rows_input_by_input(f: Fixture) {
        let svc = AssociationService::new(Arc::clone(&f.store), common::settings(50, 3));
        let made = [(1, 10), (1, 11), (1, 12), (3, 10)];
        let inputs: Vec<_> = made
            .iter()
            .map(|&(from, to)| common::input(from, to, &[common::hs(279)]))
            .collect();
        let created = svc
            .create(common::pair(4, "contacts", "companies"), &inputs)
            .await
            .unwrap();
        assert!(created.errors.is_empty(), "{:?}", created.errors);
        let contacts = ObjectType::parse("contacts").unwrap();
        let companies = ObjectType::parse("companies").unwrap();
        // Batches of one, so the order holds across batches too.
        let mut items = f.store.scan_pages(PageScan {
            portal: 4,
            from: contacts,
            to: companies,
            inputs: vec![(3, 0), (5, 0), (1, 10), (1, 0), (3, 10)],
            rows: 2,
            batch: 1,
        });
        let mut read = Vec::new();
        while let Some(batch) = items.recv().await {
            read.extend(batch.unwrap());
        }
        // Each contact's first company is its primary (type 1) too.
        let row =
            |input, to_id, type_id| PageItem::Row(input, (companies, to_id, common::hs(type_id)));
        assert_eq!(
            read,
            [
                PageItem::Empty(1),
                PageItem::Empty(4),
                row(0, 10, 1),
                row(0, 10, 279),
                row(2, 11, 279),
                row(2, 12, 279),
                row(3, 10, 1),
                row(3, 10, 279),
            ]
        );
    }

    pub async fn an_untouched_portal_reads_empty(f: Fixture) {
        let s = &f.store;
        assert_eq!(s.feed_bounds(9).await.unwrap(), (0, 0));
        assert!(s.changes_after(9, 0, 10).await.unwrap().is_empty());
        assert_eq!(s.counter_drift(9).await.unwrap(), 0);
        assert!(!s.has_merged_records(9).await.unwrap());
        assert!(s.labelled_directions(9).await.unwrap().is_empty());
        assert!(s.user_limits(9, None).await.unwrap().is_empty());
        assert!(s.object_names(9).await.unwrap().is_empty());
        assert!(s.admin_outbox("p", Some(9)).await.unwrap().is_empty());
        assert!(s.admin_changes_after(9, 0, 10).await.unwrap().is_empty());
        assert!(s.audit_events(9, 0, 10).await.unwrap().is_empty());
    }
}

suite_on_every_backend!(
    a_lease_is_held_renewed_and_taken_over_only_once_expired,
    deliveries_never_move_back_and_the_outbox_lists_what_is_left,
    audit_events_are_kept_once_per_number,
    records_are_those_holding_rows_by_id_or_in_pages,
    a_page_scan_names_empty_inputs_first_then_rows_input_by_input,
    an_untouched_portal_reads_empty,
);
