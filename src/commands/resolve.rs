//! `resolve`: close open flags by hand (one, every one of a kind, or those a CSV file or an
//! xlsx workbook lists), recording who and why.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{check_status, parse_kind, print_line_errors};
use crate::domain::{FlagKind, PaymentId};
use crate::intake::ImportError;
use crate::intake::encoding::Encoding;
use crate::settings::Settings;
use crate::store;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["payment_id", "all", "from_csv", "from_xlsx"]))]
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
    /// The encoding of the --from-csv file: utf-8, or cp1251 for what Excel in Russian and
    /// Kazakh locales saves as "CSV". Never guessed.
    #[arg(long, value_enum, default_value = "utf-8", requires = "from_csv")]
    pub encoding: crate::intake::encoding::Encoding,
    /// Close the flags listed in an xlsx workbook, as `report --flags --format xlsx` writes
    /// it, with notes added (sheet Flags, or the only sheet); checked as --from-csv is.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kind", "note", "status", "from", "to"])]
    pub from_xlsx: Option<PathBuf>,
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
pub(super) fn closed_by(by: Option<&str>) -> anyhow::Result<String> {
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
        return resolve_from_file(
            settings,
            Listing::Csv(file, args.encoding),
            &by,
            args.dry_run,
        )
        .await;
    }
    if let Some(file) = &args.from_xlsx {
        return resolve_from_file(settings, Listing::Xlsx(file), &by, args.dry_run).await;
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

/// A file of resolutions.
enum Listing<'a> {
    Csv(&'a std::path::Path, Encoding),
    Xlsx(&'a std::path::Path),
}

async fn resolve_from_file(
    settings: &Settings,
    listing: Listing<'_>,
    by: &str,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    use crate::intake::resolutions::{read_resolutions, read_resolutions_xlsx};

    let (file, unit) = match listing {
        Listing::Csv(file, _) => (file, "line"),
        // A sheet's rows are numbered as the spreadsheet shows them.
        Listing::Xlsx(file) => (file, "row"),
    };
    let name = file.display().to_string();
    let read = match listing {
        Listing::Csv(file, encoding) => {
            let input: Box<dyn Read + Send> = if name == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(std::fs::File::open(file).with_context(|| format!("cannot open {name}"))?)
            };
            let input = encoding.reader(input);
            tokio::task::spawn_blocking(move || read_resolutions(input)).await?
        }
        Listing::Xlsx(file) => {
            let input = std::io::BufReader::new(
                std::fs::File::open(file).with_context(|| format!("cannot open {name}"))?,
            );
            tokio::task::spawn_blocking(move || read_resolutions_xlsx(input)).await?
        }
    };
    let rows = match read {
        Ok(rows) => rows,
        Err(ImportError::Rejected(errors)) => {
            print_line_errors(&errors, unit);
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
                format!("the same flag as {unit} {first}; keep one of the two notes"),
            )
        }))
        .collect();
    if !problems.is_empty() {
        problems.sort();
        for (line, problem) in problems.iter().take(crate::intake::SHOWN_ERRORS) {
            eprintln!("{unit} {line}: {problem}");
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
            "{unit} {line}: already closed (by {}); left as it was",
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
