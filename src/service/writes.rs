//! Writes: creates (through the group commit), imports, merges, archives.
use super::*;

impl AssociationService {
    /// Creates associations (and their inverses) item by item.
    pub async fn create(
        &self,
        pair: PortalPair,
        inputs: &[AssociationInput],
    ) -> ServiceResult<BatchOutcome<HeldAssociation>> {
        check_batch_size(inputs.len())?;
        let PortalPair { portal, from, to } = pair;
        let catalog = self.pair_catalog(pair).await?;
        let inputs = &self.resolve_inputs(pair, inputs).await?;
        let mut outcome = BatchOutcome::new();
        let mut items = Vec::new();
        let mut positions = Vec::new();
        for (index, input) in inputs.iter().enumerate() {
            match Self::validate(&catalog, from, to, input) {
                Ok(item) => {
                    items.push(item);
                    positions.push(index);
                }
                Err(err) => outcome.errors.push((index, err)),
            }
        }
        if !items.is_empty() {
            let ceiling = self.settings.platform_ceiling;
            let results = self
                .creates
                .create(portal, &catalog, from, to, ceiling, items.clone())
                .await?;
            self.written.notify_waiters();
            for ((index, item), result) in positions.into_iter().zip(&items).zip(results) {
                match result {
                    Ok(held) => outcome.results.push((
                        index,
                        HeldAssociation {
                            from_type: from,
                            from_id: item.from_id,
                            to_type: to,
                            to_id: item.to_id,
                            types: held
                                .types
                                .iter()
                                .filter_map(|k| catalog.get(from, to, *k).cloned())
                                .collect(),
                            added: held.added,
                        },
                    )),
                    Err(err) => {
                        count_limit_rejection(&err);
                        outcome.errors.push((index, err))
                    }
                }
            }
        }
        outcome.errors.sort_by_key(|(i, _)| *i);
        Ok(outcome)
    }

    /// Creates bulk-import rows: grouped by object type pair (in order within
    /// each pair), each group created like a `create` batch. Returns how many
    /// rows wrote something, how many were held already, and each failure by
    /// line.
    pub async fn import_rows(
        &self,
        portal: i64,
        rows: &[ImportRow],
    ) -> ServiceResult<ImportOutcome> {
        check_batch_size(rows.len())?;
        check_portal(portal)?;
        let mut outcome = ImportOutcome::default();
        let mut groups: BTreeMap<(ObjectType, ObjectType), Vec<&ImportRow>> = BTreeMap::new();
        for row in rows {
            match (
                ObjectType::parse(&row.from_type),
                ObjectType::parse(&row.to_type),
            ) {
                (Ok(from), Ok(to)) => groups.entry((from, to)).or_default().push(row),
                (Err(err), _) | (_, Err(err)) => outcome.errors.push((row.line, err)),
            }
        }
        for ((from, to), group) in groups {
            let inputs: Vec<AssociationInput> = group
                .iter()
                .map(|r| AssociationInput {
                    from_id: r.from_id,
                    to_id: r.to_id,
                    types: r.key.into_iter().collect(),
                })
                .collect();
            match self.create(PortalPair { portal, from, to }, &inputs).await {
                Ok(created) => {
                    for (_, held) in &created.results {
                        if held.added {
                            outcome.created += 1;
                        } else {
                            outcome.already_present += 1;
                        }
                    }
                    outcome.errors.extend(
                        created
                            .errors
                            .into_iter()
                            .map(|(i, err)| (group[i].line, err)),
                    );
                }
                Err(ServiceError::Domain(err)) => outcome
                    .errors
                    .extend(group.iter().map(|r| (r.line, err.clone()))),
                Err(err) => return Err(err),
            }
        }
        outcome.errors.sort_by_key(|(line, _)| *line);
        Ok(outcome)
    }

    /// Creates the default (unlabeled) association for each pair.
    pub async fn create_default(
        &self,
        pair: PortalPair,
        pairs: &[(i64, i64)],
    ) -> ServiceResult<BatchOutcome<HeldAssociation>> {
        let inputs: Vec<AssociationInput> = pairs
            .iter()
            .map(|&(from_id, to_id)| AssociationInput {
                from_id,
                to_id,
                types: vec![],
            })
            .collect();
        self.create(pair, &inputs).await
    }

