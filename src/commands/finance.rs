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
    let pool = store::connect_to_schema(&settings.database).await?;
    match import_csv(&pool, input, offset).await {
        Ok(outcome) => {
            outln!(
                "{name}: {}: {} imported, {} already known (unchanged)",
                rows(outcome.rows),
                outcome.imported,
                outcome.already_known
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::Rejected(errors)) => {
            print_line_errors(&errors);
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
#[command(group = clap::ArgGroup::new("which").required(true).args(["payment_id", "all", "from_csv"]))]
pub struct ResolveArgs {
    /// The payment whose flag to close.
    #[arg(value_parser = super::enqueue::parse_payment_id)]
    pub payment_id: Option<PaymentId>,
    /// Close every open flag of --kind (narrowed by --status, --from, --to), in one
    /// transaction.
    #[arg(long, requires_all = ["kind", "note"])]
    pub all: bool,
    /// Close the flags listed in a CSV file (header with at least payment_id, kind, note; as
    /// `report --flags --format csv` writes it, with notes added). The whole file is checked
    /// first; a row whose flag is already closed is reported and skipped.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kind", "note", "status", "from", "to"])]
    pub from_csv: Option<PathBuf>,
    /// The flag kind, e.g. amount_mismatch.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<FlagKind>,
    /// Why it is closed; kept in recon.discrepancy_history.
    #[arg(long)]
    pub note: Option<String>,
    /// Who closes it [default: your login name, from the system's user database]
    #[arg(long)]
    pub by: Option<String>,
    /// With --all: only payments with this provider status (`no_answer` for none yet).
    #[arg(long, requires = "all")]
    pub status: Option<String>,
    /// With --all: flags opened on or after this reporting day (YYYY-MM-DD).
    #[arg(long, requires = "all", value_parser = crate::reporting::parse_date)]
    pub from: Option<chrono::NaiveDate>,
    /// With --all: flags opened on or before this reporting day (YYYY-MM-DD).
    #[arg(long, requires = "all", value_parser = crate::reporting::parse_date)]
    pub to: Option<chrono::NaiveDate>,
    /// Say how many flags would be closed, and close none.
    #[arg(long)]
    pub dry_run: bool,
}

/// Who closes a flag: `--by`, else the login name of the user running the command, from the
/// system's user database (cron jobs and containers often have no `$USER`), else `$USER`.
/// Never a name the daemon uses for itself, and never a made-up `unknown`.
fn closed_by(by: Option<&str>) -> anyhow::Result<String> {
    let name = match by {
        Some(by) => by.trim().to_owned(),
        None => login_name().ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell who you are (your user id has no name in the user database and \
                 $USER is not set); say who closes the flags with --by NAME"
            )
        })?,
    };
    if let Some(problem) = crate::domain::rules::text_problem(&name, 128) {
        anyhow::bail!("--by {}: the name {problem}", crate::text::excerpt(&name));
    }
    let reserved = name == "daemon" || name == "unknown" || name.starts_with("rule:");
    anyhow::ensure!(
        !reserved,
        "--by {name}: that name is kept for flags the daemon closes itself; give a person's name"
    );
    Ok(name)
}

/// The login name of the user running this process.
fn login_name() -> Option<String> {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|user| user.name)
        .or_else(|| std::env::var("USER").ok())
        .filter(|name| !name.trim().is_empty())
}

/// "1 flag", "2 flags".
fn flags(n: u64) -> String {
    format!("{n} {}", if n == 1 { "flag" } else { "flags" })
}

