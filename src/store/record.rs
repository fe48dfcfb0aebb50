//! Writing verdicts: the payment's new state, its transition, its flag changes and the money
//! a payment received (`recon.money_events`), for a whole batch of payments, in one transaction (one statement per table).
//!
//! Every part is conditional on the claim's `lease_token`: a verdict whose lease was taken
//! over, or one written twice, changes nothing. Transitions are also unique per observation
//! number (the transitions' key and the payment's pointer to its latest one: migration
//! `evidence_stored_once`), and flags per open (payment, kind) (the side table
//! `recon.open_flags`: migration `partitioned_history`), so no replay can duplicate history.
//!
//! [`record_isolated`] keeps one verdict the database refuses from taking the rest of its batch
//! with it: it splits the batch until the refused verdict stands alone, and hands that one
//! back with the reason (the engine records it as a failed poll instead).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashSet;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::money::MoneyColumns;
use super::{Lease, StoreError};
use crate::domain::money::{MoneyFact, MoneySource};
use crate::domain::{Invoice, PaymentId, ProviderStatus, Tracked, Verdict};
use crate::text;

/// Longest error body kept in `last_error_body`.
pub const ERROR_BODY_MAX_CHARS: usize = 8 * 1024;

/// One payment's verdict, as the sweep hands it to the store.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub payment_id: PaymentId,
    pub lease_token: i64,
    /// What was known before the poll: the verdict was decided from it, and a verdict the
    /// database refuses is decided again from it as a failed poll.
    pub before: Tracked,
    pub verdict: Verdict,
    /// The answer the verdict was made from, when the provider sent an invoice.
    pub invoice: Option<Invoice>,
    /// The body as received, when it was readable JSON.
    pub raw_body: Option<String>,
    /// The body of an answer that was not an invoice (an error body, an unreadable answer),
    /// as text; cleaned and cut before it is stored.
    pub error_body: Option<String>,
    /// The `X-Request-Id` of the request, when one was sent.
    pub request_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Verdicts written; the others had lost their lease.
    pub applied: u64,
    pub transitions: u64,
    pub flags_opened: u64,
    pub flags_resolved: u64,
    /// Money events written (a payment received).
    pub money_events: u64,
}

/// The payments' new state, one vector per column of `unnest`, borrowing from the verdicts
/// (bodies and texts are bound as they are, never copied).
#[derive(Default)]
struct PaymentColumns<'a> {
    payment_id: Vec<&'a str>,
    lease_token: Vec<i64>,
    has_invoice: Vec<bool>,
    answered: Vec<bool>,
    observed_at: Vec<DateTime<Utc>>,
    status: Vec<Option<&'a str>>,
    amount: Vec<Option<Decimal>>,
    currency: Vec<Option<&'a str>>,
    fee: Vec<Option<Decimal>>,
    discount: Vec<Option<Decimal>>,
    provider_order_id: Vec<Option<&'a str>>,
    freedom_id: Vec<Option<&'a str>>,
    merchant_id: Vec<Option<&'a str>>,
    provider_dt: Vec<Option<DateTime<Utc>>>,
    lifetime_ends_at: Vec<Option<DateTime<Utc>>>,
    lifetime_source: Vec<Option<&'static str>>,
    /// Whether the verdict appends a transition, which the payment then points at.
    transitions: Vec<bool>,
    checks: Vec<i32>,
    attempts: Vec<i32>,
    last_error: Vec<Option<&'a str>>,
    settled_at: Vec<Option<DateTime<Utc>>>,
    not_found_since: Vec<Option<DateTime<Utc>>>,
    next_check_at: Vec<Option<DateTime<Utc>>>,
    next_check_urgent: Vec<bool>,
    request_id: Vec<Option<Uuid>>,
    error_body: Vec<Option<String>>,
    deadline_missed_at: Vec<Option<DateTime<Utc>>>,
}

