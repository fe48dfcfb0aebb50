//! The queries behind `freedompay-recon digest`: what happened over a span of reporting days.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::StoreError;

/// Payments that reached an outcome in the period, by outcome and currency: paid, failed or
/// expired unpaid (`incomplete` when it settled, or unpaid past its deadline when that was
/// seen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// `paid`, `failed` or `expired_unpaid`.
    pub outcome: String,
    /// The currency of the amount (the invoice's); none when the provider named none.
    pub currency: Option<String>,
    pub payments: i64,
    /// Paid: the amounts received; failed or expired: the amounts invoiced. Summed exactly
    /// (`numeric` as text); none when unknown.
    pub amount: Option<String>,
}

/// An open flag a person must act on, for the list of the oldest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenFlag {
    pub payment_id: String,
    pub kind: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub detected_at: DateTime<Utc>,
    /// The payment's status now (`no_answer` before the first answer).
    pub status: String,
}

/// The reporting zone and yesterday in it.
pub async fn yesterday(pool: &PgPool) -> Result<(String, NaiveDate), StoreError> {
    let row = sqlx::query!(
        r#"select tz as "timezone!", ((now() at time zone tz)::date - 1) as "yesterday!"
           from (select coalesce(nullif(current_setting('recon.timezone', true), ''),
                                 'Asia/Almaty') as tz) zone"#
    )
    .fetch_one(pool)
    .await?;
    Ok((row.timezone, row.yesterday))
}

/// Payments that reached an outcome in the days `from..=to`: paid or failed, by the day it
/// was first seen; expired unpaid, by the day it was first seen unpaid past its deadline (or
/// `incomplete`), so a payment that expires late one day and turns `incomplete` the next is
/// counted on the first day, once.
pub async fn outcomes(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Outcome>, StoreError> {
    Ok(sqlx::query_as!(
        Outcome,
        // Two disjoint branches (paid and failed are never expired), each read through the
        // index on its own time column: the cost of the days asked for.
        r#"select outcome as "outcome!", currency, count(*) as "payments!",
                  sum(amount)::text as amount
           from (select recon.outcome(status, deadline_missed_at) as outcome, currency, amount
                 from recon.payments
                 where status in ('success', 'error')
                   and settled_at >= recon.day_start($1)
                   and settled_at < recon.day_start($2::date + 1)
                 union all
                 select recon.outcome(status, deadline_missed_at), currency, amount
                 from recon.payments
                 where recon.outcome(status, deadline_missed_at) = 'expired_unpaid'
                   and coalesce(deadline_missed_at, settled_at) >= recon.day_start($1)
                   and coalesce(deadline_missed_at, settled_at) < recon.day_start($2::date + 1)
                ) settled
           group by 1, 2
           order by array_position(array['paid', 'failed', 'expired_unpaid'], outcome), 2"#,
        from,
        to,
    )
    .fetch_all(pool)
    .await?)
}

/// `(kind, flags)` a person must act on (class `action`) opened in the days `from..=to`, and
/// resolved in them (by anyone). Expired payments are outcomes, counted there instead.
pub async fn flag_changes(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>), StoreError> {
    let rows = sqlx::query!(
        // Opened (the days' partitions, by their time index) and resolved (by the index on
        // resolved_at), counted apart: each reads only the days asked for.
        r#"select kind as "kind!",
                  count(*) filter (where opened) as "opened!",
                  count(*) filter (where not opened) as "resolved!"
           from (select kind, true as opened from recon.discrepancies
                 where detected_at >= recon.day_start($1)
                   and detected_at < recon.day_start($2::date + 1)
                 union all
                 select kind, false from recon.discrepancies
                 where resolved_at >= recon.day_start($1)
                   and resolved_at < recon.day_start($2::date + 1)) changed
           join recon.flag_kinds using (kind)
           where class = 'action'
           group by kind
           order by kind"#,
        from,
        to,
    )
    .fetch_all(pool)
    .await?;
    let opened = rows
        .iter()
        .filter(|r| r.opened > 0)
        .map(|r| (r.kind.clone(), r.opened))
        .collect();
    let resolved = rows
        .iter()
        .filter(|r| r.resolved > 0)
        .map(|r| (r.kind.clone(), r.resolved))
        .collect();
    Ok((opened, resolved))
}

/// The `limit` oldest open flags a person must act on.
pub async fn oldest_open(pool: &PgPool, limit: i64) -> Result<Vec<OpenFlag>, StoreError> {
    Ok(sqlx::query_as!(
        OpenFlag,
        r#"select payment_id as "payment_id!", kind as "kind!", expected, actual,
                  detected_at as "detected_at!", coalesce(status, 'no_answer') as "status!"
           from recon.open_discrepancies
           order by detected_at, id
           limit $1"#,
        limit,
    )
    .fetch_all(pool)
    .await?)
}
