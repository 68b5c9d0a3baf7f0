//! PostgreSQL restarted, then stopped and started again, under load, with
//! the server binary in front of a cluster of the test's own: the errors
//! clients see are `UNAVAILABLE`, each failing call fails within 2 s, health
//! turns `NOT_SERVING` while the database is down and `SERVING` once it is
//! back, writes resume by themselves, every acknowledged write is present
//! and the store checker passes. The figures are printed for
//! docs/reliability.md.
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::CreateAssociationsRequest;
use common::{PrivatePostgres, ServerProcess};
use tokio::sync::watch;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Contacts each acknowledged write associates with its deal.
const CONTACTS: i64 = 20;
/// A caller's deadline on each write.
const DEADLINE: Duration = Duration::from_secs(5);
const FAIL_WITHIN: Duration = Duration::from_secs(2);

/// One write call as the client saw it.
#[derive(Clone, Debug)]
struct Call {
    started: Instant,
    took: Duration,
    deal: i64,
    /// `None` when acknowledged.
    error: Option<tonic::Code>,
}

fn create(deal: i64) -> tonic::Request<CreateAssociationsRequest> {
    let mut request = tonic::Request::new(common::deal_with_contacts(1, deal, 1..=CONTACTS));
    request.set_timeout(DEADLINE);
    request
}

/// Two writers calling in a loop until `stop`; each call is logged and
/// each acknowledgement counted on `acked`.
fn writers(
    write: AssociationWriteClient<tonic::transport::Channel>,
    calls: Arc<Mutex<Vec<Call>>>,
    acked: Arc<watch::Sender<(usize, Option<Instant>)>>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..2)
        .map(|writer| {
            let (mut write, calls, acked, stop) =
                (write.clone(), calls.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    if *stop.borrow() {
                        return;
                    }
                    let deal = 2 * n + writer + 1;
                    let started = Instant::now();
                    let answer = write.create_associations(create(deal)).await;
                    let call = Call {
                        started,
                        took: started.elapsed(),
                        deal,
                        error: match answer {
                            Ok(answer) => {
                                assert!(answer.into_inner().errors.is_empty(), "deal {deal}");
                                None
                            }
                            Err(status) => Some(status.code()),
                        },
                    };
                    if call.error.is_none() {
                        acked.send_modify(|(count, last)| {
                            *count += 1;
                            *last = Some(started);
                        });
                    }
                    calls.lock().unwrap().push(call);
                }
            })
        })
        .collect()
}

/// Health transitions, as the `Watch` stream reports them.
fn health_watch(
    mut health: HealthClient<tonic::transport::Channel>,
) -> watch::Receiver<(ServingStatus, Instant)> {
    let (tx, rx) = watch::channel((ServingStatus::Unknown, Instant::now()));
    tokio::spawn(async move {
        let mut stream = health
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health watch")
            .into_inner();
        while let Ok(Some(answer)) = stream.message().await {
            tx.send_replace((answer.status(), Instant::now()));
        }
    });
    rx
}

/// Waits until a write that started after `since` is acknowledged; answers when.
async fn first_write_after(
    acked: &mut watch::Receiver<(usize, Option<Instant>)>,
    since: Instant,
) -> Instant {
    tokio::time::timeout(Duration::from_secs(60), async {
        let seen = acked
            .wait_for(|(_, last)| last.is_some_and(|at| at > since))
            .await
            .expect("writers run");
        seen.1.expect("a write")
    })
    .await
    .expect("writes resumed within 60 s")
}

async fn until_health(
    health: &mut watch::Receiver<(ServingStatus, Instant)>,
    wanted: ServingStatus,
) -> Instant {
    tokio::time::timeout(
        Duration::from_secs(60),
        health.wait_for(|(s, _)| *s == wanted),
    )
    .await
    .unwrap_or_else(|_| panic!("health never reported {wanted:?}"))
    .expect("health watch runs")
    .1
}

