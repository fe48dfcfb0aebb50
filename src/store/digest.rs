//! The queries behind `freedompay-recon digest`: what happened over a span of reporting days.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::StoreError;

/// Payments that reached a terminal status in the period, by status and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// `success`, `error` or `incomplete`.
    pub status: String,
    pub currency: Option<String>,
    pub payments: i64,
    /// The provider's amounts, summed exactly (`numeric` as text); none when unknown.
    pub amount: Option<String>,
}

/// An open flag, for the list of the oldest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenFlag {
    pub payment_id: String,
    pub kind: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub detected_at: DateTime<Utc>,
}

/// Open flags now, and how many of them are older than 1, 3 and 7 days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpenAges {
    pub open: i64,
    pub older_than_1_day: i64,
    pub older_than_3_days: i64,
    pub older_than_7_days: i64,
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

/// Payments settled (first seen terminal) in the days `from..=to`.
pub async fn outcomes(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Outcome>, StoreError> {
    Ok(sqlx::query_as!(
        Outcome,
        r#"select status as "status!", currency, count(*) as "payments!", sum(amount)::text as amount
           from recon.payments
           where settled_at >= recon.day_start($1) and settled_at < recon.day_start($2::date + 1)
             and status in ('success', 'error', 'incomplete')
           group by status, currency
           order by case status when 'success' then 1 when 'error' then 2 else 3 end, currency"#,
        from,
        to,
    )
    .fetch_all(pool)
    .await?)
}

/// `(kind, flags)` opened in the days `from..=to`, and resolved in them (by anyone).
pub async fn flag_changes(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>), StoreError> {
    let rows = sqlx::query!(
        r#"select kind as "kind!",
                  count(*) filter (where detected_at >= recon.day_start($1)
                                     and detected_at < recon.day_start($2::date + 1)) as "opened!",
                  count(*) filter (where resolved_at >= recon.day_start($1)
                                     and resolved_at < recon.day_start($2::date + 1)) as "resolved!"
           from recon.discrepancies
           where (detected_at >= recon.day_start($1) and detected_at < recon.day_start($2::date + 1))
              or (resolved_at >= recon.day_start($1) and resolved_at < recon.day_start($2::date + 1))
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

/// Open flags now, by age.
pub async fn open_ages(pool: &PgPool) -> Result<OpenAges, StoreError> {
    Ok(sqlx::query_as!(
        OpenAges,
        r#"select count(*) as "open!",
                  count(*) filter (where detected_at < now() - interval '1 day') as "older_than_1_day!",
                  count(*) filter (where detected_at < now() - interval '3 days') as "older_than_3_days!",
                  count(*) filter (where detected_at < now() - interval '7 days') as "older_than_7_days!"
           from recon.discrepancies where resolved_at is null"#
    )
    .fetch_one(pool)
    .await?)
}

/// The `limit` oldest open flags.
pub async fn oldest_open(pool: &PgPool, limit: i64) -> Result<Vec<OpenFlag>, StoreError> {
    Ok(sqlx::query_as!(
        OpenFlag,
        "select payment_id, kind, expected, actual, detected_at
         from recon.discrepancies where resolved_at is null
         order by detected_at, id
         limit $1",
        limit,
    )
    .fetch_all(pool)
    .await?)
}