impl<'a> PaymentColumns<'a> {
    fn push(&mut self, item: &'a Recorded) {
        let v = &item.verdict;
        let invoice = item.invoice.as_ref();
        self.payment_id.push(item.payment_id.as_str());
        self.lease_token.push(item.lease_token);
        self.has_invoice.push(invoice.is_some());
        self.answered.push(v.answered);
        self.observed_at.push(v.observed_at);
        self.status.push(v.status.as_ref().map(|s| s.as_str()));
        self.amount.push(invoice.and_then(|i| i.amount));
        self.currency.push(
            invoice
                .and_then(|i| i.currency.as_ref())
                .map(|c| c.as_str()),
        );
        self.fee.push(invoice.and_then(|i| i.fee));
        self.discount.push(invoice.and_then(|i| i.discount));
        self.provider_order_id
            .push(invoice.and_then(|i| i.order_id.as_deref()));
        self.freedom_id
            .push(invoice.and_then(|i| i.freedom_id.as_deref()));
        self.merchant_id
            .push(invoice.and_then(|i| i.merchant_id.as_deref()));
        self.provider_dt.push(invoice.and_then(|i| i.dt));
        self.lifetime_ends_at.push(v.provider_expiry.map(|e| e.at));
        self.lifetime_source
            .push(v.provider_expiry.map(|e| e.source.as_str()));
        self.transitions.push(v.change.is_some());
        self.checks.push(v.checks);
        self.attempts.push(v.attempts);
        self.last_error.push(v.last_error.as_deref());
        self.settled_at.push(v.settled_at);
        self.not_found_since.push(v.not_found_since);
        self.next_check_at.push(v.next_check_at);
        self.next_check_urgent.push(v.next_check_urgent);
        self.request_id.push(item.request_id);
        self.error_body.push(
            item.error_body
                .as_deref()
                .filter(|_| invoice.is_none())
                .map(|b| text::clean(b, ERROR_BODY_MAX_CHARS)),
        );
        self.deadline_missed_at.push(v.deadline_missed_at);
    }
}

/// Status transitions to append.
#[derive(Default)]
struct TransitionColumns<'a> {
    payment_id: Vec<&'a str>,
    observation_no: Vec<i32>,
    from: Vec<Option<&'a str>>,
    to: Vec<&'a str>,
    observed_at: Vec<DateTime<Utc>>,
    provider_dt: Vec<Option<DateTime<Utc>>>,
    body: Vec<Option<&'a str>>,
    request_id: Vec<Option<Uuid>>,
}

/// Flags to raise.
#[derive(Default)]
struct OpenedColumns<'a> {
    payment_id: Vec<&'a str>,
    kind: Vec<&'static str>,
    expected: Vec<Option<&'a str>>,
    actual: Vec<Option<&'a str>>,
    detected_at: Vec<DateTime<Utc>>,
}

/// Flags to close: cleared by a later observation, or closed by a rule.
#[derive(Default)]
struct ResolvedColumns<'a> {
    payment_id: Vec<&'a str>,
    kind: Vec<&'static str>,
    resolved_at: Vec<DateTime<Utc>>,
    resolved_by: Vec<String>,
    resolution: Vec<&'static str>,
}

/// Writes a batch of verdicts in one transaction. Returns what was applied. A payment booked
/// paid is watched for refunds from then, its first look `first_look` later (`None`: not
/// watched).
pub async fn record_verdicts(
    pool: &PgPool,
    items: &[Recorded],
    first_look: Option<Duration>,
) -> Result<RecordOutcome, StoreError> {
    Ok(record_listing(pool, items, first_look).await?.outcome)
}

/// What one write did, and which payments it appended a transition for.
struct Listed {
    outcome: RecordOutcome,
    transitioned: Vec<String>,
}

async fn record_listing(
    pool: &PgPool,
    items: &[Recorded],
    first_look: Option<Duration>,
) -> Result<Listed, StoreError> {
    if items.is_empty() {
        return Ok(Listed {
            outcome: RecordOutcome::default(),
            transitioned: Vec::new(),
        });
    }
    let mut tx = pool.begin().await?;
    let listed = write_listing(&mut tx, items, first_look).await?;
    tx.commit().await?;
    Ok(listed)
}

