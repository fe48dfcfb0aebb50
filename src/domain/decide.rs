//! The reconciliation rules, as one pure function.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

use super::types::{
    AutoClose, CallbackClaim, Expiry, FlagKind, Invoice, Lifetime, LifetimeSource, NewFlag,
    ProviderStatus, Resolver, StatusChange, Tracked,
};

/// How long after a payment's deadline the provider may still settle it on its own: it calls
/// the merchant's Result URL again every 30 minutes for 2 hours when a call fails, "even after
/// the payment's lifetime has passed" (`docs/provider/RESULT_URL.md`, "When it is
/// called"). A payment still unsettled at its deadline check is polled on its schedule until
/// that window has closed and looked at once more then, and no longer after ([`decide`]).
/// The default of [`Policy::last_look_after`] (`poll.last_look_after`).
pub const CALLBACK_RETRY_WINDOW: Duration = Duration::from_secs(2 * 3600);

/// After a callback, while the Partner API does not show what it claimed yet ("not found",
/// or still in progress: it lags its own callback by seconds in a payment's first moments;
/// issue 23 saw 49 of 427 callbacks arrive so), the payment is looked at again this long
/// after the callback arrived, then every [`CALLBACK_LAG_STEP`], until `poll.not_found_grace`
/// after the callback: so the outcome is seen within a minute of the API showing it, not when
/// the grace from creation or the callback's confirmation delay ends.
pub const CALLBACK_LAG_LADDER: [Duration; 4] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
];

/// The step after [`CALLBACK_LAG_LADDER`].
pub const CALLBACK_LAG_STEP: Duration = Duration::from_secs(60);

/// The settings the rules depend on (the `poll` and `reconcile` sections, already validated).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// How long after its creation a payment is first polled: before then the provider may
    /// not know it yet, and the answer would be a wasted "not found".
    pub first_poll_after: Duration,
    /// Delays between checks of a non-terminal payment: the n-th answer is followed by
    /// `recheck[n]`, the last entry repeating. Never empty.
    pub recheck: Vec<Duration>,
    /// Delay before the one confirmation re-check of a newly terminal payment.
    pub confirm_after: Duration,
    /// How long past its lifetime a payment may stay unsettled before it is flagged.
    pub lifetime_grace: Duration,
    /// How long after `created_at` "not found" is still normal (new payments are invisible
    /// for up to about a minute).
    pub not_found_grace: Duration,
    /// After this long since `created_at` without a terminal status, polling stops.
    pub max_age: Duration,
    /// A payment unsettled at its deadline check is polled until its deadline plus this, and
    /// looked at once more then ([`CALLBACK_RETRY_WINDOW`] by default).
    pub last_look_after: Duration,
    /// Largest difference between expected and provider amount that is not a mismatch.
    pub amount_tolerance: Decimal,
    /// Backoff after a failed attempt: doubles from `retry_min` up to `retry_max`, jittered.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Rules that close a flag in the transaction that opens it (`flags.auto_close`).
    pub auto_close: Vec<AutoClose>,
}

impl Default for Policy {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        Self {
            first_poll_after: Duration::ZERO,
            recheck: vec![
                Duration::from_secs(30),
                minutes(1),
                minutes(5),
                minutes(15),
                minutes(60),
            ],
            confirm_after: minutes(30),
            lifetime_grace: minutes(15),
            not_found_grace: minutes(10),
            max_age: minutes(7 * 24 * 60),
            last_look_after: CALLBACK_RETRY_WINDOW,
            amount_tolerance: Decimal::ZERO,
            retry_min: Duration::from_secs(5),
            retry_max: minutes(5),
            auto_close: vec![AutoClose::ExpiredUnpaid],
        }
    }
}

/// What one poll of the provider produced, already classified by the provider client.
/// (Rate limiting and fatal configuration errors never reach the core: they are about the
/// connection to the provider, not about a payment.)
#[derive(Debug, Clone, PartialEq)]
pub enum PollResult {
    /// The provider answered with the payment's invoice.
    Invoice(Box<Invoice>),
    /// The provider says it does not know this payment id.
    NotFound,
    /// The provider answered with an error about this payment that is not "not found".
    Rejected { code: String, description: String },
    /// No usable answer: a timeout, a connection error, a 5xx, an unreadable body.
    Failed { reason: String },
}

/// A random fraction in thousandths, supplied by the caller so that [`decide`] stays pure.
/// Backoff delays are spread over `[delay / 2, delay]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jitter(u16);

impl Jitter {
    pub const NONE: Jitter = Jitter(1000);

    pub fn from_permille(permille: u16) -> Self {
        Self(permille.min(1000))
    }

    fn spread(self, delay: Duration) -> Duration {
        let half = delay / 2;
        half + half * u32::from(self.0) / 1000
    }
}

/// The core's answer: the payment's new state, the history to append and the flags to change.
/// The shell writes all of it in one transaction, or none of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub observed_at: DateTime<Utc>,
    /// The provider answered (an invoice, "not found" or another error about the payment).
    pub answered: bool,
    pub status: Option<ProviderStatus>,
    pub change: Option<StatusChange>,
    pub settled_at: Option<DateTime<Utc>>,
    pub provider_expiry: Option<Expiry>,
    pub checks: i32,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub not_found_since: Option<DateTime<Utc>>,
    /// `None`: stop polling (confirmed terminal, abandoned, or still unsettled at its last
    /// look after its deadline).
    pub next_check_at: Option<DateTime<Utc>>,
    /// The next check is a deadline check (the lifetime check, the end of the not-found
    /// grace, the maximum age, the last look after a missed deadline): when due work exceeds
    /// the rate budget, it goes before routine rechecks.
    pub next_check_urgent: bool,
    /// When the payment was first seen unpaid past its deadline (kept once known, unless a
    /// later lifetime moves the deadline ahead).
    pub deadline_missed_at: Option<DateTime<Utc>>,
    /// Flags to open, in order. A flag may be opened and resolved by the same verdict (a
    /// rule closes it as it opens): it is written open, then resolved.
    pub open: Vec<NewFlag>,
    pub resolve: Vec<(FlagKind, Resolver)>,
}

/// The detection lag of a transition a callback announced: `verdict`'s `observed_at` (the
/// transition's, as `recon.status_transitions` keeps it) minus the arrival
/// (`recon.callbacks.received_at`) of the payment's latest callback, when `verdict` records a
/// transition and that callback came after the payment's previous transition (or before any)
/// and before this poll (the claim loaded it). `None` otherwise: a transition found with no
/// callback, or one after a callback an earlier transition already answered. The sweep
/// records it in `freedompay_recon_callback_to_transition_seconds` once the transition is
/// committed.
pub fn callback_lag(before: &Tracked, verdict: &Verdict) -> Option<Duration> {
    verdict.change.as_ref()?;
    let callback = before
        .callback
        .as_ref()
        .filter(|c| c.after_last_transition)?;
    // Both on the database's clock; never negative, should two statements' clocks disagree
    // by a hair.
    Some(
        (verdict.observed_at - callback.received_at)
            .to_std()
            .unwrap_or_default(),
    )
}

impl Tracked {
    /// What is known after a verdict: the state the shell writes, here for whoever replays
    /// polls without a database (the capacity planner, tests).
    pub fn apply(&mut self, verdict: &Verdict) {
        self.status.clone_from(&verdict.status);
        self.provider_expiry = verdict.provider_expiry;
        self.checks = verdict.checks;
        self.attempts = verdict.attempts;
        self.not_found_since = verdict.not_found_since;
        self.settled_at = verdict.settled_at;
        self.deadline_missed_at = verdict.deadline_missed_at;
        if verdict.change.is_some()
            && let Some(callback) = &mut self.callback
        {
            callback.after_last_transition = false;
        }
        for flag in &verdict.open {
            self.open_flags.insert(flag.kind);
            self.closed_flags.remove(&flag.kind);
        }
        for (kind, resolver) in &verdict.resolve {
            self.open_flags.remove(kind);
            // A flag a rule closed stays closed for the same finding; one a later answer
            // cleared opens again when the finding returns.
            if let Resolver::Rule(_) = resolver
                && let Some(flag) = verdict.open.iter().find(|f| f.kind == *kind)
            {
                self.closed_flags.insert(
                    *kind,
                    super::types::ClosedFlag {
                        expected: flag.expected.clone(),
                        actual: flag.actual.clone(),
                    },
                );
            }
        }
    }
}

/// What an observation says about one flag's condition.
enum Finding {
    Holds {
        expected: Option<String>,
        actual: Option<String>,
    },
    Clear,
    /// This observation cannot tell: leave the flag as it is.
    Unknown,
}

