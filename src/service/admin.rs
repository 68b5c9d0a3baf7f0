//! Admin use cases: limits and labels, each asked of and told to the
//! admin plugins.
use super::*;
use crate::domain::labels::{find_label, label_directions, new_label_definitions, rename_label};

/// Sample records a plugin is shown per changed limit.
const IMPACT_SAMPLES: u32 = 5;

impl AssociationService {
    /// Creates or updates admin limits, item by item.
    pub async fn set_limits(
        &self,
        actor: &str,
        pair: PortalPair,
        changes: &[LimitChange],
        mode: LimitMode,
    ) -> ServiceResult<BatchOutcome<LimitView>> {
        check_batch_size(changes.len())?;
        let PortalPair { portal, from, to } = pair;
        let catalog = self.pair_catalog(pair).await?;
        let ceiling = self.settings.platform_ceiling;
        let event = match mode {
            LimitMode::Create => AdminEvent::LimitsCreated,
            LimitMode::Update => AdminEvent::LimitsUpdated,
        };
        let change = Self::admin_change(portal, actor, event, from, to);
        // Plugins see what would apply against today's limits; the store
        // decides again under its lock.
        let before = self.pair_limits(portal, from, to).await?;
        let expected = apply_limit_changes(
            &catalog,
            from,
            to,
            &mut before.clone(),
            changes,
            mode,
            ceiling,
        );
        if let Some(mut proposal) = change.with_applied_limits(&before, changes, &expected) {
            // Plugins also see what each limit does to records that hold
            // associations already (a preview's figures).
            let wanted = self.hooks.validates(event);
            for (change, result) in changes.iter().zip(&expected) {
                if let (true, Ok(after)) = (wanted, result) {
                    let impact = self
                        .limit_impact(
                            portal,
                            from,
                            change.key,
                            before.get(&change.key).copied(),
                            Some(*after),
                            IMPACT_SAMPLES,
                        )
                        .await?;
                    proposal.impacts.push(impact);
                }
            }
            self.hooks.validate(&proposal).await?;
        }
        let results = self
            .store
            .change_limits(&catalog, changes, mode, ceiling, &change)
            .await?;
        self.hooks.committed(portal).await;
        let mut outcome = BatchOutcome::new();
        for (index, (change, result)) in changes.iter().zip(results).enumerate() {
            match result {
                Ok(limit) => {
                    let def = catalog.require(from, to, change.key)?.clone();
                    outcome.results.push((
                        index,
                        LimitView {
                            def,
                            user_limit: Some(limit),
                            platform_limit: ceiling,
                        },
                    ));
                }
                Err(err) => outcome.errors.push((index, err)),
            }
        }
        Ok(outcome)
    }

    /// Removes admin limits; returns how many existed.
    pub async fn purge_limits(
        &self,
        actor: &str,
        pair: PortalPair,
        keys: &[TypeKey],
    ) -> ServiceResult<u64> {
        check_batch_size(keys.len())?;
        let PortalPair { portal, from, to } = pair;
        let catalog = self.pair_catalog(pair).await?;
        for key in keys {
            catalog.require(from, to, *key)?;
        }
        let change = Self::admin_change(portal, actor, AdminEvent::LimitsPurged, from, to);
        let before = self.pair_limits(portal, from, to).await?;
        let existing: Vec<LimitValue> = keys
            .iter()
            .filter_map(|k| before.get(k).map(|max| LimitValue::new(*k, *max)))
            .collect();
        if !existing.is_empty() {
            let mut proposal = change.clone().with_limits(existing, vec![]);
            let wanted = self.hooks.validates(AdminEvent::LimitsPurged);
            for key in keys.iter().filter(|k| wanted && before.contains_key(k)) {
                let impact = self
                    .limit_impact(
                        portal,
                        from,
                        *key,
                        before.get(key).copied(),
                        None,
                        IMPACT_SAMPLES,
                    )
                    .await?;
                proposal.impacts.push(impact);
            }
            self.hooks.validate(&proposal).await?;
        }
        let purged = self.store.purge_limits(portal, keys, &change).await?;
        self.hooks.committed(portal).await;
        Ok(purged)
    }

