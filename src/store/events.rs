//! The outbox's delivery side: claiming the events a webhook should send next, and recording
//! how each attempt went. (Events themselves are written by the database's triggers, in the
//! transaction of the change they describe: see migration `events_outbox`.)
//!
//! Only the first undelivered event of a payment is ever claimed, so a payment's events reach
//! the receiver in id order; a claim is a lease, so instances never send the same event at
//! once, and a crashed instance's claims come back when their lease runs out (the event is
//! then sent again: delivery is at least once).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::{StoreError, millis};

/// An event claimed for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub id: i64,
    pub event_type: String,
    pub payment_id: String,
    pub occurred_at: DateTime<Utc>,
    pub payload: Value,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

/// Marks skipped the undelivered events whose type the webhook does not send (up to
/// `limit`, oldest first), so they neither wait forever nor hold up a payment's later
/// events. Returns how many.
pub async fn skip_unwanted(pool: &PgPool, types: &[String], limit: u32) -> Result<u64, StoreError> {
    let result = sqlx::query!(
        "update recon.events set skipped_at = now()
         where id in (select id from recon.events
                      where delivered_at is null and abandoned_at is null and skipped_at is null
                        and type <> all($1::text[])
                      order by id
                      limit $2::int8
                      for update skip locked)",
        types,
        i64::from(limit),
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// Claims up to `limit` events due for delivery: of the `types` wanted, each the first
/// undelivered one of its payment, oldest first, not held by a live lease. `owner` names this
/// claim and no other (it carries a fresh UUID), so [`record_attempts`] only records attempts it made.
pub async fn claim_undelivered(
    pool: &PgPool,
    owner: &str,
    limit: u32,
    lease: Duration,
    types: &[String],
) -> Result<Vec<Outgoing>, StoreError> {
    let rows = sqlx::query!(
        r#"with due as (
             select e.id from recon.events e
             where e.delivered_at is null and e.abandoned_at is null and e.skipped_at is null
               and e.type = any($3::text[])
               and e.next_attempt_at <= now()
               and (e.lease_expires_at is null or e.lease_expires_at <= now())
               -- the first undelivered event of its payment; a correlated subquery, so it
               -- is always one index lookup per candidate, whatever the statistics say
               and e.id = (
                   select min(earlier.id) from recon.events earlier
                   where earlier.payment_id = e.payment_id
                     and earlier.delivered_at is null and earlier.abandoned_at is null
                     and earlier.skipped_at is null)
             order by e.id
             limit $1::int8
             for update of e skip locked
         )
         update recon.events e
         set lease_owner = $2, lease_expires_at = now() + $4::int8 * interval '1 millisecond',
             attempts = e.attempts + 1,
             first_attempt_at = coalesce(e.first_attempt_at, now())
         from due where e.id = due.id
         returning e.id, e.type, e.payment_id, e.occurred_at, e.payload, e.attempts"#,
        i64::from(limit),
        owner,
        types,
        millis(lease),
    )
    .fetch_all(pool)
    .await?;
    let mut events: Vec<Outgoing> = rows
        .into_iter()
        .map(|r| Outgoing {
            id: r.id,
            event_type: r.r#type,
            payment_id: r.payment_id,
            occurred_at: r.occurred_at,
            payload: r.payload,
            attempts: r.attempts,
        })
        .collect();
    events.sort_by_key(|e| e.id);
    Ok(events)
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered,
    /// Anything else: why, and when to try again (unless the event is past `max_age`).
    Failed { error: String, retry_in: Duration },
}

/// What [`record_attempts`] recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryTally {
    pub delivered: u64,
    pub failed: u64,
    /// Failed, `max_age` after its first attempt: given up.
    pub abandoned: u64,
}

/// Records attempts made under `owner`'s claim, in one statement; an attempt whose lease was
/// taken over meanwhile is not recorded (the other instance's attempt counts).
pub async fn record_attempts(
    pool: &PgPool,
    owner: &str,
    attempts: &[(i64, Attempt)],
    max_age: Duration,
) -> Result<DeliveryTally, StoreError> {
    let mut ids = Vec::with_capacity(attempts.len());
    let mut ok = Vec::with_capacity(attempts.len());
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(attempts.len());
    let mut retry_ms = Vec::with_capacity(attempts.len());
    for (id, attempt) in attempts {
        ids.push(*id);
        match attempt {
            Attempt::Delivered => {
                ok.push(true);
                errors.push(None);
                retry_ms.push(0);
            }
            Attempt::Failed { error, retry_in } => {
                ok.push(false);
                errors.push(Some(error.as_str()));
                retry_ms.push(millis(*retry_in));
            }
        }
    }
    let rows = sqlx::query!(
        r#"update recon.events e set
             delivered_at = case when r.ok then now() end,
             abandoned_at = case when not r.ok
                                      and coalesce(e.first_attempt_at, e.created_at)
                                          + $6::int8 * interval '1 millisecond' <= now()
                                 then now() end,
             last_error = case when r.ok then e.last_error else r.error end,
             next_attempt_at = case when r.ok then e.next_attempt_at
                                    else now() + r.retry_ms * interval '1 millisecond' end,
             lease_owner = null,
             lease_expires_at = null
         from unnest($1::int8[], $2::bool[], $3::text[], $4::int8[])
              as r(id, ok, error, retry_ms)
         where e.id = r.id and e.lease_owner = $5
         returning e.delivered_at is not null as "delivered!",
                   e.abandoned_at is not null as "abandoned!""#,
        &ids,
        &ok,
        &errors as &[Option<&str>],
        &retry_ms,
        owner,
        millis(max_age),
    )
    .fetch_all(pool)
    .await?;
    let mut tally = DeliveryTally::default();
    for row in rows {
        match (row.delivered, row.abandoned) {
            (true, _) => tally.delivered += 1,
            (false, true) => tally.abandoned += 1,
            (false, false) => tally.failed += 1,
        }
    }
    Ok(tally)
}

/// Gives back claims not attempted (shutdown): due again at once.
pub async fn release(pool: &PgPool, owner: &str, ids: &[i64]) -> Result<(), StoreError> {
    sqlx::query!(
        "update recon.events
         set lease_owner = null, lease_expires_at = null, attempts = attempts - 1
         where id = any($1) and lease_owner = $2",
        ids,
        owner,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The delivery gauges: undelivered events of the wanted types, how long the oldest has
/// waited (seconds; 0 when none), and events abandoned in all.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    pub pending: i64,
    pub oldest_pending_age_seconds: f64,
    pub abandoned: i64,
}

pub async fn backlog(pool: &PgPool, types: &[String]) -> Result<Backlog, StoreError> {
    // Ages are seconds for a gauge, never money: float8 is right here.
    let row = sqlx::query!(
        r#"select count(*) as "pending!",
                  coalesce(extract(epoch from now() - min(created_at))::float8, 0) as "oldest!",
                  (select count(*) from recon.events where abandoned_at is not null)
                      as "abandoned!"
           from recon.events
           where delivered_at is null and abandoned_at is null and skipped_at is null and type = any($1::text[])"#,
        types,
    )
    .fetch_one(pool)
    .await?;
    Ok(Backlog {
        pending: row.pending,
        oldest_pending_age_seconds: row.oldest,
        abandoned: row.abandoned,
    })
}
