//! The finance commands: bulk import, closing flags by hand, re-polls, a read-only role.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::domain::{FlagKind, PaymentId};
use crate::intake::{ImportError, import_csv};
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
            outln!(
                "{name}: {} rows: {} imported, {} already known (unchanged)",
                outcome.rows,
                outcome.imported,
                outcome.already_known
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::Rejected(errors)) => {
            for error in &errors.shown {
                eprintln!("{error}");
            }
            let unshown = errors.total - errors.shown.len() as u64;
            if unshown > 0 {
                eprintln!("… and {unshown} more");
            }
            eprintln!(
                "error: {name}: {}; nothing was imported. Fix them and import the file again.",
                errors.summary()
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

/// A `--status` must be a documented status, `no_answer`, or one the provider has sent: a
/// typo (`sucess`) is an error, not an empty selection.
async fn check_status(pool: &sqlx::PgPool, status: &str) -> anyhow::Result<()> {
    use crate::domain::ProviderStatus;
    if status == "no_answer"
        || ProviderStatus::DOCUMENTED.contains(&status)
        || store::finance::status_seen(pool, status).await?
    {
        return Ok(());
    }
    anyhow::bail!(
        "--status {}: no payment has that status; use one of {}, no_answer, or a status the \
         provider sent (select distinct status from recon.reconciliation)",
        crate::text::excerpt(status),
        ProviderStatus::DOCUMENTED.join(", ")
    )
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
    outln!(
        "closed the {} flag of payment {} (by {by})",
        args.kind,
        args.payment_id
    )?;
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
    if let Selection::Status(status) = &selection {
        check_status(&pool, status).await?;
    }
    let (scheduled, missing) = store::finance::schedule_recheck(&pool, &selection).await?;
    outln!("{scheduled} payments are due for a re-poll now")?;
    if !missing.is_empty() {
        // Ids given here passed the id rule: printable as they are.
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
    use store::finance::{READER_VIEWS, quote_ident, role_reach};

    let pool = store::connect(&settings.database).await?;
    let role = quote_ident(&args.role);
    let reach = role_reach(&pool, &args.role).await?;
    anyhow::ensure!(
        reach.exists,
        "role {role} does not exist; create it first, e.g. create role {role} login password '…'"
    );
    // Granting views to a role that reads everything anyway would suggest a limit that is
    // not there.
    if reach.superuser || reach.reads_all_data {
        anyhow::bail!(
            "role {role} {} and can already read every table, raw provider bodies included; \
             nothing was granted. Give finance a role without that, e.g. \
             create role \"finance\" login password '…'",
            if reach.superuser {
                "is a superuser"
            } else {
                "is a member of pg_read_all_data"
            }
        );
    }
    store::finance::grant_reader(&pool, &args.role).await?;
    outln!("role {role} may now read {}", READER_VIEWS.join(", "))?;
    if reach.reads_tables {
        eprintln!(
            "warning: role {role} could already read the tables of schema recon (it owns them or \
             was granted them), raw provider bodies included; revoke that for a read-only \
             finance role: revoke all on all tables in schema recon from {role}"
        );
    } else {
        outln!("and no table: raw provider bodies stay out of its reach")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct GrantDaemonArgs {
    /// An existing PostgreSQL role that will run the daemon (and enqueue, import, report…).
    pub role: String,
}

/// Run by the migrating role after `migrate`: the running role gets exactly what it needs.
pub async fn grant_daemon(settings: &Settings, args: GrantDaemonArgs) -> anyhow::Result<ExitCode> {
    use store::finance::{daemon_grants, quote_ident, role_reach};

    let pool = store::connect(&settings.database).await?;
    let role = quote_ident(&args.role);
    anyhow::ensure!(
        role_reach(&pool, &args.role).await?.exists,
        "role {role} does not exist; create it first, e.g. create role {role} login password '…'"
    );
    store::finance::grant_daemon(&pool, &args.role)
        .await
        .context(
            "could not grant; run this as the role that ran `migrate` (it owns schema recon)",
        )?;
    for statement in daemon_grants(&args.role) {
        outln!("{statement};")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// List payments instead of the daily summary.
    #[arg(long)]
    pub detail: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::reporting::Format,
    /// First reporting day, inclusive (YYYY-MM-DD).
    #[arg(long, value_parser = crate::reporting::parse_date)]
    pub from: Option<chrono::NaiveDate>,
    /// Last reporting day, inclusive (YYYY-MM-DD).
    #[arg(long, value_parser = crate::reporting::parse_date)]
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
    /// CSV: write text cells exactly as stored. By default a cell starting with =, +, -, @,
    /// a tab or a carriage return gets a leading ' so a spreadsheet shows it and does not run
    /// it as a formula.
    #[arg(long)]
    pub raw: bool,
}

pub async fn report(settings: &Settings, args: ReportArgs) -> anyhow::Result<ExitCode> {
    use crate::reporting::{ReportRequest, write_report};

    if let (Some(from), Some(to)) = (args.from, args.to) {
        anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    }
    let request = ReportRequest {
        detail: args.detail,
        format: args.format,
        raw: args.raw,
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
    if let Some(status) = &request.filter.status {
        check_status(&pool, status).await?;
    }
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
            match write_report(&pool, &request, stdout).await {
                Err(crate::reporting::ReportError::Write(e)) => return Err(super::stdout_error(e)),
                other => other?,
            }
        }
    };
    let _ = rows;
    Ok(ExitCode::SUCCESS)
}
