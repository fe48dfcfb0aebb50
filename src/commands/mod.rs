//! The command line: one small module per command, each a thin composition of the library.

mod check;
mod enqueue;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::Settings;

pub use enqueue::EnqueueArgs;

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
    /// Apply the database migrations (schema `recon`). `run` also applies them at start.
    Migrate,
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
}

/// Runs a parsed command with loaded settings. Errors are reported by the caller, in one line.
pub async fn execute(command: Command, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Migrate => {
            let pool = crate::store::connect(&settings.database).await?;
            crate::store::migrate(&pool).await?;
            println!("migrations applied to {}", settings.database.describe());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { once } => run::run(settings, once).await,
        Command::Enqueue(args) => enqueue::enqueue(settings, args).await,
        Command::Check { payment_id } => check::check(settings, &payment_id).await,
    }
}
