use std::process::ExitCode;

use anyhow::Context as _;

use crate::engine::{Engine, SweepStop, run_daemon};
use crate::monitoring;
use crate::provider::ProviderClient;
use crate::settings::Settings;
use crate::store;
use crate::webhook::Deliverer;

pub async fn run(settings: &Settings, once: bool) -> anyhow::Result<ExitCode> {
    let shutdown = super::shutdown_on_signal()?;
    let provider = ProviderClient::new(&settings.provider)?;
    let pool = store::connect(&settings.database).await?;
    // Only when needed: a role that may run the daemon but not migrate starts against an
    // up-to-date schema.
    let applied = store::migrate_if_pending(&pool).await?;
    if applied > 0 {
        tracing::info!(applied, "schema migrations applied");
    }
    let engine = Engine::new(pool, provider, settings);
    if shutdown.is_cancelled() {
        tracing::info!("stopped before the first sweep");
        return Ok(ExitCode::SUCCESS);
    }
    let deliverer = if settings.webhook.enabled() {
        Some(Deliverer::new(
            engine.pool().clone(),
            &settings.webhook,
            engine.instance(),
        )?)
    } else {
        None
    };
    let listener = match settings.http.listen {
        Some(addr) if !once => {
            let listener = monitoring::bind(addr).await?;
            tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
            let (engine, shutdown) = (engine.clone(), shutdown.clone());
            let limits = settings.http.limits();
            Some(tokio::spawn(async move {
                if let Err(e) = monitoring::serve(listener, engine, limits, shutdown).await {
                    tracing::error!("the health and metrics listener stopped: {e}");
                }
            }))
        }
        _ => None,
    };

    if once {
        let outcome = engine.reconcile_due(&shutdown).await?;
        let printed = outln!(
            "claimed {}, recorded {} ({} failed, retried later), transitions {}, flags opened {}, resolved {}, released {}",
            outcome.claimed,
            outcome.recorded,
            outcome.failed,
            outcome.transitions,
            outcome.flags_opened,
            outcome.flags_resolved,
            outcome.released
        );
        // A halt is reported even when nobody reads standard output any more.
        if let SweepStop::Fatal(reason) = outcome.stop {
            anyhow::bail!("polling stopped: {reason}");
        }
        printed?;
        // Then the events due for the webhook, this run's included. The sweep's work is
        // recorded (and reported above) whatever happens here.
        if let Some(deliverer) = &deliverer {
            let delivered = deliverer
                .deliver_due(&shutdown)
                .await
                .context("webhook delivery stopped; undelivered events wait in recon.events")?;
            outln!(
                "webhook: delivered {}, failed {} (tried again later), abandoned {}",
                delivered.delivered,
                delivered.failed,
                delivered.abandoned
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Delivery runs beside the sweeps, on its own: a slow or dead receiver never holds up
    // reconciliation.
    let delivery = deliverer.map(|d| tokio::spawn(d.run(shutdown.clone())));
    run_daemon(engine, &settings.poll.schedule, shutdown)
        .await
        .context("the daemon stopped")?;
    if let Some(delivery) = delivery {
        let _ = delivery.await;
    }
    if let Some(listener) = listener {
        let _ = listener.await;
    }
    Ok(ExitCode::SUCCESS)
}
