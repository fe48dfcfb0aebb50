//! One sweep: the claimer, the pollers and the writer (see the engine's module comment),
//! each owning what it counts, joined by channels.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{SubsecRound as _, TimeDelta};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use rand::Rng as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{Credentials, Engine, EngineError, SweepOutcome, SweepStop, WatchOutcome, metrics};
use crate::domain::{Jitter, PollResult, callback_lag, decide};
use crate::provider::Classified;
use crate::store::{self, Claimed, Lease, Recorded};
use crate::text::{PROVIDER_TEXT_MAX_CHARS, clean};

/// The `outcome` label of a poll.
fn outcome_label(classified: &Classified) -> &'static str {
    match classified {
        Classified::Answer(PollResult::Invoice(_)) => "answer",
        Classified::Answer(PollResult::NotFound) => "not_found",
        Classified::Answer(PollResult::Rejected { .. }) | Classified::CredentialsDoubt { .. } => {
            "rejected"
        }
        Classified::Answer(PollResult::Failed { .. }) | Classified::Retryable(_) => "failed",
        Classified::RateLimited(_) => "rate_limited",
        Classified::Fatal(_) => "fatal",
    }
}

/// How one poll ended.
enum Polled {
    Verdict(Box<Recorded>),
    /// Not polled (stopping, or the lease is nearly out): the claim is released.
    Skipped,
    /// The provider refused our configuration: polling stops for everyone.
    Halt(String),
}

/// A claim by its lease: what is released if it is not written.
fn lease_of(claim: &Claimed) -> Lease {
    Lease {
        payment_id: claim.tracked.payment_id.clone(),
        token: claim.lease_token,
    }
}

/// What the claimer did.
#[derive(Debug, Default)]
struct Claims {
    claimed: u64,
    recovered: u64,
}

/// What the pollers did.
#[derive(Debug, Default)]
struct Polls {
    rate_limited: u64,
    fatal: Option<String>,
    /// Claims taken and not polled, or whose poll was cut off: released at the end.
    unpolled: Vec<Lease>,
}

/// What the writer did.
#[derive(Debug, Default)]
struct Writes {
    recorded: u64,
    failed: u64,
    stale: u64,
    transitions: u64,
    flags_opened: u64,
    flags_resolved: u64,
    money_events: u64,
    /// Verdicts not written (the stop deadline passed, or the database stayed away until
    /// the lease ran out): their claims are released at the end.
    unwritten: Vec<Lease>,
}

/// One sweep: three loops (claim, poll, write) joined by channels. Each loop owns what it
/// counts and hands it back when it ends; nothing is shared but the stop signal.
pub(super) struct Sweep {
    engine: Engine,
    /// Fires on shutdown or on a fatal error: stop claiming and polling.
    stop: CancellationToken,
    shutdown: CancellationToken,
    /// Once stopping: the one moment by which polls, writes and claims give up
    /// (`poll.drain_timeout` after the stop), however much work is queued.
    deadline: OnceLock<Instant>,
}

