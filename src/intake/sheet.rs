//! Workbooks read back (xlsx, through calamine): the rows of one sheet handed to a checker
//! exactly as a CSV file's are, so a file says the same whether it came as CSV or xlsx.
//! Cells are read as a person sees them: a number as written (`7`, `12.5`), a date as
//! `2025-07-01` (with its time when it has one), text exactly; an error cell (`#N/A`) in a
//! column that is read is a line error.

use std::borrow::Cow;
use std::io::{Read, Seek};

use super::import::{ImportError, LineError, LineErrors, column_name};
use crate::text::excerpt;

/// What checks a file's rows, whatever it came in.
pub(crate) trait RowChecker: Sized {
    type Output;
    /// The columns whose cells are read, by name and position.
    fn read_columns(&self) -> Vec<(&'static str, usize)>;
    fn errors(&mut self) -> &mut LineErrors;
    /// Checks the row on `line`, whose cells `cell` gives by column (empty when absent).
    fn row<'c>(&mut self, line: u64, cell: impl Fn(usize) -> Cow<'c, str>);
    /// Every problem, by line, or what the file says.
    fn finish(self) -> Result<Self::Output, ImportError>;
}

/// Where each of `required` sits among a header's column `names`, or the names missing.
pub(crate) fn find_columns<'a, const N: usize>(
    names: &[String],
    required: [&'a str; N],
) -> Result<[usize; N], Vec<&'a str>> {
    let column = |name: &str| names.iter().position(|n| n == name);
    let missing: Vec<&str> = required
        .into_iter()
        .filter(|name| column(name).is_none())
        .collect();
    if missing.is_empty() {
        Ok(required.map(|name| column(name).unwrap_or(0)))
    } else {
        Err(missing)
    }
}

/// Reads the sheet `sheet` of a workbook (or its only sheet), its first non-empty row the
/// header (`new` makes the checker from its column names); `writer` names what writes such
/// a workbook, for a message. Lines are the sheet's row numbers.
pub(crate) fn read_xlsx<C: RowChecker>(
    input: impl Read + Seek,
    sheet: &str,
    writer: &str,
    new: impl FnOnce(&[String]) -> Result<C, ImportError>,
) -> Result<C::Output, ImportError> {
    use calamine::Reader as _;

    let mut book = calamine::Xlsx::new(input).map_err(|e| {
        ImportError::Read(format!("not an xlsx workbook ({e}); give an .xlsx file"))
    })?;
    let sheets = book.sheet_names();
    let sheet = match sheets.iter().find(|name| *name == sheet) {
        Some(name) => name.clone(),
        None if sheets.len() == 1 => sheets[0].clone(),
        None => {
            return Err(ImportError::Header(format!(
                "no sheet named {sheet} among {}; give the workbook {writer}, or keep only \
                 the sheet with the rows",
                sheets
                    .iter()
                    .map(|s| excerpt(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let mut cells = book
        .worksheet_cells_reader(&sheet)
        .map_err(|e| ImportError::Read(format!("the sheet {}: {e}", excerpt(&sheet))))?;
    let unreadable = |e: calamine::XlsxError| ImportError::Read(e.to_string());

    // Cells come row by row, left to right; empty ones may be left out.
    let mut new = Some(new);
    let mut checker: Option<C> = None;
    let mut row: Vec<Result<String, String>> = Vec::new();
    let mut row_at: Option<u32> = None;
    while let Some(cell) = cells.next_cell().map_err(unreadable)? {
        let (at, column) = cell.get_position();
        if row_at != Some(at) {
            if let Some(previous) = row_at {
                sheet_row(&mut checker, &mut new, previous, std::mem::take(&mut row))?;
            }
            row_at = Some(at);
        }
        let column = column as usize;
        if row.len() <= column {
            row.resize(column + 1, Ok(String::new()));
        }
        row[column] = cell_text(cell.get_value());
    }
    if let Some(last) = row_at {
        sheet_row(&mut checker, &mut new, last, row)?;
    }
    checker
        .ok_or_else(|| ImportError::Header("the sheet is empty or has no header row".into()))?
        .finish()
}

/// One row of a sheet (0-based `at`): the header when there is none yet, else a data row.
fn sheet_row<C: RowChecker>(
    checker: &mut Option<C>,
    new: &mut Option<impl FnOnce(&[String]) -> Result<C, ImportError>>,
    at: u32,
    cells: Vec<Result<String, String>>,
) -> Result<(), ImportError> {
    if cells
        .iter()
        .all(|c| matches!(c, Ok(text) if text.trim().is_empty()))
    {
        // A row a person emptied, as a blank line in CSV.
        return Ok(());
    }
    let Some(checker) = checker else {
        let names: Vec<String> = cells
            .iter()
            .map(|c| column_name(c.as_deref().unwrap_or_default()))
            .collect();
        let make = new.take().expect("the header is read once");
        *checker = Some(make(&names)?);
        return Ok(());
    };
    let line = u64::from(at) + 1;
    // A cell that shows an error (`#N/A`) in a column that is read has no value to check.
    let mut broken = false;
    for (name, index) in checker.read_columns() {
        if let Some(Err(error)) = cells.get(index) {
            broken = true;
            checker.errors().push(LineError {
                line,
                column: name.to_owned(),
                problem: format!("the cell shows the error {error}; write a value"),
            });
        }
    }
    if !broken {
        checker.row(line, |index| match cells.get(index) {
            Some(Ok(text)) => Cow::Borrowed(text.as_str()),
            _ => Cow::Borrowed(""),
        });
    }
    Ok(())
}

/// A cell's value as a person sees it; an error cell (`#N/A`) as `Err`.
fn cell_text(value: &calamine::DataRef<'_>) -> Result<String, String> {
    use calamine::DataRef;

    Ok(match value {
        DataRef::Empty => String::new(),
        DataRef::String(text) => text.clone(),
        DataRef::SharedString(text) => (*text).to_owned(),
        DataRef::Int(n) => n.to_string(),
        DataRef::Float(x) => number_text(*x),
        DataRef::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        DataRef::DateTime(at) => match at.as_datetime() {
            Some(at) if at.time() == chrono::NaiveTime::MIN => at.date().to_string(),
            Some(at) => at.format("%Y-%m-%d %H:%M:%S").to_string(),
            None => number_text(at.as_f64()),
        },
        DataRef::DateTimeIso(text) | DataRef::DurationIso(text) => text.clone(),
        DataRef::Error(error) => return Err(error.to_string()),
    })
}

/// A number cell as written: `7`, not `7.0`; `12.5`.
fn number_text(x: f64) -> String {
    // Whole numbers below 2^53 are exact in a double and print as integers.
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation)]
        let whole = x as i64;
        whole.to_string()
    } else {
        x.to_string()
    }
}
