//! The `[hooks]` table: delivery pacing and the remote admin plugins, as
//! plain data; `hooks::PluginSettings::from_config` and
//! `hooks::Pacing::from_settings` convert it.
use serde::Deserialize;

use super::ConfigError;
use crate::domain::admin::AdminEvent;

/// What happens to a change when a plugin fails or does not answer in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Refuse the change.
    #[default]
    Closed,
    /// Let the change pass.
    Open,
}

/// The built-in audit plugin's name, which no configured plugin may take.
pub const AUDIT_PLUGIN: &str = "audit";

#[derive(Clone, Debug, Deserialize)]
pub struct HookSettings {
    /// The first wait after a failed delivery; it doubles up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How often dispatchers look for changes committed by other replicas.
    pub poll_interval_ms: u64,
    /// Remote admin plugins (TOML `[[hooks.plugins]]` tables).
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
}

/// One remote admin plugin, serving `associations.v1.AdminHookService`.
#[derive(Clone, Debug, Deserialize)]
pub struct PluginConfig {
    /// Unique; its delivery position is kept under this name.
    pub name: String,
    /// `http://host:port` of the plugin's gRPC server.
    pub endpoint: String,
    /// Event names (`LIMITS_CREATED`, …, `LABEL_DELETED`); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// How long one call may take.
    #[serde(default = "default_plugin_timeout_ms")]
    pub timeout_ms: u64,
    /// `closed` (refuse the change) or `open` (let it pass) when the plugin
    /// fails or times out in ValidateChange.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
}

fn default_plugin_timeout_ms() -> u64 {
    2_000
}

impl PluginConfig {
    /// The events the plugin receives, once its entry is checked (or why
    /// it is invalid).
    pub fn checked_events(&self) -> Result<Vec<AdminEvent>, ConfigError> {
        let invalid =
            |m: String| ConfigError::Invalid(format!("hooks.plugins '{}': {m}", self.name));
        let events = self
            .events
            .iter()
            .map(|e| {
                AdminEvent::parse(e).ok_or_else(|| {
                    let names: Vec<&str> = AdminEvent::ALL.iter().map(|e| e.name()).collect();
                    invalid(format!(
                        "unknown event '{e}' (events: {})",
                        names.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.timeout_ms == 0 {
            return Err(invalid("timeout_ms must be at least 1".into()));
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(invalid(
                "endpoint must start with http:// or https://".into(),
            ));
        }
        Ok(events)
    }
}
