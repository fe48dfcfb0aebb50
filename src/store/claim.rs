//! Claiming due payments under a lease, and giving claims back.
//!
//! A claim gives a due row a fresh `lease_token` and a `lease_expires_at`. A leased row is not
//! claimable until its lease runs out, so a crashed daemon's claims come back by themselves,
//! and a write carrying a stale token (its lease was taken over) is ignored. The lease
//! columns are not indexed, so a claim is a HOT update: no index is touched.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgExecutor, PgPool};

use super::{StoreError, millis};
use crate::domain::rules::text_problem;
use crate::domain::{
    CallbackClaim, ClosedFlag, ExpectedValues, Expiry, FlagKind, LifetimeSource, ORDER_ID_MAX_LEN,
    PaymentId, ProviderStatus, Resolver, Tracked, parse_amount,
};

/// A payment this process now holds a lease on.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub tracked: Tracked,
    pub lease_token: i64,
    /// The database's clock at the claim: observation times count from here, so every
    /// instance measures time on the same clock.
    pub claimed_at: DateTime<Utc>,
    /// This process's monotonic clock at the claim: lease deadlines count from here.
    pub claimed_instant: Instant,
    /// The row was still leased by an earlier claim whose lease ran out (a crashed or stuck
    /// daemon).
    pub recovered: bool,
}

struct ClaimedRow {
    payment_id: String,
    lease_token: i64,
    /// Why an intake value cannot be decoded; such values come back null.
    problem: Option<String>,
    expected_amount: Option<Decimal>,
    expected_currency: Option<String>,
    order_id: Option<String>,
    created_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    status: Option<String>,
    lifetime_ends_at: Option<DateTime<Utc>>,
    lifetime_source: Option<String>,
    checks: i32,
    attempts: i32,
    not_found_since: Option<DateTime<Utc>>,
    settled_at: Option<DateTime<Utc>>,
    deadline_missed_at: Option<DateTime<Utc>>,
    latest_flags: Option<String>,
    callback_id: Option<i64>,
    callback_received_at: Option<DateTime<Utc>>,
    callback_paid: Option<bool>,
    callback_amount: Option<String>,
    callback_currency: Option<String>,
    callback_after_transition: bool,
    claimed_at: DateTime<Utc>,
    recovered: bool,
}

/// The claim statement (`sql/claim.sql`): `$1` due by (null: now), `$2` limit, `$3` owner,
/// `$4` lease in milliseconds, `$5` how old (milliseconds) a payment must be for its first
/// poll, `$6` how long before it is due (milliseconds) a routine check is taken. Checked at
/// compile time like every statement; public so the benchmark can show its plan.
///
/// `problem` is the schema's own verdict on the intake values that could not even be decoded
/// (an amount or a time past the rules: `NaN`, `infinity`), possible only if someone dropped
/// a constraint. Such a row is parked before any of its values is decoded, so no value can
/// fail or crash the claim of the others; the text rules (id, order id) are checked as the
/// row is read, in Rust, where they cost less than in the claim's statement.
pub const CLAIM_SQL: &str = include_str!("sql/claim.sql");

/// A claimed row the daemon cannot read back (a value past the schema's rules). It is parked,
/// not polled: see [`park_unreadable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub payment_id: String,
    pub lease_token: i64,
    pub reason: String,
}

/// What one claim query took.
#[derive(Debug, Clone, Default)]
pub struct ClaimBatch {
    pub claims: Vec<Claimed>,
    pub unreadable: Vec<Unreadable>,
}

impl ClaimBatch {
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty() && self.unreadable.is_empty()
    }
}

