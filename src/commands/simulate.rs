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
    Ok(ExitCode::SUCCESS)
}
