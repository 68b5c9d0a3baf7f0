//! Bulk import and export over gRPC (and the health check), a module of the binary (`main.rs`), not
//! of the library: the file formats (CSV with a header row, or JSON Lines)
//! and the `import` / `export` commands, with a progress bar on stderr and a
//! summary at the end.
//!
//! Columns (CSV header names, JSON keys): `from_object_type`,
//! `from_object_id`, `to_object_type`, `to_object_id` (ids as numbers or
//! strings), `association_category` and `association_type_id` (both empty
//! for the pair's unlabeled type), `label` (a user-defined type's text:
//! import finds the label by it in the target portal, or creates it:
//! `labels.rs`). The import is here; the export is `export.rs`.
mod export;
mod labels;
mod progress;

pub use export::export;
use labels::{named_label, resolve_labels, LabelMap};

pub use progress::Stored;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use association_service::domain::Category;
use association_service::domain::ErrorKind;
use association_service::files::{self, FileRow, Format};
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{ImportAssociationBatchesRequest, ImportRow};
use tonic::transport::Channel;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{path}: {source}")]
    File { path: String, source: io::Error },
    #[error("{path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("cannot write the export: {0}")]
    Write(String),
    #[error("cannot reach the service at {server}: {source}")]
    Connect {
        server: String,
        source: tonic::transport::Error,
    },
    #[error("the service refused: {}", .0.message())]
    Rpc(tonic::Status),
    #[error("the service requires a token: pass --token TOKEN or set ASSOC_TOKEN ({})", .0.message())]
    NoToken(tonic::Status),
    #[error("the service's answer is malformed: {0}")]
    Malformed(String),
    #[error(
        "{0}: no import of it to resume (its progress file {0}.import-progress does not exist)"
    )]
    NothingToResume(String),
    #[error("{path}: the import to resume was into portal {portal} from a file of {size} bytes; start it again without --resume")]
    NotTheSameImport {
        path: String,
        portal: i64,
        size: u64,
    },
    #[error("lost the connection to the service: {}", .0.message())]
    ConnectionLost(tonic::Status),
}

/// Whether a call failed because its connection went (the server stopped,
/// the network dropped) rather than by the service's answer.
fn connection_lost(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<hyper::Error>() || err.is::<io::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

impl From<tonic::Status> for TransferError {
    /// A refusal for want of credentials says how to give the CLI a token.
    fn from(status: tonic::Status) -> TransferError {
        if status.code() == tonic::Code::Unauthenticated
            && status.message().contains("no credentials")
        {
            TransferError::NoToken(status)
        } else if connection_lost(&status) {
            TransferError::ConnectionLost(status)
        } else {
            TransferError::Rpc(status)
        }
    }
}

impl TransferError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TransferError::File { .. }
            | TransferError::Unreadable { .. }
            | TransferError::NothingToResume(_)
            | TransferError::NotTheSameImport { .. }
            | TransferError::Write(_) => ErrorKind::InvalidArgument,
            TransferError::Connect { .. } | TransferError::ConnectionLost(_) => {
                ErrorKind::Unavailable
            }
            TransferError::Malformed(_) => ErrorKind::Internal,
            TransferError::NoToken(_) => ErrorKind::Unauthenticated,
            TransferError::Rpc(status) => match status.code() {
                tonic::Code::Unavailable => ErrorKind::Unavailable,
                tonic::Code::Internal | tonic::Code::Unknown => ErrorKind::Internal,
                _ => ErrorKind::InvalidArgument,
            },
        }
    }
}

/// Where the service is and the bearer token to send, if any.
#[derive(Clone, Debug)]
pub struct Connection {
    pub server: String,
    pub token: Option<String>,
}

impl Connection {
    /// The server's URL: as given, or `http://` and the address when the
    /// scheme is left out (`127.0.0.1:50051`).
    fn url(&self) -> String {
        if self.server.contains("://") {
            self.server.clone()
        } else {
            format!("http://{}", self.server)
        }
    }

    async fn channel(&self) -> Result<Channel, TransferError> {
        let connect_error = |source| TransferError::Connect {
            server: self.url(),
            source,
        };
        tonic::transport::Endpoint::from_shared(self.url())
            .map_err(connect_error)?
            .connect()
            .await
            .map_err(connect_error)
    }

