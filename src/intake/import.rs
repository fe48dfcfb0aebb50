//! Bulk intake from CSV: validate every row, then import all of them in one transaction, or
//! none.
//!
//! The file is read once, as a stream: a blocking thread parses and validates each row and
//! hands valid rows, re-encoded, to PostgreSQL's `COPY` into a temporary table; checks that
//! need the whole file (an id twice in the file, an id stored with different values) run in
//! SQL on that table. So memory stays flat whatever the file's size, and a file with any bad
//! row imports nothing.
//!
//! Every value passes the same rules as `enqueue` and the schema's CHECK constraints
//! ([`crate::domain::rules`]), so PostgreSQL never refuses a row that validation let through.
//! Inputs are bounded: a row longer than [`MAX_ROW_BYTES`] stops the import at that line
//! (memory stays the same for a 1 GB file as for a small one), and only the first
//! [`SHOWN_ERRORS`] line errors are kept, with a count of the rest.

use std::io::{BufRead as _, Read};

use chrono::{DateTime, FixedOffset, Utc};
use csv::StringRecord;
use rust_decimal::Decimal;
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::intake_timestamp;
use crate::domain::{
    Currency, DecimalMark, ORDER_ID_MAX_LEN, PaymentId, optional_text, parse_amount_with,
};
use crate::store::{self, StoreError};
use crate::text::{clean, excerpt};

/// Longest row read, in bytes (a row holds six short values; a longer one is not a payment).
pub const MAX_ROW_BYTES: usize = 16 * 1024;

/// Line errors kept and shown: a screenful; the rest are counted.
pub const SHOWN_ERRORS: usize = 20;

/// The columns a file may have, in any order; only `payment_id` is required.
pub const COLUMNS: [&str; 6] = [
    "payment_id",
    "expected_amount",
    "expected_currency",
    "order_id",
    "created_at",
    "expires_at",
];

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    pub column: String,
    pub problem: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.column, self.problem)
    }
}

/// The first [`SHOWN_ERRORS`] line errors, in line order, how many there were in all, and on
/// how many lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineErrors {
    pub shown: Vec<LineError>,
    pub total: u64,
    /// Lines with at least one problem.
    pub lines: u64,
    last_line: Option<u64>,
}

impl LineErrors {
    /// Adds a problem; they come in line order while the file is read.
    pub(crate) fn push(&mut self, error: LineError) {
        self.total += 1;
        if self.last_line != Some(error.line) {
            self.lines += 1;
            self.last_line = Some(error.line);
        }
        if self.shown.len() < SHOWN_ERRORS {
            self.shown.push(error);
        }
    }

    /// Adds problems found later (by SQL, on other lines than those already counted), which
    /// may come before those already kept.
    fn merge(&mut self, errors: Vec<LineError>, total: u64) {
        self.total += total;
        self.shown.extend(errors);
        self.shown.sort_by_key(|e| e.line);
        self.shown.truncate(SHOWN_ERRORS);
    }