fn holds(expected: impl ToString, actual: impl ToString) -> Finding {
    Finding::Holds {
        expected: Some(expected.to_string()),
        actual: Some(actual.to_string()),
    }
}

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Decides what one poll result means for a payment.
///
/// `now` is the time of the observation; `jitter` spreads retry backoff.
pub fn decide(
    before: &Tracked,
    result: &PollResult,
    now: DateTime<Utc>,
    policy: &Policy,
    jitter: Jitter,
) -> Verdict {
    let answered = !matches!(result, PollResult::Failed { .. });
    let checks = before.checks + i32::from(answered);

    let (status, provider_expiry) = match result {
        PollResult::Invoice(invoice) => (
            Some(invoice.status.clone()),
            invoice
                .lifetime
                .map(|lifetime| resolve_lifetime(lifetime, before.created_at))
                .or(before.provider_expiry),
        ),
        _ => (before.status.clone(), before.provider_expiry),
    };
    let change = match (&before.status, &status) {
        (from, Some(to)) if from.as_ref() != Some(to) => Some(StatusChange {
            from: from.clone(),
            to: to.clone(),
        }),
        _ => None,
    };
    let settled_at = match &change {
        Some(change) if change.to.is_terminal() => Some(now),
        Some(_) => None,
        None => before.settled_at,
    };

    let deadline = Deadline::earliest(provider_expiry, before.merchant_expires_at);
    let lifetime_check_at = deadline.map(|d| after(d.at, policy.lifetime_grace));
    let abandon_at = after(before.created_at, policy.max_age);
    let is_terminal = status.as_ref().is_some_and(ProviderStatus::is_terminal);
    let abandoned = !is_terminal && now >= abandon_at;

    let lifetime = lifetime_finding(
        status.as_ref(),
        before.deadline_missed_at,
        deadline,
        lifetime_check_at,
        now,
    );
    // Unsettled past its deadline check: the schedule goes on, capped at one last look once
    // the provider's callback retries are over (with the default schedule's 24 h step, that
    // is the one look after the deadline check), and then polling stops. Polled daily until
    // `max_age` instead, such a payment cost several more requests (five on a 24 h lifetime
    // and the default settings) and learned nothing the last look did not.
    let overdue = !is_terminal && matches!(lifetime, Finding::Holds { .. });
    let last_look_at = deadline.map(|d| after(d.at, policy.last_look_after));
    let given_up = overdue && answered && last_look_at.is_some_and(|at| now >= at);
    let deadline_missed_at = match (&lifetime, &status) {
        (Finding::Holds { .. }, _) => Some(before.deadline_missed_at.unwrap_or(now)),
        // Paid or failed: the deadline's story is told; a miss stays on record.
        (_, Some(status)) if status.is_paid_or_failed() => before.deadline_missed_at,
        // No deadline has passed (a later lifetime moved it ahead).
        (Finding::Clear, _) => None,
        _ => before.deadline_missed_at,
    };
    let paid_late = paid_after_deadline_finding(
        status.as_ref(),
        before.deadline_missed_at,
        deadline,
        settled_at,
    );
    let findings = [
        (
            FlagKind::AmountMismatch,
            amount_finding(before, result, policy),
        ),
        (FlagKind::CurrencyMismatch, currency_finding(before, result)),
        (FlagKind::OrderMismatch, order_finding(before, result)),
        (FlagKind::LifetimeExceeded, lifetime),
        (
            FlagKind::NotFound,
            not_found_finding(before, result, now, policy),
        ),
        (FlagKind::UnknownStatus, unknown_status_finding(result)),
        (
            FlagKind::TerminalStatusChanged,
            terminal_change_finding(change.as_ref()),
        ),
        (
            FlagKind::PollingAbandoned,
            if given_up {
                // Named by the deadline, not the time of the look: a recheck that finds the
                // same does not reopen a flag a person closed.
                holds(
                    format!(
                        "a terminal status by {} (the deadline plus the provider's {} of \
                         callback retries)",
                        last_look_at.map_or_else(String::new, |at| at.to_rfc3339()),
                        humantime::format_duration(policy.last_look_after)
                    ),
                    status.as_ref().map_or("no answer", ProviderStatus::as_str),
                )
            } else if abandoned {
                holds(
                    format!(
                        "a terminal status within {}",
                        humantime::format_duration(policy.max_age)
                    ),
                    status.as_ref().map_or("no answer", ProviderStatus::as_str),
                )
            } else if is_terminal {
                Finding::Clear
            } else {
                Finding::Unknown
            },
        ),
        (FlagKind::PaidAfterDeadline, paid_late),
        (
            FlagKind::CallbackDisagrees,
            callback_finding(before, result, now, policy),
        ),
    ];
    let mut open = Vec::new();
    let mut resolve = Vec::new();
    for (kind, finding) in findings {
        let is_open = before.open_flags.contains(&kind);
        match finding {
            Finding::Holds { expected, actual } if !is_open => {
                // A flag a person or a rule closed stays closed while it is about the same
                // thing: a recheck with unchanged values does not undo a resolution.
                let settled = before.closed_flags.get(&kind).is_some_and(|closed| {
                    kind.same_subject(closed, expected.as_deref(), actual.as_deref())
                });
                if !settled {
                    open.push(NewFlag {
                        kind,
                        expected,
                        actual,
                    });
                }
            }
            Finding::Clear if is_open => resolve.push((kind, Resolver::Cleared)),
            _ => {}
        }
    }
    let lifetime_open = before.open_flags.contains(&FlagKind::LifetimeExceeded)
        || open.iter().any(|f| f.kind == FlagKind::LifetimeExceeded);
    let lifetime_resolved = resolve
        .iter()
        .any(|(kind, _)| *kind == FlagKind::LifetimeExceeded);
    if lifetime_open && !lifetime_resolved {
        if open.iter().any(|f| f.kind == FlagKind::PaidAfterDeadline) {
            // The late payment is the exception now.
            resolve.push((FlagKind::LifetimeExceeded, Resolver::Superseded));
        } else if status != Some(ProviderStatus::Success)
            && policy.auto_close.contains(&AutoClose::ExpiredUnpaid)
        {
            // No money moved: an outcome, not an exception.
            resolve.push((
                FlagKind::LifetimeExceeded,
                Resolver::Rule(AutoClose::ExpiredUnpaid),
            ));
        }
    }

    // Never later than a deadline: the lifetime check, (while unsettled) the abandon time,
    // (while the provider does not know the payment) the end of the not-found grace, and
    // (past the deadline check, unsettled) the last look.
    // Each applies only while it is still ahead, so a check is never scheduled in the past.
    // A check a deadline moved is a deadline check.
    let not_found_check_at = matches!(result, PollResult::NotFound)
        .then(|| after(before.created_at, policy.not_found_grace));
    // A callback's claim the API has not confirmed yet is checked again when its
    // confirmation delay ends, not at the next routine look.
    let callback_check_at = before
        .callback
        .as_ref()
        .filter(|claim| !confirms(claim, result))
        .map(|claim| after(claim.received_at, policy.confirm_after));
    // The API not showing yet what a callback claimed ("not found", or still in progress) is
    // the API lagging its own callback, not a disagreement: looked at again within seconds.
    let api_lags = match result {
        PollResult::NotFound => true,
        PollResult::Invoice(invoice) => !invoice.status.is_terminal(),
        _ => false,
    };
    let lagging_api_check_at = before
        .callback
        .as_ref()
        .filter(|claim| api_lags && claim.paid.is_some() && !confirms(claim, result))
        .and_then(|claim| lagging_api_check(claim.received_at, now, policy));
    let deadlines = [
        lifetime_check_at,
        (!is_terminal).then_some(abandon_at),
        not_found_check_at,
        callback_check_at,
        lagging_api_check_at,
        last_look_at.filter(|_| overdue),
    ];
    let cap = |next: DateTime<Utc>| {
        let earliest = deadlines
            .iter()
            .flatten()
            .filter(|&&at| at > now)
            .min()
            .copied();
        match earliest {
            Some(deadline) if deadline <= next => (deadline, true),
            _ => (next, false),
        }
    };
    let next_check = match result {
        _ if abandoned => None,
        PollResult::Invoice(_) if is_terminal => {
            // Seen twice, or told twice: an unchanged answer confirms the status, and so
            // does a callback's claim this answer agrees with (the provider's Result URL and
            // its signed API, two channels, say the same; a later change, such as a payment
            // after `incomplete`, comes with a callback of its own). With callbacks on, that
            // spares most paid and failed payments a request (docs/performance.md,
            // "Callbacks and the ladder").
            let confirmed = change.is_none()
                || before
                    .callback
                    .as_ref()
                    .is_some_and(|claim| claim.paid.is_some() && confirms(claim, result));
            (!confirmed).then(|| (after(now, policy.confirm_after), false))
        }
        // A settled payment looked at again after the maximum age (a manual recheck, a late
        // confirmation) gets that one look, whatever it brings.
        _ if now >= abandon_at => None,
        // Still unsettled at its last look: polling stops, `polling_abandoned` says so. A
        // recheck someone asks for later gets that one look too.
        _ if given_up => None,
        PollResult::Failed { .. } => {
            let exponent = before.attempts.clamp(0, 20) as u32;
            let backoff = policy
                .retry_min
                .saturating_mul(1 << exponent)
                .min(policy.retry_max);
            Some(cap(after(now, jitter.spread(backoff))))
        }
        _ => {
            let index = (before.checks.max(0) as usize).min(policy.recheck.len() - 1);
            Some(cap(after(now, policy.recheck[index])))
        }
    };

    let (next_check_at, next_check_urgent) = match next_check {
        Some((at, urgent)) => (Some(at), urgent),
        None => (None, false),
    };

    let (attempts, last_error) = match result {
        PollResult::Invoice(_) | PollResult::NotFound => (0, None),
        PollResult::Rejected { code, description } => (
            before.attempts + 1,
            Some(format!("provider error {code}: {description}")),
        ),
        PollResult::Failed { reason } => (before.attempts + 1, Some(reason.clone())),
    };
    let not_found_since = match result {
        PollResult::NotFound => Some(before.not_found_since.unwrap_or(now)),
        PollResult::Invoice(_) => None,
        _ => before.not_found_since,
    };

    Verdict {
        observed_at: now,
        answered,
        status,
        change,
        settled_at,
        provider_expiry,
        checks,
        attempts,
        last_error,
        not_found_since,
        next_check_at,
        next_check_urgent,
        deadline_missed_at,
        open,
        resolve,
    }
}