    /// `message` as a request carrying the token.
    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, TransferError> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                TransferError::Malformed("the token holds characters a header cannot".into())
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportSummary {
    pub rows: u64,
    /// Rows that wrote something.
    pub created: u64,
    /// Rows whose association was stored already.
    pub already_present: u64,
    pub failed: u64,
    /// (line, message) of failures: unreadable lines, then the service's.
    pub errors: Vec<(u64, String)>,
    /// Labels the import created (`--create-labels`), as lines for people.
    pub labels_created: Vec<String>,
    /// With `--resume`: the line the earlier run's acknowledgements reached.
    pub resumed_after: Option<u64>,
}

/// `n rows`, with the right plural.
pub fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".to_string()
    } else {
        format!("{n} rows")
    }
}

/// Line numbers a grouped failure lists before "and N more".
const LINES_SHOWN: usize = 5;

impl ImportSummary {
    /// The failures for people, one line per distinct reason (in order of
    /// first appearance): `line L: reason` for a reason met once, else
    /// `N rows: reason (lines a, b, … and M more)`.
    pub fn grouped_errors(&self) -> Vec<String> {
        let mut groups: Vec<(&str, Vec<u64>)> = Vec::new();
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (line, message) in &self.errors {
            match index.get(message.as_str()) {
                Some(&i) => groups[i].1.push(*line),
                None => {
                    index.insert(message, groups.len());
                    groups.push((message, vec![*line]));
                }
            }
        }
        groups
            .into_iter()
            .map(|(message, lines)| match lines.as_slice() {
                [line] => format!("line {line}: {message}"),
                _ => {
                    let shown: Vec<String> =
                        lines.iter().take(LINES_SHOWN).map(u64::to_string).collect();
                    let more = match lines.len().saturating_sub(LINES_SHOWN) {
                        0 => String::new(),
                        n => format!(" and {n} more"),
                    };
                    format!(
                        "{}: {message} (lines {}{more})",
                        rows(lines.len() as u64),
                        shown.join(", ")
                    )
                }
            })
            .collect()
    }

    /// What the import did, in one line for people.
    pub fn describe(&self) -> String {
        if self.rows > 0 && self.created == 0 && self.failed == 0 {
            return format!("{}, all already present: nothing changed", rows(self.rows));
        }
        format!(
            "{}: {} created, {} already present, {} failed",
            rows(self.rows),
            self.created,
            self.already_present,
            self.failed
        )
    }
}

/// A spinner counting rows, for exports.
fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{msg} {pos} rows").expect("valid template"));
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.with_message(what.to_string())
}

/// Counts the bytes read, for the progress bar.
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Turns a file row into an import row, or says why it cannot be one.
fn to_import_row(line: u64, row: FileRow) -> Result<ImportRow, String> {
    let category = match row.association_category.as_deref() {
        None => 0,
        Some(name) => Category::parse(name)
            .map(|c| i32::from(c.code()))
            .ok_or_else(|| {
                format!("association_category must be HUBSPOT_DEFINED, USER_DEFINED or INTEGRATOR_DEFINED, not {name:?}")
            })?,
    };
    Ok(ImportRow {
        line,
        from_object_type: row.from_object_type,
        from_object_id: row.from_object_id,
        to_object_type: row.to_object_type,
        to_object_id: row.to_object_id,
        category,
        type_id: row.association_type_id.unwrap_or(0),
    })
}

/// Reads every row of `path` in order, handing each (line, row or why it
/// cannot be read) to `visit` until it answers false.
fn scan_rows(
    path: &Path,
    format: Format,
    read: Arc<AtomicU64>,
    visit: impl FnMut(u64, Result<FileRow, String>) -> bool,
) -> Result<(), TransferError> {
    let reader = Counted {
        inner: File::open(path).map_err(|source| TransferError::File {
            path: path.display().to_string(),
            source,
        })?,
        read,
    };
    files::read_rows(reader, format, visit).map_err(|err| match err {
        files::FileError::Io(source) => TransferError::File {
            path: path.display().to_string(),
            source,
        },
        files::FileError::Unreadable(reason) | files::FileError::Write(reason) => {
            TransferError::Unreadable {
                path: path.display().to_string(),
                reason,
            }
        }
    })
}

