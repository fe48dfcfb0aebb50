//! A report as an Excel workbook (`report --format xlsx`): one sheet, named for the report,
//! with typed cells, so a spreadsheet in any locale shows them with its own separators and
//! date order and sums them without a conversion step.
//!
//! - An amount is a number cell formatted `#,##0.00` (more decimals shown when it has them)
//!   only when that number is exactly the amount: an xlsx number is a binary double, which
//!   holds every decimal of up to 15 significant digits exactly as written (and Excel shows
//!   no more than 15). A longer amount (a sum in the quintillions, say) is written as text, so
//!   no digit is ever rounded.
//! - Days and times are date cells on the reporting zone's clock (`recon.timezone`), times to
//!   the second.
//! - Text is a text cell: a spreadsheet never runs one as a formula. One that would be a
//!   formula if typed in (`=`, `+`, `-`, `@`…) is also marked "quote prefix", so editing it in
//!   Excel keeps it text; its value is unchanged, so `resolve --from-xlsx` reads it exactly.
//! - The header row is frozen and bold; widths are set per kind of column.
//!
//! The sheet is written in rust_xlsxwriter's constant-memory mode (rows go to a temporary file
//! as they come), so a report over a million payments does not sit in memory.

use std::borrow::Cow;
use std::io::{Seek as _, Write};

use chrono::{NaiveDate, NaiveDateTime, Timelike as _};
use rust_decimal::Decimal;
use rust_xlsxwriter::{Format, Workbook, XlsxError};

use super::ReportError;
use super::columns::{Cell, Kind, ReportRow};

/// Data rows a sheet holds (Excel's 1,048,576 rows, less the header).
pub const MAX_ROWS: u64 = 1_048_575;

/// The earliest day an Excel date shows correctly (its serial dates count from 1900, and it
/// takes 1900 for a leap year); an earlier one is written as text.
fn first_excel_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 3, 1).expect("a date")
}

/// Significant digits an xlsx number cell holds exactly as written, and Excel shows.
const EXACT_DIGITS: usize = 15;

/// Decimals the long amount format shows (amounts are stored with at most 8).
const MAX_SHOWN_DECIMALS: u32 = 8;

struct Formats {
    header: Format,
    amount: Format,
    long_amount: Format,
    day: Format,
    time: Format,
    quoted: Format,
}

/// One sheet being written.
pub(super) struct Sheet {
    book: Workbook,
    formats: Formats,
    /// The next row to write (the header is row 0).
    next: u32,
}

impl Sheet {
    pub fn new<R: ReportRow>() -> Result<Self, ReportError> {
        let formats = Formats {
            header: Format::new().set_bold(),
            // The reader's own thousands and decimal separators show: the format's `,` and `.`
            // are placeholders Excel and LibreOffice localise.
            amount: Format::new().set_num_format("#,##0.00"),
            long_amount: Format::new().set_num_format("#,##0.00######"),
            day: Format::new().set_num_format("yyyy-mm-dd"),
            time: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            quoted: Format::new().set_quote_prefix(),
        };
        let mut book = Workbook::new();
        let sheet = book.add_worksheet_with_constant_memory()?;
        sheet.set_name(R::SHEET)?;
        for (index, column) in R::COLUMNS.iter().enumerate() {
            sheet.set_column_width(col(index), width(column.kind, column.name))?;
            sheet.write_string_with_format(0, col(index), column.name, &formats.header)?;
        }
        sheet.set_freeze_panes(1, 0)?;
        Ok(Self {
            book,
            formats,
            next: 1,
        })
    }

    pub fn row<R: ReportRow>(&mut self, row: &R) -> Result<(), ReportError> {
        if u64::from(self.next) > MAX_ROWS {
            return Err(ReportError::TooManyRows(MAX_ROWS));
        }
        let at = self.next;
        let formats = &self.formats;
        let sheet = self.book.worksheet_from_index(0)?;
        for (index, column) in R::COLUMNS.iter().enumerate() {
            let c = col(index);
            match (column.cell)(row) {
                Cell::Empty => {}
                Cell::Text(text) => {
                    write_text(sheet, at, c, text, formats)?;
                }
                Cell::Amount(amount) => {
                    let text = amount.text();
                    match exact_number(&text) {
                        Some((number, decimals)) => {
                            let format = if decimals <= 2 {
                                &formats.amount
                            } else {
                                &formats.long_amount
                            };
                            sheet.write_number_with_format(at, c, number, format)?;
                        }
                        None => {
                            sheet.write_string(at, c, text.as_ref())?;
                        }
                    }
                }
                Cell::Count(n) => {
                    // Counts and ids are far below 2^53: exact as doubles.
                    #[allow(clippy::cast_precision_loss)]
                    sheet.write_number(at, c, n as f64)?;
                }
                Cell::Day(day) if day >= first_excel_day() => {
                    sheet.write_datetime_with_format(at, c, day, &formats.day)?;
                }
                Cell::Day(day) => {
                    sheet.write_string(at, c, day.to_string())?;
                }
                Cell::Time(stamp) => {
                    let local = to_the_second(stamp.local);
                    if local.date() >= first_excel_day() {
                        sheet.write_datetime_with_format(at, c, local, &formats.time)?;
                    } else {
                        sheet.write_string(at, c, local.format("%Y-%m-%d %H:%M:%S").to_string())?;
                    }
                }
                Cell::List(names) => {
                    if !names.is_empty() {
                        write_text(sheet, at, c, &names.join(";"), formats)?;
                    }
                }
            }
        }
        self.next += 1;
        Ok(())
    }