/// Claims up to `limit` payments due at or before `due_by` (the database's `now()` when
/// `None`), deadline checks and first polls first, oldest first, skipping rows another
/// transaction holds. A routine check (a recheck, a confirmation) that falls due within
/// `claim_ahead` after `due_by` is taken too, when the answer that scheduled it came before
/// `due_by` and was not a failure: see [`crate::domain::Sweeps::claim_ahead`] for why, and
/// `Duration::ZERO` to take only what is due.
pub async fn claim_due<'e>(
    executor: impl PgExecutor<'e>,
    owner: &str,
    limit: u32,
    lease: Duration,
    due_by: Option<DateTime<Utc>>,
    first_poll_after: Duration,
    claim_ahead: Duration,
) -> Result<ClaimBatch, StoreError> {
    // A value that could not be decoded comes back null with its `problem`, so one row
    // that cannot be read is set aside, not an error for the whole chunk.
    let rows = sqlx::query_file_as!(
        ClaimedRow,
        "src/store/sql/claim.sql",
        due_by,
        i64::from(limit),
        owner,
        millis(lease),
        millis(first_poll_after),
        millis(claim_ahead),
    )
    .fetch_all(executor)
    .await?;
    let now = Instant::now();
    let mut batch = ClaimBatch::default();
    for row in rows {
        match row.into_claimed(now) {
            Ok(claim) => batch.claims.push(claim),
            Err(unreadable) => batch.unreadable.push(unreadable),
        }
    }
    Ok(batch)
}

/// Parks unreadable claims: not polled again until `recheck` takes them back (after someone
/// fixed the row), with the reason in `last_error` and the time in `parked_at`, so they
/// neither block a sweep nor vanish from view (`recon.parked_payments`, the
/// `freedompay_recon_payments_parked` gauge).
pub async fn park_unreadable(pool: &PgPool, rows: &[Unreadable]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.payment_id.as_str()).collect();
    let tokens: Vec<i64> = rows.iter().map(|r| r.lease_token).collect();
    let reasons: Vec<String> = rows
        .iter()
        .map(|r| crate::text::clean(&r.reason, crate::text::PROVIDER_TEXT_MAX_CHARS))
        .collect();
    sqlx::query!(
        "update recon.payments p
         set lease_token = null, lease_owner = null, lease_expires_at = null,
             next_check_at = null, parked_at = now(),
             last_error = 'parked: cannot read this row: ' || u.reason
                          || '; fix the row, then run `freedompay-recon recheck` with its id'
         from unnest($1::text[], $2::int8[], $3::text[]) as u(payment_id, lease_token, reason)
         where p.payment_id = u.payment_id and p.lease_token = u.lease_token",
        &ids as &[&str],
        &tokens,
        &reasons,
    )
    .execute(pool)
    .await?;
    Ok(())
}

impl ClaimedRow {
    fn into_claimed(self, claimed_instant: Instant) -> Result<Claimed, Unreadable> {
        let unreadable = |reason: String| Unreadable {
            payment_id: self.payment_id.clone(),
            lease_token: self.lease_token,
            reason,
        };
        if let Some(problem) = &self.problem {
            return Err(unreadable(problem.clone()));
        }
        let created_at = self
            .created_at
            .ok_or_else(|| unreadable("created_at is missing".into()))?;
        // The schema's text rules, as `recon.text_problem` words them.
        let text_rule = |column: &str, value: &str, max: usize| match text_problem(value, max) {
            Some(problem) => Err(unreadable(format!("{column} {problem}"))),
            None => Ok(()),
        };
        text_rule("payment_id", &self.payment_id, PaymentId::MAX_LEN)?;
        if let Some(order_id) = &self.order_id {
            text_rule("order_id", order_id, ORDER_ID_MAX_LEN)?;
        }
        let payment_id = PaymentId::parse(&self.payment_id)
            .map_err(|e| unreadable(format!("payment_id: {e}")))?;
        let currency = self
            .expected_currency
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| unreadable(format!("expected_currency: {e}")))?;
        let provider_expiry = self.lifetime_ends_at.zip(
            self.lifetime_source
                .as_deref()
                .and_then(LifetimeSource::parse),
        );
        let (open_flags, closed_flags) = latest_flags(self.latest_flags.as_deref())
            .map_err(|e| unreadable(format!("its flags cannot be read: {e}")))?;
        Ok(Claimed {
            tracked: Tracked {
                payment_id,
                expected: ExpectedValues {
                    amount: self.expected_amount,
                    currency,
                    order_id: self.order_id,
                },
                created_at,
                merchant_expires_at: self.expires_at,
                status: self.status.as_deref().map(ProviderStatus::parse),
                provider_expiry: provider_expiry.map(|(at, source)| Expiry { at, source }),
                checks: self.checks,
                attempts: self.attempts,
                not_found_since: self.not_found_since,
                settled_at: self.settled_at,
                deadline_missed_at: self.deadline_missed_at,
                open_flags,
                closed_flags,
                callback: self.callback_id.zip(self.callback_received_at).map(
                    |(id, received_at)| CallbackClaim {
                        id,
                        received_at,
                        paid: self.callback_paid,
                        amount: self
                            .callback_amount
                            .as_deref()
                            .and_then(|a| parse_amount(a).ok()),
                        currency: self
                            .callback_currency
                            .as_deref()
                            .and_then(|c| c.parse().ok()),
                        after_last_transition: self.callback_after_transition,
                    },
                ),
            },
            lease_token: self.lease_token,
            claimed_at: self.claimed_at,
            claimed_instant,
            recovered: self.recovered,
        })
    }
}