/// Writes a batch of verdicts inside the caller's transaction, one statement per table. Only
/// verdicts whose claim still holds its lease are applied; their history follows them (the
/// payment rows stay locked until the transaction ends, so no lease can change meanwhile).
async fn write_listing(
    tx: &mut PgConnection,
    items: &[Recorded],
    first_look: Option<Duration>,
) -> Result<Listed, StoreError> {
    let mut payments = PaymentColumns::default();
    for item in items {
        payments.push(item);
    }
    let applied: HashSet<String> = update_payments(&mut *tx, &payments)
        .await?
        .into_iter()
        .collect();
    let mut outcome = RecordOutcome {
        applied: applied.len() as u64,
        ..RecordOutcome::default()
    };
    // A verdict appears once per batch; a lease not held means it is not applied at all.
    let applied_items = || {
        items
            .iter()
            .filter(|item| applied.contains(item.payment_id.as_str()))
    };

    let mut transitions = TransitionColumns::default();
    let mut opened = OpenedColumns::default();
    let mut resolved = ResolvedColumns::default();
    for item in applied_items() {
        let v = &item.verdict;
        let id = item.payment_id.as_str();
        if let Some(change) = &v.change {
            transitions.payment_id.push(id);
            transitions.observation_no.push(v.checks);
            transitions
                .from
                .push(change.from.as_ref().map(|s| s.as_str()));
            transitions.to.push(change.to.as_str());
            transitions.observed_at.push(v.observed_at);
            transitions
                .provider_dt
                .push(item.invoice.as_ref().and_then(|i| i.dt));
            transitions.body.push(item.raw_body.as_deref());
            transitions.request_id.push(item.request_id);
        }
        for flag in &v.open {
            opened.payment_id.push(id);
            opened.kind.push(flag.kind.as_str());
            opened.expected.push(flag.expected.as_deref());
            opened.actual.push(flag.actual.as_deref());
            opened.detected_at.push(v.observed_at);
        }
        for (kind, resolver) in &v.resolve {
            resolved.payment_id.push(id);
            resolved.kind.push(kind.as_str());
            resolved.resolved_at.push(v.observed_at);
            resolved.resolved_by.push(resolver.resolved_by());
            resolved.resolution.push(resolver.note());
        }
    }
    let mut transitioned = Vec::new();
    if !transitions.payment_id.is_empty() {
        transitioned = insert_transitions(&mut *tx, &transitions).await?;
        outcome.transitions = transitioned.len() as u64;
    }
    // The money a payment to `success` received, once, beside the transition that says so
    // (a refund later never erases it: recon.money_events).
    let paid: Vec<(&str, MoneyFact, DateTime<Utc>)> = applied_items()
        .filter(|item| transitioned.iter().any(|id| id == item.payment_id.as_str()))
        .filter(|item| {
            item.verdict
                .change
                .as_ref()
                .is_some_and(|change| change.to == ProviderStatus::Success)
        })
        .filter_map(|item| {
            let invoice = item.invoice.as_ref()?;
            let fact = MoneyFact::payment(
                invoice.amount?,
                invoice.currency?,
                invoice.dt,
                MoneySource::Poll,
            );
            Some((item.payment_id.as_str(), fact, item.verdict.observed_at))
        })
        .collect();
    if !paid.is_empty() {
        let mut money = MoneyColumns::default();
        for (id, fact, observed_at) in &paid {
            money.push(id, fact, Some(*observed_at));
        }
        outcome.money_events = super::money::insert(&mut *tx, &money, first_look).await?;
    }
    // A word invoice/info does not document: the status API is asked at once.
    let ask: Vec<&str> = applied_items()
        .filter(|item| item.verdict.ask_what_money_moved)
        .map(|item| item.payment_id.as_str())
        .collect();
    if !ask.is_empty() {
        super::money::look_now(&mut *tx, &ask).await?;
    }
    if !opened.payment_id.is_empty() {
        outcome.flags_opened = open_flags(&mut *tx, &opened).await?;
    }
    if !resolved.payment_id.is_empty() {
        outcome.flags_resolved = resolve_flags(&mut *tx, &resolved).await?;
    }
    Ok(Listed {
        outcome,
        transitioned,
    })
}

