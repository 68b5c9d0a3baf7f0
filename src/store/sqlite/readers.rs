//! The SQLite store's stream connections, on rusqlite: each open stream
//! holds one on a blocking thread and steps its one statement there,
//! decoding each row straight from SQLite's columns into its batch, so a
//! row costs no hand-over between threads. The thread is paced by the
//! stream's small channel; when the receiver goes away the statement ends
//! and the connection goes back to the pool.
use std::path::PathBuf;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool::Runtime;
use deadpool_sync::SyncWrapper;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use super::*;

/// The page cache of each stream's connection, in KiB: a stream reads its
/// range once, so a bigger cache would only hold pages it has passed.
const SCAN_CACHE_KIB: i64 = 1024;

/// Opens the store's file read-only, with a small page cache and no
/// memory map (bounded memory per stream).
pub(super) struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
}

impl managed::Manager for Readers {
    type Type = SyncWrapper<Connection>;
    type Error = rusqlite::Error;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        let (path, busy) = (self.path.clone(), self.busy_timeout);
        SyncWrapper::new(Runtime::Tokio1, move || {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(path, flags)?;
            conn.busy_timeout(busy)?;
            conn.pragma_update(None, "cache_size", -SCAN_CACHE_KIB)?;
            conn.pragma_update(None, "mmap_size", 0)?;
            Ok(conn)
        })
        .await
    }

    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> RecycleResult<Self::Error> {
        // A connection whose stream panicked is dropped, not reused.
        if conn.is_mutex_poisoned() {
            return Err(RecycleError::message("a stream stopped on this connection"));
        }
        Ok(())
    }
}

pub(super) type ReaderPool = managed::Pool<Readers>;

/// A pool of at most `max` stream connections to the file at `path`; a
/// stream waits at most `wait` for one.
pub(super) fn pool(path: PathBuf, max: u32, wait: Duration, busy: Duration) -> ReaderPool {
    let readers = Readers {
        path,
        busy_timeout: busy,
    };
    managed::Pool::builder(readers)
        .max_size(max.max(1) as usize)
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .runtime(Runtime::Tokio1)
        .build()
        .expect("a pool with a runtime builds")
}

/// Runs `sql` with `params` on a stream connection and sends its rows,
/// decoded by `decode`, in batches of `batch` until they end or the
/// receiver goes away. Every failure, a panic of the reader included, is
/// sent as an error, so a stream never ends short without one.
pub(super) fn run<T: Send + 'static>(
    pool: ReaderPool,
    batch: usize,
    sql: &'static str,
    params: Vec<Value>,
    decode: impl FnMut(&rusqlite::Row<'_>) -> StoreResult<T> + Send + 'static,
) -> RowBatches<T> {
    let (sender, receiver) = mpsc::channel(SCAN_AHEAD);
    tokio::spawn(async move {
        let failed = match pool.get().await {
            Err(err) => StoreError::from(err),
            Ok(conn) => {
                let rows = sender.clone();
                let stepped = conn
                    .interact(move |conn| {
                        step(conn, sql, params, Batcher::new(rows, batch), decode)
                    })
                    .await;
                match stepped {
                    Ok(Ok(())) => return,
                    Ok(Err(err)) => err,
                    Err(err) => StoreError::ReaderStopped(err.to_string()),
                }
            }
        };
        let _ = sender.send(Err(failed)).await;
    });
    receiver
}

/// Steps the statement on this (blocking) thread, decoding into `out`.
fn step<T>(
    conn: &mut Connection,
    sql: &str,
    params: Vec<Value>,
    mut out: Batcher<T>,
    mut decode: impl FnMut(&rusqlite::Row<'_>) -> StoreResult<T>,
) -> StoreResult<()> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(rusqlite::params_from_iter(params))?;
    while let Some(row) = rows.next()? {
        if !out.push_blocking(decode(row)?) {
            return Ok(());
        }
    }
    out.flush_blocking();
    Ok(())
}

impl From<managed::PoolError<rusqlite::Error>> for StoreError {
    fn from(err: managed::PoolError<rusqlite::Error>) -> Self {
        match err {
            managed::PoolError::Backend(err) => StoreError::Sqlite(err),
            // A wait for a stream connection past store.acquire_timeout_ms.
            other => StoreError::Unreachable(format!("no stream connection free: {other}")),
        }
    }
}

/// Decodes an object type column, parsing its text only when it differs
/// from the row before's (rows come in key order, so types repeat).
#[derive(Default)]
pub(super) struct TypeColumn {
    last: Vec<u8>,
    decoded: Option<ObjectType>,
}

