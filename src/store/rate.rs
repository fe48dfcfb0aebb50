//! The request-rate budget shared by every instance (see the `rate_budget` migration).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::StoreError;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Reserves `slots` request slots `period` apart. Returns when the first slot is, and the
/// database's clock at the reservation (to translate to the local clock). Up to
/// `burst - 1` slots may lie in the recent past, which lets a burst go at once.
pub async fn reserve_slots(
    pool: &PgPool,
    slots: u32,
    period: Duration,
    burst: u32,
) -> Result<(DateTime<Utc>, DateTime<Utc>), StoreError> {
    let row = sqlx::query!(
        r#"with now as (select clock_timestamp() as at)
         update recon.rate_budget b
         set next_slot = greatest(b.next_slot, now.at - $3::int8 * $2::int8 * interval '1 microsecond')
                         + $1::int8 * $2::int8 * interval '1 microsecond'
         from now
         returning b.next_slot - $1::int8 * $2::int8 * interval '1 microsecond' as "first!", now.at as "db_now!""#,
        i64::from(slots),
        micros(period),
        i64::from(burst.saturating_sub(1)),
    )
    .fetch_one(pool)
    .await?;
    Ok((row.first, row.db_now))
}

/// Holds every instance off until `pause` from now (never shortens an earlier hold).
pub async fn hold_off(pool: &PgPool, pause: Duration) -> Result<(), StoreError> {
    sqlx::query!(
        "update recon.rate_budget
         set next_slot = greatest(next_slot, clock_timestamp() + $1::int8 * interval '1 microsecond')",
        micros(pause),
    )
    .execute(pool)
    .await?;
    Ok(())
}