    /// Every type of one pair direction with its limits, or, without a
    /// pair, every configured limit of the portal.
    pub async fn limits(
        &self,
        portal: i64,
        pair: Option<(ObjectType, ObjectType)>,
    ) -> ServiceResult<Vec<LimitView>> {
        check_portal(portal)?;
        let ceiling = self.settings.platform_ceiling;
        let view = |def: &TypeDef, user: Option<u32>| LimitView {
            def: def.clone(),
            user_limit: user,
            platform_limit: ceiling,
        };
        if let Some((from, to)) = pair {
            let catalog = self.catalog(portal, from, to).await?;
            let stored = self.store.user_limits(portal, Some((from, to))).await?;
            return Ok(catalog
                .directed(from, to)
                .map(|def| {
                    view(
                        def,
                        stored
                            .iter()
                            .find(|l| l.key == def.key)
                            .map(|l| l.max_to_object_ids),
                    )
                })
                .collect());
        }
        let stored = self.store.user_limits(portal, None).await?;
        let mut views = Vec::new();
        let mut catalogs = HashMap::new();
        for limit in stored {
            let catalog = self
                .cached(&mut catalogs, portal, limit.from, limit.to)
                .await?;
            if let Some(def) = catalog.get(limit.from, limit.to, limit.key) {
                views.push(view(def, Some(limit.max_to_object_ids)));
            }
        }
        Ok(views)
    }

    /// Creates an admin label; returns its definitions (one or two).
    pub async fn create_label(
        &self,
        actor: &str,
        pair: PortalPair,
        label: &str,
        name: &str,
        inverse_label: Option<&str>,
    ) -> ServiceResult<Vec<TypeDef>> {
        let PortalPair { portal, from, to } = pair;
        let _ = self.pair_catalog(pair).await?;
        let new = NewLabel {
            from,
            to,
            label: label.to_string(),
            name: name.to_string(),
            inverse_label: inverse_label.map(str::to_string),
        };
        let change = Self::admin_change(portal, actor, AdminEvent::LabelCreated, from, to);
        // The proposal names no type ids yet: they are allocated on commit.
        let mut proposed = new_label_definitions(from, to, label, name, inverse_label, 0)?;
        for def in &mut proposed {
            (def.key.type_id, def.inverse.type_id) = (0, 0);
        }
        self.hooks
            .validate(&change.clone().with_labels(&[], &proposed))
            .await?;
        let defs = self.store.create_label(portal, &new, &change).await;
        self.catalogs.forget_portal(portal);
        let defs = defs?;
        self.hooks.committed(portal).await;
        Ok(defs)
    }

    /// The admin limits of a pair (both directions), by type.
    pub(super) async fn pair_limits(
        &self,
        portal: i64,
        from: ObjectType,
        to: ObjectType,
    ) -> ServiceResult<HashMap<TypeKey, u32>> {
        Ok(self
            .store
            .user_limits(portal, Some((from, to)))
            .await?
            .into_iter()
            .map(|l| (l.key, l.max_to_object_ids))
            .collect())
    }

    /// Renames a label (and, for paired labels, its inverse).
    pub async fn update_label(
        &self,
        actor: &str,
        pair: PortalPair,
        type_id: i32,
        label: &str,
        inverse_label: Option<&str>,
    ) -> ServiceResult<Vec<TypeDef>> {
        let PortalPair { portal, from, to } = pair;
        let catalog = self.pair_catalog(pair).await?;
        let def = find_label(&catalog, from, to, type_id)?;
        let rename = rename_label(&catalog, &def, label, inverse_label)?;
        let change = Self::admin_change(portal, actor, AdminEvent::LabelUpdated, from, to)
            .with_labels(&rename.before, &rename.after);
        self.hooks.validate(&change).await?;
        let updated = self
            .store
            .update_label(
                portal,
                &def,
                &rename.label,
                rename.inverse_label.as_deref(),
                &change,
            )
            .await;
        self.catalogs.forget_portal(portal);
        updated?;
        self.hooks.committed(portal).await;
        let catalog = self.catalog(portal, from, to).await?;
        Ok(label_directions(&catalog, &def))
    }

    /// Deletes a label, both directions, with its limits and uses.
    pub async fn delete_label(
        &self,
        actor: &str,
        pair: PortalPair,
        type_id: i32,
    ) -> ServiceResult<()> {
        let PortalPair { portal, from, to } = pair;
        let catalog = self.pair_catalog(pair).await?;
        let def = find_label(&catalog, from, to, type_id)?;
        let change = Self::admin_change(portal, actor, AdminEvent::LabelDeleted, from, to)
            .with_labels(&label_directions(&catalog, &def), &[]);
        self.hooks.validate(&change).await?;
        let deleted = self.store.delete_label(portal, &def, &change).await;
        self.catalogs.forget_portal(portal);
        deleted?;
        self.hooks.committed(portal).await;
        self.written.notify_waiters();
        Ok(())
    }
}
