use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::capacity::{Mix, PlanInput, render, run};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Payments created a day.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub payments_per_day: u64,
    /// The deployment's request budget per second [default: poll.rate_per_second]; 0 is
    /// unlimited.
    #[arg(long, value_name = "R")]
    pub rate: Option<u32>,
    /// What happens to the day's payments, as a TOML file (paid, failed, abandoned,
    /// pay_median, pay_sigma, lifetime, visible_after, and optionally expired_status:
    /// `incomplete` or `process`, what the provider says of an abandoned payment after its
    /// lifetime) [default: 70 % paid after a median of 90 s, 5 % failed, 25 % abandoned at a
    /// 24 h lifetime (then `incomplete`), invisible for 30 s].
    #[arg(long, value_name = "FILE")]
    pub mix: Option<PathBuf>,
}

/// Runs the configured policy over a synthetic day; exit 1 when the budget cannot hold it.
pub async fn plan(settings: &Settings, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let mix = match &args.mix {
        None => Mix::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --mix {}", path.display()))?;
            Mix::from_toml(&text).map_err(|e| anyhow::anyhow!("--mix {}: {e}", path.display()))?
        }
    };
    let policy = settings.policy();
    crate::capacity::simulable(&policy).map_err(|e| anyhow::anyhow!("plan: {e}"))?;
    let input = PlanInput {
        payments_per_day: args.payments_per_day,
        rate_per_second: args.rate.unwrap_or(settings.poll.rate_per_second),
        policy,
        mix,
        sweeps: settings.poll.sweeps(),
        // The daemon's claim rule.
        claim_ahead: settings.poll.claim_ahead(),
    };
    let plan = tokio::task::spawn_blocking({
        let input = input.clone();
        move || run(&input)
    })
    .await?;
    outln!("{}", render(&plan, &input).trim_end())?;
    if plan.fits() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: {} payments a day need {:.1} requests/s and the budget is {}/s: raise \
         poll.rate_per_second (if the provider allows it) or make the recheck schedule sparser",
        plan.payments,
        plan.needed_rate(),
        plan.rate_budget
    );
    Ok(ExitCode::FAILURE)
}
