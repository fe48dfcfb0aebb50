//! Reports for finance: the daily summary or the payment list, as an aligned table, RFC 4180
//! CSV or JSON, written row by row as PostgreSQL streams them (a report over millions of
//! payments never sits in memory).
//!
//! Formats: decimals with a dot and no thousands separators (JSON carries them as strings, so
//! they stay exact); timestamps RFC 3339 in UTC; column names are stable.
//!
//! Text that came from outside (ids, order ids, statuses) is made safe for where it goes: in
//! the table, control and invisible characters are escaped (no terminal escape sequence ever
//! reaches the screen); in CSV, a text cell a spreadsheet would run as a formula gets a
//! leading `'` (see [`crate::text::for_spreadsheet`]) unless `--raw` asks for the exact values.

use std::io::Write;

pub mod digest;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use futures_util::TryStreamExt as _;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;

use crate::store::StoreError;
use crate::store::report::{
    AgeBuckets, ClassFilter, DetailRow, FlagFilter, FlagRow, ReportFilter, ResolutionRow,
    SummaryRow, detail_rows, flag_rows, open_action_ages_of, resolution_rows, summary_rows,
};
use crate::text::{escape_invisible, for_spreadsheet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot write the report: {0}")]
    Csv(csv::Error),
    #[error("cannot write the report: {0}")]
    Json(serde_json::Error),
}

// A failed write stays an I/O error whichever writer saw it, so a closed pipe is recognised
// (and the command ends quietly) in every format.
impl From<csv::Error> for ReportError {
    fn from(e: csv::Error) -> Self {
        if !e.is_io_error() {
            return Self::Csv(e);
        }
        match e.into_kind() {
            csv::ErrorKind::Io(io) => Self::Write(io),
            other => Self::Write(std::io::Error::other(format!("{other:?}"))),
        }
    }
}

impl From<serde_json::Error> for ReportError {
    fn from(e: serde_json::Error) -> Self {
        match e.io_error_kind() {
            Some(kind) => Self::Write(std::io::Error::from(kind)),
            None => Self::Json(e),
        }
    }
}

/// One output row: its cells as text (CSV, table) and as JSON.
trait ReportRow: Serialize {
    const COLUMNS: &'static [&'static str];
    /// The table's own columns, for a person at a 120-column terminal: the essentials, each
    /// `(name, width, cell)`. A longer text is cut with `…`; a number never is (it widens its
    /// line). CSV and JSON carry every column.
    const TABLE: &'static [(&'static str, usize, Cell)];
    fn table_cells(&self) -> Vec<String>;
    /// Columns holding text from outside (ids, statuses…), which CSV neutralises; the others
    /// are numbers, dates and timestamps this program writes.
    const TEXT_COLUMNS: &'static [usize];
    /// Columns holding decimal amounts, which `--excel` writes with a decimal comma.
    const AMOUNT_COLUMNS: &'static [usize];
    fn cells(&self) -> Vec<String>;
}

/// How a table cell is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    /// Left-aligned, cut with `…` when longer than its width.
    Text,
    /// Right-aligned, never cut: an amount is shown whole.
    Number,
}

/// `Decimal`'s own text: a dot, no thousands separators, the scale it was stored with.
fn decimal(d: Decimal) -> String {
    d.to_string()
}

fn opt<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map(show).unwrap_or_default()
}

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `5000.00 KZT`, or empty when there is no amount.
fn money(amount: Option<&str>, currency: &Option<String>) -> String {
    match amount {
        Some(amount) => format!("{amount} {}", currency.as_deref().unwrap_or(""))
            .trim_end()
            .to_owned(),
        None => String::new(),
    }
}

