//! A file of refunds the merchant made, for `import --refunds` (CSV or xlsx): each is looked
//! for at the provider soon after, and matched to the provider's refund.
//!
//! Read as `import` reads a file of payments (the same delimiters, decimal commas after `;`,
//! bounds, line numbers, timestamps), checked whole, and only then written: a file with any
//! bad row imports nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Read, Seek};

use chrono::FixedOffset;

use super::import::{CsvRows, ImportError, LineError, LineErrors, column_name, decimal_mark};
use super::intake_timestamp;
use crate::domain::{Currency, DecimalMark, PaymentId, parse_amount_with};
use crate::text::{excerpt, from_spreadsheet};

/// The columns a refunds file must have, in any order; others are not read.
pub const COLUMNS: [&str; 5] = [
    "payment_id",
    "amount",
    "currency",
    "requested_at",
    "reference",
];

/// Longest reference kept, in characters (the schema's bound).
pub const REFERENCE_MAX_CHARS: usize = 128;

pub use crate::domain::money::RefundRow;

struct Checker {
    at: [usize; 5],
    /// How amounts are written: a decimal comma in `;`-separated files; a dot in xlsx.
    mark: DecimalMark,
    naive_offset: FixedOffset,
    unit: &'static str,
    errors: LineErrors,
    rows: Vec<RefundRow>,
    /// Each (payment, reference) once: its first line.
    seen: HashMap<(String, String), u64>,
}

impl Checker {
    fn new(
        names: &[String],
        mark: DecimalMark,
        naive_offset: FixedOffset,
        unit: &'static str,
    ) -> Result<Self, ImportError> {
        let at = super::sheet::find_columns(names, COLUMNS).map_err(|missing| {
            ImportError::Header(format!(
                "no {} column; a refunds file has the columns {}",
                missing.join(", "),
                COLUMNS.join(", ")
            ))
        })?;
        Ok(Self {
            at,
            mark,
            naive_offset,
            unit,
            errors: LineErrors::default(),
            rows: Vec::new(),
            seen: HashMap::new(),
        })
    }

    fn row<'c>(&mut self, line: u64, cell: impl Fn(usize) -> Cow<'c, str>) {
        let errors = &mut self.errors;
        let mut bad = |column: &str, problem: String| {
            errors.push(LineError {
                line,
                column: column.to_owned(),
                problem,
            })
        };
        let [payment_id, amount, currency, requested_at, reference] = self.at.map(&cell);
        let payment_id = PaymentId::from_input(payment_id.trim())
            .map_err(|e| bad("payment_id", e.to_string()))
            .ok();
        // A refund's amount is what went back: the sign is the report's to give, not the file's.
        let amount = match parse_amount_with(amount.trim().trim_start_matches('-'), self.mark) {
            Ok(a) if amount.trim().starts_with('-') || a.is_zero() => {
                bad(
                    "amount",
                    format!(
                        "{} is not above 0; write what went back as a positive amount",
                        excerpt(amount.trim())
                    ),
                );
                None
            }
            Ok(a) => Some(a),
            Err(e) => {
                bad("amount", e.to_string());
                None
            }
        };
        let currency = currency
            .trim()
            .parse::<Currency>()
            .map_err(|e| bad("currency", e.to_string()))
            .ok();
        let requested_at = intake_timestamp(requested_at.trim(), self.naive_offset)
            .map_err(|e| bad("requested_at", e))
            .ok();
        let reference = reference.trim();
        let reference = if reference.is_empty() {
            bad(
                "reference",
                "is empty; give the merchant's own reference for the refund".into(),
            );
            None
        } else if reference.chars().count() > REFERENCE_MAX_CHARS {
            bad(
                "reference",
                format!("is longer than {REFERENCE_MAX_CHARS} characters"),
            );
            None
        } else {
            Some(crate::text::escape_invisible(reference).into_owned())
        };
        let (Some(payment_id), Some(amount), Some(currency), Some(requested_at), Some(reference)) =
            (payment_id, amount, currency, requested_at, reference)
        else {
            return;
        };
        let key = (payment_id.as_str().to_owned(), reference.clone());
        if let Some(first) = self.seen.get(&key) {
            bad(
                "reference",
                format!(
                    "the refund {} of {} is already on {} {first} of this file",
                    excerpt(&reference),
                    excerpt(payment_id.as_str()),
                    self.unit
                ),
            );
            return;
        }
        self.seen.insert(key, line);
        self.rows.push(RefundRow {
            line,
            payment_id,
            amount,
            currency,
            requested_at,
            reference,
        });
    }
}

impl super::sheet::RowChecker for Checker {
    type Output = Vec<RefundRow>;

    fn read_columns(&self) -> Vec<(&'static str, usize)> {
        COLUMNS.into_iter().zip(self.at).collect()
    }

