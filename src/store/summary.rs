//! Read-only summaries over a set of payments (all, or those whose id starts with a prefix).

use sqlx::PgPool;

use super::StoreError;

/// How far a set of payments has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub total: i64,
    /// With a terminal status (`success`, `error`, `incomplete`).
    pub settled: i64,
    /// With at least one open flag.
    pub flagged: i64,
    /// Settled or flagged.
    pub done: i64,
}

/// Expected and paid totals in one currency. Sums are PostgreSQL's exact `numeric` as text:
/// a sum of many amounts may exceed what `Decimal` holds, and no sum is ever rounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyTotals {
    pub currency: Option<String>,
    /// Payments expected in this currency, and their expected amounts.
    pub expected_payments: i64,
    pub expected: Option<String>,
    /// Payments the provider reports paid (`success`) in this currency, their amounts and fees.
    pub paid_payments: i64,
    pub paid: Option<String>,
    pub fees: Option<String>,
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
                count(*) filter (where status in ('success', 'error', 'incomplete')) as "settled!",
                count(*) filter (where cardinality(open_flags) > 0) as "flagged!",
                count(*) filter (where status in ('success', 'error', 'incomplete')
                                    or cardinality(open_flags) > 0) as "done!"
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

/// Expected totals by expected currency beside paid totals by the provider's currency: a
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
             from chosen where expected_currency is not null group by 1
         ),
         paid as (
             select currency, count(*) as n, sum(amount) as total, sum(fee) as fees
             from chosen where status = 'success' and currency is not null group by 1
         )
         select coalesce(e.currency, p.currency) as currency,
                coalesce(e.n, 0) as "expected_payments!", e.total::text as expected,
                coalesce(p.n, 0) as "paid_payments!", p.total::text as paid, p.fees::text as fees
         from expected e full join paid p on p.currency = e.currency
         order by 1"#,
        like_prefix(id_prefix)
    )
    .fetch_all(pool)
    .await?)
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
    /// `(kind, open flags)`.
    pub open_by_kind: Vec<(&'static str, i64)>,
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
    let by_kind: Vec<(String, i64)> = sqlx::query!(
        r#"select kind, count(*) as "flags!" from recon.discrepancies
         where resolved_at is null group by kind"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.kind, r.flags))
    .collect();
    // Ages are seconds for a gauge, never money: float8 is right here.
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
        open_by_kind: crate::domain::FlagKind::ALL
            .iter()
            .map(|kind| (kind.as_str(), count_of(&by_kind, kind.as_str())))
            .collect(),
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