/// When to look again at a payment whose callback came at `called_back` while the API does
/// not show its outcome yet ([`CALLBACK_LAG_LADDER`]): the next step of the ladder after `now`, then
/// every [`CALLBACK_LAG_STEP`]; none once `poll.not_found_grace` has passed since the
/// callback (the usual not-found rules apply then).
fn lagging_api_check(
    called_back: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Option<DateTime<Utc>> {
    let ends = after(called_back, policy.not_found_grace);
    let next = CALLBACK_LAG_LADDER
        .iter()
        .map(|&step| after(called_back, step))
        .find(|&at| at > now)
        .unwrap_or_else(|| after(now, CALLBACK_LAG_STEP));
    (now < ends).then(|| next.min(ends))
}

/// An RFC 3339 lifetime is the absolute expiry; an integer is seconds from creation.
fn resolve_lifetime(lifetime: Lifetime, created_at: DateTime<Utc>) -> Expiry {
    match lifetime {
        Lifetime::Until(at) => Expiry {
            at,
            source: LifetimeSource::ProviderDatetime,
        },
        Lifetime::Seconds(seconds) => Expiry {
            at: TimeDelta::try_seconds(seconds)
                .and_then(|lifetime| created_at.checked_add_signed(lifetime))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            source: LifetimeSource::ProviderSeconds,
        },
    }
}

/// Whether this answer confirms everything the callback claimed: the outcome, and the amount
/// and currency where both name one.
fn confirms(claim: &CallbackClaim, result: &PollResult) -> bool {
    let PollResult::Invoice(invoice) = result else {
        return false;
    };
    let outcome = match claim.paid {
        Some(true) => invoice.status == ProviderStatus::Success,
        Some(false) => matches!(
            invoice.status,
            ProviderStatus::Error | ProviderStatus::Incomplete
        ),
        None => true,
    };
    outcome && agree(claim.amount, invoice.amount) && agree(claim.currency, invoice.currency)
}

/// Equal, or one of them unknown.
fn agree<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
    a.zip(b).is_none_or(|(a, b)| a == b)
}

/// A callback is a claim the signed poll must confirm (RESULT_URL.md). It disagrees when the
/// API gives the other outcome (paid against failed or expired), another amount or currency,
/// or, once `confirm_after` has passed since the callback, still no outcome (in progress, or
/// not known at all). Goods may have shipped on the callback: a person must look. The flag
/// clears when a later answer confirms the claim (the API was late, the callback right).
fn callback_finding(
    before: &Tracked,
    result: &PollResult,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Finding {
    let Some(claim) = &before.callback else {
        return Finding::Unknown;
    };
    let overdue = now >= after(claim.received_at, policy.confirm_after);
    let actual = match result {
        _ if confirms(claim, result) => return Finding::Clear,
        PollResult::Invoice(invoice) => {
            let contradicts = invoice.status.is_terminal()
                || claim
                    .amount
                    .zip(invoice.amount)
                    .is_some_and(|(a, b)| a != b)
                || claim
                    .currency
                    .zip(invoice.currency)
                    .is_some_and(|(a, b)| a != b);
            if !contradicts && !overdue {
                return Finding::Unknown;
            }
            let mut text = format!("API: {}", invoice.status.as_str());
            if let Some(amount) = invoice.amount {
                text.push_str(&format!(" {amount}"));
            }
            if let Some(currency) = invoice.currency {
                text.push_str(&format!(" {currency}"));
            }
            text
        }
        PollResult::NotFound if overdue => "API: no such payment".to_owned(),
        _ => return Finding::Unknown,
    };
    holds(claim.describe(), actual)
}

fn amount_finding(before: &Tracked, result: &PollResult, policy: &Policy) -> Finding {
    let PollResult::Invoice(invoice) = result else {
        return Finding::Unknown;
    };
    match (before.expected.amount, invoice.amount) {
        (None, _) => Finding::Clear,
        (Some(_), None) => Finding::Unknown,
        (Some(expected), Some(actual)) if (actual - expected).abs() > policy.amount_tolerance => {
            holds(expected, actual)
        }
        (Some(_), Some(_)) => Finding::Clear,
    }
}

fn currency_finding(before: &Tracked, result: &PollResult) -> Finding {
    let PollResult::Invoice(invoice) = result else {
        return Finding::Unknown;
    };
    match (before.expected.currency, invoice.currency) {
        (None, _) => Finding::Clear,
        (Some(_), None) => Finding::Unknown,
        (Some(expected), Some(actual)) if expected != actual => holds(expected, actual),
        (Some(_), Some(_)) => Finding::Clear,
    }
}

fn order_finding(before: &Tracked, result: &PollResult) -> Finding {
    let PollResult::Invoice(invoice) = result else {
        return Finding::Unknown;
    };
    match (&before.expected.order_id, &invoice.order_id) {
        (None, _) => Finding::Clear,
        (Some(_), None) => Finding::Unknown,
        (Some(expected), Some(actual)) if expected != actual => holds(expected, actual),
        (Some(_), Some(_)) => Finding::Clear,
    }
}

/// The deadline a payment must be paid or failed by: the earlier of the merchant's own
/// `expires_at` and the lifetime the provider stated. Either one passing unpaid is a finance
/// problem (a payment arriving after the merchant cancelled the order is a refund to make).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: DateTime<Utc>,
    /// `None`: the merchant's `expires_at`.
    pub provider: Option<LifetimeSource>,
}

impl Deadline {
    pub fn earliest(provider: Option<Expiry>, merchant: Option<DateTime<Utc>>) -> Option<Self> {
        let provider = provider.map(|e| Deadline {
            at: e.at,
            provider: Some(e.source),
        });
        let merchant = merchant.map(|at| Deadline { at, provider: None });
        match (provider, merchant) {
            (Some(p), Some(m)) => Some(if m.at < p.at { m } else { p }),
            (p, m) => p.or(m),
        }
    }

    /// Which deadline, in words, as the flag and the views say it.
    pub fn describe(self) -> String {
        let whose = match self.provider {
            None => "the merchant's expires_at",
            Some(LifetimeSource::ProviderDatetime) => "the provider's lifetime",
            Some(LifetimeSource::ProviderSeconds) => {
                "the provider's lifetime, counted from created_at"
            }
        };
        format!("settled by {} ({whose})", self.at.to_rfc3339())
    }
}

