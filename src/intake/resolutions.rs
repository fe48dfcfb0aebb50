//! A spreadsheet of resolutions, read back: the open flags `report --flags --format csv` (or
//! `xlsx`) listed, with a note a person added to each row, for `resolve --from-csv` (or
//! `--from-xlsx`).
//!
//! The file is read as `import` reads one (the same delimiters, the same bounds, line
//! numbers), checked whole, and only then written: a file with any bad row closes nothing.
//! Columns other than those below (the report's amounts, ages…) are there for the person and
//! are not read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Read, Seek};

use super::import::{CsvRows, ImportError, LineError, LineErrors, column_name};
use crate::domain::{FlagKind, PaymentId};
pub use crate::store::finance::Resolution;
use crate::text::{excerpt, from_spreadsheet};

/// Longest note kept, in characters.
pub const NOTE_MAX_CHARS: usize = 1000;

/// The columns a resolutions file must have; `flag_id` (as the report writes it) is read when
/// present, so a note closes exactly the flag it was written for.
pub const REQUIRED_COLUMNS: [&str; 3] = ["payment_id", "kind", "note"];

/// A note as people write it: trimmed, not empty, at most [`NOTE_MAX_CHARS`] characters;
/// invisible characters (a line break inside a cell, say) are kept, escaped.
pub fn note(raw: &str) -> Result<String, String> {
    let note = raw.trim();
    if note.is_empty() {
        return Err("is empty; say why the flag is closed".into());
    }
    if note.chars().count() > NOTE_MAX_CHARS {
        return Err(format!("is longer than {NOTE_MAX_CHARS} characters"));
    }
    Ok(crate::text::escape_invisible(note).into_owned())
}

/// Checks a resolutions file row by row, whatever it came in (CSV or xlsx): every problem, by
/// line, or the resolutions.
struct Checker {
    payment_id: usize,
    kind: usize,
    note: usize,
    flag_id: Option<usize>,
    /// What the file's rows are called in messages: `line` (CSV) or `row` (a sheet's).
    unit: &'static str,
    errors: LineErrors,
    resolutions: Vec<Resolution>,
    /// Each flag once: (payment, kind, flag id) -> its first line.
    seen: HashMap<(String, FlagKind, Option<i64>), u64>,
}

impl Checker {
    /// From the header's column names; `from` says what writes such a file.
    fn new(names: &[String], from: &str, unit: &'static str) -> Result<Self, ImportError> {
        let [payment_id, kind, note] = super::sheet::find_columns(names, REQUIRED_COLUMNS)
            .map_err(|missing| {
                ImportError::Header(format!(
                    "no {} column; a resolutions file has at least the columns {} (as `{from}` \
                     writes them, with a note added to each row)",
                    missing.join(", "),
                    REQUIRED_COLUMNS.join(", ")
                ))
            })?;
        Ok(Self {
            payment_id,
            kind,
            note,
            flag_id: names.iter().position(|n| n == "flag_id"),
            unit,
            errors: LineErrors::default(),
            resolutions: Vec::new(),
            seen: HashMap::new(),
        })
    }

    /// Checks the row on `line`, whose cells `cell` gives by column (empty when absent).
    fn row<'c>(&mut self, line: u64, cell: impl Fn(usize) -> Cow<'c, str>) {
        let errors = &mut self.errors;
        let mut bad = |column: &str, problem: String| {
            errors.push(LineError {
                line,
                column: column.to_owned(),
                problem,
            })
        };
        let id = PaymentId::from_input(cell(self.payment_id).trim())
            .map_err(|e| bad("payment_id", e.to_string()))
            .ok();
        let kind = cell(self.kind)
            .trim()
            .parse::<FlagKind>()
            .map_err(|e| bad("kind", e.to_string()))
            .ok();
        let flag = match self.flag_id.map(&cell).filter(|raw| !raw.trim().is_empty()) {
            None => Some(None),
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| bad("flag_id", format!("{} is not a flag id", excerpt(&raw))))
                .ok(),
        };
        let note = note(&cell(self.note)).map_err(|e| bad("note", e)).ok();
        let (Some(payment_id), Some(kind), Some(flag_id), Some(note)) = (id, kind, flag, note)
        else {
            return;
        };
        let key = (payment_id.as_str().to_owned(), kind, flag_id);
        if let Some(first) = self.seen.get(&key) {
            bad(
                "payment_id",
                format!(
                    "the {kind} flag of {} is already on {} {first} of this file",
                    excerpt(payment_id.as_str()),
                    self.unit
                ),
            );
            return;
        }
        self.seen.insert(key, line);
        self.resolutions.push(Resolution {
            line,
            payment_id,
            kind,
            flag_id,
            note,
        });
    }

    fn finish(self) -> Result<Vec<Resolution>, ImportError> {
        if !self.errors.is_empty() {
            return Err(ImportError::Rejected(self.errors));
        }
        Ok(self.resolutions)
    }
}