    /// Merges `merged_id` into `primary_id` (both of `object_type`): the
    /// merged record's associations move to the primary, and the merged id
    /// resolves to it from then on.
    pub async fn merge(
        &self,
        portal: i64,
        object_type: ObjectType,
        primary_id: i64,
        merged_id: i64,
    ) -> ServiceResult<MergeSummary> {
        self.merge_into(portal, object_type, primary_id, merged_id, None)
            .await
    }

    /// Like `merge`, but with `into` set both records move to that record
    /// (HubSpot gives merged contacts and companies a new id) and both ids
    /// resolve to it from then on; one transaction either way.
    pub async fn merge_into(
        &self,
        portal: i64,
        object_type: ObjectType,
        primary_id: i64,
        merged_id: i64,
        into: Option<i64>,
    ) -> ServiceResult<MergeSummary> {
        check_portal(portal)?;
        let merge = MergeInto::new(portal, object_type, primary_id, merged_id, into)?;
        // The store resolves ids merged away before, under its merge lock.
        let (survivor, plans) = self
            .store
            .merge_records(&merge, self.settings.platform_ceiling)
            .await
            .map_err(ServiceError::from)
            .inspect_err(|err| {
                if let ServiceError::Domain(err) = err {
                    count_limit_rejection(err)
                }
            })?;
        let mut summary = MergeSummary {
            object_type,
            primary_id: survivor,
            removed: 0,
            created: 0,
        };
        if plans.is_empty() {
            return Ok(summary);
        }
        self.merged_in(portal);
        self.written.notify_waiters();
        for plan in &plans {
            summary.removed += plan.delete_rows.len() as u64;
            summary.created += plan.insert_rows.len() as u64;
        }
        Ok(summary)
    }

    /// Removes every type between `from_id` and each of its `to_ids`.
    pub async fn archive(
        &self,
        pair: PortalPair,
        inputs: &[(i64, Vec<i64>)],
    ) -> ServiceResult<ArchiveOutcome> {
        check_batch_size(inputs.iter().map(|(_, to)| to.len().max(1)).sum())?;
        let PortalPair { portal, from, to } = pair;
        let _ = self.pair_catalog(pair).await?;
        let mut resolved = Vec::with_capacity(inputs.len());
        for (from_id, to_ids) in inputs {
            let mut to_ids = to_ids.clone();
            self.resolve_ids(portal, to, &mut to_ids).await?;
            resolved.push((self.resolve_id(portal, from, *from_id).await?, to_ids));
        }
        let inputs = &resolved;
        let mut outcome = ArchiveOutcome::default();
        let mut pairs = Vec::new();
        for (index, (from_id, to_ids)) in inputs.iter().enumerate() {
            let valid = check_id("fromObjectId", *from_id).and_then(|_| {
                to_ids.iter().try_for_each(|id| {
                    check_id("toObjectId", *id)?;
                    check_distinct(from, *from_id, to, *id)
                })
            });
            match valid {
                Ok(()) => pairs.extend(to_ids.iter().map(|to_id| (*from_id, *to_id))),
                Err(err) => outcome.errors.push((index, err)),
            }
        }
        if !pairs.is_empty() {
            outcome.removed = self
                .store
                .archive_associations(portal, from, to, &pairs, &TypeFilter::All)
                .await?;
        }
        Ok(outcome)
    }

