//! Limits hold under concurrency: 64 clients, each on its own connection to
//! the real server, race to add associations to one record (or to one shared
//! target through the inverse type). Exactly the limit succeeds, every other
//! call gets the limit error, no client sees a deadlock or serialization
//! failure, and the stored counters equal the real counts. Writers racing a
//! label delete of the type they write, and archives racing creates on the
//! same counters, never see a lost race and leave the counters exact.
mod common;

use association_service::proto::admin_config_client::AdminConfigClient;
use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{
    ArchiveAssociationsRequest, ArchiveInput, AssociationCategory, AssociationInput,
    AssociationType, CreateAssociationsRequest, CreateLabelRequest, CreateLimitsRequest,
    DeleteLabelRequest, ExportAssociationsRequest, LimitInput, ListAssociationsRequest,
    UpdateLimitsRequest,
};
use association_service::store;
use common::TestServer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinSet;

const PORTAL: i64 = 42;
const CLIENTS: i64 = 64;
const LIMIT: i32 = 7;

async fn set_limit(server: &TestServer, from: &str, to: &str, type_id: i32) {
    let mut admin = AdminConfigClient::connect(server.endpoint())
        .await
        .expect("connect admin");
    let response = admin
        .create_limits(CreateLimitsRequest {
            portal_id: PORTAL,
            from_object_type: from.into(),
            to_object_type: to.into(),
            inputs: vec![LimitInput {
                category: AssociationCategory::HubspotDefined as i32,
                type_id,
                max_to_object_ids: LIMIT,
            }],
        })
        .await
        .expect("create limit")
        .into_inner();
    assert!(response.errors.is_empty(), "{:?}", response.errors);
}

/// Runs one create per (from, to) pair, each from its own client connection,
/// all at once; returns (successes, limit failures).
async fn race(server: &TestServer, from: &str, to: &str, pairs: Vec<(i64, i64)>) -> (usize, usize) {
    let mut tasks = JoinSet::new();
    for (from_id, to_id) in pairs {
        let (endpoint, from, to) = (server.endpoint(), from.to_string(), to.to_string());
        tasks.spawn(async move {
            let mut client = AssociationWriteClient::connect(endpoint)
                .await
                .expect("connect");
            client
                .create_associations(CreateAssociationsRequest {
                    portal_id: PORTAL,
                    from_object_type: from,
                    to_object_type: to,
                    inputs: vec![AssociationInput {
                        from_id,
                        to_id,
                        types: vec![],
                    }],
                })
                .await
        });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let response = joined
            .expect("task")
            .expect("no call may fail as a whole")
            .into_inner();
        match (response.results.len(), response.errors.first()) {
            (1, None) => created += 1,
            (0, Some(err)) => {
                assert_eq!(
                    err.sub_category, "crm.associations.ASSOCIATION_USER_CONFIG_LIMIT_EXCEEDED",
                    "{err:?}"
                );
                assert_eq!(err.context["limit"], LIMIT.to_string());
                refused += 1;
            }
            other => panic!("unexpected response shape {other:?}"),
        }
    }
    (created, refused)
}

