//! The `export` command: a portal's rows streamed to a file (or stdout)
//! in the chosen format.
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use association_service::domain::Category;
use association_service::files::{self, FileRow, Format};
use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::{
    AssociationColumns, ChunkLayout, ExportAssociationsRequest, ExportedAssociation,
};

use super::{spinner, Connection, TransferError};

/// Exports a portal's rows to `output` (stdout when `None`); returns the count.
pub async fn export(
    connection: &Connection,
    portal: i64,
    from: Option<String>,
    to: Option<String>,
    format: Format,
    output: Option<PathBuf>,
) -> Result<u64, TransferError> {
    let mut client = AssociationReadClient::new(connection.channel().await?);
    let request = ExportAssociationsRequest {
        portal_id: portal,
        from_object_type: from.unwrap_or_default(),
        to_object_type: to.unwrap_or_default(),
        cursor: String::new(),
        layout: ChunkLayout::Columns as i32,
    };
    let mut stream = client
        .export_associations(connection.request(request)?)
        .await?
        .into_inner();
    let sink: Box<dyn Write> = match &output {
        Some(path) => Box::new(File::create(path).map_err(|source| TransferError::File {
            path: path.display().to_string(),
            source,
        })?),
        None => Box::new(io::stdout().lock()),
    };
    let mut writer = files::RowWriter::new(format, io::BufWriter::new(sink));
    let bar = spinner("exporting");
    let mut count = 0;
    while let Some(chunk) = stream.message().await? {
        // A server that predates layouts answers in rows.
        let rows: Vec<FileRow> = match chunk.columns {
            Some(columns) => column_rows(columns)?,
            None => chunk.rows.into_iter().map(exported_row).collect(),
        };
        for row in &rows {
            writer
                .write(row)
                .map_err(|e| TransferError::Write(e.to_string()))?;
        }
        count += rows.len() as u64;
        bar.set_position(count);
    }
    writer
        .finish()
        .map_err(|e| TransferError::Write(e.to_string()))?;
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
