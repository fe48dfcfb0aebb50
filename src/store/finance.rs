//! SQL behind the finance commands: closing a flag by hand, asking for a re-poll, and
//! granting a read-only role.

use chrono::NaiveDate;
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
    lock_payments(&mut tx, &[payment_id.as_str()]).await?;
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

/// Locks the payments (in id order) before their flags change: the order the daemon's writes
/// take them in, so the two never wait on each other in a circle. Through
/// `recon.lock_payments`, so a role that may resolve flags needs no write on payments.
async fn lock_payments(conn: &mut sqlx::PgConnection, ids: &[&str]) -> Result<(), StoreError> {
    sqlx::query!("select recon.lock_payments($1)", ids as &[&str])
        .execute(conn)
        .await?;
    Ok(())
}

/// Which open flags `resolve --all` closes.
#[derive(Debug, Clone)]
pub struct FlagSelection {
    pub kind: FlagKind,
    /// The payment's provider status (`no_answer`: none yet).
    pub status: Option<String>,
    /// First and last reporting day the flag was opened, inclusive.
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Closes every open flag `selection` matches, in one transaction, recording who and why;
/// with `dry_run`, only counts them. Returns how many it closed (or would close).
pub async fn resolve_selected(
    pool: &PgPool,
    selection: &FlagSelection,
    by: &str,
    note: &str,
    dry_run: bool,
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    // The payments first, in one order, then their flags (as `resolve_flag`); the selection
    // is read again once they are locked, so it is the one the update applies to.
    let candidates = selected_payments(&mut tx, selection).await?;
    lock_payments(
        &mut tx,
        &candidates.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await?;
    let ids = selected_payments(&mut tx, selection).await?;
    if dry_run {
        tx.rollback().await?;
        return Ok(ids.len() as u64);
    }
    let result = sqlx::query!(
        "update recon.discrepancies
         set resolved_at = now(), resolved_by = $4, resolution = $5
         where payment_id = any($1) and kind = $2 and resolved_at is null
           and detected_at >= coalesce(recon.day_start($3::date), '-infinity')
           and detected_at < coalesce(recon.day_start($6::date + 1), 'infinity')",
        &ids,
        selection.kind.as_str(),
        selection.from,
        by,
        note,
        selection.to,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(result.rows_affected())
}

/// The payments with an open flag `selection` matches, in id order.
async fn selected_payments(
    conn: &mut sqlx::PgConnection,
    selection: &FlagSelection,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select p.payment_id as "payment_id!"
           from recon.payments p
           where p.payment_id in (
                   select d.payment_id from recon.discrepancies d
                   where d.kind = $1 and d.resolved_at is null
                     and d.detected_at >= coalesce(recon.day_start($3::date), '-infinity')
                     and d.detected_at < coalesce(recon.day_start($4::date + 1), 'infinity'))
             and ($2::text is null or coalesce(p.status, 'no_answer') = $2)
           order by p.payment_id"#,
        selection.kind.as_str(),
        selection.status.as_deref(),
        selection.from,
        selection.to,
    )
    .fetch_all(conn)
    .await?)
}

/// One row of a list of flags to close (`resolve --from-csv`): the flag and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The row's line in its file.
    pub line: u64,
    pub payment_id: PaymentId,
    pub kind: FlagKind,
    /// The flag's id, when the list names it.
    pub flag_id: Option<i64>,
    pub note: String,
}

/// What closing a list of flags did, by line of the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedOutcome {
    /// Lines whose flag this closed.
    pub closed: Vec<u64>,
    /// Lines whose flag was already closed: `(line, resolved_by)`; nothing changed.
    pub already_closed: Vec<(u64, String)>,
    /// Lines that name no flag at all (no such payment, kind or flag id): nothing was
    /// written.
    pub unknown: Vec<u64>,
    /// `(line, earlier line)`: lines naming a flag an earlier line names too (with and without
    /// its flag id, say): nothing was written, since only one note could be kept.
    pub repeated: Vec<(u64, u64)>,
}

