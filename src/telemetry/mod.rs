//! Observability: log lines (text or JSON, colour only on a terminal) and
//! the Prometheus metrics every layer records into (`metrics`).
use std::io::IsTerminal;

use crate::config::{LogFormat, LogSettings};

pub mod metrics;

/// Installs the process's log subscriber (on standard error). A filter that
/// does not parse is refused with the reason.
pub fn init_logging(log: &LogSettings) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.filter)
        .map_err(|err| format!("log.filter '{}' is not a valid filter: {err}", log.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    Ok(())
}
