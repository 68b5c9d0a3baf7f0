//! The association file formats of `import` and `export` (CSV with a
//! header row, JSON Lines): reading rows with their line numbers and a
//! plain-words reason for each row that is not one, and writing them.
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// Why a file cannot be read or written at all (a row that is not one is
/// reported with its line instead).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("{0}")]
    Unreadable(String),
    #[error("{0}")]
    Write(String),
}

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object a line.
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
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileRow {
    pub from_object_type: String,
    pub from_object_id: i64,
    pub to_object_type: String,
    pub to_object_id: i64,
    pub association_category: Option<String>,
    pub association_type_id: Option<i32>,
    pub label: Option<String>,
}

/// The columns a file must have.
const REQUIRED_COLUMNS: [&str; 4] = [
    "from_object_type",
    "from_object_id",
    "to_object_type",
    "to_object_id",
];

impl FileRow {
    /// Reads a row from its columns (JSON values, or CSV text), or says in
    /// plain words what is wrong with it. Ids may be numbers or strings.
    pub fn from_columns(columns: &serde_json::Map<String, Value>) -> Result<FileRow, String> {
        let text = |name: &str| -> Result<Option<String>, String> {
            match columns.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(format!("{name} must be text")),
            }
        };
        let required = |name: &str| text(name)?.ok_or_else(|| format!("{name} is missing"));
        let number = |name: &str, value: String| {
            value.parse::<i64>().map_err(|_| {
                format!("{name} must be a whole number such as 706 or \"706\", not {value:?}")
            })
        };
        let type_id = match text("association_type_id")? {
            None => None,
            Some(value) => Some(value.parse::<i32>().map_err(|_| {
                format!("association_type_id must be a whole number, not {value:?}")
            })?),
        };
        Ok(FileRow {
            from_object_type: required("from_object_type")?,
            from_object_id: number("from_object_id", required("from_object_id")?)?,
            to_object_type: required("to_object_type")?,
            to_object_id: number("to_object_id", required("to_object_id")?)?,
            association_category: text("association_category")?,
            association_type_id: type_id,
            label: text("label")?,
        })
    }
}

/// Reads every row of `reader` in order, handing each (its line, the row or
/// why it cannot be one) to `visit` until it answers false.
pub fn read_rows(
    reader: impl Read,
    format: Format,
    mut visit: impl FnMut(u64, Result<FileRow, String>) -> bool,
) -> Result<(), FileError> {
    match format {
        Format::Csv => {
            let mut csv = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .flexible(true)
                .from_reader(reader);
            let headers: Vec<String> = csv
                .headers()
                .map_err(|e| FileError::Unreadable(format!("cannot read the CSV header row: {e}")))?
                .iter()
                .map(str::to_string)
                .collect();
            if let Some(missing) = REQUIRED_COLUMNS
                .iter()
                .find(|c| !headers.iter().any(|h| h == *c))
            {
                return Err(FileError::Unreadable(format!(
                    "the CSV header row has no {missing} column (it needs {}; association_category, association_type_id and label are optional)",
                    REQUIRED_COLUMNS.join(", ")
                )));
            }
            for record in csv.records() {
                let (line, parsed) = match record {
                    Ok(record) => {
                        let line = record.position().map(|p| p.line()).unwrap_or(0);
                        let parsed = if record.len() != headers.len() {
                            Err(format!(
                                "the row has {} fields, the header {}",
                                record.len(),
                                headers.len()
                            ))
                        } else {
                            let columns = headers
                                .iter()
                                .zip(record.iter())
                                .map(|(h, v)| (h.clone(), Value::String(v.to_string())))
                                .collect();
                            FileRow::from_columns(&columns)
                        };
                        (line, parsed)
                    }
                    Err(err) => (
                        err.position().map(|p| p.line()).unwrap_or(0),
                        Err(format!("not readable as CSV: {err}")),
                    ),
                };
                if !visit(line, parsed) {
                    break;
                }
            }
        }
        Format::Jsonl => {
            for (index, line) in BufReader::new(reader).lines().enumerate() {
                let text = line?;
                if text.trim().is_empty() {
                    continue;
                }
                let parsed = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(columns)) => FileRow::from_columns(&columns),
                    Ok(_) => Err("the line is not a JSON object".to_string()),
                    Err(err) => Err(format!("the line is not valid JSON ({err})")),
                };
                if !visit(index as u64 + 1, parsed) {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Writes rows in one format.
pub enum RowWriter<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Jsonl(W),
}

impl<W: Write> RowWriter<W> {
    pub fn new(format: Format, sink: W) -> RowWriter<W> {
        match format {
            Format::Csv => RowWriter::Csv(Box::new(csv::Writer::from_writer(sink))),
            Format::Jsonl => RowWriter::Jsonl(sink),
        }
    }

    pub fn write(&mut self, row: &FileRow) -> Result<(), FileError> {
        let failed = |e: &dyn std::fmt::Display| FileError::Write(e.to_string());
        match self {
            RowWriter::Csv(csv) => csv.serialize(row).map_err(|e| failed(&e)),
            RowWriter::Jsonl(sink) => {
                serde_json::to_writer(&mut *sink, row).map_err(|e| failed(&e))?;
                sink.write_all(b"\n").map_err(|e| failed(&e))
            }
        }
    }

    pub fn finish(self) -> Result<(), FileError> {
        let result = match self {
            RowWriter::Csv(mut csv) => csv.flush(),
            RowWriter::Jsonl(mut sink) => sink.flush(),
        };
        result.map_err(|e| FileError::Write(e.to_string()))
    }
}
