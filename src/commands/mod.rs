//! The command line: one small module per command, each a thin composition of the library.

/// `println!` that returns the error instead of panicking: a reader that closes the pipe
/// (`report | head`) ends the command quietly (see [`StdoutClosed`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err($crate::commands::stdout_error)
    }};
}

/// Standard output went away (its reader closed the pipe, as `| head` does): the command
/// ends quietly, with success, as printing commands do. Only a write to standard output
/// becomes this; a lost database connection never does.
#[derive(Debug, thiserror::Error)]
#[error("standard output is closed")]
pub struct StdoutClosed;

/// An error writing to standard output.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("cannot write to standard output")
    }
}

mod archive;
mod bench;
mod check;
mod close;
mod console;
mod demo;
mod digest;
mod enqueue;
mod grant;
mod import;
mod matching;
mod plan;
mod recheck;
mod report;
mod resolve;
mod run;
mod simulate;
mod values;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::Settings;

pub use archive::ArchiveArgs;
pub use bench::BenchArgs;
pub use close::CloseArgs;
pub use console::ConsoleArgs;
pub use demo::DemoArgs;
pub use digest::DigestArgs;
pub use enqueue::EnqueueArgs;
pub use grant::{GrantDaemonArgs, GrantFinanceArgs, GrantReaderArgs};
pub use import::ImportArgs;
pub use matching::MatchArgs;
pub use plan::PlanArgs;
pub use recheck::RecheckArgs;
pub use report::ReportArgs;
pub use resolve::ResolveArgs;
pub use simulate::SimulateArgs;

#[derive(Debug, Parser)]
#[command(
    name = "freedompay-recon",
    version,
    about = "Reconciles Freedom Pay payments against what the merchant expected, into PostgreSQL.",
    long_about = "Reconciles Freedom Pay payments against what the merchant expected, into PostgreSQL.\n\n\
        Settings come from built-in defaults, then the TOML file (--config, else \
        /etc/freedompay-recon/config.toml when it exists), then DATABASE_URL, then environment \
        variables FREEDOMPAY_RECON__SECTION__KEY (e.g. FREEDOMPAY_RECON__PROVIDER__SECRET)."
)]
pub struct Cli {
    /// TOML config file [default: /etc/freedompay-recon/config.toml when it exists]
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "FREEDOMPAY_RECON_CONFIG"
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations (schema `recon`). `run` also applies pending ones at
    /// start, when its role may.
    Migrate {
        /// Create the database named in database.url first when it does not exist (connects
        /// to the server's `postgres` database to do so).
        #[arg(long)]
        create_database: bool,
    },
    /// Run the daemon: sweep due payments on poll.schedule until SIGTERM or Ctrl-C.
    Run {
        /// Claim and reconcile everything due now, then exit (for cron-style use and scripts).
        /// Exits non-zero if the provider rejects our credentials.
        #[arg(long)]
        once: bool,
    },
    /// Start tracking a payment. Idempotent: the same payment twice changes nothing and says
    /// so; different values for a known payment are reported and not overwritten (exit 1).
    Enqueue(EnqueueArgs),
    /// Ask the provider about one payment and print the parsed answer; writes nothing.
    /// Use it to check the credentials.
    Check {
        /// The payment id in Freedom Pay's system.
        payment_id: String,
    },
    /// Serve a local stand-in for Freedom Pay's invoice/info endpoint (signature checked
    /// with provider.auth_id and provider.secret), for trying the daemon without credentials.
    Simulate(SimulateArgs),
    /// Show the whole product working: create and migrate a database, start the simulator,
    /// enqueue a few hundred payments, run the daemon until each is settled or flagged, and
    /// print a summary.
    Demo(DemoArgs),
    /// Measure throughput, rate fidelity, claim cost and memory against the simulator on a
    /// scratch database (created next to database.url, then dropped); prints a Markdown table.
    Bench(BenchArgs),
    /// Capacity planning: run the configured polling policy over a synthetic day (no database,
    /// no network) and print the provider requests per payment, the rate they need, and how
    /// late payments and failures are seen. Exit 1 when the rate budget cannot hold the volume.
    Plan(PlanArgs),
    /// Start tracking every payment in a CSV file: all rows are validated first, then
    /// imported in one transaction; a file with any bad row imports nothing.
    Import(ImportArgs),
    /// Report for finance: a daily summary by currency and status (or, with --detail, the
    /// payments; with --flags, the open flags), as a table, CSV, JSON or an xlsx workbook,
    /// streamed.
    Report(ReportArgs),
    /// A summary for people of a period (default: yesterday in recon.timezone): payments the
    /// daemon first saw paid, failed or expired in it, by currency; flags opened and resolved,
    /// open flags by age and the oldest ones; every time in recon.timezone with its offset.
    /// Printed, or posted to a chat channel with --post.
    Digest(DigestArgs),
    /// Close an open flag by hand, recording who and why (a later observation may open it
    /// again); or every flag of a kind, or those a CSV file or xlsx workbook lists with notes.
    Resolve(ResolveArgs),
    /// Make payments due for an immediate re-poll (after fixing a configuration problem, say).
    Recheck(RecheckArgs),
    /// Give a PostgreSQL role read-only access to the finance views and nothing else.
    GrantReader(GrantReaderArgs),
    /// Give one person's PostgreSQL role what finance work needs: report and resolve flags,
    /// and nothing else (no write to payments); what they resolve records that role. Run it
    /// as the role that ran `migrate`. Prints the statements.
    GrantFinance(GrantFinanceArgs),
    /// Give a PostgreSQL role what running the daemon needs (not `migrate`); run it as the
    /// role that ran `migrate`. Prints the statements.
    GrantDaemon(GrantDaemonArgs),
    /// Write one closed reporting month (calendar days in recon.timezone) of transitions,
    /// flags and events to a compressed file (a .tar.gz of CSV files and a manifest with row
    /// counts and SHA-256 checksums), recorded in recon.archives; with --detach, then detach
    /// the monthly partitions whose every row is archived (kept, not dropped). Run it as the
    /// role that ran `migrate`. Refuses the current month, and a month with open action flags
    /// unless --allow-open-flags.
    Archive(ArchiveArgs),
    /// Close a reporting month: sign off its figures (by payment day, in recon.timezone),
    /// which `report` prints from then on, unchanged; later changes to its payments are
    /// booked as adjustments in the open period. Or reopen the latest closed month.
    Close(CloseArgs),
    /// Match the provider's registries to the payments and its payouts to the bank credits
    /// now (each import does it too); list the matches; undo a wrong one with a note (what
    /// was matched after it is matched again); or close a flag about a registry line, a
    /// payout or a bank credit by hand.
    Match(MatchArgs),
    /// Serve read-only pages for finance on console.listen (127.0.0.1:8090): find a payment,
    /// its whole story, the queue of flags that need a person. Connects with a reader role
    /// (grant-reader) and refuses one that can write.
    Console(ConsoleArgs),
}

