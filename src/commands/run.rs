use std::process::ExitCode;

use anyhow::Context as _;

use crate::engine::SweepStop;
use crate::provider::ProviderClient;
use crate::settings::Settings;
use crate::startup::{self, Daemon, Listeners};

pub async fn run(settings: &Settings, once: bool) -> anyhow::Result<ExitCode> {
    let shutdown = super::shutdown_on_signal()?;
    let provider = ProviderClient::new(&settings.provider)?;
    let pool = startup::connect(settings).await?;
    if shutdown.is_cancelled() {
        tracing::info!("stopped before the first sweep");
        return Ok(ExitCode::SUCCESS);
    }
    if !once {
        let listeners = Listeners::bind(settings).await?;
        Daemon::build(pool, provider, settings, listeners)?
            .run_until_stopped(shutdown)
            .await?;
        return Ok(ExitCode::SUCCESS);
    }

    let (engine, deliverer) =
        Daemon::build(pool, provider, settings, Listeners::default())?.into_parts();
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
    Ok(ExitCode::SUCCESS)
}