    /// "7 problems in 5 rows".
    pub fn summary(&self) -> String {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "{} in {}",
            plural(self.total, "problem", "problems"),
            plural(self.lines, "row", "rows")
        )
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the header: {0}")]
    Header(String),
    #[error("{}; nothing was imported", .0.summary())]
    Rejected(LineErrors),
    #[error("cannot read the file: {0}")]
    Read(String),
    /// The file is not text in the encoding it was read in: the whole file is refused, with
    /// what to do.
    #[error("{0}")]
    Encoding(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Query(e))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOutcome {
    /// Data rows in the file.
    pub rows: u64,
    /// Rows that started tracking a new payment.
    pub imported: u64,
    /// Rows whose payment was already tracked with the same values: left as they were.
    pub already_known: u64,
}

/// Where each known column sits in a row.
#[derive(Debug, Clone, Copy)]
struct Layout {
    payment_id: usize,
    expected_amount: Option<usize>,
    expected_currency: Option<usize>,
    order_id: Option<usize>,
    created_at: Option<usize>,
    expires_at: Option<usize>,
}

fn layout(header: &StringRecord) -> Result<Layout, ImportError> {
    let mut found: [Option<usize>; 6] = [None; 6];
    for (index, name) in header.iter().enumerate() {
        let name = column_name(name);
        let Some(known) = COLUMNS.iter().position(|c| *c == name) else {
            return Err(ImportError::Header(format!(
                "unknown column {name:?}; the columns are {}",
                COLUMNS.join(", ")
            )));
        };
        if found[known].replace(index).is_some() {
            return Err(ImportError::Header(format!(
                "column {name:?} appears twice"
            )));
        }
    }
    Ok(Layout {
        payment_id: found[0]
            .ok_or_else(|| ImportError::Header("there is no payment_id column".into()))?,
        expected_amount: found[1],
        expected_currency: found[2],
        order_id: found[3],
        created_at: found[4],
        expires_at: found[5],
    })
}

/// A row that passed validation.
struct ValidRow {
    line: u64,
    payment_id: PaymentId,
    expected_amount: Option<Decimal>,
    expected_currency: Option<Currency>,
    order_id: Option<String>,
    created_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

fn validate(
    record: &StringRecord,
    line: u64,
    layout: &Layout,
    naive_offset: FixedOffset,
    mark: DecimalMark,
    errors: &mut LineErrors,
) -> Option<ValidRow> {
    let before = errors.total;
    let mut bad = |column: &str, problem: String| {
        errors.push(LineError {
            line,
            column: column.to_owned(),
            problem,
        });
    };
    let field = |index: Option<usize>| {
        index
            .and_then(|i| record.get(i))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let timestamp = |index: Option<usize>| -> Result<Option<DateTime<Utc>>, String> {
        field(index)
            .map(|raw| intake_timestamp(raw, naive_offset))
            .transpose()
    };

    let payment_id = PaymentId::from_input(record.get(layout.payment_id).unwrap_or_default())
        .map_err(|e| bad("payment_id", e.to_string()))
        .ok();
    let expected_amount = field(layout.expected_amount)
        .map(|raw| parse_amount_with(raw, mark))
        .transpose()
        .map_err(|e| bad("expected_amount", e.to_string()))
        .ok()
        .flatten();
    let expected_currency = field(layout.expected_currency)
        .map(str::parse::<Currency>)
        .transpose()
        .map_err(|e| bad("expected_currency", e.to_string()))
        .ok()
        .flatten();
    let created_at = timestamp(layout.created_at)
        .map_err(|e| bad("created_at", e))
        .ok()
        .flatten();
    let expires_at = timestamp(layout.expires_at)
        .map_err(|e| bad("expires_at", e))
        .ok()
        .flatten();
    let order_id = optional_text(
        layout
            .order_id
            .and_then(|i| record.get(i))
            .unwrap_or_default(),
        ORDER_ID_MAX_LEN,
    )
    .map_err(|e| bad("order_id", format!("order id {e}")))
    .ok()
    .flatten();
    if errors.total > before {
        return None;
    }
    Some(ValidRow {
        line,
        payment_id: payment_id?,
        expected_amount,
        expected_currency,
        order_id,
        created_at,
        expires_at,
    })
}

impl ValidRow {
    /// The row as `COPY` reads it: [`store::import::STAGING_COLUMNS`], in that order.
    fn write_csv(&self, out: &mut csv::Writer<Vec<u8>>) -> csv::Result<()> {
        let text = |v: Option<String>| v.unwrap_or_default();
        out.write_record([
            self.line.to_string(),
            self.payment_id.as_str().to_owned(),
            text(self.expected_amount.map(|a| a.to_string())),
            text(self.expected_currency.map(|c| c.to_string())),
            text(self.order_id.clone()),
            // Microseconds, truncated as sqlx does when it binds a time: PostgreSQL would
            // round finer digits, and 9999-12-31T23:59:59.9999996Z would become year 10000.
            text(self.created_at.map(micros)),
            text(self.expires_at.map(micros)),
        ])
    }
}

fn micros(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Rows copied per chunk handed to PostgreSQL.
const CHUNK_BYTES: usize = 256 * 1024;

struct Parsed {
    rows: u64,
    errors: LineErrors,
    /// Rows with errors are not copied; the file is rejected anyway.
    copied: u64,
}

/// Reads, validates and re-encodes rows on the calling (blocking) thread, handing CSV chunks
/// for `COPY` to `emit` (which returns false when the consumer is gone). Returns the counts
/// and every line error.
fn parse_file(
    input: impl Read,
    naive_offset: FixedOffset,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> Result<Parsed, ImportError> {
    let mut rows = CsvRows::open(input)?;
    let mark = decimal_mark(rows.delimiter);
    let layout = layout(&rows.header)?;
    let mut errors = LineErrors::default();
    let mut copied = 0;
    let new_writer = || {
        csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::with_capacity(CHUNK_BYTES + 4096))
    };
    let mut out = new_writer();
    while let Some(line) = rows.next(&mut errors)? {
        if let Some(row) = validate(&rows.record, line, &layout, naive_offset, mark, &mut errors) {
            row.write_csv(&mut out)
                .map_err(|e| ImportError::Read(e.to_string()))?;
            copied += 1;
        }
        if out.get_ref().len() >= CHUNK_BYTES {
            let chunk = std::mem::replace(&mut out, new_writer())
                .into_inner()
                .map_err(|e| ImportError::Read(e.to_string()))?;
            if !emit(chunk) {
                // The database side failed; it reports why.
                break;
            }
        }
    }
    let parsed = Parsed {
        rows: rows.rows,
        errors,
        copied,
    };
    let chunk = out
        .into_inner()
        .map_err(|e| ImportError::Read(e.to_string()))?;
    if !chunk.is_empty() {
        emit(chunk);
    }
    Ok(parsed)
}

/// The data rows of a CSV file with a header row, one at a time, as every command that reads
/// a spreadsheet reads them (`import`, `resolve --from-csv`): delimiter detected, rows
/// bounded by [`RowBound`], unreadable rows and rows with the wrong number of fields counted
/// as line errors and skipped.
pub(crate) struct CsvRows<R: Read> {
    reader: csv::Reader<RowBound<std::io::BufReader<R>>>,
    pub delimiter: u8,
    pub header: StringRecord,
    /// The current row, after [`CsvRows::next`] returned its line.
    pub record: StringRecord,
    /// Data rows read so far, readable or not.
    pub rows: u64,
    /// A row too long was met: nothing after it is read.
    stopped: bool,
}

impl<R: Read> CsvRows<R> {
    pub fn open(input: R) -> Result<Self, ImportError> {
        let mut input = std::io::BufReader::with_capacity(64 * 1024, input);
        let start = input.fill_buf().map_err(|e| read_error(&e))?;
        if start.starts_with(b"\xff\xfe") || start.starts_with(b"\xfe\xff") {
            return Err(ImportError::Encoding(
                "the file is UTF-16 text (Excel's \"Unicode Text\"); save it again as \"CSV \
                 UTF-8 (Comma delimited)\""
                    .into(),
            ));
        }
        let delimiter = detect_delimiter(start);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(RowBound::new(input, delimiter));
        let header = match reader.headers() {
            Ok(header) => header.clone(),
            Err(e) => {
                return Err(match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => not_utf8(1),
                    csv::ErrorKind::Io(io) => read_error(io),
                    _ => ImportError::Header(e.to_string()),
                });
            }
        };
        if header.is_empty() || header.iter().all(|h| h.trim().is_empty()) {
            return Err(ImportError::Header(
                "the file is empty or has no header row".into(),
            ));
        }
        Ok(Self {
            reader,
            delimiter,
            header,
            record: StringRecord::new(),
            rows: 0,
            stopped: false,
        })
    }

    /// Reads the next readable row into `self.record` and returns its line; `None` at the end
    /// of the file, or after a row too long (reading stops there). Problems go to `errors`.
    pub fn next(&mut self, errors: &mut LineErrors) -> Result<Option<u64>, ImportError> {
        // csv counts lines by '\n', which is right for quoted fields that span lines but says
        // "line 1" for every row of a file with bare '\r' line ends; the row count (the header
        // is line 1) is right there. A row starts on whichever is later.
        let line_of = |position: Option<&csv::Position>, rows: u64| {
            position.map_or(0, csv::Position::line).max(rows + 1)
        };
        while !self.stopped {
            match self.reader.read_record(&mut self.record) {
                Ok(false) => return Ok(None),
                Ok(true) => {}
                Err(e) => {
                    self.rows += 1;
                    let line = line_of(e.position(), self.rows);
                    let problem = match e.kind() {
                        // One line in another encoding means the whole file is: every row
                        // would be read wrong, so it is refused as a whole, with what to do.
                        csv::ErrorKind::Utf8 { .. } => return Err(not_utf8(line)),
                        csv::ErrorKind::Io(io) => {
                            match io.get_ref().and_then(|e| e.downcast_ref::<RowTooLong>()) {
                                // Reading stops here: the rest of the file is not looked at.
                                Some(too_long) => {
                                    errors.push(LineError {
                                        line: too_long.line,
                                        column: "row".into(),
                                        problem: format!(
                                            "longer than {MAX_ROW_BYTES} bytes; the file was not read past it"
                                        ),
                                    });
                                    self.stopped = true;
                                    return Ok(None);
                                }
                                None => return Err(read_error(io)),
                            }
                        }
                        _ => e.to_string(),
                    };
                    errors.push(LineError {
                        line,
                        column: "row".into(),
                        problem,
                    });
                    continue;
                }
            }
            self.rows += 1;
            let line = line_of(self.record.position(), self.rows);
            if self.record.len() != self.header.len() {
                errors.push(LineError {
                    line,
                    column: "row".into(),
                    problem: format!(
                        "has {} fields, the header has {}{}",
                        self.record.len(),
                        self.header.len(),
                        self.decimal_comma_hint().unwrap_or_default()
                    ),
                });
                continue;
            }
            return Ok(Some(line));
        }
        Ok(None)
    }
}

impl<R: Read> CsvRows<R> {
    /// Why a row of a comma-separated file may have more fields than its header: an amount
    /// written with a decimal comma (`12,50`), which the comma splits in two. Said when two
    /// neighbouring fields read as a whole number and one or two digits: at the
    /// `expected_amount` column when there is one, else the last such pair in the row.
    fn decimal_comma_hint(&self) -> Option<String> {
        if self.delimiter != b',' || self.record.len() <= self.header.len() {
            return None;
        }
        let whole = |s: &str| {
            let s = s.trim().trim_start_matches('-');
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b' ')
        };
        let cents = |s: &str| (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        let split_at = |i: usize| {
            Some((self.record.get(i)?, self.record.get(i + 1)?))
                .filter(|(a, b)| whole(a) && cents(b))
        };
        let amount_column = self
            .header
            .iter()
            .position(|name| column_name(name) == "expected_amount");
        let (whole, cents) = amount_column
            .and_then(split_at)
            .or_else(|| (0..self.record.len()).rev().find_map(split_at))?;
        let (whole, cents) = (whole.trim(), cents.trim());
        Some(format!(
            ": {} looks like an amount with a decimal comma in a comma-separated file; \
             separate the columns with ; (as Excel does in ru and kk locales) or write a dot \
             as the decimal mark ({whole}.{cents})",
            excerpt(&format!("{whole},{cents}"))
        ))
    }
}

/// A file that is not UTF-8 (a line of it is not): what to do.
fn not_utf8(line: u64) -> ImportError {
    ImportError::Encoding(format!(
        "line {line} is not UTF-8 text; {}",
        super::encoding::NOT_UTF8_HELP
    ))
}

/// A failed read: a file not in its encoding says so as such.
fn read_error(e: &std::io::Error) -> ImportError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<super::encoding::NotInEncoding>())
    {
        Some(not_in_encoding) => ImportError::Encoding(not_in_encoding.to_string()),
        None => ImportError::Read(e.to_string()),
    }
}

/// The decimal separator of a file's amounts: a file separated by semicolons comes from a
/// spreadsheet in a locale that writes a decimal comma (ru, kk: `1 234,50`).
pub(crate) fn decimal_mark(delimiter: u8) -> DecimalMark {
    if delimiter == b';' {
        DecimalMark::Comma
    } else {
        DecimalMark::Dot
    }
}

/// A header cell as a column name: trimmed, lowercase, without a byte-order mark.
pub(crate) fn column_name(cell: &str) -> String {
    cell.trim()
        .trim_start_matches('\u{feff}')
        .to_ascii_lowercase()
}

/// The delimiter the header row uses: a comma, or the semicolon that spreadsheets write in
/// locales with a decimal comma (ru, kk), or a tab; whichever appears most in the first line
/// outside quotes (a comma when none does).
fn detect_delimiter(start: &[u8]) -> u8 {
    let first_line = start
        .split(|&b| b == b'\n' || b == b'\r')
        .next()
        .unwrap_or_default();
    let mut counts = [(b',', 0_usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for &byte in first_line {
        match byte {
            b'"' => quoted = !quoted,
            _ if quoted => {}
            _ => {
                if let Some(count) = counts.iter_mut().find(|(d, _)| *d == byte) {
                    count.1 += 1;
                }
            }
        }
    }
    counts
        .iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .filter(|(_, n)| *n > 0)
        .map_or(b',', |(d, _)| *d)
}

/// Raised by [`RowBound`] when a row is longer than [`MAX_ROW_BYTES`].
#[derive(Debug)]
struct RowTooLong {
    line: u64,
}

impl std::fmt::Display for RowTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}: row longer than {MAX_ROW_BYTES} bytes",
            self.line
        )
    }
}