pub async fn resolve(settings: &Settings, args: ResolveArgs) -> anyhow::Result<ExitCode> {
    let by = closed_by(args.by.as_deref())?;
    if let Some(file) = &args.from_csv {
        return resolve_from_csv(settings, file, &by, args.dry_run).await;
    }
    let note = args
        .note
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--note must say why the flag is closed"))
        .and_then(|note| {
            crate::intake::resolutions::note(note).map_err(|e| anyhow::anyhow!("--note {e}"))
        })?;
    let kind = args
        .kind
        .ok_or_else(|| anyhow::anyhow!("--kind: which kind of flag to close"))?;
    let pool = store::connect_to_schema(&settings.database).await?;
    if args.all {
        if let Some(status) = &args.status {
            check_status(&pool, status).await?;
        }
        let selection = store::finance::FlagSelection {
            kind,
            status: args.status,
            from: args.from,
            to: args.to,
        };
        let n =
            store::finance::resolve_selected(&pool, &selection, &by, &note, args.dry_run).await?;
        if args.dry_run {
            outln!(
                "would close {} of kind {kind} (by {by}); closed none",
                flags(n)
            )?;
        } else {
            outln!("closed {} of kind {kind} (by {by})", flags(n))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let payment_id = args
        .payment_id
        .ok_or_else(|| anyhow::anyhow!("give a payment id, --all or --from-csv"))?;
    if args.dry_run {
        anyhow::bail!("--dry-run goes with --all or --from-csv");
    }
    let closed = store::finance::resolve_flag(&pool, &payment_id, kind, &by, &note).await?;
    if !closed {
        anyhow::bail!(
            "payment {payment_id} has no open {kind} flag (see recon.open_discrepancies)"
        );
    }
    outln!("closed the {kind} flag of payment {payment_id} (by {by})")?;
    Ok(ExitCode::SUCCESS)
}

async fn resolve_from_csv(
    settings: &Settings,
    file: &std::path::Path,
    by: &str,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    use crate::intake::resolutions::read_resolutions;

    let name = file.display().to_string();
    let input: Box<dyn Read + Send> = if name == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("cannot open {name}"))?)
    };
    let rows = match tokio::task::spawn_blocking(move || read_resolutions(input)).await? {
        Ok(rows) => rows,
        Err(ImportError::Rejected(errors)) => {
            print_line_errors(&errors);
            eprintln!(
                "error: {name}: {}; no flag was closed. Fix them and give the file again.",
                errors.summary()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("{name}: no flag was closed"))),
    };
    let pool = store::connect_to_schema(&settings.database).await?;
    let outcome = store::finance::resolve_listed(&pool, &rows, by, dry_run).await?;
    let mut problems: Vec<(u64, String)> = outcome
        .unknown
        .iter()
        .map(|&line| {
            (
                line,
                "no such flag (check payment_id, kind and flag_id)".to_owned(),
            )
        })
        .chain(outcome.repeated.iter().map(|&(line, first)| {
            (
                line,
                format!("the same flag as line {first}; keep one of the two notes"),
            )
        }))
        .collect();
    if !problems.is_empty() {
        problems.sort();
        for (line, problem) in problems.iter().take(crate::intake::SHOWN_ERRORS) {
            eprintln!("line {line}: {problem}");
        }
        eprintln!(
            "error: {name}: {} of {} rows name no flag, or one another row names; no flag was \
             closed. Fix them and give the file again.",
            problems.len(),
            rows.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    for (line, closed_by) in &outcome.already_closed {
        outln!(
            "line {line}: already closed (by {}); left as it was",
            crate::text::escape_invisible(closed_by)
        )?;
    }
    let closed = outcome.closed.len() as u64;
    let already = outcome.already_closed.len();
    let verb = if dry_run { "would close" } else { "closed" };
    outln!(
        "{name}: {verb} {} (by {by}); {already} already closed{}",
        flags(closed),
        if dry_run { "; closed none" } else { "" }
    )?;
    Ok(ExitCode::SUCCESS)
}

fn print_line_errors(errors: &crate::intake::LineErrors) {
    for error in &errors.shown {
        eprintln!("{error}");
    }
    let unshown = errors.total - errors.shown.len() as u64;
    if unshown > 0 {
        eprintln!("… and {unshown} more");
    }
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
    let pool = store::connect_to_schema(&settings.database).await?;
    if let Selection::Status(status) = &selection {
        check_status(&pool, status).await?;
    }
    let (scheduled, missing) = store::finance::schedule_recheck(&pool, &selection).await?;
    outln!(
        "{scheduled} {} due for a re-poll now",
        if scheduled == 1 {
            "payment is"
        } else {
            "payments are"
        }
    )?;
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

    let pool = store::connect_to_schema(&settings.database).await?;
    // For messages: quoted, and escaped like any outside text on a terminal.
    let role = crate::text::escape_invisible(&quote_ident(&args.role)).into_owned();
    let reach = role_reach(&pool, &args.role).await?;
    anyhow::ensure!(
        reach.exists,
        "role {role} does not exist; create it first, e.g. create role {role} login password '…'"
    );
    // Granting views to a role that reads everything anyway (or can make itself able to)
    // would suggest a limit that is not there.
    let reads_everything = if reach.superuser {
        Some("is a superuser")
    } else if reach.reads_all_data {
        Some("is a member of pg_read_all_data (inheriting or by SET ROLE)")
    } else if reach.creates_roles {
        Some("has CREATEROLE (it can grant itself pg_read_all_data)")
    } else {
        None
    };
    if let Some(why) = reads_everything {
        anyhow::bail!(
            "role {role} {why} and can read every table, raw provider bodies included; \
             nothing was granted. Give finance a role without that, e.g. \
             create role \"finance\" login password '…'"
        );
    }
    store::finance::grant_reader(&pool, &args.role).await?;
    outln!("role {role} may now read {}", READER_VIEWS.join(", "))?;
    if reach.reads_tables {
        eprintln!(
            "warning: role {role} can already read the tables of schema recon (it, or a role it \
             can become with SET ROLE, owns them or was granted them), raw provider bodies \
             included; revoke that for a read-only finance role (check its memberships: \
             \\du {})",
            crate::text::escape_invisible(&args.role)
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
    /// Grant even to a role other login roles are members of (they would all be able to
    /// change payments); the reason is printed with the grants.
    #[arg(long, value_name = "REASON")]
    pub force: Option<String>,
}

/// Run by the migrating role after `migrate`: the running role gets exactly what it needs.
pub async fn grant_daemon(settings: &Settings, args: GrantDaemonArgs) -> anyhow::Result<ExitCode> {
    use store::finance::{daemon_grants, quote_ident, role_reach};

    let pool = store::connect_to_schema(&settings.database).await?;
    // For messages: quoted, and escaped like any outside text on a terminal.
    let role = crate::text::escape_invisible(&quote_ident(&args.role)).into_owned();
    let reach = role_reach(&pool, &args.role).await?;
    anyhow::ensure!(
        reach.exists,
        "role {role} does not exist; create it first, e.g. create role {role} login password '…'"
    );
    // Write access to payments for a role many logins hold (pg_read_all_data: every BI
    // login) would let all of them change what the merchant expects.
    anyhow::ensure!(
        !reach.built_in,
        "role {role} is one of PostgreSQL's built-in roles, which other roles are members of; \
         nothing was granted. Create a role for the daemon: create role \"recon_daemon\" login"
    );
    anyhow::ensure!(
        !reach.superuser,
        "role {role} is a superuser: it needs no grants and bypasses every limit; nothing was \
         granted. Run the daemon as a role of its own: create role \"recon_daemon\" login"
    );
    if !reach.login_members.is_empty() {
        let members: Vec<String> = reach
            .login_members
            .iter()
            .map(|m| crate::text::escape_invisible(&quote_ident(m)).into_owned())
            .collect();
        match &args.force {
            None => anyhow::bail!(
                "role {role} has login roles as members ({}): each could change payments with \
                 these grants; nothing was granted. Use a role of its own, or give --force \
                 REASON if that is meant",
                members.join(", ")
            ),
            Some(reason) => eprintln!(
                "warning: granting to {role} although {} can use it: {}",
                members.join(", "),
                crate::text::escape_invisible(reason)
            ),
        }
    }
    store::finance::grant_daemon(&pool, &args.role)
        .await
        .context(
            "could not grant; run this as the role that ran `migrate` (it owns schema recon)",
        )?;
    for statement in daemon_grants(&args.role) {
        outln!("{};", crate::text::escape_invisible(&statement))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").args(["detail", "flags"]))]
pub struct ReportArgs {
    /// List payments instead of the daily summary.
    #[arg(long)]
    pub detail: bool,
    /// List flags instead of the daily summary: the open flags a person must act on, oldest
    /// first, with their age (CSV: add notes in the `note` column and give the file to
    /// `resolve --from-csv`).
    #[arg(long)]
    pub flags: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::reporting::Format,
    /// CSV for Excel in Russian or Kazakh locales: a UTF-8 byte-order mark, `;` between
    /// cells and a decimal comma (implies --format csv).
    #[arg(long, conflicts_with = "format")]
    pub excel: bool,
    /// First reporting day, inclusive (YYYY-MM-DD); with --flags, of the day a flag opened.
    #[arg(long, value_parser = crate::reporting::parse_date)]
    pub from: Option<chrono::NaiveDate>,
    /// Last reporting day, inclusive (YYYY-MM-DD); with --flags, of the day a flag opened.
    #[arg(long, value_parser = crate::reporting::parse_date)]
    pub to: Option<chrono::NaiveDate>,
    /// Which day a payment belongs to: the day it was created, or the day it settled.
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
    /// With --flags: the flags that were open at the end of this reporting day (from
    /// history), to close a month after the fact.
    #[arg(long, value_parser = crate::reporting::parse_date, requires = "flags")]
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
    let currency = args.currency.map(|c| c.to_string());
    let kind = if args.flags {
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
        })
    } else {
        let filter = ReportFilter {
            basis: args.by,
            from: args.from,
            to: args.to,
            currency,
            status: args.status.clone(),
            flag: args.flag,
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
    };
    let pool = store::connect_to_schema(&settings.database).await?;
    if let Some(status) = &args.status {
        check_status(&pool, status).await?;
    }
    let written = match &args.output {
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

/// "1 row", "2 rows".
fn rows(n: u64) -> String {
    format!("{n} {}", if n == 1 { "row" } else { "rows" })
}