/// An age for a person: `3d 4h`, `5h 10m`, `12m`.
fn age(seconds: i64) -> String {
    let minutes = seconds.max(0) / 60;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

impl ReportRow for SummaryRow {
    const COLUMNS: &'static [&'static str] = &[
        "day",
        "currency",
        "outcome",
        "status",
        "payments",
        "expected_payments",
        "expected_amount",
        "received_payments",
        "received_amount",
        "fee",
        "payments_without_fee",
        "difference",
        "needs_action",
        "amount_mismatch",
        "currency_mismatch",
        "order_mismatch",
        "not_found",
        "unknown_status",
        "terminal_status_changed",
        "polling_abandoned",
        "paid_after_deadline",
    ];
    const TABLE: &'static [(&'static str, usize, Cell)] = &[
        ("day", 10, Cell::Text),
        ("currency", 8, Cell::Text),
        ("outcome", 14, Cell::Text),
        ("status", 10, Cell::Text),
        ("payments", 8, Cell::Number),
        ("expected_amount", 16, Cell::Number),
        ("received_amount", 16, Cell::Number),
        ("fee", 10, Cell::Number),
        ("difference", 12, Cell::Number),
        ("action", 6, Cell::Number),
    ];
    const TEXT_COLUMNS: &'static [usize] = &[1, 2, 3];
    const AMOUNT_COLUMNS: &'static [usize] = &[6, 8, 9, 11];

    fn table_cells(&self) -> Vec<String> {
        vec![
            self.day.to_string(),
            text(&self.currency),
            self.outcome.clone(),
            self.status.clone(),
            self.payments.to_string(),
            text(&self.expected_amount),
            text(&self.received_amount),
            text(&self.fee),
            text(&self.difference),
            self.needs_action.to_string(),
        ]
    }

    fn cells(&self) -> Vec<String> {
        let mut cells = vec![
            self.day.to_string(),
            text(&self.currency),
            self.outcome.clone(),
            self.status.clone(),
            self.payments.to_string(),
            self.expected_payments.to_string(),
            text(&self.expected_amount),
            self.received_payments.to_string(),
            text(&self.received_amount),
            text(&self.fee),
            self.payments_without_fee.to_string(),
            text(&self.difference),
            self.needs_action.to_string(),
        ];
        cells.extend(self.flag_counts().iter().map(|(_, n)| n.to_string()));
        cells
    }
}

impl ReportRow for DetailRow {
    const COLUMNS: &'static [&'static str] = &[
        "payment_id",
        "order_id",
        "provider_order_id",
        "outcome",
        "status",
        "expected_amount",
        "expected_currency",
        "received_amount",
        "received_currency",
        "difference",
        "invoice_amount",
        "invoice_currency",
        "fee",
        "discount",
        "created_at",
        "created_day",
        "first_seen_settled_at",
        "first_seen_settled_day",
        "expires_at",
        "expiry_source",
        "deadline_missed_at",
        "checks",
        "last_checked_at",
        "open_flags",
        "provider_paid_at",
    ];
    const TABLE: &'static [(&'static str, usize, Cell)] = &[
        ("payment_id", 26, Cell::Text),
        ("status", 11, Cell::Text),
        ("expected", 19, Cell::Number),
        ("received", 19, Cell::Number),
        ("difference", 14, Cell::Number),
        ("open_flags", 25, Cell::Text),
    ];
    const TEXT_COLUMNS: &'static [usize] = &[0, 1, 2, 3, 4, 6, 8, 11, 19, 23];
    const AMOUNT_COLUMNS: &'static [usize] = &[5, 7, 9, 10, 12, 13];

    fn table_cells(&self) -> Vec<String> {
        let amount = |a: Option<Decimal>| a.map(decimal);
        vec![
            self.payment_id.clone(),
            text(&self.status),
            money(
                amount(self.expected_amount).as_deref(),
                &self.expected_currency,
            ),
            money(
                amount(self.received_amount).as_deref(),
                &self.received_currency,
            ),
            opt(self.difference, decimal),
            self.open_flags.join(" "),
        ]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.payment_id.clone(),
            text(&self.order_id),
            text(&self.provider_order_id),
            self.outcome.clone(),
            text(&self.status),
            opt(self.expected_amount, decimal),
            text(&self.expected_currency),
            opt(self.received_amount, decimal),
            text(&self.received_currency),
            opt(self.difference, decimal),
            opt(self.invoice_amount, decimal),
            text(&self.invoice_currency),
            opt(self.fee, decimal),
            opt(self.discount, decimal),
            timestamp(self.created_at),
            self.created_day.to_string(),
            opt(self.first_seen_settled_at, timestamp),
            opt(self.first_seen_settled_day, |d| d.to_string()),
            opt(self.expires_at, timestamp),
            text(&self.expiry_source),
            opt(self.deadline_missed_at, timestamp),
            self.checks.to_string(),
            opt(self.last_checked_at, timestamp),
            self.open_flags.join(";"),
            opt(self.provider_paid_at, timestamp),
        ]
    }
}

