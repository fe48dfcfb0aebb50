//! Verified Result-URL callbacks (migrations `result_callbacks`, `callbacks_as_claimed`):
//! stored as received, once per claim, matched to their payment, and the payment made due at
//! once; a payment nobody tracked is tracked, at most `callbacks.max_untracked_per_hour` an
//! hour.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::StoreError;
use crate::callbacks::{Claim, Field};
use crate::domain::{CallbackArrival, NewFlag, callback_flags};

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

/// A verified callback, as received and as read.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The query string, as received (`None`: the URL had none).
    pub raw_query: Option<&'a [u8]>,
    /// The body, as received (empty for a GET).
    pub raw_body: &'a [u8],
    pub fields: &'a [Field],
    pub claim: &'a Claim,
}

/// What recording a callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The same claim was recorded before (a retry or a replay): nothing changed.
    Replay,
    /// A new callback, stored as `recon.callbacks` row `id`; its payment (if it names one the
    /// daemon can track) is due now.
    New {
        id: i64,
        matched: Option<(String, MatchedBy)>,
    },
    /// It names a payment nobody tracks, and callbacks started tracking
    /// `callbacks.max_untracked_per_hour` payments in the last hour: nothing was written.
    /// `until` is when the next may start (`None` when the cap is 0: never).
    Capped { until: Option<DateTime<Utc>> },
}

