//! N1, the noisy-neighbour benchmark: the release server on PostgreSQL at
//! production durability (fsync and synchronous_commit on) with
//! authentication on and a per-portal rate of `N1_RATE` calls a second. A
//! victim portal runs a steady mix (creates, streamed lists, definition
//! reads) at `VICTIM_RATE` calls a second, alone and while a second portal
//! floods at ten times its rate; the phases alternate, `N1_ROUNDS` of each,
//! `N1_SECS` seconds each. N1 = the victim's p99 under the flood ÷ its p99
//! alone (median over the rounds, with the spread). The flooder runs in a
//! process of its own (this binary with `--flood URL SECS`), at the
//! scheduling priority `N1_FLOOD_NICE` (default 0) gives it.
//!
//! Run: `cargo bench --bench noisy_neighbour` (N1_SECS=20, N1_ROUNDS=3).
#[path = "../tests/common/mod.rs"]
mod common;

use common::{env_u64, median};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use association_service::auth::token_hash;
use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{
    AssociationInput, CreateAssociationsRequest, ListAssociationsRequest, ListDefinitionsRequest,
};
use common::ServerProcess;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const FLOODER: i64 = 1;
const VICTIM: i64 = 2;
/// Calls a second each portal may make.
const N1_RATE: u32 = 500;
/// The victim's steady rate.
const VICTIM_RATE: u64 = 100;
/// Concurrent flooding clients.
const FLOOD_CLIENTS: u64 = 32;

fn token(name: &str, portal: i64) -> String {
    format!(
        "[[auth.tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nportals = [{portal}]\nroles = [\"read\", \"write\"]\n",
        token_hash(&common::token_for(name))
    )
}

/// One victim call of the mix (`n` picks which); its latency.
async fn victim_call(
    write: &mut AssociationWriteClient<Channel>,
    read: &mut AssociationReadClient<Channel>,
    n: u64,
) -> Duration {
    let started = Instant::now();
    match n % 10 {
        0..=5 => {
            let request = CreateAssociationsRequest {
                portal_id: VICTIM,
                from_object_type: "deals".into(),
                to_object_type: "contacts".into(),
                inputs: vec![AssociationInput {
                    from_id: 1_000 + n as i64,
                    to_id: 1 + (n % 1_000) as i64,
                    types: vec![],
                }],
            };
            let answer = write
                .create_associations(common::with_token(request, "victim"))
                .await
                .expect("the victim's create");
            assert!(answer.into_inner().errors.is_empty());
        }
        6..=8 => {
            let request = ListAssociationsRequest {
                portal_id: VICTIM,
                object_type: "deals".into(),
                object_id: 1,
                to_object_type: "contacts".into(),
                ..Default::default()
            };
            let mut stream = read
                .list_associations(common::with_token(request, "victim"))
                .await
                .expect("the victim's list")
                .into_inner();
            while let Some(chunk) = stream.next().await {
                chunk.expect("the victim's list chunk");
            }
        }
        _ => {
            let request = ListDefinitionsRequest {
                portal_id: VICTIM,
                from_object_type: "deals".into(),
                to_object_type: "contacts".into(),
            };
            read.list_definitions(common::with_token(request, "victim"))
                .await
                .expect("the victim's definitions");
        }
    }
    started.elapsed()
}

/// The victim's mix at its steady rate for `secs`: its latencies, sorted.
async fn victim(server: &ServerProcess, secs: u64) -> Vec<Duration> {
    let channel = server.channel().await;
    let mut write = AssociationWriteClient::new(channel.clone());
    let mut read = AssociationReadClient::new(channel);
    let mut every = tokio::time::interval(Duration::from_micros(1_000_000 / VICTIM_RATE));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        every.tick().await;
        let n = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
        latencies.push(victim_call(&mut write, &mut read, n).await);
    }
    latencies.sort();
    latencies
}

/// The victim's next call number (its creates never repeat a pair).
static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

