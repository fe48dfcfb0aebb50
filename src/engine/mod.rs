//! The sweep engine: claim due payments, pace the polls, ask the core, record the verdicts.
//!
//! One sweep is three cooperating loops joined in [`Engine::reconcile_due`]:
//!
//! ```text
//! claimer ──claims──► pollers (≤ concurrency, paced) ──records──► writer (batched transactions)
//! ```
//!
//! The claimer claims only when the queue has room, so leases are not spent waiting. Anything
//! claimed and not written (shutdown, a fatal provider error, a lease about to run out) is
//! released at the end of the sweep, so nothing claimed is lost.

mod daemon;
mod health;
pub mod metrics;
mod pacing;
mod sweep;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng as _;
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use daemon::{DaemonError, run_daemon};
pub use health::Health;
pub use pacing::Pacer;
pub use watch::WatchOutcome;

use sweep::Sweep;

use crate::domain::{PaymentId, Policy};
use crate::provider::{Classified, ProviderClient};
use crate::settings::{PollSettings, Settings};
use crate::store::{self, StoreError};

/// Counts of what one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Payments claimed.
    pub claimed: u64,
    /// Claims whose earlier lease had run out (a crashed or stuck daemon's work).
    pub recovered: u64,
    /// Verdicts written (answers and failures).
    pub recorded: u64,
    /// Polls that got no usable answer and were rescheduled with backoff.
    pub failed: u64,
    /// Status transitions appended.
    pub transitions: u64,
    pub flags_opened: u64,
    pub flags_resolved: u64,
    /// Money events written (payments received; refunds the watch found).
    pub money_events: u64,
    /// What the refund watch did after the polls.
    pub watch: WatchOutcome,
    /// Verdicts not written because their lease had been taken over meanwhile.
    pub stale: u64,
    /// Claims given back unpolled (shutdown, fatal error, lease running out).
    pub released: u64,
    /// Times the provider asked every worker to pause (429/503).
    pub rate_limited: u64,
    pub stop: SweepStop,
}

/// Why a sweep ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SweepStop {
    /// Everything due at the start was handled.
    #[default]
    Drained,
    /// Shutdown was requested.
    Cancelled,
    /// The provider rejected our configuration; polling stopped.
    Fatal(String),
    /// Skipped: an earlier fatal error holds polling off until the given time.
    Halted {
        reason: String,
        until: DateTime<Utc>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything a sweep needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    provider: ProviderClient,
    policy: Policy,
    poll: PollSettings,
    provider_timeout: Duration,
    /// How long before it is due a sweep takes a routine check (`poll.schedule`'s
    /// [`crate::domain::Sweeps::claim_ahead`]), so none waits a whole extra sweep.
    claim_ahead: Duration,
    pacer: Pacer,
    /// Names this process's claims in `lease_owner`.
    instance: String,
    /// The event types the webhook sends, when one is configured.
    webhook_types: Option<Vec<String>>,
    /// The halt and readiness, which the monitoring listener reads through its own handle.
    health: Health,
    /// The last confirming re-ask and when it was made (see [`Engine::confirm_credentials`]).
    /// The lock also makes concurrent doubts share one re-ask.
    credentials_checked: tokio::sync::Mutex<Option<(Instant, Credentials)>>,
    /// Asks the daemon for a sweep now, not at the next tick (see [`Engine::wake`]).
    wake: Arc<tokio::sync::Notify>,
    /// Watches paid payments for refunds; `None` without merchant credentials.
    watcher: Option<watch::Watcher>,
    /// When a payment booked paid is first looked at for refunds (`refunds.watch`'s first
    /// step): it is enrolled with or without credentials, so setting them later watches it.
    first_look: Duration,
}

/// How long a re-ask that showed our credentials work answers later doubts.
const CREDENTIALS_RECHECK_AFTER: Duration = Duration::from_secs(60);
/// How long a re-ask that got no usable answer answers later doubts, so that pollers waiting
/// on the lock do not each make their own.
const CREDENTIALS_INCONCLUSIVE_FOR: Duration = Duration::from_secs(10);

/// What a re-ask about another payment says of an error body that reads like a credentials
/// failure.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Credentials {
    /// The re-ask failed the same way, or with HTTP 401/403: our credentials are refused.
    Refused(String),
    /// Not proven (the re-ask was answered, or no payment was ever answered to re-ask about):
    /// the error belongs to the payment it answers.
    NotProven,
    /// The re-ask got no usable answer: try the payment again later.
    Inconclusive(String),
}

