//! Batches as JSON arrays, which `json_each` turns back into rows, and
//! decoding a stored row.
use serde_json::{json, Value};
use sqlx::sqlite::SqliteRow;

use super::*;

pub(super) fn count_keys_json<'a>(keys: impl Iterator<Item = &'a CountKey>) -> Value {
    keys.map(|k| {
        json!([
            k.object_type.to_string(),
            k.object_id,
            k.key.category.code(),
            k.key.type_id
        ])
    })
    .collect()
}

pub(super) fn rows_json(rows: &[DirectedRow]) -> Value {
    rows.iter()
        .map(|r| {
            json!([
                r.from_type.to_string(),
                r.from_id,
                r.to_type.to_string(),
                r.to_id,
                r.key.category.code(),
                r.key.type_id
            ])
        })
        .collect()
}

pub(super) fn keys_json(keys: &[TypeKey]) -> Value {
    keys.iter()
        .map(|k| json!([k.category.code(), k.type_id]))
        .collect()
}

pub(super) fn decode_row(row: &SqliteRow) -> StoreResult<DirectedRow> {
    super::Sql::decode_row(row)
}
