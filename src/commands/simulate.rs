use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;

use crate::settings::Settings;
use crate::simulator::{Builtin, Credentials, Scenario, Simulator};

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
