use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, SweepStop, run_daemon};
use crate::http::callbacks;
use crate::http::monitoring;
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
    let mut tasks = Supervised::default();
    if let Some(addr) = settings.http.listen.filter(|_| !once) {
        let listener = monitoring::bind(addr).await?;
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        let limits = settings.http.limits();
        tasks.spawn("health and metrics listener", async move {
            Ok(monitoring::serve(listener, engine, limits, shutdown).await?)
        });
    }
    if let Some(addr) = settings.callbacks.listen.filter(|_| !once) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on callbacks.listen {addr}"))?;
        let path = settings.callbacks.path.clone();
        tracing::info!(%addr, %path, "accepting Result-URL callbacks");
        let state = callbacks::CallbackListener::new(engine.clone(), &settings.callbacks);
        let (limits, shutdown) = (settings.http.limits(), shutdown.clone());
        tasks.spawn("callback listener", async move {
            Ok(callbacks::serve(listener, &path, state, limits, shutdown).await?)
        });
    }

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
    if let Some(deliverer) = deliverer {
        let shutdown = shutdown.clone();
        tasks.spawn("webhook deliverer", async move {
            deliverer.run(shutdown).await;
            Ok(())
        });
    }
    let schedule = settings.poll.schedule.clone();
    tasks.spawn("sweeps", {
        let shutdown = shutdown.clone();
        async move { Ok(run_daemon(engine, &schedule, shutdown).await?) }
    });
    tasks.wait(&shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The daemon's long-running parts (sweeps, listener, deliverer). Each runs until shutdown;
/// one that fails, panics or ends on its own is logged with its error as a field, stops the
/// others, and makes `run` exit non-zero (systemd restarts it) rather than leaving a daemon
/// that runs on without it.
#[derive(Default)]
struct Supervised {
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Supervised {
    fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, name);
    }

    /// Waits for every task; the first failure, once all have stopped.
    async fn wait(mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut first_failure = None;
        while let Some(joined) = self.tasks.join_next_with_id().await {
            let (name, failure) = match joined {
                Ok((id, result)) => (self.names[&id], result.err()),
                Err(e) => (
                    self.names[&e.id()],
                    Some(anyhow::anyhow!("it panicked: {e}")),
                ),
            };
            let failure = failure.or_else(|| {
                (!shutdown.is_cancelled()).then(|| anyhow::anyhow!("it ended on its own"))
            });
            if let Some(e) = failure {
                tracing::error!(task = name, error = format!("{e:#}"), "stopping the daemon");
                first_failure.get_or_insert(e.context(format!("the {name} stopped")));
                shutdown.cancel();
            }
        }
        first_failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_or_panicking_task_stops_the_others_and_the_process() {
        let shutdown = CancellationToken::new();
        let mut tasks = Supervised::default();
        let stopped = CancellationToken::new();
        tasks.spawn("steady", {
            let (shutdown, stopped) = (shutdown.clone(), stopped.clone());
            async move {
                shutdown.cancelled().await;
                stopped.cancel();
                Ok(())
            }
        });
        tasks.spawn("listener", async { anyhow::bail!("address in use") });
        let e = tasks.wait(&shutdown).await.unwrap_err();
        assert_eq!(format!("{e:#}"), "the listener stopped: address in use");
        assert!(stopped.is_cancelled(), "the other task was told to stop");

        let shutdown = CancellationToken::new();
        let mut tasks = Supervised::default();
        tasks.spawn("deliverer", async { panic!("boom") });
        let e = tasks.wait(&shutdown).await.unwrap_err();
        assert!(
            format!("{e:#}").starts_with("the deliverer stopped: it panicked"),
            "{e:#}"
        );

        let shutdown = CancellationToken::new();
        let mut tasks = Supervised::default();
        tasks.spawn("sweeps", async { Ok(()) });
        let e = tasks.wait(&shutdown).await.unwrap_err();
        assert_eq!(format!("{e:#}"), "the sweeps stopped: it ended on its own");

        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut tasks = Supervised::default();
        tasks.spawn("sweeps", async { Ok(()) });
        assert!(
            tasks.wait(&shutdown).await.is_ok(),
            "ending at shutdown is no failure"
        );
    }
}
