//! How values are stored and read back: admin changes as JSON, categories
//! and object types as their codes and text, definition rows.
use super::*;

/// An admin change as stored (JSON).
pub(crate) fn encode_admin_change(change: &AdminChange) -> StoreResult<String> {
    serde_json::to_string(change).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn decode_admin_change(text: &str) -> StoreResult<AdminChange> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored admin change: {e}")))
}

/// The current time in microseconds since the Unix epoch.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A stored definition row, decoded.
pub(crate) struct DefinitionRow {
    pub category: i64,
    pub type_id: i32,
    pub inverse_type_id: i32,
    pub from_object_type: String,
    pub to_object_type: String,
    pub label: Option<String>,
    pub name: String,
}

impl DefinitionRow {
    pub fn into_def(self) -> StoreResult<TypeDef> {
        let category = decode_category(self.category)?;
        Ok(TypeDef {
            key: TypeKey {
                category,
                type_id: self.type_id,
            },
            inverse: TypeKey {
                category,
                type_id: self.inverse_type_id,
            },
            from: decode_object_type(&self.from_object_type)?,
            to: decode_object_type(&self.to_object_type)?,
            role: if self.label.is_some() {
                TypeRole::Label
            } else {
                TypeRole::Unlabeled
            },
            label: self.label,
            name: self.name,
        })
    }
}

pub(crate) fn decode_category(code: i64) -> StoreResult<Category> {
    Category::from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown category code {code}")))
}

pub(crate) fn decode_object_type(text: &str) -> StoreResult<ObjectType> {
    ObjectType::parse(text).map_err(|_| StoreError::Corrupt(format!("unknown object type {text}")))
}

/// Decodes `types_holding_at_least` rows: (object type, category, type id,
/// stored to-object type).
pub(crate) fn decode_held_types(
    rows: Vec<(String, i64, i32, Option<String>)>,
) -> StoreResult<Vec<(ObjectType, TypeKey, Option<ObjectType>)>> {
    rows.iter()
        .map(|(object_type, category, type_id, to)| {
            Ok((
                decode_object_type(object_type)?,
                decode_key(*category, *type_id)?,
                to.as_deref().map(decode_object_type).transpose()?,
            ))
        })
        .collect()
}

pub(crate) fn decode_key(category: i64, type_id: i32) -> StoreResult<TypeKey> {
    Ok(TypeKey {
        category: decode_category(category)?,
        type_id,
    })
}
