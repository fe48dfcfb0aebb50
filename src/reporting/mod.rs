//! Reports for finance: the daily summary, the payment list or the flags, as an aligned table,
//! RFC 4180 CSV, JSON or an xlsx workbook, written row by row as PostgreSQL streams them (a
//! report over millions of payments never sits in memory).
//!
//! Every row type declares its columns once ([`columns`], [`rows`]); each format writes a
//! kind of column one way:
//!
//! | kind | CSV | `--excel` CSV | JSON | xlsx |
//! | --- | --- | --- | --- | --- |
//! | amount | `1234.50` | `1234,50` | `"1234.50"` | a number, `#,##0.00`, where exact |
//! | time | UTC, RFC 3339 | reporting zone, `2025-07-11 16:19:49` | UTC, RFC 3339 | a date cell, reporting zone |
//! | day | `2025-07-11` | `2025-07-11` | `"2025-07-11"` | a date cell |
//! | text | formula-guarded | formula-guarded | a string | a text cell |
//!
//! Text that came from outside (ids, order ids, statuses) is made safe for where it goes: in
//! the table, control and invisible characters are escaped (no terminal escape sequence ever
//! reaches the screen); in CSV, a text cell a spreadsheet would run as a formula gets a
//! leading `'` (see [`crate::text::for_spreadsheet`]) unless `--raw` asks for the exact values;
//! in xlsx, text is a text cell, which no spreadsheet runs.

use std::borrow::Cow;
use std::io::Write;
use std::marker::PhantomData;

pub mod columns;
pub mod digest;
mod rows;
mod xlsx;

use chrono::{NaiveDate, SecondsFormat};
use futures_util::TryStreamExt as _;
use serde::ser::{Serialize, SerializeMap as _, Serializer};
use sqlx::PgPool;

use self::columns::{Cell, Layout, ReportRow, TableColumn};
use crate::store::StoreError;
use crate::store::close::{AdjustmentRow, adjustment_rows};
use crate::store::money::MoneyDayRow;
use crate::store::report::{
    AgeBuckets, ClassFilter, DetailRow, FlagFilter, FlagRow, ReportFilter, ResolutionRow,
    SummaryRow, detail_rows, flag_rows, open_action_ages_of, resolution_rows, summary_rows,
};
use crate::text::{escape_invisible, for_spreadsheet};

pub use self::xlsx::exact_number;

/// A report's format (names on the command line: `commands::values`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a person at a terminal.
    Table,
    /// RFC 4180 CSV for programs: a dot for decimals, times in UTC.
    Csv,
    /// A JSON array of objects, amounts as strings (exact).
    Json,
    /// An Excel workbook: amounts as numbers, days and local times as dates, the header row
    /// frozen (needs --output).
    Xlsx,
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
    #[error("cannot write the workbook: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error(
        "the report has more than {0} rows, more than a spreadsheet's sheet holds; narrow it \
         (--from, --to, --currency) or write --format csv"
    )]
    TooManyRows(u64),
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

/// How CSV is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CsvStyle {
    /// Text cells exactly as stored, formulas included.
    pub raw: bool,
    /// For Excel in ru/kk locales: a UTF-8 byte-order mark, `;` between cells, a decimal
    /// comma in every amount, and times on the reporting zone's clock to the second.
    pub excel: bool,
}