impl std::error::Error for RowTooLong {}

/// Where a CSV reader is within a row, as far as row length goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowState {
    /// At the start of a field: a quote opens a quoted field.
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: a second one is an escaped quote, anything else
    /// closes the field.
    QuoteInQuoted,
}

/// Stops a reader at the first row longer than [`MAX_ROW_BYTES`], so the CSV reader never
/// buffers a huge cell. It follows RFC 4180 quoting just enough to know where rows end (a
/// line break inside quotes does not end one) and counts lines as the CSV reader does.
pub(crate) struct RowBound<R> {
    inner: R,
    delimiter: u8,
    state: RowState,
    row_bytes: usize,
    /// The line the current row starts on (the header is line 1).
    row_line: u64,
    line: u64,
    after_cr: bool,
}

impl<R> RowBound<R> {
    fn new(inner: R, delimiter: u8) -> Self {
        Self {
            inner,
            delimiter,
            state: RowState::FieldStart,
            row_bytes: 0,
            row_line: 1,
            line: 1,
            after_cr: false,
        }
    }

    fn see(&mut self, byte: u8) -> Result<(), RowTooLong> {
        use RowState::*;
        let line_break = byte == b'\n' && !self.after_cr || byte == b'\r';
        self.after_cr = byte == b'\r';
        if line_break {
            self.line += 1;
        }
        self.state = match (self.state, byte) {
            (FieldStart, b'"') => Quoted,
            (Quoted, b'"') => QuoteInQuoted,
            (QuoteInQuoted, b'"') => Quoted,
            (Quoted, _) => Quoted,
            (_, byte) if byte == self.delimiter => FieldStart,
            (_, b'\n' | b'\r') => {
                self.state = FieldStart;
                self.row_bytes = 0;
                self.row_line = self.line;
                return Ok(());
            }
            _ => Unquoted,
        };
        self.row_bytes += 1;
        if self.row_bytes > MAX_ROW_BYTES {
            return Err(RowTooLong {
                line: self.row_line,
            });
        }
        Ok(())
    }
}