impl Sweep {
    pub(super) fn new(engine: Engine, shutdown: &CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            engine,
            stop: shutdown.child_token(),
            shutdown: shutdown.clone(),
            deadline: OnceLock::new(),
        })
    }

    /// Resolves at the stop deadline: never before the sweep stops, then
    /// `poll.drain_timeout` after it.
    async fn past_deadline(&self) {
        self.stop.cancelled().await;
        let drain = self.engine.inner.poll.drain_timeout;
        let deadline = *self.deadline.get_or_init(|| Instant::now() + drain);
        tokio::time::sleep_until(deadline).await;
    }

    pub(super) async fn run(self: Arc<Self>) -> Result<SweepOutcome, EngineError> {
        let inner = &self.engine.inner;
        let chunk = self.engine.claim_chunk();
        let (claims_tx, claims_rx) = mpsc::channel::<Claimed>(chunk * 2);
        let (polled_tx, polled_rx) = mpsc::channel::<Recorded>(inner.poll.batch_size as usize * 2);

        let claimer = tokio::spawn(Arc::clone(&self).claim_loop(claims_tx));
        let writer = tokio::spawn(Arc::clone(&self).write_loop(polled_rx));
        let (polls, mut queued) = Arc::clone(&self).poll_all(claims_rx, polled_tx).await;
        let (claims, claim_result) = claimer.await.expect("claimer task panicked");
        let writes = writer.await.expect("writer task panicked");

        // Whatever was claimed and not written goes back now: claims still queued (the
        // claimer has ended, so the queue holds all it sent), unpolled and unwritten ones.
        let mut leftover = polls.unpolled;
        leftover.extend(writes.unwritten);
        while let Ok(claim) = queued.try_recv() {
            leftover.push(lease_of(&claim));
        }
        let mut released = 0;
        if !leftover.is_empty() {
            let release = store::release(&inner.pool, &leftover);
            match tokio::time::timeout(Duration::from_secs(5), release).await {
                Ok(Ok(n)) => released = n,
                Ok(Err(e)) => tracing::warn!(
                    error = %e,
                    claims = leftover.len(),
                    "could not release claims; they fall due when their lease ends"
                ),
                Err(_) => tracing::warn!(
                    "could not release {} claims within 5 s; they fall due when their lease ends",
                    leftover.len()
                ),
            }
        }

        let mut outcome = SweepOutcome {
            claimed: claims.claimed,
            recovered: claims.recovered,
            recorded: writes.recorded,
            failed: writes.failed,
            transitions: writes.transitions,
            flags_opened: writes.flags_opened,
            flags_resolved: writes.flags_resolved,
            money_events: writes.money_events,
            watch: WatchOutcome::default(),
            stale: writes.stale,
            released,
            rate_limited: polls.rate_limited,
            stop: SweepStop::Drained,
        };
        if let Some(reason) = polls.fatal {
            self.engine.inner.health.record_fatal(&reason);
            outcome.stop = SweepStop::Fatal(reason);
        } else if self.shutdown.is_cancelled() {
            outcome.stop = SweepStop::Cancelled;
        } else if outcome.recorded > outcome.failed {
            self.engine.inner.health.clear_fatal();
        }
        claim_result?;
        Ok(outcome)
    }

    /// Claims in chunks as the queue frees room, until nothing due at the sweep's start is
    /// left or the sweep stops.
    async fn claim_loop(
        self: Arc<Self>,
        queue: mpsc::Sender<Claimed>,
    ) -> (Claims, Result<(), EngineError>) {
        let mut counts = Claims::default();
        let result = self.claim_into(&queue, &mut counts).await;
        (counts, result)
    }

    async fn claim_into(
        &self,
        queue: &mpsc::Sender<Claimed>,
        counts: &mut Claims,
    ) -> Result<(), EngineError> {
        let inner = &self.engine.inner;
        let chunk = self.engine.claim_chunk();
        let mut due_by = None;
        loop {
            let permits = tokio::select! {
                // Stopping wins over a free queue: nothing is claimed after a stop.
                biased;
                () = self.stop.cancelled() => return Ok(()),
                permits = queue.reserve_many(chunk) => match permits {
                    Ok(permits) => permits,
                    Err(_) => return Ok(()),
                },
            };
            let claim = store::claim_due(
                &inner.pool,
                &inner.instance,
                chunk as u32,
                inner.poll.lease,
                due_by,
                // The policy's, not `poll.first_poll_after`: with callbacks on it is
                // `poll.first_poll_after_with_callbacks` (issue 23, item 3).
                inner.policy.first_poll_after,
                inner.claim_ahead,
            );
            let batch = tokio::select! {
                claimed = claim => match claimed {
                    Ok(claimed) => claimed,
                    Err(e) => {
                        self.stop.cancel();
                        return Err(e.into());
                    }
                },
                // A claim stuck past the stop deadline is abandoned: whatever it took comes
                // back when its lease runs out.
                () = self.past_deadline() => return Ok(()),
            };
            if batch.is_empty() {
                return Ok(());
            }
            if !batch.unreadable.is_empty() {
                for row in &batch.unreadable {
                    tracing::warn!(
                        payment.id = %clean(&row.payment_id, 128),
                        "cannot read this payment's row ({}); parked until `recheck` takes it back",
                        clean(&row.reason, PROVIDER_TEXT_MAX_CHARS)
                    );
                }
                tokio::select! {
                    parked = store::park_unreadable(&inner.pool, &batch.unreadable) => {
                        if let Err(e) = parked {
                            tracing::warn!(error = %e, "could not park unreadable rows; their lease runs out");
                        }
                    }
                    () = self.past_deadline() => return Ok(()),
                }
            }
            let claimed = batch.claims;
            let Some(first) = claimed.first() else {
                continue;
            };
            // "Due now" is fixed at the first claim, on the database's clock (routine checks:
            // plus `claim_ahead`): payments rescheduled during this sweep wait for the next.
            due_by.get_or_insert(first.claimed_at);
            let recovered = claimed.iter().filter(|c| c.recovered).count() as u64;
            counts.claimed += claimed.len() as u64;
            counts.recovered += recovered;
            if recovered > 0 {
                ::metrics::counter!(metrics::LEASES_RECOVERED).increment(recovered);
                tracing::info!(recovered, "took over claims whose lease had run out");
            }
            // Sent even when stopping: the queue is drained and released at the end.
            for (permit, claim) in permits.zip(claimed) {
                permit.send(claim);
            }
        }
    }

    /// Polls claims with at most `poll.concurrency` in flight; on a stop takes no new ones
    /// and gives in-flight polls until the stop deadline. Returns the claim queue with
    /// whatever is left in it, for the caller to release once the claimer has ended.
    async fn poll_all(
        self: Arc<Self>,
        mut queue: mpsc::Receiver<Claimed>,
        polled: mpsc::Sender<Recorded>,
    ) -> (Polls, mpsc::Receiver<Claimed>) {
        let concurrency = self.engine.inner.poll.concurrency;
        let mut polls = Polls::default();
        let mut running: JoinSet<(Polled, u64)> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, Lease> = HashMap::new();
        let mut queue_open = true;
        loop {
            let taking = queue_open && !self.stop.is_cancelled() && running.len() < concurrency;
            if !taking && running.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = self.past_deadline() => {
                    tracing::warn!(
                        "in-flight polls did not finish within poll.drain_timeout; their claims are released"
                    );
                    break;
                }
                Some(joined) = running.join_next_with_id() => {
                    let (task, result) = match joined {
                        Ok((task, result)) => (task, Some(result)),
                        Err(e) => {
                            if e.is_panic() {
                                tracing::error!(error = %e, "a poll failed unexpectedly");
                            }
                            (e.id(), None)
                        }
                    };
                    let lease = in_flight.remove(&task).expect("every poll task is tracked");
                    let Some((result, rate_limited)) = result else {
                        polls.unpolled.push(lease);
                        continue;
                    };
                    polls.rate_limited += rate_limited;
                    match result {
                        Polled::Verdict(recorded) => {
                            let sent = tokio::select! {
                                sent = polled.send(*recorded) => sent.is_ok(),
                                () = self.past_deadline() => false,
                            };
                            if !sent {
                                polls.unpolled.push(lease);
                            }
                        }
                        Polled::Skipped => polls.unpolled.push(lease),
                        Polled::Halt(reason) => {
                            polls.fatal.get_or_insert(reason);
                            self.stop.cancel();
                            polls.unpolled.push(lease);
                        }
                    }
                }
                () = self.stop.cancelled(), if taking => {}
                claim = queue.recv(), if taking => match claim {
                    Some(claim) => {
                        let lease = lease_of(&claim);
                        let sweep = Arc::clone(&self);
                        let task = running.spawn(async move { sweep.poll_one(claim).await });
                        in_flight.insert(task.id(), lease);
                    }
                    None => queue_open = false,
                },
            }
        }
        // Polls cut off at the deadline are aborted when `running` drops.
        polls.unpolled.extend(in_flight.into_values());
        queue.close();
        (polls, queue)
    }

    /// Polls one claim; also returns how many times the provider asked us to slow down.
    async fn poll_one(&self, claim: Claimed) -> (Polled, u64) {
        let inner = &self.engine.inner;
        let payment_id = claim.tracked.payment_id.clone();
        let span = tracing::debug_span!(
            "poll",
            payment.id = %payment_id,
            request.id = tracing::field::Empty
        );
        let mut rate_limited = 0;
        let polled = async {
            let claimed_locally = Instant::from_std(claim.claimed_instant);
            // Leave a request's worth of time before the lease runs out: a later write
            // would be refused anyway.
            let lease_deadline =
                claimed_locally + inner.poll.lease.saturating_sub(inner.provider_timeout);
            loop {
                let Some(ticket) = inner.pacer.ticket(&self.stop).await else {
                    return Polled::Skipped;
                };
                ::metrics::histogram!(metrics::RATE_LIMIT_WAIT).record(ticket.waited.as_secs_f64());
                if Instant::now() >= lease_deadline {
                    tracing::debug!("lease nearly out before the poll; releasing");
                    return Polled::Skipped;
                }
                let fetched = inner.provider.invoice_info(&payment_id).await;
                drop(ticket);
                tracing::Span::current()
                    .record("request.id", tracing::field::display(fetched.request_id));
                ::metrics::histogram!(metrics::PROVIDER_LATENCY)
                    .record(fetched.elapsed.as_secs_f64());
                ::metrics::counter!(metrics::POLLS, "outcome" => outcome_label(&fetched.classified))
                    .increment(1);
                let result = match fetched.classified {
                    Classified::Answer(result) => result,
                    Classified::Retryable(reason) => {
                        // The poll span is at debug level: name the payment and the request
                        // here, so the line can go to the provider's support as it is.
                        tracing::warn!(
                            payment.id = %payment_id,
                            request.id = %fetched.request_id,
                            http.status = fetched.http_status,
                            %reason,
                            "poll failed, will retry"
                        );
                        PollResult::Failed { reason }
                    }
                    Classified::RateLimited(pause) => {
                        tracing::warn!(
                            pause_ms = pause.as_millis() as u64,
                            "provider asked us to slow down; pausing every worker"
                        );
                        ::metrics::counter!(metrics::RATE_LIMIT_PAUSES).increment(1);
                        inner.pacer.pause(pause).await;
                        rate_limited += 1;
                        continue;
                    }
                    Classified::Fatal(reason) => return Polled::Halt(reason),
                    Classified::CredentialsDoubt { code, description } => {
                        match self
                            .engine
                            .confirm_credentials(&payment_id, &self.stop)
                            .await
                        {
                            Credentials::NotProven => PollResult::Rejected { code, description },
                            Credentials::Refused(reason) => return Polled::Halt(reason),
                            Credentials::Inconclusive(_) if self.stop.is_cancelled() => {
                                return Polled::Skipped;
                            }
                            Credentials::Inconclusive(why) => PollResult::Failed {
                                reason: format!(
                                    "provider error {code}: {description}; it reads like a \
                                     credentials failure and could not be confirmed ({why})"
                                ),
                            },
                        }
                    }
                };
                // To the microsecond, as PostgreSQL keeps it: a time the verdict writes into a
                // flag's text reads back the same on the next poll.
                let observed_at = (claim.claimed_at
                    + TimeDelta::from_std(claimed_locally.elapsed()).unwrap_or_default())
                .trunc_subsecs(6);
                let jitter = Jitter::from_permille(rand::rng().random_range(0..=1000));
                let verdict = decide(&claim.tracked, &result, observed_at, &inner.policy, jitter);
                let invoice = match result {
                    PollResult::Invoice(invoice) => Some(*invoice),
                    _ => None,
                };
                // An invoice's body is history; any other body (a partner error, an
                // unreadable answer) is the error body kept for support.
                let (raw_body, error_body) = match invoice {
                    Some(_) => (fetched.raw_body, None),
                    None => (None, fetched.raw_body.or(fetched.unreadable_body)),
                };
                return Polled::Verdict(Box::new(Recorded {
                    payment_id: payment_id.clone(),
                    lease_token: claim.lease_token,
                    before: claim.tracked,
                    verdict,
                    invoice,
                    raw_body,
                    error_body,
                    request_id: Some(fetched.request_id),
                }));
            }
        }
        .instrument(span)
        .await;
        (polled, rate_limited)
    }

    /// A verdict the database refused, decided again as a failed poll that names the problem;
    /// the answer is kept, cleaned, as its error body.
    /// A verdict the database refused, decided again as a failed poll for `reason`, its answer
    /// kept as the error body: what is written instead.
    fn as_failed_poll(&self, item: Recorded, reason: String) -> Recorded {
        tracing::warn!(payment.id = %item.payment_id, %reason, "refused by the database; recorded as a failed poll");
        let jitter = Jitter::from_permille(rand::rng().random_range(0..=1000));
        let verdict = decide(
            &item.before,
            &PollResult::Failed { reason },
            item.verdict.observed_at,
            &self.engine.inner.policy,
            jitter,
        );
        Recorded {
            verdict,
            invoice: None,
            error_body: item.raw_body.or(item.error_body),
            raw_body: None,
            ..item
        }
    }

    /// Writes verdicts in batches, up to `poll.writers` transactions at once: whatever has
    /// arrived while the writers were busy goes into the next transaction. A verdict the
    /// database refuses is split off and recorded as a failed poll
    /// ([`store::record_isolated`]); any other failure is retried (writes are idempotent)
    /// until the lease runs out or, once stopping, until the stop deadline.
    async fn write_loop(self: Arc<Self>, mut polled: mpsc::Receiver<Recorded>) -> Writes {
        let limit = self.engine.inner.poll.batch_size as usize;
        let writers = self.engine.inner.poll.writers as usize;
        let mut writes = Writes::default();
        let mut writing = FuturesUnordered::new();
        let mut batch = Vec::with_capacity(limit);
        let mut open = true;
        loop {
            tokio::select! {
                Some(written) = writing.next() => writes.merge(written),
                received = polled.recv_many(&mut batch, limit),
                    if open && writing.len() < writers =>
                {
                    if received == 0 {
                        open = false;
                    } else {
                        writing.push(self.write_batch(std::mem::take(&mut batch)));
                    }
                }
                else => break,
            }
        }
        writes
    }

    /// Writes one batch, retrying as [`Self::write_loop`] says.
    async fn write_batch(&self, mut pending: Vec<Recorded>) -> Writes {
        let inner = &self.engine.inner;
        let mut writes = Writes::default();
        let mut failed = pending.iter().filter(|r| !r.verdict.answered).count() as u64;
        // Set once `pending` holds failed polls standing in for verdicts the database refused.
        let mut replacing = false;
        let mut backoff = Duration::from_millis(100);
        let first_try = Instant::now();
        // The detection lags of the transitions callbacks announced, observed once committed.
        let callback_lags: HashMap<String, Duration> = pending
            .iter()
            .filter_map(|r| {
                let lag = callback_lag(&r.before, &r.verdict)?;
                Some((r.payment_id.as_str().to_owned(), lag))
            })
            .collect();
        loop {
            // Known before the write takes the batch: released if it never finishes.
            let leases: Vec<Lease> = pending.iter().map(Recorded::lease).collect();
            let write = store::record_isolated(&inner.pool, pending, Some(inner.first_look));
            let result = tokio::select! {
                result = write => result,
                () = self.past_deadline() => {
                    tracing::error!("stop deadline passed while recording verdicts; their claims are released");
                    writes.unwritten.extend(leases);
                    return writes;
                }
            };
            let e = match result {
                Ok(mut written) => {
                    self.engine.inner.health.note_write_success();
                    let refused = std::mem::take(&mut written.refused);
                    writes.count(&written, failed, &callback_lags);
                    if refused.is_empty() {
                        return writes;
                    }
                    if replacing {
                        // Not even the failure could be stored: the claim is released with the
                        // sweep's leftovers and the payment polled again later.
                        for (item, reason) in refused {
                            tracing::error!(payment.id = %item.payment_id, %reason, "cannot record even a failed poll");
                            writes.failed -= 1;
                            writes.unwritten.push(item.lease());
                        }
                        return writes;
                    }
                    // Each refused verdict is written again, alone, as a failed poll that says
                    // why; they count as failed polls.
                    failed = refused.len() as u64;
                    pending = refused
                        .into_iter()
                        .map(|(item, reason)| self.as_failed_poll(item, reason))
                        .collect();
                    replacing = true;
                    continue;
                }
                Err(mut interrupted) => {
                    self.engine
                        .inner
                        .health
                        .note_write_failure(&interrupted.error);
                    // Refused verdicts go back with the rest, to be refused (and replaced) again.
                    let refused = std::mem::take(&mut interrupted.written.refused);
                    interrupted
                        .remaining
                        .extend(refused.into_iter().map(|(item, _)| item));
                    writes.count(&interrupted.written, 0, &callback_lags);
                    pending = interrupted.remaining;
                    interrupted.error
                }
            };
            // Past the lease the writes would be refused anyway. The claims then fall due
            // again.
            let gave_up = if first_try.elapsed() >= inner.poll.lease {
                tracing::error!(error = %e, verdicts = pending.len(), "gave up recording verdicts");
                true
            } else {
                tracing::warn!(
                    retry_in_ms = backoff.as_millis() as u64,
                    error = %e,
                    verdicts = pending.len(),
                    "could not record verdicts"
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => false,
                    () = self.past_deadline() => true,
                }
            };
            if gave_up {
                writes.unwritten.extend(pending.iter().map(Recorded::lease));
                return writes;
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

impl Writes {
    fn merge(&mut self, other: Writes) {
        self.recorded += other.recorded;
        self.failed += other.failed;
        self.stale += other.stale;
        self.transitions += other.transitions;
        self.flags_opened += other.flags_opened;
        self.flags_resolved += other.flags_resolved;
        self.money_events += other.money_events;
        self.unwritten.extend(other.unwritten);
    }

    /// Counts what a write did; `callback_lags` by payment, for the transitions it committed.
    fn count(
        &mut self,
        written: &store::Isolated,
        failed: u64,
        callback_lags: &HashMap<String, Duration>,
    ) {
        let o = &written.outcome;
        self.recorded += o.applied;
        self.failed += failed;
        self.stale += (written.done.len() as u64).saturating_sub(o.applied);
        self.transitions += o.transitions;
        self.flags_opened += o.flags_opened;
        self.flags_resolved += o.flags_resolved;
        self.money_events += o.money_events;
        ::metrics::counter!(metrics::TRANSITIONS).increment(o.transitions);
        ::metrics::counter!(metrics::FLAGS_OPENED).increment(o.flags_opened);
        ::metrics::counter!(metrics::FLAGS_RESOLVED).increment(o.flags_resolved);
        ::metrics::counter!(metrics::MONEY_EVENTS).increment(o.money_events);
        for payment_id in &written.transitioned {
            if let Some(lag) = callback_lags.get(payment_id) {
                ::metrics::histogram!(metrics::CALLBACK_TO_TRANSITION).record(lag.as_secs_f64());
            }
        }
    }
}
