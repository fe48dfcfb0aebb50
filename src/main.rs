use std::process::ExitCode;

use clap::Parser as _;
use freedompay_recon::commands::{Cli, Command, StdoutClosed, execute};
use freedompay_recon::settings::Settings;
use freedompay_recon::telemetry;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut log = settings.log.clone();
    if std::env::var_os("RUST_LOG").is_none() {
        match cli.command {
            // The demo shows its own progress; the daemon's retry warnings would drown it.
            Command::Demo(_) => log.filter = "error".into(),
            // `run --once` prints what the sweep did; its log line would say it again.
            Command::Run { once: true } => log.filter.push_str(",freedompay_recon::engine=warn"),
            _ => {}
        }
    }
    telemetry::init(&log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command, &settings)) {
        Ok(code) => code,
        // The reader went away (`report | head`): stop quietly, as a printing command should.
        Err(e) if e.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            tracing::debug!("command failed: {e:?}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
