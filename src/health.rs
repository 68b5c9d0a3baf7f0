//! What the process reports to probes: gRPC health (the overall status and
//! each service: serving while the database answers and the process is not
//! shutting down; `liveness`: serving until the process exits) and the same
//! answers for HTTP `/healthz` and `/readyz`.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::service::AssociationService;

/// The gRPC health service name that answers while the process runs.
pub const LIVENESS: &str = "liveness";

/// The process's health, shared by gRPC health and the HTTP probes.
pub struct Health {
    reporter: HealthReporter,
    /// The services whose status follows readiness, "" (overall) first.
    services: Vec<&'static str>,
    database_up: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    /// Health that reports through `reporter` for the overall status and
    /// `services`, serving until told otherwise.
    pub async fn new(reporter: HealthReporter, services: &[&'static str]) -> Arc<Health> {
        let health = Arc::new(Health {
            reporter,
            services: std::iter::once("")
                .chain(services.iter().copied())
                .collect(),
            database_up: AtomicBool::new(true),
            draining: AtomicBool::new(false),
        });
        health
            .reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        health.publish().await;
        health
    }

    /// Whether calls should be sent here: the database answers and the
    /// process is not shutting down.
    pub fn ready(&self) -> bool {
        self.database_up.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }

    /// Whether the process still serves (false once it is shutting down).
    pub fn live(&self) -> bool {
        !self.draining.load(Ordering::SeqCst)
    }

    /// The process is shutting down: readiness turns false for good.
    pub async fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.publish().await;
    }

    async fn set_database_up(&self, up: bool) {
        if self.database_up.swap(up, Ordering::SeqCst) != up {
            match up {
                true => tracing::info!("the database answers again: ready"),
                false => tracing::error!("the database does not answer: not ready"),
            }
            self.publish().await;
        }
    }

    async fn publish(&self) {
        let status = match self.ready() {
            true => ServingStatus::Serving,
            false => ServingStatus::NotServing,
        };
        for service in &self.services {
            self.reporter.set_service_status(*service, status).await;
        }
    }

    /// Asks the store every `interval` (each answer due within `timeout`)
    /// and reports what it finds, until the process ends.
    pub async fn watch_store(
        self: Arc<Health>,
        service: Arc<AssociationService>,
        interval: Duration,
        timeout: Duration,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let up = service.store_reachable(timeout).await;
            self.set_database_up(up).await;
        }
    }
}
