use std::process::ExitCode;

use crate::domain::{Lifetime, PaymentId, PollResult};
use crate::provider::{Classified, ProviderClient};
use crate::settings::Settings;

pub async fn check(settings: &Settings, payment_id: &str) -> anyhow::Result<ExitCode> {
    let payment_id = PaymentId::parse(payment_id)
        .map_err(|e| anyhow::anyhow!("payment id {payment_id:?}: {e}"))?;
    let provider = ProviderClient::new(&settings.provider)?;
    let fetched = provider.invoice_info(&payment_id).await;

    let http = fetched
        .http_status
        .map_or("no response".to_owned(), |s| format!("HTTP {s}"));
    println!("payment_id:   {payment_id}");
    println!("response:     {http} in {} ms", fetched.elapsed.as_millis());
    let code = match &fetched.classified {
        Classified::Answer(PollResult::Invoice(invoice)) => {
            let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            println!("status:       {}", invoice.status);
            println!(
                "amount:       {}",
                show(invoice.amount.map(|a| a.to_string()))
            );
            println!(
                "currency:     {}",
                show(invoice.currency.map(|c| c.to_string()))
            );
            println!("fee:          {}", show(invoice.fee.map(|a| a.to_string())));
            println!(
                "discount:     {}",
                show(invoice.discount.map(|a| a.to_string()))
            );
            println!("order_id:     {}", show(invoice.order_id.clone()));
            println!("freedom_id:   {}", show(invoice.freedom_id.clone()));
            println!("merchant_id:  {}", show(invoice.merchant_id.clone()));
            let lifetime = invoice.lifetime.map(|l| match l {
                Lifetime::Until(at) => at.to_rfc3339(),
                Lifetime::Seconds(s) => format!("{s} seconds from creation"),
            });
            println!("lifetime:     {}", show(lifetime));
            println!("dt:           {}", show(invoice.dt.map(|t| t.to_rfc3339())));
            ExitCode::SUCCESS
        }
        Classified::Answer(PollResult::NotFound) => {
            println!(
                "answer:       the provider does not know this payment id (credentials accepted)"
            );
            ExitCode::SUCCESS
        }
        Classified::Answer(PollResult::Rejected { code, description }) => {
            println!("answer:       provider error {code}: {description} (credentials accepted)");
            ExitCode::SUCCESS
        }
        Classified::Answer(PollResult::Failed { reason }) | Classified::Retryable(reason) => {
            println!("answer:       none usable, a retry may succeed: {reason}");
            ExitCode::FAILURE
        }
        Classified::RateLimited(pause) => {
            println!(
                "answer:       rate limited; retry after {}",
                humantime::format_duration(*pause)
            );
            ExitCode::FAILURE
        }
        Classified::Fatal(reason) => {
            println!("answer:       REJECTED: {reason}");
            ExitCode::FAILURE
        }
    };
    if let Some(raw) = &fetched.raw_body {
        println!("raw body:     {raw}");
    }
    Ok(code)
}
