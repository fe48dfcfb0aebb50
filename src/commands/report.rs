//! `report`: the daily summary, the payments or the open flags, as a table, CSV, JSON or an
//! xlsx workbook, streamed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{check_status, parse_kind, rows};
use crate::domain::FlagKind;
use crate::settings::Settings;
use crate::store;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").args(["detail", "flags", "resolutions", "adjustments", "money", "settlement", "story"]))]
pub struct ReportArgs {
    /// List payments instead of the daily summary.
    #[arg(long)]
    pub detail: bool,
    /// List flags instead of the daily summary: the open flags a person must act on, oldest
    /// first, with their age (CSV or xlsx: add notes in the `note` column and give the file to
    /// `resolve --from-csv` or `--from-xlsx`).
    #[arg(long)]
    pub flags: bool,
    /// List the flags resolved from --from to --to (the day they were resolved), in order:
    /// the flag, its payment and kind, the database role that resolved it and the name it
    /// was resolved on behalf of (--by), when and the note. For an auditor.
    #[arg(long, conflicts_with_all = ["month", "by", "currency", "status", "flag", "class", "as_of"])]
    pub resolutions: bool,
    /// List the adjustments booked from --from to --to (the day they were observed): each
    /// change to a closed month's figures since it was signed, its payment and original
    /// day, the values before and after, and its cause (a transition, a flag, an intake
    /// change).
    #[arg(long, conflicts_with_all = ["month", "by", "currency", "status", "flag", "class", "as_of"])]
    pub adjustments: bool,
    /// List the money that moved from --from to --to (or in --month), per day, currency and
    /// kind (payment, refund, reversal, chargeback, commission): events, payments and the sum
    /// signed for the merchant. A day is the one the provider moved it (a refund's date; not
    /// said: the day seen); a fact for a month already closed counts on the open day it was
    /// booked, its `adjusts_month` naming the month.
    #[arg(long, conflicts_with_all = ["by", "currency", "status", "flag", "class", "as_of"])]
    pub money: bool,
    /// The money of --month from the payments to the bank, per currency: paid (gross),
    /// refunds, reversals, chargebacks, commission, net due; in the registries, paid out,
    /// withheld, arrived at the bank, in transit, and bank credits nothing explains.
    #[arg(long, requires = "month", conflicts_with_all = ["by", "currency", "status", "flag", "class", "as_of"])]
    pub settlement: bool,
    /// One payment's story, in time order: every status change, flag opened and resolved (who,
    /// why) and money event, with the provider's own time where it gave one (the console's
    /// payment page).
    #[arg(long, value_name = "PAYMENT_ID", conflicts_with_all = ["month", "from", "to", "by", "currency", "status", "flag", "class", "as_of"])]
    pub story: Option<String>,
    /// With --settlement: every registry line, payout and bank credit of the month, with what
    /// it was matched to and its open flags.
    #[arg(long, requires = "settlement")]
    pub lines: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::reporting::Format,
    /// CSV for Excel in Russian or Kazakh locales: a UTF-8 byte-order mark, `;` between
    /// cells, a decimal comma in every amount and times in the reporting zone to the second
    /// (implies --format csv).
    #[arg(long, conflicts_with = "format")]
    pub excel: bool,
    /// A reporting month (YYYY-MM, in recon.timezone): the payments of that month (by the
    /// day of --by); with --flags, the flags of that month's payments, whenever they opened.
    #[arg(long, value_parser = crate::reporting::parse_month, conflicts_with_all = ["from", "to"])]
    pub month: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    /// First reporting day, inclusive (YYYY-MM-DD); with --flags, of the day a flag opened.
    #[arg(long, value_parser = crate::reporting::parse_date)]
    pub from: Option<chrono::NaiveDate>,
    /// Last reporting day, inclusive (YYYY-MM-DD); with --flags, of the day a flag opened.
    #[arg(long, value_parser = crate::reporting::parse_date)]
    pub to: Option<chrono::NaiveDate>,
    /// Which day a payment is counted on: `created`, the day it was created in
    /// recon.timezone (the day, and so the month, it belongs to), or `first-seen-settled`,
    /// the day the daemon first saw it paid, failed or incomplete (when the daemon learned,
    /// not when the payer paid; `settled` is its old name).
    #[arg(long, value_enum, default_value = "created", conflicts_with = "flags")]
    pub by: store::report::DayBasis,
    /// Only this currency (ISO 4217): expected or invoiced in it.
    #[arg(long, value_parser = super::enqueue::parse_currency)]
    pub currency: Option<crate::domain::Currency>,
    /// Only this provider status (`no_answer` for none yet); with --as-of, the status then.
    #[arg(long)]
    pub status: Option<String>,
    /// Only payments with an open flag of this kind; with --flags, only flags of this kind.
    #[arg(long, value_parser = parse_kind)]
    pub flag: Option<FlagKind>,
    /// With --flags: which flags [default: action, those a person must act on; with --flag,
    /// that kind's class]
    #[arg(long, value_enum, requires = "flags")]
    pub class: Option<store::report::ClassFilter>,
    /// As they stood at the end of this reporting day (YYYY-MM-DD, recon.timezone), from
    /// history: the summary and --detail recount every payment's status, amounts, fee and
    /// flags then; --flags lists the flags open then. A day not yet ended, or before the
    /// history began, is refused.
    #[arg(long, value_parser = crate::reporting::parse_date)]
    pub as_of: Option<chrono::NaiveDate>,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// CSV: write text cells exactly as stored. By default a cell starting with =, +, -, @,
    /// a tab or a carriage return (other than a plain number) gets a leading ' so a
    /// spreadsheet shows it and does not run it as a formula.
    #[arg(long)]
    pub raw: bool,
}