/// A CSV cell of any kind.
fn csv_cell<'a>(cell: &'a Cell<'a>, style: CsvStyle) -> Cow<'a, str> {
    let guard = |text: Cow<'a, str>| -> Cow<'a, str> {
        if style.raw {
            return text;
        }
        match for_spreadsheet(&text) {
            Cow::Owned(safe) => Cow::Owned(safe),
            Cow::Borrowed(_) => text,
        }
    };
    match cell {
        Cell::Empty => Cow::Borrowed(""),
        Cell::Text(text) => guard(Cow::Borrowed(text)),
        Cell::List(names) => guard(Cow::Owned(names.join(";"))),
        Cell::Amount(amount) if style.excel => Cow::Owned(amount.text().replace('.', ",")),
        Cell::Amount(amount) => amount.text(),
        Cell::Count(n) => Cow::Owned(n.to_string()),
        Cell::Day(day) => Cow::Owned(day.to_string()),
        // Excel reads `2025-07-11 16:19:49` as a date and time; it cannot read a zone, and
        // shows a fraction of a second as text.
        Cell::Time(stamp) if style.excel => {
            Cow::Owned(stamp.local.format("%Y-%m-%d %H:%M:%S").to_string())
        }
        Cell::Time(stamp) => Cow::Owned(stamp.utc.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}

/// A row as a JSON object, keyed by column name: amounts as strings (exact), times in UTC,
/// unknown values `null`.
struct JsonRow<'r, R>(&'r R);

impl<R: ReportRow> Serialize for JsonRow<'_, R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(R::COLUMNS.len()))?;
        for column in R::COLUMNS {
            let name = column.name;
            match (column.cell)(self.0) {
                Cell::Empty => map.serialize_entry(name, &())?,
                Cell::Text(text) => map.serialize_entry(name, text)?,
                Cell::Amount(amount) => map.serialize_entry(name, &amount.text())?,
                Cell::Count(n) => map.serialize_entry(name, &n)?,
                Cell::Day(day) => map.serialize_entry(name, &day.to_string())?,
                Cell::Time(stamp) => map.serialize_entry(
                    name,
                    &stamp.utc.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                )?,
                Cell::List(names) => map.serialize_entry(name, names)?,
            }
        }
        map.end()
    }
}

/// Where rows go, in one format.
enum Out<W: Write> {
    Table(W),
    Csv(Box<csv::Writer<W>>),
    Json(W),
    Xlsx(Box<xlsx::Sheet>, W),
}

/// Writes rows of one type as they arrive.
struct Sink<R, W: Write> {
    out: Out<W>,
    style: CsvStyle,
    rows: u64,
    row_type: PhantomData<fn(&R)>,
}

impl<R: ReportRow, W: Write> Sink<R, W> {
    fn new(format: Format, style: CsvStyle, mut out: W) -> Result<Self, ReportError> {
        let out = match format {
            Format::Csv => {
                if style.excel {
                    // Excel reads a file without it as the system's ANSI code page.
                    out.write_all("\u{feff}".as_bytes())?;
                }
                let mut csv = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .delimiter(if style.excel { b';' } else { b',' })
                    .from_writer(out);
                csv.write_record(R::COLUMNS.iter().map(|c| c.name))?;
                Out::Csv(Box::new(csv))
            }
            Format::Json => {
                out.write_all(b"[")?;
                Out::Json(out)
            }
            Format::Table => {
                let header: Vec<String> = R::TABLE.iter().map(|c| c.name.to_owned()).collect();
                writeln!(out, "{}", align(R::TABLE, &header))?;
                Out::Table(out)
            }
            Format::Xlsx => Out::Xlsx(Box::new(xlsx::Sheet::new::<R>()?), out),
        };
        Ok(Self {
            out,
            style,
            rows: 0,
            row_type: PhantomData,
        })
    }

    fn row(&mut self, row: &R) -> Result<(), ReportError> {
        match &mut self.out {
            Out::Csv(csv) => {
                for column in R::COLUMNS {
                    let cell = (column.cell)(row);
                    csv.write_field(csv_cell(&cell, self.style).as_bytes())?;
                }
                // An empty record ends the one whose fields were just written.
                csv.write_record(None::<&[u8]>)?;
            }
            Out::Json(out) => {
                out.write_all(if self.rows == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut *out, &JsonRow(row))?;
            }
            Out::Table(out) => {
                let cells: Vec<String> = R::TABLE.iter().map(|c| (c.cell)(row)).collect();
                writeln!(out, "{}", align(R::TABLE, &cells))?;
            }
            Out::Xlsx(sheet, _) => sheet.row(row)?,
        }
        self.rows += 1;
        Ok(())
    }

    /// Ends the output; a table gets `footer` lines after its rows.
    fn finish(self, footer: &[String]) -> Result<u64, ReportError> {
        match self.out {
            Out::Csv(mut csv) => csv.flush()?,
            Out::Json(mut out) => {
                out.write_all(if self.rows == 0 { b"]\n" } else { b"\n]\n" })?;
                out.flush()?;
            }
            Out::Table(mut out) => {
                for line in footer {
                    writeln!(out, "{line}")?;
                }
                out.flush()?;
            }
            Out::Xlsx(sheet, out) => sheet.finish(out)?,
        }
        Ok(self.rows)
    }
}

