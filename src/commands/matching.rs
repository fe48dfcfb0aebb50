//! `match`: match the registries to the payments and the payouts to the bank now (imports do
//! it too), list the matches, undo a wrong one, or close a flag about a registry line, a
//! payout or a bank credit by hand.

use std::process::ExitCode;

use clap::Args;

use crate::domain::settlement::{Policy, Search};
use crate::settings::Settings;
use crate::store;
use crate::store::settlement::{SettlePolicy, Settled, Undone};

#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Print every match (kept, and undone with who, when and why), oldest first.
    #[arg(long, conflicts_with_all = ["undo", "resolve"])]
    pub list: bool,
    /// Undo match ID (see --list): its pairs are never matched again by a rule; the matches
    /// made after it that may depend on it are undone too, and everything is matched again.
    #[arg(long, value_name = "ID", requires = "note", conflicts_with = "resolve")]
    pub undo: Option<i64>,
    /// Close flag ID of recon.open_settlement_flags (registry_unknown, payout_not_at_bank,
    /// bank_credit_unexplained) by hand.
    #[arg(long, value_name = "ID", requires = "note")]
    pub resolve: Option<i64>,
    /// Why: kept with the undone match or the closed flag.
    #[arg(long)]
    pub note: Option<String>,
    /// Who [default: your login name, from the system's user database]
    #[arg(long)]
    pub by: Option<String>,
}

/// The matching's policy from the settings.
pub(super) fn policy(settings: &Settings) -> anyhow::Result<SettlePolicy> {
    Ok(SettlePolicy {
        bank: Policy {
            window_days: settings.bank.window_days(),
            tolerance: settings.bank.tolerance,
            search: Search::default(),
        },
        bank_currency: settings
            .bank
            .currency
            .parse()
            .map_err(|e| anyhow::anyhow!("bank.currency: {e}"))?,
        expect_within: settings.registry.expect_within,
        commission_percent: settings.registry.commission_percent,
    })
}

/// One line saying what a matching run did.
pub(super) fn said(settled: &Settled) -> String {
    format!(
        "matched {} registry lines to their payments ({} money events booked from them) and \
         {} payouts to bank credits; {} flags opened, {} cleared",
        settled.lines_matched,
        settled.booked,
        settled.payouts_matched,
        settled.flags_opened,
        settled.flags_cleared
    )
}

pub async fn run_match(settings: &Settings, args: MatchArgs) -> anyhow::Result<ExitCode> {
    let pool = store::connect_to_schema(&settings.database).await?;
    if args.list {
        for m in store::settlement::matches(&pool).await? {
            outln!(
                "{:>6}  {:<8} {:<19} {} {} {}  {}{}",
                m.id,
                m.side,
                m.rule,
                m.currency,
                m.amount,
                m.matched_amount
                    .map_or_else(String::new, |a| format!("(matched {a})")),
                crate::text::clean(&m.what, 400),
                m.undone.map_or_else(String::new, |u| format!(
                    " [{}]",
                    crate::text::clean(&u, 400)
                ))
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let policy = policy(settings)?;
    let note = args.note.as_deref().map(str::trim).unwrap_or_default();
    if (args.undo.is_some() || args.resolve.is_some())
        && (note.is_empty() || note.chars().count() > 2000)
    {
        anyhow::bail!("--note: say why, in 1 to 2000 characters");
    }
    if let Some(id) = args.resolve {
        let by = super::resolve::closed_by(args.by.as_deref())?;
        return Ok(
            match store::settlement::resolve_flag(&pool, id, &by, note).await? {
                true => {
                    outln!("flag {id} closed by {by}")?;
                    ExitCode::SUCCESS
                }
                false => {
                    eprintln!(
                        "error: flag {id} is not an open flag of recon.open_settlement_flags; \
                         nothing changed"
                    );
                    ExitCode::FAILURE
                }
            },
        );
    }
    if let Some(id) = args.undo {
        let by = super::resolve::closed_by(args.by.as_deref())?;
        return Ok(
            match store::settlement::undo(&pool, id, &by, note, &policy).await? {
                Undone::NoSuchMatch => {
                    eprintln!("error: there is no match {id} (see match --list); nothing changed");
                    ExitCode::FAILURE
                }
                Undone::Already { by, at } => {
                    eprintln!(
                        "error: match {id} was undone already, by {} on {}; nothing changed",
                        crate::text::clean(&by, 200),
                        at.format("%Y-%m-%d %H:%M UTC")
                    );
                    ExitCode::FAILURE
                }
                Undone::Done { with_it, settled } => {
                    outln!(
                        "match {id} undone by {by}, with {with_it} made after it; then {}",
                        said(&settled)
                    )?;
                    ExitCode::SUCCESS
                }
            },
        );
    }
    let settled = store::settlement::settle(&pool, &policy).await?;
    outln!("{}", capitalised(&said(&settled)))?;
    Ok(ExitCode::SUCCESS)
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}
