//! Two replicas of the server binary on one PostgreSQL, started at the same
//! moment on an empty database: the migrations apply once; writers on both,
//! a `WatchChanges` reader on each, admin changes on both and a remote
//! plugin (slow on purpose, so replicas that both delivered would be seen):
//! each reader sees every change exactly once and in order, the plugin
//! gets every admin change exactly once, and the store checker passes.
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use association_service::proto::admin_config_client::AdminConfigClient;
use association_service::proto::admin_hook_service_server::{
    AdminHookService, AdminHookServiceServer,
};
use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{
    ChangeCommittedRequest, ChangeCommittedResponse, ValidateChangeRequest, ValidateChangeResponse,
};
use common::ServerProcess;
use sqlx::Connection;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

const PORTALS: [i64; 2] = [1, 2];
const CREATES_PER_REPLICA: i64 = 20;
const CONTACTS: i64 = 5;
/// Limit updates per portal, alternating between the replicas.
const LIMIT_UPDATES: i32 = 6;
/// How long the plugin takes over each delivery.
const PLUGIN_LATENCY: Duration = Duration::from_millis(40);

/// Records every ChangeCommitted call's idempotency key.
#[derive(Clone)]
struct Recorder {
    keys: Arc<Mutex<Vec<String>>>,
    count: Arc<watch::Sender<usize>>,
}

#[tonic::async_trait]
impl AdminHookService for Recorder {
    async fn validate_change(
        &self,
        _: Request<ValidateChangeRequest>,
    ) -> Result<Response<ValidateChangeResponse>, Status> {
        Ok(Response::new(ValidateChangeResponse {
            allow: true,
            message: String::new(),
        }))
    }

    async fn change_committed(
        &self,
        request: Request<ChangeCommittedRequest>,
    ) -> Result<Response<ChangeCommittedResponse>, Status> {
        tokio::time::sleep(PLUGIN_LATENCY).await;
        self.keys
            .lock()
            .unwrap()
            .push(request.into_inner().idempotency_key);
        self.count.send_modify(|n| *n += 1);
        Ok(Response::new(ChangeCommittedResponse {}))
    }
}

