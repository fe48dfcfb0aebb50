//! Verified Result-URL callbacks (migration `result_callbacks`): stored as received, matched
//! to their payment, and the payment made due at once.

use sqlx::PgPool;

use super::StoreError;
use crate::callbacks::Claim;

/// The channel a daemon listens on to sweep at once (a callback, a `recheck`).
pub const WAKE_CHANNEL: &str = "freedompay_recon_wake";

/// How a callback found its payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    /// `pg_payment_id` is a tracked payment's id.
    PaymentId,
    /// `pg_payment_id` is unknown; `pg_order_id` is exactly one tracked payment's order id.
    OrderId,
    /// Nobody tracked it: tracking started now, with an `untracked_payment` flag.
    Untracked,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentId => "payment_id",
            Self::OrderId => "order_id",
            Self::Untracked => "untracked",
        }
    }
}

/// What recording a callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The same callback was recorded before (a retry or a replay): nothing changed.
    Replay,
    /// A new callback, stored; its payment (if it names one the daemon can track) is due now.
    New {
        matched: Option<(String, MatchedBy)>,
    },
}

/// Records one verified callback in one transaction: stored as received (once per
/// fingerprint), matched by payment id then order id, tracked when nobody did (with an
/// `untracked_payment` flag), its payment made due now and urgent (kept due if a poll is under
/// way, as `recheck` does), and every daemon woken through `NOTIFY`. A replay changes nothing.
pub async fn record(
    pool: &PgPool,
    fields: &[(String, String)],
    fingerprint: &[u8; 32],
    claim: &Claim,
) -> Result<Recorded, StoreError> {
    let mut tx = pool.begin().await?;
    let seen = sqlx::query_scalar!(
        r#"select exists (select 1 from recon.callbacks where fingerprint = $1) as "seen!""#,
        &fingerprint[..],
    )
    .fetch_one(&mut *tx)
    .await?;
    if seen {
        return Ok(Recorded::Replay);
    }
    let mut matched: Option<(String, MatchedBy)> = None;
    if let Some(id) = &claim.payment_id {
        matched = sqlx::query_scalar!(
            "select payment_id from recon.payments where payment_id = $1 for no key update",
            id.as_str(),
        )
        .fetch_optional(&mut *tx)
        .await?
        .map(|id| (id, MatchedBy::PaymentId));
    }
    if matched.is_none()
        && let Some(order_id) = &claim.order_id
    {
        // Exactly one: an order id several payments share names none of them for sure.
        let ids = sqlx::query_scalar!(
            "select payment_id from recon.payments where order_id = $1 limit 2 for no key update",
            order_id,
        )
        .fetch_all(&mut *tx)
        .await?;
        if let [id] = ids.as_slice() {
            matched = Some((id.clone(), MatchedBy::OrderId));
        }
    }
    if matched.is_none()
        && let Some(id) = &claim.payment_id
    {
        matched = Some((
            track(&mut tx, id.as_str(), claim).await?,
            MatchedBy::Untracked,
        ));
    }
    if let Some((payment_id, _)) = &matched {
        sqlx::query!(
            "update recon.payments
             set next_check_at = now(), recheck_requested_at = now(), next_check_urgent = true,
                 parked_at = null
             where payment_id = $1",
            payment_id,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!("select pg_notify($1, '')", WAKE_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    let pairs: Vec<[&str; 2]> = fields
        .iter()
        .map(|(n, v)| [n.as_str(), v.as_str()])
        .collect();
    let inserted = sqlx::query_scalar!(
        "insert into recon.callbacks
             (fields, fingerprint, pg_payment_id, pg_order_id, claims_paid, amount, currency,
              payment_id, matched_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         on conflict (fingerprint) do nothing
         returning id",
        serde_json::json!(pairs),
        &fingerprint[..],
        claim.payment_id.as_ref().map(|id| id.as_str()),
        claim.order_id.as_deref(),
        claim.paid,
        claim.amount,
        claim.currency.as_deref(),
        matched.as_ref().map(|(id, _)| id.as_str()),
        matched.as_ref().map(|(_, by)| by.as_str()),
    )
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        // The same callback, recorded meanwhile by another request: undo ours.
        tx.rollback().await?;
        return Ok(Recorded::Replay);
    }
    tx.commit().await?;
    Ok(Recorded::New { matched })
}

/// Starts tracking a payment only a callback named (no expected amount: nobody said what to
/// expect) and opens its `untracked_payment` flag, saying what the callback claimed.
async fn track(
    tx: &mut sqlx::PgConnection,
    payment_id: &str,
    claim: &Claim,
) -> Result<String, StoreError> {
    sqlx::query!(
        "insert into recon.payments (payment_id, order_id) values ($1, $2)
         on conflict (payment_id) do nothing",
        payment_id,
        claim.order_id.as_deref(),
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "select 1 as one from recon.payments where payment_id = $1 for no key update",
        payment_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let outcome = match claim.paid {
        Some(true) => "paid",
        Some(false) => "failed",
        None => "an unreadable pg_result",
    };
    let amount = match (&claim.amount, &claim.currency) {
        (Some(amount), Some(currency)) => format!(" {amount} {currency}"),
        (Some(amount), None) => format!(" {amount}"),
        _ => String::new(),
    };
    let order = claim
        .order_id
        .as_deref()
        .map(|o| format!(", order {}", crate::text::clean(o, 64)))
        .unwrap_or_default();
    sqlx::query!(
        "insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         select $1, 'untracked_payment', 'a payment the merchant enqueued', $2, now()
         where not exists (select 1 from recon.open_flags
                           where payment_id = $1 and kind = 'untracked_payment')",
        payment_id,
        format!("a callback: {outcome}{amount}{order}"),
    )
    .execute(&mut *tx)
    .await?;
    Ok(payment_id.to_owned())
}
