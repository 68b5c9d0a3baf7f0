//! A soak at a fixed mixed rate against the server binary on PostgreSQL:
//! creates, archives, streamed reads, REST reads, limit updates and a
//! change-feed reader, sent open-loop (a call every few milliseconds
//! whatever the answers take). Per 10-second window it prints the calls,
//! errors, p50 and p99 and the server's resident memory; it fails on any
//! error, on memory that keeps growing, or on a p99 that drifts up; the
//! store checker must pass halfway through (on the live store, under the
//! load) and at the end. `SOAK_SECS` sets the length (60 by
//! default, which CI runs; docs/reliability.md has a 600-second run) and
//! `SOAK_RATE` the calls per second (200).
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use association_service::proto::admin_config_client::AdminConfigClient;
use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{
    ArchiveAssociationsRequest, ArchiveInput, ListAssociationsRequest,
};
use common::ServerProcess;

const PORTAL: i64 = 1;
const WINDOW: Duration = Duration::from_secs(10);
/// Deals the load cycles over; each holds up to `CONTACTS` contacts.
const DEALS: i64 = 2_000;
const CONTACTS: i64 = 10;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One call as the client saw it.
struct Sample {
    at: Instant,
    took: Duration,
    failed: Option<String>,
}

/// One window's figures.
#[derive(Debug)]
struct Window {
    calls: usize,
    errors: usize,
    p50: Duration,
    p99: Duration,
    rss_mib: f64,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[derive(Clone)]
struct Clients {
    write: AssociationWriteClient<tonic::transport::Channel>,
    read: AssociationReadClient<tonic::transport::Channel>,
    admin: AdminConfigClient<tonic::transport::Channel>,
    rest: std::net::SocketAddr,
}

/// Call `n` of the mix: 4 creates, 2 archives, 2 streamed reads, 1 REST
/// read and, every 50th call, a limit update, in each 10.
async fn call(clients: &mut Clients, n: u64) -> Result<(), String> {
    let deal = 1 + (n as i64 * 7) % DEALS;
    let to = 1 + (n as i64 / DEALS) % CONTACTS;
    if n % 50 == 49 {
        let max = 1_000 + (n % 7) as i32;
        let answer = clients
            .admin
            .update_limits(common::deal_contact_limits(PORTAL, max).1)
            .await
            .map_err(|s| format!("update limits: {s}"))?;
        return match answer.into_inner().errors.first() {
            None => Ok(()),
            Some(e) => Err(format!("update limits: {e:?}")),
        };
    }
    match n % 10 {
        0..=3 => {
            let answer = clients
                .write
                .create_associations(common::deal_with_contacts(
                    PORTAL,
                    deal,
                    [to, to + 1].into_iter(),
                ))
                .await
                .map_err(|s| format!("create: {s}"))?;
            match answer.into_inner().errors.first() {
                None => Ok(()),
                Some(e) => Err(format!("create: {e:?}")),
            }
        }
        4 | 5 => {
            clients
                .write
                .archive_associations(ArchiveAssociationsRequest {
                    portal_id: PORTAL,
                    from_object_type: "deals".into(),
                    to_object_type: "contacts".into(),
                    inputs: vec![ArchiveInput {
                        from_id: deal,
                        to_ids: vec![to],
                    }],
                })
                .await
                .map_err(|s| format!("archive: {s}"))?;
            Ok(())
        }
        6 | 7 => {
            let mut stream = clients
                .read
                .list_associations(ListAssociationsRequest {
                    portal_id: PORTAL,
                    object_type: "deals".into(),
                    object_id: deal,
                    to_object_type: "contacts".into(),
                    ..Default::default()
                })
                .await
                .map_err(|s| format!("list: {s}"))?
                .into_inner();
            while stream
                .message()
                .await
                .map_err(|s| format!("list: {s}"))?
                .is_some()
            {}
            Ok(())
        }
        _ => {
            let answer = common::http(
                clients.rest,
                "GET",
                &format!("/crm/v4/objects/deals/{deal}/associations/contacts"),
                None,
            )
            .await;
            if answer.status == 200 {
                Ok(())
            } else {
                Err(format!("REST read: {} {}", answer.status, answer.body))
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_at_a_fixed_mixed_rate() {
    let seconds = setting("SOAK_SECS", 60);
    let rate = setting("SOAK_RATE", 200);
    let url = common::fresh_postgres_database().await;
    let server = ServerProcess::start(&url, &[]).await;
    let channel = server.channel().await;
    let mut clients = Clients {
        write: AssociationWriteClient::new(channel.clone()),
        read: AssociationReadClient::new(channel.clone()),
        admin: AdminConfigClient::new(channel.clone()),
        rest: server
            .rest
            .trim_start_matches("http://")
            .parse()
            .expect("the REST address"),
    };
    clients
        .admin
        .create_limits(common::deal_contact_limits(PORTAL, 1_000).0)
        .await
        .expect("a limit");
    // A feed reader follows every change for the whole run.
    let mut feed = clients
        .read
        .clone()
        .watch_changes(common::watch_from_beginning(PORTAL))
        .await
        .expect("watch")
        .into_inner();
    let feed_reader = tokio::spawn(async move {
        let mut last = 0;
        while let Ok(Some(chunk)) = feed.message().await {
            for change in chunk.changes {
                assert_eq!(change.sequence, last + 1, "the feed skipped or repeated");
                last = change.sequence;
            }
        }
        last
    });

    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut windows = Vec::new();
    let mut window_start = started;
    let mut calls = Vec::new();
    let total = seconds * rate;
    let mut live_check = None;
    for n in 0..total {
        ticker.tick().await;
        if n == total / 2 {
            // The checker on the live store, under the load: one snapshot.
            let url = url.clone();
            live_check = Some(tokio::spawn(async move {
                let store = association_service::store::connect(&url, 2)
                    .await
                    .expect("store");
                common::assert_verified(store.as_ref(), "mid-soak, under load").await;
            }));
        }
        let (mut clients, sink) = (clients.clone(), samples.clone());
        calls.push(tokio::spawn(async move {
            let at = Instant::now();
            let failed = call(&mut clients, n).await.err();
            sink.lock().unwrap().push(Sample {
                at,
                took: at.elapsed(),
                failed,
            });
        }));
        if window_start.elapsed() >= WINDOW || n + 1 == total {
            let end = Instant::now();
            let rss_mib = server.rss_kib() as f64 / 1024.0;
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0, None);
            for s in samples.lock().unwrap().iter() {
                if s.at >= window_start && s.at < end {
                    latencies.push(s.took);
                    if let Some(why) = &s.failed {
                        errors += 1;
                        first_error.get_or_insert(why.clone());
                    }
                }
            }
            latencies.sort();
            let window = Window {
                calls: latencies.len(),
                errors,
                p50: percentile(&latencies, 0.5),
                p99: percentile(&latencies, 0.99),
                rss_mib,
            };
            eprintln!(
                "t={:>4.0}s calls={:>5} errors={} p50={:.2}ms p99={:.2}ms rss={:.1}MiB{}",
                (end - started).as_secs_f64(),
                window.calls,
                window.errors,
                window.p50.as_secs_f64() * 1e3,
                window.p99.as_secs_f64() * 1e3,
                window.rss_mib,
                first_error
                    .map(|e| format!(" first error: {e}"))
                    .unwrap_or_default()
            );
            windows.push(window);
            window_start = end;
        }
    }
    for call in calls {
        call.await.expect("a call");
    }
    live_check
        .expect("the live check ran")
        .await
        .expect("the checker passes on the live store");
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let errors: Vec<&String> = samples.iter().filter_map(|s| s.failed.as_ref()).collect();
    assert!(
        errors.is_empty(),
        "{} calls failed, first: {}",
        errors.len(),
        errors[0]
    );
    assert_eq!(samples.len() as u64, total);

    // Flat: no window after the first (warm-up) has a p99 far above the
    // run's median window p99, and memory stops growing.
    let steady = &windows[1..windows.len().max(2) - 1];
    if steady.len() >= 2 {
        let mut p99s: Vec<Duration> = steady.iter().map(|w| w.p99).collect();
        p99s.sort();
        let median = p99s[p99s.len() / 2];
        for (i, w) in steady.iter().enumerate() {
            assert!(
                w.p99 <= median * 4 + Duration::from_millis(20),
                "window {} p99 {:?} against a median of {median:?}: {windows:?}",
                i + 1,
                w.p99
            );
        }
        let first = steady[0].rss_mib;
        let last = steady[steady.len() - 1].rss_mib;
        assert!(
            last <= first * 1.3 + 16.0,
            "resident memory grew from {first:.1} to {last:.1} MiB: {windows:?}"
        );
    }
    let store = association_service::store::connect(&url, 2)
        .await
        .expect("store");
    common::assert_verified(store.as_ref(), "after the soak").await;
    drop(server);
    let read_through = feed_reader.await.expect("the feed reader");
    assert!(read_through > 0, "the feed reader saw changes");
}
