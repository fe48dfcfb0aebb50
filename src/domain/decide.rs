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
    /// The answer is a word `invoice/info` does not document (`refunded`, `reversed`, …),
    /// new for this payment: money may have moved, so the Merchant status API is asked at
    /// once (its refund watch falls due now). A hint for the watch, not a fact: only what the
    /// status API states is booked as money.
    pub ask_what_money_moved: bool,
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

/// Decides what one poll result means for a payment, in phases: what the answer says
/// ([`observe`]), where the payment stands against its deadlines ([`timeline`]), what each
/// rule finds ([`findings`]), which flags open and close ([`flag_changes`]), when to look
/// again ([`next_check`]) and the bookkeeping of attempts ([`attempts`]).
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
    let observed = observe(before, result, now);
    let (timeline, lifetime) = timeline(before, &observed, answered, now, policy);
    let findings = findings(before, result, &observed, &timeline, lifetime, now, policy);
    let (open, resolve) = flag_changes(before, findings, observed.status.as_ref(), policy);
    let next_check = next_check(before, result, &observed, &timeline, now, policy, jitter);
    let (next_check_at, next_check_urgent) = match next_check {
        Some((at, urgent)) => (Some(at), urgent),
        None => (None, false),
    };
    let (attempts, last_error, not_found_since) = attempts(before, result, now);
    let ask_what_money_moved = observed
        .change
        .as_ref()
        .is_some_and(|change| matches!(change.to, ProviderStatus::Other(_)));
    Verdict {
        observed_at: now,
        answered,
        status: observed.status,
        change: observed.change,
        settled_at: observed.settled_at,
        provider_expiry: observed.provider_expiry,
        checks: before.checks + i32::from(answered),
        attempts,
        last_error,
        not_found_since,
        next_check_at,
        next_check_urgent,
        deadline_missed_at: timeline.deadline_missed_at,
        open,
        resolve,
        ask_what_money_moved,
    }
}

/// The longest wait between looks at a payment whose status `invoice/info` does not document.
pub const UNDOCUMENTED_BACKOFF_MAX: Duration = Duration::from_secs(24 * 3600);

/// An answer whose status `invoice/info` does not document: it says nothing the schedule can
/// act on, so it is looked at again on the retry backoff, as a failed poll is (never the
/// routine ladder, which would ask every few seconds near the start of a payment's life).
fn undocumented(result: &PollResult) -> Option<&str> {
    match result {
        PollResult::Invoice(invoice) => match &invoice.status {
            ProviderStatus::Other(raw) => Some(raw),
            _ => None,
        },
        _ => None,
    }
}

/// What an answer says of the payment's status and lifetime.
struct Observed {
    status: Option<ProviderStatus>,
    provider_expiry: Option<Expiry>,
    change: Option<StatusChange>,
    settled_at: Option<DateTime<Utc>>,
}

/// The status and lifetime an answer gives (a failed or rejected poll keeps the last ones),
/// the change it makes, and when the payment settled: now, if it just reached a terminal
/// status.
fn observe(before: &Tracked, result: &PollResult, now: DateTime<Utc>) -> Observed {
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
    Observed {
        status,
        provider_expiry,
        change,
        settled_at,
    }
}

/// Where a payment stands against its deadlines.
struct Timeline {
    deadline: Option<Deadline>,
    /// When the lifetime rule looks: the deadline plus `lifetime_grace`.
    lifetime_check_at: Option<DateTime<Utc>>,
    /// When polling an unsettled payment stops: `max_age` after creation.
    abandon_at: DateTime<Utc>,
    is_terminal: bool,
    abandoned: bool,
    /// Unsettled past its deadline check.
    overdue: bool,
    /// The deadline plus `last_look_after`.
    last_look_at: Option<DateTime<Utc>>,
    /// Overdue, answered, and past the last look: polling stops.
    given_up: bool,
    deadline_missed_at: Option<DateTime<Utc>>,
}