/// Reads a portal's feed from the beginning until it holds `count` changes:
/// their sequence numbers, in the order received.
async fn read_feed(
    mut read: AssociationReadClient<tonic::transport::Channel>,
    portal: i64,
    count: usize,
) -> Vec<i64> {
    let mut stream = read
        .watch_changes(common::watch_from_beginning(portal))
        .await
        .expect("watch")
        .into_inner();
    let mut seqs = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while seqs.len() < count {
            let chunk = stream
                .message()
                .await
                .expect("a chunk")
                .expect("not the end");
            seqs.extend(chunk.changes.iter().map(|c| c.sequence));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("portal {portal}: {} of {count} changes arrived", seqs.len()));
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_postgres() {
    let url = common::fresh_postgres_database().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plugin_addr = listener.local_addr().unwrap();
    let (count_tx, mut delivered) = watch::channel(0usize);
    let recorder = Recorder {
        keys: Arc::new(Mutex::new(Vec::new())),
        count: Arc::new(count_tx),
    };
    let served = recorder.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AdminHookServiceServer::new(served))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("plugin server");
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("replica.toml");
    std::fs::write(
        &config,
        format!(
            "[[hooks.plugins]]\nname = \"recorder\"\nendpoint = \"http://{plugin_addr}\"\n\
             timeout_ms = 5000\nfailure_policy = \"open\"\n"
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let env = [
        ("ASSOC_CONFIG", config.as_str()),
        ("ASSOC__HOOKS__POLL_INTERVAL_MS", "100"),
        ("ASSOC__FEED__POLL_INTERVAL_MS", "50"),
    ];

    // Both start at once on the empty database.
    let (first, second) = tokio::join!(
        ServerProcess::start(&url, &env),
        ServerProcess::start(&url, &env)
    );
    let migrations = std::fs::read_dir("migrations/postgres").unwrap().count() as i64;
    let applied = |server: &ServerProcess| {
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("applied migration"))
            .count() as i64
    };
    assert_eq!(
        applied(&first) + applied(&second),
        migrations,
        "each migration applied by exactly one replica"
    );
    let mut admin_db = sqlx::PgConnection::connect(&url).await.unwrap();
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut admin_db)
        .await
        .unwrap();
    assert_eq!(recorded, migrations);

    let replicas = [first.channel().await, second.channel().await];
    // Writers on both replicas, each to its own deals, in both portals.
    let mut writers = Vec::new();
    for (r, channel) in replicas.iter().enumerate() {
        let mut write = AssociationWriteClient::new(channel.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..CREATES_PER_REPLICA {
                for portal in PORTALS {
                    let deal = 1 + n + 1_000 * r as i64;
                    let answer = write
                        .create_associations(common::deal_with_contacts(portal, deal, 1..=CONTACTS))
                        .await
                        .expect("create");
                    assert!(answer.into_inner().errors.is_empty());
                }
            }
        }));
    }
    // Admin changes on both replicas, alternating.
    let mut admins: Vec<_> = replicas
        .iter()
        .map(|c| AdminConfigClient::new(c.clone()))
        .collect();
    let mut admin_changes = 0;
    for portal in PORTALS {
        admins[0]
            .create_limits(common::deal_contact_limits(portal, 100).0)
            .await
            .expect("create limits");
        admin_changes += 1;
        for n in 0..LIMIT_UPDATES {
            let replica = (n % 2 + 1) as usize % 2;
            admins[replica]
                .update_limits(common::deal_contact_limits(portal, 101 + n).1)
                .await
                .expect("update limits");
            admin_changes += 1;
        }
    }
    for writer in writers {
        writer.await.expect("a writer");
    }

    // Every change reaches a reader on each replica once, in order.
    for portal in PORTALS {
        let changes: i64 =
            sqlx::query_scalar("SELECT count(*) FROM association_changes WHERE portal_id = $1")
                .bind(portal)
                .fetch_one(&mut admin_db)
                .await
                .unwrap();
        assert_eq!(
            changes,
            CREATES_PER_REPLICA * 2 * CONTACTS * 2,
            "portal {portal}: rows both ways"
        );
        for (r, channel) in replicas.iter().enumerate() {
            let seqs = read_feed(
                AssociationReadClient::new(channel.clone()),
                portal,
                changes as usize,
            )
            .await;
            assert_eq!(
                seqs,
                (1..=changes).collect::<Vec<_>>(),
                "portal {portal}, reader on replica {r}"
            );
        }
    }

    // Every admin change reaches the plugin once.
    tokio::time::timeout(
        Duration::from_secs(60),
        delivered.wait_for(|n| *n >= admin_changes),
    )
    .await
    .expect("the plugin got every admin change")
    .unwrap();
    // Everything acknowledged (each acknowledgement is written after the
    // plugin answers): nothing is left that a replica could send again.
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let unacknowledged: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM admin_change_heads h LEFT JOIN admin_hook_deliveries d
                     ON d.portal_id = h.portal_id AND d.plugin = 'recorder'
                 WHERE COALESCE(d.delivered_seq, 0) < h.last_seq",
            )
            .fetch_one(&mut admin_db)
            .await
            .unwrap();
            if unacknowledged == 0 {
                return;
            }
        }
    })
    .await
    .expect("every delivery acknowledged");
    let keys = recorder.keys.lock().unwrap().clone();
    let mut times: BTreeMap<&String, usize> = BTreeMap::new();
    for key in &keys {
        *times.entry(key).or_default() += 1;
    }
    let repeated: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "delivered more than once: {repeated:?}"
    );
    assert_eq!(keys.len(), admin_changes);
    let holders: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT (plugin, portal_id)) FROM admin_hook_leases")
            .fetch_one(&mut admin_db)
            .await
            .unwrap();
    assert_eq!(
        holders,
        PORTALS.len() as i64,
        "one lease per plugin and portal"
    );

    let store = association_service::store::connect(&url, 2).await.unwrap();
    common::assert_verified(store.as_ref(), "two replicas").await;
    drop((first, second));
}