impl TypeColumn {
    pub(super) fn decode(&mut self, row: &rusqlite::Row<'_>, at: usize) -> StoreResult<ObjectType> {
        let bytes = row
            .get_ref(at)?
            .as_bytes()
            .map_err(|e| StoreError::Corrupt(format!("column {at}: {e}")))?;
        match self.decoded {
            Some(decoded) if self.last == bytes => Ok(decoded),
            _ => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| StoreError::Corrupt(format!("column {at}: {e}")))?;
                let decoded = decode_object_type(text)?;
                self.last.clear();
                self.last.extend_from_slice(bytes);
                self.decoded = Some(decoded);
                Ok(decoded)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ErrorKind;

    /// A file holding `rows` rows of t(x): 1, 2, …
    fn numbers(rows: i64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("numbers.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .unwrap();
        for x in 1..=rows {
            conn.execute("INSERT INTO t VALUES (?1)", [x]).unwrap();
        }
        (dir, path)
    }

    fn readers(path: &std::path::Path, max: u32) -> ReaderPool {
        let wait = Duration::from_millis(200);
        pool(path.to_path_buf(), max, wait, wait)
    }

    const ALL: &str = "SELECT x FROM t ORDER BY x";

    async fn drain<T>(mut rows: RowBatches<T>) -> Vec<StoreResult<Vec<T>>> {
        let mut got = Vec::new();
        while let Some(batch) = rows.recv().await {
            got.push(batch);
        }
        got
    }

    #[tokio::test]
    async fn rows_come_in_batches_and_a_bad_row_ends_them_with_its_error() {
        let (_dir, path) = numbers(10);
        let pool = readers(&path, 2);
        let got = drain(run(pool.clone(), 4, ALL, vec![], |r| {
            Ok(r.get::<_, i64>(0)?)
        }))
        .await;
        let batches: Vec<Vec<i64>> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(batches, [vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]]);

        let got = drain(run(pool, 3, ALL, vec![], |r| match r.get::<_, i64>(0)? {
            5 => Err(StoreError::Corrupt("row 5".into())),
            x => Ok(x),
        }))
        .await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), &[1, 2, 3]);
        assert!(matches!(&got[1], Err(StoreError::Corrupt(why)) if why == "row 5"));
    }

    #[tokio::test]
    async fn a_reader_that_panics_ends_its_stream_with_an_error_and_its_connection_is_dropped() {
        let (_dir, path) = numbers(3);
        let pool = readers(&path, 1);
        let got = drain(run(pool.clone(), 1, ALL, vec![], |r| {
            match r.get::<_, i64>(0)? {
                2 => panic!("a reader's bug"),
                x => Ok(x),
            }
        }))
        .await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), &[1]);
        let err = got[1].as_ref().unwrap_err();
        assert!(matches!(err, StoreError::ReaderStopped(_)), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Internal);
        // The pool's one connection was poisoned: a new one serves.
        let got = drain(run(pool, 5, ALL, vec![], |r| Ok(r.get::<_, i64>(0)?))).await;
        assert_eq!(
            got.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [vec![1, 2, 3]]
        );
    }

    #[tokio::test]
    async fn a_type_column_is_decoded_afresh_whenever_its_text_changes() {
        let (dir, path) = numbers(0);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE types (n INTEGER PRIMARY KEY, t TEXT);
             INSERT INTO types (t) VALUES ('0-1'), ('0-1'), ('0-2'), ('0-1'), ('2-7'), ('0-9x')",
        )
        .unwrap();
        let mut column = TypeColumn::default();
        let sql = "SELECT t FROM types ORDER BY n";
        let got = drain(run(readers(&path, 1), 5, sql, vec![], move |r| {
            column.decode(r, 0).map(|t| t.to_string())
        }))
        .await;
        drop(dir);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got[0].as_ref().unwrap(),
            &["0-1", "0-1", "0-2", "0-1", "2-7"]
        );
        assert!(matches!(&got[1], Err(StoreError::Corrupt(_))), "{got:?}");
    }

    #[test]
    fn a_busy_or_unopenable_file_is_unavailable_and_other_failures_internal() {
        let failure = |code| {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CANTOPEN; SQLITE_CORRUPT.
        for code in [5, 6, 14] {
            assert_eq!(failure(code).kind(), ErrorKind::Unavailable, "{code}");
        }
        assert_eq!(failure(11).kind(), ErrorKind::Internal);
    }

    #[tokio::test]
    async fn a_stream_waits_a_bounded_time_for_a_connection_and_gets_one_when_a_reader_leaves() {
        let (_dir, path) = numbers(10);
        let pool = readers(&path, 1);
        // A reader that takes nothing holds the pool's one connection.
        let mut stalled = run(pool.clone(), 1, ALL, vec![], |r| Ok(r.get::<_, i64>(0)?));
        assert_eq!(stalled.recv().await.unwrap().unwrap(), [1]);
        let got = drain(run(pool.clone(), 1, ALL, vec![], |r| {
            Ok(r.get::<_, i64>(0)?)
        }))
        .await;
        assert_eq!(got.len(), 1, "{got:?}");
        let err = got[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
        drop(stalled);
        let got = drain(run(pool, 10, ALL, vec![], |r| Ok(r.get::<_, i64>(0)?))).await;
        let batches: Vec<Vec<i64>> = got.into_iter().map(Result::unwrap).collect();
        // A full last batch is followed by the (empty) flush at the end.
        assert_eq!(batches, [(1..=10).collect(), vec![]]);
    }
}