impl ReportRow for FlagRow {
    const COLUMNS: &'static [&'static str] = &[
        "flag_id",
        "payment_id",
        "kind",
        "class",
        "opened_at",
        "opened_day",
        "age_days",
        "expected",
        "actual",
        "follows_id",
        "order_id",
        "status",
        "outcome",
        "expected_amount",
        "expected_currency",
        "received_amount",
        "received_currency",
        "invoice_amount",
        "invoice_currency",
        "payment_day",
        "note",
    ];
    const TABLE: &'static [(&'static str, usize, Cell)] = &[
        ("payment_id", 26, Cell::Text),
        ("kind", 23, Cell::Text),
        ("age", 7, Cell::Number),
        ("status", 10, Cell::Text),
        ("expected", 24, Cell::Text),
        ("actual", 24, Cell::Text),
    ];
    const TEXT_COLUMNS: &'static [usize] = &[1, 2, 3, 7, 8, 10, 11, 12, 14, 16, 18];
    const AMOUNT_COLUMNS: &'static [usize] = &[13, 15, 17];

    fn table_cells(&self) -> Vec<String> {
        vec![
            self.payment_id.clone(),
            self.kind.clone(),
            age(self.age_seconds),
            self.status.clone().unwrap_or_else(|| "no_answer".into()),
            text(&self.expected),
            text(&self.actual),
        ]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.flag_id.to_string(),
            self.payment_id.clone(),
            self.kind.clone(),
            self.class.clone(),
            timestamp(self.opened_at),
            self.opened_day.to_string(),
            self.age_seconds.div_euclid(86_400).to_string(),
            text(&self.expected),
            text(&self.actual),
            opt(self.follows_id, |id| id.to_string()),
            text(&self.order_id),
            text(&self.status),
            self.outcome.clone(),
            opt(self.expected_amount, decimal),
            text(&self.expected_currency),
            opt(self.received_amount, decimal),
            text(&self.received_currency),
            opt(self.invoice_amount, decimal),
            text(&self.invoice_currency),
            self.payment_day.to_string(),
            // For a person's note: `resolve --from-csv` reads it back.
            String::new(),
        ]
    }
}

impl ReportRow for ResolutionRow {
    const COLUMNS: &'static [&'static str] = &[
        "flag_id",
        "payment_id",
        "payment_day",
        "kind",
        "class",
        "opened_at",
        "resolved_at",
        "resolved_day",
        "resolved_role",
        "resolved_by",
        "resolution",
        "expected",
        "actual",
    ];
    const TABLE: &'static [(&'static str, usize, Cell)] = &[
        ("resolved_day", 12, Cell::Text),
        ("payment_id", 22, Cell::Text),
        ("kind", 20, Cell::Text),
        ("role", 14, Cell::Text),
        ("on behalf of", 14, Cell::Text),
        ("note", 30, Cell::Text),
    ];
    const TEXT_COLUMNS: &'static [usize] = &[1, 3, 4, 8, 9, 10, 11, 12];
    const AMOUNT_COLUMNS: &'static [usize] = &[];

    fn table_cells(&self) -> Vec<String> {
        vec![
            self.resolved_day.to_string(),
            self.payment_id.clone(),
            self.kind.clone(),
            text(&self.resolved_role),
            self.resolved_by.clone(),
            self.resolution.clone(),
        ]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.flag_id.to_string(),
            self.payment_id.clone(),
            self.payment_day.to_string(),
            self.kind.clone(),
            self.class.clone(),
            timestamp(self.opened_at),
            timestamp(self.resolved_at),
            self.resolved_day.to_string(),
            text(&self.resolved_role),
            self.resolved_by.clone(),
            self.resolution.clone(),
            text(&self.expected),
            text(&self.actual),
        ]
    }
}

/// How CSV is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CsvStyle {
    /// Text cells exactly as stored, formulas included.
    pub raw: bool,
    /// For Excel in ru/kk locales: a UTF-8 byte-order mark, `;` between cells and a decimal
    /// comma in amounts.
    pub excel: bool,
}

/// Writes rows as they arrive, in one format.
struct Sink<W: Write> {
    format: Format,
    style: CsvStyle,
    csv: Option<csv::Writer<W>>,
    out: Option<W>,
    rows: u64,
}