/// Runs a parsed command with loaded settings. Errors are reported by the caller, in one line.
pub async fn execute(command: Command, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Migrate { create_database } => {
            if create_database
                && crate::store::create_database_if_missing(&settings.database).await?
            {
                outln!("created database {}", settings.database.describe())?;
            }
            let pool = crate::store::connect(&settings.database).await?;
            crate::store::migrate(&pool).await?;
            outln!("migrations applied to {}", settings.database.describe())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { once } => run::run(settings, once).await,
        Command::Enqueue(args) => enqueue::enqueue(settings, args).await,
        Command::Check { payment_id } => check::check(settings, &payment_id).await,
        Command::Simulate(args) => simulate::simulate(settings, args).await,
        Command::Demo(args) => demo::demo(settings, args).await,
        Command::Bench(args) => bench::bench(settings, args).await,
        Command::Plan(args) => plan::plan(settings, args).await,
        Command::Import(args) => import::import(settings, args).await,
        Command::Report(args) => report::report(settings, args).await,
        Command::Digest(args) => digest::digest(settings, args).await,
        Command::Resolve(args) => resolve::resolve(settings, args).await,
        Command::Recheck(args) => recheck::recheck(settings, args).await,
        Command::GrantReader(args) => grant::grant_reader(settings, args).await,
        Command::GrantFinance(args) => grant::grant_finance(settings, args).await,
        Command::GrantDaemon(args) => grant::grant_daemon(settings, args).await,
        Command::Archive(args) => archive::archive(settings, args).await,
        Command::Close(args) => close::close(settings, args).await,
        Command::Match(args) => matching::run_match(settings, args).await,
        Command::Console(args) => console::console(settings, args).await,
    }
}

/// A token cancelled on SIGTERM (what systemd sends) or SIGINT (Ctrl-C). The handlers are
/// installed before this returns, so a signal that arrives during start-up (while connecting
/// or migrating) is not lost and never kills the process outright.
pub(crate) fn shutdown_on_signal() -> anyhow::Result<tokio_util::sync::CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        cancel.cancel();
    });
    Ok(token)
}

/// Prints the line errors of a rejected file (`import`, `resolve --from-csv`,
/// `resolve --from-xlsx`), those shown and how many more; `unit` is what the file's rows are
/// called (`line` in a CSV file, `row` in a sheet, as the spreadsheet numbers them).
fn print_line_errors(errors: &crate::intake::LineErrors, unit: &str) {
    for error in &errors.shown {
        eprintln!("{unit} {}: {}: {}", error.line, error.column, error.problem);
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
        || crate::store::finance::status_seen(pool, status).await?
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

/// A flag kind given on the command line (`--kind`, `--flag`).
fn parse_kind(raw: &str) -> Result<crate::domain::FlagKind, String> {
    raw.parse()
        .map_err(|e: crate::domain::InvalidInput| e.to_string())
}

/// "1 row", "2 rows".
fn rows(n: u64) -> String {
    format!("{n} {}", if n == 1 { "row" } else { "rows" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_standard_output_ends_a_command_quietly() {
        let closed = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(stdout_error(closed()).is::<StdoutClosed>());
        assert!(!stdout_error(std::io::Error::other("disk full")).is::<StdoutClosed>());
        // A database connection that breaks is an error, whatever its I/O cause.
        let database =
            anyhow::Error::new(crate::store::StoreError::Query(sqlx::Error::Io(closed())));
        assert!(!database.is::<StdoutClosed>());
    }
}
