//! The queries behind `freedompay-recon report`, streamed row by row.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures_util::stream::BoxStream;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;

use super::StoreError;
use crate::domain::{FlagClass, FlagKind};

/// Which day a report counts a payment on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayBasis {
    /// The day it was created (created_at, in recon.timezone): the merchant's document date,
    /// the day and month the payment belongs to.
    Created,
    /// The day the daemon first saw it paid, failed or incomplete (first_seen_settled_at):
    /// when the daemon learned, not when the payer paid; unsettled payments are left out.
    /// `settled` is its old name.
    FirstSeenSettled,
}

impl DayBasis {
    /// The basis as `recon.daily_summary` names it: `settled` there is first seen settled
    /// (the value is kept for the BI tools that filter on it).
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::FirstSeenSettled => "settled",
        }
    }

    /// For people: "created", "first seen settled".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::FirstSeenSettled => "first seen settled",
        }
    }
}

/// Filters common to both reports; `None` means "any".
#[derive(Debug, Clone)]
pub struct ReportFilter {
    pub basis: DayBasis,
    /// First and last reporting day, inclusive.
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub currency: Option<String>,
    /// The provider's status; `no_answer` for none yet.
    pub status: Option<String>,
    pub flag: Option<FlagKind>,
    /// Each payment as it stood at this instant (from `recon.payment_states`) instead of now.
    pub as_of: Option<AsOf>,
}

impl ReportFilter {
    /// Every payment created from `first` to `last` (reporting days, inclusive), as it stands
    /// now: what `report --month` (or `--from --to`) reads with no other filter.
    pub fn created_between(first: NaiveDate, last: NaiveDate) -> Self {
        Self {
            basis: DayBasis::Created,
            from: Some(first),
            to: Some(last),
            currency: None,
            status: None,
            flag: None,
            as_of: None,
        }
    }
}

/// The instant a report is as of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsOf {
    pub at: DateTime<Utc>,
    /// The reporting day whose end `at` is (for people), when it was given as a day.
    pub day: Option<NaiveDate>,
}

/// A row of `recon.daily_summary`. Sums are PostgreSQL's exact `numeric` as text: a sum of
/// many amounts may exceed what `Decimal` holds, and no sum is ever rounded. A sum over
/// nothing is `None` (shown empty): no expected amount is not an expected amount of 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    pub day: NaiveDate,
    pub currency: Option<String>,
    /// `paid`, `failed`, `expired_unpaid` or `in_progress`.
    pub outcome: String,
    pub status: String,
    pub payments: i64,
    /// Payments whose expected amount is in this row (expected in this currency).
    pub expected_payments: i64,
    pub expected_amount: Option<String>,
    /// Payments paid (`success`) in this currency, and what they brought.
    pub received_payments: i64,
    pub received_amount: Option<String>,
    /// The provider's fees on the payments received, where it stated them.
    pub fee: Option<String>,
    /// Payments received whose fee the provider did not state (not counted in `fee`).
    pub payments_without_fee: i64,
    /// `received - expected` over the payments received with an expected amount in this
    /// same currency.
    pub difference: Option<String>,
    /// Payments with at least one open flag a person must act on.
    pub needs_action: i64,
    pub amount_mismatch: i64,
    pub currency_mismatch: i64,
    pub order_mismatch: i64,
    pub paid_after_deadline: i64,
    pub not_found: i64,
    pub unknown_status: i64,
    pub terminal_status_changed: i64,
    pub polling_abandoned: i64,
}

impl SummaryRow {
    /// Open flags by kind (the `action` kinds), in `FlagKind::ALL` order.
    pub fn flag_counts(&self) -> [(FlagKind, i64); 8] {
        [
            (FlagKind::AmountMismatch, self.amount_mismatch),
            (FlagKind::CurrencyMismatch, self.currency_mismatch),
            (FlagKind::OrderMismatch, self.order_mismatch),
            (FlagKind::NotFound, self.not_found),
            (FlagKind::UnknownStatus, self.unknown_status),
            (
                FlagKind::TerminalStatusChanged,
                self.terminal_status_changed,
            ),
            (FlagKind::PollingAbandoned, self.polling_abandoned),
            (FlagKind::PaidAfterDeadline, self.paid_after_deadline),
        ]
    }
}