impl<W: Write> Sink<W> {
    fn new<R: ReportRow>(format: Format, style: CsvStyle, out: W) -> Result<Self, ReportError> {
        let mut sink = Self {
            format,
            style,
            csv: None,
            out: None,
            rows: 0,
        };
        match format {
            Format::Csv => {
                let mut out = out;
                if style.excel {
                    // Excel reads a file without it as the system's ANSI code page.
                    out.write_all("\u{feff}".as_bytes())?;
                }
                let mut csv = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .delimiter(if style.excel { b';' } else { b',' })
                    .from_writer(out);
                csv.write_record(R::COLUMNS)?;
                sink.csv = Some(csv);
            }
            Format::Json => {
                let mut out = out;
                out.write_all(b"[")?;
                sink.out = Some(out);
            }
            Format::Table => {
                let mut out = out;
                let header: Vec<String> = R::TABLE.iter().map(|(c, ..)| c.to_string()).collect();
                writeln!(out, "{}", align::<R>(&header))?;
                sink.out = Some(out);
            }
        }
        Ok(sink)
    }

    fn row<R: ReportRow>(&mut self, row: &R) -> Result<(), ReportError> {
        match self.format {
            Format::Csv => {
                let mut cells = row.cells();
                if !self.style.raw {
                    for &column in R::TEXT_COLUMNS {
                        if let std::borrow::Cow::Owned(safe) = for_spreadsheet(&cells[column]) {
                            cells[column] = safe;
                        }
                    }
                }
                if self.style.excel {
                    for &column in R::AMOUNT_COLUMNS {
                        cells[column] = cells[column].replace('.', ",");
                    }
                }
                self.csv.as_mut().expect("csv").write_record(cells)?
            }
            Format::Json => {
                let out = self.out.as_mut().expect("out");
                out.write_all(if self.rows == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut *out, row)?;
            }
            Format::Table => {
                let out = self.out.as_mut().expect("out");
                writeln!(out, "{}", align::<R>(&row.table_cells()))?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Ends the output; a table gets `footer` lines after its rows.
    fn finish(mut self, footer: &[String]) -> Result<u64, ReportError> {
        match self.format {
            Format::Csv => {
                self.csv.take().expect("csv").flush()?;
            }
            Format::Json => {
                let mut out = self.out.take().expect("out");
                out.write_all(if self.rows == 0 { b"]\n" } else { b"\n]\n" })?;
                out.flush()?;
            }
            Format::Table => {
                let mut out = self.out.take().expect("out");
                for line in footer {
                    writeln!(out, "{line}")?;
                }
                out.flush()?;
            }
        }
        Ok(self.rows)
    }
}

/// Pads cells to the table's widths (numbers right-aligned, text left-aligned), cuts a longer
/// text with `…`, and escapes control and invisible characters.
fn align<R: ReportRow>(cells: &[String]) -> String {
    cells
        .iter()
        .zip(R::TABLE)
        .map(|(cell, &(_, width, kind))| {
            let cell = escape_invisible(cell);
            match kind {
                Cell::Number => format!("{cell:>width$}"),
                Cell::Text => match cell.char_indices().nth(width) {
                    Some(_) => {
                        let cut = cell.char_indices().nth(width - 1).map_or(0, |(i, _)| i);
                        format!("{}…", &cell[..cut])
                    }
                    None => format!("{cell:<width$}"),
                },
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end()
        .to_owned()
}

/// Which report.
#[derive(Debug, Clone)]
pub enum ReportKind {
    /// The daily summary by currency, outcome and status.
    Summary(ReportFilter),
    /// One line per payment.
    Detail(ReportFilter),
    /// One line per flag: the exception queue, or the flags open at the end of a day.
    Flags(FlagFilter),
    /// One line per resolved flag, resolved from the first to the last day given: the audit
    /// trail of the exception queue.
    Resolutions {
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    },
}

/// What to report.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub kind: ReportKind,
    pub format: Format,
    pub csv: CsvStyle,
}

/// What a report wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    /// When there were no rows: a line saying so, for a person (a table ends with it; for
    /// CSV and JSON the caller shows it apart from the data).
    pub empty: Option<String>,
}

/// Streams the report to `out`.
pub async fn write_report<W: Write>(
    pool: &PgPool,
    request: &ReportRequest,
    out: W,
) -> Result<Written, ReportError> {
    let (format, style) = (request.format, request.csv);
    let (rows, empty) = match &request.kind {
        ReportKind::Detail(filter) => {
            let mut sink = Sink::new::<DetailRow>(format, style, out)?;
            let mut rows = detail_rows(pool, filter);
            while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
                sink.row(&row)?;
            }
            let empty = (sink.rows == 0).then(|| no_payments(filter));
            (sink.finish(empty.as_slice())?, empty)
        }
        ReportKind::Summary(filter) => {
            let mut sink = Sink::new::<SummaryRow>(format, style, out)?;
            let mut rows = summary_rows(pool, filter);
            while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
                sink.row(&row)?;
            }
            let empty = (sink.rows == 0).then(|| no_payments(filter));
            let mut footer: Vec<String> = empty.iter().cloned().collect();
            if format == Format::Table {
                // What the filters select: the queue of the payments shown, not all of it.
                let ages = open_action_ages_of(pool, filter).await?;
                footer.push(format!(
                    "open flags needing a person now, on these payments: {} ({})",
                    ages.total(),
                    ages.describe()
                ));
            }
            (sink.finish(&footer)?, empty)
        }
        ReportKind::Flags(filter) => {
            let mut sink = Sink::new::<FlagRow>(format, style, out)?;
            let mut rows = flag_rows(pool, filter).await?;
            let mut ages = AgeBuckets::default();
            while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
                ages.add(row.age_seconds);
                sink.row(&row)?;
            }
            let what = describe_flags(filter);
            let empty = (sink.rows == 0).then(|| format!("no {what}"));
            let footer = match &empty {
                Some(line) => vec![line.clone()],
                None => vec![format!("{} {what}: {}", ages.total(), ages.describe())],
            };
            (sink.finish(&footer)?, empty)
        }
        ReportKind::Resolutions { from, to } => {
            let mut sink = Sink::new::<ResolutionRow>(format, style, out)?;
            let mut rows = resolution_rows(pool, *from, *to);
            while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
                sink.row(&row)?;
            }
            let empty =
                (sink.rows == 0).then(|| format!("no flags resolved{}", period(*from, *to)));
            let footer = match &empty {
                Some(line) => vec![line.clone()],
                None => vec![format!(
                    "{} flags resolved{}",
                    sink.rows,
                    period(*from, *to)
                )],
            };
            (sink.finish(&footer)?, empty)
        }
    };
    Ok(Written { rows, empty })
}