impl<R: Read> Read for RowBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &byte in &buf[..n] {
            self.see(byte)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        }
        Ok(n)
    }
}

/// Validates a whole CSV file without a database: the number of data rows and every line
/// error (those that need the database, such as conflicts with stored payments, excepted).
/// The fuzz target drives this.
pub fn check_csv(
    input: impl Read,
    naive_offset: FixedOffset,
) -> Result<(u64, LineErrors), ImportError> {
    let parsed = parse_file(input, naive_offset, |_| true)?;
    Ok((parsed.rows, parsed.errors))
}

/// Imports `input` (CSV with a header row) into `recon.payments`: all rows or none.
/// Naive timestamps are read in `naive_offset`.
pub async fn import_csv(
    pool: &PgPool,
    input: impl Read + Send + 'static,
    naive_offset: FixedOffset,
) -> Result<ImportOutcome, ImportError> {
    let mut tx = pool.begin().await?;
    store::import::create_staging(&mut tx).await?;

    let (chunks_tx, mut chunks) = mpsc::channel::<Vec<u8>>(4);
    let parser = tokio::task::spawn_blocking(move || {
        parse_file(input, naive_offset, |chunk| {
            chunks_tx.blocking_send(chunk).is_ok()
        })
    });
    let mut copy = store::import::copy_into_staging(&mut tx).await?;
    while let Some(chunk) = chunks.recv().await {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    let parsed = parser
        .await
        .map_err(|e| ImportError::Read(e.to_string()))??;

    let mut errors = parsed.errors;
    // Rows with a problem while reading were not copied: the database's problems are on
    // other lines.
    errors.lines += store::import::lines_with_problems(&mut tx).await?;
    let limit = SHOWN_ERRORS as i64;
    let (duplicates, total) = store::import::duplicates_in_file(&mut tx, limit).await?;
    errors.merge(
        duplicates
            .into_iter()
            .map(|d| LineError {
                line: d.line as u64,
                column: "payment_id".into(),
                problem: format!(
                    "{} is already on line {} of this file",
                    excerpt(&d.payment_id),
                    d.first_line
                ),
            })
            .collect(),
        total,
    );
    let (conflicts, total) = store::import::conflicts_with_stored(&mut tx, limit).await?;
    errors.merge(
        conflicts
            .into_iter()
            .map(|conflict| LineError {
                line: conflict.line as u64,
                column: conflict.column,
                // Both values passed the rules; cleaning only bounds what a person reads.
                problem: format!(
                    "payment {} is already tracked with {}, the file says {}; the stored value is kept",
                    excerpt(&conflict.payment_id),
                    conflict
                        .stored
                        .as_deref()
                        .map_or("nothing".into(), |v| clean(v, 64)),
                    clean(&conflict.offered, 64)
                ),
            })
            .collect(),
        total,
    );
    if !errors.is_empty() {
        tx.rollback().await?;
        return Err(ImportError::Rejected(errors));
    }
    let imported = store::import::insert_new(&mut tx).await?;
    tx.commit().await?;
    Ok(ImportOutcome {
        rows: parsed.rows,
        imported,
        already_known: parsed.copied - imported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn almaty() -> FixedOffset {
        FixedOffset::east_opt(5 * 3600).unwrap()
    }

    fn parse(text: &str) -> Result<(Parsed, String), ImportError> {
        let mut copied = Vec::new();
        let parsed = parse_file(text.as_bytes(), almaty(), |chunk| {
            copied.extend(chunk);
            true
        })?;
        Ok((parsed, String::from_utf8(copied).unwrap()))
    }

    #[test]
    fn columns_in_any_order_with_a_bom_and_quoting() {
        let (parsed, copied) = parse(
            "\u{feff}expected_currency,payment_id,expected_amount,order_id\n\
             KZT,1001,5000.00,\"A-1, urgent\"\n\
             ,1002,,\n",
        )
        .unwrap();
        assert_eq!((parsed.rows, parsed.copied), (2, 2));
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors.shown);
        assert_eq!(
            copied,
            "2,1001,5000.00,KZT,\"A-1, urgent\",,\n3,1002,,,,,\n"
        );
    }

    #[test]
    fn every_bad_field_of_every_row_is_reported_with_its_line() {
        let (parsed, _) = parse(
            "payment_id,expected_amount,expected_currency,created_at,expires_at\n\
             1,\"12,50\",KZT,,\n\
             2,10,kzt,yesterday,2025-07-11 12:00\n\
             ,10,KZT,,\n\
             4,10\n\
             5,-3,KZT,2025-07-11T12:00:00Z,2025-07-11 16:00:00\n",
        )
        .unwrap();
        let lines: Vec<String> = parsed
            .errors
            .shown
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(parsed.rows, 5);
        assert_eq!(parsed.copied, 0);
        assert_eq!(lines.len(), 7, "{lines:#?}");
        assert!(lines[0].starts_with("line 2: expected_amount: \"12,50\" uses a comma"));
        assert!(lines[1].starts_with("line 3: expected_currency: currency \"kzt\""));
        assert!(lines[2].starts_with("line 3: created_at: \"yesterday\" is not a timestamp"));
        assert!(
            lines[3].starts_with("line 3: expires_at: \"2025-07-11 12:00\" is not a timestamp")
        );
        assert_eq!(lines[4], "line 4: payment_id: payment id is empty");
        assert_eq!(lines[5], "line 5: row: has 2 fields, the header has 5");
        assert!(lines[6].starts_with("line 6: expected_amount: \"-3\" is negative"));
    }

    #[test]
    fn problems_and_rows_are_counted_apart() {
        let (parsed, _) =
            parse("payment_id,expected_amount,expected_currency\n1,x,kzt\n2,y,KZT\n3,1,KZT\n")
                .unwrap();
        assert_eq!(parsed.errors.summary(), "3 problems in 2 rows");
        let (parsed, _) = parse("payment_id,expected_amount\n1,x\n").unwrap();
        assert_eq!(parsed.errors.summary(), "1 problem in 1 row");
    }

    #[test]
    fn lines_are_numbered_right_with_bare_carriage_returns_and_multi_line_fields() {
        let (parsed, _) = parse("payment_id,expected_amount\r1,x\r2,y\r").unwrap();
        let lines: Vec<u64> = parsed.errors.shown.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3]);
        let (parsed, _) =
            parse("payment_id,order_id,expected_amount\n1,\"two\nlines\",x\n2,b,y\n").unwrap();
        let lines: Vec<(u64, &str)> = parsed
            .errors
            .shown
            .iter()
            .map(|e| (e.line, e.column.as_str()))
            .collect();
        // (A line break is no part of an order id either.)
        assert_eq!(
            lines,
            [
                (2, "expected_amount"),
                (2, "order_id"),
                (4, "expected_amount")
            ]
        );
    }

    #[test]
    fn rows_are_bounded_wherever_their_line_breaks_are() {
        // Quoted fields that hold commas and line breaks, over more than the bound in all:
        // every row is short, so the file reads.
        let mut file = "payment_id,order_id\n".to_owned();
        for n in 0..2000 {
            file.push_str(&format!("\"{n},\",\"A\n{n}\"\n"));
        }
        let mut read = Vec::new();
        RowBound::new(file.as_bytes(), b',')
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read.len(), file.len());

        // One quoted field of many short lines is one long row, refused at its line.
        let mut huge = "payment_id\n1\n\"".to_owned();
        huge.push_str(&"x\n".repeat(MAX_ROW_BYTES));
        huge.push_str("\"\n");
        let error = RowBound::new(huge.as_bytes(), b',')
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        let too_long = error.get_ref().and_then(|e| e.downcast_ref::<RowTooLong>());
        assert_eq!(too_long.map(|e| e.line), Some(3), "{error}");
    }

    #[test]
    fn times_are_copied_to_the_microsecond() {
        let (parsed, copied) =
            parse("payment_id,created_at\n9,9999-12-31T23:59:59.9999996Z\n").unwrap();
        assert!(parsed.errors.is_empty());
        assert_eq!(copied, "2,9,,,,9999-12-31T23:59:59.999999Z,\n");
    }

    #[test]
    fn a_semicolon_or_tab_separated_file_is_read_as_such() {
        for (text, delimiter) in [
            (
                "payment_id;expected_amount;order_id\n1;10.50;\"A;1\"\n",
                ';',
            ),
            (
                "payment_id\texpected_amount\torder_id\n1\t10.50\tA;1\n",
                '\t',
            ),
            ("payment_id,expected_amount,order_id\n1,10.50,A;1\n", ','),
        ] {
            let (parsed, copied) = parse(text).unwrap();
            assert!(
                parsed.errors.is_empty(),
                "{delimiter:?}: {:?}",
                parsed.errors.shown
            );
            assert_eq!(copied, "2,1,10.50,,A;1,,\n", "{delimiter:?}");
        }
        assert_eq!(detect_delimiter(b"payment_id\n1\n"), b',');
        assert_eq!(detect_delimiter(b"\"a,b\";c;d\n"), b';');
    }

    #[test]
    fn a_decimal_comma_in_a_comma_separated_file_is_named_as_the_likely_cause() {
        let (parsed, _) = parse(
            "payment_id,expected_amount,expected_currency\n\
             7000000001,12,50,KZT\n\
             7000000002,\"1 234\",5,KZT\n\
             7000000003,12.50,KZT,extra\n",
        )
        .unwrap();
        let lines: Vec<String> = parsed.errors.shown.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines[0],
            "line 2: row: has 4 fields, the header has 3: \"12,50\" looks like an amount with a \
             decimal comma in a comma-separated file; separate the columns with ; (as Excel does \
             in ru and kk locales) or write a dot as the decimal mark (12.50)"
        );
        assert!(lines[1].contains("\"1 234,5\" looks like an amount with a decimal comma"));
        // An extra field that is no amount's half: only the count.
        assert_eq!(lines[2], "line 4: row: has 4 fields, the header has 3");
        // Without an expected_amount column, the last pair that reads as one.
        let (parsed, _) = parse("payment_id,order_id\n7000000001,A-1,99,90\n").unwrap();
        assert!(
            parsed.errors.shown[0]
                .to_string()
                .contains("\"99,90\" looks like"),
            "{:?}",
            parsed.errors.shown
        );
        // Separated by semicolons, a comma is a decimal comma, read as such.
        let (parsed, copied) =
            parse("payment_id;expected_amount;expected_currency\n7000000001;12,50;KZT\n").unwrap();
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors.shown);
        assert_eq!(copied, "2,7000000001,12.50,KZT,,,\n");
    }

    #[test]
    fn naive_timestamps_are_read_in_the_given_offset() {
        let (parsed, copied) = parse("payment_id,created_at\n9,2025-07-11 17:00:00\n").unwrap();
        assert!(parsed.errors.is_empty());
        assert_eq!(copied, "2,9,,,,2025-07-11T12:00:00.000000Z,\n");
    }

    #[test]
    fn bad_headers_are_refused() {
        for (text, expected) in [
            ("expected_amount\n10\n", "there is no payment_id column"),
            ("payment_id,amount\n1,10\n", "unknown column \"amount\""),
            ("payment_id,payment_id\n1,1\n", "appears twice"),
            ("", "empty or has no header"),
        ] {
            let err = parse(text).err().unwrap().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
