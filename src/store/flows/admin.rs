//! The admin flows: custom object names, a pair's unlabeled type, labels
//! (create, rename, delete) and limits (change, purge), each recording its
//! admin change in the same transaction.
use super::*;

/// Names a custom object type (or takes its name) unless another type of
/// the portal has the name, and records `change` with the names before and
/// after; returns its name before.
pub(crate) async fn name_object_in_transaction<S: WriteSteps>(
    steps: &mut S,
    portal: i64,
    object_type: ObjectType,
    name: Option<&str>,
    change: &AdminChange,
) -> StoreResult<Option<String>> {
    // The portal's type-id allocator is its definitions' lock: names of a
    // portal change one at a time, so the check below holds.
    steps.allocate_type_ids(portal, 0).await?;
    let names = steps.load_object_names(portal).await?;
    if let Some(name) = name {
        if let Some((other, _)) = names.iter().find(|(t, n)| n == name && *t != object_type) {
            return Err(DomainError::ObjectNameTaken {
                name: name.to_string(),
                object_type: *other,
            }
            .into());
        }
    }
    let before = names
        .into_iter()
        .find(|(t, _)| *t == object_type)
        .map(|(_, n)| n);
    steps.set_object_name(portal, object_type, name).await?;
    steps
        .record_admin_change(&change.clone().with_object_names(before.as_deref(), name))
        .await?;
    Ok(before)
}

/// True when `defs` hold an unlabeled type from `a` to `b`.
pub(crate) fn has_unlabeled(defs: &[TypeDef], a: ObjectType, b: ObjectType) -> bool {
    defs.iter()
        .any(|d| d.from == a && d.to == b && d.role == TypeRole::Unlabeled)
}

/// Allocates the pair's unlabeled type unless another writer did first.
pub(crate) async fn allocate_unlabeled_in_transaction(
    steps: &mut dyn CommonSteps,
    portal: i64,
    a: ObjectType,
    b: ObjectType,
) -> StoreResult<Vec<TypeDef>> {
    let first = steps
        .allocate_type_ids(portal, unlabeled_ids_needed(a, b))
        .await?;
    // The allocator is locked now: re-check before inserting.
    let defs = steps.load_definitions(portal, a, b).await?;
    if has_unlabeled(&defs, a, b) {
        return Ok(defs);
    }
    steps
        .insert_definitions(portal, &allocated_unlabeled(a, b, first))
        .await?;
    steps.load_definitions(portal, a, b).await
}

/// Allocates ids for a new label, checks its text is free, stores it.
pub(crate) async fn create_label_in_transaction(
    steps: &mut dyn CommonSteps,
    portal: i64,
    label: &NewLabel,
) -> StoreResult<Vec<TypeDef>> {
    let inverse_label = label.inverse_label.as_deref();
    let first = steps
        .allocate_type_ids(
            portal,
            label_ids_needed(label.from, label.to, inverse_label),
        )
        .await?;
    let defs = new_label_definitions(
        label.from,
        label.to,
        &label.label,
        &label.name,
        inverse_label,
        first,
    )?;
    // Under the portal's type-id allocator lock: label creates of a portal
    // run one at a time, so the quota holds under any concurrency.
    let existing = steps.load_definitions(portal, label.from, label.to).await?;
    check_labels_unique(&existing, &defs)?;
    check_label_quota(&existing, label.from, label.to)?;
    steps.insert_definitions(portal, &defs).await?;
    Ok(defs)
}

/// Renames a label (and its inverse's, when one is given and the type is
/// not its own inverse) and records `change`.
pub(crate) async fn rename_label_in_transaction<S: WriteSteps>(
    steps: &mut S,
    portal: i64,
    def: &TypeDef,
    label: &str,
    inverse_label: Option<&str>,
    change: &AdminChange,
) -> StoreResult<()> {
    steps.record_admin_change(change).await?;
    let mut renames = vec![(def.key, label.to_string())];
    if def.inverse != def.key {
        if let Some(inverse) = inverse_label {
            renames.push((def.inverse, inverse.to_string()));
        }
    }
    steps.rename_types(portal, &renames).await
}

/// Deletes a label and its inverse with every association of them, records
/// `change`, and puts the removed rows on the feed as archived.
pub(crate) async fn delete_label_in_transaction<S: WriteSteps>(
    steps: &mut S,
    portal: i64,
    def: &TypeDef,
    change: &AdminChange,
) -> StoreResult<()> {
    steps.record_admin_change(change).await?;
    let removed = steps.delete_types(portal, &[def.key, def.inverse]).await?;
    if !removed.is_empty() {
        let write = PlannedWrite {
            delete: &[],
            insert: &[],
            deltas: &[],
            changes: &archived(&removed),
        };
        steps.apply_plan(portal, &write).await?;
    }
    Ok(())
}

/// Removes the admin limits of `keys` and records `change` with the limits
/// there were, when there were any; how many were removed.
pub(crate) async fn purge_limits_in_transaction(
    steps: &mut dyn WriteSteps,
    portal: i64,
    keys: &[TypeKey],
    change: &AdminChange,
) -> StoreResult<u64> {
    let purged = steps.delete_limits(portal, keys).await?;
    let count = purged.len() as u64;
    if count > 0 {
        let before = purged
            .into_iter()
            .map(|(key, max)| LimitValue::new(key, max))
            .collect();
        steps
            .record_admin_change(&change.clone().with_limits(before, vec![]))
            .await?;
    }
    Ok(count)
}

/// The limit-change flow: under the portal's limits lock, with the labels it
/// names locked against deletion (a limit of a label deleted since the
/// catalog was read fails as an unknown type), validates each change in
/// order against the pair's limits, records the admin change and stores
/// the limits that passed.
pub(crate) async fn change_limits_in_transaction(
    steps: &mut dyn WriteSteps,
    catalog: &PairCatalog,
    changes: &[LimitChange],
    mode: LimitMode,
    ceiling: u32,
    change: &AdminChange,
) -> StoreResult<Vec<Result<u32, DomainError>>> {
    let (portal, from, to) = (change.portal_id, catalog.a, catalog.b);
    steps.lock_limits(portal).await?;
    let labels: Vec<TypeKey> = changes
        .iter()
        .map(|c| c.key)
        .filter(TypeKey::is_deletable)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let present = if labels.is_empty() {
        BTreeSet::new()
    } else {
        steps.lock_types(portal, &labels).await?
    };
    let before = steps.load_user_limits(portal, from, to).await?;
    let mut current = before.clone();
    let results: Vec<Result<u32, DomainError>> = changes
        .iter()
        .map(|c| {
            if c.key.is_deletable() && !present.contains(&c.key) {
                return Err(DomainError::UnknownAssociationType {
                    key: c.key,
                    from,
                    to,
                });
            }
            let one = std::slice::from_ref(c);
            apply_limit_changes(catalog, from, to, &mut current, one, mode, ceiling)
                .pop()
                .expect("one result per change")
        })
        .collect();
    if let Some(applied) = change.with_applied_limits(&before, changes, &results) {
        steps.record_admin_change(&applied).await?;
    }
    // A type named twice keeps the value it was given last.
    let passed: Vec<(TypeKey, u32)> = changes
        .iter()
        .zip(&results)
        .filter_map(|(c, r)| r.as_ref().ok().map(|max| (c.key, *max)))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    if !passed.is_empty() {
        steps.set_limits(portal, from, to, &passed).await?;
    }
    Ok(results)
}
