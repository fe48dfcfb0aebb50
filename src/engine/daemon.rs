//! The scheduled daemon: tokio-cron-scheduler fires [`Engine::reconcile_due`] on
//! `poll.schedule`, then [`Maintenance::run_if_due`] (at most hourly per instance). A wake
//! ([`Engine::wake`], or a `NOTIFY` on [`WAKE_CHANNEL`] from any instance, a callback or
//! `recheck`) runs a sweep at once, between ticks. This adapter is the only code that knows
//! about the scheduler.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;

use super::{Engine, SweepStop};
use crate::maintenance::Maintenance;
use crate::store::callbacks::WAKE_CHANNEL;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "poll.schedule {schedule:?} is not a cron expression with seconds (e.g. \"*/10 * * * * *\"): {reason}"
    )]
    Schedule { schedule: String, reason: String },
    #[error("the scheduler failed: {0}")]
    Scheduler(#[from] JobSchedulerError),
}

/// Runs sweeps on `schedule` (cron with seconds, UTC) until `shutdown` fires, then waits for
/// the running sweep to drain. A firing while a sweep still runs becomes one more sweep after
/// it (as a wake does): sweeps never overlap, and none is lost.
pub async fn run_daemon(
    engine: Engine,
    maintenance: Maintenance,
    schedule: &str,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let engine_claim_ahead = engine.claim_ahead();
    let watches_refunds = engine.watches_refunds();
    let running = Arc::new(tokio::sync::Mutex::new(()));
    let (engine_for_wakes, engine_for_notify) = (engine.clone(), engine.clone());
    let job = {
        let running = Arc::clone(&running);
        let shutdown = shutdown.clone();
        Job::new_async(schedule, move |_id, _scheduler| {
            let engine = engine.clone();
            let maintenance = maintenance.clone();
            let running = Arc::clone(&running);
            let shutdown = shutdown.clone();
            Box::pin(async move {
                let Ok(_guard) = running.try_lock() else {
                    // The running sweep fixed what it takes when it began: a wake sweep that
                    // began just before this firing does not cover the checks due at it.
                    // The wake loop sweeps once more when it has finished.
                    tracing::debug!("previous sweep still running; sweeping again after it");
                    engine.wake();
                    return;
                };
                if shutdown.is_cancelled() {
                    return;
                }
                match engine.reconcile_due(&shutdown).await {
                    Ok(outcome) => {
                        if let SweepStop::Halted { reason, until } = outcome.stop {
                            tracing::error!(%until, %reason, "polling halted by a fatal provider error");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "sweep failed"),
                }
                // Maintenance after the sweep, at most hourly per instance: cheap when there
                // is nothing to do (a catalog look-up per table).
                match maintenance.run_if_due().await {
                    Some(Ok(done))
                        if done.partitions_created > 0
                            || !done.event_partitions_dropped.is_empty()
                            || done.summary_rebuilt =>
                    {
                        tracing::info!(
                            partitions_created = done.partitions_created,
                            event_partitions_dropped = ?done.event_partitions_dropped,
                            summary_rebuilt = done.summary_rebuilt,
                            "maintenance: history partitions, summary rollup"
                        );
                    }
                    None | Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(
                        error = %e,
                        "maintenance failed (partitions ahead, event retention, summary zone); tried again after the next sweep"
                    ),
                }
            })
        })
        .map_err(|e| DaemonError::Schedule {
            schedule: schedule.to_owned(),
            reason: e.to_string(),
        })?
    };

    let mut scheduler = JobScheduler::new().await?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    let _woken = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(sweep_when_woken(
        engine_for_wakes,
        Arc::clone(&running),
        shutdown.clone(),
    )));
    let _listening = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(wake_on_notify(
        engine_for_notify,
        shutdown.clone(),
    )));
    tracing::info!(
        schedule,
        claim_ahead_ms = engine_claim_ahead.as_millis() as u64,
        "daemon started"
    );
    if !watches_refunds {
        tracing::warn!(
            "refunds are not watched: merchant.id and merchant.secret are not set, so a refund \
             of a paid payment goes unseen (paid payments are still enrolled; set both to watch \
             them)"
        );
    }
    // The caller connected and migrated before calling us: we are ready.
    notify_systemd(NotifyState::Ready);

    // Under systemd with WatchdogSec=, ping at half the interval from this loop: if the
    // runtime hangs, the pings stop and systemd restarts the daemon.
    let mut watchdog_usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec)
        .then(|| Duration::from_micros(watchdog_usec / 2).max(Duration::from_millis(100)));
    let mut ticks = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {
                if watchdog.is_some() {
                    notify_systemd(NotifyState::Watchdog);
                }
            }
        }
    }

    notify_systemd(NotifyState::Stopping);
    tracing::info!("shutting down: no new sweeps; waiting for the running one to drain");
    scheduler.shutdown().await?;
    // The running sweep saw the same token: it drains within poll.drain_timeout and releases
    // its claims before it returns.
    let _guard = running.lock().await;
    tracing::info!("stopped");
    Ok(())
}

/// Runs a sweep each time the engine is woken. A wake during a sweep waits for it, then sweeps
/// once more: the running sweep may have claimed before the payment became due.
async fn sweep_when_woken(
    engine: Engine,
    running: Arc<tokio::sync::Mutex<()>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = engine.woken() => {}
        }
        let _guard = running.lock().await;
        if shutdown.is_cancelled() {
            return;
        }
        if let Err(e) = engine.reconcile_due(&shutdown).await {
            tracing::error!(error = %e, "sweep on wake failed");
        }
    }
}

/// Wakes this instance when any process sends `NOTIFY` on [`WAKE_CHANNEL`] (a callback
/// another instance received, `recheck`). A lost connection is reopened; meanwhile the
/// schedule still sweeps.
async fn wake_on_notify(engine: Engine, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = listen_for_wakes(&engine) => match result {
                Err(e) => tracing::warn!(
                    error = %e,
                    "not listening for wakes; the schedule still sweeps; retrying in 5s"
                ),
                Ok(never) => match never {},
            },
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

async fn listen_for_wakes(engine: &Engine) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(engine.pool()).await?;
    listener.listen(WAKE_CHANNEL).await?;
    loop {
        listener.recv().await?;
        engine.wake();
    }
}

/// Tells systemd (`Type=notify`) about our state; a no-op when not run by systemd.
fn notify_systemd(state: NotifyState) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}
