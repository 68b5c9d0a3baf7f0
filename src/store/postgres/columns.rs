//! Batches as PostgreSQL arrays: the column vectors that `unnest` turns back
//! into rows, and decoding a stored row.

use super::*;

/// The global lock order of counters, spelled in SQL (byte order of the
/// object type, then id, category, type id); every statement that locks
/// several counters sorts by it.
pub(super) const COUNTER_ORDER: &str = "object_type COLLATE \"C\", object_id, category, type_id";

pub(super) struct CountColumns {
    pub(super) types: Vec<String>,
    pub(super) ids: Vec<i64>,
    pub(super) categories: Vec<i16>,
    pub(super) type_ids: Vec<i32>,
}

pub(super) fn count_columns<'a>(keys: impl Iterator<Item = &'a CountKey>) -> CountColumns {
    let mut c = CountColumns {
        types: vec![],
        ids: vec![],
        categories: vec![],
        type_ids: vec![],
    };
    for k in keys {
        c.types.push(k.object_type.to_string());
        c.ids.push(k.object_id);
        c.categories.push(k.key.category.code());
        c.type_ids.push(k.key.type_id);
    }
    c
}

pub(super) struct RowColumns {
    pub(super) from_types: Vec<String>,
    pub(super) from_ids: Vec<i64>,
    pub(super) to_types: Vec<String>,
    pub(super) to_ids: Vec<i64>,
    pub(super) categories: Vec<i16>,
    pub(super) type_ids: Vec<i32>,
}

pub(super) fn row_columns(rows: &[DirectedRow]) -> RowColumns {
    let mut c = RowColumns {
        from_types: vec![],
        from_ids: vec![],
        to_types: vec![],
        to_ids: vec![],
        categories: vec![],
        type_ids: vec![],
    };
    for r in rows {
        c.from_types.push(r.from_type.to_string());
        c.from_ids.push(r.from_id);
        c.to_types.push(r.to_type.to_string());
        c.to_ids.push(r.to_id);
        c.categories.push(r.key.category.code());
        c.type_ids.push(r.key.type_id);
    }
    c
}

pub(super) fn key_columns(keys: &[TypeKey]) -> (Vec<i16>, Vec<i32>) {
    keys.iter().map(|k| (k.category.code(), k.type_id)).unzip()
}

pub(super) fn decode_row(row: &sqlx::postgres::PgRow) -> StoreResult<DirectedRow> {
    super::Sql::decode_row(row)
}
