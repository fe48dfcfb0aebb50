//! Intake: start tracking a payment. Idempotent: the same payment enqueued twice changes
//! nothing, and different values for a known id are reported, never overwritten.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;

use super::StoreError;
use crate::domain::{ExpectedValues, PaymentId};

/// A payment to track, as a caller describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPayment {
    pub payment_id: PaymentId,
    pub expected: ExpectedValues,
    /// When the payment was created; `now()` when not given.
    pub created_at: Option<DateTime<Utc>>,
    /// The merchant's own expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

impl NewPayment {
    pub fn new(payment_id: PaymentId) -> Self {
        Self {
            payment_id,
            expected: ExpectedValues::default(),
            created_at: None,
            expires_at: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Created,
    /// Already tracked with the same values: nothing changed.
    AlreadyTracked,
    /// Already tracked with different values; the stored ones were kept. Each entry names a
    /// column with the stored and the offered value.
    Conflict(Vec<String>),
}

struct Stored {
    expected_amount: Option<Decimal>,
    expected_currency: Option<String>,
    order_id: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

pub async fn enqueue(
    conn: &mut PgConnection,
    payment: &NewPayment,
) -> Result<EnqueueOutcome, StoreError> {
    let inserted = sqlx::query_scalar!(
        "insert into recon.payments
             (payment_id, expected_amount, expected_currency, order_id, created_at, expires_at)
         values ($1, $2, $3, $4, coalesce($5, now()), $6)
         on conflict (payment_id) do nothing
         returning payment_id",
        payment.payment_id.as_str(),
        payment.expected.amount,
        payment.expected.currency.map(|c| c.to_string()),
        payment.expected.order_id.as_deref(),
        payment.created_at,
        payment.expires_at,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_some() {
        return Ok(EnqueueOutcome::Created);
    }

    let stored = sqlx::query_as!(
        Stored,
        "select expected_amount, expected_currency, order_id, created_at, expires_at
         from recon.payments where payment_id = $1",
        payment.payment_id.as_str(),
    )
    .fetch_one(&mut *conn)
    .await?;
    let differences = differences(&stored, payment);
    Ok(if differences.is_empty() {
        EnqueueOutcome::AlreadyTracked
    } else {
        EnqueueOutcome::Conflict(differences)
    })
}

/// The values given that differ from what is stored. A value left out claims nothing, so it
/// never conflicts (`enqueue X --amount 5000` after `enqueue X --amount 5000 --currency KZT`
/// is the same payment).
fn differences(stored: &Stored, offered: &NewPayment) -> Vec<String> {
    fn show<T: ToString>(value: &Option<T>) -> String {
        value.as_ref().map_or("(none)".into(), T::to_string)
    }
    let mut out = Vec::new();
    let expected = &offered.expected;
    if expected.amount.is_some() && stored.expected_amount != expected.amount {
        out.push(format!(
            "expected_amount: stored {}, offered {}",
            show(&stored.expected_amount),
            show(&expected.amount)
        ));
    }
    let offered_currency = expected.currency.map(|c| c.to_string());
    if offered_currency.is_some() && stored.expected_currency != offered_currency {
        out.push(format!(
            "expected_currency: stored {}, offered {}",
            show(&stored.expected_currency),
            show(&offered_currency)
        ));
    }
    if expected.order_id.is_some() && stored.order_id != expected.order_id {
        out.push(format!(
            "order_id: stored {}, offered {}",
            show(&stored.order_id),
            show(&expected.order_id)
        ));
    }
    if let Some(created_at) = offered.created_at.filter(|c| *c != stored.created_at) {
        out.push(format!(
            "created_at: stored {}, offered {}",
            stored.created_at.to_rfc3339(),
            created_at.to_rfc3339()
        ));
    }
    if offered.expires_at.is_some() && stored.expires_at != offered.expires_at {
        out.push(format!(
            "expires_at: stored {}, offered {}",
            show(&stored.expires_at.map(|t| t.to_rfc3339())),
            show(&offered.expires_at.map(|t| t.to_rfc3339()))
        ));
    }
    out
}
