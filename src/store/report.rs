//! The queries behind `freedompay-recon report`, streamed row by row.

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::Stream;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::FlagKind;

/// Which day a payment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DayBasis {
    /// The day it was created (`created_at`).
    Created,
    /// The day its terminal status was first seen (`settled_at`); unsettled payments are left out.
    Settled,
}

impl DayBasis {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Settled => "settled",
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
}

/// A row of `recon.daily_summary`. Sums are PostgreSQL's exact `numeric` as text: a sum of
/// many amounts may exceed what `Decimal` holds, and no sum is ever rounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SummaryRow {
    pub day: NaiveDate,
    pub currency: Option<String>,
    pub status: String,
    pub payments: i64,
    pub expected_amount: String,
    pub amount: String,
    pub fee: String,
    pub difference: String,
    pub flagged: i64,
    pub amount_mismatch: i64,
    pub currency_mismatch: i64,
    pub order_mismatch: i64,
    pub lifetime_exceeded: i64,
    pub not_found: i64,
    pub unknown_status: i64,
    pub terminal_status_changed: i64,
    pub polling_abandoned: i64,
    /// Payments whose expected amount is in this row (expected in this currency).
    pub expected_payments: i64,
}

impl SummaryRow {
    /// Open flags by kind, in `FlagKind::ALL` order.
    pub fn flag_counts(&self) -> [(FlagKind, i64); 8] {
        [
            (FlagKind::AmountMismatch, self.amount_mismatch),
            (FlagKind::CurrencyMismatch, self.currency_mismatch),
            (FlagKind::OrderMismatch, self.order_mismatch),
            (FlagKind::LifetimeExceeded, self.lifetime_exceeded),
            (FlagKind::NotFound, self.not_found),
            (FlagKind::UnknownStatus, self.unknown_status),
            (
                FlagKind::TerminalStatusChanged,
                self.terminal_status_changed,
            ),
            (FlagKind::PollingAbandoned, self.polling_abandoned),
        ]
    }
}

/// A payment, as `recon.reconciliation` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DetailRow {
    pub payment_id: String,
    pub order_id: Option<String>,
    pub provider_order_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
    pub status: Option<String>,
    pub expected_amount: Option<Decimal>,
    pub expected_currency: Option<String>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub fee: Option<Decimal>,
    pub discount: Option<Decimal>,
    pub amount_difference: Option<Decimal>,
    pub expires_at: Option<DateTime<Utc>>,
    pub expiry_source: Option<String>,
    pub checks: i32,
    pub last_checked_at: Option<DateTime<Utc>>,
    pub open_flags: Vec<String>,
}

/// The daily summary, by day, currency and status.
pub fn summary_rows<'a>(
    pool: &'a PgPool,
    filter: &'a ReportFilter,
) -> impl Stream<Item = Result<SummaryRow, sqlx::Error>> + 'a {
    sqlx::query_as::<_, SummaryRow>(
        "select day, currency, status, payments, expected_amount::text as expected_amount,
                amount::text as amount, fee::text as fee, difference::text as difference,
                flagged, amount_mismatch, currency_mismatch, order_mismatch, lifetime_exceeded,
                not_found, unknown_status, terminal_status_changed, polling_abandoned,
                expected_payments
         from recon.daily_summary
         where basis = $1
           and ($2::date is null or day >= $2)
           and ($3::date is null or day <= $3)
           and ($4::text is null or currency = $4)
           and ($5::text is null or status = $5)
           and ($6::text is null or case $6
                    when 'amount_mismatch' then amount_mismatch
                    when 'currency_mismatch' then currency_mismatch
                    when 'order_mismatch' then order_mismatch
                    when 'lifetime_exceeded' then lifetime_exceeded
                    when 'not_found' then not_found
                    when 'unknown_status' then unknown_status
                    when 'terminal_status_changed' then terminal_status_changed
                    when 'polling_abandoned' then polling_abandoned
                end > 0)
         order by day, currency, status",
    )
    .bind(filter.basis.as_str())
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.currency.as_deref())
    .bind(filter.status.as_deref())
    .bind(filter.flag.map(FlagKind::as_str))
    .fetch(pool)
}

/// Every payment matching the filter, in order of its reporting time.
pub fn detail_rows<'a>(
    pool: &'a PgPool,
    filter: &'a ReportFilter,
) -> impl Stream<Item = Result<DetailRow, sqlx::Error>> + 'a {
    sqlx::query_as::<_, DetailRow>(
        "select payment_id, order_id, provider_order_id, created_at, settled_at, status,
                expected_amount, expected_currency, amount, currency, fee, discount,
                amount_difference, expires_at, expiry_source, checks, last_checked_at, open_flags
         from (
             select r.*, case when $1 = 'settled' then r.settled_at else r.created_at end as at
             from recon.reconciliation r
         ) r
         where at is not null
           and ($2::date is null or recon.report_day(at) >= $2)
           and ($3::date is null or recon.report_day(at) <= $3)
           and ($4::text is null or coalesce(currency, expected_currency) = $4)
           and ($5::text is null or coalesce(status, 'no_answer') = $5)
           and ($6::text is null or $6 = any(open_flags))
         order by at, payment_id",
    )
    .bind(filter.basis.as_str())
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.currency.as_deref())
    .bind(filter.status.as_deref())
    .bind(filter.flag.map(FlagKind::as_str))
    .fetch(pool)
}
