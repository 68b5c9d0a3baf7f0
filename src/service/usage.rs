//! Limit insight: how the records of each type stand against the limit in
//! force (at it, near it, the largest), the records near a limit as a
//! stream, what a limit change would do before it is made, and the
//! high-usage report plugins deliver.
use super::stream::{self, Scan, Step};
use super::*;
use crate::domain::admin::{LabelValue, LimitImpact, ReportedUsage, UsageReport};
use crate::domain::builtin::every_builtin_definition;
use crate::domain::error::LimitSource;
use crate::domain::labels::{labels_of_pair, MAX_LABELS_PER_PAIR};
use crate::domain::limits::{effective_limit, near_limit_from, MAX_USAGE_SAMPLES};
use crate::domain::TypeRole;
use crate::store::{TypeUsage, UsageScan};

/// Sample records a high-usage report shows per group and type.
const REPORT_SAMPLES: u32 = 10;

/// How one type's records stand against the limit in force.
#[derive(Clone, Debug)]
pub struct LimitUsage {
    pub def: TypeDef,
    pub limit: u32,
    pub source: LimitSource,
    /// The count from which a record is near the limit.
    pub near_from: i64,
    pub usage: TypeUsage,
}

/// The admin labels of one direction of a pair, against the label quota.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelUsage {
    pub from: ObjectType,
    pub to: ObjectType,
    /// The labels' texts in this direction.
    pub labels: Vec<String>,
    /// Labels of the pair (either direction, a label and its inverse once).
    pub usage: usize,
    pub limit: usize,
}

/// Which records a near-limit stream lists.
#[derive(Clone, Copy, Debug)]
pub enum NearThreshold {
    /// Those holding at least this share of the limit in force.
    Fraction(f64),
    /// Those holding at least this many.
    AtLeast(i64),
}

/// One chunk of records near a limit, largest first.
#[derive(Clone, Debug)]
pub struct NearLimitChunk {
    pub limit: u32,
    /// (record id, associations held).
    pub records: Vec<(i64, i64)>,
    pub cursor: String,
}

impl stream::Metered for NearLimitChunk {
    const STREAM: &'static str = "near_limit";

    fn rows(&self) -> usize {
        self.records.len()
    }
}

/// One change of a limit preview: what it would do, or why it is refused.
#[derive(Clone, Debug)]
pub struct PreviewedChange {
    pub key: TypeKey,
    pub outcome: Result<LimitImpact, DomainError>,
}

fn check_samples(samples: u32) -> Result<u32, DomainError> {
    if samples > MAX_USAGE_SAMPLES {
        return Err(DomainError::InvalidArgument(format!(
            "samples must be at most {MAX_USAGE_SAMPLES}, not {samples}"
        )));
    }
    Ok(samples)
}

impl AssociationService {
    /// Every type of the pair (both directions) with its usage, or, without
    /// a pair, every type of the pairs that have an admin limit or records
    /// at or near the platform ceiling.
    pub async fn limit_usage(
        &self,
        portal: i64,
        pair: Option<(ObjectType, ObjectType)>,
        fraction: f64,
        samples: u32,
    ) -> ServiceResult<Vec<LimitUsage>> {
        check_portal(portal)?;
        let samples = check_samples(samples)?;
        near_limit_from(1, fraction)?;
        let pairs = match pair {
            Some(pair) => vec![pair],
            None => self.limited_pairs(portal, fraction).await?,
        };
        let mut usages = Vec::new();
        for (a, b) in pairs {
            let catalog = self.catalog(portal, a, b).await?;
            let limits = self.pair_limits(portal, a, b).await?;
            let mut defs: Vec<&TypeDef> = catalog.directed(a, b).collect();
            if a != b {
                defs.extend(catalog.directed(b, a));
            }
            for def in defs {
                let (limit, source) = effective_limit(
                    limits.get(&def.key).copied(),
                    self.settings.platform_ceiling,
                );
                let near_from = near_limit_from(limit, fraction)?;
                let usage = self
                    .store
                    .type_usage(
                        UsageScan {
                            portal,
                            object_type: def.from,
                            key: def.key,
                        },
                        near_from,
                        i64::from(limit),
                        samples,
                    )
                    .await?;
                usages.push(LimitUsage {
                    def: def.clone(),
                    limit,
                    source,
                    near_from,
                    usage,
                });
            }
        }
        Ok(usages)
    }

    /// The pairs (each once, in one order) that have an admin limit or
    /// records at or near the platform ceiling.
    async fn limited_pairs(
        &self,
        portal: i64,
        fraction: f64,
    ) -> ServiceResult<Vec<(ObjectType, ObjectType)>> {
        let ordered = |a: ObjectType, b: ObjectType| if a <= b { (a, b) } else { (b, a) };
        let mut pairs: Vec<(ObjectType, ObjectType)> = self
            .store
            .user_limits(portal, None)
            .await?
            .iter()
            .map(|l| ordered(l.from, l.to))
            .collect();
        // And the pairs with records at or near the platform ceiling.
        let near_ceiling = near_limit_from(self.settings.platform_ceiling, fraction)?;
        let builtin = every_builtin_definition();
        for (from, key, stored_to) in self
            .store
            .types_holding_at_least(portal, near_ceiling)
            .await?
        {
            let to = stored_to.or_else(|| {
                builtin
                    .iter()
                    .find(|d| d.from == from && d.key == key)
                    .map(|d| d.to)
            });
            if let Some(to) = to {
                pairs.push(ordered(from, to));
            }
        }
        pairs.sort();
        pairs.dedup();
        Ok(pairs)
    }

