use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use rust_decimal::Decimal;

use crate::domain::{Currency, ExpectedValues, PaymentId};
use crate::intake::intake_timestamp;
use crate::settings::Settings;
use crate::store::{self, EnqueueOutcome, NewPayment};

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The payment id in Freedom Pay's system.
    #[arg(value_parser = parse_payment_id)]
    pub payment_id: PaymentId,
    /// The amount the merchant expects, a decimal with a dot (e.g. 5000.00).
    // A negative number is taken as the value, so that `--amount -5` meets our own "is
    // negative"; clap would call it an unexpected argument and suggest `-- -5`, which makes
    // it a second payment id. Only numbers: `--amount --currency KZT` still says the amount
    // is missing.
    #[arg(long, value_name = "D", value_parser = parse_amount, allow_negative_numbers = true)]
    pub amount: Option<Decimal>,
    /// The expected currency, ISO 4217 (e.g. KZT).
    #[arg(long, value_name = "C", value_parser = parse_currency)]
    pub currency: Option<Currency>,
    /// The merchant's order id, compared with the provider's orderId (empty: none).
    #[arg(long, value_name = "O", value_parser = parse_order_id)]
    pub order_id: Option<String>,
    /// The merchant's own expiry: RFC 3339 (2025-07-11T12:00:00Z) or YYYY-MM-DD HH:MM:SS in
    /// provider.naive_utc_offset (Almaty time), as in `import`.
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
    /// When the payment was created, as --expires-at [default: now]. An integer provider
    /// lifetime counts from here.
    #[arg(long, value_name = "TIME")]
    pub created_at: Option<String>,
}

/// Every intake path reads an id the same way: see [`PaymentId::from_input`].
pub fn parse_payment_id(raw: &str) -> Result<PaymentId, String> {
    PaymentId::from_input(raw).map_err(|e| e.to_string())
}

/// Trimmed and checked; empty means "no order id" (see `enqueue`).
pub fn parse_order_id(raw: &str) -> Result<String, String> {
    crate::domain::optional_text(raw, crate::domain::ORDER_ID_MAX_LEN)
        .map(Option::unwrap_or_default)
        .map_err(|e| format!("order id {e}"))
}

pub fn parse_amount(raw: &str) -> Result<Decimal, String> {
    crate::domain::parse_amount(raw).map_err(|e| e.to_string())
}

pub fn parse_currency(raw: &str) -> Result<Currency, String> {
    raw.parse::<Currency>().map_err(|e| e.to_string())
}

pub async fn enqueue(settings: &Settings, args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    // One time grammar for every intake path; the zone of a naive time is a setting, so the
    // times are read here rather than by the argument parser. A bad one is a bad argument.
    let offset = settings.provider.naive_offset()?;
    let time = |flag: &str, raw: Option<String>| -> Result<Option<DateTime<Utc>>, String> {
        raw.map(|raw| intake_timestamp(&raw, offset).map_err(|e| format!("{flag}: {e}")))
            .transpose()
    };
    let (expires_at, created_at) = match (
        time("--expires-at", args.expires_at),
        time("--created-at", args.created_at),
    ) {
        (Ok(expires_at), Ok(created_at)) => (expires_at, created_at),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let payment = NewPayment {
        payment_id: args.payment_id,
        expected: ExpectedValues {
            amount: args.amount,
            currency: args.currency,
            // An empty --order-id "" is no order id: stored as NULL, never as ''.
            order_id: args.order_id.filter(|o| !o.is_empty()),
        },
        created_at,
        expires_at,
    };
    let pool = store::connect_to_schema(&settings.database).await?;
    let mut conn = pool
        .acquire()
        .await
        .context("could not get a database connection")?;
    let outcome = store::enqueue(&mut conn, &payment)
        .await
        .with_context(|| format!("could not enqueue payment {}", payment.payment_id))?;
    let id = &payment.payment_id;
    Ok(match outcome {
        EnqueueOutcome::Created => {
            outln!("enqueued payment {id}")?;
            ExitCode::SUCCESS
        }
        EnqueueOutcome::AlreadyTracked => {
            outln!("payment {id} is already tracked with the same values; nothing changed")?;
            ExitCode::SUCCESS
        }
        EnqueueOutcome::Conflict(differences) => {
            eprintln!(
                "error: payment {id} is already tracked with different values, kept as stored: {}",
                differences.join("; ")
            );
            ExitCode::FAILURE
        }
    })
}
