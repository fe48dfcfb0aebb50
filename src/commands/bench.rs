use std::process::ExitCode;

use clap::Args;

use crate::benchmark::{BenchOptions, run_bench};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A small run (a few hundred payments) that checks every phase works; for CI.
    #[arg(long)]
    pub smoke: bool,
    /// Payments in the throughput run.
    #[arg(long)]
    pub payments: Option<u32>,
    /// Requests in flight in the throughput and memory runs.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// poll.rate_per_second in the rate-fidelity run.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Length of the rate-fidelity run, in seconds.
    #[arg(long)]
    pub rate_seconds: Option<u32>,
    /// Rows in the table for the claim-cost run.
    #[arg(long)]
    pub claim_rows: Option<u32>,
    /// Backlog sizes for the memory run, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub backlogs: Option<Vec<u32>>,
    /// How long the daemon works on each backlog in the memory run, in seconds.
    #[arg(long)]
    pub rss_seconds: Option<u32>,
    /// Instead: a year of history in place (365 days at 450,000 payments a day × --scale),
    /// and what reports, the claim and one payment's history cost with it.
    #[arg(long)]
    pub year: bool,
    /// With --year: the share of a full-volume year to synthesize (0.1 is 16 million
    /// payments).
    #[arg(long, requires = "year", default_value_t = 0.02, value_parser = scale)]
    pub scale: f64,
    /// With --year: keep the year's database afterwards (its name is printed), to look at
    /// plans with psql; drop it with `dropdb` when done.
    #[arg(long, requires = "year")]
    pub keep: bool,
}

/// A share of a full year, more than 0 and at most 1.
fn scale(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 1.0 => Ok(s),
        _ => Err("must be a number more than 0 and at most 1, e.g. 0.02".into()),
    }
}

/// Benchmarks on a scratch database on the server database.url points at.
pub async fn bench(settings: &Settings, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let command: Vec<String> = std::env::args().skip(1).collect();
    if args.year {
        let report =
            crate::benchmark::year::run_year(&settings.database, args.scale, args.keep).await?;
        outln!(
            "{}",
            report
                .to_markdown(&format!("freedompay-recon {}", command.join(" ")))
                .trim_end()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut options = if args.smoke {
        BenchOptions::smoke()
    } else {
        BenchOptions::full()
    };
    options.payments = args.payments.unwrap_or(options.payments);
    options.concurrency = args.concurrency.unwrap_or(options.concurrency);
    options.rate = args.rate.unwrap_or(options.rate);
    options.rate_seconds = args.rate_seconds.unwrap_or(options.rate_seconds);
    options.claim_rows = args.claim_rows.unwrap_or(options.claim_rows);
    options.backlogs = args.backlogs.unwrap_or(options.backlogs);
    options.rss_seconds = args.rss_seconds.unwrap_or(options.rss_seconds);
    anyhow::ensure!(
        options.payments > 0 && options.rate > 0,
        "--payments and --rate must be positive"
    );

    let report = run_bench(&settings.database, &options).await?;
    outln!(
        "{}",
        report
            .to_markdown(&format!("freedompay-recon {}", command.join(" ")))
            .trim_end()
    )?;
    Ok(ExitCode::SUCCESS)
}