    /// Each direction's admin labels against the pair's label quota: of one
    /// direction when both types are given (labels or not), else of every
    /// direction with labels, narrowed to the types given.
    pub async fn label_usage(
        &self,
        portal: i64,
        from: Option<ObjectType>,
        to: Option<ObjectType>,
    ) -> ServiceResult<Vec<LabelUsage>> {
        check_portal(portal)?;
        let directions = match (from, to) {
            (Some(from), Some(to)) => vec![(from, to)],
            _ => self
                .store
                .labelled_directions(portal)
                .await?
                .into_iter()
                .filter(|(f, t)| from.is_none_or(|x| x == *f) && to.is_none_or(|x| x == *t))
                .collect(),
        };
        let mut usages = Vec::new();
        for (from, to) in directions {
            let catalog = self.catalog(portal, from, to).await?;
            usages.push(LabelUsage {
                from,
                to,
                labels: catalog
                    .directed(from, to)
                    .filter(|d| d.role == TypeRole::Label)
                    .filter_map(|d| d.label.clone())
                    .collect(),
                usage: labels_of_pair(catalog.all(), from, to).len(),
                limit: MAX_LABELS_PER_PAIR,
            });
        }
        Ok(usages)
    }

    /// Makes HubSpot's high-usage report for `user_id`: every type with
    /// records at or near the limit in force, as an admin event that
    /// plugins receive and the audit trail keeps. Answers when it was
    /// enqueued (microseconds since the Unix epoch).
    pub async fn high_usage_report(
        &self,
        actor: &str,
        portal: i64,
        user_id: i64,
    ) -> ServiceResult<i64> {
        if user_id < 1 {
            return Err(DomainError::InvalidArgument(format!(
                "userId must be a positive integer, not {user_id}"
            ))
            .into());
        }
        let usages = self
            .limit_usage(
                portal,
                None,
                crate::domain::limits::DEFAULT_NEAR_FRACTION,
                REPORT_SAMPLES,
            )
            .await?;
        let types = usages
            .into_iter()
            .filter(|u| u.usage.at_or_above + u.usage.near > 0)
            .map(|u| ReportedUsage {
                definition: LabelValue::from(&u.def),
                limit: u.limit,
                admin_limit: u.source == LimitSource::User,
                near_from: u.near_from,
                records_at_limit: u.usage.at_or_above,
                records_near_limit: u.usage.near,
                largest_usage: u.usage.largest,
                at_limit_samples: u.usage.at_or_above_samples,
                near_limit_samples: u.usage.near_samples,
            })
            .collect();
        let at_us = crate::store::now_us();
        let report = UsageReport { user_id, types };
        let change = AdminChange::usage_report(portal, actor, at_us, report);
        self.store.record_admin_event(&change).await?;
        self.hooks.committed(portal).await;
        Ok(at_us)
    }

    /// Streams the records of `pair`'s from-type holding at least the
    /// threshold of associations of `key`, largest first; each chunk's
    /// cursor resumes after it.
    pub async fn records_near_limit(
        self: &Arc<Self>,
        pair: PortalPair,
        key: TypeKey,
        threshold: NearThreshold,
        cursor: Option<&str>,
    ) -> ServiceResult<mpsc::Receiver<ServiceResult<NearLimitChunk>>> {
        let PortalPair { portal, from, to } = pair;
        let catalog = self.pair_catalog(pair).await?;
        catalog.require(from, to, key)?;
        let limits = self.pair_limits(portal, from, to).await?;
        let (limit, _) = effective_limit(limits.get(&key).copied(), self.settings.platform_ceiling);
        let min = match threshold {
            NearThreshold::Fraction(fraction) => near_limit_from(limit, fraction)?,
            NearThreshold::AtLeast(n) if n >= 1 => n,
            NearThreshold::AtLeast(n) => {
                return Err(DomainError::InvalidArgument(format!(
                    "the threshold must be at least 1 association, not {n}"
                ))
                .into())
            }
        };
        let request = fingerprint(&[
            "near-limit",
            &from.to_string(),
            &to.to_string(),
            &key.category.code().to_string(),
            &key.type_id.to_string(),
            &min.to_string(),
        ]);
        let after = match cursor.filter(|c| !c.is_empty()) {
            Some(cursor) => Some(
                self.cursors
                    .decode::<(i64, i64)>(cursor, portal, &request)?,
            ),
            None => None,
        };
        let slot = self.stream_slot(portal)?;
        let scan = UsageScan {
            portal,
            object_type: from,
            key,
        };
        let rows = self
            .store
            .scan_at_least(scan, min, after, self.chunk_size() as usize);
        Ok(stream::produce(
            slot,
            NearLimitScan {
                service: Arc::clone(self),
                portal,
                request,
                limit,
                rows,
                pending: Vec::new(),
                ended: false,
            },
        ))
    }

