//! The queries behind `freedompay-recon report`, streamed row by row.

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::stream::BoxStream;
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
) -> BoxStream<'a, Result<SummaryRow, sqlx::Error>> {
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
        DayBasis::Settled => sqlx::query_file_as!(
            DetailRow,
            "src/store/sql/report_detail_settled.sql",
            from,
            to,
            currency,
            status,
            flag,
        )
        .fetch(pool),
    }
}

/// The report statements, for plans and tests: `(name, SQL)`.
pub const REPORT_SQL: [(&str, &str); 3] = [
    ("summary", include_str!("sql/report_summary.sql")),
    (
        "detail_created",
        include_str!("sql/report_detail_created.sql"),
    ),
    (
        "detail_settled",
        include_str!("sql/report_detail_settled.sql"),
    ),
];