/// Reads every row of a resolutions CSV file; every problem, by line, or the rows.
pub fn read_resolutions(input: impl Read) -> Result<Vec<Resolution>, ImportError> {
    let mut rows = CsvRows::open(input)?;
    let names: Vec<String> = rows.header.iter().map(column_name).collect();
    let mut checker = Checker::new(&names, "report --flags --format csv", "line")?;
    let note_at = checker.note;
    while let Some(line) = rows.next(&mut checker.errors)? {
        let record = &rows.record;
        checker.row(line, |index| {
            let cell = record.get(index).unwrap_or_default();
            if index == note_at {
                // A person's note, as written.
                Cow::Borrowed(cell)
            } else {
                // The `'` the report put before a formula-like value is taken off.
                from_spreadsheet(cell.trim())
            }
        });
    }
    checker.finish()
}

/// The sheet a resolutions workbook is read from: the report's own (`Flags`), or the only one.
pub const FLAGS_SHEET: &str = "Flags";

/// Reads every row of a resolutions workbook (xlsx, as `report --flags --format xlsx` writes
/// it, with notes added, in Excel or LibreOffice): the same checks as a CSV file, on the sheet
/// `Flags` (or the only sheet). Lines are the sheet's row numbers.
pub fn read_resolutions_xlsx(input: impl Read + Seek) -> Result<Vec<Resolution>, ImportError> {
    super::sheet::read_xlsx(
        input,
        FLAGS_SHEET,
        "`report --flags --format xlsx` wrote",
        |names| Checker::new(names, "report --flags --format xlsx", "row"),
    )
}

impl super::sheet::RowChecker for Checker {
    type Output = Vec<Resolution>;

    fn read_columns(&self) -> Vec<(&'static str, usize)> {
        let mut read = vec![
            ("payment_id", self.payment_id),
            ("kind", self.kind),
            ("note", self.note),
        ];
        read.extend(self.flag_id.map(|i| ("flag_id", i)));
        read
    }

    fn errors(&mut self) -> &mut LineErrors {
        &mut self.errors
    }

    fn row<'c>(&mut self, line: u64, cell: impl Fn(usize) -> Cow<'c, str>) {
        Checker::row(self, line, cell);
    }

    fn finish(self) -> Result<Vec<Resolution>, ImportError> {
        Checker::finish(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<Resolution>, ImportError> {
        read_resolutions(text.as_bytes())
    }

    #[test]
    fn the_reports_columns_are_read_and_the_others_left_alone() {
        let rows = read(
            "flag_id,payment_id,kind,age_days,expected_amount,note\r\n\
             7,1001,amount_mismatch,3,5000.00,paid the rest in cash\r\n\
             ,'-7781,not_found,0,,asked support: ticket 55\r\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].flag_id, Some(7));
        assert_eq!(rows[0].note, "paid the rest in cash");
        assert_eq!(rows[1].flag_id, None);
        assert_eq!(rows[1].line, 3);
        assert_eq!(
            rows[1].payment_id.as_str(),
            "-7781",
            "a formula guard is undone"
        );
    }

    #[test]
    fn an_excel_file_from_a_ru_locale_reads_the_same() {
        let rows = read(
            "\u{feff}flag_id;payment_id;kind;expected_amount;note\r\n\
             7;1001;amount_mismatch;1 234,50;\"возврат; наличными\"\r\n",
        )
        .unwrap();
        assert_eq!(rows[0].note, "возврат; наличными");
        assert_eq!(rows[0].kind, FlagKind::AmountMismatch);
    }

    #[test]
    fn every_bad_row_is_named_by_line_and_nothing_is_returned() {
        let Err(ImportError::Rejected(errors)) = read(
            "payment_id,kind,note\n\
             1001,amount_mismatch,\n\
             1002,amount,ok\n\
             1003,not_found,ok\n\
             1003,not_found,again\n",
        ) else {
            panic!("refused")
        };
        let shown: Vec<String> = errors.shown.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "line 2: note: is empty; say why the flag is closed",
                "line 3: kind: unknown flag kind \"amount\"; expected one of amount_mismatch, \
                 currency_mismatch, order_mismatch, lifetime_exceeded, not_found, \
                 unknown_status, terminal_status_changed, polling_abandoned, paid_after_deadline, untracked_payment, callback_disagrees, callback_unreadable, refund_missing, \
                 refund_amount_mismatch, unexpected_refund, status_api_disagrees, not_in_registry, \
                 registry_amount_mismatch, registry_unknown, payout_not_at_bank, \
                 bank_credit_unexplained",
                "line 5: payment_id: the not_found flag of \"1003\" is already on line 4 of this file",
            ]
        );
        let Err(ImportError::Header(problem)) = read("payment_id,kind\n1,not_found\n") else {
            panic!("no note column")
        };
        assert!(problem.starts_with("no note column"), "{problem}");
    }
}