/// The payment's deadlines as of `now`, and the lifetime rule's finding (which decides
/// whether the deadline was missed).
fn timeline(
    before: &Tracked,
    observed: &Observed,
    answered: bool,
    now: DateTime<Utc>,
    policy: &Policy,
) -> (Timeline, Finding) {
    let status = observed.status.as_ref();
    let deadline = Deadline::earliest(observed.provider_expiry, before.merchant_expires_at);
    let lifetime_check_at = deadline.map(|d| after(d.at, policy.lifetime_grace));
    let abandon_at = after(before.created_at, policy.max_age);
    let is_terminal = status.is_some_and(ProviderStatus::is_terminal);
    let abandoned = !is_terminal && now >= abandon_at;

    let lifetime = lifetime_finding(
        status,
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
    let deadline_missed_at = match (&lifetime, status) {
        (Finding::Holds { .. }, _) => Some(before.deadline_missed_at.unwrap_or(now)),
        // Paid or failed: the deadline's story is told; a miss stays on record.
        (_, Some(status)) if status.is_paid_or_failed() => before.deadline_missed_at,
        // No deadline has passed (a later lifetime moved it ahead).
        (Finding::Clear, _) => None,
        _ => before.deadline_missed_at,
    };
    let timeline = Timeline {
        deadline,
        lifetime_check_at,
        abandon_at,
        is_terminal,
        abandoned,
        overdue,
        last_look_at,
        given_up,
        deadline_missed_at,
    };
    (timeline, lifetime)
}

/// What each rule finds, by the flag it would open.
fn findings(
    before: &Tracked,
    result: &PollResult,
    observed: &Observed,
    timeline: &Timeline,
    lifetime: Finding,
    now: DateTime<Utc>,
    policy: &Policy,
) -> [(FlagKind, Finding); 10] {
    let status = observed.status.as_ref();
    let paid_late = paid_after_deadline_finding(
        status,
        before.deadline_missed_at,
        timeline.deadline,
        observed.settled_at,
    );
    let abandonment = if timeline.given_up {
        // Named by the deadline, not the time of the look: a recheck that finds the same
        // does not reopen a flag a person closed.
        holds(
            format!(
                "a terminal status by {} (the deadline plus the provider's {} of callback \
                 retries)",
                timeline
                    .last_look_at
                    .map_or_else(String::new, |at| at.to_rfc3339()),
                humantime::format_duration(policy.last_look_after)
            ),
            status.map_or("no answer", ProviderStatus::as_str),
        )
    } else if timeline.abandoned {
        holds(
            format!(
                "a terminal status within {}",
                humantime::format_duration(policy.max_age)
            ),
            status.map_or("no answer", ProviderStatus::as_str),
        )
    } else if timeline.is_terminal {
        Finding::Clear
    } else {
        Finding::Unknown
    };
    [
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
            terminal_change_finding(observed.change.as_ref()),
        ),
        (FlagKind::PollingAbandoned, abandonment),
        (FlagKind::PaidAfterDeadline, paid_late),
        (
            FlagKind::CallbackDisagrees,
            callback_finding(before, result, now, policy),
        ),
    ]
}

/// The flags to open and to resolve: a finding that holds opens its flag unless one is open
/// or a person closed one about the same thing; a finding that clears resolves it; an open
/// lifetime flag is superseded by a late payment or closed by the expired-unpaid rule.
fn flag_changes(
    before: &Tracked,
    findings: [(FlagKind, Finding); 10],
    status: Option<&ProviderStatus>,
    policy: &Policy,
) -> (Vec<NewFlag>, Vec<(FlagKind, Resolver)>) {
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
        } else if status != Some(&ProviderStatus::Success)
            && policy.auto_close.contains(&AutoClose::ExpiredUnpaid)
        {
            // No money moved: an outcome, not an exception.
            resolve.push((
                FlagKind::LifetimeExceeded,
                Resolver::Rule(AutoClose::ExpiredUnpaid),
            ));
        }
    }
    (open, resolve)
}

/// When to look again, and whether that time is a deadline's (`true`); `None`: never.
fn next_check(
    before: &Tracked,
    result: &PollResult,
    observed: &Observed,
    timeline: &Timeline,
    now: DateTime<Utc>,
    policy: &Policy,
    jitter: Jitter,
) -> Option<(DateTime<Utc>, bool)> {
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
        timeline.lifetime_check_at,
        (!timeline.is_terminal).then_some(timeline.abandon_at),
        not_found_check_at,
        callback_check_at,
        lagging_api_check_at,
        timeline.last_look_at.filter(|_| timeline.overdue),
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
    match result {
        _ if timeline.abandoned => None,
        PollResult::Invoice(_) if timeline.is_terminal => {
            // Seen twice, or told twice: an unchanged answer confirms the status, and so
            // does a callback's claim this answer agrees with (the provider's Result URL and
            // its signed API, two channels, say the same; a later change, such as a payment
            // after `incomplete`, comes with a callback of its own). With callbacks on, that
            // spares most paid and failed payments a request (docs/performance.md,
            // "Callbacks and the ladder").
            let confirmed = observed.change.is_none()
                || before
                    .callback
                    .as_ref()
                    .is_some_and(|claim| claim.paid.is_some() && confirms(claim, result));
            (!confirmed).then(|| (after(now, policy.confirm_after), false))
        }
        // A settled payment looked at again after the maximum age (a manual recheck, a late
        // confirmation) gets that one look, whatever it brings.
        _ if now >= timeline.abandon_at => None,
        // Still unsettled at its last look: polling stops, `polling_abandoned` says so. A
        // recheck someone asks for later gets that one look too.
        _ if timeline.given_up => None,
        PollResult::Failed { .. } => {
            let exponent = before.attempts.clamp(0, 20) as u32;
            let backoff = policy
                .retry_min
                .saturating_mul(1 << exponent)
                .min(policy.retry_max);
            Some(cap(after(now, jitter.spread(backoff))))
        }
        // A word nobody documented says nothing the schedule can act on, and may stay for
        // good (`refunded`): each one in a row doubles the wait, from `retry_min` up to a
        // day, and never sooner than the routine ladder. The money it may mean is the
        // status API's to tell (`ask_what_money_moved`).
        _ if undocumented(result).is_some() => {
            let exponent = before.attempts.clamp(0, 20) as u32;
            let index = (before.checks.max(0) as usize).min(policy.recheck.len() - 1);
            let backoff = policy
                .retry_min
                .saturating_mul(1 << exponent)
                .min(UNDOCUMENTED_BACKOFF_MAX)
                .max(policy.recheck[index]);
            Some(cap(after(now, jitter.spread(backoff))))
        }
        _ => {
            let index = (before.checks.max(0) as usize).min(policy.recheck.len() - 1);
            Some(cap(after(now, policy.recheck[index])))
        }
    }
}

