use std::io::Write as _;
use std::process::ExitCode;

use crate::domain::{Lifetime, PaymentId, PollResult};
use crate::provider::{Classified, ProviderClient};
use crate::settings::Settings;
use crate::text::escape_invisible;

pub async fn check(settings: &Settings, payment_id: &str) -> anyhow::Result<ExitCode> {
    let payment_id = PaymentId::from_input(payment_id)
        .map_err(|e| anyhow::anyhow!("payment id {}: {e}", crate::text::excerpt(payment_id)))?;
    let provider = ProviderClient::new(&settings.provider)?;
    let fetched = provider.invoice_info(&payment_id).await;

    // Everything the provider said goes through `escape_invisible`: its text never reaches
    // the terminal with control characters (escape sequences, carriage returns) in it.
    let mut lines: Vec<(&str, String)> = Vec::new();
    let http = fetched
        .http_status
        .map_or("no response".to_owned(), |s| format!("HTTP {s}"));
    lines.push(("payment_id", payment_id.to_string()));
    lines.push((
        "response",
        format!("{http} in {} ms", fetched.elapsed.as_millis()),
    ));
    lines.push(("request_id", fetched.request_id.to_string()));
    let code = match &fetched.classified {
        Classified::Answer(PollResult::Invoice(invoice)) => {
            let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            lines.push(("status", invoice.status.to_string()));
            lines.push(("amount", show(invoice.amount.map(|a| a.to_string()))));
            lines.push(("currency", show(invoice.currency.map(|c| c.to_string()))));
            lines.push(("fee", show(invoice.fee.map(|a| a.to_string()))));
            lines.push(("discount", show(invoice.discount.map(|a| a.to_string()))));
            lines.push(("order_id", show(invoice.order_id.clone())));
            lines.push(("freedom_id", show(invoice.freedom_id.clone())));
            lines.push(("merchant_id", show(invoice.merchant_id.clone())));
            let lifetime = invoice.lifetime.map(|l| match l {
                Lifetime::Until(at) => at.to_rfc3339(),
                Lifetime::Seconds(s) => format!("{s} seconds from creation"),
            });
            lines.push(("lifetime", show(lifetime)));
            lines.push(("dt", show(invoice.dt.map(|t| t.to_rfc3339()))));
            ExitCode::SUCCESS
        }
        Classified::Answer(PollResult::NotFound) => {
            lines.push((
                "answer",
                "the provider does not know this payment id (credentials accepted)".into(),
            ));
            ExitCode::SUCCESS
        }
        Classified::Answer(PollResult::Rejected { code, description }) => {
            lines.push((
                "answer",
                format!("provider error {code}: {description} (credentials accepted)"),
            ));
            ExitCode::SUCCESS
        }
        Classified::CredentialsDoubt { code, description } => {
            lines.push((
                "answer",
                format!(
                    "provider error {code}: {description}; this reads like a credentials \
                     failure: check provider.auth_id, provider.secret and provider.params \
                     (a card or 3-D Secure error about this one payment reads the same way)"
                ),
            ));
            ExitCode::FAILURE
        }
        Classified::Answer(PollResult::Failed { reason }) | Classified::Retryable(reason) => {
            lines.push((
                "answer",
                format!("none usable, a retry may succeed: {reason}"),
            ));
            ExitCode::FAILURE
        }
        Classified::RateLimited(pause) => {
            lines.push((
                "answer",
                format!(
                    "rate limited; retry after {}",
                    humantime::format_duration(*pause)
                ),
            ));
            ExitCode::FAILURE
        }
        Classified::Fatal(reason) => {
            lines.push(("answer", format!("REJECTED: {reason}")));
            ExitCode::FAILURE
        }
    };
    if let Some(raw) = fetched
        .raw_body
        .as_ref()
        .or(fetched.unreadable_body.as_ref())
    {
        lines.push(("raw body", raw.clone()));
    }
    let mut out = std::io::stdout().lock();
    for (label, value) in lines {
        let label = format!("{label}:");
        writeln!(out, "{label:<13} {}", escape_invisible(&value)).map_err(super::stdout_error)?;
    }
    out.flush().map_err(super::stdout_error)?;
    Ok(code)
}
