//! Limits hold under concurrency: 64 clients, each on its own connection to
//! the real server, race to add associations to one record (or to one shared
//! target through the inverse type). Exactly the limit succeeds, every other
//! call gets the limit error, no client sees a deadlock or serialization
//! failure, and the stored counters equal the real counts.
mod common;

use association_service::grpc::proto::admin_config_client::AdminConfigClient;
use association_service::grpc::proto::association_read_client::AssociationReadClient;
use association_service::grpc::proto::association_write_client::AssociationWriteClient;
use association_service::grpc::proto::{
    AssociationCategory, AssociationInput, CreateAssociationsRequest, LimitInput, LimitsRequest,
    ListAssociationsRequest,
};
use association_service::store;
use common::TestServer;
use tokio::task::JoinSet;

const PORTAL: i64 = 42;
const CLIENTS: i64 = 64;
const LIMIT: i32 = 7;

async fn set_limit(server: &TestServer, from: &str, to: &str, type_id: i32) {
    let mut admin = AdminConfigClient::connect(server.endpoint())
        .await
        .expect("connect admin");
    let response = admin
        .create_limits(LimitsRequest {
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
            cursor: String::new(),
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