async fn associated_count(
    server: &TestServer,
    object_type: &str,
    object_id: i64,
    to: &str,
) -> usize {
    let mut reader = AssociationReadClient::connect(server.endpoint())
        .await
        .expect("connect reader");
    let mut stream = reader
        .list_associations(ListAssociationsRequest {
            portal_id: PORTAL,
            object_type: object_type.into(),
            object_id,
            to_object_type: to.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let mut count = 0;
    while let Some(chunk) = stream.message().await.expect("chunk") {
        count += chunk.results.len();
    }
    count
}

async fn assert_counters_exact(server: &TestServer) {
    let store = store::connect(&server.store.url, 2)
        .await
        .expect("open store");
    assert_eq!(
        store.counter_drift(PORTAL).await.expect("drift"),
        0,
        "stored counters must equal real counts"
    );
    common::assert_verified(store.as_ref(), "after the concurrent clients").await;
}

async fn one_record_filled_by_many_clients(backend: &str) {
    let server = TestServer::start(backend, |_| {}).await;
    set_limit(&server, "deals", "contacts", 3).await;
    let pairs = (0..CLIENTS).map(|i| (1, 1_000 + i)).collect();
    let (created, refused) = race(&server, "deals", "contacts", pairs).await;
    assert_eq!(
        (created, refused),
        (LIMIT as usize, (CLIENTS - i64::from(LIMIT)) as usize)
    );
    assert_eq!(
        associated_count(&server, "deals", 1, "contacts").await,
        LIMIT as usize
    );
    assert_counters_exact(&server).await;
    server.stop().await;
}

async fn one_target_shared_by_many_records(backend: &str) {
    let server = TestServer::start(backend, |_| {}).await;
    // Contacts join one company; the company side (280) is limited. Each
    // contact's first company also becomes its primary, so more rows race.
    set_limit(&server, "companies", "contacts", 280).await;
    let pairs = (0..CLIENTS).map(|i| (2_000 + i, 5)).collect();
    let (created, refused) = race(&server, "contacts", "companies", pairs).await;
    assert_eq!(
        (created, refused),
        (LIMIT as usize, (CLIENTS - i64::from(LIMIT)) as usize)
    );
    assert_eq!(
        associated_count(&server, "companies", 5, "contacts").await,
        LIMIT as usize
    );
    assert_counters_exact(&server).await;
    server.stop().await;
}

/// Every stored row of the portal: (from id, to id, type id).
async fn stored_rows(server: &TestServer) -> Vec<(i64, i64, i32)> {
    let mut reader = AssociationReadClient::connect(server.endpoint())
        .await
        .expect("connect reader");
    let mut stream = reader
        .export_associations(ExportAssociationsRequest {
            portal_id: PORTAL,
            ..Default::default()
        })
        .await
        .expect("export")
        .into_inner();
    let mut rows = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        rows.extend(
            chunk
                .rows
                .iter()
                .map(|r| (r.from_object_id, r.to_object_id, r.type_id)),
        );
    }
    rows
}

/// One create of `contact -> company` with `types`; every item must either
/// succeed or fail with `allowed` (a call never fails as a whole).
async fn create_checked(
    client: &mut AssociationWriteClient<tonic::transport::Channel>,
    contact: i64,
    company: i64,
    types: Vec<AssociationType>,
    allowed: &str,
) -> bool {
    let response = client
        .create_associations(CreateAssociationsRequest {
            portal_id: PORTAL,
            from_object_type: "contacts".into(),
            to_object_type: "companies".into(),
            inputs: vec![AssociationInput {
                from_id: contact,
                to_id: company,
                types,
            }],
        })
        .await
        .unwrap_or_else(|s| panic!("a create failed as a whole: {s:?}"))
        .into_inner();
    for err in &response.errors {
        assert_eq!(err.sub_category, allowed, "{err:?}");
    }
    response.errors.is_empty()
}

async fn archive_checked(
    client: &mut AssociationWriteClient<tonic::transport::Channel>,
    contact: i64,
    company: i64,
) {
    let response = client
        .archive_associations(ArchiveAssociationsRequest {
            portal_id: PORTAL,
            from_object_type: "contacts".into(),
            to_object_type: "companies".into(),
            inputs: vec![ArchiveInput {
                from_id: contact,
                to_ids: vec![company],
            }],
        })
        .await
        .unwrap_or_else(|s| panic!("an archive failed as a whole: {s:?}"))
        .into_inner();
    assert!(response.errors.is_empty(), "{:?}", response.errors);
}

async fn writers_race_a_label_delete(backend: &str) {
    let server = TestServer::start(backend, |_| {}).await;
    let mut admin = AdminConfigClient::connect(server.endpoint())
        .await
        .expect("connect admin");
    let label = admin
        .create_label(CreateLabelRequest {
            portal_id: PORTAL,
            from_object_type: "contacts".into(),
            to_object_type: "companies".into(),
            label: "Employer".into(),
            name: "employer".into(),
            inverse_label: Some("Employee".into()),
        })
        .await
        .expect("create label")
        .into_inner();
    let label_ids: Vec<i32> = label.definitions.iter().map(|d| d.type_id).collect();
    let employer = AssociationType {
        category: AssociationCategory::UserDefined as i32,
        type_id: label_ids[0],
    };
    // The label is deleted once a quarter of the writes are acknowledged.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let quarter_done = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    for writer in 0..16i64 {
        let (endpoint, employer) = (server.endpoint(), employer);
        let (acknowledged, quarter_done) = (Arc::clone(&acknowledged), Arc::clone(&quarter_done));
        tasks.spawn(async move {
            let mut client = AssociationWriteClient::connect(endpoint)
                .await
                .expect("connect");
            for n in 0..12i64 {
                let (contact, company) = (1 + (writer + n) % 6, 1 + n % 3);
                if writer % 4 == 3 {
                    archive_checked(&mut client, contact, company).await;
                } else {
                    create_checked(
                        &mut client,
                        contact,
                        company,
                        vec![employer],
                        "crm.associations.INVALID_ASSOCIATION_TYPE",
                    )
                    .await;
                }
                if acknowledged.fetch_add(1, Ordering::SeqCst) + 1 == 48 {
                    quarter_done.notify_one();
                }
            }
        });
    }
    tokio::time::timeout(std::time::Duration::from_secs(120), quarter_done.notified())
        .await
        .expect("a quarter of the writes are acknowledged (a writer failed otherwise)");
    admin
        .delete_label(DeleteLabelRequest {
            portal_id: PORTAL,
            from_object_type: "contacts".into(),
            to_object_type: "companies".into(),
            type_id: label_ids[0],
        })
        .await
        .expect("delete label while writers write it");
    while let Some(joined) = tasks.join_next().await {
        joined.expect("writer");
    }
    let rows = stored_rows(&server).await;
    assert!(
        rows.iter().all(|(_, _, t)| !label_ids.contains(t)),
        "rows of the deleted label remain"
    );
    let mut client = AssociationWriteClient::connect(server.endpoint())
        .await
        .expect("connect");
    assert!(
        !create_checked(
            &mut client,
            1,
            1,
            vec![employer],
            "crm.associations.INVALID_ASSOCIATION_TYPE"
        )
        .await,
        "the deleted label can no longer be written"
    );
    assert_counters_exact(&server).await;
    server.stop().await;
}

