//! The column table: each report row type declares its columns once (name, kind, and how to
//! read the cell from a row), and every format is written from that one declaration. So a
//! kind of value is written the same way wherever it appears: every amount gets `--excel`'s
//! decimal comma and xlsx's number format, every time the reporting zone's clock where a
//! person reads it, every text cell the spreadsheet guard. Adding a row type is declaring its
//! columns ([`super::rows`]); no format needs to know it.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;

/// What a column holds, which decides how each format writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text from outside (ids, statuses, currencies): guarded against formulas in CSV.
    Text,
    /// An exact decimal amount: a dot in CSV and JSON (as a string), a decimal comma with
    /// `--excel`, a number cell in xlsx where that is exact.
    Amount,
    /// A whole number of things.
    Count,
    /// A reporting day in `recon.timezone`.
    Day,
    /// An instant: UTC in CSV and JSON, the reporting zone's clock in `--excel` and xlsx.
    Time,
    /// A list of names (a payment's open flags): `;`-separated in CSV and xlsx, an array in
    /// JSON.
    List,
    /// What a flag compared: an amount for an amount flag, text (a currency, an order id, a
    /// status) for the others. Each cell is one or the other.
    TextOrAmount,
}

/// One cell, typed; [`Cell::Empty`] is an unknown or absent value (never 0, never "").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell<'a> {
    Empty,
    Text(&'a str),
    Amount(Amount<'a>),
    Count(i64),
    Day(NaiveDate),
    Time(Stamp),
    List(&'a [String]),
}

/// An amount as the row holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount<'a> {
    Decimal(Decimal),
    /// PostgreSQL's exact `numeric` as text (a sum may exceed what `Decimal` holds).
    Text(&'a str),
}

impl Amount<'_> {
    /// With a dot and no thousands separators, every digit as stored.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Self::Decimal(d) => Cow::Owned(d.to_string()),
            Self::Text(t) => Cow::Borrowed(t),
        }
    }
}

/// An instant, and the same instant on the reporting zone's clock (converted by PostgreSQL,
/// whose zone rules also decide the reporting days, so the two never disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub utc: DateTime<Utc>,
    pub local: NaiveDateTime,
}

impl<'a> Cell<'a> {
    pub fn text(value: &'a Option<String>) -> Self {
        value.as_deref().map_or(Self::Empty, Self::Text)
    }

    pub fn amount(value: Option<Decimal>) -> Self {
        value.map_or(Self::Empty, |d| Self::Amount(Amount::Decimal(d)))
    }

    /// A sum PostgreSQL computed, as its exact text.
    pub fn sum(value: &'a Option<String>) -> Self {
        value
            .as_deref()
            .map_or(Self::Empty, |t| Self::Amount(Amount::Text(t)))
    }

    pub fn time(utc: Option<DateTime<Utc>>, local: Option<NaiveDateTime>) -> Self {
        match (utc, local) {
            (Some(utc), Some(local)) => Self::Time(Stamp { utc, local }),
            _ => Self::Empty,
        }
    }

    /// The kind of value this cell holds; `None` when empty.
    pub fn kind(&self) -> Option<Kind> {
        Some(match self {
            Self::Empty => return None,
            Self::Text(_) => Kind::Text,
            Self::Amount(_) => Kind::Amount,
            Self::Count(_) => Kind::Count,
            Self::Day(_) => Kind::Day,
            Self::Time(_) => Kind::Time,
            Self::List(_) => Kind::List,
        })
    }
}

/// A column of a report: its stable name, its kind, and its cell in a row.
pub struct Column<R> {
    pub name: &'static str,
    pub kind: Kind,
    pub cell: for<'a> fn(&'a R) -> Cell<'a>,
}

impl<R> Column<R> {
    /// Whether `cell` is of this column's kind (an empty cell is of every kind).
    pub fn holds(&self, cell: &Cell<'_>) -> bool {
        match (self.kind, cell.kind()) {
            (_, None) => true,
            (Kind::TextOrAmount, Some(kind)) => kind == Kind::Text || kind == Kind::Amount,
            (column, Some(kind)) => column == kind,
        }
    }
}

/// How a terminal table lays out a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Left-aligned, cut with `…` when longer than its width.
    Text,
    /// Left-aligned and never cut (a currency code: a cut one would read as another).
    Code,
    /// Right-aligned, never cut: an amount is shown whole.
    Number,
}

/// A column of the terminal table, which shows the essentials for a person at a 120-column
/// terminal (CSV, JSON and xlsx carry every column).
pub struct TableColumn<R> {
    pub name: &'static str,
    pub width: usize,
    pub layout: Layout,
    pub cell: fn(&R) -> String,
}

/// A row type of a report.
pub trait ReportRow: Sized + 'static {
    /// The name of the xlsx sheet that holds these rows.
    const SHEET: &'static str;
    const COLUMNS: &'static [Column<Self>];
    const TABLE: &'static [TableColumn<Self>];
}
