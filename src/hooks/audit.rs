//! The built-in audit plugin: keeps every committed admin change (who, when,
//! before and after) in the store's audit trail, which
//! `AdminConfig.ListAuditEvents` streams.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{AdminPlugin, FailurePolicy, HookError, PluginSettings, Verdict};
use crate::domain::admin::AdminChange;
use crate::store::Store;

/// The audit plugin's name (reserved).
pub use crate::config::AUDIT_PLUGIN;

pub(super) fn settings() -> PluginSettings {
    PluginSettings {
        name: AUDIT_PLUGIN.to_string(),
        events: Vec::new(),
        timeout: Duration::from_secs(10),
        failure_policy: FailurePolicy::Open,
    }
}

pub struct AuditPlugin {
    store: Arc<dyn Store>,
}

impl AuditPlugin {
    pub fn new(store: Arc<dyn Store>) -> AuditPlugin {
        AuditPlugin { store }
    }
}

#[async_trait]
impl AdminPlugin for AuditPlugin {
    async fn validate_change(&self, _change: &AdminChange) -> Result<Verdict, HookError> {
        Ok(Verdict::Allow)
    }

    async fn change_committed(
        &self,
        _key: &str,
        seq: i64,
        change: &AdminChange,
    ) -> Result<(), HookError> {
        self.store
            .record_audit_event(seq, change)
            .await
            .map_err(|e| HookError::Failed(e.to_string()))
    }
}
