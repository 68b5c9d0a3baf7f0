//! Custom object names: an admin names a portal's custom object types, so
//! HubSpot's fully qualified form `p{portalId}_{name}` can name them; each
//! process keeps a portal's names for the catalog time to live (at once
//! after a change made here), as it keeps pair catalogs.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;
use crate::domain::object_type::{custom_object_name, fully_qualified_name};

/// A named custom object type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomObject {
    pub object_type: ObjectType,
    /// Its name, lower case (empty once its name is taken away).
    pub name: String,
    /// `p{portalId}_{name}` (empty without a name).
    pub fully_qualified_name: String,
}

impl CustomObject {
    fn new(portal: i64, object_type: ObjectType, name: Option<&str>) -> CustomObject {
        CustomObject {
            object_type,
            name: name.unwrap_or_default().to_string(),
            fully_qualified_name: name
                .map(|n| fully_qualified_name(portal, n))
                .unwrap_or_default(),
        }
    }
}

/// A portal's custom object names, by type.
pub type Names = Arc<Vec<(ObjectType, String)>>;

/// Each portal's names, with their load times.
pub struct ObjectNames {
    ttl: Duration,
    known: Mutex<HashMap<i64, (Instant, Names)>>,
}

/// Portals remembered before the stale ones are dropped (bounds memory).
const MOST_REMEMBERED: usize = 100_000;

impl ObjectNames {
    pub fn new(ttl: Duration) -> ObjectNames {
        ObjectNames {
            ttl,
            known: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, portal: i64) -> Option<Names> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match known.get(&portal) {
            Some((at, names)) if at.elapsed() < self.ttl => Some(Arc::clone(names)),
            _ => None,
        }
    }

    fn put(&self, portal: i64, names: Names) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= MOST_REMEMBERED {
            let ttl = self.ttl;
            known.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        known.insert(portal, (Instant::now(), names));
    }

    fn forget(&self, portal: i64) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.remove(&portal);
    }
}

impl AssociationService {
    /// Names a custom object type of the portal (an empty name takes its
    /// name away); returns it as now named and its name before.
    pub async fn name_custom_object(
        &self,
        actor: &str,
        portal: i64,
        object_type: ObjectType,
        name: &str,
    ) -> ServiceResult<(CustomObject, Option<String>)> {
        check_portal(portal)?;
        if !object_type.is_custom() {
            return Err(DomainError::InvalidArgument(format!(
                "only custom object types (2-…) take names; {object_type} is a standard object"
            ))
            .into());
        }
        let name = match name.trim() {
            "" => None,
            name => Some(custom_object_name(name)?),
        };
        let change = AdminChange::object_named(portal, actor, object_type, crate::store::now_us());
        let before = self
            .store
            .object_names(portal)
            .await?
            .into_iter()
            .find(|(t, _)| *t == object_type)
            .map(|(_, n)| n);
        self.hooks
            .validate(
                &change
                    .clone()
                    .with_object_names(before.as_deref(), name.as_deref()),
            )
            .await?;
        let named = self
            .store
            .name_object(portal, object_type, name.as_deref(), &change)
            .await;
        self.object_names.forget(portal);
        let before = named?;
        self.hooks.committed(portal).await;
        Ok((
            CustomObject::new(portal, object_type, name.as_deref()),
            before,
        ))
    }

    /// The portal's named custom object types, by type.
    pub async fn custom_objects(&self, portal: i64) -> ServiceResult<Vec<CustomObject>> {
        check_portal(portal)?;
        Ok(self
            .names_of(portal)
            .await?
            .iter()
            .map(|(t, n)| CustomObject::new(portal, *t, Some(n)))
            .collect())
    }

    /// The portal's names, from this process's copy while it is fresh.
    pub async fn names_of(&self, portal: i64) -> ServiceResult<Names> {
        if let Some(names) = self.object_names.get(portal) {
            return Ok(names);
        }
        let names = Arc::new(self.store.object_names(portal).await?);
        self.object_names.put(portal, Arc::clone(&names));
        Ok(names)
    }
}
