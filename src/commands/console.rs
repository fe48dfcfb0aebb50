//! `console`: read-only pages for finance in a browser (issue 28), on a reader role.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::settings::Settings;
use crate::store;

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Where to listen [default: console.listen]; port 0 picks a free port. The bound
    /// address is printed.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

pub async fn console(settings: &Settings, args: ConsoleArgs) -> anyhow::Result<ExitCode> {
    let pool = store::connect_to_schema(&settings.database).await?;
    if let Some(what) = store::console::can_write(&pool).await? {
        eprintln!(
            "error: the console reads with a role that can write nothing, and {}; connect as \
             a reader role (grant-reader ROLE, then database.url naming it)",
            crate::text::clean(&what, 300)
        );
        return Ok(ExitCode::FAILURE);
    }
    let address = args.listen.unwrap_or(settings.console.listen);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (console.listen)"))?;
    let bound = listener.local_addr()?;
    outln!("console on http://{bound}/")?;
    let shutdown = super::shutdown_on_signal()?;
    crate::http::listener::serve(
        listener,
        crate::http::console::router(crate::http::console::Console {
            pool,
            bank_currency: settings.bank.currency.clone(),
            locale: settings.console.locale,
        }),
        settings.http.limits(),
        shutdown,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