/// The payments' new state, where the claim's lease still holds. Returns the ids updated.
async fn update_payments(
    conn: &mut PgConnection,
    c: &PaymentColumns<'_>,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar!(
        "update recon.payments p set
             status            = v.status,
             amount            = case when v.has_invoice then v.amount else p.amount end,
             currency          = case when v.has_invoice then v.currency else p.currency end,
             fee               = case when v.has_invoice then v.fee else p.fee end,
             discount          = case when v.has_invoice then v.discount else p.discount end,
             provider_order_id = case when v.has_invoice then v.provider_order_id else p.provider_order_id end,
             freedom_id        = case when v.has_invoice then v.freedom_id else p.freedom_id end,
             merchant_id       = case when v.has_invoice then v.merchant_id else p.merchant_id end,
             provider_dt       = case when v.has_invoice then v.provider_dt else p.provider_dt end,
             -- the transition appended below (its trigger refuses one that is not the next)
             last_transition_no = case when v.transitions and (p.last_transition_no is null
                                                               or p.last_transition_no < v.checks)
                                       then v.checks else p.last_transition_no end,
             last_transition_at = case when v.transitions and (p.last_transition_no is null
                                                               or p.last_transition_no < v.checks)
                                       then v.observed_at else p.last_transition_at end,
             lifetime_ends_at  = v.lifetime_ends_at,
             lifetime_source   = v.lifetime_source,
             checks            = v.checks,
             first_checked_at  = case when v.answered then coalesce(p.first_checked_at, v.observed_at) else p.first_checked_at end,
             last_checked_at   = case when v.answered then v.observed_at else p.last_checked_at end,
             last_checked_by   = p.lease_owner,
             attempts          = v.attempts,
             last_error        = v.last_error,
             last_error_body   = v.error_body,
             last_request_id   = coalesce(v.request_id, p.last_request_id),
             settled_at        = v.settled_at,
             deadline_missed_at = v.deadline_missed_at,
             not_found_since   = v.not_found_since,
             next_check_at     = case when p.recheck_requested_at is not null
                                      then now() else v.next_check_at end,
             -- a look someone asked for is made before routine rechecks
             next_check_urgent = p.recheck_requested_at is not null or v.next_check_urgent,
             recheck_requested_at = null,
             lease_token       = null,
             lease_owner       = null,
             lease_expires_at  = null
         from unnest(
             $1::text[], $2::int8[], $3::bool[], $4::bool[], $5::timestamptz[],
             $6::text[], $7::numeric[], $8::text[], $9::numeric[], $10::numeric[],
             $11::text[], $12::text[], $13::text[], $14::timestamptz[],
             $15::timestamptz[], $16::text[], $17::bool[], $18::int4[], $19::int4[],
             $20::text[], $21::timestamptz[], $22::timestamptz[], $23::timestamptz[],
             $24::bool[], $25::uuid[], $26::text[], $27::timestamptz[])
         as v(payment_id, lease_token, has_invoice, answered, observed_at,
              status, amount, currency, fee, discount,
              provider_order_id, freedom_id, merchant_id, provider_dt,
              lifetime_ends_at, lifetime_source, transitions, checks, attempts,
              last_error, settled_at, not_found_since, next_check_at,
              next_check_urgent, request_id, error_body, deadline_missed_at)
         where p.payment_id = v.payment_id and p.lease_token = v.lease_token
         returning p.payment_id",
        &c.payment_id as &[&str],
        &c.lease_token,
        &c.has_invoice,
        &c.answered,
        &c.observed_at,
        &c.status as &[Option<&str>],
        &c.amount as &[Option<Decimal>],
        &c.currency as &[Option<&str>],
        &c.fee as &[Option<Decimal>],
        &c.discount as &[Option<Decimal>],
        &c.provider_order_id as &[Option<&str>],
        &c.freedom_id as &[Option<&str>],
        &c.merchant_id as &[Option<&str>],
        &c.provider_dt as &[Option<DateTime<Utc>>],
        &c.lifetime_ends_at as &[Option<DateTime<Utc>>],
        &c.lifetime_source as &[Option<&str>],
        &c.transitions,
        &c.checks,
        &c.attempts,
        &c.last_error as &[Option<&str>],
        &c.settled_at as &[Option<DateTime<Utc>>],
        &c.not_found_since as &[Option<DateTime<Utc>>],
        &c.next_check_at as &[Option<DateTime<Utc>>],
        &c.next_check_urgent,
        &c.request_id as &[Option<Uuid>],
        &c.error_body as &[Option<String>],
        &c.deadline_missed_at as &[Option<DateTime<Utc>>],
    )
    .fetch_all(conn)
    .await?)
}

/// Appends transitions, each the one its payment now points at ([`update_payments`] moved
/// the pointer in this transaction, under the payment's row lock). The transitions' key and
/// their insert trigger refuse a second transition for an observation, or one below the
/// payment's latest (migration `evidence_stored_once`): the batch then fails as a whole and
/// [`record_isolated`] hands that verdict back. The same transition again (a verdict replayed
/// whole, its lease restored) is skipped by its key. Returns the payments it appended one
/// for.
async fn insert_transitions(
    conn: &mut PgConnection,
    t: &TransitionColumns<'_>,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar!(
        "insert into recon.status_transitions
             (payment_id, observation_no, from_status, to_status, observed_at, provider_dt,
              body, request_id)
         select t.payment_id, t.observation_no, t.from_status, t.to_status, t.observed_at,
                t.provider_dt, coalesce(t.body::json, 'null'::json), t.request_id
         from (select distinct on (u.payment_id, u.observation_no) u.*
               from unnest($1::text[], $2::int4[], $3::text[], $4::text[], $5::timestamptz[],
                           $6::timestamptz[], $7::text[], $8::uuid[])
                    with ordinality as u(payment_id, observation_no, from_status, to_status,
                                         observed_at, provider_dt, body, request_id, n)
               order by u.payment_id, u.observation_no, u.n) t
         on conflict do nothing
         returning payment_id as \"payment_id!\"",
        &t.payment_id as &[&str],
        &t.observation_no,
        &t.from as &[Option<&str>],
        &t.to as &[&str],
        &t.observed_at,
        &t.provider_dt as &[Option<DateTime<Utc>>],
        &t.body as &[Option<&str>],
        &t.request_id as &[Option<Uuid>],
    )
    .fetch_all(conn)
    .await?)
}

