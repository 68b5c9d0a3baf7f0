//! Bulk import and export over gRPC (and the health check), a module of the binary (`main.rs`), not
//! of the library: the file formats (CSV with a header row, or JSON Lines)
//! and the `import` / `export` commands, with a progress bar on stderr and a
//! summary at the end.
//!
//! Columns (CSV header names, JSON keys): `from_object_type`,
//! `from_object_id`, `to_object_type`, `to_object_id`,
//! `association_category` and `association_type_id` (both empty for the
//! pair's unlabeled type), `label` (written by export, ignored by import).
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use association_service::domain::Category;
use association_service::domain::ErrorKind;
use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{
    AssociationColumns, ChunkLayout, ExportAssociationsRequest, ExportedAssociation,
    ImportAssociationsRequest, ImportRow,
};

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// The format a file name implies (`.csv`, else JSON Lines).
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// One association row of a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRow {
    pub from_object_type: String,
    pub from_object_id: i64,
    pub to_object_type: String,
    pub to_object_id: i64,
    #[serde(default)]
    pub association_category: Option<String>,
    #[serde(default)]
    pub association_type_id: Option<i32>,
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{path}: {source}")]
    File { path: String, source: io::Error },
    #[error("cannot write the export: {0}")]
    Write(String),
    #[error("cannot reach the service at {server}: {source}")]
    Connect {
        server: String,
        source: tonic::transport::Error,
    },
    #[error("the service refused: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("the service's answer is malformed: {0}")]
    Malformed(String),
}

impl TransferError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TransferError::File { .. } | TransferError::Write(_) => ErrorKind::InvalidArgument,
            TransferError::Connect { .. } => ErrorKind::Unavailable,
            TransferError::Malformed(_) => ErrorKind::Internal,
            TransferError::Rpc(status) => match status.code() {
                tonic::Code::Unavailable => ErrorKind::Unavailable,
                tonic::Code::Internal | tonic::Code::Unknown => ErrorKind::Internal,
                _ => ErrorKind::InvalidArgument,
            },
        }
    }
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportSummary {
    pub rows: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// (line, message) of failures: unreadable lines, then the service's.
    pub errors: Vec<(u64, String)>,
}