    /// Removes only the given types; removing the unlabeled type removes all.
    pub async fn archive_labels(
        &self,
        pair: PortalPair,
        inputs: &[AssociationInput],
    ) -> ServiceResult<ArchiveOutcome> {
        check_batch_size(inputs.len())?;
        let PortalPair { portal, from, to } = pair;
        let catalog = self.pair_catalog(pair).await?;
        let inputs = &self.resolve_inputs(pair, inputs).await?;
        let mut outcome = ArchiveOutcome::default();
        // Pairs grouped by what they remove: all types, or these (forward, inverse) keys.
        type KeyPairs = Option<Vec<(TypeKey, TypeKey)>>;
        let mut by_filter: BTreeMap<KeyPairs, Vec<(i64, i64)>> = BTreeMap::new();
        for (index, input) in inputs.iter().enumerate() {
            let filter = Self::validate(&catalog, from, to, input)
                .and_then(|item| archive_filter(&catalog, from, to, &item.types));
            match filter {
                Ok(filter) => by_filter
                    .entry(filter)
                    .or_default()
                    .push((input.from_id, input.to_id)),
                Err(err) => outcome.errors.push((index, err)),
            }
        }
        for (filter, pairs) in by_filter {
            let filter = match filter {
                None => TypeFilter::All,
                Some(keys) => TypeFilter::Only {
                    forward: keys.iter().map(|(f, _)| *f).collect(),
                    inverse: keys.iter().map(|(_, i)| *i).collect(),
                },
            };
            outcome.removed += self
                .store
                .archive_associations(portal, from, to, &pairs, &filter)
                .await?;
        }
        Ok(outcome)
    }

    /// Creates associations whose types are named (v3): each input names
    /// one type; an unknown name fails that input only.
    pub async fn create_named(
        &self,
        pair: PortalPair,
        inputs: &[NamedInput],
    ) -> ServiceResult<BatchOutcome<NamedAssociation>> {
        let (resolved, mut errors) = self.resolve_named(pair, inputs).await?;
        let typed: Vec<AssociationInput> = resolved.iter().map(|(_, i, _)| i.clone()).collect();
        let created = self.create(pair, &typed).await?;
        let mut outcome = BatchOutcome::new();
        for (i, held) in created.results {
            let (index, _, def) = &resolved[i];
            outcome.results.push((
                *index,
                NamedAssociation {
                    from_id: held.from_id,
                    to_id: held.to_id,
                    def: def.clone(),
                },
            ));
        }
        errors.extend(created.errors.into_iter().map(|(i, e)| (resolved[i].0, e)));
        errors.sort_by_key(|(i, _)| *i);
        outcome.errors = errors;
        Ok(outcome)
    }

    /// Removes the named type of each input (the unlabeled type removes all);
    /// an unknown name fails that input only.
    pub async fn archive_named(
        &self,
        pair: PortalPair,
        inputs: &[NamedInput],
    ) -> ServiceResult<ArchiveOutcome> {
        let (resolved, mut errors) = self.resolve_named(pair, inputs).await?;
        let typed: Vec<AssociationInput> = resolved.iter().map(|(_, i, _)| i.clone()).collect();
        let mut outcome = self.archive_labels(pair, &typed).await?;
        errors.extend(outcome.errors.drain(..).map(|(i, e)| (resolved[i].0, e)));
        errors.sort_by_key(|(i, _)| *i);
        outcome.errors = errors;
        Ok(outcome)
    }

    /// Resolves each input's type name: the typed inputs with their input
    /// positions and definitions, and the failures by position.
    async fn resolve_named(
        &self,
        pair: PortalPair,
        inputs: &[NamedInput],
    ) -> ServiceResult<(
        Vec<(usize, AssociationInput, TypeDef)>,
        Vec<(usize, DomainError)>,
    )> {
        check_batch_size(inputs.len())?;
        let catalog = self.pair_catalog(pair).await?;
        let (mut resolved, mut errors) = (Vec::new(), Vec::new());
        for (index, input) in inputs.iter().enumerate() {
            match catalog.named(pair.from, pair.to, &input.type_name) {
                Ok(def) => resolved.push((
                    index,
                    AssociationInput {
                        from_id: input.from_id,
                        to_id: input.to_id,
                        types: vec![def.key],
                    },
                    def.clone(),
                )),
                Err(err) => errors.push((index, err)),
            }
        }
        Ok((resolved, errors))
    }
}

/// Counts a refusal by a limit in the metrics, by the limit's source.
fn count_limit_rejection(err: &DomainError) {
    let reason = match err {
        DomainError::LimitExceeded(v) => match v.source {
            crate::domain::LimitSource::Platform => "platform",
            crate::domain::LimitSource::User => "user_config",
        },
        DomainError::MergeLimitExceeded { .. } => "merge",
        _ => return,
    };
    crate::telemetry::metrics::metrics().limit_rejected(reason);
}