/// The deadline plus grace passed without `success` or `error`. `incomplete` always counts:
/// it is the provider saying the time ran out, whatever lifetime was stated.
///
/// A `success` on a payment already seen unpaid past its deadline neither raises nor clears
/// it: that late payment is [`paid_after_deadline_finding`]'s. `error` clears it: no money
/// moved.
fn lifetime_finding(
    status: Option<&ProviderStatus>,
    missed_before: Option<DateTime<Utc>>,
    deadline: Option<Deadline>,
    check_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Finding {
    match status {
        Some(ProviderStatus::Success) if missed_before.is_some() => return Finding::Unknown,
        Some(status) if status.is_paid_or_failed() => return Finding::Clear,
        _ => {}
    }
    let shown = status.map_or("no answer", ProviderStatus::as_str);
    let missed = Finding::Holds {
        expected: deadline.map(Deadline::describe),
        actual: Some(shown.to_owned()),
    };
    if status == Some(&ProviderStatus::Incomplete) {
        return missed;
    }
    match check_at {
        Some(check_at) if now >= check_at => missed,
        _ => Finding::Clear,
    }
}

/// A `success` on a payment that was seen unpaid past its deadline: money arrived late
/// (against an order the merchant may have cancelled: a refund to make). A person settles
/// it; no later answer clears it. A payment first seen paid after its deadline is not late:
/// it may have been paid in time, and nobody saw otherwise.
fn paid_after_deadline_finding(
    status: Option<&ProviderStatus>,
    missed_at: Option<DateTime<Utc>>,
    deadline: Option<Deadline>,
    settled_at: Option<DateTime<Utc>>,
) -> Finding {
    match (status, missed_at) {
        (Some(ProviderStatus::Success), Some(missed_at)) => Finding::Holds {
            expected: Some(deadline.map_or_else(
                || {
                    format!(
                        "paid before it was seen unpaid at {}",
                        missed_at.to_rfc3339()
                    )
                },
                Deadline::describe,
            )),
            actual: Some(match settled_at {
                Some(at) => format!("success, first seen {}", at.to_rfc3339()),
                None => "success".to_owned(),
            }),
        },
        _ => Finding::Unknown,
    }
}

fn not_found_finding(
    before: &Tracked,
    result: &PollResult,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Finding {
    match result {
        PollResult::Invoice(_) => Finding::Clear,
        PollResult::NotFound if now >= after(before.created_at, policy.not_found_grace) => {
            Finding::Holds {
                expected: None,
                actual: Some(format!(
                    "not found since {}",
                    before.not_found_since.unwrap_or(now).to_rfc3339()
                )),
            }
        }
        _ => Finding::Unknown,
    }
}

fn unknown_status_finding(result: &PollResult) -> Finding {
    match result {
        PollResult::Invoice(invoice) => match &invoice.status {
            ProviderStatus::Other(raw) => Finding::Holds {
                expected: None,
                actual: Some(raw.clone()),
            },
            _ => Finding::Clear,
        },
        _ => Finding::Unknown,
    }
}

/// A terminal status that later changes needs a person: the flag is never cleared by the
/// daemon, only by hand.
fn terminal_change_finding(change: Option<&StatusChange>) -> Finding {
    match change {
        Some(StatusChange {
            from: Some(from),
            to,
        }) if from.is_terminal() => holds(from, to),
        _ => Finding::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeZone;

    use super::*;
    use crate::domain::types::{ClosedFlag, Currency, ExpectedValues, FlagClass, PaymentId};

    fn dec(exact: &str) -> Decimal {
        exact.parse().unwrap()
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 7, 11, 10, 0, 0).unwrap()
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        t0() + TimeDelta::minutes(minutes)
    }

    fn tracked() -> Tracked {
        Tracked::new(PaymentId::parse("1001").unwrap(), t0())
    }

    fn invoice(status: &str) -> Invoice {
        Invoice {
            status: ProviderStatus::parse(status),
            amount: Some(dec("5000")),
            currency: Some("KZT".parse().unwrap()),
            fee: Some(dec("0")),
            discount: None,
            freedom_id: None,
            order_id: Some("A-1".into()),
            merchant_id: None,
            merchant_name: None,
            description: None,
            lifetime: None,
            facilitator_iban: None,
            mcc: None,
            dt: None,
        }
    }

    fn decide_at(before: &Tracked, result: PollResult, minutes: i64) -> Verdict {
        decide(
            before,
            &result,
            at(minutes),
            &Policy::default(),
            Jitter::NONE,
        )
    }

    /// The state the shell would store after `verdict`: what the next poll starts from.
    fn apply(before: &Tracked, verdict: &Verdict) -> Tracked {
        let mut next = before.clone();
        next.apply(verdict);
        next
    }

    fn opened(verdict: &Verdict) -> Vec<FlagKind> {
        verdict.open.iter().map(|f| f.kind).collect()
    }

    fn resolved(verdict: &Verdict) -> Vec<FlagKind> {
        verdict.resolve.iter().map(|(kind, _)| *kind).collect()
    }

    /// The resolver of `kind`, if the verdict closes it.
    fn resolver(verdict: &Verdict, kind: FlagKind) -> Option<Resolver> {
        verdict
            .resolve
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, r)| *r)
    }

    fn keep_flags_open() -> Policy {
        Policy {
            auto_close: vec![],
            ..Policy::default()
        }
    }

    #[test]
    fn first_answer_is_a_transition_from_nothing() {
        let v = decide_at(
            &tracked(),
            PollResult::Invoice(Box::new(invoice("process"))),
            1,
        );
        assert_eq!(
            v.change,
            Some(StatusChange {
                from: None,
                to: ProviderStatus::Process
            })
        );
        assert_eq!(v.checks, 1);
        assert_eq!(v.settled_at, None);
        assert_eq!(v.next_check_at, Some(at(1) + TimeDelta::seconds(30)));
        assert!(v.open.is_empty() && v.resolve.is_empty());
    }

    #[test]
    fn the_same_status_again_is_not_a_transition_and_rechecks_follow_the_schedule() {
        let mut state = tracked();
        let mut nexts = Vec::new();
        for minute in 0..7 {
            let v = decide_at(
                &state,
                PollResult::Invoice(Box::new(invoice("process"))),
                minute,
            );
            assert_eq!(v.change.is_some(), minute == 0);
            nexts.push(v.next_check_at.unwrap() - at(minute));
            state = apply(&state, &v);
        }
        let expected: Vec<_> = [30, 60, 300, 900, 3600, 3600, 3600]
            .into_iter()
            .map(TimeDelta::seconds)
            .collect();
        assert_eq!(nexts, expected);
    }

    /// A payment polled once (`process` at minute 0) that a callback, received at minute 1,
    /// says was paid 5000 KZT (or failed).
    fn with_callback(paid: bool) -> Tracked {
        let mut state = apply(
            &tracked(),
            &decide_at(
                &tracked(),
                PollResult::Invoice(Box::new(invoice("process"))),
                0,
            ),
        );
        state.callback = Some(CallbackClaim {
            id: 7,
            received_at: at(1),
            paid: Some(paid),
            amount: Some(dec("5000")),
            currency: Some("KZT".parse().unwrap()),
            after_last_transition: true,
        });
        state
    }

    fn disagreement(verdict: &Verdict) -> Option<(String, String)> {
        verdict
            .open
            .iter()
            .find(|f| f.kind == FlagKind::CallbackDisagrees)
            .map(|f| (f.expected.clone().unwrap(), f.actual.clone().unwrap()))
    }

    #[test]
    fn a_callback_the_api_contradicts_opens_callback_disagrees_at_once() {
        let v = decide_at(
            &with_callback(true),
            PollResult::Invoice(Box::new(invoice("error"))),
            2,
        );
        assert_eq!(
            disagreement(&v),
            Some((
                "callback #7: paid 5000 KZT".to_owned(),
                "API: error 5000 KZT".to_owned()
            ))
        );
        let v = decide_at(
            &with_callback(false),
            PollResult::Invoice(Box::new(invoice("success"))),
            2,
        );
        assert_eq!(
            disagreement(&v).map(|(e, _)| e),
            Some("callback #7: failed 5000 KZT".to_owned())
        );
        let mut short = invoice("success");
        short.amount = Some(dec("4000"));
        let v = decide_at(
            &with_callback(true),
            PollResult::Invoice(Box::new(short)),
            2,
        );
        assert_eq!(
            disagreement(&v).map(|(_, a)| a),
            Some("API: success 4000 KZT".to_owned())
        );
    }

    #[test]
    fn a_paid_callback_the_api_has_not_confirmed_is_checked_at_its_confirmation_delay() {
        let state = with_callback(true);
        // Minute 2: still in progress, within the 30 minutes the API may lag: no flag yet,
        // and the next look is no later than minute 31.
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 2);
        assert_eq!(disagreement(&v), None);
        assert!(v.next_check_at.unwrap() <= at(31), "{:?}", v.next_check_at);
        // Minute 31: still in progress: the callback claimed what the API does not show.
        let state = apply(&state, &v);
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("process"))),
            31,
        );
        assert_eq!(
            disagreement(&v),
            Some((
                "callback #7: paid 5000 KZT".to_owned(),
                "API: process 5000 KZT".to_owned()
            ))
        );
        let v = decide_at(&state, PollResult::NotFound, 31);
        assert_eq!(
            disagreement(&v).map(|(_, a)| a),
            Some("API: no such payment".to_owned())
        );
    }

    #[test]
    fn a_confirmed_callback_flags_nothing_and_clears_an_earlier_disagreement() {
        let state = with_callback(true);
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("success"))), 2);
        assert_eq!(disagreement(&v), None);
        assert!(!resolved(&v).contains(&FlagKind::CallbackDisagrees));

        let mut late = state.clone();
        late.open_flags.insert(FlagKind::CallbackDisagrees);
        let v = decide_at(&late, PollResult::Invoice(Box::new(invoice("success"))), 40);
        assert_eq!(
            resolver(&v, FlagKind::CallbackDisagrees),
            Some(Resolver::Cleared),
            "the API was late, the callback right"
        );
        // Without a callback, nothing is said either way.
        let v = decide_at(
            &tracked(),
            PollResult::Invoice(Box::new(invoice("error"))),
            2,
        );
        assert_eq!(disagreement(&v), None);
    }

    #[test]
    fn a_status_the_callback_claimed_needs_no_confirmation_recheck() {
        // Paid, said the callback at minute 1; success, says the API at minute 2: told twice,
        // by two channels, so polling stops.
        let v = decide_at(
            &with_callback(true),
            PollResult::Invoice(Box::new(invoice("success"))),
            2,
        );
        assert_eq!(v.change.as_ref().unwrap().to, ProviderStatus::Success);
        assert_eq!(v.next_check_at, None);
        let v = decide_at(
            &with_callback(false),
            PollResult::Invoice(Box::new(invoice("error"))),
            2,
        );
        assert_eq!(v.next_check_at, None);
        // A claim the answer contradicts confirms nothing: the re-check stays, as it does
        // for a claim nobody can read.
        let v = decide_at(
            &with_callback(false),
            PollResult::Invoice(Box::new(invoice("success"))),
            2,
        );
        assert_eq!(v.next_check_at, Some(at(32)));
        let mut unreadable = with_callback(true);
        unreadable.callback.as_mut().unwrap().paid = None;
        let v = decide_at(
            &unreadable,
            PollResult::Invoice(Box::new(invoice("success"))),
            2,
        );
        assert_eq!(v.next_check_at, Some(at(32)));
    }

    #[test]
    fn the_callback_lag_counts_from_a_callback_to_the_transition_it_announced_only() {
        let minutes = |m: u64| Some(Duration::from_secs(60 * m));
        let paid = || PollResult::Invoice(Box::new(invoice("success")));
        let process = || PollResult::Invoice(Box::new(invoice("process")));
        // Received at minute 1, the API shows it at minute 2 (the poll it asked for) or,
        // lagging behind the callback, only at minute 31 (its confirmation look).
        let state = with_callback(true);
        let v = decide_at(&state, paid(), 2);
        assert_eq!(callback_lag(&state, &v), minutes(1));
        let still = decide_at(&state, process(), 2);
        assert_eq!(callback_lag(&state, &still), None, "no transition");
        let later = apply(&state, &still);
        let v = decide_at(&later, paid(), 31);
        assert_eq!(callback_lag(&later, &v), minutes(30));

        // Once a transition answered it, the callback explains no later one.
        let settled = apply(&later, &v);
        assert!(!settled.callback.as_ref().unwrap().after_last_transition);
        let refunded = decide_at(
            &settled,
            PollResult::Invoice(Box::new(invoice("refunded"))),
            90,
        );
        assert!(refunded.change.is_some());
        assert_eq!(callback_lag(&settled, &refunded), None);
        // Nor does one that arrived before the latest transition (as the claim reads it), and
        // a transition without a callback has no lag.
        let mut stale = with_callback(true);
        stale.callback.as_mut().unwrap().after_last_transition = false;
        assert_eq!(callback_lag(&stale, &decide_at(&stale, paid(), 2)), None);
        let none = apply(&tracked(), &decide_at(&tracked(), process(), 0));
        assert_eq!(callback_lag(&none, &decide_at(&none, paid(), 2)), None);
    }

    #[test]
    fn a_terminal_status_gets_one_confirmation_recheck_then_polling_stops() {
        let state = apply(
            &tracked(),
            &decide_at(
                &tracked(),
                PollResult::Invoice(Box::new(invoice("process"))),
                0,
            ),
        );
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("success"))), 5);
        assert_eq!(v.change.as_ref().unwrap().to, ProviderStatus::Success);
        assert_eq!(v.settled_at, Some(at(5)));
        assert_eq!(v.next_check_at, Some(at(35)));

        let state = apply(&state, &v);
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("success"))),
            35,
        );
        assert_eq!(v.change, None);
        assert_eq!(v.next_check_at, None, "confirmed terminal stops polling");
        assert_eq!(v.settled_at, Some(at(5)), "settled time is kept");
        assert!(v.open.is_empty());
    }

    #[test]
    fn error_is_terminal_and_failed_is_not_a_lifetime_problem() {
        let mut state = tracked();
        state.merchant_expires_at = Some(at(10));
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("error"))), 600);
        assert_eq!(v.change.as_ref().unwrap().to, ProviderStatus::Error);
        assert!(opened(&v).is_empty());
        assert_eq!(v.next_check_at, Some(at(630)));
    }

    #[test]
    fn a_terminal_status_that_changes_is_a_transition_and_a_flag_and_is_confirmed_again() {
        let mut state = tracked();
        state.status = Some(ProviderStatus::Incomplete);
        state.checks = 3;
        state.settled_at = Some(at(1));
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("success"))),
            30,
        );
        assert_eq!(
            v.change,
            Some(StatusChange {
                from: Some(ProviderStatus::Incomplete),
                to: ProviderStatus::Success
            })
        );
        assert_eq!(v.settled_at, Some(at(30)));
        assert_eq!(v.open.len(), 1);
        assert_eq!(v.open[0].kind, FlagKind::TerminalStatusChanged);
        assert_eq!(v.open[0].expected.as_deref(), Some("incomplete"));
        assert_eq!(v.open[0].actual.as_deref(), Some("success"));
        assert_eq!(v.next_check_at, Some(at(60)));

        // A later answer never clears it: a person must look.
        let state = apply(&state, &v);
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("success"))),
            60,
        );
        assert!(v.resolve.is_empty());
        assert_eq!(v.next_check_at, None);
    }

    #[test]
    fn amount_mismatch_respects_tolerance_and_clears_when_amounts_agree() {
        let mut state = tracked();
        state.expected.amount = Some(dec("5000.00"));
        let mut paid_less = invoice("success");
        paid_less.amount = Some(dec("4999.99"));
        let v = decide_at(&state, PollResult::Invoice(Box::new(paid_less.clone())), 1);
        assert_eq!(opened(&v), vec![FlagKind::AmountMismatch]);
        assert_eq!(v.open[0].expected.as_deref(), Some("5000.00"));
        assert_eq!(v.open[0].actual.as_deref(), Some("4999.99"));

        let lenient = Policy {
            amount_tolerance: dec("0.01"),
            ..Policy::default()
        };
        let v2 = decide(
            &state,
            &PollResult::Invoice(Box::new(paid_less)),
            at(1),
            &lenient,
            Jitter::NONE,
        );
        assert!(v2.open.is_empty(), "within tolerance");

        let state = apply(&state, &v);
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("success"))),
            31,
        );
        assert_eq!(resolved(&v), vec![FlagKind::AmountMismatch]);
    }

    #[test]
    fn nothing_is_compared_when_the_merchant_gave_nothing() {
        let mut other = invoice("success");
        other.amount = Some(dec("1"));
        other.currency = Some("USD".parse().unwrap());
        other.order_id = Some("zzz".into());
        let v = decide_at(&tracked(), PollResult::Invoice(Box::new(other)), 1);
        assert!(v.open.is_empty());
    }

    #[test]
    fn currency_and_order_mismatches_are_flagged_and_cleared() {
        let mut state = tracked();
        state.expected = ExpectedValues {
            amount: None,
            currency: Some("USD".parse::<Currency>().unwrap()),
            order_id: Some("B-2".into()),
        };
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 1);
        assert_eq!(
            opened(&v),
            vec![FlagKind::CurrencyMismatch, FlagKind::OrderMismatch]
        );
        let state = apply(&state, &v);
        let mut fixed = invoice("process");
        fixed.currency = Some("USD".parse().unwrap());
        fixed.order_id = Some("B-2".into());
        let v = decide_at(&state, PollResult::Invoice(Box::new(fixed)), 2);
        assert_eq!(
            resolved(&v),
            vec![FlagKind::CurrencyMismatch, FlagKind::OrderMismatch]
        );
    }

    #[test]
    fn a_missing_provider_value_neither_raises_nor_clears() {
        let mut state = tracked();
        state.expected.amount = Some(dec("10"));
        state.open_flags = BTreeSet::from([FlagKind::AmountMismatch]);
        let mut no_amount = invoice("process");
        no_amount.amount = None;
        let v = decide_at(&state, PollResult::Invoice(Box::new(no_amount)), 1);
        assert!(v.open.is_empty() && v.resolve.is_empty());
    }

    #[test]
    fn lifetime_in_seconds_counts_from_creation_and_caps_the_next_check() {
        let mut lived = invoice("process");
        lived.lifetime = Some(Lifetime::Seconds(1800));
        let mut state = tracked();
        state.checks = 4; // the schedule is at one hour by now
        let v = decide_at(&state, PollResult::Invoice(Box::new(lived.clone())), 20);
        assert_eq!(
            v.provider_expiry,
            Some(Expiry {
                at: at(30),
                source: LifetimeSource::ProviderSeconds
            })
        );
        // expiry 10:30 + 15 min grace: never scheduled past the lifetime check
        assert_eq!(v.next_check_at, Some(at(45)));
        assert!(v.open.is_empty());

        let state = apply(&state, &v);
        let v = decide_at(&state, PollResult::Invoice(Box::new(lived)), 45);
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
        assert_eq!(
            v.next_check_at,
            Some(at(105)),
            "past the check, the schedule resumes (until the last look, 10:30 + 2 h)"
        );
    }

    #[test]
    fn lifetime_exceeded_covers_waiting_and_incomplete_and_a_late_payment_is_its_own_flag() {
        let mut lived = invoice("waiting");
        lived.lifetime = Some(Lifetime::Until(at(60)));
        let v = decide_at(&tracked(), PollResult::Invoice(Box::new(lived.clone())), 80);
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
        assert_eq!(v.deadline_missed_at, Some(at(80)));
        assert_eq!(
            v.provider_expiry.unwrap().source,
            LifetimeSource::ProviderDatetime
        );

        lived.status = ProviderStatus::Incomplete;
        let v = decide_at(&tracked(), PollResult::Invoice(Box::new(lived.clone())), 80);
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);

        // Paid after the provider said the time ran out: late, for a person to settle.
        let state = apply(&tracked(), &v);
        assert_eq!(state.deadline_missed_at, Some(at(80)));
        lived.status = ProviderStatus::Success;
        let v = decide_at(&state, PollResult::Invoice(Box::new(lived)), 100);
        assert_eq!(
            opened(&v),
            vec![FlagKind::TerminalStatusChanged, FlagKind::PaidAfterDeadline]
        );
        assert_eq!(
            v.deadline_missed_at,
            Some(at(80)),
            "the miss stays on record"
        );
        let late = &v.open[1];
        assert_eq!(
            late.expected.as_deref(),
            Some("settled by 2025-07-11T11:00:00+00:00 (the provider's lifetime)")
        );
        assert_eq!(
            late.actual.as_deref(),
            Some("success, first seen 2025-07-11T11:40:00+00:00")
        );
        assert!(
            v.open.iter().all(|f| f.kind.class() == FlagClass::Action),
            "both need a person"
        );
    }

    #[test]
    fn an_expired_unpaid_payment_is_an_outcome_closed_by_its_rule_as_the_flag_opens() {
        let mut state = tracked();
        state.merchant_expires_at = Some(at(10));
        for status in ["process", "waiting", "incomplete"] {
            let v = decide_at(&state, PollResult::Invoice(Box::new(invoice(status))), 25);
            assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded], "{status}");
            assert_eq!(
                resolver(&v, FlagKind::LifetimeExceeded),
                Some(Resolver::Rule(AutoClose::ExpiredUnpaid)),
                "{status}"
            );
            assert_eq!(FlagKind::LifetimeExceeded.class(), FlagClass::Info);

            // `flags.auto_close = []`: the flag stays open for a person.
            let v = decide(
                &state,
                &PollResult::Invoice(Box::new(invoice(status))),
                at(25),
                &keep_flags_open(),
                Jitter::NONE,
            );
            assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
            assert!(v.resolve.is_empty(), "{status}");
        }

        // Closed by the rule, it is not raised again while the deadline is the same, whatever
        // status follows; its story goes on in deadline_missed_at.
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("process"))),
            25,
        );
        let state = apply(&state, &v);
        assert!(state.open_flags.is_empty());
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("incomplete"))),
            30,
        );
        assert!(v.open.is_empty() && v.resolve.is_empty(), "{v:?}");
        assert_eq!(v.deadline_missed_at, Some(at(25)));
        // A new deadline, passed too, is a new flag (closed by the same rule).
        let mut later = invoice("incomplete");
        later.lifetime = Some(Lifetime::Until(at(5)));
        let v = decide_at(&state, PollResult::Invoice(Box::new(later)), 31);
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
        assert_eq!(resolved(&v), vec![FlagKind::LifetimeExceeded]);

        // A lifetime flag left open (before the rule existed) closes by it at the next poll.
        let mut open = tracked();
        open.merchant_expires_at = Some(at(10));
        open.status = Some(ProviderStatus::Process);
        open.deadline_missed_at = Some(at(25));
        open.open_flags = BTreeSet::from([FlagKind::LifetimeExceeded]);
        let v = decide_at(&open, PollResult::Invoice(Box::new(invoice("process"))), 40);
        assert_eq!(
            resolver(&v, FlagKind::LifetimeExceeded),
            Some(Resolver::Rule(AutoClose::ExpiredUnpaid))
        );
    }

    #[test]
    fn a_flag_a_person_closed_reopens_only_when_what_it_is_about_changes() {
        let mut state = tracked();
        state.expected.amount = Some(dec("6000"));
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("success"))), 1);
        assert_eq!(opened(&v), vec![FlagKind::AmountMismatch]);
        // A person closes it (the rest was paid in cash): the claim then reads it as closed.
        let mut state = apply(&state, &v);
        state.open_flags.clear();
        state.closed_flags.insert(
            FlagKind::AmountMismatch,
            ClosedFlag {
                expected: Some("6000".into()),
                actual: Some("5000".into()),
            },
        );
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("success"))),
            90,
        );
        assert!(v.open.is_empty(), "a recheck with the same values: {v:?}");

        let mut changed = invoice("success");
        changed.amount = Some(dec("4000"));
        let v = decide_at(&state, PollResult::Invoice(Box::new(changed)), 91);
        assert_eq!(opened(&v), vec![FlagKind::AmountMismatch]);
        assert_eq!(v.open[0].actual.as_deref(), Some("4000"));
    }

    #[test]
    fn a_late_payment_supersedes_a_lifetime_flag_left_open() {
        let mut state = tracked();
        state.merchant_expires_at = Some(at(10));
        let policy = keep_flags_open();
        let v = decide(
            &state,
            &PollResult::Invoice(Box::new(invoice("process"))),
            at(25),
            &policy,
            Jitter::NONE,
        );
        let state = apply(&state, &v);
        assert!(state.open_flags.contains(&FlagKind::LifetimeExceeded));
        let v = decide(
            &state,
            &PollResult::Invoice(Box::new(invoice("success"))),
            at(40),
            &policy,
            Jitter::NONE,
        );
        assert_eq!(opened(&v), vec![FlagKind::PaidAfterDeadline]);
        assert_eq!(
            resolver(&v, FlagKind::LifetimeExceeded),
            Some(Resolver::Superseded)
        );
    }

    #[test]
    fn incomplete_without_a_known_expiry_is_a_lifetime_flag() {
        let v = decide_at(
            &tracked(),
            PollResult::Invoice(Box::new(invoice("incomplete"))),
            1,
        );
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
    }

    #[test]
    fn the_earlier_of_the_merchant_expiry_and_the_provider_lifetime_counts() {
        // The merchant cancels at 10:10; the provider's lifetime runs to 11:00.
        let mut state = tracked();
        state.merchant_expires_at = Some(at(10));
        let mut lived = invoice("process");
        lived.lifetime = Some(Lifetime::Until(at(60)));
        state.checks = 4;
        let v = decide_at(&state, PollResult::Invoice(Box::new(lived.clone())), 5);
        assert_eq!(
            v.next_check_at,
            Some(at(25)),
            "checked at the earlier deadline"
        );
        let v = decide_at(&state, PollResult::Invoice(Box::new(lived.clone())), 25);
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
        assert_eq!(
            v.open[0].expected.as_deref(),
            Some("settled by 2025-07-11T10:10:00+00:00 (the merchant's expires_at)")
        );
        assert_eq!(v.open[0].actual.as_deref(), Some("process"));

        // The provider's lifetime is earlier: it counts, and says so.
        lived.lifetime = Some(Lifetime::Seconds(300));
        state.merchant_expires_at = Some(at(60));
        let v = decide_at(&state, PollResult::Invoice(Box::new(lived)), 25);
        assert_eq!(
            v.open[0].expected.as_deref(),
            Some(
                "settled by 2025-07-11T10:05:00+00:00 (the provider's lifetime, counted from created_at)"
            )
        );
    }

    #[test]
    fn a_payment_seen_unpaid_past_its_deadline_is_flagged_again_when_it_is_paid_late() {
        let mut state = tracked();
        state.merchant_expires_at = Some(at(10));
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("process"))),
            25,
        );
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
        let state = apply(&state, &v);
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("success"))),
            40,
        );
        assert_eq!(
            opened(&v),
            vec![FlagKind::PaidAfterDeadline],
            "paid late: a person settles it"
        );
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("error"))), 40);
        assert!(v.open.is_empty(), "no money moved");
        assert_eq!(v.deadline_missed_at, Some(at(25)));

        // Paid by the first look past the deadline: nothing shows it was late.
        let mut fresh = tracked();
        fresh.merchant_expires_at = Some(at(10));
        let v = decide_at(
            &fresh,
            PollResult::Invoice(Box::new(invoice("success"))),
            25,
        );
        assert!(v.open.is_empty());
    }

    #[test]
    fn on_a_tie_the_provider_lifetime_is_named_as_the_view_names_it() {
        let mut state = tracked();
        state.merchant_expires_at = Some(at(10));
        let mut lived = invoice("process");
        lived.lifetime = Some(Lifetime::Until(at(10)));
        let v = decide_at(&state, PollResult::Invoice(Box::new(lived)), 30);
        assert!(
            v.open[0]
                .expected
                .as_deref()
                .unwrap()
                .ends_with("(the provider's lifetime)"),
            "{:?}",
            v.open
        );
    }

    #[test]
    fn incomplete_is_a_lifetime_flag_even_before_the_stated_lifetime() {
        let mut lived = invoice("incomplete");
        lived.lifetime = Some(Lifetime::Until(at(600)));
        let v = decide_at(&tracked(), PollResult::Invoice(Box::new(lived)), 1);
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
        assert_eq!(
            v.open[0].expected.as_deref(),
            Some("settled by 2025-07-11T20:00:00+00:00 (the provider's lifetime)")
        );
        assert_eq!(v.open[0].actual.as_deref(), Some("incomplete"));
    }

    #[test]
    fn the_merchant_expiry_applies_until_the_provider_states_a_lifetime() {
        let mut state = tracked();
        state.merchant_expires_at = Some(at(10));
        let v = decide_at(&state, PollResult::NotFound, 3);
        assert_eq!(v.next_check_at, Some(at(3) + TimeDelta::seconds(30)));
        state.checks = 4;
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 5);
        assert_eq!(v.next_check_at, Some(at(25)), "capped at expiry + grace");
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("process"))),
            25,
        );
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
    }

    #[test]
    fn deadline_checks_are_marked_urgent_and_routine_ones_are_not() {
        let mut state = tracked();
        state.merchant_expires_at = Some(at(10));
        state.checks = 4;
        let capped = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 5);
        assert_eq!(capped.next_check_at, Some(at(25)));
        assert!(capped.next_check_urgent, "the lifetime check");
        let routine = decide_at(
            &tracked(),
            PollResult::Invoice(Box::new(invoice("process"))),
            1,
        );
        assert_eq!(routine.next_check_at, Some(at(1) + TimeDelta::seconds(30)));
        assert!(!routine.next_check_urgent);
        // Not found near the end of its grace: checked exactly when the grace ends.
        let mut unknown = tracked();
        unknown.checks = 4;
        let v = decide_at(&unknown, PollResult::NotFound, 5);
        assert_eq!(v.next_check_at, Some(at(10)));
        assert!(v.next_check_urgent, "the end of the not-found grace");
        let confirm = decide_at(
            &tracked(),
            PollResult::Invoice(Box::new(invoice("success"))),
            1,
        );
        assert!(!confirm.next_check_urgent, "a confirmation is routine");
    }

    #[test]
    fn not_found_is_normal_at_first_and_flagged_after_the_grace_period() {
        let v = decide_at(&tracked(), PollResult::NotFound, 1);
        assert!(v.open.is_empty());
        assert_eq!(v.not_found_since, Some(at(1)));
        assert_eq!(v.change, None);
        assert_eq!(v.checks, 1);

        let state = apply(&tracked(), &v);
        let v = decide_at(&state, PollResult::NotFound, 11);
        assert_eq!(opened(&v), vec![FlagKind::NotFound]);
        assert_eq!(v.not_found_since, Some(at(1)), "the first sighting is kept");

        let state = apply(&state, &v);
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("process"))),
            12,
        );
        assert_eq!(resolved(&v), vec![FlagKind::NotFound]);
        assert_eq!(v.not_found_since, None);
    }

    /// Issue 23, item 3: a callback came while the API still says "not found" (it lags its
    /// own callback in a payment's first seconds). The payment is looked at again on a short
    /// ladder from the callback, then every minute, not when the grace from its creation
    /// ends; once that grace from the callback is over, the usual rules apply.
    #[test]
    fn after_a_callback_not_found_is_looked_at_again_within_seconds_then_every_minute() {
        let called_back = t0() + TimeDelta::seconds(3);
        // A payment not polled yet whose callback, received then, says it was paid.
        let called_back_paid = || {
            let mut state = tracked();
            state.callback = Some(CallbackClaim {
                id: 7,
                received_at: called_back,
                paid: Some(true),
                amount: None,
                currency: None,
                after_last_transition: true,
            });
            state
        };
        let mut state = called_back_paid();
        let policy = Policy::default();
        let mut now = called_back + TimeDelta::milliseconds(50);
        let mut looks = Vec::new();
        while now < called_back + TimeDelta::minutes(12) {
            let v = decide(&state, &PollResult::NotFound, now, &policy, Jitter::NONE);
            let Some(next) = v.next_check_at else { break };
            looks.push(((next - called_back).num_milliseconds(), v.next_check_urgent));
            state = apply(&state, &v);
            now = next + TimeDelta::milliseconds(50);
        }
        let (steps, urgent): (Vec<i64>, Vec<bool>) = looks.iter().copied().unzip();
        assert_eq!(
            &steps[..6],
            [2_000, 5_000, 15_000, 30_000, 90_050, 150_100],
            "seconds, then every minute: {looks:?}"
        );
        assert!(
            urgent[..6].iter().all(|&u| u),
            "deadline checks, never taken late"
        );
        // Never more than a minute apart until the grace (10 min) from the callback is over.
        let ladder: Vec<i64> = steps.iter().copied().filter(|&s| s <= 600_000).collect();
        assert!(
            ladder.windows(2).all(|w| w[1] - w[0] <= 60_100),
            "{steps:?}"
        );
        assert_eq!(ladder.last(), Some(&600_000), "{steps:?}");
        // After it, the callback's own confirmation check (30 min), not another minute.
        assert_eq!(steps[ladder.len()], 1_800_000, "{steps:?}");

        // Without a callback, "not found" waits for the grace from creation, as before.
        let v = decide(
            &tracked(),
            &PollResult::NotFound,
            t0() + TimeDelta::seconds(3),
            &policy,
            Jitter::NONE,
        );
        assert_eq!(v.next_check_at, Some(t0() + TimeDelta::seconds(33)));

        // Still in progress after a callback that says paid: the API lags it the same way.
        let mut state = called_back_paid();
        let in_progress = PollResult::Invoice(Box::new(invoice("process")));
        let v = decide(
            &state,
            &in_progress,
            called_back + TimeDelta::milliseconds(50),
            &policy,
            Jitter::NONE,
        );
        assert_eq!(v.next_check_at, Some(called_back + TimeDelta::seconds(2)));
        assert!(v.next_check_urgent);
        // A callback with no readable outcome claims nothing to wait for.
        state.callback.as_mut().unwrap().paid = None;
        let v = decide(
            &state,
            &in_progress,
            called_back + TimeDelta::milliseconds(50),
            &policy,
            Jitter::NONE,
        );
        assert_eq!(
            v.next_check_at,
            Some(called_back + TimeDelta::milliseconds(50) + TimeDelta::seconds(30)),
            "the schedule's first recheck"
        );
    }

    #[test]
    fn an_unknown_status_is_kept_non_terminal_and_flagged_until_known() {
        let v = decide_at(
            &tracked(),
            PollResult::Invoice(Box::new(invoice("refunded"))),
            1,
        );
        assert_eq!(v.status, Some(ProviderStatus::Other("refunded".into())));
        assert_eq!(opened(&v), vec![FlagKind::UnknownStatus]);
        assert_eq!(v.open[0].actual.as_deref(), Some("refunded"));
        assert!(v.next_check_at.is_some());
        let state = apply(&tracked(), &v);
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("success"))), 2);
        assert_eq!(resolved(&v), vec![FlagKind::UnknownStatus]);
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_and_keep_state() {
        let mut state = tracked();
        state.status = Some(ProviderStatus::Process);
        state.checks = 2;
        let failed = || PollResult::Failed {
            reason: "timeout".into(),
        };
        let mut delays = Vec::new();
        for _ in 0..8 {
            let v = decide(&state, &failed(), at(0), &Policy::default(), Jitter::NONE);
            assert_eq!(v.change, None);
            assert!(!v.answered);
            assert_eq!(v.checks, 2);
            assert_eq!(v.last_error.as_deref(), Some("timeout"));
            delays.push((v.next_check_at.unwrap() - at(0)).num_seconds());
            state = apply(&state, &v);
        }
        assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(state.attempts, 8);

        let v = decide(
            &state,
            &failed(),
            at(0),
            &Policy::default(),
            Jitter::from_permille(0),
        );
        assert_eq!((v.next_check_at.unwrap() - at(0)).num_seconds(), 150);

        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 0);
        assert_eq!((v.attempts, v.last_error), (0, None));
    }

    #[test]
    fn other_provider_errors_are_recorded_and_rechecked_on_schedule() {
        let v = decide_at(
            &tracked(),
            PollResult::Rejected {
                code: "500".into(),
                description: "Internal".into(),
            },
            1,
        );
        assert!(v.answered);
        assert_eq!(
            v.last_error.as_deref(),
            Some("provider error 500: Internal")
        );
        assert_eq!(v.next_check_at, Some(at(1) + TimeDelta::seconds(30)));
        assert!(v.open.is_empty());
    }

    #[test]
    fn polling_is_abandoned_after_the_maximum_age_and_resumed_flags_clear_on_terminal() {
        let mut state = tracked();
        state.status = Some(ProviderStatus::Process);
        state.checks = 30;
        let week = 7 * 24 * 60;
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("process"))),
            week - 30,
        );
        assert_eq!(
            v.next_check_at,
            Some(at(week)),
            "never past the abandon time"
        );

        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("process"))),
            week,
        );
        assert_eq!(v.next_check_at, None);
        assert_eq!(opened(&v), vec![FlagKind::PollingAbandoned]);

        let failing = decide_at(
            &state,
            PollResult::Failed {
                reason: "connection refused".into(),
            },
            week + 1,
        );
        assert_eq!(failing.next_check_at, None);

        let state = apply(&state, &v);
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("success"))),
            week + 60,
        );
        assert_eq!(resolved(&v), vec![FlagKind::PollingAbandoned]);
    }

    #[test]
    fn an_unsettled_payment_gets_one_last_look_when_the_callback_retries_end_then_none() {
        // Deadline 10:10; its check at 10:25 finds it still in `process`, on a schedule whose
        // last step is a day (as the default one).
        let mut state = tracked();
        state.merchant_expires_at = Some(at(10));
        state.status = Some(ProviderStatus::Process);
        state.checks = 4;
        let daily = Policy {
            recheck: vec![Duration::from_secs(60), Duration::from_secs(86_400)],
            ..Policy::default()
        };
        let decide_at = |state: &Tracked, result: PollResult, minutes: i64| {
            decide(state, &result, at(minutes), &daily, Jitter::NONE)
        };
        let process = || PollResult::Invoice(Box::new(invoice("process")));
        let v = decide_at(&state, process(), 25);
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
        assert_eq!(
            v.next_check_at,
            Some(at(130)),
            "the last look: the deadline plus the provider's 2 h of callback retries"
        );
        assert!(v.next_check_urgent, "a deadline placed it");
        let state = apply(&state, &v);

        // A failed attempt at the last look is no look: it is tried again.
        let failed = decide_at(
            &state,
            PollResult::Failed {
                reason: "timeout".into(),
            },
            130,
        );
        assert!(failed.next_check_at.is_some_and(|next| next > at(130)));
        assert!(failed.open.is_empty());

        // Still unsettled: polling stops, and a person is told nobody knows whether money
        // moved.
        let v = decide_at(&state, process(), 130);
        assert_eq!(v.next_check_at, None, "no more looks");
        assert_eq!(opened(&v), vec![FlagKind::PollingAbandoned]);
        assert_eq!(
            v.open[0].expected.as_deref(),
            Some(
                "a terminal status by 2025-07-11T12:10:00+00:00 (the deadline plus the \
                 provider's 2h of callback retries)"
            )
        );
        assert_eq!(v.open[0].actual.as_deref(), Some("process"));
        assert_eq!(FlagKind::PollingAbandoned.class(), FlagClass::Action);
        let stopped = apply(&state, &v);

        // Something else makes it due (`recheck`): a change is still caught...
        let paid = decide_at(
            &stopped,
            PollResult::Invoice(Box::new(invoice("success"))),
            600,
        );
        assert_eq!(opened(&paid), vec![FlagKind::PaidAfterDeadline]);
        assert_eq!(resolved(&paid), vec![FlagKind::PollingAbandoned]);
        assert_eq!(paid.next_check_at, Some(at(630)), "and confirmed");
        // ...and the same answer is that one look, with no flag opened again, even one a
        // person closed.
        let mut closed = stopped.clone();
        closed.open_flags.remove(&FlagKind::PollingAbandoned);
        closed.closed_flags.insert(
            FlagKind::PollingAbandoned,
            ClosedFlag {
                expected: v.open[0].expected.clone(),
                actual: Some("process".into()),
            },
        );
        for state in [&stopped, &closed] {
            let again = decide_at(state, process(), 600);
            assert_eq!(again.next_check_at, None);
            assert!(again.open.is_empty(), "{again:?}");
        }
    }

    #[test]
    fn a_denser_schedule_goes_on_until_the_last_look() {
        // Rechecks every hour: 10:25 (the deadline check), 11:25, then 12:10, the last look.
        let mut state = tracked();
        state.merchant_expires_at = Some(at(10));
        state.checks = 4;
        let process = || PollResult::Invoice(Box::new(invoice("process")));
        let v = decide_at(&state, process(), 25);
        assert_eq!(v.next_check_at, Some(at(85)));
        assert!(!v.next_check_urgent);
        let state = apply(&state, &v);
        let v = decide_at(&state, process(), 85);
        assert_eq!(v.next_check_at, Some(at(130)));
        assert!(v.next_check_urgent, "capped at the last look");
        let state = apply(&state, &v);
        let v = decide_at(&state, process(), 130);
        assert_eq!(v.next_check_at, None);
        assert_eq!(opened(&v), vec![FlagKind::PollingAbandoned]);
    }

    #[test]
    fn with_a_grace_past_the_callback_retries_the_deadline_check_is_the_last_look() {
        let mut state = tracked();
        state.merchant_expires_at = Some(at(10));
        state.checks = 4;
        let patient = Policy {
            lifetime_grace: Duration::from_secs(3 * 3600),
            ..Policy::default()
        };
        let v = decide(
            &state,
            &PollResult::Invoice(Box::new(invoice("waiting"))),
            at(190),
            &patient,
            Jitter::NONE,
        );
        assert_eq!(
            opened(&v),
            vec![FlagKind::LifetimeExceeded, FlagKind::PollingAbandoned]
        );
        assert_eq!(v.next_check_at, None);
    }

    #[test]
    fn a_settled_payment_past_the_maximum_age_is_never_scheduled_in_the_past() {
        let week = 7 * 24 * 60;
        let mut state = tracked();
        state.status = Some(ProviderStatus::Success);
        state.checks = 2;
        for result in [
            PollResult::NotFound,
            PollResult::Failed {
                reason: "timeout".into(),
            },
            PollResult::Rejected {
                code: "1".into(),
                description: "x".into(),
            },
        ] {
            let v = decide_at(&state, result, week + 30);
            assert_eq!(v.next_check_at, None, "one look only after the maximum age");
            assert!(
                !opened(&v).contains(&FlagKind::PollingAbandoned),
                "a settled payment is not abandoned"
            );
        }
        // Before the maximum age, a failed confirmation backs off into the future.
        let v = decide_at(
            &state,
            PollResult::Failed {
                reason: "timeout".into(),
            },
            week - 1,
        );
        assert!(v.next_check_at.unwrap() > at(week - 1));
    }

    #[test]
    fn an_absurd_lifetime_in_seconds_is_far_future_not_a_crash() {
        let mut lived = invoice("process");
        lived.lifetime = Some(Lifetime::Seconds(i64::MAX));
        let v = decide_at(&tracked(), PollResult::Invoice(Box::new(lived)), 1);
        assert_eq!(v.provider_expiry.unwrap().at, DateTime::<Utc>::MAX_UTC);
        assert!(v.open.is_empty());
    }

    #[test]
    fn an_open_flag_is_not_opened_twice() {
        let mut state = tracked();
        state.expected.amount = Some(dec("1"));
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 1);
        assert_eq!(opened(&v), vec![FlagKind::AmountMismatch]);
        let state = apply(&state, &v);
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 2);
        assert!(v.open.is_empty());
    }
}