/// Records one verified callback in one transaction: stored as received (once per claim:
/// [`Claim::fingerprint`]), matched by payment id then order id, tracked when nobody did (with
/// an `untracked_payment` flag; at most `max_untracked_per_hour` an hour, else
/// [`Recorded::Capped`] and nothing written), its payment made due now and urgent (kept due if
/// a poll is under way, as `recheck` does), the time a paid claim says it was paid kept as its
/// `provider_paid_at` (the first such claim's), a `callback_unreadable` flag opened on it when
/// the claim could not be read whole, and every daemon woken through `NOTIFY`. A replay changes
/// nothing.
pub async fn record(
    pool: &PgPool,
    received: Received<'_>,
    max_untracked_per_hour: u32,
) -> Result<Recorded, StoreError> {
    let claim = received.claim;
    let fingerprint = &claim.fingerprint[..];
    let mut tx = pool.begin().await?;
    let seen = sqlx::query_scalar!(
        r#"select exists (select 1 from recon.callbacks where fingerprint = $1) as "seen!""#,
        fingerprint,
    )
    .fetch_one(&mut *tx)
    .await?;
    if seen {
        return Ok(Recorded::Replay);
    }
    let mut matched: Option<(String, MatchedBy)> = None;
    if let Some(id) = &claim.payment_id {
        matched = locked_payment(&mut tx, id.as_str())
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
        // One writer at a time counts and starts: the count below sees every payment started
        // by a transaction that held this lock before (each statement reads what was committed
        // when it began), so concurrent callbacks cannot all pass the same count.
        sqlx::query!(
            "select pg_advisory_xact_lock(hashtext('freedompay-recon untracked callbacks'))"
        )
        .execute(&mut *tx)
        .await?;
        // Started meanwhile by a callback that held the lock: matched, not started twice.
        matched = locked_payment(&mut tx, id.as_str())
            .await?
            .map(|id| (id, MatchedBy::PaymentId));
        if matched.is_none() {
            if let Some(until) = untracked_capped(&mut tx, max_untracked_per_hour).await? {
                tx.rollback().await?;
                return Ok(Recorded::Capped { until });
            }
            matched = Some((
                track(&mut tx, id.as_str(), claim).await?,
                MatchedBy::Untracked,
            ));
        }
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
    let inserted = sqlx::query_scalar!(
        "insert into recon.callbacks
             (fields, fingerprint, pg_payment_id, pg_order_id, claims_paid, amount, currency,
              payment_id, matched_by, raw_query, raw_body, problem, paid_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         on conflict (fingerprint) do nothing
         returning id",
        crate::callbacks::fields_json(received.fields),
        fingerprint,
        claim.payment_id.as_ref().map(|id| id.as_str()),
        claim.order_id.as_deref(),
        claim.paid,
        claim.amount,
        claim.currency.as_deref(),
        matched.as_ref().map(|(id, _)| id.as_str()),
        matched.as_ref().map(|(_, by)| by.as_str()),
        received.raw_query,
        received.raw_body,
        claim.problem.as_deref(),
        claim.paid_at,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = inserted else {
        // The same claim, recorded meanwhile by another request: undo ours.
        tx.rollback().await?;
        return Ok(Recorded::Replay);
    };
    if let (Some(paid_at), Some((payment_id, _))) = (claim.paid_at, &matched) {
        keep_provider_paid_at(&mut tx, payment_id, paid_at, id).await?;
    }
    if let Some((payment_id, by)) = &matched {
        let order_id = claim.order_id.as_deref().map(|o| crate::text::clean(o, 64));
        let arrival = CallbackArrival {
            callback_id: id,
            started_tracking: *by == MatchedBy::Untracked,
            paid: claim.paid,
            amount: claim.amount,
            currency: claim.currency.as_deref(),
            order_id: order_id.as_deref(),
            problem: claim.problem.as_deref(),
        };
        for flag in callback_flags(&arrival) {
            open_flag_once(&mut tx, payment_id, &flag).await?;
        }
    }
    tx.commit().await?;
    Ok(Recorded::New { id, matched })
}

/// Keeps the time a verified paid callback says the payment was paid as the payment's
/// `provider_paid_at`, when none is kept yet: the first such callback's, never overwritten.
/// The provider's payment happens once, and the first verified word of it is what the
/// merchant's systems acted on; a later callback stating another time keeps it in its own
/// row (`recon.callbacks.paid_at`), the evidence a person compares. What the provider said,
/// not a verdict: the status still comes from the signed poll, which the view shows it
/// beside (only once that poll says `success`).
///
/// Issue 26 (the status API's payment time) is meant to be the authority: it would replace a
/// callback's time here, setting `provider_paid_callback_id` to null, rather than this
/// function's "first one wins".
async fn keep_provider_paid_at(
    tx: &mut sqlx::PgConnection,
    payment_id: &str,
    paid_at: DateTime<Utc>,
    callback_id: i64,
) -> Result<(), StoreError> {
    sqlx::query!(
        "update recon.payments
         set provider_paid_at = $2, provider_paid_callback_id = $3
         where payment_id = $1 and provider_paid_at is null",
        payment_id,
        paid_at,
        callback_id,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// `payment_id`, locked for this transaction, when it is tracked.
async fn locked_payment(
    tx: &mut sqlx::PgConnection,
    payment_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar!(
        "select payment_id from recon.payments where payment_id = $1 for no key update",
        payment_id,
    )
    .fetch_optional(&mut *tx)
    .await?)
}

/// `Some(until)` when callbacks started `cap` payments or more in the last hour: `until` is when
/// the `cap`-th newest of them leaves the hour, so the count is below `cap` again (`None`:
/// never, the cap is 0). `None` when another may start now.
async fn untracked_capped(
    tx: &mut sqlx::PgConnection,
    cap: u32,
) -> Result<Option<Option<DateTime<Utc>>>, StoreError> {
    if cap == 0 {
        return Ok(Some(None));
    }
    let until = sqlx::query_scalar!(
        r#"select received_at + interval '1 hour' as "until!"
           from recon.callbacks
           where matched_by = 'untracked' and received_at > now() - interval '1 hour'
           order by received_at desc
           offset $1 limit 1"#,
        i64::from(cap) - 1,
    )
    .fetch_optional(&mut *tx)
    .await?;
    Ok(until.map(Some))
}

/// Starts tracking a payment only a callback named (no expected amount: nobody said what to
/// expect); its `untracked_payment` flag follows from [`callback_flags`].
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
    Ok(payment_id.to_owned())
}

/// Opens `flag` on the payment (locked by the caller) unless one of its kind is open.
async fn open_flag_once(
    tx: &mut sqlx::PgConnection,
    payment_id: &str,
    flag: &NewFlag,
) -> Result<(), StoreError> {
    sqlx::query!(
        "insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         select $1, $2, $3, $4, now()
         where not exists (select 1 from recon.open_flags
                           where payment_id = $1 and kind = $2)",
        payment_id,
        flag.kind.as_str(),
        flag.expected.as_deref(),
        flag.actual.as_deref(),
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