/// Failed attempts in a row and the last error (an answer, even "not found", resets them),
/// and since when the provider has not known the payment.
fn attempts(
    before: &Tracked,
    result: &PollResult,
    now: DateTime<Utc>,
) -> (i32, Option<String>, Option<DateTime<Utc>>) {
    let (attempts, last_error) = match result {
        // Counted as attempts for the backoff; the word itself is the unknown_status flag's.
        PollResult::Invoice(_) if undocumented(result).is_some() => (
            before.attempts + 1,
            Some(
                "a status invoice/info does not document: looked at again on the retry \
                 backoff; the Merchant status API is asked what money moved"
                    .to_owned(),
            ),
        ),
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
    (attempts, last_error, not_found_since)
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
        // A word nobody documented (`refunded` after `success`) is unknown_status's to tell:
        // one flag for one answer, and the money it may mean is asked of the status API.
        Some(StatusChange {
            to: ProviderStatus::Other(_),
            ..
        }) => Finding::Unknown,
        Some(StatusChange {
            from: Some(from),
            to,
        }) if from.is_terminal() => holds(from, to),
        _ => Finding::Unknown,
    }
}

/// A verified callback as it arrived for a payment, with what recording it found: what
/// [`callback_flags`] decides from.
#[derive(Debug, Clone, Copy)]
pub struct CallbackArrival<'a> {
    /// Its id in `recon.callbacks`.
    pub callback_id: i64,
    /// Nobody tracked the payment: the callback started tracking it.
    pub started_tracking: bool,
    /// `pg_result`: paid, failed, or `None` when unreadable.
    pub paid: Option<bool>,
    pub amount: Option<Decimal>,
    pub currency: Option<&'a str>,
    /// The order id it named, cleaned for display.
    pub order_id: Option<&'a str>,
    /// Why the claim could not be read whole, if it could not.
    pub problem: Option<&'a str>,
}

/// The flags a callback's arrival opens on its payment, decided here as every other flag is
/// (the shell opens each unless one of its kind is open). A callback is a hint, so these say
/// only what a person must look at: a payment the merchant never enqueued
/// (`untracked_payment`, with what the callback claimed) and a claim that could not be read
/// whole (`callback_unreadable`: the poll still decides, but this claim cannot be checked
/// against it, so a person compares the stored request with the answer).
pub fn callback_flags(arrival: &CallbackArrival<'_>) -> Vec<NewFlag> {
    let mut flags = Vec::new();
    if arrival.started_tracking {
        let outcome = match arrival.paid {
            Some(true) => "paid",
            Some(false) => "failed",
            None => "an unreadable pg_result",
        };
        let amount = match (arrival.amount, arrival.currency) {
            (Some(amount), Some(currency)) => format!(" {amount} {currency}"),
            (Some(amount), None) => format!(" {amount}"),
            _ => String::new(),
        };
        let order = arrival
            .order_id
            .map(|o| format!(", order {o}"))
            .unwrap_or_default();
        flags.push(NewFlag {
            kind: FlagKind::UntrackedPayment,
            expected: Some("a payment the merchant enqueued".to_owned()),
            actual: Some(format!("a callback: {outcome}{amount}{order}")),
        });
    }
    if let Some(problem) = arrival.problem {
        flags.push(NewFlag {
            kind: FlagKind::CallbackUnreadable,
            expected: Some("a callback the daemon can read".to_owned()),
            actual: Some(format!("callback #{}: {problem}", arrival.callback_id)),
        });
    }
    flags
}

#[cfg(test)]
mod tests;