/// Raises flags; at most one open flag per (payment, kind), kept by `recon.open_flags` (the
/// flags table is partitioned by month, so no unique index on it can say so; its triggers
/// keep that table, whose key refuses a second open flag). This insert skips a kind already
/// open, under the payments' row locks as for transitions. A flag links the payment's
/// previous flag of its kind, the one it follows.
async fn open_flags(conn: &mut PgConnection, o: &OpenedColumns<'_>) -> Result<u64, StoreError> {
    let result = sqlx::query!(
        "insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at, follows_id)
         select o.payment_id, o.kind, o.expected, o.actual, o.detected_at,
                (select max(d.id) from recon.discrepancies d
                 where d.payment_id = o.payment_id and d.kind = o.kind)
         from (select distinct on (u.payment_id, u.kind) u.*
               from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
                    with ordinality as u(payment_id, kind, expected, actual, detected_at, n)
               order by u.payment_id, u.kind, u.n) o
         where not exists (select 1 from recon.open_flags f
                           where f.payment_id = o.payment_id and f.kind = o.kind)
         order by o.n",
        &o.payment_id as &[&str],
        &o.kind as &[&str],
        &o.expected as &[Option<&str>],
        &o.actual as &[Option<&str>],
        &o.detected_at,
    )
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

/// Closes open flags a later observation no longer supports, or a rule closes (those
/// opened by the same verdict included: they were inserted just before).
async fn resolve_flags(
    conn: &mut PgConnection,
    r: &ResolvedColumns<'_>,
) -> Result<u64, StoreError> {
    let result = sqlx::query!(
        "update recon.discrepancies d set
             resolved_at = r.resolved_at,
             resolved_by = r.resolved_by,
             resolution  = r.resolution
         from unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[])
              as r(payment_id, kind, resolved_at, resolved_by, resolution)
         where d.payment_id = r.payment_id and d.kind = r.kind and d.resolved_at is null",
        &r.payment_id as &[&str],
        &r.kind as &[&str],
        &r.resolved_at,
        &r.resolved_by,
        &r.resolution as &[&str],
    )
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

/// What [`record_isolated`] wrote, and what the database refused.
#[derive(Debug, Default)]
pub struct Isolated {
    pub outcome: RecordOutcome,
    /// Every verdict written or found stale (its lease taken over): its claim is done with.
    pub done: Vec<Lease>,
    /// The payments a transition was committed for.
    pub transitioned: Vec<String>,
    /// Verdicts the database refused (a data error no retry can fix), each on its own, with
    /// why in words.
    pub refused: Vec<(Recorded, String)>,
}

/// The database stopped before writing everything: the error, what is left to write, and
/// what was written before it.
#[derive(Debug)]
pub struct Interrupted {
    pub error: StoreError,
    pub remaining: Vec<Recorded>,
    pub written: Isolated,
}

/// Writes `items` like [`record_verdicts`], but a verdict the database refuses (a data error,
/// which no retry can fix) never takes the others with it: the failing batch is split into
/// smaller parts, and failing parts again, until the refused verdict stands alone; that one
/// comes back in [`Isolated::refused`] with the reason. An error of any other kind (a lost
/// connection, a timeout) stops the write: what is left comes back in
/// [`Interrupted::remaining`], for the caller to retry.
pub async fn record_isolated(
    pool: &PgPool,
    items: Vec<Recorded>,
    first_look: Option<Duration>,
) -> Result<Isolated, Interrupted> {
    let mut written = Isolated::default();
    let mut stack = vec![items];
    while let Some(mut chunk) = stack.pop() {
        let error = match record_listing(pool, &chunk, first_look).await {
            Ok(listed) => {
                written.outcome.add(listed.outcome);
                written.transitioned.extend(listed.transitioned);
                written.done.extend(chunk.iter().map(Recorded::lease));
                continue;
            }
            Err(error) => error,
        };
        if !is_refusal(&error) {
            stack.push(chunk);
            return Err(Interrupted {
                error,
                remaining: stack.into_iter().flatten().collect(),
                written,
            });
        }
        if chunk.len() > 1 {
            // About √n parts of about √n verdicts each: one refused verdict costs a few small
            // statements, and the others land in parts of a useful size (halving would send
            // every verdict again at each of log₂ n levels).
            let parts = chunk.len().isqrt().max(2);
            let size = chunk.len().div_ceil(parts);
            while chunk.len() > size {
                let tail = chunk.split_off(chunk.len() - size);
                stack.push(tail);
            }
            stack.push(chunk);
            continue;
        }
        if let Some(item) = chunk.pop() {
            let reason = refusal_reason(&item, &error);
            written.refused.push((item, reason));
        }
    }
    Ok(written)
}

impl RecordOutcome {
    fn add(&mut self, other: RecordOutcome) {
        self.applied += other.applied;
        self.transitions += other.transitions;
        self.flags_opened += other.flags_opened;
        self.flags_resolved += other.flags_resolved;
        self.money_events += other.money_events;
    }
}

/// The database refused the data (SQLSTATE classes 22 data exception, 23 integrity
/// constraint violation, 54 program limit exceeded), as opposed to failing to run the
/// statement at all: retrying the same rows cannot help, splitting them can.
pub fn is_refusal(error: &StoreError) -> bool {
    match error {
        StoreError::Query(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
            code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
        }),
        StoreError::Query(sqlx::Error::Encode(_)) => true,
        _ => false,
    }
}