    fn errors(&mut self) -> &mut LineErrors {
        &mut self.errors
    }

    fn row<'c>(&mut self, line: u64, cell: impl Fn(usize) -> Cow<'c, str>) {
        Checker::row(self, line, cell);
    }

    fn finish(self) -> Result<Vec<RefundRow>, ImportError> {
        if !self.errors.is_empty() {
            return Err(ImportError::Rejected(self.errors));
        }
        Ok(self.rows)
    }
}

/// Reads every row of a refunds CSV file (times without an offset in `naive_offset`); every
/// problem, by line, or the rows.
pub fn read_refunds(
    input: impl Read,
    naive_offset: FixedOffset,
) -> Result<Vec<RefundRow>, ImportError> {
    use super::sheet::RowChecker as _;

    let mut rows = CsvRows::open(input)?;
    let names: Vec<String> = rows.header.iter().map(column_name).collect();
    let mark = decimal_mark(rows.delimiter);
    let mut checker = Checker::new(&names, mark, naive_offset, "line")?;
    while let Some(line) = rows.next(&mut checker.errors)? {
        let record = &rows.record;
        // The `'` a report puts before a formula-like value is taken off.
        checker.row(line, |index| {
            from_spreadsheet(record.get(index).unwrap_or_default().trim())
        });
    }
    checker.finish()
}

/// The sheet a refunds workbook is read from: `Refunds`, or the only one.
pub const REFUNDS_SHEET: &str = "Refunds";

/// Reads every row of a refunds workbook (xlsx): the same checks as a CSV file. A number cell
/// is read as the spreadsheet shows it (`1234.5`); write amounts with a dot.
pub fn read_refunds_xlsx(
    input: impl Read + Seek,
    naive_offset: FixedOffset,
) -> Result<Vec<RefundRow>, ImportError> {
    super::sheet::read_xlsx(
        input,
        REFUNDS_SHEET,
        "with the refunds on a sheet named Refunds",
        |names| Checker::new(names, DecimalMark::Dot, naive_offset, "row"),
    )
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use rust_decimal::Decimal;

    use super::*;

    fn almaty() -> FixedOffset {
        FixedOffset::east_opt(5 * 3600).unwrap()
    }

    #[test]
    fn a_refunds_file_reads_in_either_locale_and_times_without_an_offset_are_the_providers() {
        let rows = read_refunds(
            "payment_id,amount,currency,requested_at,reference,note\n\
             1001,1500.50,KZT,2026-12-01 10:00:00,R-1,partial\n"
                .as_bytes(),
            almaty(),
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].amount, "1500.50".parse::<Decimal>().unwrap());
        assert_eq!(
            rows[0].requested_at,
            "2026-12-01T05:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let rows = read_refunds(
            "\u{feff}reference;payment_id;amount;currency;requested_at\r\n\
             R-2;1002;1 234,50;KZT;2026-12-01T10:00:00Z\r\n"
                .as_bytes(),
            almaty(),
        )
        .unwrap();
        assert_eq!(rows[0].amount, "1234.50".parse::<Decimal>().unwrap());
        assert_eq!(rows[0].reference, "R-2");
    }

    #[test]
    fn every_bad_row_is_named_by_line_and_nothing_is_returned() {
        let Err(ImportError::Rejected(errors)) = read_refunds(
            "payment_id,amount,currency,requested_at,reference\n\
             1001,-5,KZT,2026-12-01T10:00:00Z,R-1\n\
             1002,5,kzt,yesterday,R-2\n\
             1003,5,KZT,2026-12-01T10:00:00Z,\n\
             1004,5,KZT,2026-12-01T10:00:00Z,R-4\n\
             1004,6,KZT,2026-12-02T10:00:00Z,R-4\n"
                .as_bytes(),
            almaty(),
        ) else {
            panic!("refused")
        };
        let shown: Vec<String> = errors.shown.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 5, "{shown:#?}");
        assert!(
            shown[0].starts_with("line 2: amount: \"-5\" is not above 0"),
            "{shown:#?}"
        );
        assert!(shown[1].starts_with("line 3: currency:"), "{shown:#?}");
        assert!(shown[2].starts_with("line 3: requested_at:"), "{shown:#?}");
        assert!(
            shown[3].starts_with("line 4: reference: is empty"),
            "{shown:#?}"
        );
        assert_eq!(
            shown[4],
            "line 6: reference: the refund \"R-4\" of \"1004\" is already on line 5 of this file"
        );
        let Err(ImportError::Header(problem)) =
            read_refunds("payment_id,amount\n1,2\n".as_bytes(), almaty())
        else {
            panic!("no currency column")
        };
        assert!(
            problem.starts_with("no currency, requested_at, reference column"),
            "{problem}"
        );
    }
}
