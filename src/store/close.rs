//! Closing a month (migration `closing_a_month`): the figures signed, the closes and reopens
//! in order, and the adjustments booked against closed months since.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures_util::stream::BoxStream;
use sqlx::PgPool;

use super::StoreError;

/// What a close signed (or, dry, would sign).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The close's row in `recon.period_closes`; `None` for a dry run.
    pub id: Option<i64>,
    /// The month's summary rows as signed (JSON, as stored).
    pub rows: usize,
    /// SHA-256 (hex) of the figures' text.
    pub sha256: String,
}

/// Closes `month` (its first day) with `note`, on behalf of `by`; with `dry_run`, only says
/// what it would sign. The database keeps the order (a month that ended, the one after the
/// last closed) and refuses in words.
///
/// The same transaction signs the month's money to the bank as it stands
/// (`recon.settlement_closes`: the rows of `report --settlement`, `bank_currency` its
/// account's).
pub async fn close_month(
    pool: &PgPool,
    month: NaiveDate,
    note: &str,
    by: &str,
    dry_run: bool,
    bank_currency: &str,
) -> Result<Signed, StoreError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query!(
        r#"select id, jsonb_array_length(figures) as "rows!", figures_sha256 as "sha256!"
           from recon.close_month($1, $2, $3, $4)"#,
        month,
        note,
        by,
        dry_run,
    )
    .fetch_one(&mut *tx)
    .await?;
    if let Some(id) = row.id {
        let last = month
            .checked_add_months(chrono::Months::new(1))
            .and_then(|next| next.pred_opt())
            .unwrap_or(month);
        let figures = super::settlement::month_money(&mut *tx, month, last, bank_currency).await?;
        let figures = serde_json::to_value(&figures).unwrap_or_default();
        sqlx::query!(
            "insert into recon.settlement_closes (close_id, month, bank_currency, figures, figures_sha256)
             values ($1, $2, $3, $4, encode(sha256(convert_to($4::jsonb::text, 'UTF8')), 'hex'))",
            id,
            month,
            bank_currency,
            figures,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Signed {
        id: row.id,
        rows: usize::try_from(row.rows).unwrap_or_default(),
        sha256: row.sha256,
    })
}

/// Reopens `month`, the latest closed one; returns the reopen's row.
pub async fn reopen_month(
    pool: &PgPool,
    month: NaiveDate,
    reason: &str,
    by: &str,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select recon.reopen_month($1, $2, $3) as "id!""#,
        month,
        reason,
        by
    )
    .fetch_one(pool)
    .await?)
}

/// A closed month as a report names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedMonth {
    pub month: NaiveDate,
    pub closed_at: DateTime<Utc>,
    /// `closed_at` on the reporting zone's clock.
    pub closed_local: NaiveDateTime,
    pub db_role: String,
    pub on_behalf_of: String,
    pub sha256: String,
    /// Adjustments booked against it since it closed.
    pub adjustments: i64,
}

/// The closed months that hold a reporting day from `from` to `to` (inclusive; null: open),
/// as they hold now (the latest close of each).
pub async fn closed_months(
    pool: &PgPool,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Vec<ClosedMonth>, StoreError> {
    Ok(sqlx::query_as!(
        ClosedMonth,
        r#"select c.month as "month!", c.at as "closed_at!",
                  c.at at time zone recon.report_zone() as "closed_local!",
                  c.db_role as "db_role!", c.on_behalf_of as "on_behalf_of!",
                  c.figures_sha256 as "sha256!",
                  (select count(*) from recon.adjustments a
                   where a.original_day >= c.month
                     and a.original_day < (c.month + interval '1 month')::date
                     and a.booked_at >= c.at) as "adjustments!"
           from recon.current_closes() c
           where ($1::date is null or (c.month + interval '1 month')::date > $1)
             and ($2::date is null or c.month <= $2)
           order by c.month"#,
        from,
        to,
    )
    .fetch_all(pool)
    .await?)
}

/// Adjustments booked from `from` to `to`, by the closed month they change, with what they
/// add to its figures, per currency (basis created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentTotal {
    pub month: NaiveDate,
    pub currency: Option<String>,
    pub adjustments: i64,
    /// Net changes, as PostgreSQL's exact text; `None` when nothing changed.
    pub payments: i64,
    pub expected_amount: Option<String>,
    pub received_amount: Option<String>,
    pub fee: Option<String>,
    pub needs_action: i64,
}

