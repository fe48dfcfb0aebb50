use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::capacity::{Mix, PlanInput, WatchCost, render, render_lost, run};
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
    /// pay_median, pay_sigma, lifetime, visible_after; optionally expired_status:
    /// `incomplete` or `process`, what the provider says of an abandoned payment after its
    /// lifetime; with callbacks, optionally callback_share, the share of paid and failed
    /// outcomes whose callback arrives, and callback_delay, from the outcome to its callback)
    /// [default: 70 % paid after a median of 90 s, 5 % failed, 25 % abandoned at a 24 h
    /// lifetime (then `incomplete`), invisible for 30 s; 95 % called back after 2 s].
    #[arg(long, value_name = "FILE")]
    pub mix: Option<PathBuf>,
    /// Plan a daemon that hears the provider's callbacks, as if callbacks.listen were set
    /// [default: on when callbacks.listen is set]: the schedule is
    /// poll.first_poll_after_with_callbacks and poll.recheck_with_callbacks, and the plan is
    /// shown again with every callback lost.
    #[arg(long)]
    pub callbacks: bool,
}

/// Runs the configured policy over a synthetic day; exit 1 when the budget cannot hold it
/// (with callbacks: with them, or with every callback lost).
pub async fn plan(settings: &Settings, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let mix = match &args.mix {
        None => Mix::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --mix {}", path.display()))?;
            Mix::from_toml(&text).map_err(|e| anyhow::anyhow!("--mix {}: {e}", path.display()))?
        }
    };
    let callbacks = args.callbacks || settings.callbacks.listen.is_some();
    let policy = settings.policy_for(callbacks);
    crate::capacity::simulable(&policy).map_err(|e| anyhow::anyhow!("plan: {e}"))?;
    let input = PlanInput {
        payments_per_day: args.payments_per_day,
        rate_per_second: args.rate.unwrap_or(settings.poll.rate_per_second),
        policy,
        mix,
        sweeps: settings.poll.sweeps(),
        // The daemon's claim rule.
        claim_ahead: settings.poll.claim_ahead(),
        callbacks,
        created_over: crate::capacity::DAY,
    };
    // With callbacks, the same day again with every callback lost: the safety net alone.
    let (plan, lost) = tokio::task::spawn_blocking({
        let input = input.clone();
        move || {
            let lost = input.callbacks.then(|| {
                let mut lost = input.clone();
                lost.mix.callback_share = 0.0;
                run(&lost)
            });
            (run(&input), lost)
        }
    })
    .await?;
    outln!("{}", render(&plan, &input).trim_end())?;
    if let Some(lost) = &lost {
        outln!("{}", render_lost(lost).trim_end())?;
    }
    // Paid payments watched for refunds, in the same budget.
    let watch = |plan: &crate::capacity::Plan| {
        WatchCost::of(plan, &settings.refunds.watch, settings.refunds.watch_for)
    };
    outln!(
        "{}",
        watch(&plan).render(&plan, settings.merchant.watches_refunds())
    )?;
    // The budget must hold the day when callbacks stop arriving too: that is when the ladder
    // has to do all the work.
    let Some(over) = [Some(&plan), lost.as_ref()]
        .into_iter()
        .flatten()
        // The watch asks only with merchant credentials: then it shares the budget.
        .find(|plan| {
            !plan.fits() || (settings.merchant.watches_refunds() && !watch(plan).fits(plan))
        })
    else {
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!(
        "error: {} payments a day need {:.1} requests/s{} and the budget is {}/s: raise \
         poll.rate_per_second (if the provider allows it) or make the recheck schedule or \
         refunds.watch sparser",
        over.payments,
        if settings.merchant.watches_refunds() {
            watch(over).needed_rate(over)
        } else {
            over.needed_rate()
        },
        if std::ptr::eq(over, &plan) {
            ""
        } else {
            " if every callback were lost"
        },
        over.rate_budget
    );
    Ok(ExitCode::FAILURE)
}
