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
    // The payment first, then its flag: the order the daemon's writes take them in, so the
    // two never wait on each other in a circle.
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "select 1 as locked from recon.payments where payment_id = $1 for no key update",
        payment_id.as_str(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    let result = sqlx::query!(
        "update recon.discrepancies
         set resolved_at = now(), resolved_by = $3, resolution = $4
         where payment_id = $1 and kind = $2 and resolved_at is null",
        payment_id.as_str(),
        kind.as_str(),
        by,
        note,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
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

/// Makes the selected payments due now, including ones whose polling had finished, and takes
/// parked ones back (after someone fixed the row). Returns the ids selected that are not
/// tracked, and how many payments were scheduled. A row whose id breaks the id rule (parked by
/// the migration that brought the rule) cannot be changed, so it is left out, not allowed to
/// fail the others.
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
    let scheduled: Vec<String> = sqlx::query_scalar!(
        "update recon.payments p
         set next_check_at = now(), recheck_requested_at = now(), parked_at = null,
             next_check_urgent = true
         where recon.text_problem(p.payment_id, 128) is null
           and ($1::text[] is null or p.payment_id = any($1))
           and ($2::text is null or exists (
                   select 1 from recon.discrepancies d
                   where d.payment_id = p.payment_id and d.kind = $2 and d.resolved_at is null))
           and ($3::text is null or coalesce(p.status, 'no_answer') = $3)
         returning payment_id",
        ids.as_deref(),
        flag,
        status,
    )
    .fetch_all(pool)
    .await?;
    let missing = ids
        .unwrap_or_default()
        .into_iter()
        .filter(|id| !scheduled.contains(id))
        .collect();
    Ok((scheduled.len() as u64, missing))
}

/// Whether any payment has this provider status.
pub async fn status_seen(pool: &PgPool, status: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select exists (select 1 from recon.payments where status = $1) as "seen!""#,
        status
    )
    .fetch_one(pool)
    .await?)
}

/// The views a reader may query; nothing else in the schema is granted.
pub const READER_VIEWS: [&str; 7] = [
    "recon.reconciliation",
    "recon.open_discrepancies",
    "recon.daily_summary",
    "recon.status_history",
    "recon.discrepancy_history",
    "recon.parked_payments",
    "recon.event_log",
];

/// A role's name as an SQL identifier, always quoted: safe to paste into SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What a role may do already, before any grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleReach {
    pub exists: bool,
    pub superuser: bool,
    /// A member of `pg_read_all_data` (PostgreSQL 14+): it reads every table.
    pub reads_all_data: bool,
    /// It may already read the payments table (its owner, or granted).
    pub reads_tables: bool,
}

pub async fn role_reach(pool: &PgPool, role: &str) -> Result<RoleReach, StoreError> {
    Ok(sqlx::query_as!(
        RoleReach,
        r#"select r.oid is not null as "exists!",
                coalesce(r.rolsuper, false) as "superuser!",
                coalesce(pg_has_role(r.oid, 'pg_read_all_data', 'member'), false)
                    as "reads_all_data!",
                coalesce(has_table_privilege(r.oid, 'recon.payments', 'select'), false)
                    as "reads_tables!"
         from (select 1) one
         left join pg_roles r on r.rolname = $1"#,
        role
    )
    .fetch_one(pool)
    .await?)
}

/// Gives an existing role read-only access to the finance views: no table, so no raw
/// provider bodies, and no write. Check [`role_reach`] first: a role that can already read
/// everything is not limited by this.
pub async fn grant_reader(pool: &PgPool, role: &str) -> Result<(), StoreError> {
    let quoted = quote_ident(role);
    let mut tx = pool.begin().await?;
    for statement in [
        format!("grant usage on schema recon to {quoted}"),
        format!("grant select on {} to {quoted}", READER_VIEWS.join(", ")),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The grants a role needs to run the daemon and the intake and finance commands (not
/// `migrate`), on the schema as migrated. Run by the migrating role, which owns the schema;
/// the database-level `CONNECT` and `TEMPORARY` (for `import`) are the database owner's to
/// grant and PostgreSQL gives them to everyone by default.
pub fn daemon_grants(role: &str) -> Vec<String> {
    let role = quote_ident(role);
    vec![
        format!("grant usage on schema recon to {role}"),
        format!("grant select on recon._sqlx_migrations to {role}"),
        format!("grant select, insert, update on recon.payments to {role}"),
        format!("grant select, insert on recon.status_transitions to {role}"),
        format!(
            "grant select, insert, update (resolved_at, resolved_by, resolution) \
             on recon.discrepancies to {role}"
        ),
        format!("grant select, update on recon.rate_budget to {role}"),
        // Events are written by triggers, as the role making the change; delivery updates
        // only the delivery columns.
        format!("grant select, insert on recon.events to {role}"),
        format!(
            "grant update (delivered_at, abandoned_at, skipped_at, attempts, first_attempt_at, \
             last_error, next_attempt_at, \
             lease_owner, lease_expires_at) on recon.events to {role}"
        ),
        format!("grant usage on sequence recon.lease_tokens to {role}"),
        format!("grant select on {} to {role}", READER_VIEWS.join(", ")),
    ]
}

/// Applies [`daemon_grants`] in one transaction.
pub async fn grant_daemon(pool: &PgPool, role: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for statement in daemon_grants(role) {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
