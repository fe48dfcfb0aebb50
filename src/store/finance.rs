//! SQL behind the finance commands: closing a flag by hand, asking for a re-poll, and
//! granting a read-only role.

use sqlx::PgPool;

use super::StoreError;
use crate::domain::{FlagKind, PaymentId};

/// Closes the open `kind` flag of a payment, recording who and why. Returns false when there
/// is no such open flag.
pub async fn resolve_flag(
    pool: &PgPool,
    payment_id: &PaymentId,
    kind: FlagKind,
    by: &str,
    note: &str,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "update recon.discrepancies
         set resolved_at = now(), resolved_by = $3, resolution = $4
         where payment_id = $1 and kind = $2 and resolved_at is null",
    )
    .bind(payment_id.as_str())
    .bind(kind.as_str())
    .bind(by)
    .bind(note)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Which payments to re-poll.
#[derive(Debug, Clone)]
pub enum Selection {
    Ids(Vec<PaymentId>),
    /// Payments with an open flag of this kind.
    Flag(FlagKind),
    /// Payments whose provider status is this (`no_answer`: none yet).
    Status(String),
}

/// Makes the selected payments due now, including ones whose polling had finished. Returns
/// the ids selected that are not tracked, and how many payments were scheduled.
pub async fn schedule_recheck(
    pool: &PgPool,
    selection: &Selection,
) -> Result<(u64, Vec<String>), StoreError> {
    let (ids, flag, status) = match selection {
        Selection::Ids(ids) => (
            Some(
                ids.iter()
                    .map(|id| id.as_str().to_owned())
                    .collect::<Vec<_>>(),
            ),
            None,
            None,
        ),
        Selection::Flag(kind) => (None, Some(kind.as_str()), None),
        Selection::Status(status) => (None, None, Some(status.as_str())),
    };
    let scheduled: Vec<String> = sqlx::query_scalar(
        "update recon.payments p set next_check_at = now(), recheck_requested_at = now()
         where ($1::text[] is null or p.payment_id = any($1))
           and ($2::text is null or exists (
                   select 1 from recon.discrepancies d
                   where d.payment_id = p.payment_id and d.kind = $2 and d.resolved_at is null))
           and ($3::text is null or coalesce(p.status, 'no_answer') = $3)
         returning payment_id",
    )
    .bind(&ids)
    .bind(flag)
    .bind(status)
    .fetch_all(pool)
    .await?;
    let missing = ids
        .unwrap_or_default()
        .into_iter()
        .filter(|id| !scheduled.contains(id))
        .collect();
    Ok((scheduled.len() as u64, missing))
}

/// The views a reader may query; nothing else in the schema is granted.
pub const READER_VIEWS: [&str; 5] = [
    "recon.reconciliation",
    "recon.open_discrepancies",
    "recon.daily_summary",
    "recon.status_history",
    "recon.discrepancy_history",
];

/// Gives an existing role read-only access to the finance views and nothing else: no table,
/// so no raw provider bodies, and no write.
pub async fn grant_reader(pool: &PgPool, role: &str) -> Result<bool, StoreError> {
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_roles where rolname = $1)")
            .bind(role)
            .fetch_one(pool)
            .await?;
    if !exists {
        return Ok(false);
    }
    let quoted = format!("\"{}\"", role.replace('"', "\"\""));
    let mut tx = pool.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "grant usage on schema recon to {quoted}"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "grant select on {} to {quoted}",
        READER_VIEWS.join(", ")
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
