//! `kill -9` of the server binary while batch writes, an import and merges
//! run, then a restart on the same store, several times, on both stores:
//! every acknowledged write is present, no batch, import message or merge
//! is half-applied, and the store checker finds nothing. `CRASH_CYCLES`
//! sets the number of kills (3 by default; the long run uses more).
mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{
    AssociationInput, CreateAssociationsRequest, ImportAssociationsRequest, ImportRow,
    MergeObjectsRequest,
};
use common::ServerProcess;
use tokio::sync::watch;

const PORTAL: i64 = 1;
/// Contacts per batch write (one deal each).
const BATCH_ROWS: i64 = 200;
/// Rows per import message (one deal each), and messages per import.
const IMPORT_ROWS: i64 = 100;
const IMPORT_MESSAGES: i64 = 40;
/// Contact pairs merged per cycle: the primary holds companies 1-3 of its
/// block, the merged one 3-5, so a merge leaves the primary with 5.
const MERGES: i64 = 12;
/// Acknowledgements awaited before the kill: batches, and merges.
const KILL_AFTER_BATCHES: usize = 6;
const KILL_AFTER_MERGES: usize = MERGES as usize / 2;

fn cycles() -> i64 {
    std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn batch_deal(cycle: i64, n: i64) -> i64 {
    1_000_000 * (cycle + 1) + n
}

fn import_deal(cycle: i64, message: i64) -> i64 {
    50_000_000 + 1_000 * cycle + message
}

/// (primary, merged) contacts of merge `k` of `cycle`.
fn merge_pair(cycle: i64, k: i64) -> (i64, i64) {
    let base = 90_000_000 + 1_000 * cycle + 2 * k;
    (base, base + 1)
}

fn companies_of(contact: i64, merged: bool) -> std::ops::RangeInclusive<i64> {
    let block = contact / 2 * 10;
    if merged {
        block + 3..=block + 5
    } else {
        block + 1..=block + 3
    }
}

fn create(
    from_type: &str,
    from: i64,
    to_type: &str,
    to: impl Iterator<Item = i64>,
) -> CreateAssociationsRequest {
    CreateAssociationsRequest {
        portal_id: PORTAL,
        from_object_type: from_type.into(),
        to_object_type: to_type.into(),
        inputs: to
            .map(|to_id| AssociationInput {
                from_id: from,
                to_id,
                types: vec![],
            })
            .collect(),
    }
}

/// What the clients sent and what the server acknowledged.
#[derive(Default)]
struct Ledger {
    batches_sent: BTreeSet<i64>,
    batches_acked: BTreeSet<i64>,
    imports_sent: BTreeSet<i64>,
    imports_acked: BTreeSet<i64>,
    merges_tried: BTreeSet<(i64, i64)>,
    merges_acked: BTreeSet<(i64, i64)>,
}

/// One cycle: start, prepare the merges, run the clients, kill -9 once
/// enough is acknowledged.
async fn crash_cycle(url: &str, cycle: i64, ledger: &Arc<Mutex<Ledger>>) {
    let mut server = ServerProcess::start(url, &[]).await;
    let channel = server.channel().await;
    let mut write = AssociationWriteClient::new(channel.clone());
    for k in 0..MERGES {
        let (primary, merged) = merge_pair(cycle, k);
        for (contact, is_merged) in [(primary, false), (merged, true)] {
            let answer = write
                .create_associations(create(
                    "contacts",
                    contact,
                    "companies",
                    companies_of(contact, is_merged),
                ))
                .await
                .expect("prepare a merge");
            assert!(answer.into_inner().errors.is_empty());
        }
    }

    let (acked_tx, mut acked_rx) = watch::channel((0usize, 0usize));
    let acked_tx = Arc::new(acked_tx);
    let mut clients = Vec::new();
    for writer in 0..2 {
        let (mut write, ledger, acked) = (write.clone(), ledger.clone(), acked_tx.clone());
        clients.push(tokio::spawn(async move {
            for n in 0.. {
                let deal = batch_deal(cycle, 2 * n + writer);
                ledger.lock().unwrap().batches_sent.insert(deal);
                match write
                    .create_associations(create("deals", deal, "contacts", 1..=BATCH_ROWS))
                    .await
                {
                    Ok(answer) => {
                        assert!(answer.into_inner().errors.is_empty());
                        ledger.lock().unwrap().batches_acked.insert(deal);
                        acked.send_modify(|(batches, _)| *batches += 1);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    {
        let (mut write, ledger) = (write.clone(), ledger.clone());
        clients.push(tokio::spawn(async move {
            let messages: Vec<ImportAssociationsRequest> = (0..IMPORT_MESSAGES)
                .map(|m| {
                    let deal = import_deal(cycle, m);
                    ImportAssociationsRequest {
                        portal_id: PORTAL,
                        rows: (1..=IMPORT_ROWS)
                            .map(|to| ImportRow {
                                line: (m * IMPORT_ROWS + to) as u64,
                                from_object_type: "deals".into(),
                                from_object_id: deal,
                                to_object_type: "companies".into(),
                                to_object_id: to,
                                ..Default::default()
                            })
                            .collect(),
                    }
                })
                .collect();
            ledger
                .lock()
                .unwrap()
                .imports_sent
                .extend((0..IMPORT_MESSAGES).map(|m| import_deal(cycle, m)));
            if let Ok(answer) = write
                .import_associations(tokio_stream::iter(messages))
                .await
            {
                assert_eq!(answer.into_inner().failed, 0);
                ledger
                    .lock()
                    .unwrap()
                    .imports_acked
                    .extend((0..IMPORT_MESSAGES).map(|m| import_deal(cycle, m)));
            }
        }));
    }
    {
        let (mut write, ledger, acked) = (write.clone(), ledger.clone(), acked_tx.clone());
        clients.push(tokio::spawn(async move {
            for k in 0..MERGES {
                let pair = merge_pair(cycle, k);
                ledger.lock().unwrap().merges_tried.insert(pair);
                let merge = MergeObjectsRequest {
                    portal_id: PORTAL,
                    object_type: "contacts".into(),
                    primary_object_id: pair.0,
                    object_id_to_merge: pair.1,
                    new_object_id: 0,
                };
                if write.merge_objects(merge).await.is_err() {
                    return;
                }
                ledger.lock().unwrap().merges_acked.insert(pair);
                acked.send_modify(|(_, merges)| *merges += 1);
            }
        }));
    }
    acked_rx
        .wait_for(|&(batches, merges)| batches >= KILL_AFTER_BATCHES && merges >= KILL_AFTER_MERGES)
        .await
        .expect("the clients acknowledge writes");
    server.child.start_kill().expect("kill -9");
    let status = server.child.wait().await.expect("the killed server");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL"
    );
    for client in clients {
        client.await.expect("a client task");
    }
}

async fn kill_9_loses_no_acknowledged_write(backend: &str) {
    let store = common::fresh_store(backend).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for cycle in 0..cycles() {
        crash_cycle(&store.url, cycle, &ledger).await;
    }
    // Restarts on what the last kill left.
    let server = ServerProcess::start(&store.url, &[]).await;
    let rows = common::associated_records(&store.url).await;
    let held = |t: &str, id: i64| rows.get(&(t.to_string(), id)).copied().unwrap_or(0);
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(ledger.batches_acked.len() >= KILL_AFTER_BATCHES * cycles() as usize);
    for &deal in &ledger.batches_sent {
        let n = held("0-3", deal);
        assert!(
            n == 0 || n == BATCH_ROWS,
            "{backend}: batch of deal {deal} half-applied: {n} records"
        );
        if ledger.batches_acked.contains(&deal) {
            assert_eq!(
                n, BATCH_ROWS,
                "{backend}: acknowledged batch of deal {deal} lost"
            );
        }
    }
    for &deal in &ledger.imports_sent {
        let n = held("0-3", deal);
        assert!(
            n == 0 || n == IMPORT_ROWS,
            "{backend}: import message of deal {deal} half-applied: {n} records"
        );
        if ledger.imports_acked.contains(&deal) {
            assert_eq!(
                n, IMPORT_ROWS,
                "{backend}: acknowledged import of deal {deal} lost"
            );
        }
    }
    for &(primary, merged) in &ledger.merges_tried {
        let state = (held("0-1", primary), held("0-1", merged));
        assert!(
            state == (5, 0) || state == (3, 3),
            "{backend}: merge of {merged} into {primary} half-applied: {state:?} companies"
        );
        if ledger.merges_acked.contains(&(primary, merged)) {
            assert_eq!(
                state,
                (5, 0),
                "{backend}: acknowledged merge of {merged} into {primary} lost"
            );
        }
    }
    eprintln!(
        "{backend}: {} kills; batches {} sent, {} acknowledged; import messages {} sent, {} acknowledged; \
         merges {} tried, {} acknowledged",
        cycles(),
        ledger.batches_sent.len(),
        ledger.batches_acked.len(),
        ledger.imports_sent.len(),
        ledger.imports_acked.len(),
        ledger.merges_tried.len(),
        ledger.merges_acked.len()
    );
    let acked_merges = ledger.merges_acked.len();
    assert!(acked_merges >= KILL_AFTER_MERGES * cycles() as usize);
    drop(ledger);
    common::assert_verified(
        common::open(&store).await.as_ref(),
        &format!("{backend}: after {} kills", cycles()),
    )
    .await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_no_acknowledged_write_on_sqlite() {
    kill_9_loses_no_acknowledged_write("sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_no_acknowledged_write_on_postgres() {
    kill_9_loses_no_acknowledged_write("postgres").await;
}
