//! One wiring of the daemon, shared by `run`, `demo` and the tests: the pool (migrated when
//! needed), the engine, the listeners and the webhook deliverer, run under one supervisor.
//! So "the demo runs the same code path as `run`" holds by construction.

use std::net::SocketAddr;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, run_daemon};
use crate::http::{callbacks, monitoring};
use crate::maintenance::Maintenance;
use crate::provider::ProviderClient;
use crate::settings::Settings;
use crate::store;
use crate::webhook::Deliverer;

/// Connects to `database.url` and applies pending migrations, only when there are any: a role
/// that may run the daemon but not migrate starts against an up-to-date schema.
pub async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    let pool = store::connect(&settings.database).await?;
    let applied = store::migrate_if_pending(&pool).await?;
    if applied > 0 {
        tracing::info!(applied, "schema migrations applied");
    }
    Ok(pool)
}

/// The sockets the daemon serves, bound before anything runs (so an address in use is an
/// error at start, naming its setting).
#[derive(Debug, Default)]
pub struct Listeners {
    /// `/healthz`, `/readyz` and `/metrics` (`http.listen`).
    pub http: Option<TcpListener>,
    /// Result-URL callbacks (`callbacks.listen`).
    pub callbacks: Option<TcpListener>,
}

impl Listeners {
    /// Binds what the settings ask for.
    pub async fn bind(settings: &Settings) -> anyhow::Result<Self> {
        let http = match settings.http.listen {
            Some(addr) => Some(monitoring::bind(addr).await?),
            None => None,
        };
        let callbacks = match settings.callbacks.listen {
            Some(addr) => Some(bind_callbacks(addr).await?),
            None => None,
        };
        Ok(Self { http, callbacks })
    }
}

async fn bind_callbacks(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on callbacks.listen {addr}"))
}

/// The daemon, built and not yet running.
pub struct Daemon {
    engine: Engine,
    deliverer: Option<Deliverer>,
    listeners: Listeners,
    settings: Settings,
}

impl Daemon {
    /// Builds the engine on `pool` with `provider`, and the deliverer when `webhook.url` is
    /// set; `listeners` are served once it runs.
    pub fn build(
        pool: PgPool,
        provider: ProviderClient,
        settings: &Settings,
        listeners: Listeners,
    ) -> anyhow::Result<Self> {
        let engine = Engine::new(pool, provider, settings);
        let deliverer = if settings.webhook.enabled() {
            Some(Deliverer::new(
                engine.pool().clone(),
                &settings.webhook,
                engine.instance(),
            )?)
        } else {
            None
        };
        Ok(Self {
            engine,
            deliverer,
            listeners,
            settings: settings.clone(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What `run --once` needs: the engine and the deliverer, no listener.
    pub fn into_parts(self) -> (Engine, Option<Deliverer>) {
        (self.engine, self.deliverer)
    }

    /// Serves the listeners, delivers events and runs the sweeps on `poll.schedule` until
    /// `shutdown`; the first part that fails, panics or ends on its own stops the others and
    /// is the error.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            engine,
            deliverer,
            listeners,
            settings,
        } = self;
        let mut tasks = Supervised::default();
        let limits = settings.http.limits();
        if let Some(listener) = listeners.http {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
            }
            let (engine, shutdown) = (engine.clone(), shutdown.clone());
            tasks.spawn("health and metrics listener", async move {
                Ok(monitoring::serve(listener, engine, limits, shutdown).await?)
            });
        }
        if let Some(listener) = listeners.callbacks {
            let path = settings.callbacks.path.clone();
            let refund_path = settings
                .callbacks
                .refund_route()
                .map(|(path, _)| path.to_owned());
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, %path, "accepting Result-URL callbacks");
            }
            let state = callbacks::CallbackListener::new(
                engine.pool().clone(),
                engine.waker(),
                engine.naive_offset(),
                &settings.callbacks,
                settings.merchant.secret.clone(),
            );
            let shutdown = shutdown.clone();
            tasks.spawn("callback listener", async move {
                Ok(callbacks::serve(
                    listener,
                    &path,
                    refund_path.as_deref(),
                    state,
                    limits,
                    shutdown,
                )
                .await?)
            });
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
        let maintenance = Maintenance::new(engine.pool().clone(), &settings);
        tasks.spawn("sweeps", {
            let shutdown = shutdown.clone();
            async move { Ok(run_daemon(engine, maintenance, &schedule, shutdown).await?) }
        });
        tasks.wait(&shutdown).await
    }
}

/// The daemon's long-running parts (sweeps, listeners, deliverer). Each runs until shutdown;
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
