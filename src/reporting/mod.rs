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
use crate::store::report::{DetailRow, ReportFilter, SummaryRow, detail_rows, summary_rows};
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

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl ReportRow for SummaryRow {
    const COLUMNS: &'static [&'static str] = &[
        "day",
        "currency",
        "status",
        "payments",
        "expected_amount",
        "amount",
        "fee",
        "difference",
        "flagged",
        "amount_mismatch",
        "currency_mismatch",
        "order_mismatch",
        "lifetime_exceeded",
        "not_found",
        "unknown_status",
        "terminal_status_changed",
        "polling_abandoned",
        "expected_payments",
    ];
    const TABLE: &'static [(&'static str, usize, Cell)] = &[
        ("day", 10, Cell::Text),
        ("currency", 8, Cell::Text),
        ("status", 10, Cell::Text),
        ("payments", 8, Cell::Number),
        ("expected_amount", 17, Cell::Number),
        ("amount", 17, Cell::Number),
        ("fee", 12, Cell::Number),
        ("difference", 14, Cell::Number),
        ("flagged", 7, Cell::Number),
    ];
    const TEXT_COLUMNS: &'static [usize] = &[1, 2];

    fn table_cells(&self) -> Vec<String> {
        let mut cells = self.cells();
        cells.truncate(Self::TABLE.len());
        cells
    }

    fn cells(&self) -> Vec<String> {
        let mut cells = vec![
            self.day.to_string(),
            self.currency.clone().unwrap_or_default(),
            self.status.clone(),
            self.payments.to_string(),
            self.expected_amount.clone(),
            self.amount.clone(),
            self.fee.clone(),
            self.difference.clone(),
            self.flagged.to_string(),
        ];
        cells.extend(self.flag_counts().iter().map(|(_, n)| n.to_string()));
        cells.push(self.expected_payments.to_string());
        cells
    }
}

impl ReportRow for DetailRow {
    const COLUMNS: &'static [&'static str] = &[
        "payment_id",
        "order_id",
        "provider_order_id",
        "created_at",
        "settled_at",
        "status",
        "expected_amount",
        "expected_currency",
        "amount",
        "currency",
        "fee",
        "discount",
        "amount_difference",
        "expires_at",
        "expiry_source",
        "checks",
        "last_checked_at",
        "open_flags",
    ];
    const TABLE: &'static [(&'static str, usize, Cell)] = &[
        ("payment_id", 26, Cell::Text),
        ("status", 11, Cell::Text),
        ("expected", 19, Cell::Number),
        ("paid", 19, Cell::Number),
        ("difference", 14, Cell::Number),
        ("open_flags", 25, Cell::Text),
    ];
    const TEXT_COLUMNS: &'static [usize] = &[0, 1, 2, 5, 7, 9, 14, 17];

    fn table_cells(&self) -> Vec<String> {
        let money = |amount: Option<Decimal>, currency: &Option<String>| {
            match amount {
                Some(amount) => format!("{amount} {}", currency.as_deref().unwrap_or("")),
                None => String::new(),
            }
            .trim_end()
            .to_owned()
        };
        vec![
            self.payment_id.clone(),
            self.status.clone().unwrap_or_default(),
            money(self.expected_amount, &self.expected_currency),
            money(self.amount, &self.currency),
            opt(self.amount_difference, decimal),
            self.open_flags.join(" "),
        ]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.payment_id.clone(),
            self.order_id.clone().unwrap_or_default(),
            self.provider_order_id.clone().unwrap_or_default(),
            timestamp(self.created_at),
            opt(self.settled_at, timestamp),
            self.status.clone().unwrap_or_default(),
            opt(self.expected_amount, decimal),
            self.expected_currency.clone().unwrap_or_default(),
            opt(self.amount, decimal),
            self.currency.clone().unwrap_or_default(),
            opt(self.fee, decimal),
            opt(self.discount, decimal),
            opt(self.amount_difference, decimal),
            opt(self.expires_at, timestamp),
            self.expiry_source.clone().unwrap_or_default(),
            self.checks.to_string(),
            opt(self.last_checked_at, timestamp),
            self.open_flags.join(";"),
        ]
    }
}

/// Writes rows as they arrive, in one format.
struct Sink<W: Write> {
    format: Format,
    /// CSV: write text cells exactly as stored, formulas included.
    raw: bool,
    csv: Option<csv::Writer<W>>,
    out: Option<W>,
    rows: u64,
}