/// A payment, as `recon.reconciliation` shows it. Each `_local` field is the time beside it
/// on the reporting zone's clock (`recon.timezone`), as PostgreSQL converts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailRow {
    pub payment_id: String,
    pub order_id: Option<String>,
    pub provider_order_id: Option<String>,
    pub outcome: String,
    pub status: Option<String>,
    pub expected_amount: Option<Decimal>,
    pub expected_currency: Option<String>,
    /// Only when the provider says money moved (`success`).
    pub received_amount: Option<Decimal>,
    pub received_currency: Option<String>,
    /// `received - expected`, only when both are known in the same currency.
    pub difference: Option<Decimal>,
    /// The amount and currency on the provider's invoice, whatever its status.
    pub invoice_amount: Option<Decimal>,
    pub invoice_currency: Option<String>,
    pub fee: Option<Decimal>,
    pub discount: Option<Decimal>,
    pub created_at: DateTime<Utc>,
    /// The reporting day of `created_at`, in `recon.timezone`.
    pub created_day: NaiveDate,
    /// When the daemon first saw the current terminal status: an observation, not a payment
    /// time.
    pub first_seen_settled_at: Option<DateTime<Utc>>,
    pub first_seen_settled_day: Option<NaiveDate>,
    pub expires_at: Option<DateTime<Utc>>,
    pub expiry_source: Option<String>,
    pub deadline_missed_at: Option<DateTime<Utc>>,
    /// Polls so far; unknown (`None`) in a report as of a past instant: not kept in history.
    pub checks: Option<i32>,
    /// Unknown in a report as of a past instant, as `checks`.
    pub last_checked_at: Option<DateTime<Utc>>,
    pub open_flags: Vec<String>,
    /// When the provider says it was paid (its verified callback's `pg_payment_date`), only
    /// once the poll says `success`.
    pub provider_paid_at: Option<DateTime<Utc>>,
    pub created_local: NaiveDateTime,
    pub first_seen_settled_local: Option<NaiveDateTime>,
    pub expires_local: Option<NaiveDateTime>,
    pub deadline_missed_local: Option<NaiveDateTime>,
    pub last_checked_local: Option<NaiveDateTime>,
    pub provider_paid_local: Option<NaiveDateTime>,
    /// Money the provider gave back (refunds, reversals, chargebacks), positive; 0 when none.
    pub refunded: Option<Decimal>,
    /// What was received less what went back (`recon.payment_money`).
    pub net_received: Option<Decimal>,
    /// Only where the provider stated a net.
    pub commission: Option<Decimal>,
    pub net_to_merchant: Option<Decimal>,
    /// paid, partially_refunded, refunded, reversed; empty when nothing was received.
    pub money_outcome: Option<String>,
}

/// A flag, open now or at the end of a day, with its payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRow {
    pub flag_id: i64,
    pub payment_id: String,
    pub kind: String,
    pub class: String,
    pub opened_at: DateTime<Utc>,
    pub opened_day: NaiveDate,
    /// `opened_at` on the reporting zone's clock.
    pub opened_local: NaiveDateTime,
    /// Seconds from opening to now (or to the end of the `--as-of` day).
    pub age_seconds: i64,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub follows_id: Option<i64>,
    pub order_id: Option<String>,
    /// The payment's reporting day (its `created_at` in the reporting zone): the day, and
    /// month, whose figures the flag is about.
    pub payment_day: NaiveDate,
    /// The payment's status then (now, or at the end of the `--as-of` day).
    pub status: Option<String>,
    pub outcome: String,
    pub expected_amount: Option<Decimal>,
    pub expected_currency: Option<String>,
    pub received_amount: Option<Decimal>,
    pub received_currency: Option<String>,
    pub invoice_amount: Option<Decimal>,
    pub invoice_currency: Option<String>,
}