/// Reads `path` and sends its rows in batches, each label named by text
/// replaced by the target portal's type (`labels`); returns how many rows it
/// read and the lines it could not send.
fn send_rows(
    job: &ImportJob,
    format: Format,
    labels: &LabelMap,
    skip_through: u64,
    sender: mpsc::Sender<ImportAssociationBatchesRequest>,
    sent: Arc<Mutex<VecDeque<u64>>>,
) -> Result<(u64, Vec<(u64, String)>), TransferError> {
    let (path, portal) = (job.path.as_path(), job.portal);
    // The command line refuses sizes outside 1..=MAX_WRITE_INPUTS.
    let batch_size = job
        .batch_size
        .clamp(1, association_service::service::MAX_WRITE_INPUTS);
    let mut unreadable = Vec::new();
    let mut rows = Vec::with_capacity(batch_size);
    let mut total = 0u64;
    let read = Arc::new(AtomicU64::new(0));
    let flush = |rows: &mut Vec<ImportRow>| -> bool {
        if rows.is_empty() {
            return true;
        }
        let message = ImportAssociationBatchesRequest {
            portal_id: portal,
            rows: std::mem::take(rows),
        };
        // Where the message ends in the file (to the reader's buffer).
        sent.lock()
            .expect("not poisoned")
            .push_back(read.load(Ordering::Relaxed));
        sender.blocking_send(message).is_ok()
    };
    scan_rows(path, format, Arc::clone(&read), |line, parsed| {
        total += 1;
        let row = parsed.and_then(|mut row| {
            if let Some(key) = named_label(&row) {
                match labels.get(&key) {
                    Some(Ok(type_id)) => row.association_type_id = Some(*type_id),
                    Some(Err(why)) => return Err(why.clone()),
                    None => {}
                }
            }
            to_import_row(line, row)
        });
        match row {
            // Acknowledged by an earlier run of the import.
            Ok(_) if line <= skip_through => {}
            Ok(row) => rows.push(row),
            Err(message) => unreadable.push((line, message)),
        }
        rows.len() < batch_size || flush(&mut rows)
    })?;
    flush(&mut rows);
    Ok((total, unreadable))
}

/// What to import, where, and how.
#[derive(Clone, Debug)]
pub struct ImportJob {
    pub portal: i64,
    pub path: PathBuf,
    /// The file's format, or guessed from its name.
    pub format: Option<Format>,
    /// Rows a message.
    pub batch_size: usize,
    /// Creates the labels the file names but the portal lacks.
    pub create_labels: bool,
    /// Starts after the rows an earlier run had acknowledged.
    pub resume: bool,
}

/// What an earlier run of the same import acknowledged, when resuming:
/// refused when there is none, or it was of another portal or file size.
fn earlier_progress(job: &ImportJob, size: u64) -> Result<Option<Stored>, TransferError> {
    let path = &job.path;
    match (job.resume, Stored::load(path)?) {
        (false, _) => Ok(None),
        (true, None) => Err(TransferError::NothingToResume(path.display().to_string())),
        (true, Some(earlier)) if earlier.portal != job.portal || earlier.file_size != size => {
            Err(TransferError::NotTheSameImport {
                path: path.display().to_string(),
                portal: earlier.portal,
                size: earlier.file_size,
            })
        }
        (true, Some(earlier)) => Ok(Some(earlier)),
    }
}

