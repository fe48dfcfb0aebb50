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
mod pacing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt as _;
use rand::Rng as _;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument as _;

pub use daemon::{DaemonError, run_daemon};
pub use pacing::Pacer;

use crate::domain::{Jitter, PaymentId, Policy, PollResult, decide};
use crate::observe;
use crate::provider::{Classified, ProviderClient};
use crate::settings::{PollSettings, Settings};
use crate::store::{self, Claimed, Recorded, StoreError};

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

/// After a fatal provider error, sweeps are skipped for this long, doubling up to the cap.
const HALT_FIRST: Duration = Duration::from_secs(60);
const HALT_MAX: Duration = Duration::from_secs(3600);

#[derive(Debug)]
struct Halt {
    reason: String,
    until: DateTime<Utc>,
    next_wait: Duration,
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
    pacer: Pacer,
    /// Names this process's claims in `lease_owner`.
    instance: String,
    halt: Mutex<Option<Halt>>,
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
                poll,
                instance,
                halt: Mutex::new(None),
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The fatal provider error currently holding polling off, if any.
    pub fn halted(&self) -> Option<String> {
        let halt = self.inner.halt.lock().expect("halt lock");
        halt.as_ref().map(|h| h.reason.clone())
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
        if let Some((reason, until)) = self.halted_until(Utc::now()) {
            return Ok(SweepOutcome {
                stop: SweepStop::Halted { reason, until },
                ..SweepOutcome::default()
            });
        }
        let sweep_id: u32 = rand::rng().random();
        let span = tracing::info_span!("sweep", sweep.id = %format_args!("{sweep_id:08x}"));
        let started = Instant::now();
        let outcome = Sweep::new(self.clone(), shutdown)
            .run()
            .instrument(span.clone())
            .await?;
        metrics::histogram!(observe::SWEEP_DURATION).record(started.elapsed().as_secs_f64());
        span.in_scope(|| match &outcome.stop {
            SweepStop::Fatal(reason) => tracing::error!(
                claimed = outcome.claimed,
                released = outcome.released,
                "sweep stopped, polling halted: {reason}"
            ),
            _ if outcome.claimed > 0 => tracing::info!(
                claimed = outcome.claimed,
                recorded = outcome.recorded,
                failed = outcome.failed,
                transitions = outcome.transitions,
                flags_opened = outcome.flags_opened,
                flags_resolved = outcome.flags_resolved,
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

    fn halted_until(&self, now: DateTime<Utc>) -> Option<(String, DateTime<Utc>)> {
        let halt = self.inner.halt.lock().expect("halt lock");
        halt.as_ref()
            .filter(|h| h.until > now)
            .map(|h| (h.reason.clone(), h.until))
    }

    fn record_fatal(&self, reason: &str) {
        let mut halt = self.inner.halt.lock().expect("halt lock");
        let wait = halt.as_ref().map_or(HALT_FIRST, |h| h.next_wait);
        *halt = Some(Halt {
            reason: reason.to_owned(),
            until: Utc::now() + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX),
            next_wait: (wait * 2).min(HALT_MAX),
        });
    }

    fn clear_fatal(&self) {
        let mut halt = self.inner.halt.lock().expect("halt lock");
        if halt.take().is_some() {
            tracing::info!("the provider accepts our requests again; polling resumed");
        }
    }
}

/// The `outcome` label of a poll.
fn outcome_label(classified: &Classified) -> &'static str {
    match classified {
        Classified::Answer(PollResult::Invoice(_)) => "answer",
        Classified::Answer(PollResult::NotFound) => "not_found",
        Classified::Answer(PollResult::Rejected { .. }) => "rejected",
        Classified::Answer(PollResult::Failed { .. }) | Classified::Retryable(_) => "failed",
        Classified::RateLimited(_) => "rate_limited",
        Classified::Fatal(_) => "fatal",
    }
}

fn hostname() -> Option<String> {
    gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|h| !h.is_empty())
}

/// What a poller hands the writer.
enum Polled {
    Verdict(Box<Recorded>),
    /// The claim was not polled (stopping, or the lease is nearly out): release it.
    Skipped,
}

/// One sweep's shared state.
struct Sweep {
    engine: Engine,
    /// Fires on shutdown or on a fatal error: stop claiming and polling.
    stop: CancellationToken,
    shutdown: CancellationToken,
    /// Claims not yet written: released at the end.
    outstanding: Mutex<HashMap<PaymentId, i64>>,
    fatal: Mutex<Option<String>>,
    outcome: Mutex<SweepOutcome>,
}

impl Sweep {
    fn new(engine: Engine, shutdown: &CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            engine,
            stop: shutdown.child_token(),
            shutdown: shutdown.clone(),
            outstanding: Mutex::new(HashMap::new()),
            fatal: Mutex::new(None),
            outcome: Mutex::new(SweepOutcome::default()),
        })
    }

    fn count(&self, update: impl FnOnce(&mut SweepOutcome)) {
        update(&mut self.outcome.lock().expect("outcome lock"));
    }

    async fn run(self: Arc<Self>) -> Result<SweepOutcome, EngineError> {
        let inner = &self.engine.inner;
        let chunk = self.engine.claim_chunk();
        let (claims_tx, claims_rx) = mpsc::channel::<Claimed>(chunk * 2);
        let (polled_tx, polled_rx) = mpsc::channel::<Recorded>(inner.poll.batch_size as usize * 2);

        let claimer = tokio::spawn(Arc::clone(&self).claim_loop(claims_tx));
        let writer = tokio::spawn(Arc::clone(&self).write_loop(polled_rx));
        Arc::clone(&self).poll_all(claims_rx, polled_tx).await;

        let claim_result = claimer.await.expect("claimer task panicked");
        writer.await.expect("writer task panicked");

        // Whatever was claimed and not written goes back now.
        let leftover: Vec<(PaymentId, i64)> = self
            .outstanding
            .lock()
            .expect("outstanding lock")
            .drain()
            .collect();
        if !leftover.is_empty() {
            match store::release(&inner.pool, &leftover).await {
                Ok(released) => self.count(|o| o.released += released),
                Err(e) => tracing::warn!(
                    "could not release {} claims ({e}); they fall due when their lease ends",
                    leftover.len()
                ),
            }
        }

        let mut outcome = self.outcome.lock().expect("outcome lock").clone();
        if let Some(reason) = self.fatal.lock().expect("fatal lock").take() {
            self.engine.record_fatal(&reason);
            outcome.stop = SweepStop::Fatal(reason);
        } else if self.shutdown.is_cancelled() {
            outcome.stop = SweepStop::Cancelled;
        } else if outcome.recorded > outcome.failed {
            self.engine.clear_fatal();
        }
        claim_result?;
        Ok(outcome)
    }

    /// Claims in chunks as the queue frees room, until nothing due at the sweep's start is
    /// left or the sweep stops.
    async fn claim_loop(self: Arc<Self>, claims: mpsc::Sender<Claimed>) -> Result<(), EngineError> {
        let inner = &self.engine.inner;
        let chunk = self.engine.claim_chunk();
        let mut due_by = None;
        loop {
            let permits = tokio::select! {
                // Stopping wins over a free queue: nothing is claimed after a stop.
                biased;
                () = self.stop.cancelled() => return Ok(()),
                permits = claims.reserve_many(chunk) => match permits {
                    Ok(permits) => permits,
                    Err(_) => return Ok(()),
                },
            };
            let batch = match store::claim_due(
                &inner.pool,
                &inner.instance,
                chunk as u32,
                inner.poll.lease,
                due_by,
            )
            .await
            {
                Ok(claimed) => claimed,
                Err(e) => {
                    self.stop.cancel();
                    return Err(e.into());
                }
            };
            if batch.is_empty() {
                return Ok(());
            }
            if !batch.unreadable.is_empty() {
                for row in &batch.unreadable {
                    tracing::warn!(payment.id = %row.payment_id, "cannot read this payment's row ({}); parked for an hour", row.reason);
                }
                if let Err(e) = store::park_unreadable(&inner.pool, &batch.unreadable).await {
                    tracing::warn!("could not park unreadable rows ({e}); their lease runs out");
                }
            }
            let claimed = batch.claims;
            let Some(first) = claimed.first() else {
                continue;
            };
            // "Due now" is fixed at the first claim, on the database's clock: payments
            // rescheduled during this sweep wait for the next one.
            due_by.get_or_insert(first.claimed_at);
            {
                let mut outstanding = self.outstanding.lock().expect("outstanding lock");
                for claim in &claimed {
                    outstanding.insert(claim.tracked.payment_id.clone(), claim.lease_token);
                }
            }
            let recovered = claimed.iter().filter(|c| c.recovered).count() as u64;
            self.count(|o| {
                o.claimed += claimed.len() as u64;
                o.recovered += recovered;
            });
            if recovered > 0 {
                metrics::counter!(observe::LEASES_RECOVERED).increment(recovered);
                tracing::info!(recovered, "took over claims whose lease had run out");
            }
            for (permit, claim) in permits.zip(claimed) {
                permit.send(claim);
            }
        }
    }

    /// Polls claims with at most `poll.concurrency` in flight; on shutdown stops taking new
    /// ones and gives in-flight polls `poll.drain_timeout` to finish.
    async fn poll_all(
        self: Arc<Self>,
        claims: mpsc::Receiver<Claimed>,
        polled: mpsc::Sender<Recorded>,
    ) {
        let inner = &self.engine.inner;
        let stop = self.stop.clone();
        let claims = futures_util::stream::unfold(claims, |mut rx| async move {
            rx.recv().await.map(|claim| (claim, rx))
        })
        .take_until(stop.clone().cancelled_owned());
        let pipeline = claims
            .map(|claim| {
                let sweep = Arc::clone(&self);
                AbortOnDropHandle::new(tokio::spawn(async move { sweep.poll_one(claim).await }))
            })
            .buffer_unordered(inner.poll.concurrency)
            .for_each(|result| {
                let polled = polled.clone();
                async move {
                    match result {
                        // The writer outlives the pollers; a send fails only if it died.
                        Ok(Polled::Verdict(recorded)) => {
                            let _ = polled.send(*recorded).await;
                        }
                        Ok(Polled::Skipped) => {}
                        // Its claim stays outstanding and is released at the end.
                        Err(e) if e.is_panic() => {
                            tracing::error!("a poll failed unexpectedly: {e}")
                        }
                        Err(_) => {}
                    }
                }
            });
        let drain_deadline = async {
            stop.cancelled().await;
            tokio::time::sleep(inner.poll.drain_timeout).await;
        };
        tokio::select! {
            () = pipeline => {}
            () = drain_deadline => {
                tracing::warn!(
                    "in-flight polls did not finish within poll.drain_timeout; their claims are released"
                );
            }
        }
    }

    async fn poll_one(&self, claim: Claimed) -> Polled {
        let inner = &self.engine.inner;
        let payment_id = claim.tracked.payment_id.clone();
        let span = tracing::debug_span!("poll", payment.id = %payment_id);
        async {
            let claimed_locally = Instant::from_std(claim.claimed_instant);
            // Leave a request's worth of time before the lease runs out: a later write
            // would be refused anyway.
            let lease_deadline =
                claimed_locally + inner.poll.lease.saturating_sub(inner.provider_timeout);
            loop {
                let Some(ticket) = inner.pacer.ticket(&self.stop).await else {
                    return Polled::Skipped;
                };
                metrics::histogram!(observe::RATE_LIMIT_WAIT).record(ticket.waited.as_secs_f64());
                if Instant::now() >= lease_deadline {
                    tracing::debug!("lease nearly out before the poll; releasing");
                    return Polled::Skipped;
                }
                let fetched = inner.provider.invoice_info(&payment_id).await;
                drop(ticket);
                metrics::histogram!(observe::PROVIDER_LATENCY)
                    .record(fetched.elapsed.as_secs_f64());
                metrics::counter!(observe::POLLS, "outcome" => outcome_label(&fetched.classified))
                    .increment(1);
                let result = match fetched.classified {
                    Classified::Answer(result) => result,
                    Classified::Retryable(reason) => {
                        tracing::warn!(
                            http.status = fetched.http_status,
                            "poll failed, will retry: {reason}"
                        );
                        PollResult::Failed { reason }
                    }
                    Classified::RateLimited(pause) => {
                        tracing::warn!(
                            pause_ms = pause.as_millis() as u64,
                            "provider asked us to slow down; pausing every worker"
                        );
                        metrics::counter!(observe::RATE_LIMIT_PAUSES).increment(1);
                        inner.pacer.pause(pause).await;
                        self.count(|o| o.rate_limited += 1);
                        continue;
                    }
                    Classified::Fatal(reason) => {
                        self.fatal.lock().expect("fatal lock").get_or_insert(reason);
                        self.stop.cancel();
                        return Polled::Skipped;
                    }
                };
                let observed_at = claim.claimed_at
                    + TimeDelta::from_std(claimed_locally.elapsed()).unwrap_or_default();
                let jitter = Jitter::from_permille(rand::rng().random_range(0..=1000));
                let verdict = decide(&claim.tracked, &result, observed_at, &inner.policy, jitter);
                let invoice = match result {
                    PollResult::Invoice(invoice) => Some(*invoice),
                    _ => None,
                };
                return Polled::Verdict(Box::new(Recorded {
                    payment_id: payment_id.clone(),
                    lease_token: claim.lease_token,
                    verdict,
                    invoice,
                    raw_body: fetched.raw_body,
                }));
            }
        }
        .instrument(span)
        .await
    }

    /// Writes verdicts in batches: whatever has arrived while the last write ran goes into
    /// the next transaction. A failed write is retried (writes are idempotent) until the
    /// sweep stops.
    async fn write_loop(self: Arc<Self>, mut polled: mpsc::Receiver<Recorded>) {
        let inner = &self.engine.inner;
        let limit = inner.poll.batch_size as usize;
        let mut batch = Vec::with_capacity(limit);
        while polled.recv_many(&mut batch, limit).await > 0 {
            let mut backoff = Duration::from_millis(100);
            let first_try = Instant::now();
            loop {
                match store::record_verdicts(&inner.pool, &batch).await {
                    Ok(written) => {
                        let failed = batch.iter().filter(|r| !r.verdict.answered).count() as u64;
                        self.count(|o| {
                            o.recorded += written.applied;
                            o.failed += failed;
                            o.stale += batch.len() as u64 - written.applied;
                            o.transitions += written.transitions;
                            o.flags_opened += written.flags_opened;
                            o.flags_resolved += written.flags_resolved;
                        });
                        metrics::counter!(observe::TRANSITIONS).increment(written.transitions);
                        metrics::counter!(observe::FLAGS_OPENED).increment(written.flags_opened);
                        metrics::counter!(observe::FLAGS_RESOLVED)
                            .increment(written.flags_resolved);
                        let mut outstanding = self.outstanding.lock().expect("outstanding lock");
                        for recorded in &batch {
                            if outstanding.get(&recorded.payment_id) == Some(&recorded.lease_token)
                            {
                                outstanding.remove(&recorded.payment_id);
                            }
                        }
                        break;
                    }
                    // Past the lease the writes would be refused anyway; when stopping,
                    // the drain timeout bounds the wait. The claims then fall due again.
                    Err(e)
                        if first_try.elapsed() >= inner.poll.lease
                            || (self.stop.is_cancelled()
                                && first_try.elapsed() >= inner.poll.drain_timeout) =>
                    {
                        tracing::error!("gave up recording {} verdicts: {e}", batch.len());
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(
                            retry_in_ms = backoff.as_millis() as u64,
                            "could not record {} verdicts: {e}",
                            batch.len()
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            batch.clear();
        }
    }
}