pub async fn report(settings: &Settings, args: ReportArgs) -> anyhow::Result<ExitCode> {
    use crate::reporting::{CsvStyle, Format, ReportKind, ReportRequest, write_report};
    use store::report::{FlagFilter, ReportFilter};

    if let (Some(from), Some(to)) = (args.from, args.to) {
        anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    }
    let format = if args.excel { Format::Csv } else { args.format };
    if format == Format::Xlsx && args.output.is_none() {
        anyhow::bail!(
            "--format xlsx writes a workbook, which is not text for a terminal or a pipe: give \
             the file to write with --output FILE (e.g. --output report.xlsx)"
        );
    }
    let currency = args.currency.map(|c| c.to_string());
    let kind = if let Some(payment_id) = &args.story {
        ReportKind::Story {
            payment_id: payment_id.clone(),
        }
    } else if args.resolutions {
        ReportKind::Resolutions {
            from: args.from,
            to: args.to,
        }
    } else if args.adjustments {
        ReportKind::Adjustments {
            from: args.from,
            to: args.to,
        }
    } else if args.money {
        let (from, to) = match args.month {
            Some((first, last)) => (Some(first), Some(last)),
            None => (args.from, args.to),
        };
        ReportKind::Money { from, to }
    } else if args.settlement {
        let (first, last) = args.month.context("--settlement needs --month")?;
        ReportKind::Settlement {
            first,
            last,
            lines: args.lines,
            bank_currency: settings.bank.currency.clone(),
        }
    } else if args.flags {
        use store::report::ClassFilter;
        // `--flag lifetime_exceeded` alone lists those flags, not an empty action queue.
        let class = args.class.unwrap_or(match args.flag.map(FlagKind::class) {
            Some(crate::domain::FlagClass::Info) => ClassFilter::Info,
            _ => ClassFilter::Action,
        });
        ReportKind::Flags(FlagFilter {
            as_of: args.as_of,
            class,
            kind: args.flag,
            from: args.from,
            to: args.to,
            status: args.status.clone(),
            currency,
            payment_from: args.month.map(|(first, _)| first),
            payment_to: args.month.map(|(_, last)| last),
        })
    } else {
        let (from, to) = match args.month {
            Some((first, last)) => (Some(first), Some(last)),
            None => (args.from, args.to),
        };
        let filter = ReportFilter {
            basis: args.by,
            from,
            to,
            currency,
            status: args.status.clone(),
            flag: args.flag,
            // Resolved below, against the database's history and clock.
            as_of: None,
        };
        if args.detail {
            ReportKind::Detail(filter)
        } else {
            ReportKind::Summary(filter)
        }
    };
    let request = ReportRequest {
        kind,
        format,
        csv: CsvStyle {
            raw: args.raw,
            excel: args.excel,
        },
        refunds_watched: settings.merchant.watches_refunds(),
    };
    let mut request = request;
    let pool = store::connect_to_schema(&settings.database).await?;
    if let Some(status) = &args.status {
        check_status(&pool, status).await?;
    }
    if let Some(day) = args.as_of
        && let ReportKind::Summary(filter) | ReportKind::Detail(filter) = &mut request.kind
    {
        let at = as_of(&pool, day).await?;
        filter.as_of = Some(store::report::AsOf { at, day: Some(day) });
    }
    // A closed month's figures are sums as signed: they cannot be narrowed to the payments
    // with a flag (an option a report cannot honour is an error, never ignored).
    if let ReportKind::Summary(filter) = &request.kind
        && let Some(kind) = filter.flag
        && filter.basis == store::report::DayBasis::Created
        && filter.as_of.is_none()
    {
        let closed = store::close::closed_months(&pool, filter.from, filter.to).await?;
        if let Some(first) = closed.first() {
            anyhow::bail!(
                "--flag {kind}: {} is closed, and its figures are sums as signed, not payments; \
                 use report --detail --flag {kind}, or a period after the closed months",
                first.month.format("%Y-%m")
            );
        }
    }
    let written = match &args.output {
        Some(path) if format == Format::Xlsx => {
            let written = write_whole(path, |file| write_report(&pool, &request, file)).await?;
            eprintln!("{} written to {}", rows(written.rows), path.display());
            written
        }
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let written = write_report(&pool, &request, std::io::BufWriter::new(file)).await?;
            eprintln!("{} written to {}", rows(written.rows), path.display());
            written
        }
        None => {
            let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
            match write_report(&pool, &request, stdout).await {
                Err(crate::reporting::ReportError::Write(e)) => return Err(super::stdout_error(e)),
                other => other?,
            }
        }
    };
    // A table says it in its last line; data files stay data.
    if let Some(empty) = written.empty
        && (format != Format::Table || args.output.is_some())
    {
        eprintln!("{empty}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The end of reporting day `day`, checked: a day that has not ended is refused (except today,
/// whose figures as of its end are those of now), and so is a day that ended before the
/// history of amounts began (`recon.payment_states`, kept since the upgrade that added it).
async fn as_of(
    pool: &sqlx::PgPool,
    day: chrono::NaiveDate,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let today = store::report::today(pool).await?;
    anyhow::ensure!(
        day <= today,
        "--as-of {day}: that day has not begun (today is {today} in recon.timezone); give a \
         day up to today"
    );
    let end = store::report::day_end(pool, day).await?;
    let since = store::report::states_since(pool).await?;
    anyhow::ensure!(
        end > since,
        "--as-of {day}: the history of amounts begins at {since} (the upgrade that started \
         keeping it), after that day ended; give a later day, or use report --flags --as-of \
         {day} for the flags open then"
    );
    Ok(end)
}

/// Writes `path` whole or not at all: into a temporary file beside it, renamed into place
/// only when `write` succeeded, so a failed report never leaves half a workbook (nor replaces
/// a good one).
async fn write_whole<F, T>(path: &Path, write: impl FnOnce(std::fs::File) -> F) -> anyhow::Result<T>
where
    F: Future<Output = Result<T, crate::reporting::ReportError>>,
{
    use std::os::unix::fs::PermissionsExt as _;

    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // The mode a plain create gives (0666 less the umask), not a temporary file's 0600.
    let temp = tempfile::Builder::new()
        .prefix(".freedompay-recon-")
        .suffix(".part")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let file = temp
        .as_file()
        .try_clone()
        .with_context(|| format!("cannot write to {}", dir.display()))?;
    let written = write(file).await?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(written)
}
