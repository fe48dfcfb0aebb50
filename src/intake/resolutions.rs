//! A spreadsheet of resolutions, read back: the open flags `report --flags --format csv`
//! listed, with a note a person added to each row, for `resolve --from-csv`.
//!
//! The file is read as `import` reads one (the same delimiters, the same bounds, line
//! numbers), checked whole, and only then written: a file with any bad row closes nothing.
//! Columns other than those below (the report's amounts, ages…) are there for the person and
//! are not read.

use std::collections::HashMap;
use std::io::Read;

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

/// Reads every row of a resolutions file; every problem, by line, or the rows.
pub fn read_resolutions(input: impl Read) -> Result<Vec<Resolution>, ImportError> {
    let mut rows = CsvRows::open(input)?;
    let names: Vec<String> = rows.header.iter().map(column_name).collect();
    let column = |name: &str| names.iter().position(|n| n == name);
    let missing: Vec<&str> = REQUIRED_COLUMNS
        .into_iter()
        .filter(|name| column(name).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::Header(format!(
            "no {} column; a resolutions file has at least the columns {} (as `report --flags \
             --format csv` writes them, with a note added to each row)",
            missing.join(", "),
            REQUIRED_COLUMNS.join(", ")
        )));
    }
    let [payment_id, kind, note_at] = REQUIRED_COLUMNS.map(|name| column(name).unwrap_or(0));
    let flag_id = column("flag_id");

    let mut errors = LineErrors::default();
    let mut resolutions = Vec::new();
    // Each flag once: (payment, kind, flag id) -> its first line.
    let mut seen: HashMap<(String, FlagKind, Option<i64>), u64> = HashMap::new();
    while let Some(line) = rows.next(&mut errors)? {
        let record = &rows.record;
        let cell = |index: usize| from_spreadsheet(record.get(index).unwrap_or_default().trim());
        let mut bad = |column: &str, problem: String| {
            errors.push(LineError {
                line,
                column: column.to_owned(),
                problem,
            })
        };
        let id = PaymentId::from_input(&cell(payment_id))
            .map_err(|e| bad("payment_id", e.to_string()))
            .ok();
        let kind = cell(kind)
            .parse::<FlagKind>()
            .map_err(|e| bad("kind", e.to_string()))
            .ok();
        let flag = match flag_id.map(&cell).filter(|raw| !raw.is_empty()) {
            None => Some(None),
            Some(raw) => raw
                .parse::<i64>()
                .map(Some)
                .map_err(|_| bad("flag_id", format!("{} is not a flag id", excerpt(&raw))))
                .ok(),
        };
        let note = note(record.get(note_at).unwrap_or_default())
            .map_err(|e| bad("note", e))
            .ok();
        let (Some(payment_id), Some(kind), Some(flag_id), Some(note)) = (id, kind, flag, note)
        else {
            continue;
        };
        let key = (payment_id.as_str().to_owned(), kind, flag_id);
        if let Some(first) = seen.get(&key) {
            bad(
                "payment_id",
                format!(
                    "the {kind} flag of {} is already on line {first} of this file",
                    excerpt(payment_id.as_str())
                ),
            );
            continue;
        }
        seen.insert(key, line);
        resolutions.push(Resolution {
            line,
            payment_id,
            kind,
            flag_id,
            note,
        });
    }
    if !errors.is_empty() {
        return Err(ImportError::Rejected(errors));
    }
    Ok(resolutions)
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
                 unknown_status, terminal_status_changed, polling_abandoned, paid_after_deadline, untracked_payment, callback_disagrees, callback_unreadable",
                "line 5: payment_id: the not_found flag of \"1003\" is already on line 4 of this file",
            ]
        );
        let Err(ImportError::Header(problem)) = read("payment_id,kind\n1,not_found\n") else {
            panic!("no note column")
        };
        assert!(problem.starts_with("no note column"), "{problem}");
    }
}
