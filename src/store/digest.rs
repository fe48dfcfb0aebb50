//! The queries behind `freedompay-recon digest`: what happened over a span of reporting days.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
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
    /// When it was opened, in the reporting zone (with its offset).
    pub detected_at: DateTime<FixedOffset>,
    /// The payment's status now (`no_answer` before the first answer).
    pub status: String,
}

/// The reporting zone (`recon.timezone`), the time now in it, and yesterday there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneNow {
    pub timezone: String,
    pub now: DateTime<FixedOffset>,
    pub yesterday: NaiveDate,
}

/// `at` in the reporting zone, given that zone's offset there in seconds east of UTC (the
/// database's: its time zone rules are the ones reports use).
fn in_zone(at: DateTime<Utc>, offset_seconds: i32) -> DateTime<FixedOffset> {
    // An offset PostgreSQL accepts is always within a day; UTC if the impossible happens.
    let offset = FixedOffset::east_opt(offset_seconds)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"));
    at.with_timezone(&offset)
}

/// The reporting zone, now in it, and yesterday in it.
pub async fn zone_now(pool: &PgPool) -> Result<ZoneNow, StoreError> {
    let row = sqlx::query!(
        r#"select tz as "timezone!", now() as "now!",
                  extract(epoch from (now() at time zone tz) - (now() at time zone 'UTC'))::int
                      as "offset!",
                  ((now() at time zone tz)::date - 1) as "yesterday!"
           from (select recon.report_zone() as tz) zone"#
    )
    .fetch_one(pool)
    .await?;
    Ok(ZoneNow {
        timezone: row.timezone,
        now: in_zone(row.now, row.offset),
        yesterday: row.yesterday,
    })
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

/// The `limit` oldest open flags a person must act on, their times in the reporting zone.
pub async fn oldest_open(pool: &PgPool, limit: i64) -> Result<Vec<OpenFlag>, StoreError> {
    let rows = sqlx::query!(
        r#"select payment_id as "payment_id!", kind as "kind!", expected, actual,
                  detected_at as "detected_at!",
                  extract(epoch from (detected_at at time zone recon.report_zone())
                                     - (detected_at at time zone 'UTC'))::int as "offset!",
                  coalesce(status, 'no_answer') as "status!"
           from recon.open_discrepancies
           order by detected_at, id
           limit $1"#,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| OpenFlag {
            payment_id: r.payment_id,
            kind: r.kind,
            expected: r.expected,
            actual: r.actual,
            detected_at: in_zone(r.detected_at, r.offset),
            status: r.status,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_in_the_zone_is_the_same_instant_with_the_zones_offset() {
        let at: DateTime<Utc> = "2026-11-20T09:03:00Z".parse().unwrap();
        let almaty = in_zone(at, 5 * 3600);
        assert_eq!(almaty.to_rfc3339(), "2026-11-20T14:03:00+05:00");
        assert_eq!(almaty, at);
    }
}