async fn archives_race_creates_on_the_same_counters(backend: &str) {
    let server = TestServer::start(backend, |_| {}).await;
    let primary = AssociationType {
        category: AssociationCategory::HubspotDefined as i32,
        type_id: 1,
    };
    let mut tasks = JoinSet::new();
    for client_no in 0..32i64 {
        let endpoint = server.endpoint();
        tasks.spawn(async move {
            let mut client = AssociationWriteClient::connect(endpoint)
                .await
                .expect("connect");
            for n in 0..15i64 {
                // Two contacts and two companies: every call meets others on
                // the same counters, and primaries move back and forth.
                let (contact, company) = (
                    1 + (n / 2 + client_no / 4) % 2,
                    1 + (n / 3 + client_no / 2) % 2,
                );
                if (client_no + n) % 2 == 0 {
                    archive_checked(&mut client, contact, company).await;
                } else {
                    let types = if n % 3 == 0 { vec![primary] } else { vec![] };
                    create_checked(&mut client, contact, company, types, "").await;
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("client");
    }
    let rows = stored_rows(&server).await;
    for contact in 1..=2 {
        let primaries = rows
            .iter()
            .filter(|(from, _, t)| *from == contact && *t == 1)
            .count();
        assert!(
            primaries <= 1,
            "contact {contact} has {primaries} primaries"
        );
    }
    assert_counters_exact(&server).await;
    server.stop().await;
}

async fn limit_changes_race_a_label_delete(backend: &str) {
    let server = TestServer::start(backend, |_| {}).await;
    let mut admin = AdminConfigClient::connect(server.endpoint())
        .await
        .expect("connect admin");
    let mut label_ids = Vec::new();
    for round in 0..6 {
        let label = admin
            .create_label(CreateLabelRequest {
                portal_id: PORTAL,
                from_object_type: "contacts".into(),
                to_object_type: "companies".into(),
                label: format!("Advisor {round}"),
                name: format!("advisor_{round}"),
                inverse_label: None,
            })
            .await
            .expect("create label")
            .into_inner();
        let type_id = label.definitions[0].type_id;
        label_ids.extend(label.definitions.iter().map(|d| d.type_id));
        // Admins set and update the label's limit while another deletes it.
        let mut tasks = JoinSet::new();
        for admin_no in 0..8 {
            let endpoint = server.endpoint();
            tasks.spawn(async move {
                let mut client = AdminConfigClient::connect(endpoint).await.expect("connect");
                let inputs = vec![LimitInput {
                    category: AssociationCategory::UserDefined as i32,
                    type_id,
                    max_to_object_ids: 2 + admin_no,
                }];
                let (from_object_type, to_object_type) = ("contacts".into(), "companies".into());
                let answer = if admin_no % 2 == 0 {
                    let request = CreateLimitsRequest {
                        portal_id: PORTAL,
                        from_object_type,
                        to_object_type,
                        inputs,
                    };
                    client
                        .create_limits(request)
                        .await
                        .map(|r| r.into_inner().errors)
                } else {
                    let request = UpdateLimitsRequest {
                        portal_id: PORTAL,
                        from_object_type,
                        to_object_type,
                        inputs,
                    };
                    client
                        .update_limits(request)
                        .await
                        .map(|r| r.into_inner().errors)
                };
                match answer {
                    Ok(errors) => {
                        for err in errors {
                            assert!(
                                [
                                    "crm.associations.INVALID_ASSOCIATION_TYPE",
                                    "crm.associations.LIMIT_ALREADY_CONFIGURED",
                                    "crm.associations.LIMIT_NOT_CONFIGURED",
                                ]
                                .contains(&err.sub_category.as_str()),
                                "{err:?}"
                            );
                        }
                    }
                    Err(status) => assert_eq!(
                        status.code(),
                        tonic::Code::InvalidArgument,
                        "only the deleted type may be refused: {status:?}"
                    ),
                }
            });
        }
        admin
            .delete_label(DeleteLabelRequest {
                portal_id: PORTAL,
                from_object_type: "contacts".into(),
                to_object_type: "companies".into(),
                type_id,
            })
            .await
            .expect("delete label");
        while let Some(joined) = tasks.join_next().await {
            joined.expect("admin");
        }
    }
    let store = store::connect(&server.store.url, 2)
        .await
        .expect("open store");
    let orphans: Vec<i32> = store
        .user_limits(PORTAL, None)
        .await
        .expect("limits")
        .iter()
        .map(|l| l.key.type_id)
        .filter(|id| label_ids.contains(id))
        .collect();
    assert!(
        orphans.is_empty(),
        "limits of deleted labels remain: {orphans:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_limit_changes_race_a_label_delete() {
    limit_changes_race_a_label_delete("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_limit_changes_race_a_label_delete() {
    limit_changes_race_a_label_delete("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_writers_race_a_label_delete() {
    writers_race_a_label_delete("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writers_race_a_label_delete() {
    writers_race_a_label_delete("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_archives_race_creates_on_the_same_counters() {
    archives_race_creates_on_the_same_counters("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_archives_race_creates_on_the_same_counters() {
    archives_race_creates_on_the_same_counters("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_one_record_filled_by_64_clients_holds_its_limit() {
    one_record_filled_by_many_clients("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_one_target_shared_by_64_records_holds_its_inverse_limit() {
    one_target_shared_by_many_records("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_one_record_filled_by_64_clients_holds_its_limit() {
    one_record_filled_by_many_clients("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_one_target_shared_by_64_records_holds_its_inverse_limit() {
    one_target_shared_by_many_records("sqlite").await;
}
