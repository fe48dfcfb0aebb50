use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::net::TcpListener;

use crate::settings::Settings;
use crate::simulator::{Builtin, CallbackPlan, Credentials, Scenario, Simulator};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on; port 0 picks a free port. The bound address is printed.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
    /// A scenario file (TOML, or JSON by extension) scripting replies per payment id.
    #[arg(long, value_name = "FILE", conflicts_with = "builtin")]
    pub scenario: Option<PathBuf>,
    /// A built-in scenario for every id.
    #[arg(long, value_enum, default_value = "realistic")]
    pub builtin: Builtin,
    /// Call back: POST a signed Result-URL request here when a payment settles (e.g.
    /// http://127.0.0.1:9188/freedompay/result). Payments then settle by time: in progress
    /// until --settle-after (on average) after their first poll.
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<reqwest::Url>,
    /// The merchant's secret key the callbacks are signed with (the daemon's
    /// merchant.secret); read from FREEDOMPAY_RECON__MERCHANT__SECRET when not given.
    #[arg(
        long,
        value_name = "S",
        env = "FREEDOMPAY_RECON__MERCHANT__SECRET",
        hide_env_values = true,
        requires = "callback_url"
    )]
    pub callback_secret: Option<String>,
    /// The share of callbacks never sent, 0 to 1.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = share, requires = "callback_url")]
    pub callback_loss: f64,
    /// Extra copies of each callback, each with a new salt (as the provider retries).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "callback_url")]
    pub callback_duplicates: u32,
    /// From a payment settling to its callback.
    #[arg(long, value_name = "D", default_value = "0s", value_parser = humantime::parse_duration, requires = "callback_url")]
    pub callback_delay: std::time::Duration,
    /// How long after its first poll a payment settles, on average (half to one and a half
    /// times this, by id).
    #[arg(long, value_name = "D", default_value = "5s", value_parser = humantime::parse_duration, requires = "callback_url")]
    pub settle_after: std::time::Duration,
    /// When stopped, write what the provider and the bank would about the payments answered
    /// paid and the money given back: a registry CSV per day, the map that reads them
    /// (map.toml) and the merchant's 1C statement (cp1251, Kazakh keys) with a credit per
    /// payout, into DIR (created if missing).
    #[arg(long, value_name = "DIR")]
    pub registry: Option<PathBuf>,
    #[command(flatten)]
    pub month: MonthKnobs,
}

/// What the simulated month's registries and statement get wrong (`--registry`).
#[derive(Debug, Clone, Args)]
pub struct MonthKnobs {
    /// The commission the registries state, in percent of each payment.
    #[arg(long, value_name = "P", default_value = "2.5", requires = "registry")]
    pub commission_percent: rust_decimal::Decimal,
    /// Paid payments the registries leave out (each flagged not_in_registry).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "registry")]
    pub missing_lines: usize,
    /// Payment lines whose commission is one unit above the contract's
    /// (registry_amount_mismatch).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "registry")]
    pub wrong_commission: usize,
    /// Payouts paid as two credits.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "registry")]
    pub split_payouts: usize,
    /// Pairs of payouts paid in one credit.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "registry")]
    pub merged_payouts: usize,
    /// Payouts paid --late-days after their day (payout_not_at_bank).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "registry")]
    pub late_payouts: usize,
    #[arg(long, value_name = "DAYS", default_value_t = 9, requires = "registry")]
    pub late_days: i64,
}

impl MonthKnobs {
    pub(super) fn knobs(&self) -> crate::simulator::settlement::Knobs {
        crate::simulator::settlement::Knobs {
            missing_lines: self.missing_lines,
            wrong_commission: self.wrong_commission,
            split_payouts: self.split_payouts,
            merged_payouts: self.merged_payouts,
            late_payouts: self.late_payouts,
            late_days: self.late_days,
        }
    }
}

/// Writes the registries, their map and the statement into `dir`; returns the paths of the
/// registries and of the statement.
pub(super) fn write_month(
    dir: &std::path::Path,
    written: &crate::simulator::settlement::Written,
) -> anyhow::Result<(Vec<PathBuf>, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    };
    write(
        "map.toml",
        crate::simulator::settlement::REGISTRY_MAP.as_bytes(),
    )?;
    let registries = written
        .registries
        .iter()
        .map(|(name, bytes)| write(name, bytes))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let statement = write(&written.statement.0, &written.statement.1)?;
    Ok((registries, statement))
}

fn share(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "{raw:?} is not a share between 0 and 1 (e.g. 0.05)"
        )),
    }
}

/// Serves the simulator until SIGINT/SIGTERM. Requests must be signed with
/// provider.auth_id and provider.secret, exactly as the daemon signs them.
pub async fn simulate(settings: &Settings, args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let provider = &settings.provider;
    if provider.auth_id.trim().is_empty() || provider.secret.expose_secret().is_empty() {
        anyhow::bail!(
            "the simulator checks signatures with provider.auth_id and provider.secret; set both \
             (e.g. FREEDOMPAY_RECON__PROVIDER__AUTH_ID=demo FREEDOMPAY_RECON__PROVIDER__SECRET=demo-secret)"
        );
    }
    if let Some(dir) = &args.registry {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--registry {}: cannot create it", dir.display()))?;
    }
    let shutdown = super::shutdown_on_signal()?;
    let scenario = match &args.scenario {
        Some(path) => Scenario::from_file(path)?,
        None => Scenario::builtin(args.builtin),
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let simulator = Simulator::spawn(
        listener,
        Credentials {
            auth_id: provider.auth_id.clone(),
            secret: provider.secret.clone(),
            params: provider.params,
        },
        scenario,
        false,
    )?;
    if let Some(url) = args.callback_url {
        let secret = args
            .callback_secret
            .filter(|s| !s.trim().is_empty())
            .context("--callback-url needs the merchant's secret key: --callback-secret or FREEDOMPAY_RECON__MERCHANT__SECRET")?;
        outln!("calling back to {url}")?;
        simulator.call_back(CallbackPlan {
            url,
            secret: SecretString::from(secret),
            loss: args.callback_loss,
            duplicates: args.callback_duplicates,
            delay: args.callback_delay,
            settle_after: args.settle_after,
        });
    }
    outln!("listening on {}", simulator.base_url())?;
    shutdown.cancelled().await;
    // stdout may be gone by now (a closed pipe): never panic over a farewell line.
    let _ = writeln!(
        std::io::stdout(),
        "requests answered: {}",
        simulator.total_calls()
    );
    if let Some(dir) = &args.registry {
        let (paid, returned) = simulator.settlement_ops();
        let written = crate::simulator::settlement::write(
            &paid,
            &returned,
            args.month.commission_percent,
            args.month.knobs(),
        );
        let (registries, statement) = write_month(dir, &written)?;
        let _ = writeln!(
            std::io::stdout(),
            "wrote {} registries, their map and {} into {} ({} payments, {} returns)",
            registries.len(),
            statement.display(),
            dir.display(),
            paid.len(),
            returned.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