    /// Writes the finished workbook to `out`. (The zip writer seeks, so it goes through a
    /// temporary file first.)
    pub fn finish(mut self, mut out: impl Write) -> Result<(), ReportError> {
        let mut file = tempfile::tempfile()?;
        self.book.save_to_writer(&mut file)?;
        file.rewind()?;
        std::io::copy(&mut file, &mut out)?;
        out.flush()?;
        Ok(())
    }
}

/// Characters (UTF-16 units) a cell holds.
const CELL_CHARS: usize = 32_767;

/// Text as a cell holds it: whole, or, past Excel's limit, cut with `…` (only a value written
/// around the rules can be that long; CSV and JSON carry it whole).
fn fit_in_a_cell(text: &str) -> Cow<'_, str> {
    if text.encode_utf16().count() <= CELL_CHARS {
        return Cow::Borrowed(text);
    }
    let mut units = 0;
    let mut cut: String = text
        .chars()
        .take_while(|c| {
            units += c.len_utf16();
            units < CELL_CHARS
        })
        .collect();
    cut.push('…');
    Cow::Owned(cut)
}

fn write_text(
    sheet: &mut rust_xlsxwriter::Worksheet,
    row: u32,
    col: u16,
    text: &str,
    formats: &Formats,
) -> Result<(), XlsxError> {
    let text = fit_in_a_cell(text);
    let text = text.as_ref();
    if matches!(crate::text::for_spreadsheet(text), Cow::Owned(_)) {
        sheet.write_string_with_format(row, col, text, &formats.quoted)?;
    } else {
        sheet.write_string(row, col, text)?;
    }
    Ok(())
}

fn col(index: usize) -> u16 {
    u16::try_from(index).expect("a report has few columns")
}

/// A column wide enough for its header and a typical value of its kind.
fn width(kind: Kind, name: &str) -> f64 {
    let typical = match kind {
        Kind::Text | Kind::TextOrAmount => 14,
        Kind::Amount => 15,
        Kind::Count => 6,
        Kind::Day => 11,
        Kind::Time => 19,
        Kind::List => 24,
    };
    #[allow(clippy::cast_precision_loss)]
    let width = typical.max(name.len() + 2) as f64;
    width
}

/// Times in a spreadsheet are to the second: a fraction would only show as float noise.
fn to_the_second(at: NaiveDateTime) -> NaiveDateTime {
    at.with_nanosecond(0).expect("0 is a valid nanosecond")
}

/// The amount as an xlsx number and its decimals, when that number is exactly the amount:
/// at most [`EXACT_DIGITS`] significant digits (a double holds every such decimal exactly as
/// written: its shortest round trip gives the same digits back, checked too) and at most
/// [`MAX_SHOWN_DECIMALS`] decimals (all shown). `None`: write it as text.
pub fn exact_number(amount: &str) -> Option<(f64, u32)> {
    let exact = Decimal::from_str_exact(amount).ok()?.normalize();
    let digits = exact.mantissa().unsigned_abs().to_string().len();
    if digits > EXACT_DIGITS || exact.scale() > MAX_SHOWN_DECIMALS {
        return None;
    }
    let number: f64 = amount.parse().ok()?;
    let round_trip = Decimal::from_str_exact(&number.to_string()).ok()?;
    (round_trip == exact).then_some((number, exact.scale()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_become_numbers_only_when_the_number_is_exactly_the_amount() {
        assert_eq!(exact_number("1234567.50"), Some((1_234_567.5, 1)));
        assert_eq!(exact_number("0.10"), Some((0.1, 1)));
        assert_eq!(exact_number("-5.00"), Some((-5.0, 0)));
        assert_eq!(exact_number("0.00000001"), Some((1e-8, 8)));
        // 15 significant digits: exact; 16 or more: text.
        assert_eq!(
            exact_number("9999999999999.99"),
            Some((9_999_999_999_999.99, 2))
        );
        assert_eq!(exact_number("99999999999999.99"), None);
        assert_eq!(exact_number("999999999999999999.99999999"), None);
        assert_eq!(exact_number("1999999999999999999.99999998"), None);
        assert_eq!(exact_number("not a number"), None);
    }

    #[test]
    fn text_past_a_cells_limit_is_cut_and_shorter_text_kept_whole() {
        let long = "ж".repeat(40_000);
        let cut = fit_in_a_cell(&long);
        assert_eq!(cut.encode_utf16().count(), CELL_CHARS);
        assert!(cut.ends_with("ж…"));
        let emoji = "😀".repeat(20_000);
        assert!(fit_in_a_cell(&emoji).encode_utf16().count() <= CELL_CHARS);
        assert!(matches!(fit_in_a_cell("1001"), Cow::Borrowed("1001")));
    }

    #[test]
    fn times_are_cut_to_the_second_not_rounded() {
        let at = NaiveDate::from_ymd_opt(2025, 7, 31)
            .unwrap()
            .and_hms_micro_opt(23, 59, 59, 999_999)
            .unwrap();
        assert_eq!(to_the_second(at).to_string(), "2025-07-31 23:59:59");
    }
}