/// Why a lone verdict was refused, naming the field when the rules can tell which.
fn refusal_reason(item: &Recorded, error: &StoreError) -> String {
    let database = match error {
        StoreError::Query(sqlx::Error::Database(db)) => match db.constraint() {
            Some(constraint) => format!("{} (constraint {constraint})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    };
    let field = item
        .unstorable_field()
        .map(|(field, problem)| format!("field `{field}` {problem}: "))
        .unwrap_or_default();
    text::clean(
        &format!("cannot store this answer: {field}the database refused it: {database}"),
        text::PROVIDER_TEXT_MAX_CHARS,
    )
}

impl Recorded {
    /// The claim this verdict is written under.
    pub fn lease(&self) -> Lease {
        Lease {
            payment_id: self.payment_id.clone(),
            token: self.lease_token,
        }
    }

    /// The first value of this verdict that the rules say PostgreSQL cannot store, if any.
    /// The provider's parser already refuses such values; this names the field should one
    /// slip through.
    pub fn unstorable_field(&self) -> Option<(&'static str, String)> {
        use crate::domain::rules::{amount_problem, timestamp_problem};
        let nul = |value: Option<&str>| {
            value
                .is_some_and(|v| v.contains('\0'))
                .then(|| "contains a NUL character".to_owned())
        };
        let v = &self.verdict;
        let invoice = self.invoice.as_ref();
        let checks: [(&'static str, Option<String>); 12] = [
            ("paymentStatus", nul(v.status.as_ref().map(|s| s.as_str()))),
            ("orderId", nul(invoice.and_then(|i| i.order_id.as_deref()))),
            (
                "freedomId",
                nul(invoice.and_then(|i| i.freedom_id.as_deref())),
            ),
            (
                "merchantId",
                nul(invoice.and_then(|i| i.merchant_id.as_deref())),
            ),
            (
                "amount",
                invoice.and_then(|i| i.amount).and_then(amount_problem),
            ),
            ("fee", invoice.and_then(|i| i.fee).and_then(amount_problem)),
            (
                "discount",
                invoice.and_then(|i| i.discount).and_then(amount_problem),
            ),
            ("dt", invoice.and_then(|i| i.dt).and_then(timestamp_problem)),
            (
                "lifetime",
                v.provider_expiry.and_then(|e| timestamp_problem(e.at)),
            ),
            ("last_error", nul(v.last_error.as_deref())),
            (
                "flag text",
                v.open
                    .iter()
                    .find_map(|f| nul(f.expected.as_deref()).or_else(|| nul(f.actual.as_deref()))),
            ),
            ("body", nul(self.raw_body.as_deref())),
        ];
        checks
            .into_iter()
            .find_map(|(field, problem)| problem.map(|p| (field, p)))
    }
}
