//! Read-only summaries over a set of payments (all, or those whose id starts with a prefix).

use sqlx::PgPool;

use super::StoreError;
use crate::domain::{FlagClass, FlagKind};

/// How far a set of payments has come, by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub total: i64,
    pub paid: i64,
    pub failed: i64,
    pub expired_unpaid: i64,
    /// Still in progress, with a flag a person must act on (not found, unknown status…).
    pub in_progress_flagged: i64,
    /// With at least one open flag a person must act on, whatever the outcome.
    pub need_a_person: i64,
    /// Paid, failed, expired unpaid, or waiting for a person: the sum of the four above.
    pub done: i64,
}

/// Expected and received totals in one currency, by the definitions of the daily summary:
/// expected amounts of every payment expected in this currency, received amounts of the
/// payments paid in it. Sums are PostgreSQL's exact `numeric` as text: a sum of many amounts
/// may exceed what `Decimal` holds, and no sum is ever rounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyTotals {
    pub currency: Option<String>,
    /// Payments expected in this currency, and their expected amounts.
    pub expected_payments: i64,
    pub expected: Option<String>,
    /// Payments the provider reports paid (`success`) in this currency, their amounts and the
    /// fees it stated.
    pub received_payments: i64,
    pub received: Option<String>,
    pub fees: Option<String>,
    /// Payments received whose fee the provider did not state.
    pub without_fee: i64,
}

fn like_prefix(prefix: &str) -> String {
    let escaped = prefix
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("{escaped}%")
}

pub async fn progress(pool: &PgPool, id_prefix: &str) -> Result<Progress, StoreError> {
    Ok(sqlx::query_as!(
        Progress,
        r#"select count(*) as "total!",
                count(*) filter (where outcome = 'paid') as "paid!",
                count(*) filter (where outcome = 'failed') as "failed!",
                count(*) filter (where outcome = 'expired_unpaid') as "expired_unpaid!",
                count(*) filter (where outcome = 'in_progress' and needs_action)
                    as "in_progress_flagged!",
                count(*) filter (where needs_action) as "need_a_person!",
                count(*) filter (where outcome <> 'in_progress' or needs_action) as "done!"
         from recon.reconciliation where payment_id like $1"#,
        like_prefix(id_prefix)
    )
    .fetch_one(pool)
    .await?)
}

/// `(status, payments)`, most common first; `None` is "no answer yet".
pub async fn status_counts(
    pool: &PgPool,
    id_prefix: &str,
) -> Result<Vec<(Option<String>, i64)>, StoreError> {
    let rows = sqlx::query!(
        r#"select status, count(*) as "payments!" from recon.reconciliation
         where payment_id like $1
         group by status order by count(*) desc, status"#,
        like_prefix(id_prefix)
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.status, r.payments)).collect())
}

/// Expected totals by expected currency beside received totals by the received currency: a
/// payment expected in KZT but paid in USD counts in both rows, as it should.
pub async fn currency_totals(
    pool: &PgPool,
    id_prefix: &str,
) -> Result<Vec<CurrencyTotals>, StoreError> {
    Ok(sqlx::query_as!(
        CurrencyTotals,
        r#"with chosen as (
             select * from recon.reconciliation where payment_id like $1
         ),
         expected as (
             select expected_currency as currency, count(*) as n, sum(expected_amount) as total
             from chosen where expected_currency is not null and expected_amount is not null
             group by 1
         ),
         received as (
             select received_currency as currency, count(*) as n, sum(received_amount) as total,
                    sum(fee) as fees, count(*) filter (where fee is null) as without_fee
             from chosen where outcome = 'paid' and received_currency is not null group by 1
         )
         select coalesce(e.currency, r.currency) as currency,
                coalesce(e.n, 0) as "expected_payments!", e.total::text as expected,
                coalesce(r.n, 0) as "received_payments!", r.total::text as received,
                r.fees::text as fees, coalesce(r.without_fee, 0) as "without_fee!"
         from expected e full join received r on r.currency = e.currency
         order by 1"#,
        like_prefix(id_prefix)
    )
    .fetch_all(pool)
    .await?)
}

/// `(outcome, payments)`: paid, failed, expired unpaid, in progress.
pub async fn outcome_counts(
    pool: &PgPool,
    id_prefix: &str,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query!(
        r#"select outcome as "outcome!", count(*) as "payments!" from recon.reconciliation
         where payment_id like $1
         group by outcome
         order by array_position(array['paid', 'failed', 'expired_unpaid', 'in_progress'], outcome)"#,
        like_prefix(id_prefix)
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.outcome, r.payments)).collect())
}

/// Flags a rule closed as they opened, by rule (`rule:expired_unpaid`), among a set of
/// payments.
pub async fn closed_by_rules(
    pool: &PgPool,
    id_prefix: &str,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query!(
        r#"select resolved_by as "rule!", count(*) as "flags!" from recon.discrepancies
         where payment_id like $1 and resolved_by like 'rule:%'
         group by resolved_by order by resolved_by"#,
        like_prefix(id_prefix)
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.rule, r.flags)).collect())
}

/// `(kind, open flags)` by kind.
pub async fn open_flag_counts(
    pool: &PgPool,
    id_prefix: &str,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query!(
        r#"select kind as "kind!", count(*) as "flags!" from recon.open_discrepancies
         where payment_id like $1
         group by kind order by kind"#,
        like_prefix(id_prefix)
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.kind, r.flags)).collect())
}