/// A resolved flag: who resolved it (the database role of the session that wrote it, and the
/// name it was written on behalf of), when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolutionRow {
    pub flag_id: i64,
    pub payment_id: String,
    /// The payment's reporting day.
    pub payment_day: NaiveDate,
    pub kind: String,
    pub class: String,
    pub opened_at: DateTime<Utc>,
    pub opened_local: NaiveDateTime,
    pub resolved_at: DateTime<Utc>,
    pub resolved_local: NaiveDateTime,
    pub resolved_day: NaiveDate,
    /// `None` for resolutions written before the database recorded roles (migration
    /// `audit_trail`).
    pub resolved_role: Option<String>,
    pub resolved_by: String,
    pub resolution: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

/// Which flags to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassFilter {
    /// Flags a person must act on (the exception queue).
    Action,
    /// Flags recorded for the history only.
    Info,
    All,
}

impl ClassFilter {
    fn as_class(self) -> Option<&'static str> {
        match self {
            Self::Action => Some(FlagClass::Action.as_str()),
            Self::Info => Some(FlagClass::Info.as_str()),
            Self::All => None,
        }
    }
}

/// Filters of the flag list.
#[derive(Debug, Clone)]
pub struct FlagFilter {
    /// Flags open at the end of this reporting day (from history) instead of now.
    pub as_of: Option<NaiveDate>,
    pub class: ClassFilter,
    pub kind: Option<FlagKind>,
    /// First and last day the flag was opened, inclusive.
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub status: Option<String>,
    pub currency: Option<String>,
    /// First and last reporting day of the flag's payment (`--month`), whenever the flag
    /// opened.
    pub payment_from: Option<NaiveDate>,
    pub payment_to: Option<NaiveDate>,
}

/// How old open flags are: under 1 day, 1 to 3 days, 3 to 7 days, 7 days or more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AgeBuckets {
    pub under_1_day: i64,
    pub days_1_to_3: i64,
    pub days_3_to_7: i64,
    pub over_7_days: i64,
}

impl AgeBuckets {
    /// The bucket edges, in days.
    pub const EDGES_DAYS: [i64; 3] = [1, 3, 7];

    pub fn add(&mut self, age_seconds: i64) {
        let days = age_seconds.div_euclid(86_400);
        let [one, three, seven] = Self::EDGES_DAYS;
        let bucket = match days {
            d if d < one => &mut self.under_1_day,
            d if d < three => &mut self.days_1_to_3,
            d if d < seven => &mut self.days_3_to_7,
            _ => &mut self.over_7_days,
        };
        *bucket += 1;
    }

    pub fn total(&self) -> i64 {
        self.under_1_day + self.days_1_to_3 + self.days_3_to_7 + self.over_7_days
    }

    /// "under 1 day 3, 1–3 days 0, 3–7 days 1, over 7 days 2"
    pub fn describe(&self) -> String {
        format!(
            "under 1 day {}, 1-3 days {}, 3-7 days {}, over 7 days {}",
            self.under_1_day, self.days_1_to_3, self.days_3_to_7, self.over_7_days
        )
    }
}

/// Open `action` flags now, by age.
pub async fn open_action_ages(pool: &PgPool) -> Result<AgeBuckets, StoreError> {
    let [one, three, seven] = AgeBuckets::EDGES_DAYS.map(|d| d * 86_400);
    Ok(sqlx::query_as!(
        AgeBuckets,
        r#"select count(*) filter (where d.detected_at > now() - $1 * interval '1 second')
                      as "under_1_day!",
                  count(*) filter (where d.detected_at <= now() - $1 * interval '1 second'
                                     and d.detected_at > now() - $2 * interval '1 second')
                      as "days_1_to_3!",
                  count(*) filter (where d.detected_at <= now() - $2 * interval '1 second'
                                     and d.detected_at > now() - $3 * interval '1 second')
                      as "days_3_to_7!",
                  count(*) filter (where d.detected_at <= now() - $3 * interval '1 second')
                      as "over_7_days!"
           from recon.discrepancies d
           join recon.flag_kinds k using (kind)
           where d.resolved_at is null and k.class = 'action'"#,
        one as f64,
        three as f64,
        seven as f64,
    )
    .fetch_one(pool)
    .await?)
}