/// Imports a file into a portal through the service, keeping what the
/// service acknowledges in `stored` and beside the file (`progress.rs`).
pub async fn import(
    connection: &Connection,
    job: ImportJob,
    stored: Arc<Mutex<Option<Stored>>>,
) -> Result<ImportSummary, TransferError> {
    let (portal, path) = (job.portal, job.path.clone());
    let format = job.format.unwrap_or_else(|| Format::of(&path));
    let size = std::fs::metadata(&path)
        .map_err(|source| TransferError::File {
            path: path.display().to_string(),
            source,
        })?
        .len();
    let earlier = earlier_progress(&job, size)?;
    let mut progress = earlier.clone().unwrap_or(Stored {
        portal,
        file_size: size,
        ..Stored::default()
    });
    *stored.lock().expect("not poisoned") = Some(progress.clone());
    let channel = connection.channel().await?;
    let mut labels_created = Vec::new();
    let labels = resolve_labels(
        connection,
        &channel,
        portal,
        &path,
        format,
        job.create_labels,
        &mut labels_created,
    )
    .await?;
    let mut client = AssociationWriteClient::new(channel);
    let bar = progress_bar(size, progress.rows);
    let (sender, receiver) = mpsc::channel(4);
    let sent = Arc::new(Mutex::new(VecDeque::new()));
    let reader = {
        let sent = Arc::clone(&sent);
        let skip = progress.through_line;
        tokio::task::spawn_blocking(move || send_rows(&job, format, &labels, skip, sender, sent))
    };
    let request = connection.request(ReceiverStream::new(receiver))?;
    let mut answers = client
        .import_association_batches(request)
        .await?
        .into_inner();
    let started = std::time::Instant::now();
    let resumed_rows = progress.rows;
    while let Some(answer) = answers.message().await? {
        progress.add(&answer);
        progress.save(&path)?;
        *stored.lock().expect("not poisoned") = Some(progress.clone());
        if let Some(offset) = sent.lock().expect("not poisoned").pop_front() {
            bar.set_position(offset);
        }
        let rate = (progress.rows - resumed_rows) as f64 / started.elapsed().as_secs_f64();
        bar.set_message(format!(
            "importing: {} stored, {rate:.0} rows/s",
            rows(progress.rows)
        ));
    }
    let (total, unreadable) = reader.await.expect("the file reader does not panic")?;
    if !sent.lock().expect("not poisoned").is_empty() {
        return Err(TransferError::Malformed(
            "the service ended the import before answering every message".into(),
        ));
    }
    bar.finish_and_clear();
    Stored::remove(&path);
    let mut summary = ImportSummary::of(progress, total, unreadable);
    summary.labels_created = labels_created;
    summary.resumed_after = earlier.map(|e| e.through_line);
    Ok(summary)
}

impl ImportSummary {
    /// The summary of a finished import: what the service acknowledged
    /// over every run, the file's rows, and the failures of both sides
    /// (those the file reader found unreadable too) by line.
    fn of(progress: Stored, total: u64, mut unreadable: Vec<(u64, String)>) -> ImportSummary {
        let failed = progress.failed + unreadable.len() as u64;
        unreadable.extend(progress.errors);
        unreadable.sort_by_key(|(line, _)| *line);
        ImportSummary {
            rows: total,
            created: progress.created,
            already_present: progress.already_present,
            failed,
            errors: unreadable,
            labels_created: Vec::new(),
            resumed_after: None,
        }
    }
}

/// The import's bar: the file's bytes up to the last acknowledged message,
/// so its rate and time left are those of rows stored.
fn progress_bar(size: u64, stored: u64) -> ProgressBar {
    let bar = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {percent}% ({eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.with_message(format!("importing: {} stored", rows(stored)))
}

/// The gRPC health status of `service` ("" for the overall one) on `server`,
/// as its name (`SERVING`, `NOT_SERVING`, …).
pub async fn health(connection: &Connection, service: &str) -> Result<String, TransferError> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let mut client = HealthClient::new(connection.channel().await?);
    let answer = client
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map_err(TransferError::from)?
        .into_inner();
    Ok(answer.status().as_str_name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_grouped_by_reason_with_their_first_lines() {
        let missing = "no label 'Billing' from 0-1 to 0-2".to_string();
        let mut errors: Vec<(u64, String)> = (2..=9).map(|l| (l, missing.clone())).collect();
        errors.insert(1, (10, "bad id".to_string()));
        let summary = ImportSummary {
            rows: 9,
            created: 0,
            already_present: 0,
            failed: 9,
            errors,
            labels_created: vec![],
            resumed_after: None,
        };
        assert_eq!(
            summary.grouped_errors(),
            vec![
                format!("8 rows: {missing} (lines 2, 3, 4, 5, 6 and 3 more)"),
                "line 10: bad id".to_string(),
            ]
        );
    }
}