/// Pads cells to the table's widths (numbers right-aligned, text left-aligned), cuts a longer
/// text with `…`, and escapes control and invisible characters.
fn align<R>(columns: &[TableColumn<R>], cells: &[String]) -> String {
    cells
        .iter()
        .zip(columns)
        .map(|(cell, column)| {
            let cell = escape_invisible(cell);
            let width = column.width;
            match column.layout {
                Layout::Number => format!("{cell:>width$}"),
                Layout::Code => format!("{cell:<width$}"),
                Layout::Text => match cell.char_indices().nth(width) {
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
    /// One line per adjustment booked from the first to the last day given: what changed
    /// a closed month since it was signed, and why.
    Adjustments {
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    },
    /// Money moved from the first to the last day given, per day, currency and kind.
    Money {
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    },
    /// One payment's story: its status changes, flags and money events, in time order.
    Story { payment_id: String },
    /// A month's money from the payments to the bank, per currency; with `lines`, every
    /// registry line, payout and bank credit behind it.
    Settlement {
        first: NaiveDate,
        last: NaiveDate,
        lines: bool,
        bank_currency: String,
    },
}

/// What to report.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub kind: ReportKind,
    pub format: Format,
    pub csv: CsvStyle,
    /// Whether paid payments are watched for refunds (merchant credentials set): a summary
    /// table says which, so nobody reads its paid line as net of refunds it cannot see.
    pub refunds_watched: bool,
}

/// The summary table's line on refunds: statuses are not money, and without merchant
/// credentials refunds are not seen at all.
fn refunds_line(watched: bool) -> &'static str {
    if watched {
        "refunds: paid payments are watched through the Merchant status API (refunds.watch); \
         a refund is money of its own, not a status: received, refunded and net per payment \
         in recon.payment_money"
    } else {
        "refunds: NOT watched (merchant.id and merchant.secret not set): a refund of a paid \
         payment is not seen; paid counts what was received"
    }
}

/// Per currency, what moved from `from` to `to` (by the day it counts on), and the payments
/// with money back by what money has made of them: lines under a summary or money report.
pub async fn money_lines(
    pool: &PgPool,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Vec<String>, StoreError> {
    let mut lines: Vec<String> = crate::store::money::totals(pool, from, to)
        .await?
        .iter()
        .map(describe_money)
        .collect();
    let outcomes = crate::store::money::return_outcomes(pool, from, to).await?;
    if !outcomes.is_empty() {
        lines.push(format!(
            "payments with money back on these days, as they stand now: {}",
            outcomes
                .iter()
                .map(|(outcome, n)| format!("{outcome} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(lines)
}

/// `money moved, KZT: received 10000.00 (2), refunded 1500.00 (1), net received 8500.00`, and
/// where the provider stated a net, the commission and the net to the merchant.
pub fn describe_money(total: &crate::store::money::MoneyTotal) -> String {
    let mut parts = Vec::new();
    let mut part = |what: &str, amount: &Option<String>, n: Option<i64>| {
        if let Some(amount) = amount {
            parts.push(match n {
                Some(n) => format!("{what} {amount} ({n})"),
                None => format!("{what} {amount}"),
            });
        }
    };
    part("received", &total.received, Some(total.payments));
    part("refunded", &total.refunded, Some(total.refunds));
    part("reversed", &total.reversed, Some(total.reversals));
    part("charged back", &total.charged_back, Some(total.chargebacks));
    part("commission", &total.commission, None);
    let adjustments = if total.adjustments > 0 {
        format!(
            "; {} of these events belong to closed months, booked here as adjustments",
            total.adjustments
        )
    } else {
        String::new()
    };
    let to_merchant = total
        .net_to_merchant
        .as_ref()
        .map_or(String::new(), |net| format!(", net to merchant {net}"));
    format!(
        "money moved, {}: {}, net received {}{to_merchant}{adjustments}",
        escape_invisible(&total.currency),
        parts.join(", "),
        total.net_received
    )
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
            let mut sink = Sink::<DetailRow, W>::new(format, style, out)?;
            let mut rows = detail_rows(pool, filter);
            while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
                sink.row(&row)?;
            }
            let empty = (sink.rows == 0).then(|| no_payments(filter));
            (sink.finish(empty.as_slice())?, empty)
        }
        ReportKind::Summary(filter) => {
            let mut sink = Sink::<SummaryRow, W>::new(format, style, out)?;
            let mut rows = summary_rows(pool, filter);
            while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
                sink.row(&row)?;
            }
            let empty = (sink.rows == 0).then(|| no_payments(filter));
            let mut footer: Vec<String> = empty.iter().cloned().collect();
            if sink.rows > 0 {
                footer.push(rows::SUMMARY_LEGEND.to_owned());
            }
            if format == Format::Table
                && let Some(as_of) = filter.as_of
            {
                footer.push(format!(
                    "{}, recounted from history: every payment as it stood then, closed \
                     months included (their signed figures: report --month)",
                    describe_as_of(&as_of)
                ));
            } else if format == Format::Table {
                // What the filters select: the queue of the payments shown, not all of it.
                let ages = open_action_ages_of(pool, filter).await?;
                footer.push(format!(
                    "open flags needing a person now, on these payments: {} ({})",
                    ages.total(),
                    ages.describe()
                ));
                if filter.basis == crate::store::report::DayBasis::Created {
                    footer.extend(closed_lines(pool, filter.from, filter.to).await?);
                }
                // Money counts on the day it moved, whatever the filters: report --money.
                footer.extend(money_lines(pool, filter.from, filter.to).await?);
                footer.push(refunds_line(request.refunds_watched).to_owned());
            }
            (sink.finish(&footer)?, empty)
        }
        ReportKind::Flags(filter) => {
            let mut sink = Sink::<FlagRow, W>::new(format, style, out)?;
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
            let mut sink = Sink::<ResolutionRow, W>::new(format, style, out)?;
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
        ReportKind::Adjustments { from, to } => {
            let mut sink = Sink::<AdjustmentRow, W>::new(format, style, out)?;
            let mut rows = adjustment_rows(pool, *from, *to);
            while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
                sink.row(&row)?;
            }
            let what = format!("adjustments to closed months booked{}", period(*from, *to));
            let empty = (sink.rows == 0).then(|| format!("no {what}"));
            let footer = match &empty {
                Some(line) => vec![line.clone()],
                None => vec![format!("{} {what}", sink.rows)],
            };
            (sink.finish(&footer)?, empty)
        }
        ReportKind::Story { payment_id } => {
            let mut sink = Sink::<crate::store::console::Moment, W>::new(format, style, out)?;
            let story = crate::store::console::story(pool, payment_id).await?;
            for moment in story.iter().flat_map(|s| &s.moments) {
                sink.row(moment)?;
            }
            let empty = match &story {
                None => Some(format!("no payment {payment_id} is tracked")),
                Some(_) if sink.rows == 0 => Some(format!("nothing happened to {payment_id} yet")),
                Some(_) => None,
            };
            let footer = match &empty {
                Some(line) => vec![line.clone()],
                None => vec![format!("{} moments of payment {payment_id}", sink.rows)],
            };
            (sink.finish(&footer)?, empty)
        }
        ReportKind::Money { from, to } => {
            let mut sink = Sink::<MoneyDayRow, W>::new(format, style, out)?;
            let mut rows = crate::store::money::day_rows(pool, *from, *to);
            while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
                sink.row(&row)?;
            }
            let empty = (sink.rows == 0).then(|| format!("no money moved{}", period(*from, *to)));
            let mut footer: Vec<String> = empty.iter().cloned().collect();
            if format == Format::Table && sink.rows > 0 {
                footer.extend(money_lines(pool, *from, *to).await?);
            }
            if format == Format::Table {
                footer.push(refunds_line(request.refunds_watched).to_owned());
            }
            (sink.finish(&footer)?, empty)
        }
        ReportKind::Settlement {
            first,
            last,
            lines,
            bank_currency,
        } => {
            use crate::store::settlement::{MoneyLine, MonthMoney, month_lines, month_money};
            let month = first.format("%Y-%m");
            if *lines {
                let mut sink = Sink::<MoneyLine, W>::new(format, style, out)?;
                for row in month_lines(pool, *first, *last, bank_currency).await? {
                    sink.row(&row)?;
                }
                let empty = (sink.rows == 0)
                    .then(|| format!("no registry line, payout or bank credit in {month}"));
                (
                    sink.finish(&empty.iter().cloned().collect::<Vec<_>>())?,
                    empty,
                )
            } else {
                let mut sink = Sink::<MonthMoney, W>::new(format, style, out)?;
                let now = month_money(pool, *first, *last, bank_currency).await?;
                let signed = crate::store::settlement::signed_month_money(pool, *first).await?;
                let rows = signed.as_ref().map_or(&now, |s| &s.figures);
                for row in rows {
                    sink.row(row)?;
                }
                let empty = (sink.rows == 0).then(|| format!("no money in {month}"));
                let mut footer: Vec<String> = empty.iter().cloned().collect();
                if let Some(signed) = &signed {
                    footer.push(format!(
                        "{month} is closed: these are its figures as signed {} on behalf of {}, \
                         sha256 {}",
                        signed.closed_at.format("%Y-%m-%d %H:%M UTC"),
                        escape_invisible(&signed.on_behalf_of),
                        signed.sha256
                    ));
                    if signed.figures != now {
                        footer.push(format!(
                            "since then, registries, statements and matches imported or made \
                             later give {month}: {}",
                            now.iter()
                                .map(|m| format!(
                                    "{} paid out {}, at the bank {}, in transit {}, \
                                     unexplained {}",
                                    escape_invisible(&m.currency),
                                    m.paid_out,
                                    m.arrived_at_bank,
                                    m.in_transit,
                                    m.unexplained
                                ))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ));
                    }
                }
                if format == Format::Table {
                    footer.push(format!(
                        "money by the day it moved; registry lines by operation day; payouts \
                         and bank credits by their date ({month}); every line: --lines"
                    ));
                }
                (sink.finish(&footer)?, empty)
            }
        }
    };
    Ok(Written { rows, empty })
}

/// Under a summary by payment day: which of its months are closed (their rows are the
/// figures signed then), and, apart, the adjustments booked in its period to closed months,
/// by the month they change. None of them is in the rows above.
async fn closed_lines(
    pool: &PgPool,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Vec<String>, ReportError> {
    use crate::store::close::{adjustment_totals, closed_months};
    let mut lines = Vec::new();
    for closed in closed_months(pool, from, to).await? {
        lines.push(format!(
            "{} is closed: its rows are the figures signed {} by {} (on behalf of {}), sha256 \
             {}; {} adjustments booked against it since (report --adjustments)",
            closed.month.format("%Y-%m"),
            closed.closed_local.format("%Y-%m-%d %H:%M"),
            escape_invisible(&closed.db_role),
            escape_invisible(&closed.on_behalf_of),
            closed.sha256,
            closed.adjustments
        ));
    }
    let totals = adjustment_totals(pool, from, to).await?;
    if !totals.is_empty() {
        lines.push(format!(
            "adjustments booked{} to closed months, not in the rows above:",
            period(from, to)
        ));
        for total in totals {
            let signed = |label: &str, value: &Option<String>| {
                value.as_ref().map(|v| {
                    let sign = if v.starts_with('-') { "" } else { "+" };
                    format!(", {label} {sign}{v}")
                })
            };
            lines.push(format!(
                "  {} {}: {} adjustments, payments {:+}{}{}{}, needing a person {:+}",
                total.month.format("%Y-%m"),
                total.currency.as_deref().unwrap_or("(no currency)"),
                total.adjustments,
                total.payments,
                signed("expected", &total.expected_amount).unwrap_or_default(),
                signed("received", &total.received_amount).unwrap_or_default(),
                signed("fee", &total.fee).unwrap_or_default(),
                total.needs_action
            ));
        }
    }
    Ok(lines)
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
    if let Some(as_of) = &filter.as_of {
        line.push_str(&format!(", {}", describe_as_of(as_of)));
    }
    line
}

/// "as of the end of 2026-11-30 (recon.timezone)", or "as of 2026-11-30 18:00:00 UTC".
fn describe_as_of(as_of: &crate::store::report::AsOf) -> String {
    match as_of.day {
        Some(day) => format!("as of the end of {day} (recon.timezone)"),
        None => format!("as of {}", as_of.at.format("%Y-%m-%d %H:%M:%S UTC")),
    }
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
    use chrono::NaiveDateTime;

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

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
            checks: Some(2),
            last_checked_at: None,
            open_flags: vec!["amount_mismatch".into(), "order_mismatch".into()],
            provider_paid_at: Some("2025-07-11T11:19:40Z".parse().unwrap()),
            created_local: local("2025-07-11 16:19:49.5"),
            first_seen_settled_local: None,
            expires_local: None,
            deadline_missed_local: None,
            last_checked_local: None,
            provider_paid_local: Some(local("2025-07-11 16:19:40")),
            refunded: Some("1500.00".parse().unwrap()),
            net_received: Some("3500.00".parse().unwrap()),
            commission: None,
            net_to_merchant: None,
            money_outcome: Some("partially_refunded".into()),
        }
    }

    fn summary_row() -> SummaryRow {
        SummaryRow {
            day: NaiveDate::from_ymd_opt(2025, 7, 11).unwrap(),
            currency: Some("USD".into()),
            outcome: "paid".into(),
            status: "success".into(),
            payments: 102,
            expected_payments: 1,
            expected_amount: Some("10.00".into()),
            received_payments: 102,
            received_amount: Some("1062072.45".into()),
            fee: Some("0.60".into()),
            payments_without_fee: 100,
            difference: Some("0.00".into()),
            needs_action: 101,
            amount_mismatch: 0,
            currency_mismatch: 101,
            order_mismatch: 0,
            paid_after_deadline: 0,
            not_found: 0,
            unknown_status: 0,
            terminal_status_changed: 0,
            polling_abandoned: 0,
        }
    }

    fn flag_row(kind: FlagKind, expected: &str, actual: &str) -> FlagRow {
        FlagRow {
            flag_id: 7,
            payment_id: "1001".into(),
            kind: kind.to_string(),
            class: "action".into(),
            opened_at: "2025-07-31T19:30:00.123456Z".parse().unwrap(),
            opened_day: NaiveDate::from_ymd_opt(2025, 8, 1).unwrap(),
            opened_local: local("2025-08-01 00:30:00.123456"),
            age_seconds: 3 * 86_400 + 5,
            expected: Some(expected.into()),
            actual: Some(actual.into()),
            follows_id: None,
            order_id: None,
            payment_day: NaiveDate::from_ymd_opt(2025, 7, 30).unwrap(),
            status: Some("success".into()),
            outcome: "paid".into(),
            expected_amount: Some("1300".parse().unwrap()),
            expected_currency: Some("KZT".into()),
            received_amount: Some("1234.50".parse().unwrap()),
            received_currency: Some("KZT".into()),
            invoice_amount: Some("1234.50".parse().unwrap()),
            invoice_currency: Some("KZT".into()),
        }
    }

    /// What `rows` give in `format`, whole.
    fn written<R: ReportRow>(format: Format, style: CsvStyle, rows: &[R]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut sink = Sink::<R, _>::new(format, style, &mut out).unwrap();
        for row in rows {
            sink.row(row).unwrap();
        }
        sink.finish(&[]).unwrap();
        out
    }

    fn text_of<R: ReportRow>(format: Format, style: CsvStyle, rows: &[R]) -> String {
        String::from_utf8(written(format, style, rows)).unwrap()
    }

    const EXCEL: CsvStyle = CsvStyle {
        raw: false,
        excel: true,
    };

    #[test]
    fn every_cell_is_of_its_columns_kind() {
        fn check<R: ReportRow>(row: &R) {
            for column in R::COLUMNS {
                let cell = (column.cell)(row);
                assert!(column.holds(&cell), "{}: {cell:?}", column.name);
            }
        }
        check(&paid_row());
        check(&summary_row());
        check(&flag_row(FlagKind::AmountMismatch, "1300", "1234.50"));
        check(&flag_row(FlagKind::CurrencyMismatch, "KZT", "USD"));
    }

    #[test]
    fn money_lines_name_the_net_received_and_the_net_to_the_merchant_apart() {
        let mut total = crate::store::money::MoneyTotal {
            currency: "KZT".into(),
            received: Some("5000".into()),
            payments: 1,
            refunded: Some("1500".into()),
            refunds: 1,
            reversed: None,
            reversals: 0,
            charged_back: None,
            chargebacks: 0,
            commission: None,
            net_received: "3500".into(),
            net_to_merchant: None,
            adjustments: 0,
        };
        assert_eq!(
            describe_money(&total),
            "money moved, KZT: received 5000 (1), refunded 1500 (1), net received 3500"
        );
        total.commission = Some("175".into());
        total.net_to_merchant = Some("3325".into());
        total.adjustments = 1;
        assert_eq!(
            describe_money(&total),
            "money moved, KZT: received 5000 (1), refunded 1500 (1), commission 175, net \
             received 3500, net to merchant 3325; 1 of these events belong to closed months, \
             booked here as adjustments"
        );
    }

    #[test]
    fn csv_is_rfc4180_with_crlf_quoting_and_plain_decimals() {
        let text = text_of(Format::Csv, CsvStyle::default(), &[paid_row()]);
        let mut lines = text.split("\r\n");
        let names: Vec<&str> = DetailRow::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(lines.next().unwrap(), names.join(","));
        assert_eq!(
            lines.next().unwrap(),
            "\"1,\"\"2\"\"\",-7781,,paid,success,1234567.50,KZT,1234567.5,KZT,0.00,1234567.5,KZT,,,\
             2025-07-11T11:19:49.500Z,2025-07-11,,,,,,2,,amount_mismatch;order_mismatch,\
             2025-07-11T11:19:40Z,1500.00,3500.00,,,partially_refunded"
        );
    }

    #[test]
    fn excel_csv_has_a_byte_order_mark_semicolons_decimal_commas_and_local_times() {
        let text = text_of(Format::Csv, EXCEL, &[paid_row()]);
        assert!(text.starts_with("\u{feff}payment_id;order_id;"), "{text}");
        let row = text.split("\r\n").nth(1).unwrap();
        assert!(
            row.starts_with(
                "\"1,\"\"2\"\"\";-7781;;paid;success;1234567,50;KZT;1234567,5;KZT;0,00;"
            ),
            "{row}"
        );
        assert!(
            row.contains(";2025-07-11 16:19:49;2025-07-11;"),
            "the reporting zone's clock, to the second, as Excel reads it: {row}"
        );
    }

    #[test]
    fn excel_gives_every_amount_a_decimal_comma_what_a_flag_compared_included() {
        let amounts = text_of(
            Format::Csv,
            EXCEL,
            &[flag_row(FlagKind::AmountMismatch, "1300.00", "1234.50")],
        );
        let row = amounts.split("\r\n").nth(1).unwrap();
        assert_eq!(
            row,
            "7;1001;amount_mismatch;action;2025-08-01 00:30:00;2025-08-01;3;1300,00;1234,50;;;\
             success;paid;1300;KZT;1234,50;KZT;1234,50;KZT;2025-07-30;"
        );
        // Another flag's values are text: an order id `12.5` stays as it is.
        let orders = text_of(
            Format::Csv,
            EXCEL,
            &[flag_row(FlagKind::OrderMismatch, "12.5", "A-1")],
        );
        assert!(orders.contains(";3;12.5;A-1;"), "{orders}");
        let plain = text_of(
            Format::Csv,
            CsvStyle::default(),
            &[flag_row(FlagKind::AmountMismatch, "1300.00", "1234.50")],
        );
        assert!(
            plain.contains(",2025-07-31T19:30:00.123456Z,2025-08-01,3,1300.00,1234.50,"),
            "{plain}"
        );
    }

    #[test]
    fn json_is_an_array_of_the_columns_with_exact_amounts_as_strings() {
        let text = text_of(Format::Json, CsvStyle::default(), &[summary_row()]);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0]["expected_amount"], "10.00");
        assert_eq!(parsed[0]["expected_payments"], 1);
        assert_eq!(parsed[0]["day"], "2025-07-11");
        let mut unknown_fee = summary_row();
        unknown_fee.fee = None;
        let text = text_of(Format::Json, CsvStyle::default(), &[unknown_fee]);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0]["fee"], serde_json::Value::Null, "unknown, not 0");

        let text = text_of(Format::Json, CsvStyle::default(), &[paid_row()]);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0]["created_at"], "2025-07-11T11:19:49.500Z");
        assert_eq!(parsed[0]["open_flags"][1], "order_mismatch");
        assert_eq!(parsed[0]["received_amount"], "1234567.5");
        let keys: Vec<&String> = parsed[0].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), DetailRow::COLUMNS.len());
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
            open_flags: vec![],
            provider_paid_at: None,
            provider_paid_local: None,
            ..paid_row()
        }
    }

    #[test]
    fn csv_neutralises_formulas_in_text_cells_unless_raw() {
        let safe = text_of(Format::Csv, CsvStyle::default(), &[hostile_row()]);
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
        let raw = text_of(
            Format::Csv,
            CsvStyle {
                raw: true,
                excel: false,
            },
            &[hostile_row()],
        );
        assert!(raw.contains("\r\n\"=HYPERLINK("), "{raw}");
    }

    #[test]
    fn the_table_escapes_control_characters() {
        let mut row = hostile_row();
        row.payment_id = "+1\u{1b}[2J".into();
        let out = text_of(Format::Table, CsvStyle::default(), &[row]);
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
            text_of(
                Format::Table,
                CsvStyle::default(),
                std::slice::from_ref(row),
            )
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
        let summary: usize = SummaryRow::TABLE.iter().map(|c| c.width + 1).sum();
        assert!(summary <= 121, "summary table {summary} wide");
        let summary = text_of(Format::Table, CsvStyle::default(), &[summary_row()]);
        for line in summary.lines().chain([rows::SUMMARY_LEGEND]) {
            assert!(line.chars().count() <= 120, "{line}");
        }

        // An amount is never cut: the largest one widens its line instead.
        row.expected_amount = Some("999999999999999999.99999999".parse().unwrap());
        assert!(table(&row).contains("999999999999999999.99999999 KZT"));
    }

    #[test]
    fn the_summary_table_shows_the_counts_its_sums_are_read_with() {
        let out = text_of(Format::Table, CsvStyle::default(), &[summary_row()]);
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let cells: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
        assert_eq!(cells[at("payments")], "102");
        assert_eq!(cells[at("n_exp")], "1", "one payment was expected in USD");
        assert_eq!(cells[at("expected")], "10.00");
        assert_eq!(cells[at("received")], "1062072.45");
        assert_eq!(cells[at("fee")], "0.60");
        assert_eq!(cells[at("n_no_fee")], "100", "100 without a stated fee");
    }

    #[test]
    fn an_xlsx_sheet_has_typed_cells_and_keeps_an_inexact_amount_as_text() {
        use calamine::{Data, Reader as _};

        let mut big = summary_row();
        big.expected_amount = Some("1999999999999999999.99999998".into());
        let bytes = written(Format::Xlsx, CsvStyle::default(), &[summary_row(), big]);
        let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(book.sheet_names(), ["Summary"]);
        let range = book.worksheet_range("Summary").unwrap();
        let names: Vec<&str> = SummaryRow::COLUMNS.iter().map(|c| c.name).collect();
        let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
        assert_eq!(
            range.get((0, at("received_amount"))),
            Some(&Data::String("received_amount".into()))
        );
        assert_eq!(
            range.get((1, at("received_amount"))),
            Some(&Data::Float(1_062_072.45))
        );
        assert_eq!(range.get((1, at("payments"))), Some(&Data::Float(102.0)));
        assert_eq!(
            range.get((1, at("currency"))),
            Some(&Data::String("USD".into()))
        );
        let Some(Data::DateTime(day)) = range.get((1, at("day"))) else {
            panic!("{:?}", range.get((1, at("day"))))
        };
        assert_eq!(
            day.as_datetime().unwrap().to_string(),
            "2025-07-11 00:00:00"
        );
        assert_eq!(
            range.get((2, at("expected_amount"))),
            Some(&Data::String("1999999999999999999.99999998".into())),
            "no digit is rounded away"
        );
    }

    #[test]
    fn dates_are_iso() {
        assert!(parse_date("2025-07-11").is_ok());
        assert!(parse_date("11.07.2025").is_err());
    }
}