/// Ranges of at most this many reporting days are counted from their payments
/// ([`open_action_ages_by_payments`]); wider ones, and none, from the open flags
/// ([`open_action_ages_by_flags`]). Both count the same flags.
pub const AGES_BY_PAYMENTS_MAX_DAYS: i64 = 7;

/// Open `action` flags now, by age, of the payments `filter` selects (the summary's footer:
/// what the report shows, not the whole queue). Without any filter, [`open_action_ages`].
pub async fn open_action_ages_of(
    pool: &PgPool,
    filter: &ReportFilter,
) -> Result<AgeBuckets, StoreError> {
    let unfiltered = filter.from.is_none()
        && filter.to.is_none()
        && filter.currency.is_none()
        && filter.status.is_none()
        && filter.flag.is_none();
    if unfiltered {
        return open_action_ages(pool).await;
    }
    match (filter.from, filter.to) {
        (Some(from), Some(to)) if (to - from).num_days() < AGES_BY_PAYMENTS_MAX_DAYS => {
            open_action_ages_by_payments(pool, filter).await
        }
        _ => open_action_ages_by_flags(pool, filter).await,
    }
}

/// [`open_action_ages_of`] read from every open action flag, each joined to its payment: the
/// cost of the whole queue whatever the range, so for wide ranges.
pub async fn open_action_ages_by_flags(
    pool: &PgPool,
    filter: &ReportFilter,
) -> Result<AgeBuckets, StoreError> {
    let [one, three, seven] = AgeBuckets::EDGES_DAYS.map(|d| d * 86_400);
    Ok(sqlx::query_as!(
        AgeBuckets,
        r#"with selected as (
               select d.detected_at
               from recon.discrepancies d
               join recon.flag_kinds k using (kind)
               join recon.payments p using (payment_id)
               cross join lateral (select case $4::text when 'settled' then p.settled_at
                                                        else p.created_at end as at) b
               where d.resolved_at is null and k.class = 'action'
                 and b.at >= coalesce(recon.day_start($5::date), '-infinity')
                 and b.at < coalesce(recon.day_start($6::date + 1), 'infinity')
                 and ($7::text is null or $7 in (p.currency, p.expected_currency))
                 and ($8::text is null or coalesce(p.status, 'no_answer') = $8)
                 and ($9::text is null or $9 = any (p.open_flags))
           )
           select count(*) filter (where detected_at > now() - $1 * interval '1 second')
                      as "under_1_day!",
                  count(*) filter (where detected_at <= now() - $1 * interval '1 second'
                                     and detected_at > now() - $2 * interval '1 second')
                      as "days_1_to_3!",
                  count(*) filter (where detected_at <= now() - $2 * interval '1 second'
                                     and detected_at > now() - $3 * interval '1 second')
                      as "days_3_to_7!",
                  count(*) filter (where detected_at <= now() - $3 * interval '1 second')
                      as "over_7_days!"
           from selected"#,
        one as f64,
        three as f64,
        seven as f64,
        filter.basis.as_str(),
        filter.from,
        filter.to,
        filter.currency.as_deref(),
        filter.status.as_deref(),
        filter.flag.map(FlagKind::as_str),
    )
    .fetch_one(pool)
    .await?)
}

