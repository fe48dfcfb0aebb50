//! SQL behind `freedompay-recon bench`, which works on a scratch database of its own.

use sqlx::{PgConnection, PgPool};

use super::StoreError;

/// Creates the benchmark's scratch database. `name` is the benchmark's own (letters, digits
/// and `_`), never input; it is quoted all the same.
pub async fn create_scratch_database(
    admin: &mut PgConnection,
    name: &str,
) -> Result<(), StoreError> {
    let quoted = super::finance::quote_ident(name);
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {quoted}")))
        .execute(admin)
        .await?;
    Ok(())
}

/// Drops the scratch database, closing its connections.
pub async fn drop_scratch_database(admin: &mut PgConnection, name: &str) -> Result<(), StoreError> {
    let quoted = super::finance::quote_ident(name);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists {quoted} with (force)"
    )))
    .execute(admin)
    .await?;
    Ok(())
}

/// Empties the scratch database's payments and history (the schema refuses that unless the
/// session says it means it) and inserts `count` payments, `due` of them due now and the
/// rest in a day; then vacuums, so every phase starts from the same table.
pub async fn reset_payments(pool: &PgPool, count: u32, due: u32) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query!("select set_config('recon.allow_truncate', 'on', true)")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        "truncate recon.payments, recon.events, recon.transition_keys, recon.open_flags cascade",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query!(
        "insert into recon.payments (payment_id, next_check_at)
         select 'bench-' || g,
                case when g <= $2 then now() - interval '1 second' else now() + interval '1 day' end
         from generate_series(1, $1::int8) g",
        i64::from(count),
        i64::from(due),
    )
    .execute(pool)
    .await?;
    sqlx::query("vacuum analyze recon.payments")
        .execute(pool)
        .await?;
    Ok(())
}

/// Vacuums the payments table, so a claim sees it as a first claim would.
pub async fn vacuum_payments(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("vacuum recon.payments").execute(pool).await?;
    Ok(())
}

/// `(payments reconciled as success, status transitions)`.
pub async fn reconciled(pool: &PgPool) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query!(
        r#"select (select count(*) from recon.payments where status = 'success') as "success!",
                  (select count(*) from recon.status_transitions) as "transitions!""#
    )
    .fetch_one(pool)
    .await?;
    Ok((row.success, row.transitions))
}

/// `(payments answered, payments still leased)`.
pub async fn answered_and_leased(pool: &PgPool) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query!(
        r#"select count(*) filter (where status is not null) as "answered!",
                  count(*) filter (where lease_token is not null) as "leased!"
           from recon.payments"#
    )
    .fetch_one(pool)
    .await?;
    Ok((row.answered, row.leased))
}

/// `(events, events not yet delivered)`.
pub async fn event_delivery(pool: &PgPool) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query!(
        r#"select count(*) as "events!",
                  count(*) filter (where delivered_at is null) as "pending!"
           from recon.events"#
    )
    .fetch_one(pool)
    .await?;
    Ok((row.events, row.pending))
}

/// The claim's plan as it runs (analyzed, then rolled back) for `limit` rows.
pub async fn explain_claim(conn: &mut PgConnection, limit: u32) -> Result<String, StoreError> {
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "explain (analyze, buffers, costs off) {}",
        super::CLAIM_SQL
    )))
    .bind(None::<chrono::DateTime<chrono::Utc>>)
    .bind(i64::from(limit))
    .bind("bench")
    .bind(300_000_i64)
    .bind(0_i64)
    .fetch_all(conn)
    .await?;
    Ok(plan.join("\n"))
}