pub async fn adjustment_totals(
    pool: &PgPool,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Vec<AdjustmentTotal>, StoreError> {
    Ok(sqlx::query_as!(
        AdjustmentTotal,
        r#"with booked as (
               select a.* from recon.adjustments a
               where ($1::date is null or a.booked_day >= $1)
                 and ($2::date is null or a.booked_day <= $2)
           )
           select date_trunc('month', b.original_day)::date as "month!", l.currency,
                  count(distinct b.id) as "adjustments!",
                  coalesce(sum(l.payments), 0)::int8 as "payments!",
                  nullif(sum(l.expected_amount), 0)::text as expected_amount,
                  nullif(sum(l.received_amount), 0)::text as received_amount,
                  nullif(sum(l.fee), 0)::text as fee,
                  coalesce(sum(l.needs_action), 0)::int8 as "needs_action!"
           from booked b
           cross join lateral recon.adjustment_legs(b) l
           group by 1, 2
           order by 1, 2"#,
        from,
        to,
    )
    .fetch_all(pool)
    .await?)
}

/// One adjustment, for `report --adjustments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentRow {
    pub adjustment_id: i64,
    pub booked_day: NaiveDate,
    pub booked_at: DateTime<Utc>,
    pub booked_local: NaiveDateTime,
    pub payment_id: String,
    pub original_day: NaiveDate,
    pub cause_kind: String,
    pub cause: String,
    pub old_status: Option<String>,
    pub new_status: Option<String>,
    pub old_amount: Option<rust_decimal::Decimal>,
    pub new_amount: Option<rust_decimal::Decimal>,
    pub old_currency: Option<String>,
    pub new_currency: Option<String>,
    pub old_fee: Option<rust_decimal::Decimal>,
    pub new_fee: Option<rust_decimal::Decimal>,
    pub old_expected_amount: Option<rust_decimal::Decimal>,
    pub new_expected_amount: Option<rust_decimal::Decimal>,
    pub old_expected_currency: Option<String>,
    pub new_expected_currency: Option<String>,
    pub old_open_flags: Vec<String>,
    pub new_open_flags: Vec<String>,
}

/// The adjustments booked from `from` to `to` (inclusive; null: open), in order.
pub fn adjustment_rows<'a>(
    pool: &'a PgPool,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> BoxStream<'a, Result<AdjustmentRow, sqlx::Error>> {
    sqlx::query_as!(
        AdjustmentRow,
        r#"select a.id as "adjustment_id!", a.booked_day as "booked_day!",
                  a.booked_at as "booked_at!",
                  a.booked_at at time zone recon.report_zone() as "booked_local!",
                  a.payment_id as "payment_id!", a.original_day as "original_day!",
                  a.cause_kind as "cause_kind!", a.cause as "cause!",
                  a.old_status, a.new_status, a.old_amount, a.new_amount,
                  a.old_currency, a.new_currency, a.old_fee, a.new_fee,
                  a.old_expected_amount, a.new_expected_amount,
                  a.old_expected_currency, a.new_expected_currency,
                  coalesce(a.old_open_flags, '{}') as "old_open_flags!",
                  coalesce(a.new_open_flags, '{}') as "new_open_flags!"
           from recon.adjustments a
           where ($1::date is null or a.booked_day >= $1)
             and ($2::date is null or a.booked_day <= $2)
           order by a.booked_day, a.id"#,
        from,
        to,
    )
    .fetch(pool)
}
