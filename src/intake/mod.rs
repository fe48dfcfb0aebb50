//! Intake: how payments enter `recon.payments` from outside. `enqueue` adds one; `import`
//! ([`import`]) adds a file of them in one transaction. Both read values by the same rules
//! ([`crate::domain::rules`], [`intake_timestamp`]), the rules the schema's CHECK constraints
//! enforce, so PostgreSQL never refuses what intake let through.

pub mod bank_sheet;
pub mod encoding;
mod import;
pub mod refunds;
pub mod registry;
pub mod resolutions;
mod sheet;
pub mod statement;

use chrono::{DateTime, FixedOffset, Utc};

pub use import::{
    COLUMNS, ImportError, ImportOutcome, LineError, LineErrors, MAX_ROW_BYTES, SHOWN_ERRORS,
    check_csv, import_csv,
};

use crate::domain::rules::{parse_timestamp, timestamp_problem};
use crate::text::excerpt;

/// A time as every intake path reads it (`import`, `enqueue`): RFC 3339, or
/// `YYYY-MM-DD HH:MM:SS` in `naive_offset`, within the years 1 to 9999.
pub fn intake_timestamp(raw: &str, naive_offset: FixedOffset) -> Result<DateTime<Utc>, String> {
    let at = parse_timestamp(raw, naive_offset).ok_or_else(|| {
        format!(
            "{} is not a timestamp; use RFC 3339 (2025-07-11T12:00:00Z) or \
             YYYY-MM-DD HH:MM:SS in {naive_offset}",
            excerpt(raw)
        )
    })?;
    match timestamp_problem(at) {
        None => Ok(at),
        Some(problem) => Err(format!("{} {problem}", excerpt(raw))),
    }
}
