//! The finance commands: bulk import, closing flags by hand, re-polls, a read-only role.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::domain::{FlagKind, PaymentId};
use crate::import::{ImportError, import_csv};
use crate::settings::Settings;
use crate::store::{self, finance::Selection};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// CSV with a header row: payment_id (required), expected_amount, expected_currency,
    /// order_id, created_at, expires_at, in any order; `-` reads standard input.
    pub file: PathBuf,
}

pub async fn import(settings: &Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let name = args.file.display().to_string();
    let input: Box<dyn Read + Send> = if name == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&args.file).with_context(|| format!("cannot open {name}"))?)
    };
    let offset = settings.provider.naive_offset()?;
    let pool = store::connect(&settings.database).await?;
    match import_csv(&pool, input, offset).await {
        Ok(outcome) => {
            println!(
                "{name}: {} rows: {} imported, {} already known (unchanged)",
                outcome.rows, outcome.imported, outcome.already_known
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::Rejected(errors)) => {
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!(
                "error: {name}: {} bad rows; nothing was imported. Fix them and import the file again.",
                errors.len()
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("{name}: nothing was imported"))),
    }
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The payment whose flag to close.
    #[arg(value_parser = super::enqueue::parse_payment_id)]
    pub payment_id: PaymentId,
    /// The flag kind, e.g. amount_mismatch.
    #[arg(long, value_parser = parse_kind)]
    pub kind: FlagKind,
    /// Why it is closed; kept in recon.discrepancy_history.
    #[arg(long)]
    pub note: String,
    /// Who closes it [default: the login name]
    #[arg(long)]
    pub by: Option<String>,
}

fn parse_kind(raw: &str) -> Result<FlagKind, String> {
    raw.parse()
        .map_err(|e: crate::domain::InvalidInput| e.to_string())
}

pub async fn resolve(settings: &Settings, args: ResolveArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.note.trim().is_empty(),
        "--note must say why the flag is closed"
    );
    let by = args
        .by
        .or_else(|| std::env::var("USER").ok())
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "unknown".into());
    let pool = store::connect(&settings.database).await?;
    let closed =
        store::finance::resolve_flag(&pool, &args.payment_id, args.kind, &by, &args.note).await?;
    if !closed {
        anyhow::bail!(
            "payment {} has no open {} flag (see recon.open_discrepancies)",
            args.payment_id,
            args.kind
        );
    }
    println!(
        "closed the {} flag of payment {} (by {by})",
        args.kind, args.payment_id
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["payment_ids", "flag", "status"]))]
pub struct RecheckArgs {
    /// Payments to re-poll.
    #[arg(value_parser = super::enqueue::parse_payment_id)]
    pub payment_ids: Vec<PaymentId>,
    /// Every payment with an open flag of this kind.
    #[arg(long, value_parser = parse_kind)]
    pub flag: Option<FlagKind>,
    /// Every payment with this provider status (`no_answer` for none yet).
    #[arg(long)]
    pub status: Option<String>,
}

pub async fn recheck(settings: &Settings, args: RecheckArgs) -> anyhow::Result<ExitCode> {
    let selection = match (args.flag, args.status) {
        (Some(kind), None) if args.payment_ids.is_empty() => Selection::Flag(kind),
        (None, Some(status)) if args.payment_ids.is_empty() => Selection::Status(status),
        (None, None) => Selection::Ids(args.payment_ids),
        _ => anyhow::bail!("give payment ids, --flag or --status, one of them"),
    };
    let pool = store::connect(&settings.database).await?;
    let (scheduled, missing) = store::finance::schedule_recheck(&pool, &selection).await?;
    println!("{scheduled} payments are due for a re-poll now");
    if !missing.is_empty() {
        eprintln!("error: not tracked: {}", missing.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct GrantReaderArgs {
    /// An existing PostgreSQL role (create it first, e.g. `create role finance login password '…'`).
    pub role: String,
}

pub async fn grant_reader(settings: &Settings, args: GrantReaderArgs) -> anyhow::Result<ExitCode> {
    let pool = store::connect(&settings.database).await?;
    if !store::finance::grant_reader(&pool, &args.role).await? {
        anyhow::bail!(
            "role {:?} does not exist; create it first, e.g. create role {} login password '…'",
            args.role,
            args.role
        );
    }
    println!(
        "role {} may now read {} and nothing else",
        args.role,
        store::finance::READER_VIEWS.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// List payments instead of the daily summary.
    #[arg(long)]
    pub detail: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::report::Format,
    /// First reporting day, inclusive (YYYY-MM-DD).
    #[arg(long, value_parser = crate::report::parse_date)]
    pub from: Option<chrono::NaiveDate>,
    /// Last reporting day, inclusive (YYYY-MM-DD).
    #[arg(long, value_parser = crate::report::parse_date)]
    pub to: Option<chrono::NaiveDate>,
    /// Which day a payment belongs to: the day it was created, or the day it settled.
    #[arg(long, value_enum, default_value = "created")]
    pub by: store::report::DayBasis,
    /// Only this currency (ISO 4217).
    #[arg(long, value_parser = super::enqueue::parse_currency)]
    pub currency: Option<crate::domain::Currency>,
    /// Only this provider status (`no_answer` for none yet).
    #[arg(long)]
    pub status: Option<String>,
    /// Only payments with an open flag of this kind.
    #[arg(long, value_parser = parse_kind)]
    pub flag: Option<FlagKind>,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub async fn report(settings: &Settings, args: ReportArgs) -> anyhow::Result<ExitCode> {
    use crate::report::{ReportRequest, write_report};

    if let (Some(from), Some(to)) = (args.from, args.to) {
        anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    }
    let request = ReportRequest {
        detail: args.detail,
        format: args.format,
        filter: store::report::ReportFilter {
            basis: args.by,
            from: args.from,
            to: args.to,
            currency: args.currency.map(|c| c.to_string()),
            status: args.status,
            flag: args.flag,
        },
    };
    let pool = store::connect(&settings.database).await?;
    let rows = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let rows = write_report(&pool, &request, std::io::BufWriter::new(file)).await?;
            eprintln!("{rows} rows written to {}", path.display());
            rows
        }
        None => {
            let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
            write_report(&pool, &request, stdout).await?
        }
    };
    let _ = rows;
    Ok(ExitCode::SUCCESS)
}
