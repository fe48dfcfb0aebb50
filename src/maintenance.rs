//! The daemon's upkeep, apart from its sweeps: monthly history partitions created ahead,
//! event retention (whole event partitions older than `events.retention`; with a webhook
//! configured, only those whose every event was delivered, skipped or abandoned) and the
//! summary's rollup rebuilt after a zone change. Run after a sweep, at most hourly per
//! instance; it shares only the pool with the engine.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

use crate::settings::Settings;
use crate::store::StoreError;
use crate::store::maintenance::{self, MaintenanceOutcome};

/// Maintenance runs at most this often per instance.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// One instance's maintenance: cheap to clone, one run at a time.
#[derive(Clone)]
pub struct Maintenance {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// `events.retention`.
    events_retention: Duration,
    /// Whether a webhook is configured: then only delivered months of events go.
    webhook: bool,
    /// When this instance last ran it; the lock also keeps two runs apart.
    maintained_at: tokio::sync::Mutex<Option<Instant>>,
}

impl Maintenance {
    pub fn new(pool: PgPool, settings: &Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                events_retention: settings.events.retention,
                webhook: settings.webhook.enabled(),
                maintained_at: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// One run, now.
    pub async fn run(&self) -> Result<MaintenanceOutcome, StoreError> {
        maintenance::maintain(
            &self.inner.pool,
            self.inner.events_retention,
            self.inner.webhook,
        )
        .await
    }

    /// [`Maintenance::run`], when this instance has not run it within [`MAINTENANCE_EVERY`]
    /// (the first call runs it); `None` when not due. A failed run is tried again on the next
    /// call: the lock waits, it does not stop anything.
    pub async fn run_if_due(&self) -> Option<Result<MaintenanceOutcome, StoreError>> {
        let mut maintained_at = self.inner.maintained_at.lock().await;
        if maintained_at.is_some_and(|at| at.elapsed() < MAINTENANCE_EVERY) {
            return None;
        }
        let outcome = self.run().await;
        if outcome.is_ok() {
            *maintained_at = Some(Instant::now());
        }
        Some(outcome)
    }
}
