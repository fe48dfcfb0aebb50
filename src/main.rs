use std::process::ExitCode;

use clap::Parser as _;
use freedompay_recon::commands::{Cli, Command, StdoutClosed, execute};
use freedompay_recon::settings::Settings;
use freedompay_recon::{telemetry, text};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version, on stdout.
        Err(e) if !e.use_stderr() => e.exit(),
        // A usage error quotes the argument as given: escape what a terminal would act on
        // (`resolve $'\e]0;…\a'`).
        Err(e) => {
            eprint!("{}", text::for_terminal(&e.render().to_string()));
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {}", text::for_terminal(&e.to_string()));
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
            eprintln!("error: {}", text::for_terminal(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