/// The flooder: creates at ten times the portal's rate for `secs`; how
/// many were served and refused.
async fn flood(grpc: &str, secs: u64) -> (u64, u64) {
    let channel = tonic::transport::Channel::from_shared(grpc.to_string())
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("the server accepts connections");
    let served = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let per_client = Duration::from_micros(1_000_000 * FLOOD_CLIENTS / (10 * N1_RATE as u64));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..FLOOD_CLIENTS {
        let mut write = AssociationWriteClient::new(channel.clone());
        let (served, refused) = (Arc::clone(&served), Arc::clone(&refused));
        clients.spawn(async move {
            let mut every = tokio::time::interval(per_client);
            let started = Instant::now();
            let mut n = 0i64;
            while started.elapsed() < Duration::from_secs(secs) {
                every.tick().await;
                n += 1;
                let request = CreateAssociationsRequest {
                    portal_id: FLOODER,
                    from_object_type: "deals".into(),
                    to_object_type: "contacts".into(),
                    inputs: vec![AssociationInput {
                        from_id: 1 + client as i64,
                        to_id: n,
                        types: vec![],
                    }],
                };
                match write
                    .create_associations(common::with_token(request, "flooder"))
                    .await
                {
                    Ok(_) => served.fetch_add(1, Ordering::Relaxed),
                    Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    clients.join_all().await;
    (
        served.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}

/// The flooder in a process of its own, niced by `nice`: how many of its
/// calls were served and refused.
async fn flood_process(server: &ServerProcess, secs: u64, nice: i32) -> (u64, u64) {
    let exe = std::env::current_exe().expect("this benchmark's binary");
    let output = tokio::process::Command::new("nice")
        .arg("-n")
        .arg(nice.to_string())
        .arg(exe)
        .args(["--flood", &server.grpc, &secs.to_string()])
        .output()
        .await
        .expect("start the flooder");
    assert!(
        output.status.success(),
        "the flooder: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut counts = text.split_whitespace().map(|n| n.parse().expect("a count"));
    (counts.next().unwrap(), counts.next().unwrap())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--flood") {
        let secs = args[at + 2].parse().expect("seconds");
        let (served, refused) = flood(&args[at + 1], secs).await;
        println!("{served} {refused}");
        return;
    }
    let nice = env_u64("N1_FLOOD_NICE", 0) as i32;
    let secs = env_u64("N1_SECS", 20);
    let rounds = env_u64("N1_ROUNDS", 3);
    let admin = tokio::task::spawn_blocking(common::durable_postgres_admin_url)
        .await
        .expect("durable PostgreSQL");
    let url = common::fresh_database_on(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ncalls_per_second_per_portal = {N1_RATE}\ncall_burst_per_portal = {N1_RATE}\n[read]\ncursor_secret = \"the noisy neighbour benchmark's secret\"\n{}{}",
            token("flooder", FLOODER),
            token("victim", VICTIM)
        ),
    )
    .unwrap();
    let config_text = config.display().to_string();
    let server = ServerProcess::start(&url, &[("ASSOC_CONFIG", config_text.as_str())]).await;
    // Deal 1 of the victim has 200 contacts, for its streamed lists.
    let mut write = AssociationWriteClient::new(server.channel().await);
    let request = common::deal_with_contacts(VICTIM, 1, 1..=200);
    write
        .create_associations(common::with_token(request, "victim"))
        .await
        .expect("seed the victim");
    victim(&server, 2).await;

    let (mut alone, mut flooded, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let quiet = victim(&server, secs).await;
        let quiet_p99 = percentile(&quiet, 0.99);
        let ((served, refused), loud) =
            tokio::join!(flood_process(&server, secs, nice), victim(&server, secs));
        let loud_p99 = percentile(&loud, 0.99);
        eprintln!(
            "round {round}: victim alone p50 {:.2} ms p99 {quiet_p99:.2} ms ({} calls); under the flood p50 {:.2} ms p99 {loud_p99:.2} ms ({} calls); flooder {served} served, {refused} refused; N1 {:.2}",
            percentile(&quiet, 0.5),
            quiet.len(),
            percentile(&loud, 0.5),
            loud.len(),
            loud_p99 / quiet_p99
        );
        alone.push(quiet_p99);
        flooded.push(loud_p99);
        ratios.push(loud_p99 / quiet_p99);
    }
    let (lo, hi) = (
        ratios.iter().copied().fold(f64::MAX, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "N1 = {:.2} (median of {rounds} rounds, spread {lo:.2}-{hi:.2}, flooder at nice {nice}); victim p99 alone {:.2} ms, under the flood {:.2} ms (medians)",
        median(ratios.clone()),
        median(alone),
        median(flooded)
    );
}
