//! Read-only summaries over a set of payments (all, or those whose id starts with a prefix).

use rust_decimal::Decimal;
use sqlx::PgPool;

use super::StoreError;

/// How far a set of payments has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Progress {
    pub total: i64,
    /// With a terminal status (`success`, `error`, `incomplete`).
    pub settled: i64,
    /// With at least one open flag.
    pub flagged: i64,
    /// Settled or flagged.
    pub done: i64,
}

/// Expected and paid totals in one currency.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CurrencyTotals {
    pub currency: Option<String>,
    /// Payments expected in this currency, and their expected amounts.
    pub expected_payments: i64,
    pub expected: Option<Decimal>,
    /// Payments the provider reports paid (`success`) in this currency, their amounts and fees.
    pub paid_payments: i64,
    pub paid: Option<Decimal>,
    pub fees: Option<Decimal>,
}

fn like_prefix(prefix: &str) -> String {
    let escaped = prefix
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("{escaped}%")
}

pub async fn progress(pool: &PgPool, id_prefix: &str) -> Result<Progress, StoreError> {
    Ok(sqlx::query_as(
        "select count(*) as total,
                count(*) filter (where status in ('success', 'error', 'incomplete')) as settled,
                count(*) filter (where cardinality(open_flags) > 0) as flagged,
                count(*) filter (where status in ('success', 'error', 'incomplete')
                                    or cardinality(open_flags) > 0) as done
         from recon.reconciliation where payment_id like $1",
    )
    .bind(like_prefix(id_prefix))
    .fetch_one(pool)
    .await?)
}

/// `(status, payments)`, most common first; `None` is "no answer yet".
pub async fn status_counts(
    pool: &PgPool,
    id_prefix: &str,
) -> Result<Vec<(Option<String>, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "select status, count(*) from recon.reconciliation where payment_id like $1
         group by status order by count(*) desc, status",
    )
    .bind(like_prefix(id_prefix))
    .fetch_all(pool)
    .await?)
}

/// Expected totals by expected currency beside paid totals by the provider's currency: a
/// payment expected in KZT but paid in USD counts in both rows, as it should.
pub async fn currency_totals(
    pool: &PgPool,
    id_prefix: &str,
) -> Result<Vec<CurrencyTotals>, StoreError> {
    Ok(sqlx::query_as(
        "with chosen as (
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
                coalesce(e.n, 0) as expected_payments, e.total as expected,
                coalesce(p.n, 0) as paid_payments, p.total as paid, p.fees
         from expected e full join paid p on p.currency = e.currency
         order by 1",
    )
    .bind(like_prefix(id_prefix))
    .fetch_all(pool)
    .await?)
}

/// `(kind, open flags)` by kind.
pub async fn open_flag_counts(
    pool: &PgPool,
    id_prefix: &str,
) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "select kind, count(*) from recon.open_discrepancies where payment_id like $1
         group by kind order by kind",
    )
    .bind(like_prefix(id_prefix))
    .fetch_all(pool)
    .await?)
}

/// The deployment-wide gauges `/metrics` exposes, read at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    /// `(status, payments)`; `no_answer` before the first answer.
    pub payments_by_status: Vec<(String, i64)>,
    /// `(kind, open flags)`.
    pub open_by_kind: Vec<(String, i64)>,
    /// Payments due now and not held by a live lease.
    pub backlog_due: i64,
    /// How long the oldest of those has been due, in seconds (0 when none).
    pub oldest_due_age_seconds: f64,
}

pub async fn gauges(pool: &PgPool) -> Result<Gauges, StoreError> {
    let payments_by_status = sqlx::query_as(
        "select coalesce(status, 'no_answer'), count(*) from recon.payments group by 1 order by 1",
    )
    .fetch_all(pool)
    .await?;
    let open_by_kind = sqlx::query_as(
        "select kind, count(*) from recon.discrepancies where resolved_at is null
         group by kind order by kind",
    )
    .fetch_all(pool)
    .await?;
    let (backlog_due, oldest_due_age_seconds): (i64, f64) = sqlx::query_as(
        "select count(*),
                coalesce(extract(epoch from now() - min(next_check_at))::float8, 0)
         from recon.payments
         where next_check_at <= now()
           and (lease_expires_at is null or lease_expires_at <= now())",
    )
    .fetch_one(pool)
    .await?;
    Ok(Gauges {
        payments_by_status,
        open_by_kind,
        backlog_due,
        oldest_due_age_seconds,
    })
}