/// "payments created from 2025-07-01 to 2025-07-31 with currency USD"
fn no_payments(filter: &ReportFilter) -> String {
    let basis = filter.basis.describe();
    let mut line = format!("no payments {basis}{}", period(filter.from, filter.to));
    if let Some(currency) = &filter.currency {
        line.push_str(&format!(", currency {currency}"));
    }
    if let Some(status) = &filter.status {
        line.push_str(&format!(", status {}", escape_invisible(status)));
    }
    if let Some(kind) = filter.flag {
        line.push_str(&format!(", with an open {kind} flag"));
    }
    line
}

/// " on 2025-07-01", " from … to …", " since …", " until …", or "" for all time.
fn period(from: Option<NaiveDate>, to: Option<NaiveDate>) -> String {
    match (from, to) {
        (Some(from), Some(to)) if from == to => format!(" on {from}"),
        (Some(from), Some(to)) => format!(" from {from} to {to}"),
        (Some(from), None) => format!(" since {from}"),
        (None, Some(to)) => format!(" until {to}"),
        (None, None) => String::new(),
    }
}

/// "open flags needing a person", "flags needing a person open at the end of 2025-06-30"
fn describe_flags(filter: &FlagFilter) -> String {
    let class = match filter.class {
        ClassFilter::Action => "flags needing a person",
        ClassFilter::Info => "informational flags",
        ClassFilter::All => "flags",
    };
    let kind = filter.kind.map_or(String::new(), |k| format!(" ({k})"));
    let payments = match (filter.payment_from, filter.payment_to) {
        (None, None) => String::new(),
        (from, to) => format!(" on payments created{}", period(from, to)),
    };
    match filter.as_of {
        Some(day) => format!("{class}{kind}{payments} open at the end of {day}"),
        None => format!("open {class}{kind}{payments}"),
    }
}

/// `YYYY-MM`: the month's first and last day.
pub fn parse_month(raw: &str) -> Result<(NaiveDate, NaiveDate), String> {
    let first = NaiveDate::parse_from_str(&format!("{}-01", raw.trim()), "%Y-%m-%d")
        .map_err(|_| "not a month; use YYYY-MM (e.g. 2026-11)".to_owned())?;
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(|| "not a month; use YYYY-MM (e.g. 2026-11)".to_owned())?;
    Ok((first, next.pred_opt().unwrap_or(first)))
}