/// The deployment-wide gauges `/metrics` exposes. Every label value comes from a closed set
/// (known statuses, `unknown`, `no_answer`; the flag kinds), never from provider text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    /// `(status, payments)`: the five documented statuses, `unknown` for any other value the
    /// provider sent, `no_answer` before the first answer.
    pub payments_by_status: Vec<(&'static str, i64)>,
    /// `(kind, open flags)`, for the kinds a person must act on (class `action`).
    pub open_by_kind: Vec<(&'static str, i64)>,
    /// How long the oldest of those flags has been open, in seconds (0 when none).
    pub oldest_open_action_flag_age_seconds: f64,
    /// Payments due now and not held by a live lease.
    pub backlog_due: i64,
    /// How long the oldest of those has been due, in seconds (0 when none).
    pub oldest_due_age_seconds: f64,
    /// Of those, deadline checks and first polls (claimed before routine rechecks)...
    pub backlog_due_urgent: i64,
    /// ...and how long the oldest of them has been due, in seconds (0 when none).
    pub oldest_urgent_due_age_seconds: f64,
    /// Payments parked because the daemon cannot read them (`recon.parked_payments`).
    pub parked: i64,
    /// The webhook's backlog, when a webhook is configured.
    pub webhook: Option<super::events::Backlog>,
}

/// The `status` label values, in order.
pub const STATUS_LABELS: [&str; 7] = [
    "success",
    "error",
    "incomplete",
    "process",
    "waiting",
    "unknown",
    "no_answer",
];

/// `webhook_types`: the event types the webhook sends, when one is configured.
pub async fn gauges(pool: &PgPool, webhook_types: Option<&[String]>) -> Result<Gauges, StoreError> {
    let by_status: Vec<(String, i64)> = sqlx::query!(
        r#"select case when status is null then 'no_answer'
                     when status in ('success', 'error', 'incomplete', 'process', 'waiting')
                         then status
                     else 'unknown' end as "label!",
                count(*) as "payments!"
         from recon.payments group by 1"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.label, r.payments))
    .collect();
    let action_kinds: Vec<&str> = FlagKind::ALL
        .iter()
        .filter(|kind| kind.class() == FlagClass::Action)
        .map(|kind| kind.as_str())
        .collect();
    // Ages are seconds for a gauge, never money: float8 is right here.
    let open = sqlx::query!(
        r#"select kind as "kind!", count(*) as "flags!",
                  extract(epoch from now() - min(detected_at))::float8 as "oldest!"
         from recon.discrepancies
         where resolved_at is null and kind = any($1)
         group by kind"#,
        &action_kinds as &[&str],
    )
    .fetch_all(pool)
    .await?;
    let oldest_open_action_flag_age_seconds = open.iter().map(|r| r.oldest).fold(0.0, f64::max);
    let by_kind: Vec<(String, i64)> = open.into_iter().map(|r| (r.kind, r.flags)).collect();
    let due = sqlx::query!(
        r#"select count(*) as "backlog!",
                coalesce(extract(epoch from now() - min(next_check_at))::float8, 0) as "oldest!",
                count(*) filter (where next_check_urgent) as "urgent!",
                coalesce(extract(epoch from now()
                         - min(next_check_at) filter (where next_check_urgent))::float8, 0)
                    as "oldest_urgent!",
                (select count(*) from recon.payments where parked_at is not null) as "parked!"
         from recon.payments
         where next_check_at <= now()
           and (lease_expires_at is null or lease_expires_at <= now())"#
    )
    .fetch_one(pool)
    .await?;
    let (backlog_due, oldest_due_age_seconds, backlog_due_urgent, oldest_urgent, parked) = (
        due.backlog,
        due.oldest,
        due.urgent,
        due.oldest_urgent,
        due.parked,
    );
    let count_of = |rows: &[(String, i64)], label: &str| {
        rows.iter()
            .filter(|(value, _)| value == label)
            .map(|(_, n)| n)
            .sum::<i64>()
    };
    Ok(Gauges {
        payments_by_status: STATUS_LABELS
            .iter()
            .map(|&label| (label, count_of(&by_status, label)))
            .collect(),
        open_by_kind: FlagKind::ALL
            .iter()
            .filter(|kind| kind.class() == FlagClass::Action)
            .map(|kind| (kind.as_str(), count_of(&by_kind, kind.as_str())))
            .collect(),
        oldest_open_action_flag_age_seconds,
        backlog_due,
        oldest_due_age_seconds,
        backlog_due_urgent,
        oldest_urgent_due_age_seconds: oldest_urgent,
        parked,
        webhook: match webhook_types {
            Some(types) => Some(super::events::backlog(pool, types).await?),
            None => None,
        },
    })
}

/// When each of `ids` was first recorded paid or failed: the `observed_at` of its first
/// transition to `success` or `error`. Ids without one are left out.
pub async fn outcome_observed_at(
    pool: &PgPool,
    ids: &[&str],
) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, StoreError> {
    let rows = sqlx::query!(
        r#"select payment_id, min(observed_at) as "observed_at!"
         from recon.status_transitions
         where payment_id = any($1) and to_status in ('success', 'error')
         group by payment_id"#,
        ids as &[&str],
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.payment_id, r.observed_at))
        .collect())
}
