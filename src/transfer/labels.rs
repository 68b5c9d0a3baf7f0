//! The labels an import file names by text: found among the target
//! portal's labels, or created (with the other direction's text the file
//! shows) when asked.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use association_service::domain::Category;
use association_service::files::{FileRow, Format};
use association_service::proto::admin_config_client::AdminConfigClient;
use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::{AssociationCategory, CreateLabelRequest, ListDefinitionsRequest};
use tonic::transport::Channel;

use super::{scan_rows, Connection, TransferError};

/// The label a row names by text: a user-defined type with a label.
pub(super) fn named_label(row: &FileRow) -> Option<LabelKey> {
    let category = row.association_category.as_deref()?;
    if Category::parse(category) != Some(Category::UserDefined) {
        return None;
    }
    Some(LabelKey {
        from: row.from_object_type.clone(),
        to: row.to_object_type.clone(),
        label: row.label.clone()?,
    })
}

/// A label as a file names it: its pair (as written) and its text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct LabelKey {
    from: String,
    to: String,
    label: String,
}

/// Each label a file names by text: the target portal's type id, or why
/// its rows cannot be imported.
pub(super) type LabelMap = BTreeMap<LabelKey, Result<i32, String>>;

/// A label the file names: a line and record pair that use it.
#[derive(Clone, Copy)]
struct LabelUse {
    line: u64,
    from_id: i64,
    to_id: i64,
}

/// The labels `path` names by text, each with its first use.
fn labels_named(
    path: &Path,
    format: Format,
) -> Result<BTreeMap<LabelKey, LabelUse>, TransferError> {
    let mut named = BTreeMap::new();
    scan_rows(path, format, Arc::default(), |line, parsed| {
        if let Some(key) = parsed.ok().as_ref().and_then(|row| {
            named_label(row).map(|key| {
                (
                    key,
                    LabelUse {
                        line,
                        from_id: row.from_object_id,
                        to_id: row.to_object_id,
                    },
                )
            })
        }) {
            named.entry(key.0).or_insert(key.1);
        }
        true
    })?;
    Ok(named)
}

/// The label text of the other direction of `key` in the file: the label
/// of the row that runs back between the same two records, if any.
fn inverse_label(
    path: &Path,
    format: Format,
    key: &LabelKey,
    first: &LabelUse,
) -> Result<Option<String>, TransferError> {
    let mut inverse = None;
    scan_rows(path, format, Arc::default(), |_, parsed| {
        if let Ok(row) = parsed {
            if row.from_object_type == key.to
                && row.to_object_type == key.from
                && row.from_object_id == first.to_id
                && row.to_object_id == first.from_id
            {
                if let Some(back) = named_label(&row) {
                    inverse = Some(back.label);
                    return false;
                }
            }
        }
        true
    })?;
    Ok(inverse)
}

/// The user-defined labels of a pair in the portal: text -> type id; none
/// when the service refuses the pair (its rows then fail on their own).
async fn portal_labels(
    client: &mut AssociationReadClient<Channel>,
    connection: &Connection,
    portal: i64,
    from: &str,
    to: &str,
) -> Result<Option<BTreeMap<String, i32>>, TransferError> {
    let request = connection.request(ListDefinitionsRequest {
        portal_id: portal,
        from_object_type: from.to_string(),
        to_object_type: to.to_string(),
    })?;
    match client.list_definitions(request).await {
        Ok(answer) => Ok(Some(
            answer
                .into_inner()
                .definitions
                .into_iter()
                .filter(|d| d.category == AssociationCategory::UserDefined as i32)
                .filter_map(|d| d.label.map(|label| (label, d.type_id)))
                .collect(),
        )),
        Err(status) if status.code() == tonic::Code::InvalidArgument => Ok(None),
        Err(status) => Err(status.into()),
    }
}

/// Finds each label the file names by text among the target portal's
/// labels, creating the missing ones when asked (with the other
/// direction's text the file shows, if any).
pub(super) async fn resolve_labels(
    connection: &Connection,
    channel: &Channel,
    portal: i64,
    path: &Path,
    format: Format,
    create_missing: bool,
    created: &mut Vec<String>,
) -> Result<LabelMap, TransferError> {
    let named = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || labels_named(&path, format))
            .await
            .expect("the file reader does not panic")?
    };
    let mut reader = AssociationReadClient::new(channel.clone());
    let mut admin = AdminConfigClient::new(channel.clone());
    let mut resolved = LabelMap::new();
    for (key, first) in named {
        let held = portal_labels(&mut reader, connection, portal, &key.from, &key.to).await?;
        let Some(held) = held else { continue };
        if let Some(type_id) = held.get(&key.label) {
            resolved.insert(key, Ok(*type_id));
            continue;
        }
        if !create_missing {
            let why = format!(
                "portal {portal} has no label {:?} from {} to {} (the file may come from another portal): create it, or import again with --create-labels",
                key.label, key.from, key.to
            );
            resolved.insert(key, Err(why));
            continue;
        }
        let inverse = {
            let (path, probe) = (path.to_path_buf(), key.clone());
            tokio::task::spawn_blocking(move || inverse_label(&path, format, &probe, &first))
                .await
                .expect("the file reader does not panic")?
        };
        let request = connection.request(CreateLabelRequest {
            portal_id: portal,
            from_object_type: key.from.clone(),
            to_object_type: key.to.clone(),
            label: key.label.clone(),
            name: association_service::domain::labels::machine_name(&key.label),
            inverse_label: inverse.clone().filter(|i| *i != key.label),
        })?;
        let definitions = admin.create_label(request).await?.into_inner().definitions;
        let made = definitions
            .iter()
            .find(|d| d.label.as_deref() == Some(key.label.as_str()))
            .map(|d| d.type_id)
            .ok_or_else(|| {
                TransferError::Malformed(format!("no definition of the new label {:?}", key.label))
            })?;
        created.push(match &inverse {
            Some(back) if *back != key.label => format!(
                "created label {:?} (USER_DEFINED {made}) from {} to {}, {back:?} the other way (line {})",
                key.label, key.from, key.to, first.line
            ),
            _ => format!(
                "created label {:?} (USER_DEFINED {made}) from {} to {} (line {})",
                key.label, key.from, key.to, first.line
            ),
        });
        resolved.insert(key, Ok(made));
    }
    Ok(resolved)
}
