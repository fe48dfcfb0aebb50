//! The tracing subscriber: plain text (no colours unless on a terminal, none under journald)
//! or JSON for log shippers. Logs go to stderr; command output goes to stdout.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG` overrides `log.filter`.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let colours = std::io::stderr().is_terminal() && !under_journald;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match settings.format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        // journald stamps every line itself.
        LogFormat::Text if under_journald => builder.with_ansi(false).without_time().try_init(),
        LogFormat::Text => builder.with_ansi(colours).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = installed;
}