/// `YYYY-MM-DD`.
pub fn parse_date(raw: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| "not a date; use YYYY-MM-DD (e.g. 2025-07-11)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FlagKind;

    fn paid_row() -> DetailRow {
        DetailRow {
            payment_id: "1,\"2\"".into(),
            order_id: Some("-7781".into()),
            provider_order_id: None,
            outcome: "paid".into(),
            status: Some("success".into()),
            expected_amount: Some("1234567.50".parse().unwrap()),
            expected_currency: Some("KZT".into()),
            received_amount: Some("1234567.5".parse().unwrap()),
            received_currency: Some("KZT".into()),
            difference: Some("0.00".parse().unwrap()),
            invoice_amount: Some("1234567.5".parse().unwrap()),
            invoice_currency: Some("KZT".into()),
            fee: None,
            discount: None,
            created_at: "2025-07-11T11:19:49.5Z".parse().unwrap(),
            created_day: NaiveDate::from_ymd_opt(2025, 7, 11).unwrap(),
            first_seen_settled_at: None,
            first_seen_settled_day: None,
            expires_at: None,
            expiry_source: None,
            deadline_missed_at: None,
            checks: 2,
            last_checked_at: None,
            open_flags: vec!["amount_mismatch".into(), "order_mismatch".into()],
            provider_paid_at: Some("2025-07-11T11:19:40Z".parse().unwrap()),
        }
    }

    fn csv_of(row: &DetailRow, style: CsvStyle) -> String {
        let mut sink = Sink::new::<DetailRow>(Format::Csv, style, Vec::new()).unwrap();
        sink.row(row).unwrap();
        String::from_utf8(sink.csv.take().unwrap().into_inner().unwrap()).unwrap()
    }

    #[test]
    fn csv_is_rfc4180_with_crlf_quoting_and_plain_decimals() {
        let text = csv_of(&paid_row(), CsvStyle::default());
        let mut lines = text.split("\r\n");
        assert_eq!(lines.next().unwrap(), DetailRow::COLUMNS.join(","));
        assert_eq!(
            lines.next().unwrap(),
            "\"1,\"\"2\"\"\",-7781,,paid,success,1234567.50,KZT,1234567.5,KZT,0.00,1234567.5,KZT,,,\
             2025-07-11T11:19:49.500Z,2025-07-11,,,,,,2,,amount_mismatch;order_mismatch,\
             2025-07-11T11:19:40Z"
        );
    }

    #[test]
    fn excel_csv_has_a_byte_order_mark_semicolons_and_decimal_commas() {
        let text = csv_of(
            &paid_row(),
            CsvStyle {
                raw: false,
                excel: true,
            },
        );
        assert!(text.starts_with("\u{feff}payment_id;order_id;"), "{text}");
        let row = text.split("\r\n").nth(1).unwrap();
        assert!(
            row.starts_with(
                "\"1,\"\"2\"\"\";-7781;;paid;success;1234567,50;KZT;1234567,5;KZT;0,00;"
            ),
            "{row}"
        );
        assert!(
            row.contains(";2025-07-11T11:19:49.500Z;2025-07-11;"),
            "times keep their dot-free form: {row}"
        );
    }

    #[test]
    fn json_is_an_array_with_exact_amounts_as_strings() {
        let mut sink =
            Sink::new::<SummaryRow>(Format::Json, CsvStyle::default(), Vec::new()).unwrap();
        assert_eq!(sink.rows, 0);
        let row = SummaryRow {
            day: NaiveDate::from_ymd_opt(2025, 7, 11).unwrap(),
            currency: Some("KZT".into()),
            outcome: "paid".into(),
            status: "success".into(),
            payments: 2,
            expected_payments: 2,
            expected_amount: Some("10.10".into()),
            received_payments: 2,
            received_amount: Some("10.1".into()),
            fee: None,
            payments_without_fee: 2,
            difference: Some("0.00".into()),
            needs_action: 0,
            amount_mismatch: 0,
            currency_mismatch: 0,
            order_mismatch: 0,
            paid_after_deadline: 0,
            not_found: 0,
            unknown_status: 0,
            terminal_status_changed: 0,
            polling_abandoned: 0,
        };
        sink.row(&row).unwrap();
        let out = sink.out.take().unwrap();
        let mut text = String::from_utf8(out).unwrap();
        text.push_str("\n]");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0]["expected_amount"], "10.10");
        assert_eq!(parsed[0]["day"], "2025-07-11");
        assert_eq!(parsed[0]["fee"], serde_json::Value::Null, "unknown, not 0");
    }

    fn hostile_row() -> DetailRow {
        DetailRow {
            payment_id: "=HYPERLINK(\"http://x\",\"pay\")".into(),
            order_id: Some("@SUM(A1)".into()),
            provider_order_id: Some("+1\u{1b}[2J".into()),
            outcome: "paid".into(),
            status: Some("-x".into()),
            expected_amount: Some("10".parse().unwrap()),
            expected_currency: None,
            received_amount: Some("5".parse().unwrap()),
            received_currency: None,
            difference: Some("-5".parse().unwrap()),
            invoice_amount: Some("5".parse().unwrap()),
            invoice_currency: None,
            fee: None,
            discount: None,
            created_at: "2025-07-11T11:19:49Z".parse().unwrap(),
            created_day: NaiveDate::from_ymd_opt(2025, 7, 11).unwrap(),
            first_seen_settled_at: None,
            first_seen_settled_day: None,
            expires_at: None,
            expiry_source: None,
            deadline_missed_at: None,
            checks: 1,
            last_checked_at: None,
            open_flags: vec![],
            provider_paid_at: None,
        }
    }

    #[test]
    fn csv_neutralises_formulas_in_text_cells_unless_raw() {
        let safe = csv_of(&hostile_row(), CsvStyle::default());
        let row = safe.split("\r\n").nth(1).unwrap();
        assert!(
            row.starts_with(
                "\"'=HYPERLINK(\"\"http://x\"\",\"\"pay\"\")\",'@SUM(A1),'+1\u{1b}[2J,"
            ),
            "{row}"
        );
        assert!(row.contains(",'-x,"), "{row}");
        assert!(
            row.contains(",10,,5,,-5,5,,,,"),
            "numbers are left alone: {row}"
        );
        let raw = csv_of(
            &hostile_row(),
            CsvStyle {
                raw: true,
                excel: false,
            },
        );
        assert!(raw.contains("\r\n\"=HYPERLINK("), "{raw}");
    }

    #[test]
    fn the_table_escapes_control_characters() {
        let mut row = hostile_row();
        row.payment_id = "+1\u{1b}[2J".into();
        let mut sink =
            Sink::new::<DetailRow>(Format::Table, CsvStyle::default(), Vec::new()).unwrap();
        sink.row(&row).unwrap();
        let out = String::from_utf8(sink.out.take().unwrap()).unwrap();
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(out.contains("+1\\u{1b}[2J"), "{out:?}");
    }

    #[test]
    fn the_table_fits_a_120_column_terminal_whatever_the_ids_and_flags() {
        let mut row = hostile_row();
        row.payment_id = "9".repeat(128);
        row.open_flags = FlagKind::ALL.iter().map(|k| k.to_string()).collect();
        row.expected_amount = Some("1234567.50".parse().unwrap());
        row.expected_currency = Some("KZT".into());
        let table = |row: &DetailRow| {
            let mut sink =
                Sink::new::<DetailRow>(Format::Table, CsvStyle::default(), Vec::new()).unwrap();
            sink.row(row).unwrap();
            String::from_utf8(sink.out.take().unwrap()).unwrap()
        };
        let out = table(&row);
        for line in out.lines() {
            assert!(
                line.chars().count() <= 120,
                "{} wide: {line}",
                line.chars().count()
            );
        }
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .starts_with(&format!("{}… ", "9".repeat(25)))
        );
        assert!(out.contains("1234567.50 KZT"), "{out}");
        let summary: usize = SummaryRow::TABLE
            .iter()
            .map(|(_, width, _)| width + 1)
            .sum();
        assert!(summary <= 121, "summary table {summary} wide");

        // An amount is never cut: the largest one widens its line instead.
        row.expected_amount = Some("999999999999999999.99999999".parse().unwrap());
        assert!(table(&row).contains("999999999999999999.99999999 KZT"));
    }

    #[test]
    fn dates_are_iso() {
        assert!(parse_date("2025-07-11").is_ok());
        assert!(parse_date("11.07.2025").is_err());
    }
}