/// Closes the flags `rows` list, with each row's note, in one transaction. A row names its
/// flag by flag id when it has one; else it names the payment's flag of that kind that `by`
/// already closed with this same note (the list is being run again), else its open one, else
/// its latest. When any row names no flag, or two rows the same flag, nothing is written. A
/// flag already closed is reported, not an error: running the same list twice changes
/// nothing, even after the flag opened again with other values.
pub async fn resolve_listed(
    pool: &PgPool,
    rows: &[Resolution],
    by: &str,
    dry_run: bool,
) -> Result<ListedOutcome, StoreError> {
    let lines: Vec<i64> = rows.iter().map(|r| r.line as i64).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.payment_id.as_str()).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let flag_ids: Vec<Option<i64>> = rows.iter().map(|r| r.flag_id).collect();
    let notes: Vec<&str> = rows.iter().map(|r| r.note.as_str()).collect();
    let mut tx = pool.begin().await?;
    lock_payments(&mut tx, &ids).await?;
    let matched = sqlx::query!(
        r#"select l.line as "line!", f.id as "flag_id?", f.resolved_by
           from unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::text[])
                as l(line, payment_id, kind, flag_id, note)
           left join lateral (
               select d.id, d.resolved_by
               from recon.discrepancies d
               where d.payment_id = l.payment_id and d.kind = l.kind
                 and (l.flag_id is null or d.id = l.flag_id)
               order by coalesce(d.resolved_by = $6 and d.resolution = l.note, false) desc,
                        d.resolved_at is null desc, d.id desc
               limit 1
           ) f on true
           order by l.line"#,
        &lines,
        &ids as &[&str],
        &kinds as &[&str],
        &flag_ids as &[Option<i64>],
        &notes as &[&str],
        by,
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut outcome = ListedOutcome::default();
    let mut to_close: Vec<(i64, &str)> = Vec::new();
    let mut first_line: std::collections::HashMap<i64, u64> = std::collections::HashMap::new();
    for (row, m) in rows.iter().zip(&matched) {
        if let Some(id) = m.flag_id
            && let Some(first) = first_line.insert(id, row.line)
        {
            outcome.repeated.push((row.line, first));
            continue;
        }
        match (m.flag_id, &m.resolved_by) {
            (None, _) => outcome.unknown.push(row.line),
            (Some(_), Some(by)) => outcome.already_closed.push((row.line, by.clone())),
            (Some(id), None) => {
                outcome.closed.push(row.line);
                to_close.push((id, row.note.as_str()));
            }
        }
    }
    let refused = !outcome.unknown.is_empty() || !outcome.repeated.is_empty();
    if refused || dry_run || to_close.is_empty() {
        tx.rollback().await?;
        return Ok(outcome);
    }
    let (flag_ids, notes): (Vec<i64>, Vec<&str>) = to_close.into_iter().unzip();
    sqlx::query!(
        "update recon.discrepancies d
         set resolved_at = now(), resolved_by = $3, resolution = c.note
         from unnest($1::int8[], $2::text[]) as c(id, note)
         where d.id = c.id and d.resolved_at is null",
        &flag_ids,
        &notes as &[&str],
        by,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(outcome)
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
    if !scheduled.is_empty() {
        // Running daemons sweep at once rather than at their next tick.
        sqlx::query!("select pg_notify($1, '')", super::callbacks::WAKE_CHANNEL)
            .execute(pool)
            .await?;
    }
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

/// The views a reader may query, what the flag kinds mean, the money events, refund requests
/// bank statements and registries; nothing else in the schema is granted.
pub const READER_VIEWS: [&str; 24] = [
    "recon.reconciliation",
    "recon.open_discrepancies",
    "recon.daily_summary",
    "recon.status_history",
    "recon.discrepancy_history",
    "recon.parked_payments",
    "recon.event_log",
    "recon.flag_kinds",
    "recon.payment_money",
    "recon.money_by_day",
    // Two tables finance reads as they are: the money events (the evidence behind
    // payment_money and money_by_day) and the refunds the merchant made.
    "recon.money_events",
    "recon.merchant_refunds",
    // And the bank statements and registries imported, as read.
    "recon.bank_files",
    "recon.bank_lines",
    "recon.registry_files",
    "recon.registry_lines",
    // What was matched to what, the payouts, and the flags about lines and transfers.
    "recon.settlement_matches",
    "recon.payouts",
    "recon.open_settlement_flags",
    // The months closed now, with the figures signed, and what changed them after (the
    // console's month page; `report --adjustments`).
    "recon.month_closes",
    "recon.adjustments",
    // The payments with an open flag (what the console's queue filters by), and each
    // provider answer and callback with what it stated (a payment's story), nothing raw.
    "recon.flagged_payments",
    "recon.provider_answers",
    "recon.callback_history",
];

/// A role's name as an SQL identifier, always quoted: safe to paste into SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What a role may do already, before any grant, counting every role it can become: a
/// membership without INHERIT still lets it `SET ROLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleReach {
    pub exists: bool,
    pub superuser: bool,
    /// A built-in role (`pg_…`): PostgreSQL's own, whose members are other roles.
    pub built_in: bool,
    /// CREATEROLE: it may grant itself other roles (`pg_read_all_data` among them).
    pub creates_roles: bool,
    /// A member, directly or not, inheriting or not, of `pg_read_all_data`: it reads every
    /// table.
    pub reads_all_data: bool,
    /// It, or a role it can become, may read the payments table (owner, or granted).
    pub reads_tables: bool,
    /// Other login roles that are members of it (they would act with what it is granted).
    pub login_members: Vec<String>,
}