/// Wakes an engine for a sweep now ([`Engine::waker`]).
#[derive(Clone)]
pub struct Waker(Arc<tokio::sync::Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

impl Engine {
    pub fn new(pool: PgPool, provider: ProviderClient, settings: &Settings) -> Self {
        let poll = settings.poll.clone();
        let instance = format!(
            "{}:{}",
            hostname().unwrap_or_else(|| "unknown-host".into()),
            std::process::id()
        );
        let pacer = Pacer::new(
            poll.rate_per_second,
            poll.burst,
            poll.concurrency,
            Some(pool.clone()),
        );
        Self {
            inner: Arc::new(Inner {
                pool,
                pacer,
                provider,
                policy: settings.policy(),
                provider_timeout: settings.provider.timeout,
                claim_ahead: poll.claim_ahead(),
                poll,
                instance,
                webhook_types: settings
                    .webhook
                    .enabled()
                    .then(|| settings.webhook.types.clone()),
                health: Health::new(settings.http.unready_after),
                credentials_checked: tokio::sync::Mutex::new(None),
                wake: Arc::new(tokio::sync::Notify::new()),
                watcher: watch::Watcher::new(settings),
                first_look: settings
                    .refunds
                    .watch
                    .first()
                    .copied()
                    .unwrap_or(settings.refunds.watch_for),
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The provider's zone for times it sends without one (`provider.naive_utc_offset`):
    /// its answers' and its callbacks' `pg_payment_date`.
    pub fn naive_offset(&self) -> chrono::FixedOffset {
        self.inner.provider.naive_offset()
    }

    /// Asks for a sweep now (a callback made a payment due). Wakes that come while a sweep
    /// runs make one more sweep after it, never more.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// A handle that wakes this engine ([`Engine::wake`]) and nothing else: what a listener
    /// needs of it.
    pub fn waker(&self) -> Waker {
        Waker(Arc::clone(&self.inner.wake))
    }

    /// Returns when someone called [`Engine::wake`] (at once if they did since the last time).
    pub async fn woken(&self) {
        self.inner.wake.notified().await;
    }

    /// The event types the webhook sends, when one is configured.
    pub fn webhook_types(&self) -> Option<&[String]> {
        self.inner.webhook_types.as_deref()
    }

    /// This process's name in leases (`host:pid`).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// How long before it is due a sweep takes a routine check.
    pub fn claim_ahead(&self) -> Duration {
        self.inner.claim_ahead
    }

    /// The deployment's request budget per second (0: unlimited).
    pub fn rate_per_second(&self) -> u32 {
        self.inner.poll.rate_per_second
    }

    /// Whether paid payments are watched for refunds (merchant credentials set).
    pub fn watches_refunds(&self) -> bool {
        self.inner.watcher.is_some()
    }

    /// The halt and readiness this engine keeps, for the monitoring listener.
    pub fn health(&self) -> Health {
        self.inner.health.clone()
    }

    /// Claims every payment due now and reconciles it: the whole job of one scheduled run.
    ///
    /// Returns when nothing due at the start remains, when `shutdown` fires (after in-flight
    /// polls finish or `poll.drain_timeout` passes), or when the provider rejects our
    /// configuration. Claims not completed are released before it returns.
    pub async fn reconcile_due(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<SweepOutcome, EngineError> {
        if let Some((reason, until)) = self.inner.health.halted_until(Utc::now()) {
            return Ok(SweepOutcome {
                stop: SweepStop::Halted { reason, until },
                ..SweepOutcome::default()
            });
        }
        let sweep_id: u32 = rand::rng().random();
        let span = tracing::info_span!("sweep", sweep.id = %format_args!("{sweep_id:08x}"));
        let started = Instant::now();
        let mut outcome = match Sweep::new(self.clone(), shutdown)
            .run()
            .instrument(span.clone())
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                self.inner.health.note_write_failure(&e);
                return Err(e);
            }
        };
        // The claim (an update) went through; the writer reports its own writes.
        if outcome.claimed == 0 {
            self.inner.health.note_write_success();
        }
        // Paid payments due a look for refunds, after the polls (which go first in the rate
        // budget), unless polling stopped.
        if !matches!(outcome.stop, SweepStop::Fatal(_)) {
            outcome.watch = self.watch_refunds(shutdown).await;
            outcome.money_events += outcome.watch.money_events;
        }
        // The summary's pending changes, this sweep's included, into its rollup: readers see
        // the same either way, so a failure here only means more rows for them to read.
        if let Err(e) = store::maintenance::fold_summary(&self.inner.pool).await {
            tracing::warn!(error = %e, "folding the summary's changes failed; tried again after the next sweep");
        }
        ::metrics::histogram!(metrics::SWEEP_DURATION).record(started.elapsed().as_secs_f64());
        span.in_scope(|| match &outcome.stop {
            SweepStop::Fatal(reason) => tracing::error!(
                claimed = outcome.claimed,
                released = outcome.released,
                %reason,
                "sweep stopped, polling halted"
            ),
            _ if outcome.claimed > 0 => tracing::info!(
                claimed = outcome.claimed,
                recorded = outcome.recorded,
                failed = outcome.failed,
                transitions = outcome.transitions,
                flags_opened = outcome.flags_opened,
                flags_resolved = outcome.flags_resolved,
                money_events = outcome.money_events,
                released = outcome.released,
                recovered = outcome.recovered,
                rate_limited = outcome.rate_limited,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "sweep finished"
            ),
            _ => tracing::debug!("sweep found nothing due"),
        });
        Ok(outcome)
    }

    /// Payments claimed at a time. Under a rate limit, about a second's worth of requests
    /// (at least `poll.concurrency`): an instance never holds far more than it can poll
    /// soon, so other instances find work and leases are not spent in a queue.
    fn claim_chunk(&self) -> usize {
        let poll = &self.inner.poll;
        let batch = poll.batch_size as usize;
        match poll.rate_per_second {
            0 => batch,
            rate => batch.min((rate as usize).max(poll.concurrency)),
        }
    }

    /// An error body about `payment_id` reads like a credentials failure. Card and 3-D Secure
    /// errors read the same way, so it halts nothing until a request that does not depend on
    /// this payment confirms it: a re-ask about a payment the provider answered normally
    /// before. A confirmation that the credentials work is reused for a minute, and
    /// concurrent doubts share one re-ask.
    async fn confirm_credentials(
        &self,
        payment_id: &PaymentId,
        stop: &CancellationToken,
    ) -> Credentials {
        let inner = &self.inner;
        let mut checked = inner.credentials_checked.lock().await;
        if stop.is_cancelled() {
            // Another doubt was confirmed meanwhile (or we are shutting down).
            return Credentials::Inconclusive("stopping".into());
        }
        if let Some((at, verdict)) = checked.as_ref() {
            let fresh_for = match verdict {
                Credentials::NotProven => CREDENTIALS_RECHECK_AFTER,
                Credentials::Inconclusive(_) => CREDENTIALS_INCONCLUSIVE_FOR,
                // A refusal halts polling; after the halt, ask again.
                Credentials::Refused(_) => Duration::ZERO,
            };
            if at.elapsed() < fresh_for {
                return verdict.clone();
            }
        }
        let reference = match store::answered_payment_other_than(&inner.pool, payment_id).await {
            Ok(Some(reference)) => reference,
            // Nothing to re-ask about (a new deployment): the error stays the payment's own.
            // A wrong secret then shows as every payment's `last_error`, and `check` says
            // it reads like a credentials failure.
            Ok(None) => return Credentials::NotProven,
            Err(e) => {
                return Credentials::Inconclusive(format!(
                    "cannot pick a payment to re-ask about: {e}"
                ));
            }
        };
        let Some(ticket) = inner.pacer.ticket(stop).await else {
            return Credentials::Inconclusive("stopping".into());
        };
        let fetched = inner.provider.invoice_info(&reference).await;
        drop(ticket);
        let verdict = match fetched.classified {
            Classified::Fatal(reason) => Credentials::Refused(reason),
            Classified::CredentialsDoubt { code, description } => Credentials::Refused(format!(
                "the provider answered error {code} ({description}) about payment {reference} \
                 too, which it had answered normally before; check provider.auth_id, \
                 provider.secret and provider.params"
            )),
            Classified::Answer(_) => Credentials::NotProven,
            Classified::Retryable(reason) => Credentials::Inconclusive(reason),
            Classified::RateLimited(_) => Credentials::Inconclusive("rate limited".into()),
        };
        tracing::info!(
            payment.id = %payment_id,
            reference.id = %reference,
            request.id = %fetched.request_id,
            "an error body read like a credentials failure; re-asked about another payment: {verdict:?}"
        );
        *checked = Some((Instant::now(), verdict.clone()));
        verdict
    }
}

fn hostname() -> Option<String> {
    gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|h| !h.is_empty())
}