/// One flag as the claim reads it: `[kind, open, resolved_by, expected, actual]`.
type LatestFlag = (String, bool, Option<String>, Option<String>, Option<String>);

/// The claim's latest flag of each kind, as open kinds and the kinds a person or a rule
/// closed (with the values they closed). A kind this build does not know is left out.
fn latest_flags(
    json: Option<&str>,
) -> Result<(BTreeSet<FlagKind>, BTreeMap<FlagKind, ClosedFlag>), serde_json::Error> {
    let mut open = BTreeSet::new();
    let mut closed = BTreeMap::new();
    let flags: Vec<LatestFlag> = match json {
        Some(json) => serde_json::from_str(json)?,
        None => Vec::new(),
    };
    for (kind, is_open, resolved_by, expected, actual) in flags {
        let Ok(kind) = kind.parse::<FlagKind>() else {
            continue;
        };
        if is_open {
            open.insert(kind);
        } else if resolved_by.as_deref() != Some(Resolver::Cleared.resolved_by().as_str()) {
            closed.insert(kind, ClosedFlag { expected, actual });
        }
    }
    Ok((open, closed))
}

/// A claim on one payment: its id and the token the claim wrote. Every write and release is
/// conditional on the token, so a claim another sweep has taken over changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub payment_id: PaymentId,
    pub token: i64,
}

/// Gives back claims that were not completed (shutdown, a lease about to run out): the
/// payments are claimable again at once (they are still due). Only rows still holding the
/// given tokens are touched.
pub async fn release(pool: &PgPool, claims: &[Lease]) -> Result<u64, StoreError> {
    if claims.is_empty() {
        return Ok(0);
    }
    let (ids, tokens): (Vec<&str>, Vec<i64>) = claims
        .iter()
        .map(|lease| (lease.payment_id.as_str(), lease.token))
        .unzip();
    let result = sqlx::query!(
        "update recon.payments p
         set lease_token = null, lease_owner = null, lease_expires_at = null
         from unnest($1::text[], $2::int8[]) as c(payment_id, lease_token)
         where p.payment_id = c.payment_id and p.lease_token = c.lease_token",
        &ids as &[&str],
        &tokens,
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// A payment other than `except` that the provider has answered with an invoice before (the
/// reference for confirming a credentials failure), or `None` when there is none yet.
pub async fn answered_payment_other_than(
    pool: &PgPool,
    except: &PaymentId,
) -> Result<Option<PaymentId>, StoreError> {
    let id: Option<String> = sqlx::query_scalar!(
        "select payment_id from recon.payments
         where status is not null and parked_at is null and payment_id <> $1
         limit 1",
        except.as_str(),
    )
    .fetch_optional(pool)
    .await?;
    Ok(id.and_then(|id| PaymentId::parse(&id).ok()))
}