pub async fn role_reach(pool: &PgPool, role: &str) -> Result<RoleReach, StoreError> {
    Ok(sqlx::query_as!(
        RoleReach,
        r#"select r.oid is not null as "exists!",
                coalesce(r.rolsuper, false) as "superuser!",
                coalesce(r.rolname like 'pg\_%', false) as "built_in!",
                coalesce(r.rolcreaterole, false) as "creates_roles!",
                coalesce(pg_has_role(r.oid, 'pg_read_all_data', 'member'), false)
                    as "reads_all_data!",
                coalesce(exists (select 1 from pg_roles b
                                 where pg_has_role(r.oid, b.oid, 'member')
                                   and has_table_privilege(b.oid, 'recon.payments', 'select')),
                         false) as "reads_tables!",
                array(select m.rolname::text from pg_roles m
                      where r.oid is not null and m.oid <> r.oid and m.rolcanlogin
                        and not m.rolsuper
                        and pg_has_role(m.oid, r.oid, 'member')
                      order by m.rolname) as "login_members!"
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
    apply(
        pool,
        vec![
            format!("grant usage on schema recon to {quoted}"),
            format!("grant select on {} to {quoted}", READER_VIEWS.join(", ")),
        ],
    )
    .await
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
        // What flags' writes are checked against (open once per kind: migration
        // `partitioned_history`).
        format!("grant select on recon.open_flags to {role}"),
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
        // `resolve` locks a flag's payment before the flag (migration `audit_trail`).
        format!("grant execute on function recon.lock_payments(text[]) to {role}"),
        // Money events: a payment received, written with its transition; refunds.
        format!("grant select, insert on recon.money_events to {role}"),
        // Where the closed period ends, under the lock a close waits for: each statement
        // that books money dates its events with it (migration `money_dated_per_statement`).
        format!("grant execute on function recon.money_dating_cutoff() to {role}"),
        // What a writer skips (the insert's trigger adds the keys, as the schema's owner).
        format!("grant select on recon.money_event_keys to {role}"),
        // The refund watch: a schedule, its rows added, moved and ended by the daemon.
        format!("grant select, insert, update, delete on recon.refund_watch to {role}"),
        // Bank statements (`import --bank`): each file and operation once, as read.
        format!("grant select, insert on recon.bank_files, recon.bank_lines to {role}"),
        // The provider's registries (`import --registry`), likewise.
        format!("grant select, insert on recon.registry_files, recon.registry_lines to {role}"),
        // Matching (`match`, and each import): matches made, and undone once; the flags about
        // registry lines, payouts and credits, opened and resolved.
        format!(
            "grant select, insert, update (undone_at, undone_by, undo_note, undone_with) \
             on recon.settlement_matches to {role}"
        ),
        format!(
            "grant select, insert, update (resolved_at, resolved_by, resolution) \
             on recon.settlement_flags to {role}"
        ),
        // Refunds the merchant made: imported (`import --refunds`), matched by the daemon.
        format!(
            "grant select, insert, update (matched_key, matched_at) on recon.merchant_refunds \
             to {role}"
        ),
        // Result-URL callbacks: stored by the listener, read by the claim (cross-check).
        format!("grant select, insert on recon.callbacks to {role}"),
        // Maintenance: monthly partitions ahead, event retention, the summary's rollup.
        format!(
            "grant execute on function recon.ensure_partitions(interval), \
             recon.drop_expired_event_partitions(interval, boolean), \
             recon.fold_summary_changes(), recon.rebuild_summary_if_zone_changed() to {role}"
        ),
        // What `report` reads of closed months (the daemon's role runs it too; the
        // adjustments are among the reader's).
        format!("grant select on recon.period_closes, recon.payment_changes to {role}"),
        format!("grant select on {} to {role}", READER_VIEWS.join(", ")),
        // A close signs the month's money to the bank too (`close`, as the daemon's role).
        format!("grant select, insert on recon.settlement_closes to {role}"),
    ]
}

/// The grants a person's role needs to report, resolve flags and close months, and nothing
/// else: the finance views (as [`grant_reader`]), the flags themselves (read, and only their
/// resolution written), the payment and transition columns the flag list reads (no raw
/// provider body, no write), and locking a payment before its flag.
/// Resolutions written through it record the role (`resolved_role`), whatever `--by` says.
pub fn finance_grants(role: &str) -> Vec<String> {
    let role = quote_ident(role);
    vec![
        format!("grant usage on schema recon to {role}"),
        format!("grant select on {} to {role}", READER_VIEWS.join(", ")),
        format!("grant select on recon.discrepancies, recon.open_flags to {role}"),
        // What the flag list and `resolve --all` read of a payment: never a raw body.
        format!(
            "grant select (payment_id, order_id, created_at, settled_at, status, deadline_missed_at, \
             expected_amount, expected_currency, amount, currency, open_flags) on recon.payments \
             to {role}"
        ),
        // A payment's status at the end of a day (`report --flags --as-of`).
        format!(
            "grant select (payment_id, observation_no, to_status, observed_at) \
             on recon.status_transitions to {role}"
        ),
        format!(
            "grant update (resolved_at, resolved_by, resolution) on recon.discrepancies to {role}"
        ),
        format!("grant execute on function recon.lock_payments(text[]) to {role}"),
        // Closing a month: the closes, the intake changes adjustments name, and the two
        // doors that write closes (migration `closing_a_month`).
        format!("grant select on recon.period_closes, recon.payment_changes to {role}"),
        format!(
            "grant execute on function recon.close_month(date, text, text, boolean), \
             recon.reopen_month(date, text, text) to {role}"
        ),
        // A close signs the month's money to the bank too, in the same transaction.
        format!("grant select, insert on recon.settlement_closes to {role}"),
    ]
}

/// Applies [`finance_grants`] in one transaction.
pub async fn grant_finance(pool: &PgPool, role: &str) -> Result<(), StoreError> {
    apply(pool, finance_grants(role)).await
}

/// Runs grant statements in one transaction.
async fn apply(pool: &PgPool, statements: Vec<String>) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Applies [`daemon_grants`] in one transaction.
pub async fn grant_daemon(pool: &PgPool, role: &str) -> Result<(), StoreError> {
    apply(pool, daemon_grants(role)).await
}

#[cfg(test)]
mod tests {
    /// docs/finance.md prints what `grant-finance` runs: it must not drift from the code.
    #[test]
    fn finance_md_shows_every_finance_grant() {
        let doc = include_str!("../../docs/finance.md");
        for statement in super::finance_grants("anna_finance") {
            assert!(
                doc.contains(&format!("{statement};\n")),
                "docs/finance.md lacks: {statement};"
            );
        }
    }

    /// docs/operations.md prints what `grant-daemon` runs: it must not drift from the code.
    #[test]
    fn operations_md_shows_every_daemon_grant() {
        let doc = include_str!("../../docs/operations.md");
        for statement in super::daemon_grants("recon_daemon") {
            assert!(
                doc.contains(&format!("{statement};\n")),
                "docs/operations.md lacks: {statement};"
            );
        }
    }
}