/// [`open_action_ages_of`] read from the range's payments that have an open flag (found by
/// the BRIN index of the basis' time), then those payments' open flags: the cost of the
/// range, not of the whole queue, so for narrow ranges. Both bounds are required.
pub async fn open_action_ages_by_payments(
    pool: &PgPool,
    filter: &ReportFilter,
) -> Result<AgeBuckets, StoreError> {
    let [one, three, seven] = AgeBuckets::EDGES_DAYS.map(|d| d * 86_400);
    let (Some(from), Some(to)) = (filter.from, filter.to) else {
        return open_action_ages_by_flags(pool, filter).await;
    };
    let (lo, hi) = (day_start(pool, from).await?, day_end(pool, to).await?);
    Ok(sqlx::query_as!(
        AgeBuckets,
        r#"with flagged as materialized (
               select p.payment_id
               from recon.payments p
               where (($4::text = 'settled' and p.settled_at >= $5 and p.settled_at < $6)
                      or ($4::text <> 'settled' and p.created_at >= $5 and p.created_at < $6))
                 and p.open_flags <> '{}'
                 and ($7::text is null or $7 in (p.currency, p.expected_currency))
                 and ($8::text is null or coalesce(p.status, 'no_answer') = $8)
                 and ($9::text is null or $9 = any (p.open_flags))
           ),
           selected as (
               select d.detected_at
               from flagged f
               cross join lateral (select d.detected_at, d.kind
                                   from recon.discrepancies d
                                   where d.payment_id = f.payment_id
                                     and d.resolved_at is null) d
               join recon.flag_kinds k on k.kind = d.kind
               where k.class = 'action'
           )
           select count(*) filter (where detected_at > now() - $1 * interval '1 second')
                      as "under_1_day!",
                  count(*) filter (where detected_at <= now() - $1 * interval '1 second'
                                     and detected_at > now() - $2 * interval '1 second')
                      as "days_1_to_3!",
                  count(*) filter (where detected_at <= now() - $2 * interval '1 second'
                                     and detected_at > now() - $3 * interval '1 second')
                      as "days_3_to_7!",
                  count(*) filter (where detected_at <= now() - $3 * interval '1 second')
                      as "over_7_days!"
           from selected"#,
        one as f64,
        three as f64,
        seven as f64,
        filter.basis.as_str(),
        lo,
        hi,
        filter.currency.as_deref(),
        filter.status.as_deref(),
        filter.flag.map(FlagKind::as_str),
    )
    .fetch_one(pool)
    .await?)
}

/// The first instant of a reporting day, in the reporting zone.
pub async fn day_start(pool: &PgPool, day: NaiveDate) -> Result<DateTime<Utc>, StoreError> {
    Ok(
        sqlx::query_scalar!(r#"select recon.day_start($1::date) as "start!""#, day)
            .fetch_one(pool)
            .await?,
    )
}

/// The first instant after a reporting day, in the reporting zone.
pub async fn day_end(pool: &PgPool, day: NaiveDate) -> Result<DateTime<Utc>, StoreError> {
    Ok(
        sqlx::query_scalar!(r#"select recon.day_start($1::date + 1) as "end!""#, day)
            .fetch_one(pool)
            .await?,
    )
}

/// Flags matching `filter`, oldest first.
pub async fn flag_rows<'a>(
    pool: &'a PgPool,
    filter: &'a FlagFilter,
) -> Result<BoxStream<'a, Result<FlagRow, sqlx::Error>>, StoreError> {
    let as_of = match filter.as_of {
        Some(day) => Some(day_end(pool, day).await?),
        None => None,
    };
    Ok(sqlx::query_file_as!(
        FlagRow,
        "src/store/sql/report_flags.sql",
        as_of,
        filter.class.as_class(),
        filter.kind.map(FlagKind::as_str),
        filter.from,
        filter.to,
        filter.status.as_deref(),
        filter.currency.as_deref(),
        filter.payment_from,
        filter.payment_to,
    )
    .fetch(pool))
}

