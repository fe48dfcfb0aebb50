//! `recheck`: make payments due for an immediate re-poll.

use std::process::ExitCode;

use clap::Args;

use super::{check_status, parse_kind};
use crate::domain::{FlagKind, PaymentId};
use crate::settings::Settings;
use crate::store::{self, finance::Selection};

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
