//! Health and metrics: the optional HTTP listener (`http.listen`) with `/healthz`, `/readyz`
//! and `/metrics` in the Prometheus text format.
//!
//! Counters and histograms are recorded where things happen (the engine) through the
//! `metrics` facade; gauges that describe the database (payments by status, open flags,
//! backlog, parked rows) are read from PostgreSQL, so they are true for the whole deployment.
//! They are computed at most once every [`GAUGE_TTL`] and shared by concurrent scrapes, so
//! scrapes cannot load the database. Every label value comes from a closed set.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::metrics::{
    CALLBACK_BUCKETS, CALLBACK_TO_TRANSITION, LATENCY_BUCKETS, PROVIDER_LATENCY, RATE_LIMIT_WAIT,
    SWEEP_BUCKETS, SWEEP_DURATION, describe,
};
use crate::engine::{Engine, Health};
use crate::http::listener;
use crate::settings::Limits;
use crate::store;

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(PROVIDER_LATENCY.into()), &LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(RATE_LIMIT_WAIT.into()),
                        &LATENCY_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(SWEEP_DURATION.into()), &SWEEP_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(CALLBACK_TO_TRANSITION.into()),
                        &CALLBACK_BUCKETS,
                    )
                })
                .expect("bucket lists are not empty");
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (a test harness, say): keep ours private.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            describe();
            crate::webhook::describe();
            listener::describe();
            crate::http::callbacks::describe();
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// How long database gauges are reused before they are read again.
pub const GAUGE_TTL: Duration = Duration::from_secs(5);

/// What the monitoring listener reads: the database (its gauges), the daemon's halt and
/// readiness, and the two settings its metrics show. Not the engine: the listener only looks.
#[derive(Debug, Clone)]
pub struct Watched {
    pub pool: PgPool,
    pub health: Health,
    /// The event types the webhook sends (the outbox gauges count only those).
    pub webhook_types: Option<Vec<String>>,
    pub rate_per_second: u32,
    /// Whether paid payments are watched for refunds (merchant credentials set).
    pub watches_refunds: bool,
}

impl From<&Engine> for Watched {
    fn from(engine: &Engine) -> Self {
        Self {
            pool: engine.pool().clone(),
            health: engine.health(),
            webhook_types: engine.webhook_types().map(<[String]>::to_vec),
            rate_per_second: engine.rate_per_second(),
            watches_refunds: engine.watches_refunds(),
        }
    }
}

impl From<Engine> for Watched {
    fn from(engine: Engine) -> Self {
        Self::from(&engine)
    }
}

#[derive(Clone)]
struct Listener {
    watched: Watched,
    handle: PrometheusHandle,
    gauges: Arc<GaugeCache>,
}

/// The last database gauges read. Scrapes that arrive while they are being read wait for that
/// one read instead of starting their own.
struct GaugeCache {
    ttl: Duration,
    last: std::sync::Mutex<Option<(Instant, Option<store::summary::Gauges>)>>,
    /// Held while the gauges are read from the database.
    reading: tokio::sync::Mutex<()>,
}

impl GaugeCache {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            last: std::sync::Mutex::new(None),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The last gauges read, however old, without waiting.
    fn last(&self) -> Option<store::summary::Gauges> {
        let last = self.last.lock().expect("gauge cache lock");
        last.as_ref().and_then(|(_, gauges)| gauges.clone())
    }