/// The flags resolved from `from` to `to` (reporting days of the resolution, inclusive), in
/// the order they were resolved.
pub fn resolution_rows<'a>(
    pool: &'a PgPool,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> BoxStream<'a, Result<ResolutionRow, sqlx::Error>> {
    sqlx::query_file_as!(
        ResolutionRow,
        "src/store/sql/report_resolutions.sql",
        from,
        to
    )
    .fetch(pool)
}

/// The daily summary, by day, currency and status.
pub fn summary_rows<'a>(
    pool: &'a PgPool,
    filter: &'a ReportFilter,
) -> BoxStream<'a, Result<SummaryRow, sqlx::Error>> {
    if let Some(as_of) = filter.as_of {
        return sqlx::query_file_as!(
            SummaryRow,
            "src/store/sql/report_summary_as_of.sql",
            as_of.at,
            filter.basis.as_str(),
            filter.from,
            filter.to,
            filter.currency.as_deref(),
            filter.status.as_deref(),
            filter.flag.map(FlagKind::as_str),
        )
        .fetch(pool);
    }
    sqlx::query_file_as!(
        SummaryRow,
        "src/store/sql/report_summary.sql",
        filter.basis.as_str(),
        filter.from,
        filter.to,
        filter.currency.as_deref(),
        filter.status.as_deref(),
        filter.flag.map(FlagKind::as_str),
    )
    .fetch(pool)
}

/// Every payment matching the filter, in order of its reporting time. One statement per
/// basis, so the day range is a range of that basis's column and its index serves it.
pub fn detail_rows<'a>(
    pool: &'a PgPool,
    filter: &'a ReportFilter,
) -> BoxStream<'a, Result<DetailRow, sqlx::Error>> {
    let (from, to) = (filter.from, filter.to);
    let currency = filter.currency.as_deref();
    let status = filter.status.as_deref();
    let flag = filter.flag.map(FlagKind::as_str);
    if let Some(as_of) = filter.as_of {
        return sqlx::query_file_as!(
            DetailRow,
            "src/store/sql/report_detail_as_of.sql",
            as_of.at,
            from,
            to,
            filter.basis == DayBasis::FirstSeenSettled,
            currency,
            status,
            flag,
        )
        .fetch(pool);
    }
    match filter.basis {
        DayBasis::Created => sqlx::query_file_as!(
            DetailRow,
            "src/store/sql/report_detail_created.sql",
            from,
            to,
            currency,
            status,
            flag,
        )
        .fetch(pool),
        DayBasis::FirstSeenSettled => sqlx::query_file_as!(
            DetailRow,
            "src/store/sql/report_detail_first_seen_settled.sql",
            from,
            to,
            currency,
            status,
            flag,
        )
        .fetch(pool),
    }
}

/// The instant `recon.payment_states` begins: no report is computed as of before it.
pub async fn states_since(pool: &PgPool) -> Result<DateTime<Utc>, StoreError> {
    Ok(
        sqlx::query_scalar!(r#"select recon.states_since() as "since!""#)
            .fetch_one(pool)
            .await?,
    )
}

/// The reporting day of now, in the reporting zone.
pub async fn today(pool: &PgPool) -> Result<NaiveDate, StoreError> {
    Ok(
        sqlx::query_scalar!(r#"select recon.report_day(now()) as "today!""#)
            .fetch_one(pool)
            .await?,
    )
}

/// The report statements, for plans and tests: `(name, SQL)`.
pub const REPORT_SQL: [(&str, &str); 5] = [
    ("summary", include_str!("sql/report_summary.sql")),
    (
        "detail_created",
        include_str!("sql/report_detail_created.sql"),
    ),
    (
        "detail_first_seen_settled",
        include_str!("sql/report_detail_first_seen_settled.sql"),
    ),
    (
        "summary_as_of",
        include_str!("sql/report_summary_as_of.sql"),
    ),
    ("detail_as_of", include_str!("sql/report_detail_as_of.sql")),
];