/// Failed calls that started in [from, to): codes and the slowest.
fn failures_between(
    calls: &[Call],
    from: Instant,
    to: Instant,
) -> (BTreeMap<String, usize>, Duration) {
    let mut codes = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for call in calls.iter().filter(|c| c.started >= from && c.started < to) {
        if let Some(code) = call.error {
            *codes.entry(format!("{code:?}")).or_insert(0) += 1;
            slowest = slowest.max(call.took);
        }
    }
    (codes, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_and_stopped_under_load() {
    let pg = PrivatePostgres::start();
    let url = pg.fresh_database().await;
    let server =
        ServerProcess::start(&url, &[("ASSOC__SERVER__HEALTH_CHECK_INTERVAL_MS", "100")]).await;
    let channel = server.channel().await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (acked_tx, mut acked) = watch::channel((0usize, None));
    let (stop_tx, stop) = watch::channel(false);
    let tasks = writers(
        AssociationWriteClient::new(channel.clone()),
        calls.clone(),
        Arc::new(acked_tx),
        stop,
    );
    let mut health = health_watch(HealthClient::new(channel));
    until_health(&mut health, ServingStatus::Serving).await;
    acked.wait_for(|(n, _)| *n >= 20).await.expect("writes");

    // A crash and restart: stopped without a shutdown checkpoint (as on a
    // power cut, recovery replays the WAL), started again at once.
    let restart_began = Instant::now();
    pg.stop("immediate");
    pg.start_again();
    let restarted = Instant::now();
    let resumed = first_write_after(&mut acked, restarted).await;
    let after_restart = resumed + Duration::from_millis(1);
    let (restart_codes, restart_slowest) = {
        let calls = calls.lock().unwrap();
        failures_between(&calls, restart_began, after_restart)
    };

    // A stop: the database stays down until health says so, and some
    // calls have failed on it.
    let stop_began = Instant::now();
    pg.stop("fast");
    let stopped = Instant::now();
    let not_serving = until_health(&mut health, ServingStatus::NotServing).await;
    let failed_while_down = |calls: &Vec<Call>| {
        calls
            .iter()
            .filter(|c| c.started >= stopped && c.error.is_some())
            .count()
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if failed_while_down(&calls.lock().unwrap()) >= 10 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("calls fail while the database is down");
    let rest: std::net::SocketAddr = server
        .rest
        .trim_start_matches("http://")
        .parse()
        .expect("the REST address");
    let refused = common::http(
        rest,
        "PUT",
        "/crm/v4/objects/deals/1/associations/default/contacts/999",
        None,
    )
    .await;
    let started_again = Instant::now();
    pg.start_again();
    let up = Instant::now();
    let serving = until_health(&mut health, ServingStatus::Serving).await;
    let resumed_after_stop = first_write_after(&mut acked, up).await;
    stop_tx.send_replace(true);
    for task in tasks {
        task.await.expect("a writer");
    }
    let calls = calls.lock().unwrap().clone();
    let (stop_codes, stop_slowest) = failures_between(&calls, stop_began, started_again);

    eprintln!(
        "restart (pg_ctl stop -m immediate, start): {:.1} s down; failed calls {restart_codes:?}, slowest failure {:.0} ms; \
         first write acknowledged {:.0} ms after the database was back",
        (restarted - restart_began).as_secs_f64(),
        restart_slowest.as_secs_f64() * 1e3,
        (resumed - restarted).as_secs_f64() * 1e3
    );
    eprintln!(
        "stop (pg_ctl stop -m fast, start later): health NOT_SERVING {:.0} ms after the stop; failed calls \
         {stop_codes:?}, slowest failure {:.0} ms; REST {} with Retry-After {:?}; health SERVING {:.0} ms and \
         the first write {:.0} ms after the database was back",
        (not_serving.saturating_duration_since(stopped)).as_secs_f64() * 1e3,
        stop_slowest.as_secs_f64() * 1e3,
        refused.status,
        refused.header("retry-after"),
        (serving.saturating_duration_since(up)).as_secs_f64() * 1e3,
        (resumed_after_stop - up).as_secs_f64() * 1e3
    );

    for (codes, slowest, what) in [
        (&restart_codes, restart_slowest, "restart"),
        (&stop_codes, stop_slowest, "stop"),
    ] {
        assert!(
            codes.keys().all(|c| c == "Unavailable"),
            "{what}: clients saw {codes:?}"
        );
        assert!(
            slowest <= FAIL_WITHIN,
            "{what}: a call failed only after {slowest:?}"
        );
    }
    assert!(stop_codes.values().sum::<usize>() >= 10, "{stop_codes:?}");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("1"));

    // Nothing acknowledged is missing; nothing is inconsistent.
    let held = common::associated_records(&url).await;
    for call in calls.iter().filter(|c| c.error.is_none()) {
        assert_eq!(
            held.get(&("0-3".to_string(), call.deal)),
            Some(&CONTACTS),
            "acknowledged deal {}",
            call.deal
        );
    }
    let store = association_service::store::connect(&url, 2)
        .await
        .expect("the store");
    common::assert_verified(store.as_ref(), "after the outages").await;
    drop(server);
}