    fn fresh(&self) -> Option<Option<store::summary::Gauges>> {
        let last = self.last.lock().expect("gauge cache lock");
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, gauges)| gauges.clone())
    }

    async fn get(
        &self,
        pool: &PgPool,
        webhook_types: Option<&[String]>,
    ) -> Option<store::summary::Gauges> {
        if let Some(gauges) = self.fresh() {
            return gauges;
        }
        let _reading = self.reading.lock().await;
        // Whoever held the lock may have just read them.
        if let Some(gauges) = self.fresh() {
            return gauges;
        }
        let gauges = match tokio::time::timeout(
            Duration::from_secs(10),
            store::summary::gauges(pool, webhook_types),
        )
        .await
        {
            Ok(Ok(gauges)) => Some(gauges),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "metrics: cannot read the database gauges");
                None
            }
            Err(_) => {
                tracing::warn!("metrics: the database gauges took over 10 s");
                None
            }
        };
        *self.last.lock().expect("gauge cache lock") = Some((Instant::now(), gauges.clone()));
        gauges
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` within `limits` until `shutdown`
/// fires.
pub async fn serve(
    listener: TcpListener,
    watched: impl Into<Watched>,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, watched, limits, shutdown, GAUGE_TTL).await
}

/// As [`serve`], reusing database gauges for `gauge_ttl` (tests use zero).
pub async fn serve_with(
    listener: TcpListener,
    watched: impl Into<Watched>,
    limits: Limits,
    shutdown: CancellationToken,
    gauge_ttl: Duration,
) -> std::io::Result<()> {
    let handle = recorder();
    // Histogram samples are kept until upkeep folds them in: without it they would pile up
    // between scrapes (or forever, with no scraper).
    let upkeep = {
        let (handle, stop) = (handle.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = every.tick() => handle.run_upkeep(),
                }
            }
        })
    };
    let _upkeep = tokio_util::task::AbortOnDropHandle::new(upkeep);
    let state = Listener {
        watched: watched.into(),
        handle,
        gauges: Arc::new(GaugeCache::new(gauge_ttl)),
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    listener::serve(listener, app, limits, shutdown).await
}

/// Binds `addr`, naming it in the error. The listener has no authentication: on an address
/// other than loopback it is reachable from the network, which is said once, at start.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "http.listen is not a loopback address: /metrics and /readyz are reachable from \
             the network without authentication; prefer 127.0.0.1 unless a firewall or scraper \
             network needs otherwise"
        );
    }
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("http.listen {addr}: cannot listen: {e}"))
}

/// Ready: the database answers, takes our writes (they have not failed for
/// `http.unready_after`: a read-only database after a failover, a full disk, a revoked grant)
/// and the provider has not rejected our configuration. Parked
/// rows need a person, not a restart: they are reported in the body of a ready answer, from
/// the last gauges read (readiness never waits for a gauge read).
async fn readyz(State(state): State<Listener>) -> Response {
    let database =
        tokio::time::timeout(Duration::from_secs(2), store::ping(&state.watched.pool)).await;
    let problem = match database {
        Err(_) => Some("database: no answer within 2 s".to_owned()),
        Ok(Err(e)) => Some(format!("database: {e}")),
        Ok(Ok(_)) => state
            .watched
            .health
            .halted()
            .map(|reason| format!("provider: polling halted: {reason}"))
            .or_else(|| state.watched.health.writes_refused()),
    };
    match problem {
        None => {
            let parked = match state.gauges.last() {
                Some(gauges) => gauges.parked,
                None => state
                    .gauges
                    .get(&state.watched.pool, state.watched.webhook_types.as_deref())
                    .await
                    .map_or(0, |g| g.parked),
            };
            let body = if parked > 0 {
                format!(
                    "ready; {parked} payments are parked because they cannot be read \
                     (see recon.parked_payments)\n"
                )
            } else {
                "ready\n".to_owned()
            };
            (StatusCode::OK, body).into_response()
        }
        Some(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {problem}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Listener>) -> Response {
    let mut body = state.handle.render();
    let halted = u8::from(state.watched.health.halted().is_some());
    let _ = write!(
        body,
        "# HELP freedompay_recon_provider_halted 1 while a fatal provider error holds polling off.\n\
         # TYPE freedompay_recon_provider_halted gauge\n\
         freedompay_recon_provider_halted {halted}\n"
    );
    let failing = state
        .watched
        .health
        .writes_failing()
        .map_or(0.0, |(failing_for, _)| failing_for.as_secs_f64());
    let _ = write!(
        body,
        "# HELP freedompay_recon_writes_failing_seconds How long this instance's database writes have been refused (0 while they succeed).\n\
         # TYPE freedompay_recon_writes_failing_seconds gauge\n\
         freedompay_recon_writes_failing_seconds {failing}\n"
    );
    let watching = u8::from(state.watched.watches_refunds);
    let _ = write!(
        body,
        "# HELP freedompay_recon_refunds_watched 1 when paid payments are watched for refunds; 0 without merchant.id and merchant.secret: refunds go unseen.\n\
         # TYPE freedompay_recon_refunds_watched gauge\n\
         freedompay_recon_refunds_watched {watching}\n"
    );
    if let Some(gauges) = state
        .gauges
        .get(&state.watched.pool, state.watched.webhook_types.as_deref())
        .await
    {
        body.push_str(&render_gauges(&gauges, state.watched.rate_per_second));
    }
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}

/// The database gauges in the Prometheus text format; `rate` is the request budget per second.
fn render_gauges(gauges: &store::summary::Gauges, rate: u32) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, samples: &[(&str, f64)], label: Option<&str>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (value_label, value) in samples {
            match label {
                Some(label) => {
                    let _ = writeln!(out, "{name}{{{label}=\"{value_label}\"}} {value}");
                }
                None => {
                    let _ = writeln!(out, "{name} {value}");
                }
            }
        }
    };
    let labelled = |rows: &[(&'static str, i64)]| -> Vec<(&'static str, f64)> {
        rows.iter().map(|(l, n)| (*l, *n as f64)).collect()
    };
    family(
        "freedompay_recon_payments",
        "Tracked payments by provider status (unknown: a status not documented; no_answer: before the first answer).",
        &labelled(&gauges.payments_by_status),
        Some("status"),
    );
    family(
        "freedompay_recon_open_discrepancies",
        "Open flags a person must act on (class action), by kind.",
        &labelled(&gauges.open_by_kind),
        Some("kind"),
    );
    family(
        "freedompay_recon_oldest_open_action_flag_age_seconds",
        "How long the oldest open flag a person must act on has been open (0 when none).",
        &[("", gauges.oldest_open_action_flag_age_seconds)],
        None,
    );
    family(
        "freedompay_recon_backlog_due",
        "Payments due now and not held by a live lease.",
        &[("", gauges.backlog_due as f64)],
        None,
    );
    family(
        "freedompay_recon_oldest_due_age_seconds",
        "How long the oldest due payment has waited.",
        &[("", gauges.oldest_due_age_seconds)],
        None,
    );
    family(
        "freedompay_recon_backlog_due_deadline",
        "Of the payments due now, deadline checks and first polls: claimed before routine rechecks.",
        &[("", gauges.backlog_due_urgent as f64)],
        None,
    );
    family(
        "freedompay_recon_oldest_deadline_due_age_seconds",
        "How long the oldest due deadline check or first poll has waited.",
        &[("", gauges.oldest_urgent_due_age_seconds)],
        None,
    );
    // Over 1: more is due than a minute of the budget can poll; deadline checks still go
    // first, routine rechecks slip.
    let saturation = match rate {
        0 => 0.0,
        rate => gauges.backlog_due as f64 / (f64::from(rate) * 60.0),
    };
    family(
        "freedompay_recon_saturation",
        "Payments due now per minute of the request budget (poll.rate_per_second x 60); over 1, routine rechecks slip.",
        &[("", saturation)],
        None,
    );
    family(
        "freedompay_recon_payments_parked",
        "Payments parked because the daemon cannot read them (recon.parked_payments).",
        &[("", gauges.parked as f64)],
        None,
    );
    if let Some(webhook) = &gauges.webhook {
        family(
            "freedompay_recon_webhook_backlog",
            "Events of the types webhook.types names, not yet delivered (recon.event_log).",
            &[("", webhook.pending as f64)],
            None,
        );
        family(
            "freedompay_recon_webhook_oldest_pending_age_seconds",
            "How long the oldest undelivered event has waited.",
            &[("", webhook.oldest_pending_age_seconds)],
            None,
        );
        family(
            "freedompay_recon_webhook_abandoned",
            "Events given up after webhook.max_age of failed deliveries.",
            &[("", webhook.abandoned as f64)],
            None,
        );
    }
    out
}