impl<W: Write> Sink<W> {
    fn new<R: ReportRow>(format: Format, raw: bool, out: W) -> Result<Self, ReportError> {
        let mut sink = Self {
            format,
            raw,
            csv: None,
            out: None,
            rows: 0,
        };
        match format {
            Format::Csv => {
                let mut csv = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
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
                if !self.raw {
                    for &column in R::TEXT_COLUMNS {
                        if let std::borrow::Cow::Owned(safe) = for_spreadsheet(&cells[column]) {
                            cells[column] = safe;
                        }
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

    fn finish(mut self) -> Result<u64, ReportError> {
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
                self.out.take().expect("out").flush()?;
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

/// What to report.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub detail: bool,
    pub format: Format,
    /// CSV: text cells exactly as stored, without formula neutralisation.
    pub raw: bool,
    pub filter: ReportFilter,
}

/// Streams the report to `out`; returns the number of rows written.
pub async fn write_report<W: Write>(
    pool: &PgPool,
    request: &ReportRequest,
    out: W,
) -> Result<u64, ReportError> {
    if request.detail {
        let mut sink = Sink::new::<DetailRow>(request.format, request.raw, out)?;
        let mut rows = detail_rows(pool, &request.filter);
        while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
            sink.row(&row)?;
        }
        sink.finish()
    } else {
        let mut sink = Sink::new::<SummaryRow>(request.format, request.raw, out)?;
        let mut rows = summary_rows(pool, &request.filter);
        while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
            sink.row(&row)?;
        }
        sink.finish()
    }
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

    #[test]
    fn csv_is_rfc4180_with_crlf_quoting_and_plain_decimals() {
        let row = DetailRow {
            payment_id: "1,\"2\"".into(),
            order_id: Some("A-1".into()),
            provider_order_id: None,
            created_at: "2025-07-11T11:19:49.5Z".parse().unwrap(),
            settled_at: None,
            status: Some("success".into()),
            expected_amount: Some("1234567.50".parse().unwrap()),
            expected_currency: Some("KZT".into()),
            amount: Some("1234567.5".parse().unwrap()),
            currency: Some("KZT".into()),
            fee: None,
            discount: None,
            amount_difference: Some("0.00".parse().unwrap()),
            expires_at: None,
            expiry_source: None,
            checks: 2,
            last_checked_at: None,
            open_flags: vec!["amount_mismatch".into(), "order_mismatch".into()],
        };
        let mut sink = Sink::new::<DetailRow>(Format::Csv, false, Vec::new()).unwrap();
        sink.row(&row).unwrap();
        let out = sink.csv.take().unwrap().into_inner().unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.split("\r\n");
        assert_eq!(lines.next().unwrap(), DetailRow::COLUMNS.join(","));
        assert_eq!(
            lines.next().unwrap(),
            "\"1,\"\"2\"\"\",A-1,,2025-07-11T11:19:49.500Z,,success,1234567.50,KZT,1234567.5,KZT,,,0.00,,,2,,amount_mismatch;order_mismatch"
        );
    }

    #[test]
    fn json_is_an_array_with_exact_amounts_as_strings() {
        let mut sink = Sink::new::<SummaryRow>(Format::Json, false, Vec::new()).unwrap();
        assert_eq!(sink.rows, 0);
        let row = SummaryRow {
            day: NaiveDate::from_ymd_opt(2025, 7, 11).unwrap(),
            currency: Some("KZT".into()),
            status: "success".into(),
            payments: 2,
            expected_amount: "10.10".into(),
            amount: "10.1".into(),
            fee: "0".into(),
            difference: "0.00".into(),
            flagged: 0,
            amount_mismatch: 0,
            currency_mismatch: 0,
            order_mismatch: 0,
            lifetime_exceeded: 0,
            not_found: 0,
            unknown_status: 0,
            terminal_status_changed: 0,
            polling_abandoned: 0,
            expected_payments: 2,
        };
        sink.row(&row).unwrap();
        let out = sink.out.take().unwrap();
        let mut text = String::from_utf8(out).unwrap();
        text.push_str("\n]");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0]["expected_amount"], "10.10");
        assert_eq!(parsed[0]["day"], "2025-07-11");
    }

    fn hostile_row() -> DetailRow {
        DetailRow {
            payment_id: "=HYPERLINK(\"http://x\",\"pay\")".into(),
            order_id: Some("@SUM(A1)".into()),
            provider_order_id: Some("+1\u{1b}[2J".into()),
            created_at: "2025-07-11T11:19:49Z".parse().unwrap(),
            settled_at: None,
            status: Some("-x".into()),
            expected_amount: Some("10".parse().unwrap()),
            expected_currency: None,
            amount: Some("5".parse().unwrap()),
            currency: None,
            fee: None,
            discount: None,
            amount_difference: Some("-5".parse().unwrap()),
            expires_at: None,
            expiry_source: None,
            checks: 1,
            last_checked_at: None,
            open_flags: vec![],
        }
    }

    #[test]
    fn csv_neutralises_formulas_in_text_cells_unless_raw() {
        let text = |raw: bool| {
            let mut sink = Sink::new::<DetailRow>(Format::Csv, raw, Vec::new()).unwrap();
            sink.row(&hostile_row()).unwrap();
            let out = sink.csv.take().unwrap().into_inner().unwrap();
            String::from_utf8(out).unwrap()
        };
        let safe = text(false);
        let row = safe.split("\r\n").nth(1).unwrap();
        assert!(
            row.starts_with(
                "\"'=HYPERLINK(\"\"http://x\"\",\"\"pay\"\")\",'@SUM(A1),'+1\u{1b}[2J,"
            ),
            "{row}"
        );
        assert!(row.contains(",'-x,"), "{row}");
        assert!(
            row.contains(",10,,5,,,,-5,"),
            "numbers are left alone: {row}"
        );
        let raw = text(true);
        assert!(raw.contains("\r\n\"=HYPERLINK("), "{raw}");
    }

    #[test]
    fn the_table_escapes_control_characters() {
        let mut row = hostile_row();
        row.payment_id = "+1\u{1b}[2J".into();
        let mut sink = Sink::new::<DetailRow>(Format::Table, false, Vec::new()).unwrap();
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
            let mut sink = Sink::new::<DetailRow>(Format::Table, false, Vec::new()).unwrap();
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