fn progress(length: Option<u64>, what: &str) -> ProgressBar {
    let bar = match length {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner()
            .with_style(ProgressStyle::with_template("{msg} {pos} rows").expect("valid template")),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.with_message(what.to_string())
}

/// Counts the bytes read, for the progress bar.
struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Turns a file row into an import row, or says why it cannot be one.
fn to_import_row(line: u64, row: FileRow) -> Result<ImportRow, String> {
    let category = match row
        .association_category
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        None => 0,
        Some(name) => Category::parse(name)
            .map(|c| i32::from(c.code()))
            .ok_or_else(|| format!("unknown association_category '{name}'"))?,
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

/// Reads `path` and sends rows in batches; returns the lines it could not read.
fn read_rows(
    path: &Path,
    format: Format,
    batch_size: usize,
    portal: i64,
    sender: mpsc::Sender<ImportAssociationsRequest>,
    bar: ProgressBar,
) -> Result<(u64, Vec<(u64, String)>), TransferError> {
    let file_error = |source| TransferError::File {
        path: path.display().to_string(),
        source,
    };
    let reader = Counted {
        inner: File::open(path).map_err(file_error)?,
        bar,
    };
    let mut unreadable = Vec::new();
    let mut rows = Vec::with_capacity(batch_size);
    let mut total = 0u64;
    let mut push = |line: u64, parsed: Result<FileRow, String>, rows: &mut Vec<ImportRow>| {
        total += 1;
        match parsed.and_then(|row| to_import_row(line, row)) {
            Ok(row) => rows.push(row),
            Err(message) => unreadable.push((line, message)),
        }
    };
    let flush = |rows: &mut Vec<ImportRow>| -> bool {
        if rows.is_empty() {
            return true;
        }
        let message = ImportAssociationsRequest {
            portal_id: portal,
            rows: std::mem::take(rows),
        };
        sender.blocking_send(message).is_ok()
    };
    match format {
        Format::Csv => {
            let mut csv = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(reader);
            let headers = csv
                .headers()
                .map_err(|e| file_error(io::Error::other(e)))?
                .clone();
            for record in csv.records() {
                let (line, parsed) = match record {
                    Ok(record) => {
                        let line = record.position().map(|p| p.line()).unwrap_or(0);
                        (
                            line,
                            record
                                .deserialize::<FileRow>(Some(&headers))
                                .map_err(|e| e.to_string()),
                        )
                    }
                    Err(err) => (
                        err.position().map(|p| p.line()).unwrap_or(0),
                        Err(err.to_string()),
                    ),
                };
                push(line, parsed, &mut rows);
                if rows.len() >= batch_size && !flush(&mut rows) {
                    break;
                }
            }
        }
        Format::Jsonl => {
            for (index, line) in BufReader::new(reader).lines().enumerate() {
                let text = line.map_err(file_error)?;
                if text.trim().is_empty() {
                    continue;
                }
                let parsed = serde_json::from_str::<FileRow>(&text).map_err(|e| e.to_string());
                push(index as u64 + 1, parsed, &mut rows);
                if rows.len() >= batch_size && !flush(&mut rows) {
                    break;
                }
            }
        }
    }
    flush(&mut rows);
    Ok((total, unreadable))
}

/// Imports a file into a portal through the service at `server`.
pub async fn import(
    server: &str,
    portal: i64,
    path: PathBuf,
    format: Option<Format>,
    batch_size: usize,
) -> Result<ImportSummary, TransferError> {
    let format = format.unwrap_or_else(|| Format::of(&path));
    let size = std::fs::metadata(&path)
        .map_err(|source| TransferError::File {
            path: path.display().to_string(),
            source,
        })?
        .len();
    let mut client = AssociationWriteClient::connect(server.to_string())
        .await
        .map_err(|source| TransferError::Connect {
            server: server.to_string(),
            source,
        })?;
    let bar = progress(Some(size), "importing");
    let (sender, receiver) = mpsc::channel(4);
    let reader = {
        let bar = bar.clone();
        let batch = batch_size.clamp(1, association_service::service::MAX_WRITE_INPUTS);
        tokio::task::spawn_blocking(move || read_rows(&path, format, batch, portal, sender, bar))
    };
    let response = client
        .import_associations(ReceiverStream::new(receiver))
        .await;
    let (rows, mut unreadable) = reader.await.expect("the file reader does not panic")?;
    let response = response?.into_inner();
    bar.finish_and_clear();
    unreadable.extend(response.errors.iter().map(|e| {
        let message = e
            .error
            .as_ref()
            .map(|e| format!("{} {}: {}", e.category, e.sub_category, e.message));
        (e.line, message.unwrap_or_default())
    }));
    unreadable.sort_by_key(|(line, _)| *line);
    let local_failures = rows - response.rows;
    Ok(ImportSummary {
        rows,
        succeeded: response.succeeded,
        failed: response.failed + local_failures,
        errors: unreadable,
    })
}

/// Exports a portal's rows to `output` (stdout when `None`); returns the count.
pub async fn export(
    server: &str,
    portal: i64,
    from: Option<String>,
    to: Option<String>,
    format: Format,
    output: Option<PathBuf>,
) -> Result<u64, TransferError> {
    let mut client = AssociationReadClient::connect(server.to_string())
        .await
        .map_err(|source| TransferError::Connect {
            server: server.to_string(),
            source,
        })?;
    let request = ExportAssociationsRequest {
        portal_id: portal,
        from_object_type: from.unwrap_or_default(),
        to_object_type: to.unwrap_or_default(),
        cursor: String::new(),
        layout: ChunkLayout::Columns as i32,
    };
    let mut stream = client.export_associations(request).await?.into_inner();
    let sink: Box<dyn Write> = match &output {
        Some(path) => Box::new(File::create(path).map_err(|source| TransferError::File {
            path: path.display().to_string(),
            source,
        })?),
        None => Box::new(io::stdout().lock()),
    };
    let mut writer = RowWriter::new(format, io::BufWriter::new(sink));
    let bar = progress(None, "exporting");
    let mut count = 0;
    while let Some(chunk) = stream.message().await? {
        // A server that predates layouts answers in rows.
        let rows: Vec<FileRow> = match chunk.columns {
            Some(columns) => column_rows(columns)?,
            None => chunk.rows.into_iter().map(exported_row).collect(),
        };
        for row in &rows {
            writer.write(row)?;
        }
        count += rows.len() as u64;
        bar.set_position(count);
    }
    writer.finish()?;
    bar.finish_and_clear();
    Ok(count)
}

/// A file row of a row-layout export chunk.
fn exported_row(row: ExportedAssociation) -> FileRow {
    FileRow {
        from_object_type: row.from_object_type_id,
        from_object_id: row.from_object_id,
        to_object_type: row.to_object_type_id,
        to_object_id: row.to_object_id,
        association_category: category_name(row.category),
        association_type_id: Some(row.type_id),
        label: row.label,
    }
}

fn category_name(code: i32) -> Option<String> {
    Category::from_code(i64::from(code)).map(|c| c.as_str().to_string())
}

/// The file rows of a column-layout export chunk.
fn column_rows(columns: AssociationColumns) -> Result<Vec<FileRow>, TransferError> {
    let AssociationColumns {
        types,
        type_indexes,
        from_object_ids,
        to_object_ids,
    } = columns;
    if from_object_ids.len() != type_indexes.len() || to_object_ids.len() != type_indexes.len() {
        return Err(TransferError::Malformed(
            "an export chunk's columns differ in length".to_string(),
        ));
    }
    type_indexes
        .iter()
        .zip(from_object_ids)
        .zip(to_object_ids)
        .map(|((index, from_id), to_id)| {
            let kind = types.get(*index as usize).ok_or_else(|| {
                TransferError::Malformed(format!(
                    "an export row names type index {index}, beyond the chunk's types"
                ))
            })?;
            Ok(FileRow {
                from_object_type: kind.from_object_type_id.clone(),
                from_object_id: from_id,
                to_object_type: kind.to_object_type_id.clone(),
                to_object_id: to_id,
                association_category: category_name(kind.category),
                association_type_id: Some(kind.type_id),
                label: kind.label.clone(),
            })
        })
        .collect()
}

/// Writes rows in one format.
enum RowWriter<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Jsonl(W),
}

impl<W: Write> RowWriter<W> {
    fn new(format: Format, sink: W) -> RowWriter<W> {
        match format {
            Format::Csv => RowWriter::Csv(Box::new(csv::Writer::from_writer(sink))),
            Format::Jsonl => RowWriter::Jsonl(sink),
        }
    }

    fn write(&mut self, row: &FileRow) -> Result<(), TransferError> {
        let failed = |e: &dyn std::fmt::Display| TransferError::Write(e.to_string());
        match self {
            RowWriter::Csv(csv) => csv.serialize(row).map_err(|e| failed(&e)),
            RowWriter::Jsonl(sink) => {
                serde_json::to_writer(&mut *sink, row).map_err(|e| failed(&e))?;
                sink.write_all(b"\n").map_err(|e| failed(&e))
            }
        }
    }

    fn finish(self) -> Result<(), TransferError> {
        let result = match self {
            RowWriter::Csv(mut csv) => csv.flush(),
            RowWriter::Jsonl(mut sink) => sink.flush(),
        };
        result.map_err(|e| TransferError::Write(e.to_string()))
    }
}

/// The gRPC health status of `service` ("" for the overall one) on `server`,
/// as its name (`SERVING`, `NOT_SERVING`, …).
pub async fn health(server: &str, service: &str) -> Result<String, TransferError> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let channel = tonic::transport::Endpoint::from_shared(server.to_string())
        .map_err(|source| TransferError::Connect {
            server: server.to_string(),
            source,
        })?
        .connect()
        .await
        .map_err(|source| TransferError::Connect {
            server: server.to_string(),
            source,
        })?;
    let mut client = HealthClient::new(channel);
    let answer = client
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map_err(TransferError::Rpc)?
        .into_inner();
    Ok(answer.status().as_str_name().to_string())
}
