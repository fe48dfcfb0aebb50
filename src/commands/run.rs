use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, SweepStop, run_daemon};
use crate::provider::ProviderClient;
use crate::settings::Settings;
use crate::store;

pub async fn run(settings: &Settings, once: bool) -> anyhow::Result<ExitCode> {
    let provider = ProviderClient::new(&settings.provider)?;
    let pool = store::connect(&settings.database).await?;
    store::migrate(&pool).await?;
    let engine = Engine::new(pool, provider, settings);

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    if once {
        let outcome = engine.reconcile_due(&shutdown).await?;
        println!(
            "claimed {}, recorded {} ({} failed, retried later), transitions {}, flags opened {}, resolved {}, released {}",
            outcome.claimed,
            outcome.recorded,
            outcome.failed,
            outcome.transitions,
            outcome.flags_opened,
            outcome.flags_resolved,
            outcome.released
        );
        if let SweepStop::Fatal(reason) = outcome.stop {
            anyhow::bail!("polling stopped: {reason}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    run_daemon(engine, &settings.poll.schedule, shutdown)
        .await
        .context("the daemon stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM (what systemd sends) or SIGINT (Ctrl-C) starts a graceful shutdown.
async fn cancel_on_signal(shutdown: CancellationToken) {
    super::wait_for_shutdown_signal().await;
    shutdown.cancel();
}