    /// What creating or updating these limits would do, changing nothing:
    /// each change's validity (against today's limits, in order, as the
    /// change itself would be checked) and its impact on existing records.
    pub async fn preview_limits(
        &self,
        pair: PortalPair,
        changes: &[LimitChange],
        mode: LimitMode,
        samples: u32,
    ) -> ServiceResult<Vec<PreviewedChange>> {
        check_batch_size(changes.len())?;
        let samples = check_samples(samples)?;
        let PortalPair { portal, from, to } = pair;
        let catalog = self.pair_catalog(pair).await?;
        let before = self.pair_limits(portal, from, to).await?;
        let results = apply_limit_changes(
            &catalog,
            from,
            to,
            &mut before.clone(),
            changes,
            mode,
            self.settings.platform_ceiling,
        );
        let mut previews = Vec::with_capacity(changes.len());
        for (change, result) in changes.iter().zip(results) {
            let outcome = match result {
                Ok(after) => Ok(self
                    .limit_impact(
                        portal,
                        from,
                        change.key,
                        before.get(&change.key).copied(),
                        Some(after),
                        samples,
                    )
                    .await?),
                Err(err) => Err(err),
            };
            previews.push(PreviewedChange {
                key: change.key,
                outcome,
            });
        }
        Ok(previews)
    }

    /// What purging these limits would do, changing nothing: each type
    /// falls back to the platform ceiling.
    pub async fn preview_purge(
        &self,
        pair: PortalPair,
        keys: &[TypeKey],
        samples: u32,
    ) -> ServiceResult<Vec<PreviewedChange>> {
        check_batch_size(keys.len())?;
        let samples = check_samples(samples)?;
        let PortalPair { portal, from, to } = pair;
        let catalog = self.pair_catalog(pair).await?;
        let before = self.pair_limits(portal, from, to).await?;
        let mut previews = Vec::with_capacity(keys.len());
        for key in keys {
            let outcome = match catalog.require(from, to, *key) {
                Ok(_) => Ok(self
                    .limit_impact(portal, from, *key, before.get(key).copied(), None, samples)
                    .await?),
                Err(err) => Err(err),
            };
            previews.push(PreviewedChange { key: *key, outcome });
        }
        Ok(previews)
    }

    /// The impact of moving `key`'s admin limit from `before` to `after`
    /// (`None`: no admin limit, the ceiling applies).
    pub(super) async fn limit_impact(
        &self,
        portal: i64,
        from: ObjectType,
        key: TypeKey,
        before: Option<u32>,
        after: Option<u32>,
        samples: u32,
    ) -> ServiceResult<LimitImpact> {
        let ceiling = self.settings.platform_ceiling;
        let (limit_before, _) = effective_limit(before, ceiling);
        let (limit_after, _) = effective_limit(after, ceiling);
        let at = i64::from(limit_after);
        let usage = self
            .store
            .type_usage(
                UsageScan {
                    portal,
                    object_type: from,
                    key,
                },
                at,
                at,
                samples,
            )
            .await?;
        Ok(LimitImpact {
            category: key.category,
            type_id: key.type_id,
            limit_before,
            limit_after,
            records_at_or_above: usage.at_or_above,
            samples: usage.at_or_above_samples,
        })
    }
}

/// The records holding at least `min` associations of a type, in pages of
/// the chunk size, by count then id (both descending).
struct NearLimitScan {
    service: Arc<AssociationService>,
    portal: i64,
    request: String,
    limit: u32,
    rows: crate::store::RowBatches<(i64, i64)>,
    pending: Vec<(i64, i64)>,
    ended: bool,
}

impl Scan for NearLimitScan {
    type Chunk = NearLimitChunk;

    async fn step(mut self) -> ServiceResult<Step<NearLimitChunk, NearLimitScan>> {
        let size = self.service.chunk_size() as usize;
        while !self.ended && self.pending.len() <= size {
            match self.rows.recv().await {
                Some(batch) => self.pending.extend(batch?),
                None => self.ended = true,
            }
        }
        let rest = self.pending.split_off(size.min(self.pending.len()));
        let records = std::mem::replace(&mut self.pending, rest);
        let Some(&(id, count)) = records.last() else {
            return Ok(Step::End);
        };
        let cursor = self
            .service
            .cursors
            .encode(self.portal, &self.request, &(count, id));
        let chunk = NearLimitChunk {
            limit: self.limit,
            records,
            cursor,
        };
        if self.ended && self.pending.is_empty() {
            return Ok(Step::Last(chunk));
        }
        Ok(Step::More(chunk, self))
    }
}
